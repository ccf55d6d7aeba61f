//! Captures and injections across hosts: analyzers with a real etcd dispatch them to
//! agents, each in a network (and PID) namespace of its own, which run them with their
//! own engine. A capture created on one analyzer runs on host 3's interface and its
//! NetFlow reaches an nfcapd in host 3's namespace; `Metadata.Captures` shows on both
//! analyzers; `Flows()` on an analyzer answers with the agents' flows; an injection
//! created on an analyzer leaves from host 1; and when the leading analyzer dies the
//! other takes over without running the capture a second time. An injection between
//! two hosts' VXLAN interfaces crosses the tunnel, its progress on every analyzer;
//! what an agent refuses shows on the analyzer; an agent connected to the analyzer
//! that does not lead only gets its orders through that analyzer.

mod common;
#[path = "common/fleet.rs"]
mod fleet;

use std::time::Duration;

use common::net::sh;
use common::nfdump::Nfcapd;
use fleet::{
    active_capture, agent, analyzer, eth0_of, free_port, wait_until, Api, Etcd, Net, Proc,
};
use serde_json::{json, Value};

/// Capture points an agent runs, by state, from its own `/metrics` (inside its
/// namespace, on its loopback).
fn agent_capture_points(ns: &str, agent: &Proc, state: &str) -> u64 {
    let text = sh(&format!(
        "ip netns exec {ns} curl -s --max-time 5 http://{}/metrics",
        agent.addr
    ));
    let prefix = format!("topotap_captures{{state=\"{state}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {prefix} in the agent's metrics: {text}"))
}

