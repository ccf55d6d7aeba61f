//! Captures on real interfaces in real namespaces, with real traffic, checked through
//! the HTTP API and `Flows()`.

mod common;

use std::time::Duration;

use common::net::{bridged_pair, sh};
use common::{rand_tag, Topotap};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(10);

async fn create_capture(t: &Topotap, body: Value) -> (u16, Value) {
    t.request("POST", "/api/capture", Some(&body.to_string()))
        .await
}

/// Waits until the capture is active on exactly `n` interfaces.
async fn wait_active(t: &Topotap, uuid: &str, n: usize) -> Value {
    let q = format!("G.V().Has('Captures.ID', '{uuid}', 'Captures.State', 'active')");
    let (v, ok) = t
        .wait_for(&q, WAIT, |v| v.as_array().is_some_and(|a| a.len() == n))
        .await;
    assert!(ok, "capture {uuid} not active on {n} interfaces: {v}");
    v
}

#[tokio::test]
async fn ping_through_a_bridge_gives_exact_flow_counts() {
    let p = format!("c{}", rand_tag());
    let _net = bridged_pair(&p, 11);
    let t = Topotap::start(&["--ovsdb", "none"]);
    let query = format!("G.V().Has('Name', '{p}a').Out().Has('Name', 'eth0')");
    let (s, cap) = create_capture(&t, json!({"GremlinQuery": query, "BPFFilter": "icmp"})).await;
    assert_eq!(s, 201, "{cap}");
    let uuid = cap["UUID"].as_str().unwrap().to_owned();
    wait_active(&t, &uuid, 1).await;

    // A UDP packet must not count: the filter is icmp.
    sh(&format!(
        "ip netns exec {p}a sh -c 'echo x > /dev/udp/10.77.11.2/9999' || true"
    ));
    sh(&format!(
        "ip netns exec {p}a ping -c 5 -i 0.2 -s 56 -W 1 10.77.11.2"
    ));

    let q = format!("G.Flows().Has('CaptureID', '{uuid}')");
    let (flows, ok) = t
        .wait_for(&q, WAIT, |v| {
            v.as_array().is_some_and(|a| {
                a.len() == 1 && a[0]["Metric"]["BAPackets"] == 5 && a[0]["Metric"]["ABPackets"] == 5
            })
        })
        .await;
    assert!(ok, "flows: {flows}");
    let f = &flows[0];
    assert_eq!(f["LayersPath"], "Ethernet/IPv4/ICMPv4");
    assert_eq!(f["Network"]["A"], "10.77.11.1");
    assert_eq!(f["Network"]["B"], "10.77.11.2");
    // 56 bytes of payload + 8 ICMP + 20 IPv4 + 14 Ethernet = 98 bytes per frame.
    assert_eq!(f["Metric"]["ABBytes"], 5 * 98);
    assert_eq!(f["Metric"]["BABytes"], 5 * 98);

    // The same flow reached from the node, and the Flows() steps.
    let q = format!("G.V().Has('Name', '{p}a').Out().Has('Name','eth0').Flows().Has('Network', '10.77.11.2').Count()");
    assert_eq!(t.query(&q).await, json!(1));
    let q = format!("G.Flows().Has('CaptureID', '{uuid}').Sum('Metric.ABPackets')");
    assert_eq!(t.query(&q).await.as_f64(), Some(5.0));
    let q = format!("G.Flows().Has('CaptureID', '{uuid}').CaptureNode().Values('Name')");
    assert_eq!(t.query(&q).await, json!(["eth0"]));
    let q = "G.Flows().Has('Network.A', IPV4RANGE('10.77.0.0/16')).Values('Transport')";
    let (s, _) = t.try_query(q).await;
    assert_eq!(s, 400, "ICMP flows have no Transport: Values() reports it");

    // The capture's Count and the node's state.
    let (_, got) = t
        .request("GET", &format!("/api/capture/{uuid}"), None)
        .await;
    assert_eq!(got["Count"], 1);
    // Counters are refreshed every second.
    let q = format!("G.V().Has('Captures.ID', '{uuid}', 'Captures.PacketsReceived', GTE(10))");
    let (node, ok) = t
        .wait_for(&q, WAIT, |v| v.as_array().is_some_and(|a| a.len() == 1))
        .await;
    assert!(ok, "{node}");
    let entry = &node[0]["Metadata"]["Captures"][0];
    assert_eq!(entry["BPFFilter"], "icmp");
    assert_eq!(entry["Type"], "pcap");

    // Deleting the capture clears the node's metadata.
    let (s, _) = t
        .request("DELETE", &format!("/api/capture/{uuid}"), None)
        .await;
    assert_eq!(s, 200);
    let (v, ok) = t
        .wait_for(&format!("G.V().Has('Captures.ID', '{uuid}')"), WAIT, |v| {
            v == &json!([])
        })
        .await;
    assert!(ok, "{v}");
}

