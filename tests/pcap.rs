//! `POST /api/pcap`: offline captures through the same flow table, against a real
//! topotap process.

mod common;

use common::Topotap;
use serde_json::{json, Value};
use topotap_targets::flow::synth::udp_pcap;

async fn upload(t: &Topotap, query: &str, body: Vec<u8>) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(t.url(&format!("/api/pcap{query}")))
        .body(body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test]
async fn pcap_upload_builds_queryable_flows() {
    let t = Topotap::start_api_only();
    // 4,000 packets over 100 flows; every fourth round goes B to A.
    let (s, v) = upload(&t, "", udp_pcap(4_000, 100)).await;
    assert_eq!(s, 202, "{v}");
    assert_eq!(v["Packets"], 4_000);
    assert_eq!(v["Flows"], 100);
    let id = v["CaptureID"].as_str().unwrap();

    let q = format!("G.Flows().Has('CaptureID', '{id}').Count()");
    assert_eq!(t.query(&q).await, json!(100));
    let q = format!("G.Flows().Has('CaptureID', '{id}').Sum('Metric.ABPackets')");
    assert_eq!(t.query(&q).await.as_f64(), Some(3_000.0));
    let q = format!("G.Flows().Has('CaptureID', '{id}').Sum('Metric.BAPackets')");
    assert_eq!(t.query(&q).await.as_f64(), Some(1_000.0));
    let q = format!("G.Flows().Has('CaptureID', '{id}', 'LayersPath', 'Ethernet/IPv4/UDP').Sort(DESC, 'Metric.ABPackets').Limit(2).Values('Transport.Protocol')");
    assert_eq!(t.query(&q).await, json!(["UDP", "UDP"]));

    // L3 key mode is accepted as a parameter.
    let (s, v) = upload(&t, "?LayerKeyMode=L3&Name=offline", udp_pcap(10, 2)).await;
    assert_eq!(s, 202, "{v}");
    assert_eq!(v["Flows"], 2);
}

#[tokio::test]
async fn bad_pcap_bodies_get_clear_answers() {
    let t = Topotap::start_api_only();
    let (s, v) = upload(&t, "", b"\x7fELF not a capture at all".to_vec()).await;
    assert_eq!(s, 400);
    assert!(
        v.as_str()
            .unwrap()
            .starts_with("not a pcap file: bad magic 0x"),
        "{v}"
    );
    let (s, _) = upload(&t, "", Vec::new()).await;
    assert_eq!(s, 400);

    // Cut in the middle of a record: what came before is used, the damage reported.
    let mut body = udp_pcap(100, 10);
    body.truncate(body.len() - 20);
    let (s, v) = upload(&t, "", body).await;
    assert_eq!(s, 202, "{v}");
    assert_eq!(v["Packets"], 99);
    assert!(v["Error"].as_str().unwrap().contains("truncated"), "{v}");

    let (s, v) = upload(&t, "?TargetType=bogus&Target=127.0.0.1:9", udp_pcap(1, 1)).await;
    assert_eq!(s, 400);
    assert!(
        v.as_str()
            .unwrap()
            .starts_with("TargetType: Not a valid target type"),
        "{v}"
    );
    let (s, v) = upload(&t, "?SamplingRate=lots", udp_pcap(1, 1)).await;
    assert_eq!(s, 400);
    assert!(
        v.as_str()
            .unwrap()
            .starts_with("SamplingRate: not a number"),
        "{v}"
    );

    // The server is still fine.
    assert_eq!(t.query("G.V().Count()").await, json!(0));
}

#[tokio::test]
async fn cli_uploads_a_capture_file() {
    let t = Topotap::start_api_only();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("trace.pcap");
    std::fs::write(&file, udp_pcap(40, 4)).unwrap();
    let bin = env!("CARGO_BIN_EXE_topotap");
    let out = std::process::Command::new(bin)
        .args(["client", "--analyzer", &t.addr, "pcap"])
        .arg(&file)
        .args(["--layer-key-mode", "L3", "--name", "a trace"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (v["Packets"].as_u64(), v["Flows"].as_u64()),
        (Some(40), Some(4))
    );

    let bad = dir.path().join("notes.txt");
    std::fs::write(&bad, "not a capture").unwrap();
    let out = std::process::Command::new(bin)
        .args(["client", "--analyzer", &t.addr, "pcap"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("400 Bad Request: not a pcap file"), "{err}");
    let out = std::process::Command::new(bin)
        .args(["client", "--analyzer", &t.addr, "pcap", "/nonexistent.pcap"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8(out.stderr)
        .unwrap()
        .contains("cannot read /nonexistent.pcap"));
}
