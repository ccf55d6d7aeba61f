//! Packet injection from real interfaces in real namespaces, counted at the other end
//! by a capture and `Flows()`.

mod common;

use std::time::{Duration, Instant};

use common::net::{bridged_pair, sh};
use common::{rand_tag, Topotap};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(10);

fn eth0_of(ns: &str) -> String {
    format!("G.V().Has('Name', '{ns}').Out().Has('Name', 'eth0')")
}

async fn post(t: &Topotap, path: &str, body: Value) -> (u16, Value) {
    t.request("POST", path, Some(&body.to_string())).await
}

/// Waits until both ends of the bridged pair are in the graph with their addresses,
/// then starts a capture with `bpf` on `<p>b`'s eth0 and waits until it is active.
async fn capture_on_b(t: &Topotap, p: &str, bpf: &str) -> String {
    for side in ["a", "b"] {
        let q = format!("{}.Has('IPV4').Has('MAC')", eth0_of(&format!("{p}{side}")));
        let (v, ok) = t
            .wait_for(&q, WAIT, |v| v.as_array().is_some_and(|a| a.len() == 1))
            .await;
        assert!(ok, "{p}{side} eth0 not in the graph with an address: {v}");
    }
    let (s, cap) = post(
        t,
        "/api/capture",
        json!({"GremlinQuery": eth0_of(&format!("{p}b")), "BPFFilter": bpf}),
    )
    .await;
    assert_eq!(s, 201, "{cap}");
    let uuid = cap["UUID"].as_str().unwrap().to_owned();
    let q = format!("G.V().Has('Captures.ID', '{uuid}', 'Captures.State', 'active')");
    let (v, ok) = t
        .wait_for(&q, WAIT, |v| v.as_array().is_some_and(|a| a.len() == 1))
        .await;
    assert!(ok, "capture not active: {v}");
    uuid
}