/// Total ICMP echo requests from `src` to `dst` nfcapd received.
fn echo_requests(flows: &[common::nfdump::NfFlow], src: &str, dst: &str) -> u64 {
    flows
        .iter()
        .filter(|f| f.protocol == 1 && f.src == src && f.dst == dst && f.dst_port == 8 * 256)
        .map(|f| f.packets)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn captures_and_injections_run_on_the_agents_exactly_once() {
    let etcd = Etcd::start().await;
    let mut net = Net::new();
    let tag = net.tag.clone();
    let subnet = net.subnet;
    let ip = |i: u8| format!("10.213.{subnet}.{i}");
    let allow = ["--allow-target", "127.0.0.0/8,10.213.0.0/16"];
    let mut a = analyzer(
        &net,
        &etcd,
        &format!("a-{tag}"),
        free_port(),
        &["--insecure-no-auth", allow[0], allow[1]],
    );
    // A leads: it joined the election first.
    let api_a = Api::new(&a);
    wait_until(Duration::from_secs(15), "analyzer A leads", || {
        api_a.is_master()
    })
    .await;
    let b = analyzer(
        &net,
        &etcd,
        &format!("b-{tag}"),
        free_port(),
        &["--insecure-no-auth", allow[0], allow[1]],
    );
    let api_b = Api::new(&b);
    let hosts: Vec<String> = (1..=3).map(|i| format!("d{i}-{tag}")).collect();
    let (ns1, d1) = net.host(1);
    let (ns2, d2) = net.host(2);
    let (ns3, d3) = net.host(3);
    let _h1 = agent(&ns1, &d1, &hosts[0], &[&a, &b], &allow);
    let h2 = agent(&ns2, &d2, &hosts[1], &[&a, &b], &allow);
    let h3 = agent(&ns3, &d3, &hosts[2], &[&a, &b], &allow);
    for api in [&api_a, &api_b] {
        wait_until(
            Duration::from_secs(20),
            "every host on both analyzers",
            || async {
                let mut want = hosts.clone();
                want.sort();
                api.hosts().await == want
            },
        )
        .await;
        for h in &hosts {
            assert_eq!(
                api.count(&format!("{}.Count()", eth0_of(h))).await,
                1,
                "{h}"
            );
        }
    }
    assert!(!api_b.is_master().await, "one leader only");

    // Bad input: a capture that matches nothing is stored and dispatched nowhere; the
    // analyzers keep answering.
    let (s, _) = api_a
        .send(
            "POST",
            "/api/capture",
            Some(json!({"GremlinQuery": "G.V().Has('Name','nothing-here')"})),
        )
        .await;
    assert_eq!(s, 201);

    // A NetFlow capture on host 3's eth0, created on B (not the leader), exporting to
    // an nfcapd on host 3's own loopback: only a capture run by host 3's agent can
    // reach it.
    let dir = tempfile::tempdir().unwrap();
    let nf_port = 20000 + u16::from_str_radix(&tag[..3], 16).unwrap() % 20000;
    sh(&format!("ip -n {ns3} link set lo up"));
    let mut nfcapd = Nfcapd::start(&ns3, "127.0.0.1", nf_port, dir.path());
    let (s, cap) = api_b
        .send(
            "POST",
            "/api/capture",
            Some(json!({
                "GremlinQuery": eth0_of(&hosts[2]),
                "TargetType": "netflowv5",
                "Target": format!("127.0.0.1:{nf_port}"),
                "Name": "fleet netflow",
            })),
        )
        .await;
    assert_eq!(s, 201, "{cap}");
    let netflow = cap["UUID"].as_str().unwrap().to_owned();
    for api in [&api_a, &api_b] {
        wait_until(
            Duration::from_secs(15),
            "the NetFlow capture active on host 3 on both analyzers",
            || async {
                let e = api.entries("Captures", &netflow).await;
                e.len() == 1 && e[0].0 == "eth0" && e[0].1["State"] == "active"
            },
        )
        .await;
    }
    assert_eq!(agent_capture_points(&ns3, &h3, "active"), 1);
    let (_, listed) = api_a
        .send("GET", &format!("/api/capture/{netflow}"), None)
        .await;
    assert_eq!(listed["Count"], 1, "{listed}");
    sh(&format!(
        "ip netns exec {ns3} ping -c 5 -i 0.2 -W 2 {}",
        ip(1)
    ));

    // A local capture on host 2's eth0, created on A: G.Flows() on either analyzer
    // answers with host 2's flows, exact packet counts.
    let local = active_capture(
        &api_a,
        &[&api_a, &api_b],
        json!({"GremlinQuery": eth0_of(&hosts[1])}),
        "the local capture active on host 2",
    )
    .await;
    sh(&format!(
        "ip netns exec {ns1} ping -c 4 -i 0.2 -W 2 {}",
        ip(2)
    ));
    let q_ping = format!(
        "G.Flows().Has('Network.A','{}','Network.B','{}','Application','ICMPv4')",
        ip(1),
        ip(2)
    );
    // Packets reach the flow table a capture buffer's timeout after they were sent.
    let exact = |f: &Value| {
        f.as_array().is_some_and(|l| {
            l.len() == 1
                && l[0]["Metric"]["ABPackets"] == 4
                && l[0]["Metric"]["BAPackets"] == 4
                && l[0]["CaptureID"] == local.as_str()
        })
    };
    for api in [&api_b, &api_a] {
        wait_until(
            Duration::from_secs(10),
            "4 echo requests and replies in Flows()",
            || async { api.try_query(&q_ping).await.is_some_and(|f| exact(&f)) },
        )
        .await;
    }
    // An agent that never answers requests: Flows() still answers in its budget,
    // with the flows of the others, and names it.
    let silent_host = format!("s-{tag}");
    let mut silent = fleet::raw_agent(&b, &silent_host).await.expect("connect");
    fleet::send_graph(&mut silent, "Sync", json!({"Nodes": [], "Edges": []})).await;
    wait_until(
        Duration::from_secs(10),
        "the silent agent connected",
        || async {
            api_b.json("/api/status").await["Agents"]
                .get(&silent_host)
                .is_some()
        },
    )
    .await;
    let resp = api_b
        .http
        .post(format!("{}/api/topology", api_b.base))
        .header("Content-Type", "application/json")
        .body(json!({ "GremlinQuery": q_ping }).to_string())
        .send()
        .await
        .expect("Flows() answers despite a silent agent");
    assert_eq!(resp.status().as_u16(), 200);
    let note = resp
        .headers()
        .get("X-Flows-Incomplete")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert!(
        note.contains(&format!("agent {silent_host} did not answer")),
        "{note:?}"
    );
    let f: Value = resp.json().await.unwrap();
    assert!(exact(&f), "{f}");
    drop(silent);

    // An injection created on B from host 1's eth0 to host 2's: host 1's agent sends
    // it, host 2's capture counts it.
    let (s, inj) = api_b
        .send(
            "POST",
            "/api/injectpacket",
            Some(json!({
                "Src": eth0_of(&hosts[0]),
                "Dst": eth0_of(&hosts[1]),
                "Type": "udp4",
                "DstPort": 7777,
                "SrcPort": 7000,
                "Count": 5,
                "Interval": 100,
            })),
        )
        .await;
    assert_eq!(s, 201, "{inj}");
    let injection = inj["UUID"].as_str().unwrap().to_owned();
    wait_until(
        Duration::from_secs(15),
        "the injection done on host 1",
        || async {
            let e = api_a.entries("PacketInjections", &injection).await;
            e.len() == 1 && e[0].1["State"] == "done" && e[0].1["PacketCount"] == 5
        },
    )
    .await;
    for api in [&api_a, &api_b] {
        wait_until(
            Duration::from_secs(10),
            "the injection done in GET /api/injectpacket/<id>",
            || async {
                let (s, i) = api
                    .send("GET", &format!("/api/injectpacket/{injection}"), None)
                    .await;
                s == 200 && i["State"] == "done" && i["PacketCount"] == 5
            },
        )
        .await;
    }
    let q = "G.Flows().Has('Transport.A', 7000, 'Transport.B', 7777)";
    wait_until(
        Duration::from_secs(10),
        "the injected packets counted on host 2",
        || async {
            api_a.try_query(q).await.is_some_and(|f| {
                f.as_array()
                    .is_some_and(|l| l.len() == 1 && l[0]["Metric"]["ABPackets"] == 5)
            })
        },
    )
    .await;
    let (s, _) = api_a
        .send("DELETE", &format!("/api/injectpacket/{injection}"), None)
        .await;
    assert_eq!(s, 200);
    wait_until(
        Duration::from_secs(15),
        "the injection's entry gone",
        || async {
            api_b
                .entries("PacketInjections", &injection)
                .await
                .is_empty()
        },
    )
    .await;

    // The leader dies: B leads, and the NetFlow capture keeps running on host 3, once.
    a.kill();
    wait_until(Duration::from_secs(30), "analyzer B leads", || {
        api_b.is_master()
    })
    .await;
    // Several dispatch rounds of the new leader.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let e = api_b.entries("Captures", &netflow).await;
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].1["State"], "active", "{e:?}");
    assert_eq!(
        agent_capture_points(&ns3, &h3, "active"),
        1,
        "one capture point, not two"
    );
    assert_eq!(agent_capture_points(&ns2, &h2, "active"), 1);
    sh(&format!(
        "ip netns exec {ns3} ping -c 5 -i 0.2 -W 2 {}",
        ip(1)
    ));

    // Deleting it on B stops it on the agent; the exporter flushes to nfcapd.
    let (s, _) = api_b
        .send("DELETE", &format!("/api/capture/{netflow}"), None)
        .await;
    assert_eq!(s, 200);
    wait_until(
        Duration::from_secs(15),
        "the NetFlow capture stopped on host 3",
        || async { api_b.entries("Captures", &netflow).await.is_empty() },
    )
    .await;
    assert_eq!(agent_capture_points(&ns3, &h3, "active"), 0);
    // The flows of the first ping were counted once.
    let f = api_b.query(&q_ping).await;
    assert!(exact(&f), "{f}");
    let flows = nfcapd.flows();
    // Ten echo requests, each counted once: the capture never ran twice, nor stopped
    // across the change of leader.
    assert_eq!(echo_requests(&flows, &ip(3), &ip(1)), 10, "{flows:?}");
    drop(b);
}

