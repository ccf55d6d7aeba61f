//! Capture types whose frames do not come from libpcap on the interface: `sflow` (an
//! sFlow v5 collector socket), `pcapsocket` (pcap streams over TCP), and the captures Open
//! vSwitch performs itself, `ovssflow` and `ovsmirror`, on a private userspace OVS
//! (`common::ovs`). Everything is checked through the HTTP API, `Flows()`, OVSDB itself
//! (`ovs-vsctl`) and nfcapd.

mod common;

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use common::collector::CollectorNet;
use common::net::{bridged_pair, sh, Cleanup};
use common::nfdump::{create_capture, delete_capture, entry, wait_state, Nfcapd};
use common::ovs::Ovs;
use common::{rand_tag, Topotap};
use serde_json::{json, Value};
use topotap_targets::wire::sflow5::{
    CounterRecord, DatagramBuilder, DatagramHeader, FlowRecord, FlowSampleHeader, IfCounters,
    SampledHeader, SourceId, HEADER_PROTOCOL_ETHERNET, INTERFACE_UNKNOWN,
};

const WAIT: Duration = Duration::from_secs(15);

/// A port nothing listens on now (UDP and TCP).
fn free_port() -> u16 {
    let s = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = s.local_addr().unwrap().port();
    drop(s);
    port
}

/// An Ethernet/IPv4/UDP frame of `len` bytes from `a:sport` to `b:dport`.
fn udp_frame(a: [u8; 4], b: [u8; 4], sport: u16, dport: u16, len: usize) -> Vec<u8> {
    let mut f = vec![0u8; len];
    f[0..6].copy_from_slice(&[2, 0, 0, 0, 0, b[3]]);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, a[3]]);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip_len = (len - 14) as u16;
    f[14] = 0x45;
    f[16..18].copy_from_slice(&ip_len.to_be_bytes());
    f[22] = 64;
    f[23] = 17;
    f[26..30].copy_from_slice(&a);
    f[30..34].copy_from_slice(&b);
    f[34..36].copy_from_slice(&sport.to_be_bytes());
    f[36..38].copy_from_slice(&dport.to_be_bytes());
    f[38..40].copy_from_slice(&(ip_len - 20).to_be_bytes());
    f
}

/// One sFlow datagram with a flow sample per frame (1-in-`rate` sampling, FCS stripped,
/// the first 128 bytes sampled).
fn sflow_datagram(sequence: u32, rate: u32, frames: &[Vec<u8>]) -> Vec<u8> {
    let mut buf = vec![0u8; 65_000];
    let header = DatagramHeader {
        agent: "127.0.0.1".parse().unwrap(),
        sub_agent_id: 0,
        sequence,
        uptime_ms: 1000 * sequence,
    };
    let mut b = DatagramBuilder::new(&mut buf, header, 65_000).unwrap();
    for (i, f) in frames.iter().enumerate() {
        let record = FlowRecord::SampledHeader(SampledHeader {
            protocol: HEADER_PROTOCOL_ETHERNET,
            frame_length: f.len() as u32 + 4,
            stripped: 4,
            header: &f[..f.len().min(128)],
        });
        let fh = FlowSampleHeader {
            sequence: sequence * 100 + i as u32,
            source_id: SourceId(2),
            sampling_rate: rate,
            sample_pool: sequence * 100 * rate + i as u32 * rate,
            drops: 0,
            input: 2,
            output: INTERFACE_UNKNOWN,
        };
        b.push_flow_sample(&fh, &[record]).unwrap();
    }
    b.finish().to_vec()
}

/// Polls `q` until `check` accepts it; fails with the last answer.
async fn wait_query(t: &Topotap, q: &str, check: impl Fn(&Value) -> bool) -> Value {
    let (v, ok) = t.wait_for(q, WAIT, check).await;
    assert!(ok, "{q}: {v}");
    v
}

