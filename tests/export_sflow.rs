//! The `sflow` capture target against real collectors: traffic between two namespaces, topotap
//! sampling it, and sfacctd plus tshark in a third namespace reached over a veth.

mod common;

use std::time::Duration;

use common::collector::{
    csv_sum, ifindex, require, send_udp, tshark_fields, tshark_malformed, CollectorNet, Sfacctd,
    Tcpdump,
};
use common::net::{bridged_pair, sh};
use common::{rand_tag, Topotap};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(10);

async fn create_capture(t: &Topotap, body: Value) -> String {
    let (s, cap) = t
        .request("POST", "/api/capture", Some(&body.to_string()))
        .await;
    assert_eq!(s, 201, "{cap}");
    cap["UUID"].as_str().unwrap().to_owned()
}

async fn wait_active(t: &Topotap, uuid: &str) {
    let q = format!("G.V().Has('Captures.ID', '{uuid}', 'Captures.State', 'active')");
    let (v, ok) = t
        .wait_for(&q, WAIT, |v| v.as_array().is_some_and(|a| a.len() == 1))
        .await;
    assert!(ok, "capture {uuid} not active: {v}");
}

/// The capture's `Export` counters on its node.
async fn export_stats(t: &Topotap, uuid: &str) -> Value {
    let v = t
        .query(&format!("G.V().Has('Captures.ID', '{uuid}')"))
        .await;
    v[0]["Metadata"]["Captures"]
        .as_array()
        .and_then(|l| l.iter().find(|c| c["ID"] == uuid))
        .map(|c| c["Export"].clone())
        .unwrap_or(Value::Null)
}

fn split(field: &str) -> Vec<&str> {
    field.split(',').filter(|s| !s.is_empty()).collect()
}

#[tokio::test]
async fn sampled_udp_is_accounted_by_sfacctd_and_decoded_by_tshark() {
    require("sfacctd", "pmacct");
    require("tshark", "tshark");
    require("tcpdump", "tcpdump");
    let p = format!("s{}", rand_tag());
    let mut net = bridged_pair(&p, 31);
    let collector = CollectorNet::new(&p, 31, &mut net);
    let dir = tempfile::tempdir().unwrap();
    // Resolve ARP first so that no datagram waits in the neighbour queue.
    sh(&format!("ip netns exec {p}a ping -c 1 -W 2 10.77.31.2"));

    let mut dump = Tcpdump::start(
        Some(&collector.ns),
        "eth0",
        "udp port 6343",
        &dir.path().join("sflow.pcap"),
    );
    let mut sfacctd = Sfacctd::start(
        &collector.ns,
        &collector.v4,
        6343,
        "src_host, dst_host, proto, dst_port",
        dir.path(),
    );
    // An agent address of our choosing (TEST-NET-2), carried in every datagram.
    let t = Topotap::start(&["--ovsdb", "none", "--sflow-agent-address", "198.51.100.7"]);
    let uuid = create_capture(
        &t,
        json!({
            "GremlinQuery": format!("G.V().Has('Name', '{p}a').Out().Has('Name', 'eth0')"),
            "BPFFilter": "udp and dst port 9999",
            "SamplingRate": 10,
            "PollingInterval": 1,
            "Target": format!("{}:6343", collector.v4),
            "TargetType": "sflow",
        }),
    )
    .await;
    wait_active(&t, &uuid).await;

    // 2,000 datagrams of 100 bytes: 142-byte frames.
    let sent = 2_000u64;
    send_udp(
        &format!("{p}a"),
        "10.77.31.2:9999".parse().unwrap(),
        sent as usize,
        100,
        50,
    );
    // Counter samples every second, flushes within 100 ms.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let (stats, ok) = {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let s = export_stats(&t, &uuid).await;
            if s["Records"].as_u64().unwrap_or(0) > 100 || std::time::Instant::now() > deadline {
                break (s.clone(), s["Records"].as_u64().unwrap_or(0) > 100);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    assert!(ok, "export counters: {stats}");
    assert_eq!(stats["SendErrors"], 0, "{stats}");
    drop(t);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let csv = sfacctd.stop();
    dump.stop();

    // sfacctd renormalises by the sampling rate: the estimate is within ±35 % of what was sent
    // (the standard deviation of a 1-in-10 random sample of 2,000 packets is about 2 %).
    let packets = csv_sum(&csv, "DST_PORT", "9999", "PACKETS");
    let bytes = csv_sum(&csv, "DST_PORT", "9999", "BYTES");
    assert!(
        packets * 100 >= sent * 65 && packets * 100 <= sent * 135,
        "sfacctd counted {packets} packets for {sent} sent:\n{csv}"
    );
    // Its byte count is the sampled frame_length (142 bytes on the wire) times the packets.
    assert_eq!(bytes, packets * 142, "{csv}");

    // Every datagram decodes cleanly and says what we expect.
    let pcap = dir.path().join("sflow.pcap");
    assert_eq!(tshark_malformed(&pcap, &[]), 0, "malformed sFlow datagrams");
    let agent = "198.51.100.7".to_owned();
    let if_index = ifindex(&format!("{p}a"), "eth0").to_string();
    let rows = tshark_fields(
        &pcap,
        &["-Y", "sflow"],
        &[
            "sflow_245.version",
            "sflow_245.agent",
            "sflow_245.sequence_number",
            "sflow_245.sampletype",
            "sflow.flow_sample.sampling_rate",
            "sflow.flow_sample.input_interface",
            "sflow_245.header_protocol",
            "sflow_245.header.frame_length",
            "sflow_245.header.payload_stripped",
            "sflow_245.ifindex",
            "udp.dstport",
        ],
    );
    assert!(!rows.is_empty(), "no sFlow datagram captured");
    let (mut flow_samples, mut counter_samples) = (0, 0);
    let mut datagram_sequences = Vec::new();
    for r in &rows {
        assert_eq!(r[0], "5", "{r:?}");
        assert_eq!(r[1], agent, "agent address: {r:?}");
        // Sample sequence numbers share the field name; the datagram's is the first.
        datagram_sequences.push(split(&r[2])[0].parse::<u32>().unwrap());
        let types = split(&r[3]);
        let flows = types.iter().filter(|t| **t == "1").count();
        flow_samples += flows;
        counter_samples += types.iter().filter(|t| **t == "2").count();
        assert!(split(&r[4]).iter().all(|v| *v == "10"), "{r:?}");
        assert_eq!(split(&r[4]).len(), flows, "{r:?}");
        assert!(split(&r[5]).iter().all(|v| *v == if_index), "{r:?}");
        assert!(split(&r[6]).iter().all(|v| *v == "1"), "Ethernet: {r:?}");
        assert!(split(&r[7]).iter().all(|v| *v == "142"), "{r:?}");
        assert!(split(&r[8]).iter().all(|v| *v == "0"), "{r:?}");
        assert!(split(&r[9]).iter().all(|v| *v == if_index), "{r:?}");
        // The sampled headers decode as the test's UDP datagrams.
        let ports = split(&r[10]);
        assert_eq!(ports[0], "6343");
        assert_eq!(ports.len() - 1, flows, "{r:?}");
        assert!(ports[1..].iter().all(|p| *p == "9999"), "{r:?}");
    }
    assert!(
        (130..=270).contains(&flow_samples),
        "{flow_samples} flow samples for 2,000 packets at 1-in-10"
    );
    assert!(counter_samples >= 2, "{counter_samples} counter samples");
    let expected: Vec<u32> = (1..=rows.len() as u32).collect();
    assert_eq!(datagram_sequences, expected, "datagram sequence numbers");
}
