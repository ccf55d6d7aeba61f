//! The `netflowv5` capture target against a real collector: traffic between two namespaces, topotap
//! capturing it and exporting NetFlow v5 from the root namespace to nfcapd in a third namespace
//! reached over a veth; nfdump and tshark check what arrived against what really went over the wire.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::collector::{
    ifindex, in_netns, require, send_udp, tshark_fields, tshark_malformed, CollectorNet, Tcpdump,
};
use common::net::{bridged_pair, sh};
use common::nfdump::{
    aggregate, create_capture, delete_capture, ground_truth, tcp_exchange, wait_state, Nfcapd,
};
use common::{rand_tag, Topotap};
use serde_json::json;

/// Pings, a UDP burst of known size and a TCP exchange between `<p>a` and `<p>b`, captured on
/// `<p>a`'s eth0 and exported as NetFlow v5: nfcapd receives exactly the packets and Layer-3 bytes
/// that went over the wire, one record per direction with the right protocol, ports, ICMP type,
/// TCP flags and ifindex, with no sequence failure; tshark decodes every datagram cleanly. The
/// capture is deleted right after the traffic, long before the 60 s active timeout: what arrives
/// was flushed by the deletion.
#[tokio::test]
async fn flows_reach_nfcapd_exactly_and_deleting_the_capture_flushes_them() {
    require("tshark", "tshark");
    let p = format!("n{}", rand_tag());
    let mut net = bridged_pair(&p, 51);
    let collector = CollectorNet::new(&p, 51, &mut net);
    let dir = tempfile::tempdir().unwrap();
    let mut nfcapd = Nfcapd::start(&collector.ns, &collector.v4, 2055, dir.path());
    let wire = dir.path().join("export.pcap");
    let mut export_dump = Tcpdump::start(Some(&collector.ns), "eth0", "udp port 2055", &wire);
    // Warm ARP up so the exchanges below are the only IP traffic of interest.
    sh(&format!("ip netns exec {p}a ping -c 1 -W 2 10.77.51.2"));

    let t = Topotap::start(&["--ovsdb", "none"]);
    let started = Instant::now();
    let uuid = create_capture(
        &t,
        json!({
            "GremlinQuery": format!("G.V().Has('Name', '{p}a').Out().Has('Name', 'eth0')"),
            "TargetType": "netflowv5",
            "Target": format!("{}:2055", collector.v4),
        }),
    )
    .await;
    wait_state(&t, &uuid, "active").await;
    let truth_pcap = dir.path().join("truth.pcap");
    let mut truth_dump = Tcpdump::start(Some(&format!("{p}a")), "eth0", "ip", &truth_pcap);

    sh(&format!(
        "ip netns exec {p}a ping -c 5 -i 0.2 -s 56 -W 1 10.77.51.2"
    ));
    // A receiver, so that b answers no ICMP port unreachable.
    let server: SocketAddr = "10.77.51.2:9999".parse().unwrap();
    let _receiver = in_netns(&format!("{p}b"), move || UdpSocket::bind(server).unwrap());
    send_udp(&format!("{p}a"), server, 100, 200, 20);
    tcp_exchange(
        &format!("{p}a"),
        &format!("{p}b"),
        "10.77.51.2:8080".parse().unwrap(),
        20_000,
    );
    // Let the capture thread see the last packets.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = wait_state(&t, &uuid, "active").await;
    assert_eq!(
        before["Export"]["Messages"], 0,
        "nothing may be exported before a timeout or the deletion: {before}"
    );

    delete_capture(&t, &uuid).await;
    assert!(
        started.elapsed() < Duration::from_secs(55),
        "the test must beat the active timeout"
    );
    truth_dump.stop();
    tokio::time::sleep(Duration::from_millis(300)).await;
    export_dump.stop();

    let truth = ground_truth(&truth_pcap);
    let flows = nfcapd.flows();
    let got = aggregate(&flows);
    // Only the test's exchanges: the namespace also sends the odd IGMP report on its own.
    let ours = |k: &(u8, String, String, u16, u16)| {
        k.1.starts_with("10.77.51.") && k.2.starts_with("10.77.51.")
    };
    let truth: std::collections::BTreeMap<_, _> =
        truth.into_iter().filter(|(k, _)| ours(k)).collect();
    let got: std::collections::BTreeMap<_, _> = got.into_iter().filter(|(k, _)| ours(k)).collect();
    let flows: Vec<_> = flows
        .into_iter()
        .filter(|f| f.src.starts_with("10.77.51.") && f.dst.starts_with("10.77.51."))
        .collect();
    assert_eq!(got, truth, "nfdump records vs the wire");

    // The exchanges, spelled out.
    let (a, b) = ("10.77.51.1".to_owned(), "10.77.51.2".to_owned());
    let ping_out = &got[&(1, a.clone(), b.clone(), 0, 8 << 8)];
    let ping_back = &got[&(1, b.clone(), a.clone(), 0, 0)];
    assert_eq!((ping_out.packets, ping_out.bytes), (5, 5 * 84));
    assert_eq!((ping_back.packets, ping_back.bytes), (5, 5 * 84));
    let udp = got
        .iter()
        .find(|(k, _)| k.0 == 17 && k.4 == 9999)
        .map(|(_, c)| *c)
        .expect("the UDP flow");
    assert_eq!((udp.packets, udp.bytes), (100, 100 * 228));
    let tcp_out = got
        .iter()
        .find(|(k, _)| k.0 == 6 && k.4 == 8080)
        .map(|(_, c)| *c)
        .expect("the TCP flow");
    let tcp_back = got
        .iter()
        .find(|(k, _)| k.0 == 6 && k.3 == 8080)
        .map(|(_, c)| *c)
        .expect("the TCP answer");
    assert_eq!(
        tcp_out.tcp_flags & 0x13,
        0x13,
        "SYN, ACK and FIN from the client"
    );
    assert_eq!(
        tcp_back.tcp_flags & 0x13,
        0x13,
        "SYN, ACK and FIN from the server"
    );
    assert!(tcp_out.bytes > 20_000 && tcp_back.bytes > 20_000);
    // One record per direction, all with the captured interface as input.
    let eth0 = ifindex(&format!("{p}a"), "eth0");
    assert_eq!(
        flows.len(),
        got.len(),
        "one record per direction: {flows:#?}"
    );
    assert!(
        flows.iter().all(|f| f.input == eth0 && f.output == 0),
        "{flows:#?}"
    );

    let summary = nfcapd.summary();
    let value = |k: &str| summary.get(k).cloned().unwrap_or_default();
    assert_eq!(value("Sequence failures"), "0", "{summary:?}");

    // tshark: clean v5 datagrams, at most 30 records each, sequence = records before.
    assert_eq!(tshark_malformed(&wire, &["-d", "udp.port==2055,cflow"]), 0);
    let rows = tshark_fields(
        &wire,
        &["-d", "udp.port==2055,cflow"],
        &[
            "cflow.version",
            "cflow.count",
            "cflow.sequence",
            "cflow.samplerate",
        ],
    );
    assert!(!rows.is_empty(), "no export datagram captured");
    let mut expected_seq = 0u64;
    for r in &rows {
        assert_eq!(r[0], "5", "{rows:?}");
        let count: u64 = r[1].parse().unwrap();
        assert!((1..=30).contains(&count), "{rows:?}");
        assert_eq!(r[2].parse::<u64>().unwrap(), expected_seq, "{rows:?}");
        expected_seq += count;
    }
    assert_eq!(expected_seq.to_string(), value("Flows"), "{summary:?}");
}