/// Frames sent as sFlow by the test's own encoder become flows with their exact counts
/// (each sample's frame length, FCS excluded), a sample taken 1-in-N counting as N
/// frames, as collectors estimate; a malformed datagram is counted and dropped; a second
/// `sflow` capture exporting NetFlow v5 gets the same flows to nfcapd.
#[tokio::test]
async fn sflow_input_yields_flows_and_netflow_export() {
    let p = format!("s{}", rand_tag());
    let mut net = bridged_pair(&p, 61);
    let collector = CollectorNet::new(&p, 61, &mut net);
    let dir = tempfile::tempdir().unwrap();
    let mut nfcapd = Nfcapd::start(&collector.ns, &collector.v4, 2055, dir.path());
    let t = Topotap::start(&["--ovsdb", "none"]);
    let query = format!("G.V().Has('Name', '{p}br')");
    t.wait_for(&query, WAIT, |v| v.as_array().is_some_and(|a| a.len() == 1))
        .await;

    let (local_port, export_port) = (free_port(), free_port());
    let local = create_capture(
        &t,
        json!({"GremlinQuery": query, "Type": "sflow", "Port": local_port}),
    )
    .await;
    let export = create_capture(
        &t,
        json!({"GremlinQuery": query, "Type": "sflow", "Port": export_port,
               "TargetType": "netflowv5", "Target": format!("{}:2055", collector.v4)}),
    )
    .await;
    let e = wait_state(&t, &local, "active").await;
    assert_eq!(e["Type"], "sflow", "{e}");
    assert_eq!(e["Listen"], format!("127.0.0.1:{local_port}"), "{e}");
    wait_state(&t, &export, "active").await;

    let (a, b) = ([10, 61, 0, 1], [10, 61, 0, 2]);
    let ab = udp_frame(a, b, 40_000, 7_001, 300);
    let ba = udp_frame(b, a, 7_001, 40_000, 100);
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    for port in [local_port, export_port] {
        let to = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        sender
            .send_to(
                &sflow_datagram(1, 1, &[ab.clone(), ab.clone(), ba.clone()]),
                to,
            )
            .unwrap();
        sender
            .send_to(&sflow_datagram(2, 10, &[ab.clone(), ba.clone()]), to)
            .unwrap();
        sender.send_to(b"\x00\x00\x00\x05garbage", to).unwrap();
    }

    let q = format!("G.Flows().Has('CaptureID', '{local}')");
    let flows = wait_query(&t, &q, |v| {
        v.as_array().is_some_and(|f| {
            f.len() == 1 && f[0]["Metric"]["ABPackets"] == 12 && f[0]["Metric"]["BAPackets"] == 11
        })
    })
    .await;
    assert_eq!(flows[0]["Metric"]["ABBytes"], 12 * 300, "{flows}");
    assert_eq!(flows[0]["Metric"]["BABytes"], 11 * 100, "{flows}");
    assert_eq!(flows[0]["Network"]["A"], "10.61.0.1", "{flows}");
    assert_eq!(flows[0]["Transport"]["B"], 7001, "{flows}");
    let nodes = wait_query(
        &t,
        &format!("G.V().Has('Captures.ID', '{local}', 'Captures.Malformed', 1)"),
        |v| v.as_array().is_some_and(|a| a.len() == 1),
    )
    .await;
    assert_eq!(entry(&nodes, &local)["PacketsReceived"], 5);

    // The export capture flushes on deletion: nfcapd gets one record per direction.
    wait_query(
        &t,
        &format!("G.V().Has('Captures.ID', '{export}', 'Captures.PacketsReceived', 5)"),
        |v| v.as_array().is_some_and(|a| a.len() == 1),
    )
    .await;
    delete_capture(&t, &export).await;
    let mut got: Vec<(String, u64, u64)> = nfcapd
        .flows()
        .into_iter()
        .map(|f| (f.src, f.packets, f.bytes))
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            ("10.61.0.1".to_owned(), 12, 12 * 286),
            ("10.61.0.2".to_owned(), 11, 11 * 86)
        ]
    );
    drop(t);
    drop(net);
}

