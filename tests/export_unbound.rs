//! Collectors that only sniff: nothing is bound on the collector's port (a collector that
//! captures with libpcap, tcpdump on the collector host, a collector restarting), so every
//! datagram draws an ICMP port unreachable. topotap's connected socket hears of it on the next
//! send; no datagram may be lost to it. tcpdump in the collector's namespace sees what arrived.

mod common;

use std::path::Path;
use std::time::Duration;

use common::collector::{send_udp, CollectorNet, Tcpdump};
use common::net::{bridged_pair, sh};
use common::nfdump::{create_capture, wait_state};
use common::{rand_tag, Topotap};
use serde_json::{json, Value};
use topotap_targets::flow::synth::udp_pcap;
use topotap_targets::pcapfile::PcapReader;
use topotap_targets::wire::ipfix::{Message, TemplateCache};
use topotap_targets::wire::sflow5::Datagram;

/// The UDP payloads of the frames (Ethernet, IPv4) of a tcpdump file.
fn udp_payloads(path: &Path) -> Vec<Vec<u8>> {
    let bytes = std::fs::read(path).unwrap();
    PcapReader::new(&bytes)
        .unwrap()
        .map(|r| {
            let f = r.unwrap().data;
            assert_eq!(&f[12..14], &[0x08, 0x00], "IPv4 only");
            let ihl = usize::from(f[14] & 0x0f) * 4;
            f[14 + ihl + 8..].to_vec()
        })
        .collect()
}

/// Every flow sample of a live sFlow capture at sampling rate 1 arrives, one datagram per packet.
#[tokio::test]
async fn live_sflow_samples_all_reach_a_sniffing_collector() {
    let p = format!("u{}", rand_tag());
    let mut net = bridged_pair(&p, 61);
    let collector = CollectorNet::new(&p, 61, &mut net);
    let dir = tempfile::tempdir().unwrap();
    sh(&format!("ip netns exec {p}a ping -c 1 -W 2 10.77.61.2"));
    let wire = dir.path().join("sflow.pcap");
    let mut dump = Tcpdump::start(Some(&collector.ns), "eth0", "udp port 6343", &wire);

    let t = Topotap::start(&["--ovsdb", "none"]);
    let uuid = create_capture(
        &t,
        json!({
            "GremlinQuery": format!("G.V().Has('Name', '{p}a').Out().Has('Name', 'eth0')"),
            "BPFFilter": "udp and dst port 9999",
            "SamplingRate": 1,
            "PollingInterval": 0,
            "Target": format!("{}:6343", collector.v4),
            "TargetType": "sflow",
        }),
    )
    .await;
    wait_state(&t, &uuid, "active").await;
    // One packet per tick (100 ms): each sample leaves in its own datagram, after the ICMP error
    // of the previous one came back.
    for _ in 0..10 {
        send_udp(
            &format!("{p}a"),
            "10.77.61.2:9999".parse().unwrap(),
            1,
            100,
            0,
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // The counters in the graph are refreshed at most once a second: wait for the last packet.
    let q = format!("G.V().Has('Captures.ID', '{uuid}', 'Captures.PacketsReceived', 10)");
    let (v, ok) = t
        .wait_for(&q, Duration::from_secs(10), |v| {
            v.as_array().is_some_and(|a| a.len() == 1)
        })
        .await;
    let e = common::nfdump::entry(&v, &uuid);
    assert!(ok, "the capture did not see the 10 packets: {v}");
    drop(t);
    dump.stop();

    let samples: usize = udp_payloads(&wire)
        .iter()
        .map(|d| Datagram::parse(d).unwrap().samples.len())
        .sum();
    let export = &e["Export"];
    assert_eq!(samples, 10, "samples that reached the collector; {e}");
    assert_eq!(export["Records"], 10, "{e}");
    assert_eq!(export["SendErrors"], 0, "{e}");
    assert!(
        export["Refused"].as_u64().unwrap_or(0) >= 1,
        "no ICMP error came back: {e}"
    );
}

async fn upload(t: &Topotap, query: &str, body: Vec<u8>) -> Value {
    let resp = reqwest::Client::new()
        .post(t.url(&format!("/api/pcap{query}")))
        .header("Content-Type", "application/vnd.tcpdump.pcap")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 202);
    resp.json().await.unwrap()
}

/// Capture files exported in bursts (sFlow at sampling rate 1, IPFIX with its templates and data
/// sets): every datagram arrives, and the refusals are counted apart.
#[tokio::test]
async fn uploaded_exports_all_reach_a_sniffing_collector() {
    let p = format!("v{}", rand_tag());
    let mut net = common::net::Cleanup::new();
    let collector = CollectorNet::new(&p, 62, &mut net);
    let dir = tempfile::tempdir().unwrap();
    sh(&format!("ping -c 1 -W 2 {}", collector.v4));
    let wire = dir.path().join("export.pcap");
    let mut dump = Tcpdump::start(
        Some(&collector.ns),
        "eth0",
        "udp port 6343 or udp port 4739",
        &wire,
    );
    let t = Topotap::start_api_only();
    let sflow = upload(
        &t,
        &format!(
            "?TargetType=sflow&Target={}:6343&SamplingRate=1",
            collector.v4
        ),
        udp_pcap(2_000, 20),
    )
    .await;
    let ipfix = upload(
        &t,
        &format!("?TargetType=ipfix&Target={}:4739", collector.v4),
        udp_pcap(3_000, 300),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(t);
    dump.stop();

    let (mut samples, mut records, mut messages) = (0, 0, 0);
    let mut cache = TemplateCache::new();
    for d in udp_payloads(&wire) {
        // IPFIX messages start with version 10, sFlow datagrams with 5.
        if d[..2] == [0, 10] {
            let m = Message::parse(&d, &mut cache).expect("a message whose templates arrived");
            records += m.data_records().count();
            messages += 1;
        } else {
            samples += Datagram::parse(&d).unwrap().samples.len();
        }
    }
    assert_eq!(samples, 2_000, "{sflow}");
    assert_eq!(sflow["Export"]["Records"], 2_000, "{sflow}");
    assert_eq!(sflow["Export"]["SendErrors"], 0, "{sflow}");
    // 300 conversations, both directions.
    assert_eq!(records, 600, "{ipfix}");
    assert_eq!(ipfix["Export"]["Messages"], messages, "{ipfix}");
    assert_eq!(ipfix["Export"]["SendErrors"], 0, "{ipfix}");
    let refused = sflow["Export"]["Refused"].as_u64().unwrap_or(0)
        + ipfix["Export"]["Refused"].as_u64().unwrap_or(0);
    assert!(refused >= 1, "no ICMP error came back: {sflow} {ipfix}");
}