#[tokio::test]
async fn capture_follows_namespaces_created_later_and_stops_when_they_go() {
    let p = format!("f{}", rand_tag());
    let t = Topotap::start(&["--ovsdb", "none"]);
    let query =
        format!("G.V().Has('Type', 'netns', 'Name', REGEX('{p}.*')).Out().Has('Name', 'eth0')");
    let (s, cap) = create_capture(&t, json!({"GremlinQuery": query})).await;
    assert_eq!(s, 201, "{cap}");
    let uuid = cap["UUID"].as_str().unwrap().to_owned();

    let net = bridged_pair(&p, 12);
    wait_active(&t, &uuid, 2).await;
    sh(&format!(
        "ip netns exec {p}b ping -c 2 -i 0.2 -W 1 10.77.12.1"
    ));
    let q =
        format!("G.Flows().Has('CaptureID', '{uuid}', 'Network.A', '10.77.12.2').Dedup().Count()");
    let (v, ok) = t.wait_for(&q, WAIT, |v| v == &json!(1)).await;
    assert!(ok, "{v}");
    // Two capture points saw the same ping: same TrackingID, different UUIDs.
    let q = format!("G.Flows().Has('CaptureID', '{uuid}', 'Network.A', '10.77.12.2', 'LayersPath', 'Ethernet/IPv4/ICMPv4')");
    let (flows, ok) = t
        .wait_for(&q, WAIT, |v| v.as_array().is_some_and(|a| a.len() == 2))
        .await;
    assert!(ok, "{flows}");
    assert_eq!(flows[0]["TrackingID"], flows[1]["TrackingID"]);
    assert_ne!(flows[0]["UUID"], flows[1]["UUID"]);

    drop(net);
    let (v, ok) = t
        .wait_for(&format!("G.V().Has('Captures.ID', '{uuid}')"), WAIT, |v| {
            v == &json!([])
        })
        .await;
    assert!(ok, "{v}");
    let (_, got) = t
        .request("GET", &format!("/api/capture/{uuid}"), None)
        .await;
    assert_eq!(got["Count"], 0);
}