/// One sFlow datagram with a generic interface counters sample per entry.
fn counters_datagram(sequence: u32, counters: &[IfCounters]) -> Vec<u8> {
    let mut buf = vec![0u8; 65_000];
    let header = DatagramHeader {
        agent: "127.0.0.1".parse().unwrap(),
        sub_agent_id: 0,
        sequence,
        uptime_ms: 1000 * sequence,
    };
    let mut b = DatagramBuilder::new(&mut buf, header, 65_000).unwrap();
    for c in counters {
        b.push_counters_sample(
            sequence,
            SourceId(c.if_index),
            &[CounterRecord::Interface(*c)],
        )
        .unwrap();
    }
    b.finish().to_vec()
}

/// Interface counter samples sent to an `sflow` capture on a Linux bridge become the
/// `SFlow` metrics of the interfaces of its namespace they name by ifIndex: `Metric`
/// with the netlink probe's counter names, `LastUpdateMetric` the difference between
/// two samples, read back by `Metrics('SFlow')`. An ifIndex of no interface there
/// changes nothing.
#[tokio::test]
async fn sflow_counter_samples_are_interface_metrics() {
    let p = format!("k{}", rand_tag());
    let net = bridged_pair(&p, 65);
    let t = Topotap::start(&["--ovsdb", "none"]);
    let port = format!("{p}a0");
    let query = format!("G.V().Has('Name', '{p}br')");
    for q in [&query, &format!("G.V().Has('Name', '{port}')")] {
        t.wait_for(q, WAIT, |v| v.as_array().is_some_and(|a| a.len() == 1))
            .await;
    }
    let sport = free_port();
    let uuid = create_capture(
        &t,
        json!({"GremlinQuery": query, "Type": "sflow", "Port": sport}),
    )
    .await;
    wait_state(&t, &uuid, "active").await;
    let index: u32 = sh(&format!("cat /sys/class/net/{port}/ifindex"))
        .trim()
        .parse()
        .unwrap();
    let first = IfCounters {
        if_index: index,
        in_octets: 10_000,
        in_ucast_pkts: 90,
        in_multicast_pkts: 5,
        in_broadcast_pkts: 5,
        in_discards: 1,
        out_octets: 20_000,
        out_ucast_pkts: 200,
        ..Default::default()
    };
    let second = IfCounters {
        in_octets: 13_000,
        in_ucast_pkts: 120,
        out_octets: 20_500,
        out_ucast_pkts: 205,
        out_errors: 2,
        ..first
    };
    let stranger = IfCounters {
        if_index: 999_999,
        in_octets: 1,
        ..Default::default()
    };
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    let to = SocketAddr::from((Ipv4Addr::LOCALHOST, sport));
    sender
        .send_to(&counters_datagram(1, &[first, stranger]), to)
        .unwrap();
    let q = format!("G.V().Has('Name', '{port}').Values('SFlow.Metric')");
    let v = wait_query(&t, &q, |v| v[0]["RxBytes"] == 10_000).await;
    let m = &v[0];
    assert_eq!(m["RxPackets"], 100, "{m}");
    assert_eq!(m["Multicast"], 5, "{m}");
    assert_eq!(m["RxDropped"], 1, "{m}");
    assert_eq!(m["TxBytes"], 20_000, "{m}");
    assert_eq!(m["TxPackets"], 200, "{m}");
    assert!(m.get("TxErrors").is_none(), "{m}");
    let start = m["Start"].clone();

    sender
        .send_to(&counters_datagram(2, &[second]), to)
        .unwrap();
    let v = wait_query(&t, &q, |v| v[0]["RxBytes"] == 13_000).await;
    assert_eq!(v[0]["Start"], start, "{v}");
    assert_eq!(v[0]["TxErrors"], 2, "{v}");
    let last = t
        .query(&format!(
            "G.V().Has('Name', '{port}').Values('SFlow.LastUpdateMetric')"
        ))
        .await;
    let l = &last[0];
    assert_eq!(
        (
            &l["RxBytes"],
            &l["RxPackets"],
            &l["TxBytes"],
            &l["TxPackets"],
            &l["TxErrors"]
        ),
        (&json!(3000), &json!(30), &json!(500), &json!(5), &json!(2)),
        "{l}"
    );
    assert_eq!(l["Last"], v[0]["Last"], "{l}");
    let series = t
        .query(&format!("G.V().Has('Name', '{port}').Metrics('SFlow')"))
        .await;
    let node = t.query(&format!("G.V().Has('Name', '{port}')")).await;
    let id = node[0]["ID"].as_str().unwrap();
    assert_eq!(series[0][id][0]["RxBytes"], 3000, "{series}");
    // Nothing else got counters.
    let others = t.query("G.V().HasKey('SFlow').Values('Name')").await;
    assert_eq!(others, json!([port]), "{others}");
    drop(t);
    drop(net);
}