/// An injection from host 1's VXLAN to host 2's (overlay addresses on each, the
/// underlay on the bridge): the analyzer finds the tunnel edges that make a path
/// across hosts, host 1's agent sends, and the packets reach host 2 through the
/// tunnel: host 2's VXLAN receives the echo requests (a capture there) and host 2's
/// `eth0` the VXLAN datagrams from host 1 (a capture on the underlay).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_injection_from_host_1_to_host_2_crosses_the_vxlan_tunnel() {
    let etcd = Etcd::start().await;
    let mut net = Net::new();
    let tag = net.tag.clone();
    let subnet = net.subnet;
    let overlay = |i: u8| format!("10.214.{subnet}.{i}");
    let allow = ["--allow-target", "10.214.0.0/16"];
    let an = analyzer(
        &net,
        &etcd,
        &format!("v-{tag}"),
        0,
        &["--insecure-no-auth", allow[0], allow[1]],
    );
    let api = Api::new(&an);
    wait_until(Duration::from_secs(15), "the analyzer leads", || {
        api.is_master()
    })
    .await;
    // A second analyzer, which does not lead: it shows the injection's progress too.
    let other = analyzer(
        &net,
        &etcd,
        &format!("w-{tag}"),
        0,
        &["--insecure-no-auth", allow[0], allow[1]],
    );
    let api_other = Api::new(&other);
    let hosts: Vec<String> = (1..=2).map(|i| format!("v{i}-{tag}")).collect();
    let (ns1, d1) = net.host(1);
    let (ns2, d2) = net.host(2);
    let (ip1, ip2) = (net.host_ip(1), net.host_ip(2));
    let (vx1, vx2) = (format!("vx{tag}a"), format!("vx{tag}b"));
    for (i, ns, vx, local, remote) in [(1, &ns1, &vx1, &ip1, &ip2), (2, &ns2, &vx2, &ip2, &ip1)] {
        sh(&format!(
            "ip -n {ns} link add {vx} type vxlan id 42 local {local} remote {remote} \
             dstport 4789 dev eth0 && ip -n {ns} addr add {}/24 dev {vx} && \
             ip -n {ns} link set {vx} up",
            overlay(i)
        ));
    }
    let _h1 = agent(&ns1, &d1, &hosts[0], &[&an, &other], &allow);
    let _h2 = agent(&ns2, &d2, &hosts[1], &[&an, &other], &allow);
    for a in [&api, &api_other] {
        wait_until(
            Duration::from_secs(20),
            "both hosts on both analyzers",
            || async { a.hosts().await == hosts },
        )
        .await;
    }
    assert!(!api_other.is_master().await, "one leader only");
    let vx = |name: &str| format!("G.V().Has('Name','{name}')");
    // Each VXLAN has its edge to the other host: a path crosses hosts.
    wait_until(
        Duration::from_secs(10),
        "a tunnel edge from each host, and both overlay addresses",
        || async {
            let overlay2 = format!("{}/24", overlay(2));
            api.count("G.E().Has('RelationType','tunnel').Count()")
                .await
                == 2
                && api.try_query(&vx(&vx2)).await.is_some_and(|n| {
                    n[0]["Metadata"]["IPV4"]
                        .as_array()
                        .is_some_and(|a| a.iter().any(|ip| ip == overlay2.as_str()))
                })
        },
    )
    .await;
    let path = api
        .query(&format!(
            "{}.ShortestPathTo(Metadata('Name','{vx2}'))",
            vx(&vx1)
        ))
        .await;
    let on: Vec<&str> = path[0]
        .as_array()
        .unwrap_or_else(|| panic!("no path: {path}"))
        .iter()
        .map(|n| n["Host"].as_str().unwrap())
        .collect();
    assert_eq!(on.first(), Some(&hosts[0].as_str()), "{path}");
    assert_eq!(on.last(), Some(&hosts[1].as_str()), "{path}");

    // Captures on host 2: its VXLAN (the overlay) and its eth0 (the underlay).
    let mut captures = Vec::new();
    for q in [vx(&vx2), eth0_of(&hosts[1])] {
        let id = active_capture(
            &api,
            &[&api],
            json!({"GremlinQuery": q}),
            "the capture active on host 2",
        )
        .await;
        captures.push(id);
    }

    let (s, inj) = api
        .send(
            "POST",
            "/api/injectpacket",
            Some(json!({
                "Src": vx(&vx1),
                "Dst": vx(&vx2),
                "Type": "icmp4",
                "Count": 5,
                "Interval": 100,
            })),
        )
        .await;
    assert_eq!(s, 201, "{inj}");
    assert_eq!(inj["SrcIP"], overlay(1), "{inj}");
    assert_eq!(inj["DstIP"], overlay(2), "{inj}");
    let injection = inj["UUID"].as_str().unwrap().to_owned();
    wait_until(
        Duration::from_secs(15),
        "the injection done on host 1's VXLAN",
        || async {
            let e = api.entries("PacketInjections", &injection).await;
            e.len() == 1 && e[0].0 == vx1 && e[0].1["State"] == "done" && e[0].1["PacketCount"] == 5
        },
    )
    .await;
    // The resource itself, on either analyzer, follows the agent's progress.
    for a in [&api, &api_other] {
        wait_until(
            Duration::from_secs(10),
            "the injection done with 5 packets in GET /api/injectpacket/<id>",
            || async {
                let (s, i) = a
                    .send("GET", &format!("/api/injectpacket/{injection}"), None)
                    .await;
                s == 200
                    && i["State"] == "done"
                    && i["PacketCount"] == 5
                    && i.get("Error").is_none()
            },
        )
        .await;
    }
    // The overlay: host 2's VXLAN received exactly the 5 echo requests.
    let q_inner = format!(
        "G.Flows().Has('CaptureID','{}','Network.A','{}','Network.B','{}','Application','ICMPv4')",
        captures[0],
        overlay(1),
        overlay(2)
    );
    wait_until(
        Duration::from_secs(10),
        "5 echo requests received on host 2's VXLAN",
        || async {
            api.try_query(&q_inner).await.is_some_and(|f| {
                f.as_array()
                    .is_some_and(|l| l.len() == 1 && l[0]["Metric"]["ABPackets"] == 5)
            })
        },
    )
    .await;
    // The underlay: they came as VXLAN datagrams from host 1 to host 2 (with host 2's
    // ARP exchange over the tunnel, if any).
    let q_outer = format!(
        "G.Flows().Has('CaptureID','{}','Network.A','{ip1}','Network.B','{ip2}','Application','VXLAN','Transport.B',4789)",
        captures[1]
    );
    let encapsulated = || async {
        api.try_query(&q_outer)
            .await
            .and_then(|f| f.as_array().cloned())
            .unwrap_or_default()
            .iter()
            .map(|f| f["Metric"]["ABPackets"].as_u64().unwrap_or(0))
            .sum::<u64>()
    };
    wait_until(
        Duration::from_secs(10),
        "the VXLAN datagrams on host 2's eth0",
        || async { encapsulated().await >= 5 },
    )
    .await;
}

