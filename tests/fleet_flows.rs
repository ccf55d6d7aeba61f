//! `Flows()` on an analyzer covers the whole fleet: two analyzers sharing a real etcd,
//! each with an agent connected to it only (each agent in a network and PID namespace
//! of its own): either analyzer answers with both agents' flows, the other's asked
//! through the replication link, whoever leads; a peer that does not answer leaves
//! its agents' flows out and the answer says so, in its budget. And `G.At(t).Flows()`
//! on an analyzer: an agent with `--history` answers from its own flow history (a
//! flow long expired from its table), through the analyzer it is connected to, and
//! one without says it has none.

mod common;
#[path = "common/fleet.rs"]
mod fleet;

use std::time::{Duration, Instant};

use common::net::sh;
use fleet::{active_capture, agent, analyzer, eth0_of, free_port, wait_until, Api, Etcd, Net};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(20);

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// `POST /api/topology` with `gremlin`: the status, the answer, and the
/// `X-Flows-Incomplete` header ("" without one).
async fn query_noted(api: &Api, gremlin: &str) -> (u16, Value, String) {
    let resp = api
        .http
        .post(format!("{}/api/topology", api.base))
        .header("Content-Type", "application/json")
        .body(json!({ "GremlinQuery": gremlin }).to_string())
        .send()
        .await
        .expect("query");
    let status = resp.status().as_u16();
    let note = resp
        .headers()
        .get("X-Flows-Incomplete")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = resp.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&body).unwrap_or(Value::String(body)),
        note,
    )
}

