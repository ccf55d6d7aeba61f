//! Skydive's functional scenarios (tests/topology_test.go, tests/flow_test.go) replayed
//! against a real `topotap allinone` (run as root): each sets up what Skydive's test sets
//! up (Open vSwitch bridges on a private userspace OVS, `common::ovs`; namespaces,
//! veths; traffic from packet injections or pings) and asks the Gremlin questions
//! Skydive's test asks.
//!
//! - Interface facts: TestInterfaceFeatures and the ethtool keys compared with
//!   `ethtool -k`, `ethtool -i`, `ethtool`; the forwarding database of a Linux bridge
//!   after a ping (`bridge fdb show`); TestNameSpaceTwoVeth (`LinkNetNsName`).
//! - Captures on OVS: TestSFlowProbeNode, TestSFlowTwoNodeTID (two sFlow probes on two
//!   bridges), TestSFlowMetric (OVS counter samples), TestOvsMirror.
//! - Rules: TestNodeRuleCreate, TestNodeRuleUpdate, TestEdgeRuleCreate.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::net::{bridged_pair, sh, Cleanup};
use common::nfdump::{create_capture, delete_capture, wait_state};
use common::ovs::Ovs;
use common::{rand_tag, Topotap};
use serde_json::{json, Map, Value};

const DEADLINE: Duration = Duration::from_secs(10);
/// Skydive's harness retries each check for 30 s.
const CHECKS: Duration = Duration::from_secs(30);

/// `ethtool -k` as `name -> on`, kernel feature names and ethtool's legacy group names
/// alike (`tx-checksumming`, `scatter-gather`, ...).
fn ethtool_k(ns: &str, dev: &str) -> Map<String, Value> {
    let out = sh(&format!("ip netns exec {ns} ethtool -k {dev}"));
    out.lines()
        .skip(1)
        .filter_map(|l| {
            let (name, rest) = l.trim().split_once(": ")?;
            let on = rest.split_whitespace().next()? == "on";
            Some((name.to_owned(), Value::from(on)))
        })
        .collect()
}

/// The value of `key:` in a `ethtool` report (`None` when empty).
fn field(out: &str, key: &str) -> Option<String> {
    out.lines().find_map(|l| {
        let v = l.trim().strip_prefix(key)?.strip_prefix(':')?.trim();
        (!v.is_empty()).then(|| v.to_owned())
    })
}

async fn node(t: &Topotap, name: &str) -> Value {
    let v = t.query(&format!("G.V().Has('Name','{name}')")).await;
    assert_eq!(v.as_array().map(Vec::len), Some(1), "{name}: {v}");
    v[0]["Metadata"].clone()
}