/// What the leading analyzer cannot dispatch shows on it: an agent that refuses a
/// capture (a type it does not run), an export its own `--allow-target` forbids (the
/// node's `Captures` entry), an injection it refuses; in the capture's `Error` and in
/// `/api/status` `Fleet.Dispatch`, each until it no longer applies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dispatch_failures_show_on_the_analyzer() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    let etcd = Etcd::start().await;
    let mut net = Net::new();
    let tag = net.tag.clone();
    let an = analyzer(
        &net,
        &etcd,
        &format!("f-{tag}"),
        0,
        &["--insecure-no-auth", "--allow-target", "10.213.0.0/16"],
    );
    let api = Api::new(&an);
    wait_until(Duration::from_secs(15), "the analyzer leads", || {
        api.is_master()
    })
    .await;
    let dispatch = || async { api.json("/api/status").await["Fleet"]["Dispatch"].clone() };
    let failed = |d: &Value, id: &str| -> Option<Value> {
        d["Failed"]
            .as_array()?
            .iter()
            .find(|f| f["ID"] == id)
            .cloned()
    };

    // An agent whose own --allow-target is narrower than the analyzer's.
    let host = format!("f1-{tag}");
    let (ns1, d1) = net.host(1);
    let _h1 = agent(&ns1, &d1, &host, &[&an], &["--allow-target", "127.0.0.0/8"]);
    wait_until(
        Duration::from_secs(20),
        "host 1 on the analyzer",
        || async { api.count(&format!("{}.Count()", eth0_of(&host))).await == 1 },
    )
    .await;

    // A NetFlow export to the analyzer's address: the analyzer takes it, the agent
    // starts it and its engine refuses the target; the node's entry says why, and so
    // does the capture.
    let (s, cap) = api
        .send(
            "POST",
            "/api/capture",
            Some(json!({
                "GremlinQuery": eth0_of(&host),
                "TargetType": "netflowv5",
                "Target": format!("{}:2055", net.analyzer_ip()),
            })),
        )
        .await;
    assert_eq!(s, 201, "{cap}");
    let export = cap["UUID"].as_str().unwrap().to_owned();
    wait_until(
        Duration::from_secs(15),
        "the export's error on host 1's eth0",
        || async {
            let e = api.entries("Captures", &export).await;
            e.len() == 1
                && e[0].1["State"] == "error"
                && e[0].1["Error"]
                    .as_str()
                    .is_some_and(|r| r.contains("--allow-target"))
        },
    )
    .await;
    wait_until(Duration::from_secs(5), "the capture's Error", || async {
        let (_, c) = api
            .send("GET", &format!("/api/capture/{export}"), None)
            .await;
        c["Error"].as_str().is_some_and(|e| {
            e.starts_with(&format!("on eth0 (host {host}): ")) && e.contains("--allow-target")
        }) && c["Count"] == 0
    })
    .await;

    // An injection to the same address: the agent refuses it (403), with its reason.
    let (s, inj) = api
        .send(
            "POST",
            "/api/injectpacket",
            Some(json!({
                "Src": eth0_of(&host),
                "DstIP": net.analyzer_ip(),
                "DstMAC": "02:00:00:00:00:01",
                "Type": "icmp4",
            })),
        )
        .await;
    assert_eq!(s, 201, "{inj}");
    let injection = inj["UUID"].as_str().unwrap().to_owned();
    wait_until(
        Duration::from_secs(15),
        "the refused injection in Fleet.Dispatch",
        || async {
            failed(&dispatch().await, &injection).is_some_and(|f| {
                f["Namespace"] == "OnDemandPacketInjection"
                    && f["Type"] == "Start"
                    && f["Host"] == host.as_str()
                    && f["Status"] == 403
                    && f["Reason"]
                        .as_str()
                        .is_some_and(|r| r.contains("--allow-target"))
            })
        },
    )
    .await;
    wait_until(
        Duration::from_secs(5),
        "the refused injection's State and Error",
        || async {
            let (_, i) = api
                .send("GET", &format!("/api/injectpacket/{injection}"), None)
                .await;
            i["State"] == "error"
                && i["PacketCount"] == 0
                && i["Error"].as_str().is_some_and(|e| {
                    e.starts_with(&format!("host {host} refused node ")) && e.contains("(403)")
                })
        },
    )
    .await;

    // An agent speaking the protocol that runs no capture of this type: it refuses
    // every Start with 400 and a reason.
    let other = format!("r-{tag}");
    let ifname = format!("rif{tag}");
    let mut ws = fleet::raw_agent(&an, &other).await.expect("connect");
    fleet::send_graph(
        &mut ws,
        "Sync",
        json!({"Nodes": [{"ID": format!("{other}-if"), "Metadata": {"Name": ifname, "Type": "veth", "IfIndex": 7}}], "Edges": []}),
    )
    .await;
    let starts = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counted = starts.clone();
    let refuser = tokio::spawn(async move {
        while let Some(Ok(msg)) = ws.next().await {
            let Message::Text(text) = msg else { continue };
            let req: Value = serde_json::from_str(&text).unwrap();
            if req["Namespace"] != "OnDemandCapture" {
                continue;
            }
            if req["Type"] == "Start" {
                counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            let reply = json!({
                "Namespace": req["Namespace"],
                "Type": format!("{}Reply", req["Type"].as_str().unwrap()),
                "UUID": req["UUID"],
                "Status": 400,
                "Obj": {"Error": "Type: pcap captures are not supported on this host"},
            });
            if ws.send(Message::text(reply.to_string())).await.is_err() {
                break;
            }
        }
    });
    let (s, cap) = api
        .send(
            "POST",
            "/api/capture",
            Some(json!({"GremlinQuery": format!("G.V().Has('Name','{ifname}')")})),
        )
        .await;
    assert_eq!(s, 201, "{cap}");
    let refused = cap["UUID"].as_str().unwrap().to_owned();
    wait_until(
        Duration::from_secs(15),
        "the refused capture in Fleet.Dispatch",
        || async {
            failed(&dispatch().await, &refused).is_some_and(|f| {
                f["Namespace"] == "OnDemandCapture"
                    && f["Host"] == other.as_str()
                    && f["NodeID"] == format!("{other}-if")
                    && f["Status"] == 400
                    && f["Reason"] == "Type: pcap captures are not supported on this host"
            })
        },
    )
    .await;
    let why = format!(
        "host {other} refused node {other}-if (400): Type: pcap captures are not supported on this host"
    );
    wait_until(Duration::from_secs(5), "the capture's Error", || async {
        let (_, c) = api
            .send("GET", &format!("/api/capture/{refused}"), None)
            .await;
        c["Error"] == why.as_str()
    })
    .await;
    let d = dispatch().await;
    assert_eq!(d["Leading"], true, "{d}");
    assert!(d["Refused"].as_u64().unwrap() >= 2, "{d}");
    assert!(
        d["Sent"].as_u64().unwrap() >= d["Refused"].as_u64().unwrap(),
        "{d}"
    );
    // A refusal for good is not sent again every round.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        starts.load(std::sync::atomic::Ordering::Relaxed),
        1,
        "one Start, not resent"
    );

    // Deleted, the capture and the injection leave the failures.
    for path in [
        format!("/api/capture/{refused}"),
        format!("/api/injectpacket/{injection}"),
    ] {
        let (s, _) = api.send("DELETE", &path, None).await;
        assert_eq!(s, 200, "{path}");
    }
    wait_until(
        Duration::from_secs(10),
        "the failures forgotten",
        || async {
            let d = dispatch().await;
            failed(&d, &refused).is_none() && failed(&d, &injection).is_none()
        },
    )
    .await;
    refuser.abort();
}

