//! Skydive's functional scenarios for interface facts, replayed against a real
//! `topotap allinone` (run as root) and compared with the real tools' output: ethtool
//! facts of a veth (`ethtool -k`, `ethtool -i`, `ethtool`), the forwarding database of a
//! Linux bridge after a ping (`bridge fdb show`), and TestNameSpaceTwoVeth
//! (`LinkNetNsName` on both ends of a veth split across two namespaces).

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::net::{bridged_pair, sh, Cleanup};
use common::{rand_tag, Topotap};
use serde_json::{json, Map, Value};

const DEADLINE: Duration = Duration::from_secs(10);

fn topotap() -> Topotap {
    Topotap::start(&["--ovsdb", "none"])
}

async fn expect(t: &Topotap, tag: &str, q: &str, want: Value) {
    let (got, ok) = t.wait_for(q, DEADLINE, |v| v == &want).await;
    if !ok {
        panic!("{q}: got {got}, want {want}\n{}", t.dump_named(tag).await);
    }
}

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
    let t = topotap();
    let mut c = Cleanup::new();
    c.netns(&ns);
    sh(&format!(
        "ip -n {ns} link add {a} type veth peer name {b} && ip -n {ns} link set {a} up && \
         ip -n {ns} link set {b} up"
    ));
    expect(
        &t,
        &tag,
        &format!("G.V().Has('Name','{a}').HasKey('Features').Count()"),
        json!(1),
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
    expect(
        &t,
        &tag,
        &format!("G.V().Has('Name','{a}').Values('Features.tx-checksum-ip-generic')"),
        json!([!before]),
    )
    .await;
    let tool = ethtool_k(&ns, &a);
    assert_eq!(tool["tx-checksum-ip-generic"], json!(!before));
    compare(&node(&t, &a).await);
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
    let t = topotap();
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
    let t = topotap();
    let mut c = Cleanup::new();
    c.netns(&ns1);
    c.netns(&ns2);
    sh(&format!(
        "ip -n {ns1} link add {a} type veth peer name {b} netns {ns2}"
    ));
    expect(
        &t,
        &tag,
        &format!("G.V().Has('LinkNetNsName','{ns1}').Values('Name')"),
        json!([b]),
    )
    .await;
    expect(
        &t,
        &tag,
        &format!("G.V().Has('LinkNetNsName','{ns2}').Values('Name')"),
        json!([a]),
    )
    .await;
    expect(
        &t,
        &tag,
        &format!("G.V().Has('Name','{a}').Both().Has('Type','veth').Values('Name')"),
        json!([b]),
    )
    .await;
}