/// Polls the injection until `check` accepts it.
async fn wait_injection(t: &Topotap, uuid: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let (s, v) = t
            .request("GET", &format!("/api/injectpacket/{uuid}"), None)
            .await;
        if s == 200 && check(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "injection {uuid}: {s} {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The flows of a capture, once `check` accepts them.
async fn wait_flows(t: &Topotap, capture: &str, check: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let q = format!("G.Flows().Has('CaptureID', '{capture}')");
    let (v, ok) = t
        .wait_for(&q, WAIT, |v| v.as_array().is_some_and(|a| check(a)))
        .await;
    assert!(ok, "flows: {v}");
    v.as_array().cloned().unwrap_or_default()
}

fn packets(flows: &[Value], dir: &str) -> u64 {
    flows
        .iter()
        .map(|f| f["Metric"][dir].as_u64().unwrap_or(0))
        .sum()
}

#[tokio::test]
async fn five_echo_requests_reach_b_and_are_answered() {
    let p = format!("j{}", rand_tag());
    let _net = bridged_pair(&p, 21);
    let t = Topotap::start(&["--ovsdb", "none"]);
    let capture = capture_on_b(&t, &p, "icmp").await;

    let (s, inj) = post(
        &t,
        "/api/injectpacket",
        json!({"Src": eth0_of(&format!("{p}a")), "Dst": eth0_of(&format!("{p}b")),
               "Type": "icmp4", "Count": 5, "Interval": 50, "ICMPID": 4321}),
    )
    .await;
    assert_eq!(s, 201, "{inj}");
    assert_eq!(inj["SrcIP"], "10.77.21.1");
    assert_eq!(inj["DstIP"], "10.77.21.2");
    assert_eq!(inj["TTL"], 64);
    let uuid = inj["UUID"].as_str().unwrap().to_owned();

    let done = wait_injection(&t, &uuid, |v| v["State"] == "done").await;
    assert_eq!(done["PacketCount"], 5, "{done}");

    let flows = wait_flows(&t, &capture, |f| {
        packets(f, "ABPackets") == 5 && packets(f, "BAPackets") == 5
    })
    .await;
    assert_eq!(flows.len(), 1, "{flows:?}");
    let f = &flows[0];
    assert_eq!(f["LayersPath"], "Ethernet/IPv4/ICMPv4");
    assert_eq!(f["Network"]["A"], "10.77.21.1");
    assert_eq!(f["Network"]["B"], "10.77.21.2");
    assert_eq!(f["ICMP"]["ID"], 4321);
    // 56 letters + 8 ICMP + 20 IPv4 + 14 Ethernet, like ping's.
    assert_eq!(f["Metric"]["ABBytes"], 5 * 98);

    // The source node shows the finished injection.
    let q = format!("G.V().Has('PacketInjections.ID', '{uuid}')");
    let done = format!("{q}.Has('PacketInjections.State', 'done')");
    let (node, ok) = t
        .wait_for(&done, WAIT, |v| v.as_array().is_some_and(|a| a.len() == 1))
        .await;
    assert!(ok, "{node}");
    assert_eq!(node[0]["Metadata"]["Name"], "eth0");
    let entry = &node[0]["Metadata"]["PacketInjections"][0];
    assert_eq!(entry["State"], "done");
    assert_eq!(entry["PacketCount"], 5);
    assert_eq!(entry["Type"], "icmp4");

    // Listed until deleted; deleting clears the node's entry.
    let (_, list) = t.request("GET", "/api/injectpacket", None).await;
    assert_eq!(list[&uuid]["State"], "done");
    let (s, _) = t
        .request("DELETE", &format!("/api/injectpacket/{uuid}"), None)
        .await;
    assert_eq!(s, 200);
    let (v, ok) = t.wait_for(&q, WAIT, |v| v == &json!([])).await;
    assert!(ok, "{v}");
}

#[tokio::test]
async fn udp_with_explicit_ports_and_addresses_only() {
    let p = format!("u{}", rand_tag());
    let _net = bridged_pair(&p, 22);
    let t = Topotap::start(&["--ovsdb", "none"]);
    let capture = capture_on_b(&t, &p, "udp").await;
    let b_mac = sh(&format!("ip -n {p}b -br link show eth0"))
        .split_whitespace()
        .nth(2)
        .unwrap()
        .to_owned();

    // No Dst query: DstIP and DstMAC are enough.
    let (s, inj) = post(
        &t,
        "/api/injectpacket",
        json!({"Src": eth0_of(&format!("{p}a")), "DstIP": "10.77.22.2", "DstMAC": b_mac,
               "Type": "udp4", "SrcPort": 40000, "DstPort": 5555, "Count": 3,
               "Payload": "hello", "TTL": 7}),
    )
    .await;
    assert_eq!(s, 201, "{inj}");
    let uuid = inj["UUID"].as_str().unwrap().to_owned();
    wait_injection(&t, &uuid, |v| v["State"] == "done" && v["PacketCount"] == 3).await;

    let flows = wait_flows(&t, &capture, |f| packets(f, "ABPackets") == 3).await;
    assert_eq!(flows.len(), 1, "{flows:?}");
    let f = &flows[0];
    assert_eq!(f["LayersPath"], "Ethernet/IPv4/UDP");
    assert_eq!(f["Transport"]["A"], 40000);
    assert_eq!(f["Transport"]["B"], 5555);
    // 5 bytes + 8 UDP + 20 IPv4 + 14 Ethernet.
    assert_eq!(f["Metric"]["ABBytes"], 3 * 47);
}

#[tokio::test]
async fn increment_grows_the_payload_and_pythons_key_is_accepted() {
    let p = format!("g{}", rand_tag());
    let _net = bridged_pair(&p, 23);
    let t = Topotap::start(&["--ovsdb", "none"]);
    let capture = capture_on_b(&t, &p, "icmp").await;

    // As Skydive's Python client sends it: `Increment`, nulls and empty strings.
    let (s, inj) = post(
        &t,
        "/api/injectpacket",
        json!({"Src": eth0_of(&format!("{p}a")), "Dst": eth0_of(&format!("{p}b")),
               "SrcIP": "", "DstIP": "", "SrcMAC": "", "DstMAC": "", "SrcPort": 0, "DstPort": 0,
               "Type": "icmp4", "Count": 3, "ICMPID": null, "Interval": 10, "Payload": "abc",
               "Increment": true, "TTL": 64}),
    )
    .await;
    assert_eq!(s, 201, "{inj}");
    assert_eq!(inj["IncrementPayload"], 1);
    let uuid = inj["UUID"].as_str().unwrap().to_owned();
    wait_injection(&t, &uuid, |v| v["State"] == "done").await;
    let flows = wait_flows(&t, &capture, |f| packets(f, "ABPackets") == 3).await;
    // 3, 4 and 5 bytes of payload + 42 bytes of headers.
    assert_eq!(flows[0]["Metric"]["ABBytes"], 45 + 46 + 47, "{flows:?}");

    let (s, inj) = post(
        &t,
        "/api/injectpacket",
        json!({"Src": eth0_of(&format!("{p}a")), "Dst": eth0_of(&format!("{p}b")),
               "Type": "icmp4", "Count": 2, "IncrementPayload": 10, "Payload": "x"}),
    )
    .await;
    assert_eq!(s, 201, "{inj}");
    assert_eq!(inj["IncrementPayload"], 10);
    let id = inj["ICMPID"].as_u64().unwrap();
    let uuid = inj["UUID"].as_str().unwrap().to_owned();
    wait_injection(&t, &uuid, |v| v["State"] == "done").await;
    let flows = wait_flows(&t, &capture, |f| {
        f.iter()
            .any(|f| f["ICMP"]["ID"] == id && f["Metric"]["ABPackets"] == 2)
    })
    .await;
    let f = flows.iter().find(|f| f["ICMP"]["ID"] == id).unwrap();
    assert_eq!(f["Metric"]["ABBytes"], 43 + 53);
}

#[tokio::test]
async fn invalid_injections_name_the_field() {
    let p = format!("v{}", rand_tag());
    let _net = bridged_pair(&p, 24);
    let t = Topotap::start(&["--ovsdb", "none"]);
    let src = eth0_of(&format!("{p}a"));
    let (v, ok) = t
        .wait_for(&format!("{src}.Has('IPV4')"), WAIT, |v| {
            v.as_array().is_some_and(|a| a.len() == 1)
        })
        .await;
    assert!(ok, "{v}");
    for (body, needle) in [
        (
            json!({"Src": src, "DstIP": "10.77.24.2", "Type": "icmp4", "Count": 0}),
            "Count: ",
        ),
        (
            json!({"Src": src, "DstIP": "10.77.24.2", "Type": "icmp5"}),
            "Type: given type is not supported",
        ),
        (
            json!({"Src": src, "DstIP": "10.77.24.2", "Type": "icmp4", "DstMAC": "00:11:22:33:44"}),
            "DstMAC: not a valid MAC address",
        ),
        (
            json!({"Src": src, "DstIP": "10.77.24.2", "Type": "icmp4", "SrcMAC": "gg:11:22:33:44:55"}),
            "SrcMAC: not a valid MAC address",
        ),
        (
            json!({"Src": src, "DstIP": "10.77.24.2", "Type": "icmp4", "Mode": "sometimes"}),
            "Mode: given mode is not supported",
        ),
        (
            json!({"Src": "G.V().Has('Name', 'no-such-interface')", "DstIP": "10.77.24.2", "Type": "icmp4"}),
            "Src: no interface matches",
        ),
        (
            json!({"Src": format!("G.V().Has('Name', '{p}a')"), "DstIP": "10.77.24.2", "Type": "icmp4"}),
            "Src: no interface matches",
        ),
        (json!({"Src": src, "Type": "icmp4"}), "DstIP: "),
        (
            json!({"Src": src, "Type": "icmp4", "Dst": "G.V().Has('Name', 'nowhere')"}),
            "Dst: no node matches",
        ),
        (
            json!({"Src": src, "DstIP": "10.77.24.2", "Type": "icmp4", "Count": "many"}),
            "Count: ",
        ),
    ] {
        let (s, v) = post(&t, "/api/injectpacket", body.clone()).await;
        assert_eq!(s, 400, "{body} -> {v}");
        let text = v.as_str().unwrap_or_default();
        assert!(text.starts_with(needle), "{body} -> {v}");
    }
    let (_, list) = t.request("GET", "/api/injectpacket", None).await;
    assert_eq!(list, json!({}));

    // An unknown injection, and PATCH.
    let (s, _) = t.request("DELETE", "/api/injectpacket/nope", None).await;
    assert_eq!(s, 404);

    // X-Resource-TTL expires a finished injection.
    let resp = reqwest::Client::new()
        .post(t.url("/api/injectpacket"))
        .header("Content-Type", "application/json")
        .header("X-Resource-TTL", "500ms")
        .body(json!({"Src": src, "DstIP": "10.77.24.2", "DstMAC": "02:00:00:00:00:02", "Type": "udp4"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let uuid = resp.json::<Value>().await.unwrap()["UUID"]
        .as_str()
        .unwrap()
        .to_owned();
    let (s, v) = t
        .request(
            "PATCH",
            &format!("/api/injectpacket/{uuid}"),
            Some(r#"[{"op":"replace","path":"/Count","value":2}]"#),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (_, list) = t.request("GET", "/api/injectpacket", None).await;
    assert_eq!(list, json!({}));
}

#[tokio::test]
async fn delete_stops_a_long_injection_within_a_second() {
    let p = format!("d{}", rand_tag());
    let _net = bridged_pair(&p, 25);
    let t = Topotap::start(&["--ovsdb", "none"]);
    let capture = capture_on_b(&t, &p, "icmp").await;
    let (s, inj) = post(
        &t,
        "/api/injectpacket",
        json!({"Src": eth0_of(&format!("{p}a")), "Dst": eth0_of(&format!("{p}b")),
               "Type": "icmp4", "Count": 1000, "Interval": 100}),
    )
    .await;
    assert_eq!(s, 201, "{inj}");
    let uuid = inj["UUID"].as_str().unwrap().to_owned();
    let running = wait_injection(&t, &uuid, |v| {
        v["State"] == "running" && v["PacketCount"].as_u64() >= Some(3)
    })
    .await;
    assert!(running["PacketCount"].as_u64() < Some(100), "{running}");
    let (s, _) = t
        .request("DELETE", &format!("/api/injectpacket/{uuid}"), None)
        .await;
    assert_eq!(s, 200);
    let deleted_at = Instant::now();
    let q = format!("G.V().Has('PacketInjections.ID', '{uuid}')");
    let (v, ok) = t
        .wait_for(&q, Duration::from_secs(1), |v| v == &json!([]))
        .await;
    assert!(ok, "still published 1 s after DELETE: {v}");

    // Nothing more arrives at B once the deletion is a second old.
    let elapsed = deleted_at.elapsed();
    if elapsed < Duration::from_secs(1) {
        tokio::time::sleep(Duration::from_secs(1) - elapsed).await;
    }
    let flows = wait_flows(&t, &capture, |f| packets(f, "ABPackets") >= 3).await;
    let seen = packets(&flows, "ABPackets");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let flows = wait_flows(&t, &capture, |_| true).await;
    assert_eq!(packets(&flows, "ABPackets"), seen, "{flows:?}");
    assert!(seen < 60, "{seen} packets: not stopped");
}

#[tokio::test]
async fn deleting_the_source_namespace_ends_the_injection_with_an_error() {
    let p = format!("n{}", rand_tag());
    let _net = bridged_pair(&p, 26);
    let t = Topotap::start(&["--ovsdb", "none"]);
    let src = eth0_of(&format!("{p}a"));
    let (v, ok) = t
        .wait_for(&format!("{src}.Has('IPV4')"), WAIT, |v| {
            v.as_array().is_some_and(|a| a.len() == 1)
        })
        .await;
    assert!(ok, "{v}");
    let (s, inj) = post(
        &t,
        "/api/injectpacket",
        json!({"Src": src, "DstIP": "10.77.26.2", "DstMAC": "02:00:00:00:00:02",
               "Type": "udp4", "Count": 1000, "Interval": 100}),
    )
    .await;
    assert_eq!(s, 201, "{inj}");
    let uuid = inj["UUID"].as_str().unwrap().to_owned();
    wait_injection(&t, &uuid, |v| v["State"] == "running").await;
    sh(&format!("ip netns del {p}a"));
    let ended = wait_injection(&t, &uuid, |v| v["State"] == "error").await;
    let error = ended["Error"].as_str().unwrap_or_default();
    assert!(error.contains("eth0"), "{ended}");
    let count = ended["PacketCount"].as_u64().unwrap();
    assert!(count < 1000, "{ended}");
    // Ended for good: the count no longer moves.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let later = wait_injection(&t, &uuid, |_| true).await;
    assert_eq!(later["PacketCount"], count);
}

#[tokio::test]
async fn icmp6_echo_between_link_local_addresses() {
    let p = format!("s{}", rand_tag());
    let _net = bridged_pair(&p, 27);
    let t = Topotap::start(&["--ovsdb", "none"]);
    // Wait for duplicate address detection: a tentative address does not answer.
    let deadline = Instant::now() + WAIT;
    for side in ["a", "b"] {
        while !sh(&format!("ip -n {p}{side} -6 addr show dev eth0 tentative")).is_empty() {
            assert!(
                Instant::now() < deadline,
                "{p}{side}: address still tentative"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let q = format!("{}.Has('IPV6').Has('MAC')", eth0_of(&format!("{p}{side}")));
        let (v, ok) = t
            .wait_for(&q, WAIT, |v| v.as_array().is_some_and(|a| a.len() == 1))
            .await;
        assert!(ok, "{v}");
    }
    let capture = capture_on_b(&t, &p, "icmp6").await;
    let (s, inj) = post(
        &t,
        "/api/injectpacket",
        json!({"Src": eth0_of(&format!("{p}a")), "Dst": eth0_of(&format!("{p}b")),
               "Type": "icmp6", "Count": 3, "Interval": 20}),
    )
    .await;
    assert_eq!(s, 201, "{inj}");
    assert!(
        inj["SrcIP"].as_str().unwrap().starts_with("fe80::"),
        "{inj}"
    );
    let id = inj["ICMPID"].as_u64().unwrap();
    let uuid = inj["UUID"].as_str().unwrap().to_owned();
    wait_injection(&t, &uuid, |v| v["State"] == "done").await;
    let flows = wait_flows(&t, &capture, |f| {
        f.iter().any(|f| {
            f["ICMP"]["ID"] == id && f["Metric"]["ABPackets"] == 3 && f["Metric"]["BAPackets"] == 3
        })
    })
    .await;
    let f = flows.iter().find(|f| f["ICMP"]["ID"] == id).unwrap();
    assert_eq!(f["LayersPath"], "Ethernet/IPv6/ICMPv6/ICMPv6Echo");
    assert_eq!(f["Network"]["A"], inj["SrcIP"]);
}

#[tokio::test]
async fn tcp_syns_are_answered_with_resets() {
    let p = format!("t{}", rand_tag());
    let _net = bridged_pair(&p, 28);
    let t = Topotap::start(&["--ovsdb", "none"]);
    let capture = capture_on_b(&t, &p, "tcp").await;
    let (s, inj) = post(
        &t,
        "/api/injectpacket",
        json!({"Src": eth0_of(&format!("{p}a")), "Dst": eth0_of(&format!("{p}b")),
               "Type": "tcp4", "SrcPort": 43000, "DstPort": 9, "Count": 2, "Interval": 20}),
    )
    .await;
    assert_eq!(s, 201, "{inj}");
    // B's kernel checks the checksum before answering a SYN to a closed port with a RST.
    let flows = wait_flows(&t, &capture, |f| {
        packets(f, "ABPackets") == 2 && packets(f, "BAPackets") == 2
    })
    .await;
    assert_eq!(flows.len(), 1, "{flows:?}");
    assert_eq!(flows[0]["Transport"]["A"], 43000);
    assert_eq!(flows[0]["Transport"]["B"], 9);
}
