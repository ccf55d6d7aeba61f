//! Flows in the history, through a real `topotap allinone` (run as root) capturing real
//! traffic between two namespaces the test creates: once the flows expired, the live
//! `G.Flows()` no longer has them and `G.At(<while the traffic flowed>).Flows()` does,
//! a window's `Flows().Metrics()` is each flow's series of snapshots, their raw packets
//! are still there (as JSON and as a pcap file), and a restart keeps them. A pcap upload's
//! flows are recorded on the file's clock. Against the embedded store and against a real PostgreSQL the test starts
//! (initdb and pg_ctl in a temp dir, on a unix socket there; Debian's postgresql-15).

mod common;

use std::path::Path;
use std::time::Duration;

use common::net::{quiet_pair, sh};
use common::postgres::Postgres;
use common::{rand_tag, Topotap};
use serde_json::{json, Value};
use topotap_targets::flow::synth::udp_frame;
use topotap_targets::packet::{LinkType, Timestamp};
use topotap_targets::pcapfile::{PcapStream, PcapWriter};

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
    let body = json!({"GremlinQuery": format!("G.V('{a}')"), "BPFFilter": "icmp",
                      "RawPacketLimit": 4});
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

    // The raw packets kept with the snapshots: over the window, the flow's first 4
    // frames (2 requests, 2 replies); mid-way, those kept by then; before, none.
    raw_packets_of_the_past(&t, &window, &fid, 4, 2).await;
    let mid_raw = t.query(&format!("{at}.RawPackets()")).await;
    let n = mid_raw[0][&fid].as_array().map_or(0, Vec::len);
    assert!((1..=4).contains(&n), "{mid_raw}");
    expect(
        &t,
        &format!(
            "G.At({}).Flows().Has('CaptureID', '{uuid}').RawPackets()",
            began - 1000
        ),
        json!([]),
    )
    .await;

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
    raw_packets_of_the_past(&t, &window, &fid, 4, 2).await;
    let (s, e) = t
        .request(
            "POST",
            "/api/topology",
            Some(&json!({"GremlinQuery": "G.At('yesterday-ish').Flows()"}).to_string()),
        )
        .await;
    assert_eq!(s, 400, "{e}");
}

/// The answer to `query` asked as a pcap file.
async fn pcap_of(t: &Topotap, query: &str) -> (u16, Vec<u8>) {
    let resp = reqwest::Client::new()
        .post(t.url("/api/topology"))
        .header("Accept", "application/vnd.tcpdump.pcap")
        .header("Content-Type", "application/json")
        .body(json!({ "GremlinQuery": query }).to_string())
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    (status, resp.bytes().await.expect("body").to_vec())
}

/// The packets of a pcap file: (time in µs, captured bytes).
fn pcap_packets(file: &[u8]) -> Vec<(u64, Vec<u8>)> {
    let mut stream = PcapStream::new(file).expect("a pcap file");
    let mut out = Vec::new();
    while let Some(r) = stream.next_record() {
        let r = r.expect("a whole record");
        out.push((r.timestamp.as_micros(), r.data.to_vec()));
    }
    out
}

/// `flows.RawPackets()` of a past time: `n` frames of flow `fid`, numbered from 1,
/// `replies` of them ICMP echo replies (`BPF`), and the same frames as a pcap file.
async fn raw_packets_of_the_past(t: &Topotap, flows: &str, fid: &str, n: usize, replies: u64) {
    let q = format!("{flows}.RawPackets()");
    let raw = t.query(&q).await;
    let frames = raw[0][fid]
        .as_array()
        .unwrap_or_else(|| panic!("{q}: {raw}"));
    assert_eq!(frames.len(), n, "{raw}");
    let index: Vec<u64> = frames.iter().filter_map(|f| f["Index"].as_u64()).collect();
    assert_eq!(index, (1..=n as u64).collect::<Vec<_>>(), "{raw}");
    assert!(frames.iter().all(|f| f["LinkType"] == 1), "{raw}");
    let bpf = t
        .query(&format!("{q}.BPF('icmp[icmptype] == 0').Count()"))
        .await;
    assert_eq!(bpf, json!(replies), "{raw}");
    let (status, file) = pcap_of(t, &q).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&file));
    let packets = pcap_packets(&file);
    assert_eq!(packets.len(), n);
    use base64::Engine as _;
    let first = base64::engine::general_purpose::STANDARD
        .decode(frames[0]["Data"].as_str().unwrap())
        .unwrap();
    assert_eq!(packets[0].1, first);
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

