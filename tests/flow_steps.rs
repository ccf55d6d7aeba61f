//! The steps that follow `Flows()` and `Metrics()`, on real namespaces with real
//! traffic: the nodes of a flow's ends, metric series of flows and interfaces, and the
//! interface counters the netlink probe samples.

mod common;

use std::time::Duration;

use common::net::{quiet_pair, sh, Cleanup};
use common::{rand_tag, Topotap};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(15);

/// [`quiet_pair`] on 10.78.<subnet>.0/24, where 10.78.<subnet>.3 also resolves to b's
/// MAC in a: an address b does not have and drops without answering. Returns the guard
/// and the two MACs.
fn quiet_pair_with_a_sink(p: &str, subnet: u8) -> (Cleanup, String, String) {
    let (c, mac_a, mac_b) = quiet_pair(p, &format!("10.78.{subnet}"));
    sh(&format!(
        "ip -n {p}a neigh add 10.78.{subnet}.3 lladdr {mac_b} dev eth0 nud permanent"
    ));
    (c, mac_a, mac_b)
}

/// The ID of `eth0` in namespace `ns`, once the probes found it with its MAC.
async fn eth0_of(t: &Topotap, ns: &str, mac: &str) -> String {
    let q = format!("G.V().Has('Name', '{ns}').Out().Has('Name', 'eth0', 'MAC', '{mac}')");
    let (v, ok) = t
        .wait_for(&q, WAIT, |v| v.as_array().is_some_and(|a| a.len() == 1))
        .await;
    assert!(ok, "eth0 of {ns} not found: {v}");
    v[0]["ID"].as_str().unwrap().to_owned()
}

/// The node's `Metric` counter `key` (absent = 0).
fn counter(node: &Value, key: &str) -> u64 {
    node["Metadata"]["Metric"][key].as_u64().unwrap_or(0)
}