/// Skydive's TestInterfaceFeatures and the ethtool keys: `Features` holds every kernel
/// feature `ethtool -k` lists, in the same state, and follows `ethtool -K`; `Driver`,
/// `BusInfo`, `Speed` and `Duplex` are what `ethtool -i` and `ethtool` say.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ethtool_facts_of_a_veth_match_ethtool() {
    let tag = rand_tag();
    let (ns, a, b) = (format!("e{tag}"), format!("a{tag}"), format!("b{tag}"));
    let t = Topotap::start_without_ovs();
    let mut c = Cleanup::new();
    c.netns(&ns);
    sh(&format!(
        "ip -n {ns} link add {a} type veth peer name {b} && ip -n {ns} link set {a} up && \
         ip -n {ns} link set {b} up"
    ));
    t.expect(
        &tag,
        &format!("G.V().Has('Name','{a}').HasKey('Features').Count()"),
        json!(1),
        DEADLINE,
    )
    .await;

    let compare = |meta: &Value| {
        let feats = meta["Features"].as_object().expect("Features map").clone();
        let tool = ethtool_k(&ns, &a);
        let mut compared = 0;
        for (name, on) in &feats {
            // ethtool prints some kernel features under its legacy names.
            let shown = match name.as_str() {
                "rx-checksum" => "rx-checksumming",
                "tx-generic-segmentation" => "generic-segmentation-offload",
                "rx-gro" => "generic-receive-offload",
                "rx-lro" => "large-receive-offload",
                "rx-vlan-hw-parse" => "rx-vlan-offload",
                "tx-vlan-hw-insert" => "tx-vlan-offload",
                "rx-ntuple-filter" => "ntuple-filters",
                "rx-hashing" => "receive-hashing",
                n => n,
            };
            if let Some(want) = tool.get(shown) {
                assert_eq!(on, want, "feature {name}: topotap {on}, ethtool -k {want}");
                compared += 1;
            }
        }
        // Every kernel feature is listed by ethtool -k.
        assert_eq!(compared, feats.len(), "features compared");
        assert!(compared > 20, "only {compared} features in common");
        compared
    };
    let meta = node(&t, &a).await;
    let n = compare(&meta);
    println!("{n} features equal to ethtool -k");

    let info = sh(&format!("ip netns exec {ns} ethtool -i {a}"));
    assert_eq!(meta["Driver"], json!(field(&info, "driver").unwrap()));
    assert_eq!(
        meta.get("BusInfo").cloned(),
        field(&info, "bus-info").map(Value::from)
    );
    let link = sh(&format!("ip netns exec {ns} ethtool {a}"));
    let speed = field(&link, "Speed").unwrap();
    let mbps: u64 = speed.trim_end_matches("Mb/s").parse().expect("speed");
    assert_eq!(meta["Speed"], json!(mbps), "ethtool: {speed}");
    assert_eq!(meta["Duplex"], json!(field(&link, "Duplex").unwrap()));

    // A feature change is a link change: the node follows it.
    let before = meta["Features"]["tx-checksum-ip-generic"]
        .as_bool()
        .unwrap();
    let next = if before { "off" } else { "on" };
    sh(&format!(
        "ip netns exec {ns} ethtool -K {a} tx-checksum-ip-generic {next}"
    ));
    t.expect(
        &tag,
        &format!("G.V().Has('Name','{a}').Values('Features.tx-checksum-ip-generic')"),
        json!([!before]),
        DEADLINE,
    )
    .await;
    let tool = ethtool_k(&ns, &a);
    assert_eq!(tool["tx-checksum-ip-generic"], json!(!before));
    compare(&node(&t, &a).await);
}

/// Ethtool facts that change without a link message (a tap's speed and duplex set
/// with `ethtool -s`) show on the node at the next metric interval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ethtool_facts_are_read_again_each_metric_interval() {
    let tag = rand_tag();
    let (ns, tap) = (format!("e{tag}"), format!("t{tag}"));
    let t = Topotap::start(&["--ovsdb", "none", "--metric-interval", "1"]);
    let mut c = Cleanup::new();
    c.netns(&ns);
    sh(&format!(
        "ip netns exec {ns} ip tuntap add mode tap name {tap}"
    ));
    let link = sh(&format!("ip netns exec {ns} ethtool {tap}"));
    let speed: u64 = field(&link, "Speed")
        .unwrap()
        .trim_end_matches("Mb/s")
        .parse()
        .expect("speed");
    assert_ne!(speed, 100, "{link}");
    t.expect(
        &tag,
        &format!("G.V().Has('Name','{tap}').Values('Speed')"),
        json!([speed]),
        DEADLINE,
    )
    .await;
    sh(&format!(
        "ip netns exec {ns} ethtool -s {tap} speed 100 duplex half"
    ));
    t.expect(
        &tag,
        &format!("G.V().Has('Name','{tap}').Values('Speed')"),
        json!([100]),
        DEADLINE,
    )
    .await;
    let meta = node(&t, &tap).await;
    assert_eq!(meta["Duplex"], "Half", "{meta}");
}