/// A pcap file of `flows` UDP flows, `rounds` packets each, a packet every 100 ms from
/// `start_ms` on.
fn pcap_file(start_ms: u64, flows: u32, rounds: u32) -> Vec<u8> {
    let mut w = PcapWriter::new(Vec::new(), LinkType::Ethernet, 65_535).unwrap();
    let mut at = start_ms;
    for round in 0..rounds {
        for flow in 0..flows {
            let frame = udp_frame(flow, round % 2 == 1);
            w.write_packet(Timestamp::from_millis(at), frame.len() as u32, &frame)
                .unwrap();
            at += 100;
        }
    }
    w.flush().unwrap();
    w.into_inner()
}

/// A pcap upload's flows are in the history at the file's times, with their raw
/// packets, and end with the file.
async fn uploaded_flows_of_the_past(extra: &[&str]) {
    let state = tempfile::tempdir().unwrap();
    let t = start(state.path(), extra);
    // 3 flows of 8 packets over 2.4 s, ended a moment ago (within the history: a
    // time before it began has no flows).
    tokio::time::sleep(Duration::from_secs(4)).await;
    let began = now_ms() as u64 - 3000;
    let file = pcap_file(began, 3, 8);
    let resp = reqwest::Client::new()
        .post(t.url("/api/pcap?RawPacketLimit=2"))
        .header("Content-Type", "application/vnd.tcpdump.pcap")
        .body(file)
        .send()
        .await
        .expect("upload");
    assert_eq!(resp.status().as_u16(), 202);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["Flows"], 3, "{v}");
    let id = v["CaptureID"].as_str().unwrap().to_owned();
    let mid = began + 1200;
    let at = format!("G.At({mid}).Flows().Has('CaptureID', '{id}')");
    let (flows, ok) = t
        .wait_for(&at, WAIT, |v| v.as_array().is_some_and(|a| a.len() == 3))
        .await;
    assert!(ok, "{at}: {flows}");
    let total: u64 = flows
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            f["Metric"]["ABPackets"].as_u64().unwrap() + f["Metric"]["BAPackets"].as_u64().unwrap()
        })
        .sum();
    assert!(
        (3..24).contains(&total),
        "mid-way, part of the file: {flows}"
    );
    // Over the whole file, every packet; after it, none; two frames kept per flow.
    let window = format!(
        "G.At({}, '10s').Flows().Has('CaptureID', '{id}')",
        began + 5000
    );
    assert_eq!(
        t.query(&format!("{window}.Sum('Metric.ABPackets')"))
            .await
            .as_f64(),
        Some(12.0)
    );
    expect(
        &t,
        &format!(
            "G.At({}).Flows().Has('CaptureID', '{id}').Count()",
            began + 4000
        ),
        json!(0),
    )
    .await;
    expect(
        &t,
        &format!(
            "G.At({}).Flows().Has('CaptureID', '{id}').Count()",
            began - 500
        ),
        json!(0),
    )
    .await;
    let raw = t.query(&format!("{window}.RawPackets()")).await;
    let frames: Vec<&Value> = raw[0]
        .as_object()
        .unwrap_or_else(|| panic!("{raw}"))
        .values()
        .collect();
    assert_eq!(frames.len(), 3, "{raw}");
    assert!(
        frames.iter().all(|f| f.as_array().map(Vec::len) == Some(2)),
        "{raw}"
    );
    let (status, pcap) = pcap_of(&t, &format!("{window}.RawPackets()")).await;
    assert_eq!(status, 200);
    let packets = pcap_packets(&pcap);
    assert_eq!(packets.len(), 6);
    // The file's own times, in order: the first two rounds.
    let times: Vec<u64> = packets.iter().map(|p| p.0 / 1000).collect();
    let want: Vec<u64> = (0..6).map(|i| began + 100 * i).collect();
    assert_eq!(times, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploaded_flows_in_the_embedded_history() {
    uploaded_flows_of_the_past(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploaded_flows_in_postgres() {
    let pg = Postgres::start();
    let url = pg.url();
    uploaded_flows_of_the_past(&["--history", &url]).await;
}
