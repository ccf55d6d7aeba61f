//! Open vSwitch topology through a real `topotap allinone`: every test runs a private
//! OVS (`common::ovs`, userspace datapath, vswitchd in a namespace of its own), points
//! topotap's OVSDB probe at it with `--ovsdb unix:<private socket>` and asserts with
//! Gremlin queries over the HTTP API, polled until a deadline.
//!
//! Needs root and Open vSwitch installed; without OVS the tests fail with an install hint.

mod common;

use std::time::Duration;

use common::net::{sh, Cleanup};
use common::ovs::Ovs;
use common::{rand_tag, Topotap};
use serde_json::{json, Value};

const DEADLINE: Duration = Duration::from_secs(5);
/// How long a reconnection may take: the probe retries with a backoff capped at 5 s.
const RECONNECT: Duration = Duration::from_secs(12);

/// topotap with its probes on and the OVSDB probe on this test's OVS.
fn topotap(ovs: &Ovs) -> Topotap {
    Topotap::start(&["--ovsdb", &ovs.address()])
}

/// Polls `q` until it returns `want`; fails with the last answer and a dump.
async fn expect(t: &Topotap, tag: &str, q: &str, want: Value) {
    let (got, ok) = t.wait_for(q, DEADLINE, |v| v == &want).await;
    if !ok {
        panic!(
            "{q}: got {got}, want {want}\n{}\n{}",
            t.dump_named(tag).await,
            status(t).await
        );
    }
}

/// Polls `q` until it returns exactly one node; returns its ID.
async fn one_id(t: &Topotap, tag: &str, q: &str) -> String {
    let (got, ok) = t
        .wait_for(q, DEADLINE, |v| v.as_array().is_some_and(|a| a.len() == 1))
        .await;
    if !ok {
        panic!("{q}: want one node, got {got}\n{}", t.dump_named(tag).await);
    }
    got[0]["ID"].as_str().expect("node ID").to_owned()
}

/// The OVSDB probe section of `/api/status`.
async fn status(t: &Topotap) -> Value {
    let (code, v) = t.request("GET", "/api/status", None).await;
    assert_eq!(code, 200, "{v}");
    v["Probes"]["ovsdb"].clone()
}