/// A pcap file streamed into a `pcapsocket` capture with socat gives the exact counts
/// of the file; something that is not pcap is counted as malformed.
#[tokio::test]
async fn pcapsocket_takes_a_pcap_stream() {
    common::collector::require("socat", "socat");
    let p = format!("q{}", rand_tag());
    let net = bridged_pair(&p, 62);
    let t = Topotap::start(&["--ovsdb", "none"]);
    let query = format!("G.V().Has('Name', '{p}br')");
    t.wait_for(&query, WAIT, |v| v.as_array().is_some_and(|a| a.len() == 1))
        .await;
    let port = free_port();
    let uuid = create_capture(
        &t,
        json!({"GremlinQuery": query, "Type": "pcapsocket", "Port": port}),
    )
    .await;
    let e = wait_state(&t, &uuid, "active").await;
    assert_eq!(e["Listen"], format!("127.0.0.1:{port}"), "{e}");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("in.pcap");
    let mut w = topotap_targets::pcapfile::PcapWriter::new(
        Vec::new(),
        topotap_targets::packet::LinkType::Ethernet,
        65_535,
    )
    .unwrap();
    let (a, b) = ([10, 62, 0, 1], [10, 62, 0, 2]);
    for i in 0..40u64 {
        let (f, ms) = if i % 4 == 3 {
            (udp_frame(b, a, 53_000, 9_000, 120), 1_000 + i * 10)
        } else {
            (udp_frame(a, b, 9_000, 53_000, 200), 1_000 + i * 10)
        };
        w.write_packet(
            topotap_targets::packet::Timestamp::from_millis(1_700_000_000_000 + ms),
            f.len() as u32,
            &f,
        )
        .unwrap();
    }
    std::fs::write(&file, w.into_inner()).unwrap();
    sh(&format!(
        "socat -u OPEN:{} TCP:127.0.0.1:{port}",
        file.display()
    ));
    let q = format!("G.Flows().Has('CaptureID', '{uuid}')");
    let flows = wait_query(&t, &q, |v| {
        v.as_array().is_some_and(|f| {
            f.len() == 1 && f[0]["Metric"]["ABPackets"] == 30 && f[0]["Metric"]["BAPackets"] == 10
        })
    })
    .await;
    assert_eq!(flows[0]["Metric"]["ABBytes"], 30 * 200, "{flows}");
    assert_eq!(flows[0]["Metric"]["BABytes"], 10 * 120, "{flows}");

    let junk = dir.path().join("junk");
    std::fs::write(&junk, b"GET / HTTP/1.0\r\n\r\n").unwrap();
    sh(&format!(
        "socat -u OPEN:{} TCP:127.0.0.1:{port}",
        junk.display()
    ));
    wait_query(
        &t,
        &format!("G.V().Has('Captures.ID', '{uuid}', 'Captures.Malformed', 1)"),
        |v| v.as_array().is_some_and(|a| a.len() == 1),
    )
    .await;
    drop(t);
    drop(net);
}