/// An agent connected to the analyzer that does not lead only (its link to the
/// leader down, here never configured): the leader reaches it through that peer,
/// whose replication link carries the orders and their answers. A capture and an
/// injection created on the leader run there, once; deleting the capture stops it;
/// nothing waits in `Fleet.Dispatch`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_reach_an_agent_connected_to_another_analyzer_only() {
    let etcd = Etcd::start().await;
    let mut net = Net::new();
    let tag = net.tag.clone();
    let allow = ["--allow-target", "10.213.0.0/16"];
    let (port_a, port_b) = (free_port(), free_port());
    let ip = net.analyzer_ip();
    let (peer_a, peer_b) = (format!("{ip}:{port_a}"), format!("{ip}:{port_b}"));
    let a = analyzer(
        &net,
        &etcd,
        &format!("la-{tag}"),
        port_a,
        &["--insecure-no-auth", "--peer", &peer_b, allow[0], allow[1]],
    );
    let api_a = Api::new(&a);
    wait_until(Duration::from_secs(15), "analyzer A leads", || {
        api_a.is_master()
    })
    .await;
    let b = analyzer(
        &net,
        &etcd,
        &format!("lb-{tag}"),
        port_b,
        &["--insecure-no-auth", "--peer", &peer_a, allow[0], allow[1]],
    );
    let api_b = Api::new(&b);
    let host = format!("l1-{tag}");
    let (ns1, d1) = net.host(1);
    let h1 = agent(&ns1, &d1, &host, &[&b], &allow);
    for api in [&api_a, &api_b] {
        wait_until(
            Duration::from_secs(20),
            "host 1 on both analyzers",
            || async { api.count(&format!("{}.Count()", eth0_of(&host))).await == 1 },
        )
        .await;
    }
    let status = api_a.json("/api/status").await;
    assert!(status["Agents"].get(&host).is_none(), "{status}");
    assert!(api_a.is_master().await && !api_b.is_master().await);

    // A capture created on the leader runs on host 1, once.
    let capture = active_capture(
        &api_a,
        &[&api_a, &api_b],
        json!({"GremlinQuery": eth0_of(&host)}),
        "the capture active on host 1",
    )
    .await;
    let d = api_a.json("/api/status").await["Fleet"]["Dispatch"].clone();
    assert_eq!(d["Waiting"], json!([]), "{d}");
    assert!(d["Succeeded"].as_u64().unwrap() >= 1, "{d}");
    // Several rounds of the leader: still one capture point.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(agent_capture_points(&ns1, &h1, "active"), 1);

    // An injection from host 1 to the analyzers' address, created on the leader: sent
    // by host 1's agent, its progress on both analyzers.
    let (s, inj) = api_a
        .send(
            "POST",
            "/api/injectpacket",
            Some(json!({
                "Src": eth0_of(&host),
                "DstIP": ip,
                "DstMAC": "02:00:00:00:00:01",
                "Type": "icmp4",
                "Count": 3,
                "Interval": 50,
            })),
        )
        .await;
    assert_eq!(s, 201, "{inj}");
    let injection = inj["UUID"].as_str().unwrap().to_owned();
    for api in [&api_a, &api_b] {
        wait_until(
            Duration::from_secs(15),
            "the injection done with 3 packets",
            || async {
                let (s, i) = api
                    .send("GET", &format!("/api/injectpacket/{injection}"), None)
                    .await;
                s == 200 && i["State"] == "done" && i["PacketCount"] == 3
            },
        )
        .await;
    }

    // Deleted on the leader: stopped on host 1 through B.
    let (s, _) = api_a
        .send("DELETE", &format!("/api/capture/{capture}"), None)
        .await;
    assert_eq!(s, 200);
    wait_until(
        Duration::from_secs(15),
        "the capture stopped on host 1",
        || async { api_a.entries("Captures", &capture).await.is_empty() },
    )
    .await;
    assert_eq!(agent_capture_points(&ns1, &h1, "active"), 0);
    let d = api_a.json("/api/status").await["Fleet"]["Dispatch"].clone();
    assert_eq!(d["Waiting"], json!([]), "{d}");
    assert_eq!(d["Failed"], json!([]), "{d}");
}
