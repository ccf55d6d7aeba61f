//! Flows in the history, through a real `topotap allinone` (run as root) capturing real
//! traffic between two namespaces the test creates: once the flows expired, the live
//! `G.Flows()` no longer has them and `G.At(<while the traffic flowed>).Flows()` does,
//! a window's `Flows().Metrics()` is each flow's series of snapshots, and a restart
//! keeps them. Against the embedded store and against a real PostgreSQL the test starts
//! (initdb and pg_ctl in a temp dir, on a unix socket there; Debian's postgresql-15).

mod common;

use std::path::Path;
use std::time::Duration;

use common::net::{quiet_pair, sh};
use common::postgres::Postgres;
use common::{rand_tag, Topotap};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(15);

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn start(state: &Path, extra: &[&str]) -> Topotap {
    let mut args = vec![
        "--ovsdb",
        "none",
        "--state-dir",
        state.to_str().expect("a UTF-8 path"),
        "--flow-update",
        "1",
        "--flow-expire",
        "2",
    ];
    args.extend_from_slice(extra);
    Topotap::start(&args)
}

async fn expect(t: &Topotap, q: &str, want: Value) {
    let (got, ok) = t.wait_for(q, WAIT, |v| v == &want).await;
    assert!(ok, "{q}: got {got}, want {want}");
}