/// A collector that refuses (no nfcapd: ICMP port unreachable) is counted as `Refused`, not as
/// send errors (every datagram still leaves: tests/export_unbound.rs): the capture stays active,
/// and so does a local capture on the same interface. IPv6 flows are counted as skipped,
/// 1-in-N sampling is applied and announced, and an unresolvable target puts the capture in error.
#[tokio::test]
async fn refused_collector_counts_refusals_ipv6_is_skipped_and_sampling_is_announced() {
    let p = format!("r{}", rand_tag());
    let mut net = bridged_pair(&p, 52);
    let collector = CollectorNet::new(&p, 52, &mut net);
    for (side, host) in [("a", 1), ("b", 2)] {
        sh(&format!(
            "ip -n {p}{side} addr add fd00:77:52::{host}/64 dev eth0 nodad"
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let mut nfcapd = Nfcapd::start(&collector.ns, &collector.v4, 2056, dir.path());
    let wire = dir.path().join("export.pcap");
    let mut export_dump = Tcpdump::start(Some(&collector.ns), "eth0", "udp port 2056", &wire);

    let t = Topotap::start(&["--ovsdb", "none"]);
    let query = format!("G.V().Has('Name', '{p}a').Out().Has('Name', 'eth0')");
    let refused = create_capture(
        &t,
        json!({"GremlinQuery": query, "TargetType": "netflowv5", "Target": format!("{}:2055", collector.v4)}),
    )
    .await;
    let sampled = create_capture(
        &t,
        json!({"GremlinQuery": query, "BPFFilter": "udp and port 9999", "SamplingRate": 4,
               "TargetType": "netflowv5", "Target": format!("{}:2056", collector.v4)}),
    )
    .await;
    let local = create_capture(&t, json!({"GremlinQuery": query, "BPFFilter": "icmp"})).await;
    let unresolvable = create_capture(
        &t,
        json!({"GremlinQuery": query, "TargetType": "netflowv5", "Target": "no-such-collector.invalid:2055"}),
    )
    .await;
    for u in [&refused, &sampled, &local] {
        wait_state(&t, u, "active").await;
    }
    let err = wait_state(&t, &unresolvable, "error").await;
    assert!(
        err["Error"]
            .as_str()
            .unwrap_or("")
            .contains("cannot resolve"),
        "{err}"
    );

    sh(&format!(
        "ip netns exec {p}a ping -c 2 -i 0.2 -W 1 10.77.52.2"
    ));
    sh(&format!(
        "ip netns exec {p}a ping -6 -c 2 -i 0.2 -W 1 fd00:77:52::2"
    ));
    let server: SocketAddr = "10.77.52.2:9999".parse().unwrap();
    let _receiver = in_netns(&format!("{p}b"), move || UdpSocket::bind(server).unwrap());
    send_udp(&format!("{p}a"), server, 100, 50, 20);
    // 40 more flows: enough records for several datagrams, so that sends after the first see the
    // refusal.
    for port in 0..40u16 {
        let dst: SocketAddr = format!("10.77.52.2:{}", 20_000 + port).parse().unwrap();
        send_udp(&format!("{p}a"), dst, 1, 10, 0);
    }

    // Everything goes idle: the inactive timeout (15 s) exports it.
    let q = format!("G.V().Has('Captures.ID', '{refused}', 'Captures.Export.Refused', GT(0))");
    let (v, ok) = t
        .wait_for(&q, Duration::from_secs(30), |v| {
            v.as_array().is_some_and(|a| a.len() == 1)
        })
        .await;
    assert!(ok, "no refusal counted: {v}");
    let e = wait_state(&t, &refused, "active").await;
    let export = &e["Export"];
    assert_eq!(export["SendErrors"], 0, "{e}");
    assert!(export["Messages"].as_u64().unwrap_or(0) >= 2, "{e}");
    assert!(
        export["Skipped"].as_u64().unwrap_or(0) >= 1,
        "IPv6 ping skipped: {e}"
    );
    let l = wait_state(&t, &local, "active").await;
    assert!(l["PacketsReceived"].as_u64().unwrap_or(0) >= 4, "{l}");

    // The sampled capture: exactly 1 UDP packet in 4 of the 100, announced in the header.
    let q = format!("G.V().Has('Captures.ID', '{sampled}', 'Captures.Export.Records', GT(0))");
    let (v, ok) = t
        .wait_for(&q, Duration::from_secs(30), |v| {
            v.as_array().is_some_and(|a| a.len() == 1)
        })
        .await;
    assert!(ok, "sampled flows not exported: {v}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    export_dump.stop();
    let flows = nfcapd.flows();
    let udp: Vec<_> = flows.iter().filter(|f| f.dst_port == 9999).collect();
    assert_eq!(udp.len(), 1, "{flows:#?}");
    // nfcapd scales sampled counts by the interval the header announces: 25 sampled packets of 78
    // IP bytes come out as the 100 sent.
    assert_eq!((udp[0].packets, udp[0].bytes), (100, 100 * 78));
    assert_eq!(tshark_malformed(&wire, &["-d", "udp.port==2056,cflow"]), 0);
    let rows = tshark_fields(
        &wire,
        &["-d", "udp.port==2056,cflow"],
        &[
            "cflow.samplingmode",
            "cflow.samplerate",
            "cflow.dstport",
            "cflow.packets",
            "cflow.octets",
        ],
    );
    assert!(!rows.is_empty());
    assert!(rows.iter().all(|r| r[0] == "1" && r[1] == "4"), "{rows:?}");
    // On the wire: the 25 packets actually sampled.
    let sampled_rows: Vec<_> = rows.iter().filter(|r| r[2] == "9999").collect();
    assert_eq!(sampled_rows.len(), 1, "{rows:?}");
    assert_eq!(
        (sampled_rows[0][3].as_str(), sampled_rows[0][4].as_str()),
        ("25", "1950")
    );
}