/// A private OVS with bridge `<p>br` and two ports `<p>a0`, `<p>b0` whose peers are
/// `eth0` in namespaces `<p>a` (10.77.<n>.1) and `<p>b` (.2). vswitchd's namespace has
/// its loopback up (where topotap's sFlow collector listens).
fn ovs_pair(p: &str, n: u8) -> (Ovs, Cleanup) {
    let ovs = Ovs::start(p);
    let mut net = Cleanup::new();
    ovs.ip("link set lo up");
    ovs.add_bridge(&format!("{p}br"));
    for (side, host) in [("a", 1), ("b", 2)] {
        let ns = format!("{p}{side}");
        net.netns(&ns);
        let port = format!("{p}{side}0");
        sh(&format!(
            "ip -n {vs} link add {port} type veth peer name eth0 netns {ns} && \
             ip -n {vs} link set {port} up && \
             ip -n {ns} addr add 10.77.{n}.{host}/24 dev eth0 && ip -n {ns} link set eth0 up && \
             ip netns exec {ns} ethtool -K eth0 tx off >/dev/null",
            vs = ovs.netns
        ));
        ovs.vsctl(&format!("add-port {p}br {port}"));
    }
    (ovs, net)
}

/// `ovs-vsctl` rows of `table` (one `_uuid` per line), none when empty.
fn rows(ovs: &Ovs, table: &str) -> Vec<String> {
    ovs.vsctl(&format!("--columns=_uuid --bare list {table}"))
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

/// A capture with no `Type` on an OVS bridge is `ovssflow`: OVS samples the bridge
/// (1-in-1) to topotap's collector and `Flows()` shows the ping exactly. The sFlow row is
/// tagged, and gone once the capture is deleted; after a kill -9 of topotap, the next run
/// removes what the dead one left before placing anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ovssflow_samples_the_bridge_and_leaves_nothing_behind() {
    let p = format!("f{}", rand_tag());
    let (ovs, net) = ovs_pair(&p, 63);
    let state = tempfile::tempdir().unwrap();
    let state_dir = state.path().to_str().unwrap().to_owned();
    let start = || Topotap::start(&["--ovsdb", &ovs.address(), "--state-dir", &state_dir]);
    let t = start();
    let query = format!("G.V().Has('Type', 'ovsbridge', 'Name', '{p}br')");
    t.wait_for(&query, WAIT, |v| v.as_array().is_some_and(|a| a.len() == 1))
        .await;
    let uuid = create_capture(&t, json!({"GremlinQuery": query, "BPFFilter": "icmp"})).await;
    let e = wait_state(&t, &uuid, "active").await;
    assert_eq!(e["Type"], "ovssflow", "{e}");
    let sflows = rows(&ovs, "sflow");
    assert_eq!(sflows.len(), 1, "{sflows:?}");
    let ids = ovs.vsctl(&format!("get sflow {} external_ids", sflows[0]));
    assert!(ids.contains(&uuid), "{ids}");

    sh(&format!(
        "ip netns exec {p}a ping -c 4 -i 0.2 -W 2 10.77.63.2"
    ));
    let q = format!("G.Flows().Has('CaptureID', '{uuid}', 'Network.A', '10.77.63.1')");
    let flows = wait_query(&t, &q, |v| {
        v.as_array().is_some_and(|f| {
            f.len() == 1 && f[0]["Metric"]["ABPackets"] == 4 && f[0]["Metric"]["BAPackets"] == 4
        })
    })
    .await;
    assert_eq!(flows[0]["Metric"]["ABBytes"], 4 * 98, "{flows}");
    // The filter applies to the sampled frames: the ARP exchange is not a flow.
    let all = t
        .query(&format!("G.Flows().Has('CaptureID', '{uuid}')"))
        .await;
    assert_eq!(all.as_array().map(Vec::len), Some(1), "{all}");

    delete_capture(&t, &uuid).await;
    assert_eq!(rows(&ovs, "sflow"), Vec::<String>::new());
    assert_eq!(ovs.vsctl(&format!("get bridge {p}br sflow")).trim(), "[]");

    // Again, then a crash: the row stays behind until the next start.
    let uuid = create_capture(&t, json!({"GremlinQuery": query})).await;
    wait_state(&t, &uuid, "active").await;
    let before = rows(&ovs, "sflow");
    assert_eq!(before.len(), 1);
    sh(&format!("kill -9 {}", t.pid()));
    drop(t);
    assert_eq!(rows(&ovs, "sflow"), before, "nothing undid it");
    // The capture is still defined: the new run removes the old row and places its own.
    let t = start();
    wait_state(&t, &uuid, "active").await;
    let after = rows(&ovs, "sflow");
    assert_eq!(after.len(), 1, "{after:?}");
    assert_ne!(after, before);
    delete_capture(&t, &uuid).await;
    assert_eq!(rows(&ovs, "sflow"), Vec::<String>::new());
    drop(t);
    drop(net);
    drop(ovs);
}