#[tokio::test]
async fn invalid_captures_are_refused_and_definitions_survive_a_restart() {
    let state = tempfile::tempdir().unwrap();
    let dir = state.path().to_str().unwrap();
    let t = Topotap::start(&["--no-probes", "--state-dir", dir]);
    for (body, needle) in [
        (
            json!({"GremlinQuery": "G.V()", "BPFFilter": "tcp portt 80"}),
            "BPFFilter: Not a valid BPF expression",
        ),
        (
            json!({"GremlinQuery": "G.V()", "TargetType": "bogus", "Target": "127.0.0.1:2055"}),
            "TargetType: Not a valid target type: bogus",
        ),
        (
            json!({"GremlinQuery": "G.V()", "Type": "ebpf"}),
            "Type: Not a valid capture type",
        ),
        (json!({"GremlinQuery": "G.V().Has("}), "GremlinQuery"),
        (
            json!({"GremlinQuery": "G.V()", "HeaderSize": 5}),
            "HeaderSize",
        ),
        (
            json!({"GremlinQuery": "G.V()", "SamplingRate": "x"}),
            "SamplingRate",
        ),
    ] {
        let (s, v) = create_capture(&t, body.clone()).await;
        assert_eq!(s, 400, "{body} -> {v}");
        assert!(v.as_str().unwrap().contains(needle), "{body} -> {v}");
    }
    let body = json!({"GremlinQuery": "G.V().Has('Name','nothing')", "Name": "keep me", "BPFFilter": "icmp"});
    let (s, a) = create_capture(&t, body.clone()).await;
    assert_eq!(s, 201);
    let (s, _) = create_capture(&t, body).await;
    assert_eq!(s, 409, "duplicate");
    let (s, _) = t
        .request(
            "POST",
            "/api/capture",
            Some(&json!({"GremlinQuery": "G.V().Has('Name','ttl')"}).to_string()),
        )
        .await;
    assert_eq!(s, 201);
    drop(t);

    let t = Topotap::start(&["--no-probes", "--state-dir", dir]);
    let (_, list) = t.request("GET", "/api/capture", None).await;
    let uuid = a["UUID"].as_str().unwrap();
    assert_eq!(list.as_object().unwrap().len(), 2, "{list}");
    assert_eq!(list[uuid]["Name"], "keep me");
    assert_eq!(list[uuid]["BPFFilter"], "icmp");
    assert_eq!(list[uuid]["Count"], 0);
}