/// The bridge's own forwarding entries (`master BR`) of `bridge -j fdb show br BR` as
/// `(ifname, mac, master, state, vlan)` tuples.
fn bridge_fdb(br: &str) -> BTreeSet<(String, String, bool, String, u64)> {
    let out = sh(&format!("bridge -j fdb show br {br}"));
    let v: Value = serde_json::from_str(&out).expect("bridge -j");
    v.as_array()
        .expect("array")
        .iter()
        .filter(|e| e.get("master").is_some())
        .map(|e| {
            (
                e["ifname"].as_str().unwrap_or("").to_owned(),
                e["mac"].as_str().unwrap().to_owned(),
                e.get("master").is_some(),
                e["state"].as_str().unwrap_or("").to_owned(),
                e["vlan"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

/// The `FDB` entries of the nodes `names`, in the tuples of [`bridge_fdb`].
async fn graph_fdb(t: &Topotap, names: &[String]) -> BTreeSet<(String, String, bool, String, u64)> {
    let mut out = BTreeSet::new();
    for name in names {
        let v = t
            .query(&format!("G.V().Has('Name','{name}').HasKey('MAC')"))
            .await;
        let Some(n) = v.as_array().and_then(|a| a.first()) else {
            continue;
        };
        for e in n["Metadata"]["FDB"].as_array().into_iter().flatten() {
            let flags: Vec<&str> = e["Flags"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(Value::as_str)
                .collect();
            // Only the bridge's entries: the ports' own address lists (`self`) are
            // dumped at start but not notified on change.
            if !flags.contains(&"NTF_MASTER") {
                continue;
            }
            let state = match e["State"][0].as_str().unwrap() {
                "NUD_PERMANENT" => "permanent",
                "NUD_NOARP" => "static",
                "NUD_STALE" => "stale",
                _ => "",
            };
            out.insert((
                name.clone(),
                e["MAC"].as_str().unwrap().to_owned(),
                flags.contains(&"NTF_MASTER"),
                state.to_owned(),
                e["Vlan"].as_u64().unwrap_or(0),
            ));
        }
    }
    out
}

/// Skydive's `FDB` key: after a ping across a Linux bridge, the bridge and its ports
/// carry the same forwarding entries as `bridge fdb show`, among them the two
/// namespaces' MACs learnt on their ports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridge_fdb_after_a_ping_matches_bridge_fdb_show() {
    let tag = rand_tag();
    let p = format!("f{tag}");
    let t = Topotap::start_without_ovs();
    let _c = bridged_pair(&p, 91);
    sh(&format!("ip netns exec {p}a ping -c 2 -W 2 10.77.91.2"));
    let br = format!("{p}br");
    let names = vec![br.clone(), format!("{p}a0"), format!("{p}b0")];
    let mut learnt = Vec::new();
    for side in ["a", "b"] {
        let mac = sh(&format!("ip -n {p}{side} -j link show eth0"));
        let v: Value = serde_json::from_str(&mac).unwrap();
        learnt.push((
            format!("{p}{side}0"),
            v[0]["address"].as_str().unwrap().to_owned(),
        ));
    }
    let n = converge(&t, &tag, &br, &names, &learnt).await;
    println!("{n} FDB entries equal to bridge fdb show");
    // A deleted entry leaves the graph too (RTM_DELNEIGH).
    let (port, mac) = learnt.pop().unwrap();
    sh(&format!("bridge fdb del {mac} dev {port} master"));
    let n = converge(&t, &tag, &br, &names, &learnt).await;
    println!("{n} FDB entries equal to bridge fdb show after a deletion");
}

/// Polls until the graph's FDB entries of `names` equal `bridge fdb show br BR` and
/// include the `learnt` (port, MAC) entries; returns the entry count.
async fn converge(
    t: &Topotap,
    tag: &str,
    br: &str,
    names: &[String],
    learnt: &[(String, String)],
) -> usize {
    let deadline = std::time::Instant::now() + DEADLINE;
    loop {
        let tool = bridge_fdb(br);
        let graph = graph_fdb(t, names).await;
        let has_learnt = learnt.iter().all(|(port, mac)| {
            graph
                .iter()
                .any(|(n, m, master, _, _)| n == port && m == mac && *master)
        });
        if tool == graph && has_learnt {
            return graph.len();
        }
        if std::time::Instant::now() > deadline {
            panic!(
                "bridge fdb show: {tool:?}\ngraph: {graph:?}\nlearnt: {learnt:?}\n{}",
                t.dump_named(tag).await
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Skydive's TestNameSpaceTwoVeth: two namespaces joined by a veth; each end names the
/// other end's namespace in `LinkNetNsName`, and `Has('LinkNetNsName', ns1)` is exactly
/// one node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_veth_namespaces_name_each_other() {
    let tag = rand_tag();
    let (ns1, ns2) = (format!("x{tag}"), format!("y{tag}"));
    let (a, b) = (format!("a{tag}"), format!("b{tag}"));
    let t = Topotap::start_without_ovs();
    let mut c = Cleanup::new();
    c.netns(&ns1);
    c.netns(&ns2);
    sh(&format!(
        "ip -n {ns1} link add {a} type veth peer name {b} netns {ns2}"
    ));
    t.expect(
        &tag,
        &format!("G.V().Has('LinkNetNsName','{ns1}').Values('Name')"),
        json!([b]),
        DEADLINE,
    )
    .await;
    t.expect(
        &tag,
        &format!("G.V().Has('LinkNetNsName','{ns2}').Values('Name')"),
        json!([a]),
        DEADLINE,
    )
    .await;
    t.expect(
        &tag,
        &format!("G.V().Has('Name','{a}').Both().Has('Type','veth').Values('Name')"),
        json!([b]),
        DEADLINE,
    )
    .await;
}

/// Skydive's harness injection: ICMPv4 echo requests from the first node of `src` to
/// `dst_ip`, DstMAC `00:11:22:33:44:55` (no such host: nothing answers); waits until
/// they are sent.
async fn inject(t: &Topotap, src: &str, dst_ip: &str, count: u64) {
    let body = json!({"Src": src, "DstIP": dst_ip, "DstMAC": "00:11:22:33:44:55",
                      "Type": "icmp4", "Count": count, "Interval": 100});
    let (s, inj) = t
        .request("POST", "/api/injectpacket", Some(&body.to_string()))
        .await;
    assert_eq!(s, 201, "{inj}");
    let uuid = inj["UUID"].as_str().unwrap().to_owned();
    let deadline = std::time::Instant::now() + DEADLINE;
    loop {
        let (_, v) = t
            .request("GET", &format!("/api/injectpacket/{uuid}"), None)
            .await;
        if v["State"] == "done" {
            assert_eq!(v["PacketCount"], count, "{v}");
            return;
        }
        assert!(std::time::Instant::now() < deadline, "injection: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An OVS bridge `br` (userspace datapath) with an internal port `intf` holding
/// `addr`, up; and a topotap watching that OVS.
fn bridge_with_internal_port(ovs: &Ovs, br: &str, intf: &str, addr: &str) {
    ovs.add_bridge(br);
    ovs.add_internal_port(br, intf);
    ovs.ip(&format!("addr add {addr} dev {intf}"));
    ovs.ip(&format!("link set {intf} up"));
}

/// The `TID` of the one node `q` finds.
async fn tid_of(t: &Topotap, tag: &str, q: &str) -> String {
    let n = t.expect_one(tag, q, DEADLINE).await;
    n["Metadata"]["TID"].as_str().expect("TID").to_owned()
}

/// Waits until the injection source has its address and is up, as Skydive's harness
/// does before injecting.
async fn wait_ready(t: &Topotap, tag: &str, intf: &str) {
    t.expect_one(
        tag,
        &format!("G.V().Has('Name','{intf}','Type','internal','LinkFlags','UP').HasKey('IPV4')"),
        DEADLINE,
    )
    .await;
}

/// Skydive's TestSFlowProbeNode: the default capture of an OVS bridge (`ovssflow`,
/// sampling 1, polling 10) and 5 echo requests from its internal port to an absent
/// address: exactly one ICMPv4 flow with the bridge's `TID`, with the injection's
/// endpoints and packets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sflow_probe_node() {
    let tag = rand_tag();
    let p = format!("n{tag}");
    let ovs = Ovs::start(&p);
    ovs.ip("link set lo up");
    let (br, intf) = (format!("{p}br"), format!("{p}i1"));
    bridge_with_internal_port(&ovs, &br, &intf, "169.254.33.33/24");
    let t = Topotap::start(&["--ovsdb", &ovs.address()]);
    let query = format!("G.V().Has('Name','{br}','Type','ovsbridge')");
    let tid = tid_of(&t, &tag, &query).await;
    let uuid = create_capture(
        &t,
        json!({"GremlinQuery": query, "SamplingRate": 1, "PollingInterval": 10}),
    )
    .await;
    wait_state(&t, &uuid, "active").await;
    t.expect_one(
        &tag,
        &format!("{query}.Has('Captures.ID','{uuid}','Captures.Type','ovssflow')"),
        DEADLINE,
    )
    .await;
    wait_ready(&t, &tag, &intf).await;
    inject(
        &t,
        &format!("G.V().Has('Name','{intf}','Type','internal')"),
        "169.254.33.34",
        5,
    )
    .await;
    let q = format!("G.Flows().Has('NodeTID','{tid}','LayersPath','Ethernet/IPv4/ICMPv4')");
    let (flows, ok) = t
        .wait_for(&q, CHECKS, |v| {
            v.as_array()
                .is_some_and(|f| f.len() == 1 && f[0]["Metric"]["ABPackets"] == 5)
        })
        .await;
    assert!(ok, "{q}: {flows}");
    let f = &flows[0];
    assert_eq!(f["Network"]["A"], "169.254.33.33", "{f}");
    assert_eq!(f["Network"]["B"], "169.254.33.34", "{f}");
    assert_eq!(f["Link"]["B"], "00:11:22:33:44:55", "{f}");
    assert_eq!(f["Metric"]["BAPackets"], 0, "{f}");
    assert_eq!(f["CaptureID"], uuid.as_str(), "{f}");
    delete_capture(&t, &uuid).await;
    drop(t);
    drop(ovs);
}

/// Skydive's TestSFlowMetric: an `ovssflow` capture polling counters; after traffic
/// from the bridge's internal port, OVS's counter samples of that port are its
/// `SFlow` metrics: `Metrics('SFlow.LastUpdateMetric').Aggregates()` is a sorted,
/// non-empty series, and the totals count at least the injected packets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sflow_metric_from_ovs_counter_samples() {
    let tag = rand_tag();
    let p = format!("c{tag}");
    let ovs = Ovs::start(&p);
    ovs.ip("link set lo up");
    let (br, intf) = (format!("{p}br"), format!("{p}i1"));
    bridge_with_internal_port(&ovs, &br, &intf, "169.254.36.33/24");
    let t = Topotap::start(&["--ovsdb", &ovs.address()]);
    let query = format!("G.V().Has('Name','{br}','Type','ovsbridge')");
    t.expect_one(&tag, &query, DEADLINE).await;
    let uuid = create_capture(
        &t,
        json!({"GremlinQuery": query, "SamplingRate": 1, "PollingInterval": 1}),
    )
    .await;
    wait_state(&t, &uuid, "active").await;
    assert_eq!(ovs.vsctl("--columns=polling --bare list sflow").trim(), "1");
    wait_ready(&t, &tag, &intf).await;
    let node = format!("G.V().Has('Name','{intf}','Type','internal')");
    inject(&t, &node, "169.254.36.34", 5).await;
    // OVS counts the port from the switch's side: what the interface sent, the port
    // received.
    let q = format!("{node}.Values('SFlow.Metric')");
    let (v, ok) = t
        .wait_for(&q, CHECKS, |v| {
            v[0]["RxPackets"].as_u64().unwrap_or(0) + v[0]["TxPackets"].as_u64().unwrap_or(0) >= 5
        })
        .await;
    assert!(ok, "{q}: {v}\n{}", t.dump_named(&tag).await);
    let m = &v[0];
    assert!(
        m["Start"].as_i64().unwrap() <= m["Last"].as_i64().unwrap(),
        "{m}"
    );
    let q = format!("{node}.Metrics('SFlow.LastUpdateMetric').Aggregates()");
    let (v, ok) = t
        .wait_for(&q, CHECKS, |v| {
            v[0]["Aggregated"].as_array().is_some_and(|a| !a.is_empty())
        })
        .await;
    assert!(ok, "{q}: {v}");
    let aggregated = v[0]["Aggregated"].as_array().unwrap();
    let starts: Vec<i64> = aggregated
        .iter()
        .map(|s| s["Start"].as_i64().unwrap())
        .collect();
    let mut sorted = starts.clone();
    sorted.sort_unstable();
    assert_eq!(starts, sorted, "{v}");
    delete_capture(&t, &uuid).await;
    drop(t);
    drop(ovs);
}

/// Skydive's TestSFlowTwoNodeTID: two OVS bridges joined through a Linux bridge, both
/// captured (two sFlow probes); echo requests from the first bridge's internal port
/// cross both: two ICMPv4 flows, one per bridge `TID`, the same `TrackingID`, two
/// `UUID`s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sflow_two_probes_on_two_bridges() {
    let tag = rand_tag();
    let p = format!("w{tag}");
    let ovs = Ovs::start(&p);
    ovs.ip("link set lo up");
    let (b1, b2, lb) = (format!("{p}b1"), format!("{p}b2"), format!("{p}lb"));
    let intf = format!("{p}i1");
    bridge_with_internal_port(&ovs, &b1, &intf, "169.254.34.33/24");
    ovs.add_bridge(&b2);
    ovs.ip(&format!("link add {lb} type bridge"));
    ovs.ip(&format!("link set {lb} up"));
    for (n, br) in [(1, &b1), (2, &b2)] {
        let (port, end) = (format!("{p}p{n}"), format!("{p}l{n}"));
        ovs.ip(&format!("link add {port} type veth peer name {end}"));
        ovs.ip(&format!("link set {end} master {lb}"));
        for dev in [&port, &end] {
            ovs.ip(&format!("link set {dev} up"));
        }
        ovs.vsctl(&format!("add-port {br} {port}"));
    }
    let t = Topotap::start(&["--ovsdb", &ovs.address()]);
    let q1 = format!("G.V().Has('Name','{b1}','Type','ovsbridge')");
    let q2 = format!("G.V().Has('Name','{b2}','Type','ovsbridge')");
    let tids = BTreeSet::from([tid_of(&t, &tag, &q1).await, tid_of(&t, &tag, &q2).await]);
    let both = format!("G.V().Has('Type','ovsbridge','Name',Within('{b1}','{b2}'))");
    let uuid = create_capture(
        &t,
        json!({"GremlinQuery": both, "SamplingRate": 1, "PollingInterval": 10}),
    )
    .await;
    let (v, ok) = t
        .wait_for(
            &format!("G.V().Has('Captures.ID','{uuid}','Captures.State','active')"),
            DEADLINE,
            |v| v.as_array().is_some_and(|a| a.len() == 2),
        )
        .await;
    assert!(ok, "{v}");
    wait_ready(&t, &tag, &intf).await;
    inject(
        &t,
        &format!("G.V().Has('Name','{intf}','Type','internal')"),
        "169.254.34.34",
        5,
    )
    .await;
    let q = format!("{both}.Flows().Has('LayersPath','Ethernet/IPv4/ICMPv4')");
    let (flows, ok) = t
        .wait_for(&q, CHECKS, |v| {
            v.as_array()
                .is_some_and(|f| f.len() == 2 && f.iter().all(|f| f["Metric"]["ABPackets"] == 5))
        })
        .await;
    assert!(ok, "{q}: {flows}\n{}", t.dump_named(&tag).await);
    let f = flows.as_array().unwrap();
    let got: BTreeSet<String> = f
        .iter()
        .map(|f| f["NodeTID"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(got, tids, "{flows}");
    assert_eq!(f[0]["TrackingID"], f[1]["TrackingID"], "{flows}");
    assert_ne!(f[0]["UUID"], f[1]["UUID"], "{flows}");
    for f in f {
        assert_eq!(f["Network"]["A"], "169.254.34.33", "{f}");
        assert_eq!(f["Network"]["B"], "169.254.34.34", "{f}");
    }
    delete_capture(&t, &uuid).await;
    drop(t);
    drop(ovs);
}

/// Skydive's TestOvsMirror: a capture on an `ovsport` is an OVS mirror of it, whose
/// output is an internal port topotap captures; echo requests injected from the port's
/// interface are its ICMPv4 flow. The mirror and its output port are OVS's own rows,
/// gone when the capture is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ovs_mirror_of_a_port() {
    let tag = rand_tag();
    let p = format!("m{tag}");
    let ovs = Ovs::start(&p);
    let (br, intf) = (format!("{p}br"), format!("{p}i1"));
    bridge_with_internal_port(&ovs, &br, &intf, "169.254.35.33/24");
    let t = Topotap::start(&["--ovsdb", &ovs.address()]);
    let query = format!("G.V().Has('Type','ovsport','Name','{intf}')");
    let port = t.expect_one(&tag, &query, DEADLINE).await;
    let uuid = create_capture(&t, json!({"GremlinQuery": query})).await;
    let (v, ok) = t
        .wait_for(
            &format!("G.V().Has('Captures.ID','{uuid}')"),
            DEADLINE,
            |v| {
                v.as_array().is_some_and(|a| a.len() == 1)
                    && common::nfdump::entry(v, &uuid)["State"] != "starting"
            },
        )
        .await;
    let (_, c) = t
        .request("GET", &format!("/api/capture/{uuid}"), None)
        .await;
    assert!(ok, "{v} {c}\n{}", t.dump_named(&tag).await);
    assert_eq!(v[0]["ID"], port["ID"], "{v}");
    let entry = common::nfdump::entry(&v, &uuid);
    assert_eq!(entry["State"], "active", "{entry}");
    assert_eq!(entry["Type"], "ovsmirror", "{entry}");
    // The mirror's output port is in OVS and in the graph.
    let out = ovs.vsctl("--columns=output_port --bare list mirror");
    let out = ovs.vsctl(&format!("get port {} name", out.trim()));
    let mirror = out.trim().trim_matches('"').to_owned();
    t.expect_one(
        &tag,
        &format!("G.V().Has('Type','internal','Name','{mirror}')"),
        DEADLINE,
    )
    .await;
    let tid = port["Metadata"]["TID"].as_str().unwrap().to_owned();
    wait_ready(&t, &tag, &intf).await;
    inject(
        &t,
        &format!("G.V().Has('Name','{intf}','Type','internal')"),
        "169.254.35.34",
        5,
    )
    .await;
    let q = format!("G.Flows().Has('NodeTID','{tid}','LayersPath','Ethernet/IPv4/ICMPv4')");
    let (flows, ok) = t
        .wait_for(&q, CHECKS, |v| {
            v.as_array()
                .is_some_and(|f| f.len() == 1 && f[0]["Metric"]["ABPackets"] == 5)
        })
        .await;
    assert!(ok, "{q}: {flows}");
    assert_eq!(flows[0]["Network"]["A"], "169.254.35.33", "{flows}");
    assert_eq!(flows[0]["CaptureID"], uuid.as_str(), "{flows}");
    delete_capture(&t, &uuid).await;
    assert_eq!(ovs.vsctl("--columns=_uuid --bare list mirror").trim(), "");
    t.expect(
        &tag,
        &format!("G.V().Has('Name','{mirror}')"),
        json!([]),
        DEADLINE,
    )
    .await;
    drop(t);
    drop(ovs);
}

async fn post(t: &Topotap, path: &str, body: Value) -> String {
    let (s, v) = t.request("POST", path, Some(&body.to_string())).await;
    assert_eq!(s, 201, "{path} {body}: {v}");
    v["UUID"].as_str().unwrap().to_owned()
}

async fn delete(t: &Topotap, path: &str) {
    let (s, v) = t.request("DELETE", path, None).await;
    assert_eq!(s, 200, "{path}: {v}");
}

/// Skydive's TestNodeRuleCreate, TestNodeRuleUpdate and TestEdgeRuleCreate on OVS
/// bridges: a created `fabric` node, a key on an `ovsbridge`, a `layer2` edge between
/// two bridges; each gone once its rule is deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_rules_and_edge_rules() {
    let tag = rand_tag();
    let p = format!("r{tag}");
    let ovs = Ovs::start(&p);
    let (umd, src, dst) = (format!("{p}umd"), format!("{p}src"), format!("{p}dst"));
    for br in [&umd, &src, &dst] {
        ovs.add_bridge(br);
    }
    let t = Topotap::start(&["--ovsdb", &ovs.address()]);
    for br in [&umd, &src, &dst] {
        t.expect_one(
            &tag,
            &format!("G.V().Has('Name','{br}','Type','ovsbridge')"),
            DEADLINE,
        )
        .await;
    }

    // TestNodeRuleCreate.
    let node = format!("{p}TestNode");
    let rule = post(
        &t,
        "/api/noderule",
        json!({"Action": "create", "Metadata": {"Name": node, "Type": "fabric"}}),
    )
    .await;
    let q = format!("G.V().Has('Name','{node}','Type','fabric')");
    t.expect_one(&tag, &q, DEADLINE).await;
    delete(&t, &format!("/api/noderule/{rule}")).await;
    t.expect(&tag, &q, json!([]), DEADLINE).await;

    // TestNodeRuleUpdate.
    let rule = post(
        &t,
        "/api/noderule",
        json!({"Action": "update",
               "Query": format!("G.V().Has('Name','{umd}','Type','ovsbridge')"),
               "Metadata": {"testKey": "testValue"}}),
    )
    .await;
    let q = format!("G.V().Has('Name','{umd}','testKey','testValue')");
    t.expect_one(&tag, &q, DEADLINE).await;
    delete(&t, &format!("/api/noderule/{rule}")).await;
    t.expect(&tag, &q, json!([]), DEADLINE).await;
    t.expect_one(
        &tag,
        &format!("G.V().Has('Name','{umd}','Type','ovsbridge')"),
        DEADLINE,
    )
    .await;

    // TestEdgeRuleCreate.
    let rule = post(
        &t,
        "/api/edgerule",
        json!({"Src": format!("G.V().Has('Name','{src}','Type','ovsbridge')"),
               "Dst": format!("G.V().Has('Name','{dst}','Type','ovsbridge')"),
               "Metadata": {"RelationType": "layer2"}}),
    )
    .await;
    let q = format!(
        "G.V().Has('Name','{src}').OutE().Has('RelationType','layer2').OutV().Has('Name','{dst}')"
    );
    t.expect_one(&tag, &q, DEADLINE).await;
    delete(&t, &format!("/api/edgerule/{rule}")).await;
    t.expect(&tag, &q, json!([]), DEADLINE).await;
    drop(t);
    drop(ovs);
}