/// The ICMP flow of capture `id`, 4 echo requests and 4 replies.
fn four_pings(f: &Value, id: &str) -> bool {
    f.as_array().is_some_and(|l| {
        l.len() == 1
            && l[0]["Application"] == "ICMPv4"
            && l[0]["Metric"]["ABPackets"] == 4
            && l[0]["Metric"]["BAPackets"] == 4
            && l[0]["CaptureID"] == id
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flows_of_agents_connected_to_another_analyzer_only() {
    let etcd = Etcd::start().await;
    let mut net = Net::new();
    let tag = net.tag.clone();
    let (port_a, port_b) = (free_port(), free_port());
    let ip = net.analyzer_ip();
    let (peer_a, peer_b) = (format!("{ip}:{port_a}"), format!("{ip}:{port_b}"));
    let (la, lb) = (format!("fa-{tag}"), format!("fb-{tag}"));
    let a = analyzer(
        &net,
        &etcd,
        &la,
        port_a,
        &["--insecure-no-auth", "--peer", &peer_b],
    );
    let api_a = Api::new(&a);
    wait_until(Duration::from_secs(15), "analyzer A leads", || {
        api_a.is_master()
    })
    .await;
    let b = analyzer(
        &net,
        &etcd,
        &lb,
        port_b,
        &["--insecure-no-auth", "--peer", &peer_a],
    );
    let api_b = Api::new(&b);
    // Host 1 reports to B only, host 2 to A (the leader) only.
    let (h1, h2) = (format!("f1-{tag}"), format!("f2-{tag}"));
    let (ns1, d1) = net.host(1);
    let (ns2, d2) = net.host(2);
    let _agent1 = agent(&ns1, &d1, &h1, &[&b], &[]);
    let _agent2 = agent(&ns2, &d2, &h2, &[&a], &[]);
    for api in [&api_a, &api_b] {
        for h in [&h1, &h2] {
            wait_until(WAIT, "both hosts on both analyzers", || async {
                api.count(&format!("{}.Count()", eth0_of(h))).await == 1
            })
            .await;
        }
    }
    for (api, other) in [(&api_a, &h1), (&api_b, &h2)] {
        let status = api.json("/api/status").await;
        assert!(status["Agents"].get(other).is_none(), "{status}");
    }
    let on = [&api_a, &api_b];
    let c1 = active_capture(
        &api_a,
        &on,
        json!({"GremlinQuery": eth0_of(&h1)}),
        "the capture active on host 1",
    )
    .await;
    let c2 = active_capture(
        &api_a,
        &on,
        json!({"GremlinQuery": eth0_of(&h2)}),
        "the capture active on host 2",
    )
    .await;
    sh(&format!(
        "ip netns exec {ns1} ping -c 4 -i 0.2 -W 2 {}",
        net.host_ip(2)
    ));

    // Each analyzer answers with both hosts' flows: its own agent's, and the other's
    // through the peer (B asks A, the leader, too), and says nothing is missing.
    for api in on {
        for c in [&c1, &c2] {
            let q = format!("G.Flows().Has('CaptureID', '{c}', 'Application', 'ICMPv4')");
            wait_until(WAIT, "4 echo requests and replies in Flows()", || async {
                api.try_query(&q).await.is_some_and(|f| four_pings(&f, c))
            })
            .await;
        }
        let (s, all, note) = query_noted(api, "G.Flows().Has('Application', 'ICMPv4')").await;
        assert_eq!(s, 200, "{all}");
        assert_eq!(all.as_array().map(Vec::len), Some(2), "{all}");
        assert_eq!(note, "", "{}", api.base);
    }

    // B stops answering (stopped, its connections still open): A answers in its
    // budget with its own agent's flows, and names the host it could not ask and why.
    sh(&format!("kill -STOP {}", b.pid()));
    let asked = Instant::now();
    let (s, all, note) = query_noted(&api_a, "G.Flows().Has('Application', 'ICMPv4')").await;
    let took = asked.elapsed();
    sh(&format!("kill -CONT {}", b.pid()));
    assert_eq!(s, 200, "{all}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert!(four_pings(&all, &c2), "{all}");
    assert!(
        note.contains(&format!(
            "agent {h1} through analyzer {lb}: no answer within"
        )),
        "{note:?}"
    );
    // Back: whole again.
    wait_until(WAIT, "both hosts' flows on A again", || async {
        let (_, all, note) = query_noted(&api_a, "G.Flows().Has('Application', 'ICMPv4')").await;
        note.is_empty() && all.as_array().map(Vec::len) == Some(2)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_flows_from_the_agents_history() {
    let etcd = Etcd::start().await;
    let mut net = Net::new();
    let tag = net.tag.clone();
    // A's history has the graph of the past (it leads: it writes it); the agents'
    // have the flows. Host 1, with a history, reports to B only: A asks it through B.
    let (port_a, port_b) = (free_port(), free_port());
    let ip = net.analyzer_ip();
    let (peer_a, peer_b) = (format!("{ip}:{port_a}"), format!("{ip}:{port_b}"));
    let a = analyzer(
        &net,
        &etcd,
        &format!("ha-{tag}"),
        port_a,
        &[
            "--insecure-no-auth",
            "--history",
            "embedded",
            "--peer",
            &peer_b,
        ],
    );
    let api = Api::new(&a);
    wait_until(Duration::from_secs(15), "analyzer A leads", || {
        api.is_master()
    })
    .await;
    let b = analyzer(
        &net,
        &etcd,
        &format!("hb-{tag}"),
        port_b,
        &["--insecure-no-auth", "--peer", &peer_a],
    );
    let (h1, h2) = (format!("h1-{tag}"), format!("h2-{tag}"));
    let (ns1, d1) = net.host(1);
    let (ns2, d2) = net.host(2);
    let quick = ["--flow-update", "1", "--flow-expire", "2"];
    let mut with_history = quick.to_vec();
    with_history.extend(["--history", "embedded"]);
    let _agent1 = agent(&ns1, &d1, &h1, &[&b], &with_history);
    let _agent2 = agent(&ns2, &d2, &h2, &[&a], &quick);
    for h in [&h1, &h2] {
        wait_until(WAIT, "both hosts on the analyzer", || async {
            api.count(&format!("{}.Count()", eth0_of(h))).await == 1
        })
        .await;
    }
    let status = api.json("/api/status").await;
    assert!(status["Agents"].get(&h1).is_none(), "{status}");
    let eth0 = api.query(&eth0_of(&h1)).await[0]["ID"]
        .as_str()
        .unwrap()
        .to_owned();
    let capture = active_capture(
        &api,
        &[&api],
        json!({"GremlinQuery": format!("G.V('{eth0}')"), "BPFFilter": "icmp"}),
        "the capture active on host 1",
    )
    .await;

    // 8 echo requests and replies over 3.5 s: several update intervals of 1 s.
    let began = now_ms();
    sh(&format!(
        "ip netns exec {ns1} ping -c 8 -i 0.5 -W 1 {}",
        net.host_ip(2)
    ));
    let during = began + (now_ms() - began) / 2;
    // Expired from host 1's table (2 s without packets): live, no flow.
    let live = format!("G.Flows().Has('CaptureID', '{capture}')");
    wait_until(WAIT, "the flow expired", || async {
        api.count(&format!("{live}.Count()")).await == 0
    })
    .await;

    // At a time while the pings went: host 1's history has the flow, part-way; host 2
    // keeps no history, and the answer says so.
    let at = format!("G.At({during}).Flows().Has('CaptureID', '{capture}')");
    let (s, flows, note) = query_noted(&api, &at).await;
    assert_eq!(s, 200, "{flows}");
    assert_eq!(flows.as_array().map(Vec::len), Some(1), "{flows}");
    let f = &flows[0];
    assert_eq!(f["Application"], "ICMPv4", "{f}");
    let mid = f["Metric"]["ABPackets"].as_u64().unwrap();
    assert!((1..8).contains(&mid), "mid-way, part of the pings: {f}");
    assert!(
        note.contains(&format!("agent {h2}: Backend does not support history")),
        "{note:?}"
    );
    assert!(!note.contains(&h1), "{note:?}");
    // From the nodes of that time (the analyzer's history): host 1's eth0 has it, host
    // 2's none.
    let on = |id: &str| {
        format!("G.At({during}).V('{id}').Flows().Has('CaptureID', '{capture}').Count()")
    };
    assert_eq!(api.query(&on(&eth0)).await, json!(1));
    let eth0_2 = api.query(&eth0_of(&h2)).await[0]["ID"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(api.query(&on(&eth0_2)).await, json!(0));
    // Before the pings, none.
    let before = format!(
        "G.At({}).Flows().Has('CaptureID', '{capture}').Count()",
        began - 1000
    );
    assert_eq!(api.query(&before).await, json!(0));
    // A window over the whole traffic: the flow in its final state, and its series of
    // snapshots adding up to every packet.
    let span = now_ms() - began + 1000;
    let window = format!("G.Context('NOW', '{span}ms').Flows().Has('CaptureID', '{capture}')");
    let f = api.query(&window).await;
    assert_eq!(f.as_array().map(Vec::len), Some(1), "{f}");
    assert_eq!(f[0]["Metric"]["ABPackets"], 8, "{f}");
    let fid = f[0]["UUID"].as_str().unwrap().to_owned();
    let series = api.query(&format!("{window}.Metrics()")).await;
    let samples = series[0][&fid]
        .as_array()
        .unwrap_or_else(|| panic!("no series: {series}"));
    assert!(samples.len() >= 2, "one sample per snapshot: {series}");
    assert_eq!(
        api.query(&format!("{window}.Metrics().Sum('BAPackets')"))
            .await,
        json!(8)
    );
    // And live, still nothing.
    assert_eq!(api.query(&format!("{live}.Count()")).await, json!(0));
}