/// Polls `/api/status` until the OVSDB probe section satisfies `check`.
async fn wait_status(
    t: &Topotap,
    what: &str,
    timeout: Duration,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let st = status(t).await;
        if check(&st) {
            return st;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "ovsdb status never {what}: {st}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// bridge -> port -> interface for `port`, and exactly one interface node (neither
/// port nor bridge) named `port`.
async fn expect_chain(t: &Topotap, tag: &str, bridge: &str, port: &str) {
    expect(
        t,
        tag,
        &format!(
            "G.V().Has('Type','ovsbridge','Name','{bridge}').Out().Has('Type','ovsport','Name','{port}')\
             .Out().Has('Name','{port}').Dedup().Count()"
        ),
        json!(1),
    )
    .await;
    expect(
        t,
        tag,
        &format!(
            "G.V().Has('Name','{port}').Has('Type',NE('ovsport')).Has('Type',NE('ovsbridge')).Count()"
        ),
        json!(1),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_port_is_bridge_port_interface() {
    let tag = rand_tag();
    let (br, port) = (format!("b{tag}"), format!("i{tag}"));
    let ovs = Ovs::start(&tag);
    ovs.add_bridge(&br);
    ovs.add_internal_port(&br, &port);
    let t = topotap(&ovs);

    expect_chain(&t, &tag, &br, &port).await;
    // The bridge is owned by the host; both OVS and netlink keys on the interface,
    // OVS's type winning; it is owned by vswitchd's namespace, where the tap lives.
    expect(
        &t,
        &tag,
        &format!("G.V().Has('Type','ovsbridge','Name','{br}').In().Has('Type','host').Count()"),
        json!(1),
    )
    .await;
    expect(
        &t,
        &tag,
        &format!(
            "G.V().Has('Name','{port}','Type','internal').HasKey('UUID').HasKey('OfPort')\
             .HasKey('IfIndex').HasKey('MAC').HasKey('State').Count()"
        ),
        json!(1),
    )
    .await;
    expect(
        &t,
        &tag,
        &format!(
            "G.V().Has('Name','{port}','Type','internal').InE().Has('RelationType','ownership')\
             .InV().Values('Name')"
        ),
        json!([ovs.netns]),
    )
    .await;
    // The bridge's own internal port, too.
    expect_chain(&t, &tag, &br, &br).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn veth_port_is_one_node_with_netlink_and_ovs_keys() {
    let tag = rand_tag();
    let (br, veth, peer) = (format!("b{tag}"), format!("v{tag}"), format!("w{tag}"));
    let ovs = Ovs::start(&tag);
    ovs.ip(&format!("link add {veth} type veth peer name {peer}"));
    ovs.ip(&format!("link set {veth} up"));
    let shown: Value = serde_json::from_str(&ovs.ip(&format!("-j link show dev {veth}"))).unwrap();
    let ifindex = shown[0]["ifindex"].as_i64().unwrap();
    ovs.add_bridge(&br);
    let t = topotap(&ovs);
    // netlink has seen the veth before it becomes a port.
    let before = one_id(
        &t,
        &tag,
        &format!("G.V().Has('Name','{veth}','Type','veth')"),
    )
    .await;
    ovs.vsctl(&format!("add-port {br} {veth}"));

    expect_chain(&t, &tag, &br, &veth).await;
    let q = format!(
        "G.V().Has('Name','{veth}').Has('Type',NE('ovsport')).HasKey('UUID').HasKey('OfPort')"
    );
    let (got, ok) = t
        .wait_for(&q, DEADLINE, |v| {
            v.as_array().is_some_and(|a| {
                a.len() == 1 && a[0]["Metadata"]["OfPort"].as_i64().unwrap_or(0) > 0
            })
        })
        .await;
    assert!(ok, "{q}: {got}\n{}", t.dump_named(&tag).await);
    let m = &got[0]["Metadata"];
    assert_eq!(got[0]["ID"], before, "the netlink node is reused");
    assert_eq!(m["IfIndex"], ifindex, "{m}");
    assert_eq!(m["Type"], "veth", "{m}");
    assert_eq!(m["Driver"], "veth", "{m}");
    // Still owned by its namespace only, and the veth edge to its peer is there.
    expect(
        &t,
        &tag,
        &format!(
            "G.V().Has('Name','{veth}').Has('Type',NE('ovsport')).InE().Has('RelationType','ownership')\
             .InV().Values('Name')"
        ),
        json!([ovs.netns]),
    )
    .await;
    expect(
        &t,
        &tag,
        &format!(
            "G.V().Has('Name','{veth}').Has('Type',NE('ovsport')).BothE()\
             .Has('RelationType','layer2','Type','veth').Count()"
        ),
        json!(1),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patch_ports_have_one_patch_edge() {
    let tag = rand_tag();
    let (b1, b2, pa, pb) = (
        format!("b{tag}"),
        format!("c{tag}"),
        format!("p{tag}"),
        format!("q{tag}"),
    );
    let ovs = Ovs::start(&tag);
    ovs.add_bridge(&b1);
    ovs.add_bridge(&b2);
    ovs.vsctl(&format!(
        "add-port {b1} {pa} -- set interface {pa} type=patch options:peer={pb} \
         -- add-port {b2} {pb} -- set interface {pb} type=patch options:peer={pa}"
    ));
    let t = topotap(&ovs);
    expect_chain(&t, &tag, &b1, &pa).await;
    expect_chain(&t, &tag, &b2, &pb).await;
    for (me, other, bridge) in [(&pa, &pb, &b1), (&pb, &pa, &b2)] {
        expect(
            &t,
            &tag,
            &format!(
                "G.V().Has('Type','patch','Name','{me}').BothE()\
                 .Has('RelationType','layer2','Type','patch').Count()"
            ),
            json!(1),
        )
        .await;
        expect(
            &t,
            &tag,
            &format!(
                "G.V().Has('Type','patch','Name','{me}').Both().Has('Type','patch').Values('Name')"
            ),
            json!([other]),
        )
        .await;
        // Patch interfaces have no netdev: their bridge owns them.
        expect(
            &t,
            &tag,
            &format!(
                "G.V().Has('Type','patch','Name','{me}').InE().Has('RelationType','ownership')\
                 .InV().Values('Name')"
            ),
            json!([bridge]),
        )
        .await;
    }
    // One edge between the pair, seen from the whole graph.
    expect(
        &t,
        &tag,
        &format!(
            "G.V().Has('Name',Regex('[pq]{tag}')).BothE().Has('Type','patch').Dedup().Count()"
        ),
        json!(1),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_port_moved_into_a_namespace_stays_one_node() {
    let tag = rand_tag();
    let (br, port, ns) = (format!("b{tag}"), format!("i{tag}"), format!("n{tag}"));
    let ovs = Ovs::start(&tag);
    let mut c = Cleanup::new();
    c.netns(&ns);
    ovs.add_bridge(&br);
    ovs.add_internal_port(&br, &port);
    let t = topotap(&ovs);
    expect_chain(&t, &tag, &br, &port).await;
    let before = one_id(
        &t,
        &tag,
        &format!("G.V().Has('Name','{port}').Has('Type',NE('ovsport'))"),
    )
    .await;

    // The tap is made by vswitchd in its own namespace; move it into ours.
    ovs.ip(&format!("link set {port} netns {ns}"));
    sh(&format!("ip -n {ns} link set {port} up"));
    expect(
        &t,
        &tag,
        &format!("G.V().Has('Type','netns','Name','{ns}').Out().Has('Name','{port}','Type','internal').Count()"),
        json!(1),
    )
    .await;
    expect(
        &t,
        &tag,
        &format!(
            "G.V().Has('Name','{port}').Has('Type',NE('ovsport')).InE().Has('RelationType','ownership')\
             .InV().Values('Name')"
        ),
        json!([ns]),
    )
    .await;
    expect_chain(&t, &tag, &br, &port).await;
    let after = one_id(
        &t,
        &tag,
        &format!("G.V().Has('Name','{port}').Has('Type',NE('ovsport')).HasKey('UUID')"),
    )
    .await;
    eprintln!("internal port node before the move {before}, after {after}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ovsdb_server_restart_keeps_nodes_and_catches_up() {
    let tag = rand_tag();
    let (br, keep, gone, side, late) = (
        format!("b{tag}"),
        format!("k{tag}"),
        format!("g{tag}"),
        format!("s{tag}"),
        format!("l{tag}"),
    );
    let ovs = Ovs::start(&tag);
    ovs.add_bridge(&br);
    ovs.add_internal_port(&br, &keep);
    ovs.add_internal_port(&br, &gone);
    let t = topotap(&ovs);
    expect_chain(&t, &tag, &br, &keep).await;
    expect_chain(&t, &tag, &br, &gone).await;
    let ids = |name: String| format!("G.V().Has('Name','{name}').Dedup()");
    let mut before = Vec::new();
    // bridge, its port and its interface; the other port and its interface.
    for (name, n) in [(&br, 3), (&keep, 2)] {
        let (v, ok) = t
            .wait_for(&ids(name.clone()), DEADLINE, |v| {
                v.as_array().is_some_and(|a| a.len() == n)
            })
            .await;
        assert!(ok, "{name}: want {n} nodes, got {v}");
        let mut v: Vec<String> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["ID"].as_str().unwrap().to_owned())
            .collect();
        v.sort();
        before.push(v);
    }

    // Crash the server; while it is down, change the database through a socket the
    // probe does not know, then let the server listen on the usual socket again.
    ovs.kill_server();
    wait_status(&t, "disconnected", DEADLINE, |s| s["Connected"] == false).await;
    ovs.start_server(&["side.sock"]);
    ovs.vsctl_on(
        "side.sock",
        &[
            "--no-wait",
            "del-port",
            &br,
            &gone,
            "--",
            "add-port",
            &br,
            &side,
            "--",
            "set",
            "interface",
            &side,
            "type=internal",
        ],
    );
    ovs.add_remote("db.sock");
    wait_status(&t, "reconnected", RECONNECT, |s| s["Connected"] == true).await;
    // And a port added once everything is back.
    ovs.add_internal_port(&br, &late);

    expect_chain(&t, &tag, &br, &side).await;
    expect_chain(&t, &tag, &br, &late).await;
    expect(
        &t,
        &tag,
        &format!("G.V().Has('Name','{gone}').Count()"),
        json!(0),
    )
    .await;
    for (name, want) in [&br, &keep].into_iter().zip(&before) {
        let v = t.query(&ids(name.clone())).await;
        let mut got: Vec<String> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["ID"].as_str().unwrap().to_owned())
            .collect();
        got.sort();
        assert_eq!(&got, want, "{name}: node IDs changed across the restart");
    }
    let st = status(&t).await;
    assert!(
        st["Connected"] == true && st["Sessions"].as_u64().unwrap_or(0) >= 2,
        "{st}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_the_ovsdb_connection_state() {
    let tag = rand_tag();
    let br = format!("b{tag}");
    let ovs = Ovs::start(&tag);
    ovs.add_bridge(&br);
    let t = topotap(&ovs);
    let st = wait_status(&t, "connected", DEADLINE, |s| {
        s["Connected"] == true && s["State"] == "Running"
    })
    .await;
    assert_eq!(st["Address"], ovs.address(), "{st}");
    assert_eq!(st["Sessions"], 1, "{st}");

    ovs.kill_server();
    let st = wait_status(&t, "in error", DEADLINE, |s| {
        s["Connected"] == false && s["State"] == "Error" && s["LastError"].is_string()
    })
    .await;
    eprintln!("ovsdb status while the server is down: {st}");
    // It keeps retrying: still in error a while later, and the graph keeps the bridge.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let st = status(&t).await;
    assert_eq!(st["State"], "Error", "{st}");
    expect(
        &t,
        &tag,
        &format!("G.V().Has('Type','ovsbridge','Name','{br}').Count()"),
        json!(1),
    )
    .await;

    ovs.start_server(&["db.sock"]);
    let st = wait_status(&t, "reconnected", RECONNECT, |s| {
        s["Connected"] == true && s["State"] == "Running"
    })
    .await;
    assert_eq!(st["Sessions"], 2, "{st}");
}