/// Pings from a to b while a capture on a's `eth0` records the flow, lets it expire,
/// then asks the history about it; restarts topotap (with `extra` again) and asks again.
async fn flows_of_the_past(state: &Path, extra: &[&str], subnet: u8) {
    let p = format!("f{}", rand_tag());
    let (_net, mac_a, _) = quiet_pair(&p, &format!("10.79.{subnet}"));
    let t = start(state, extra);
    let q = format!("G.V().Has('Name', '{p}a').Out().Has('Name', 'eth0', 'MAC', '{mac_a}')");
    let (v, ok) = t
        .wait_for(&q, WAIT, |v| v.as_array().is_some_and(|a| a.len() == 1))
        .await;
    assert!(ok, "eth0 of {p}a not found: {v}");
    let a = v[0]["ID"].as_str().unwrap().to_owned();
    let body = json!({"GremlinQuery": format!("G.V('{a}')"), "BPFFilter": "icmp"});
    let (s, cap) = t
        .request("POST", "/api/capture", Some(&body.to_string()))
        .await;
    assert_eq!(s, 201, "{cap}");
    let uuid = cap["UUID"].as_str().unwrap().to_owned();
    let q = format!("G.V('{a}').Has('Captures.ID', '{uuid}', 'Captures.State', 'active')");
    let (v, ok) = t
        .wait_for(&q, WAIT, |v| v.as_array().is_some_and(|a| a.len() == 1))
        .await;
    assert!(ok, "capture not active: {v}");

    // 8 echo requests and replies over 3.5 s: several update intervals of 1 s.
    let began = now_ms();
    sh(&format!(
        "ip netns exec {p}a ping -c 8 -i 0.5 -W 1 10.79.{subnet}.2"
    ));
    let ended = now_ms();
    let during = began + (ended - began) / 2;
    let live = format!("G.Flows().Has('CaptureID', '{uuid}')");
    // Expired (2 s without packets): gone from the live table.
    let (v, ok) = t
        .wait_for(&format!("{live}.Count()"), WAIT, |v| v == &json!(0))
        .await;
    assert!(ok, "the flow did not expire: {v}");

    // While the traffic flowed, the flow was there, captured on a's eth0.
    let at = format!("G.At({during}).Flows().Has('CaptureID', '{uuid}')");
    let (flows, ok) = t
        .wait_for(&at, WAIT, |v| v.as_array().is_some_and(|a| a.len() == 1))
        .await;
    assert!(ok, "{at}: {flows}");
    let f = &flows[0];
    assert_eq!(f["Application"], "ICMPv4", "{f}");
    assert_eq!(f["Link"]["A"], mac_a.as_str(), "{f}");
    let mid = f["Metric"]["ABPackets"].as_u64().unwrap();
    assert!((1..8).contains(&mid), "mid-way, part of the pings: {f}");
    // From the nodes of that time, and the steps on a flow set.
    expect(
        &t,
        &format!("G.At({during}).V('{a}').Flows().Has('CaptureID', '{uuid}').Count()"),
        json!(1),
    )
    .await;
    expect(
        &t,
        &format!("G.At({during}).V().Has('Name', '{p}b').Flows().Count()"),
        json!(0),
    )
    .await;
    expect(
        &t,
        &format!("{at}.Has('Network', '10.79.{subnet}.2').Dedup().Values('Application')"),
        json!(["ICMPv4"]),
    )
    .await;
    // Before the traffic, none.
    expect(
        &t,
        &format!(
            "G.At({}).Flows().Has('CaptureID', '{uuid}').Count()",
            began - 1000
        ),
        json!(0),
    )
    .await;
    // Now, none either: the live table and the history agree.
    expect(
        &t,
        &format!("G.At('-0s').Flows().Has('CaptureID', '{uuid}').Count()"),
        json!(0),
    )
    .await;
    assert_eq!(t.query(&format!("{live}.Count()")).await, json!(0));

    // A window over the whole traffic: the flow in its final state, and its metric
    // series, one sample per snapshot, in time order, adding up to every packet.
    let span = now_ms() - began + 1000;
    let window = format!("G.Context('NOW', '{span}ms').Flows().Has('CaptureID', '{uuid}')");
    let f = t.query(&window).await;
    assert_eq!(f.as_array().map(Vec::len), Some(1), "{f}");
    assert_eq!(f[0]["Metric"]["ABPackets"], 8, "{f}");
    assert_eq!(f[0]["Metric"]["BAPackets"], 8, "{f}");
    let fid = f[0]["UUID"].as_str().unwrap().to_owned();
    let series = t.query(&format!("{window}.Metrics()")).await;
    let samples = series[0][&fid]
        .as_array()
        .unwrap_or_else(|| panic!("no series: {series}"));
    assert!(samples.len() >= 2, "one sample per snapshot: {series}");
    let starts: Vec<i64> = samples
        .iter()
        .map(|s| s["Start"].as_i64().unwrap())
        .collect();
    assert!(starts.windows(2).all(|w| w[0] < w[1]), "{series}");
    // Counters add up: every snapshot counted packets, the running total grows to 8.
    let mut total = 0;
    for s in samples {
        let n = s["ABPackets"].as_u64().unwrap_or(0);
        assert!(n > 0, "a snapshot without packets: {series}");
        total += n;
    }
    assert_eq!(total, 8, "{series}");
    assert_eq!(
        t.query(&format!("{window}.Metrics().Sum('BAPackets')"))
            .await,
        json!(8)
    );
    let agg = t.query(&format!("{window}.Metrics().Aggregates(1)")).await;
    let slices = agg[0]["Aggregated"]
        .as_array()
        .unwrap_or_else(|| panic!("{agg}"));
    let summed: u64 = slices
        .iter()
        .map(|s| s["ABPackets"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(summed, 8, "{agg}");
    // At one instant, the series is the one snapshot valid then.
    let one = t.query(&format!("{at}.Metrics()")).await;
    assert_eq!(one[0][&fid].as_array().map(Vec::len), Some(1), "{one}");

    let (_, status) = t.request("GET", "/api/status", None).await;
    let h = &status["History"];
    assert!(h["FlowsWritten"].as_u64() >= Some(3), "{status}");
    assert_eq!(h["FlowsDropped"], json!(0), "{status}");
    assert_eq!(h["FlowsBacklog"], json!(0), "{status}");

    // Restarted on the same state (and store): the past flows are still there.
    drop(t);
    let t = start(state, extra);
    let (flows, ok) = t
        .wait_for(&at, WAIT, |v| v.as_array().is_some_and(|a| a.len() == 1))
        .await;
    assert!(ok, "after a restart, {at}: {flows}");
    assert_eq!(flows[0]["Metric"]["ABPackets"].as_u64(), Some(mid));
    assert_eq!(
        t.query(&format!("{window}.Metrics().Sum('ABPackets')"))
            .await,
        json!(8)
    );
    expect(&t, &format!("{live}.Count()"), json!(0)).await;
    let (s, e) = t
        .request(
            "POST",
            "/api/topology",
            Some(&json!({"GremlinQuery": "G.At('yesterday-ish').Flows()"}).to_string()),
        )
        .await;
    assert_eq!(s, 400, "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_flows_in_the_embedded_history() {
    let state = tempfile::tempdir().unwrap();
    flows_of_the_past(state.path(), &[], 31).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_flows_in_postgres() {
    let pg = Postgres::start();
    let state = tempfile::tempdir().unwrap();
    let url = pg.url();
    flows_of_the_past(state.path(), &["--history", &url], 32).await;
}