fn ids(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|n| n["ID"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn flows_lead_to_their_nodes_and_metrics_count_exact_packets() {
    let p = format!("m{}", rand_tag());
    let (_net, mac_a, mac_b) = quiet_pair_with_a_sink(&p, 21);
    let t = Topotap::start(&["--ovsdb", "none", "--metric-interval", "1"]);
    let (a, b) = (
        eth0_of(&t, &format!("{p}a"), &mac_a).await,
        eth0_of(&t, &format!("{p}b"), &mac_b).await,
    );

    // RawPacketLimit is 0 to 10.
    for bad in [11, -1] {
        let body = json!({"GremlinQuery": format!("G.V('{a}')"), "RawPacketLimit": bad});
        let (s, e) = t
            .request("POST", "/api/capture", Some(&body.to_string()))
            .await;
        assert_eq!(s, 400, "{e}");
        assert!(
            e.as_str().is_some_and(
                |e| e.starts_with("RawPacketLimit: ") && e.trim_end().lines().count() == 1
            ),
            "{e}"
        );
    }
    let body = json!({
        "GremlinQuery": format!("G.V('{a}')"),
        "BPFFilter": "icmp or udp",
        "RawPacketLimit": 9,
    });
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

    // Counters before: the probe has sampled the quiet interfaces at least once.
    let sampled = |v: &Value| v[0]["Metadata"]["Metric"]["Last"].is_u64();
    let (before_a, ok) = t.wait_for(&format!("G.V('{a}')"), WAIT, sampled).await;
    assert!(ok, "no Metric on {a}: {before_a}");
    let (before_b, ok) = t.wait_for(&format!("G.V('{b}')"), WAIT, sampled).await;
    assert!(ok, "no Metric on {b}: {before_b}");
    let (before_a, before_b) = (before_a[0].clone(), before_b[0].clone());

    // 5 echo requests and their replies; 3 UDP datagrams from one socket to an address
    // that resolves to b, which drops them without an answer.
    sh(&format!(
        "ip netns exec {p}a ping -c 5 -i 0.2 -W 1 10.78.21.2"
    ));
    sh(&format!(
        "ip netns exec {p}a bash -c 'exec 3>/dev/udp/10.78.21.3/9999; for i in 1 2 3; do echo x >&3; done'"
    ));

    // Interface counters: exact deltas. 98-byte echo frames (56 + 8 + 20 + 14), 44-byte
    // datagrams (2 + 8 + 20 + 14).
    let mut sampled_after = Vec::new();
    for (id, before, tx, rx, tx_bytes, rx_bytes) in [
        (&a, &before_a, 8, 5, 5 * 98 + 3 * 44, 5 * 98),
        (&b, &before_b, 5, 8, 5 * 98, 5 * 98 + 3 * 44),
    ] {
        let (after, ok) = t
            .wait_for(&format!("G.V('{id}')"), WAIT, |v| {
                counter(&v[0], "TxPackets") >= counter(before, "TxPackets") + tx
                    && counter(&v[0], "RxPackets") >= counter(before, "RxPackets") + rx
            })
            .await;
        assert!(ok, "counters of {id} did not move: {before} -> {after}");
        let after = after[0].clone();
        let delta = |k: &str| counter(&after, k) - counter(before, k);
        assert_eq!(
            [
                delta("TxPackets"),
                delta("RxPackets"),
                delta("TxBytes"),
                delta("RxBytes")
            ],
            [tx, rx, tx_bytes, rx_bytes],
            "{before} -> {after}"
        );
        sampled_after.push(after);
    }
    // b has no capture: only its counters write it, and they no longer move.
    let after_b = &sampled_after[1];
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let still = t.query(&format!("G.V('{b}')")).await;
    assert_eq!(
        still[0]["Revision"], after_b["Revision"],
        "a quiet interface was rewritten: {still}"
    );
    assert_eq!(
        still[0]["Metadata"]["Metric"],
        after_b["Metadata"]["Metric"]
    );
    // Over a time window, one sample per revision of b (its first sample has no
    // LastUpdateMetric): the deltas add up to the traffic exactly.
    let window = format!("G.Context(NOW, '10m').V().Has('MAC', '{mac_b}').Metrics()");
    let (sum, ok) = t
        .wait_for(&format!("{window}.Sum('RxPackets')"), WAIT, |v| {
            v == &json!(8)
        })
        .await;
    assert!(ok, "{sum}: {}", t.query(&window).await);
    assert_eq!(
        t.query(&format!("{window}.Sum('TxPackets')")).await,
        json!(5)
    );
    let series = t.query(&window).await;
    let samples = series[0][&b]
        .as_array()
        .unwrap_or_else(|| panic!("{series}"));
    let starts: Vec<i64> = samples
        .iter()
        .map(|s| s["Start"].as_i64().unwrap())
        .collect();
    assert!(starts.windows(2).all(|w| w[0] < w[1]), "{series}");

    // Flows: exact counts.
    let all = format!("G.Flows().Has('CaptureID', '{uuid}')");
    let (flows, ok) = t
        .wait_for(&all, WAIT, |v| {
            v.as_array().is_some_and(|a| {
                a.len() == 2
                    && a.iter()
                        .map(|f| f["Metric"]["ABPackets"].as_u64().unwrap_or(0))
                        .sum::<u64>()
                        == 8
            })
        })
        .await;
    assert!(ok, "flows: {flows}");
    let icmp = format!("{all}.Has('Application', 'ICMPv4')");
    let udp = format!("{all}.Has('Application', 'UDP')");
    let f = t.query(&icmp).await;
    assert_eq!(f[0]["Metric"]["ABPackets"], 5, "{f}");
    assert_eq!(f[0]["Metric"]["BAPackets"], 5, "{f}");
    assert_eq!(f[0]["Link"]["A"], mac_a.as_str());
    let f = t.query(&udp).await;
    assert_eq!(f[0]["Metric"]["ABPackets"], 3, "{f}");
    assert_eq!(f[0]["Metric"]["BAPackets"], 0, "{f}");

    // From flows to nodes: the capture's interface, the ends by MAC.
    assert_eq!(
        ids(&t.query(&format!("{icmp}.Nodes()")).await),
        [a.clone(), a.clone(), b.clone()]
    );
    assert_eq!(
        ids(&t.query(&format!("{all}.Nodes().Dedup()")).await),
        [a.clone(), b.clone()]
    );
    assert_eq!(
        ids(&t.query(&format!("{icmp}.In()")).await),
        std::slice::from_ref(&a)
    );
    assert_eq!(
        ids(&t.query(&format!("{icmp}.Out()")).await),
        std::slice::from_ref(&b)
    );
    assert_eq!(
        ids(&t.query(&format!("{udp}.Out()")).await),
        std::slice::from_ref(&b)
    );
    assert_eq!(
        ids(&t.query(&format!("{icmp}.Both()")).await),
        [a.clone(), b.clone()]
    );
    assert_eq!(
        t.query(&format!("{all}.Out('Name', 'lo').Count()")).await,
        json!(0)
    );
    assert_eq!(
        t.query(&format!(
            "{all}.Both().Dedup().Has('MAC', '{mac_b}').Count()"
        ))
        .await,
        json!(1)
    );

    // Metric series of the flows, by UUID: the window in progress holds every packet.
    let m = t.query(&format!("{all}.Metrics()")).await;
    let series = m[0].as_object().unwrap_or_else(|| panic!("{m}"));
    assert_eq!(series.len(), 2, "{m}");
    for uuid in t
        .query(&format!("{all}.Values('UUID')"))
        .await
        .as_array()
        .unwrap()
    {
        assert!(
            series.contains_key(uuid.as_str().unwrap()),
            "{uuid} not in {m}"
        );
    }
    assert_eq!(
        t.query(&format!("{all}.Metrics().Sum('ABPackets')")).await,
        json!(8)
    );
    assert_eq!(
        t.query(&format!("{all}.Metrics().Sum('BAPackets')")).await,
        json!(5)
    );
    let sum = t.query(&format!("{all}.Metrics().Sum()")).await;
    assert_eq!(
        (sum["ABPackets"].clone(), sum["ABBytes"].clone()),
        (json!(8), json!(5 * 98 + 3 * 44))
    );
    assert_eq!(t.query(&format!("{all}.Metrics().Count()")).await, json!(2));
    assert_eq!(
        t.query(&format!(
            "{all}.Metrics().Has('BAPackets', GT(0)).Sum('ABPackets')"
        ))
        .await,
        json!(5)
    );
    let agg = t.query(&format!("{all}.Metrics().Aggregates(3600)")).await;
    assert_eq!(
        agg[0]["Aggregated"].as_array().map(Vec::len),
        Some(1),
        "{agg}"
    );
    assert_eq!(agg[0]["Aggregated"][0]["ABPackets"], 8, "{agg}");

    // Metric series of the interface: the latest sample, as on the node.
    let node = t.query(&format!("G.V('{a}')")).await[0].clone();
    let m = t.query(&format!("G.V('{a}').Metrics('Metric')")).await;
    assert_eq!(
        m,
        json!([{ a.clone(): [node["Metadata"]["Metric"].clone()] }])
    );
    let m = t.query(&format!("G.V('{a}').Metrics()")).await;
    assert_eq!(
        m,
        json!([{ a.clone(): [node["Metadata"]["LastUpdateMetric"].clone()] }])
    );
    assert_eq!(
        t.query(&format!(
            "G.V().Has('@ID', WITHIN('{a}', '{b}')).Metrics('Metric').Sum('TxPackets')"
        ))
        .await,
        json!(
            counter(&node, "TxPackets")
                + counter(&t.query(&format!("G.V('{b}')")).await[0], "TxPackets")
        )
    );
    let agg = t
        .query(&format!("G.V('{a}').Metrics('Metric').Aggregates()"))
        .await;
    let total: u64 = agg[0]["Aggregated"]
        .as_array()
        .unwrap_or_else(|| panic!("{agg}"))
        .iter()
        .map(|s| s["TxPackets"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(total, counter(&node, "TxPackets"), "{agg}");
    assert_eq!(
        t.query("G.V().Has('Name', 'no-such').Metrics()").await,
        json!([])
    );
    let (s, e) = t
        .try_query(&format!("G.V('{a}').Metrics().Aggregates(-1)"))
        .await;
    assert_eq!(s, 400, "{e}");

    // Raw packets: the first 9 frames of the echo flow (5 requests, 4 replies) and the 3
    // datagrams.
    assert_eq!(
        t.query(&format!("{icmp}.Values('RawPacketsCaptured')"))
            .await,
        json!([9])
    );
    assert_eq!(
        t.query(&format!("{udp}.Values('RawPacketsCaptured')"))
            .await,
        json!([3])
    );
    let raw = t.query(&format!("{all}.RawPackets()")).await;
    let by_flow = raw[0].as_object().unwrap_or_else(|| panic!("{raw}"));
    let udp_uuid = t.query(&format!("{udp}.Values('UUID')")).await[0].clone();
    let datagrams = by_flow[udp_uuid.as_str().unwrap()].as_array().unwrap();
    assert_eq!(datagrams.len(), 3);
    assert_eq!(
        datagrams
            .iter()
            .map(|p| p["Index"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert_eq!(datagrams[0]["LinkType"], 1);
    assert_eq!(
        t.query(&format!("{all}.RawPackets().Count()")).await,
        json!(12)
    );
    let replies = format!("{icmp}.RawPackets().BPF('icmp[icmptype] == 0')");
    assert_eq!(t.query(&format!("{replies}.Count()")).await, json!(4));
    assert_eq!(
        t.query(&format!("{all}.Has('Application', 'ARP').RawPackets()"))
            .await,
        json!([])
    );

    // The same as pcap files that tshark reads.
    for (q, frames, first) in [
        (format!("{all}.RawPackets()"), 12, "ICMP"),
        (replies.clone(), 4, "ICMP"),
    ] {
        let pcap = pcap_of(&t, &q).await;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("raw.pcap");
        std::fs::write(&file, &pcap).unwrap();
        let out = sh(&format!(
            "tshark -r {} -T fields -e _ws.col.Protocol",
            file.display()
        ));
        let protocols: Vec<&str> = out.lines().collect();
        assert_eq!(protocols.len(), frames, "{q}: {out}");
        assert_eq!(protocols[0], first, "{q}: {out}");
    }
    let out = {
        let pcap = pcap_of(&t, &format!("{all}.RawPackets()")).await;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("raw.pcap");
        std::fs::write(&file, &pcap).unwrap();
        sh(&format!(
            "tshark -r {} -Y udp.dstport==9999 -T fields -e ip.dst",
            file.display()
        ))
    };
    assert_eq!(out.lines().collect::<Vec<_>>(), ["10.78.21.3"; 3], "{out}");
    // Only raw packets make a pcap file.
    let resp = pcap_request(&t, &format!("{all}.Count()")).await;
    assert_eq!(resp.status().as_u16(), 406);
}

async fn pcap_request(t: &Topotap, q: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(t.url("/api/topology"))
        .header("Accept", "application/vnd.tcpdump.pcap")
        .header("Content-Type", "application/json")
        .body(json!({ "GremlinQuery": q }).to_string())
        .send()
        .await
        .expect("request")
}

async fn pcap_of(t: &Topotap, q: &str) -> Vec<u8> {
    let resp = pcap_request(t, q).await;
    assert_eq!(resp.status().as_u16(), 200, "{q}");
    assert_eq!(
        resp.headers()["content-type"].to_str().unwrap(),
        "application/vnd.tcpdump.pcap"
    );
    resp.bytes().await.unwrap().to_vec()
}