/// An `ovsmirror` capture on an OVS port mirrors it to an internal port topotap
/// captures: the ping's exact counts; the mirror and its port are gone after deletion.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ovsmirror_captures_a_port_exactly() {
    let p = format!("m{}", rand_tag());
    let (ovs, net) = ovs_pair(&p, 64);
    let t = Topotap::start(&["--ovsdb", &ovs.address()]);
    let query = format!("G.V().Has('Type', 'ovsport', 'Name', '{p}a0')");
    t.wait_for(&query, WAIT, |v| v.as_array().is_some_and(|a| a.len() == 1))
        .await;
    let ports_before = rows(&ovs, "port").len();
    let uuid = create_capture(
        &t,
        json!({"GremlinQuery": query, "Type": "ovsmirror", "BPFFilter": "icmp"}),
    )
    .await;
    let e = wait_state(&t, &uuid, "active").await;
    assert_eq!(e["Type"], "ovsmirror", "{e}");
    assert_eq!(rows(&ovs, "mirror").len(), 1);

    sh(&format!(
        "ip netns exec {p}a ping -c 5 -i 0.2 -W 2 10.77.64.2"
    ));
    let q = format!("G.Flows().Has('CaptureID', '{uuid}')");
    let flows = wait_query(&t, &q, |v| {
        v.as_array().is_some_and(|f| {
            f.len() == 1 && f[0]["Metric"]["ABPackets"] == 5 && f[0]["Metric"]["BAPackets"] == 5
        })
    })
    .await;
    assert_eq!(flows[0]["Metric"]["ABBytes"], 5 * 98, "{flows}");
    assert_eq!(flows[0]["Network"]["A"], "10.77.64.1", "{flows}");

    delete_capture(&t, &uuid).await;
    assert_eq!(rows(&ovs, "mirror"), Vec::<String>::new());
    assert_eq!(rows(&ovs, "port").len(), ports_before);
    drop(t);
    drop(net);
    drop(ovs);
}

/// A bridge that has someone else's sFlow configuration: OVSDB refuses the change, the
/// capture shows `error` with OVSDB's reason, and the administrator's row is untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ovsdb_refusing_the_change_is_the_captures_error() {
    let p = format!("r{}", rand_tag());
    let ovs = Ovs::start(&p);
    ovs.add_bridge(&format!("{p}br"));
    ovs.vsctl(&format!(
        "-- --id=@s create sflow targets=\"127.0.0.1:6343\" -- set bridge {p}br sflow=@s"
    ));
    let admin = rows(&ovs, "sflow");
    let t = Topotap::start(&["--ovsdb", &ovs.address()]);
    let query = format!("G.V().Has('Type', 'ovsbridge', 'Name', '{p}br')");
    t.wait_for(&query, WAIT, |v| v.as_array().is_some_and(|a| a.len() == 1))
        .await;
    let uuid = create_capture(&t, json!({"GremlinQuery": query, "Type": "ovssflow"})).await;
    let e = wait_state(&t, &uuid, "error").await;
    let reason = e["Error"].as_str().unwrap_or_default().to_owned();
    assert!(
        reason.starts_with("OVSDB refused the change: bridge ")
            && reason.contains("already has an sFlow configuration")
            && reason.contains("timed out"),
        "{e}"
    );
    let (s, got) = t
        .request("GET", &format!("/api/capture/{uuid}"), None)
        .await;
    assert_eq!(s, 200);
    assert!(
        got["Error"].as_str().is_some_and(|r| r.contains(&reason)),
        "{got}"
    );
    assert_eq!(rows(&ovs, "sflow"), admin);
    drop(t);
    drop(ovs);
}