#[tokio::test]
async fn ttl_expires_a_capture() {
    let t = Topotap::start_api_only();
    let resp = reqwest::Client::new()
        .post(t.url("/api/capture"))
        .header("Content-Type", "application/json")
        .header("X-Resource-TTL", "300ms")
        .body(json!({"GremlinQuery": "G.V()"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let resp = reqwest::Client::new()
        .post(t.url("/api/capture"))
        .header("Content-Type", "application/json")
        .header("X-Resource-TTL", "soon")
        .body(json!({"GremlinQuery": "G.V().Has('a')"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    tokio::time::sleep(Duration::from_millis(900)).await;
    let (_, list) = t.request("GET", "/api/capture", None).await;
    assert_eq!(list, json!({}));
}

#[tokio::test]
async fn udp_and_tcp_flows_and_the_bpf_filter() {
    let p = format!("u{}", rand_tag());
    let _net = bridged_pair(&p, 13);
    let t = Topotap::start(&["--ovsdb", "none"]);
    let query = format!("G.V().Has('Name', '{p}b').Out().Has('Name', 'eth0')");
    let (s, udp) = create_capture(&t, json!({"GremlinQuery": query, "BPFFilter": "udp"})).await;
    assert_eq!(s, 201, "{udp}");
    let (s, tcp) = create_capture(
        &t,
        json!({"GremlinQuery": query, "BPFFilter": "tcp port 6000"}),
    )
    .await;
    assert_eq!(s, 201, "{tcp}");
    let (udp, tcp) = (udp["UUID"].as_str().unwrap(), tcp["UUID"].as_str().unwrap());
    wait_active(&t, udp, 1).await;
    wait_active(&t, tcp, 1).await;

    // 7 datagrams of 5 bytes from one socket: 14 + 20 + 8 + 5 = 47-byte frames (a veth
    // does not pad).
    // (A receiver in B, or its port-unreachable answers would make later sends fail.)
    sh(&format!(
        "ip netns exec {p}b timeout 5 socat -u UDP-RECV:5000 OPEN:/dev/null & sleep 0.3; \
         ip netns exec {p}a bash -c 'exec 3>/dev/udp/10.77.13.2/5000; \
           for i in 1 2 3 4 5 6 7; do printf hello >&3; done'; \
         kill %1 2>/dev/null; true"
    ));
    // A TCP connection carrying 1000 bytes, then closed.
    sh(&format!(
        "ip netns exec {p}b socat -u TCP-LISTEN:6000,reuseaddr OPEN:/dev/null & sleep 0.3; \
         head -c 1000 /dev/zero | ip netns exec {p}a socat -u - TCP:10.77.13.2:6000; wait"
    ));
    sh(&format!(
        "ip netns exec {p}a ping -c 2 -i 0.2 -W 1 10.77.13.2"
    ));

    let q = format!("G.Flows().Has('CaptureID', '{udp}', 'Transport.Protocol', 'UDP')");
    let (flows, ok) = t
        .wait_for(&q, WAIT, |v| {
            v.as_array()
                .is_some_and(|a| a.len() == 1 && a[0]["Metric"]["ABPackets"] == 7)
        })
        .await;
    assert!(ok, "{flows}");
    assert_eq!(flows[0]["Metric"]["ABBytes"], 7 * 47);
    assert_eq!(flows[0]["Transport"]["B"], 5000);
    // The udp filter let neither ICMP (ping, port unreachable) nor TCP in.
    let q = format!("G.Flows().Has('CaptureID', '{udp}').Count()");
    assert_eq!(t.query(&q).await, json!(1));

    let q = format!("G.Flows().Has('CaptureID', '{tcp}')");
    let (flows, ok) = t
        .wait_for(&q, WAIT, |v| {
            v.as_array()
                .is_some_and(|a| a.len() == 1 && a[0]["FinishType"].is_number())
        })
        .await;
    assert!(ok, "{flows}");
    let f = &flows[0];
    assert_eq!(f["LayersPath"], "Ethernet/IPv4/TCP");
    assert_eq!(f["Transport"]["B"], 6000);
    assert_eq!(f["Network"]["A"], "10.77.13.1");
    // Handshake, 1000 bytes of data and the close: at least SYN, ACK, data, FIN.
    assert!(f["Metric"]["ABPackets"].as_u64().unwrap() >= 4, "{f}");
    assert!(
        f["Metric"]["ABBytes"].as_u64().unwrap() >= 1000 + 4 * 54,
        "{f}"
    );
    assert!(f["Metric"]["BAPackets"].as_u64().unwrap() >= 2, "{f}");

    // The node shows both captures with their flow table counters (refreshed at most
    // once a second).
    let q = format!("G.V().Has('Captures.ID', '{udp}').Values('Captures')");
    let (v, _) = t
        .wait_for(&q, Duration::from_secs(3), |v| {
            v[0].as_array().is_some_and(|l| {
                l.iter()
                    .any(|e| e["ID"] == udp && e["Flows"]["Active"] == 1)
            })
        })
        .await;
    let entries = v[0].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{v}");
    let mine = entries.iter().find(|e| e["ID"] == udp).unwrap();
    assert_eq!(mine["Flows"]["Active"], 1, "{mine}");
}

#[tokio::test]
async fn ping_through_open_vswitch_gives_exact_flow_counts() {
    use common::net::Cleanup;
    use common::ovs::Ovs;
    let p = format!("o{}", rand_tag());
    let ovs = Ovs::start(&p);
    let mut net = Cleanup::new();
    ovs.add_bridge(&format!("{p}br"));
    // vm namespaces joined to the bridge by veths whose bridge ends live in the
    // namespace ovs-vswitchd runs in.
    for (side, host) in [("a", 1), ("b", 2)] {
        let ns = format!("{p}{side}");
        net.netns(&ns);
        let port = format!("{p}{side}0");
        sh(&format!(
            "ip -n {vs} link add {port} type veth peer name eth0 netns {ns} && \
             ip -n {vs} link set {port} up && \
             ip -n {ns} addr add 10.77.14.{host}/24 dev eth0 && ip -n {ns} link set eth0 up && \
             ip netns exec {ns} ethtool -K eth0 tx off >/dev/null",
            vs = ovs.netns
        ));
        ovs.vsctl(&format!("add-port {p}br {port}"));
    }
    let t = Topotap::start(&["--ovsdb", &ovs.address()]);
    // The capture's interface is found through OVS: bridge -> port -> interface (Dedup:
    // a bridge owns its ports and is layer2-linked to them, so Out() lists them twice).
    let query = format!("G.V().Has('Type','ovsbridge','Name','{p}br').Out().Has('Type','ovsport','Name','{p}a0').Out().Has('Name','{p}a0').Dedup()");
    let (v, ok) = t
        .wait_for(&query, WAIT, |v| v.as_array().is_some_and(|a| a.len() == 1))
        .await;
    assert!(ok, "OVS port interface not found: {v}");
    let (s, cap) = create_capture(&t, json!({"GremlinQuery": query, "BPFFilter": "icmp"})).await;
    assert_eq!(s, 201, "{cap}");
    let uuid = cap["UUID"].as_str().unwrap().to_owned();
    wait_active(&t, &uuid, 1).await;

    let pingout = sh(&format!(
        "ip netns exec {p}a ping -D -c 5 -i 0.2 -W 2 10.77.14.2"
    ));
    let q = format!("G.Flows().Has('CaptureID', '{uuid}')");
    let (flows, ok) = t
        .wait_for(&q, WAIT, |v| {
            v.as_array().is_some_and(|a| {
                a.len() == 1 && a[0]["Metric"]["ABPackets"] == 5 && a[0]["Metric"]["BAPackets"] == 5
            })
        })
        .await;
    assert!(ok, "flows: {flows} ping: {pingout}");
    assert_eq!(flows[0]["Metric"]["ABBytes"], 5 * 98);
    assert_eq!(flows[0]["Network"]["A"], "10.77.14.1");
    // The interface's TID may change once the capture runs (its OVS namespace gets its
    // name): the capture goes on and the flow follows the node's current TID.
    let node = t.query(&format!("{q}.CaptureNode()")).await;
    assert_eq!(node.as_array().map(Vec::len), Some(1), "{node}");
    assert_eq!(node[0]["Metadata"]["Name"], format!("{p}a0"));
    drop(t);
    drop(net);
    drop(ovs);
}

/// Namespaces come and go every few tens of milliseconds, for the whole test: a new
/// capture is still placed (placement waits for a quiet graph, but not forever).
#[tokio::test]
async fn capture_is_placed_while_namespaces_churn() {
    let p = format!("u{}", rand_tag());
    let t = Topotap::start(&["--ovsdb", "none"]);
    let mut c = common::net::Cleanup::new();
    c.netns(&format!("{p}t"));
    sh(&format!(
        "ip -n {p}t link add d0 type veth peer name d1 && ip -n {p}t link set d0 up"
    ));
    let q = format!("G.V().Has('Type', 'netns', 'Name', '{p}t').Out().Has('Name', 'd0')");
    let (v, ok) = t
        .wait_for(&q, WAIT, |v| v.as_array().is_some_and(|a| a.len() == 1))
        .await;
    assert!(ok, "{v}");

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let churn = {
        let (stop, p) = (stop.clone(), p.clone());
        std::thread::spawn(move || {
            let mut rounds = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let ns = format!("{p}c{}", rounds % 4);
                common::net::sh_quiet(&format!("ip netns add {ns}"));
                std::thread::sleep(Duration::from_millis(20));
                common::net::sh_quiet(&format!("ip netns del {ns}"));
                std::thread::sleep(Duration::from_millis(20));
                rounds += 1;
            }
            for i in 0..4 {
                common::net::sh_quiet(&format!("ip netns del {p}c{i}"));
            }
            rounds
        })
    };
    // Let the churn reach the graph first.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (s, cap) = create_capture(&t, json!({"GremlinQuery": q})).await;
    assert_eq!(s, 201, "{cap}");
    let uuid = cap["UUID"].as_str().unwrap().to_owned();
    let placed = async {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let (_, got) = t
                .request("GET", &format!("/api/capture/{uuid}"), None)
                .await;
            if got["Count"] == 1 {
                return true;
            }
            if std::time::Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let rounds = churn.join().unwrap();
    assert!(rounds >= 10, "the churn ran {rounds} rounds only");
    assert!(
        placed,
        "capture not active within 5 s under namespace churn"
    );
}
