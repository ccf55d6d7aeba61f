//! The `ipfix` capture target against a real collector: IPv4 and IPv6 traffic between two
//! namespaces, topotap exporting IPFIX from the root namespace to nfcapd in a third namespace reached
//! over a veth; nfdump and tshark check what arrived against what really went over the wire.

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

/// IPv4, IPv6 UDP and IPv6 echo requests/replies: not neighbour discovery or MLD, which come and go
/// on their own.
const TEST_TRAFFIC: &str =
    "ip or (ip6 and ip6[6] == 17) or (icmp6 and (ip6[40] == 128 or ip6[40] == 129))";

/// IPv4 and IPv6 pings, a UDP burst and a TCP exchange exported as IPFIX: nfcapd (which learns the
/// templates from the first message) receives exactly the packets and Layer-3 bytes of the wire,
/// per direction, with no sequence failure; tshark decodes templates and data cleanly and the
/// sequence numbers count the data records before each message. Deleting the capture, long before
/// the active timeout, is what sends the flows.
#[tokio::test]
async fn ipv4_and_ipv6_flows_reach_nfcapd_exactly() {
    require("tshark", "tshark");
    let p = format!("i{}", rand_tag());
    let mut net = bridged_pair(&p, 53);
    let collector = CollectorNet::new(&p, 53, &mut net);
    for (side, host) in [("a", 1), ("b", 2)] {
        sh(&format!(
            "ip -n {p}{side} addr add fd00:77:53::{host}/64 dev eth0 nodad"
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let mut nfcapd = Nfcapd::start(&collector.ns, &collector.v4, 4739, dir.path());
    let wire = dir.path().join("export.pcap");
    let mut export_dump = Tcpdump::start(Some(&collector.ns), "eth0", "udp port 4739", &wire);
    // Warm neighbour discovery up so the exchanges below are the only traffic of interest.
    sh(&format!("ip netns exec {p}a ping -c 1 -W 2 10.77.53.2"));
    sh(&format!(
        "ip netns exec {p}a ping -6 -c 1 -W 2 fd00:77:53::2"
    ));

    let t = Topotap::start(&["--ovsdb", "none"]);
    let started = Instant::now();
    let uuid = create_capture(
        &t,
        json!({
            "GremlinQuery": format!("G.V().Has('Name', '{p}a').Out().Has('Name', 'eth0')"),
            "BPFFilter": TEST_TRAFFIC,
            "TargetType": "ipfix",
            "Target": format!("{}:4739", collector.v4),
        }),
    )
    .await;
    wait_state(&t, &uuid, "active").await;
    let truth_pcap = dir.path().join("truth.pcap");
    let mut truth_dump = Tcpdump::start(Some(&format!("{p}a")), "eth0", TEST_TRAFFIC, &truth_pcap);

    sh(&format!(
        "ip netns exec {p}a ping -c 4 -i 0.2 -s 100 -W 1 10.77.53.2"
    ));
    sh(&format!(
        "ip netns exec {p}a ping -6 -c 3 -i 0.2 -s 56 -W 1 fd00:77:53::2"
    ));
    let server: SocketAddr = "[fd00:77:53::2]:9999".parse().unwrap();
    let _receiver = in_netns(&format!("{p}b"), move || UdpSocket::bind(server).unwrap());
    send_udp(&format!("{p}a"), server, 60, 300, 20);
    tcp_exchange(
        &format!("{p}a"),
        &format!("{p}b"),
        "10.77.53.2:8080".parse().unwrap(),
        5_000,
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = wait_state(&t, &uuid, "active").await;
    assert_eq!(
        before["Export"]["Records"], 0,
        "no flow may be exported before a timeout or the deletion: {before}"
    );
    assert!(
        before["Export"]["Messages"].as_u64().unwrap_or(0) >= 1,
        "the templates go out at start: {before}"
    );

    delete_capture(&t, &uuid).await;
    assert!(
        started.elapsed() < Duration::from_secs(55),
        "the test must beat the active timeout"
    );
    truth_dump.stop();
    tokio::time::sleep(Duration::from_millis(300)).await;
    export_dump.stop();

    let ours = |k: &(u8, String, String, u16, u16)| {
        ["10.77.53.", "fd00:77:53::"]
            .iter()
            .any(|p| k.1.starts_with(p) && k.2.starts_with(p))
    };
    let truth: std::collections::BTreeMap<_, _> = ground_truth(&truth_pcap)
        .into_iter()
        .filter(|(k, _)| ours(k))
        .collect();
    // Only the test's exchanges: the namespace also sends the odd IGMP report on its own.
    let all = nfcapd.flows();
    let flows: Vec<_> = all
        .iter()
        .filter(|f| ours(&(f.protocol, f.src.clone(), f.dst.clone(), 0, 0)))
        .cloned()
        .collect();
    let got = aggregate(&flows);
    assert_eq!(got, truth, "nfdump records vs the wire");

    let (a6, b6) = ("fd00:77:53::1".to_owned(), "fd00:77:53::2".to_owned());
    let echo6 = &got[&(58, a6.clone(), b6.clone(), 0, 128 << 8)];
    assert_eq!((echo6.packets, echo6.bytes), (3, 3 * 104));
    let udp6 = &got[&(17, a6, b6, udp_src_port(&got), 9999)];
    assert_eq!((udp6.packets, udp6.bytes), (60, 60 * 348));
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

    // tshark: clean IPFIX; the templates first; sequence = data records before each message.
    assert_eq!(tshark_malformed(&wire, &["-d", "udp.port==4739,cflow"]), 0);
    let rows = tshark_fields(
        &wire,
        &["-d", "udp.port==4739,cflow"],
        &[
            "cflow.version",
            "cflow.sequence",
            "cflow.template_id",
            "cflow.protocol",
            "cflow.flow_end_reason",
        ],
    );
    assert!(rows.len() >= 2, "{rows:?}");
    assert!(
        rows[0][2].contains("256") && rows[0][2].contains("257"),
        "{rows:?}"
    );
    let mut expected_seq = 0u64;
    for r in &rows {
        assert_eq!(r[0], "10", "{rows:?}");
        assert_eq!(r[1].parse::<u64>().unwrap(), expected_seq, "{rows:?}");
        let records = r[3].split(',').filter(|s| !s.is_empty()).count() as u64;
        expected_seq += records;
        // Deleting the capture ends the flows: forcedEnd (4).
        assert!(
            r[4].split(',').filter(|s| !s.is_empty()).all(|v| v == "4"),
            "{rows:?}"
        );
    }
    assert_eq!(expected_seq, all.len() as u64);
}

/// The UDP source port the kernel picked for the IPv6 burst.
fn udp_src_port(
    got: &std::collections::BTreeMap<(u8, String, String, u16, u16), common::nfdump::Counts>,
) -> u16 {
    got.keys()
        .find(|k| k.0 == 17 && k.4 == 9999)
        .map(|k| k.3)
        .expect("the UDP flow")
}

/// Stopping topotap (SIGTERM) exports what its capture points still hold.
#[tokio::test]
async fn a_clean_shutdown_flushes_pending_flows() {
    let p = format!("s{}", rand_tag());
    let mut net = bridged_pair(&p, 54);
    let collector = CollectorNet::new(&p, 54, &mut net);
    let dir = tempfile::tempdir().unwrap();
    let mut nfcapd = Nfcapd::start(&collector.ns, &collector.v4, 4739, dir.path());
    let t = Topotap::start(&["--ovsdb", "none"]);
    let uuid = create_capture(
        &t,
        json!({
            "GremlinQuery": format!("G.V().Has('Name', '{p}a').Out().Has('Name', 'eth0')"),
            "BPFFilter": "icmp",
            "TargetType": "ipfix",
            "Target": format!("{}:4739", collector.v4),
        }),
    )
    .await;
    wait_state(&t, &uuid, "active").await;
    sh(&format!(
        "ip netns exec {p}a ping -c 3 -i 0.2 -s 56 -W 1 10.77.54.2"
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;

    sh(&format!("kill -TERM {}", t.pid()));
    // Exited (a zombie until the harness reaps it on drop).
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(format!("/proc/{}/stat", t.pid()))
        .is_ok_and(|s| !s.contains(") Z "))
    {
        assert!(Instant::now() < deadline, "topotap did not stop");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let got = aggregate(&nfcapd.flows());
    let (a, b) = ("10.77.54.1".to_owned(), "10.77.54.2".to_owned());
    let out = got.get(&(1, a.clone(), b.clone(), 0, 8 << 8));
    let back = got.get(&(1, b, a, 0, 0));
    assert_eq!(
        (
            out.map(|c| (c.packets, c.bytes)),
            back.map(|c| (c.packets, c.bytes))
        ),
        (Some((3, 3 * 84)), Some((3, 3 * 84))),
        "{got:?}"
    );
}
