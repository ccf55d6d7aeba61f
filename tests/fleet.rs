//! Fleet mode on one machine, with real processes and real namespaces: a real etcd on
//! loopback, analyzers in the root namespace on the address of a test bridge, and
//! agents each in a network namespace of their own (and a PID namespace of their own,
//! so their probes see only their namespace and those under their own --netns-path),
//! joined to the bridge by veths.

mod common;
#[path = "common/fleet.rs"]
mod fleet;

use std::time::{Duration, Instant};

use fleet::{agent, analyzer, eventually, free_port, raw_agent, sorted, Api, Etcd, Net, Proc};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest, Message};

/// Sends `text` and returns the close frame's code and reason the analyzer answers.
async fn refused_with(analyzer: &Proc, host: &str, text: String) -> (u16, String) {
    let mut ws = raw_agent(analyzer, host).await.expect("connect");
    ws.send(Message::text(
        r#"{"Namespace":"Graph","Type":"Sync","Obj":{"Nodes":[],"Edges":[]}}"#,
    ))
    .await
    .unwrap();
    let _ = ws.send(Message::text(text)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Message::Close(Some(f))))) => return (f.code.into(), f.reason.to_string()),
            Ok(Some(Ok(Message::Close(None)))) | Ok(None) => return (0, String::new()),
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(e))) => return (0, e.to_string()),
            Err(_) => break,
        }
    }
    panic!("the analyzer did not close the connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_merge_into_one_analyzer_and_bad_agents_are_refused() {
    let etcd = Etcd::start().await;
    let mut net = Net::new();
    let tag = net.tag.clone();
    let an = analyzer(
        &net,
        &etcd,
        &format!("an-{tag}"),
        0,
        &["--insecure-no-auth", "--max-agent-message-bytes", "65536"],
    );
    let api = Api::new(&an);
    let ids: Vec<String> = (1..=3).map(|i| format!("h{i}-{tag}")).collect();
    let mut hosts = Vec::new();
    let mut agents = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let (ns, dir) = net.host(i as u8 + 1);
        agents.push(agent(&ns, &dir, id, &[&an], &[]));
        hosts.push((ns, dir));
    }
    let all: Vec<&str> = ids.iter().map(String::as_str).collect();
    assert!(
        eventually(Duration::from_secs(15), || async {
            api.hosts().await == sorted(&all)
        })
        .await
        .is_some(),
        "the analyzer shows {:?}, not {all:?}",
        api.hosts().await
    );
    // Each host's elements carry the Host and Origin of its connection, and each agent
    // saw its own namespace's eth0 (10.213.x.i).
    for (i, id) in ids.iter().enumerate() {
        let origins = api
            .query(&format!(
                "G.V().Has('@Host','{id}').Values('@Origin').Dedup()"
            ))
            .await;
        assert_eq!(origins, json!([format!("agent.{id}")]), "{id}");
        let ip = format!("10.213.{}.{}/24", net.subnet, i + 1);
        let eth0 = api
            .query(&format!(
                "G.V().Has('@Host','{id}','Name','eth0').Values('IPV4')"
            ))
            .await;
        assert!(eth0.to_string().contains(&ip), "{id}: eth0 {eth0}");
    }

    // A namespace made on host 2 shows on the analyzer.
    let name = format!("n{tag}");
    let dir2 = hosts[1].1.clone();
    let started = Instant::now();
    net.netns_in(&dir2, &name);
    let q = format!("G.V().Has('Type','netns','Name','{name}').Values('@Host')");
    let seen = eventually(Duration::from_secs(5), || async {
        api.try_query(&q).await == Some(json!([ids[1].clone()]))
    })
    .await;
    assert!(seen.is_some(), "namespace {name} of host 2 never showed");
    // How long it took is measured in BENCHMARKS.md (benches/fleet_load.rs), not here.
    println!("namespace of host 2 shown after {:?}", started.elapsed());

    // An agent may not write another host's elements: refused with the reason, and the
    // element is untouched.
    let victim = api
        .query(&format!("G.V().Has('@Host','{}','Name','eth0')", ids[0]))
        .await[0]
        .clone();
    let mut forged = victim.clone();
    forged["Metadata"]["Name"] = json!("forged");
    forged["Host"] = json!(ids[0]);
    let msg = json!({"Namespace":"Graph","Type":"NodeUpdated","Obj":forged}).to_string();
    let (code, reason) = refused_with(&an, &format!("forger-{tag}"), msg).await;
    assert_eq!(code, 1008, "{reason}");
    assert!(reason.contains("belongs to host"), "{reason}");
    let now = api
        .query(&format!(
            "G.V().Has('@ID','{}').Values('Name')",
            victim["ID"].as_str().unwrap()
        ))
        .await;
    assert_eq!(now, json!(["eth0"]));
    assert_eq!(
        api.count(&format!("G.V().Has('@Host','forger-{tag}').Count()"))
            .await,
        0
    );

    // Malformed JSON, an unknown type and an oversized message are refused and closed.
    let (code, reason) = refused_with(&an, &format!("bad1-{tag}"), "{not json".into()).await;
    assert_eq!(code, 1008);
    assert!(reason.starts_with("malformed message"), "{reason}");
    let unknown = r#"{"Namespace":"Graph","Type":"Explode","Obj":{}}"#.to_owned();
    let (code, reason) = refused_with(&an, &format!("bad2-{tag}"), unknown).await;
    assert_eq!(
        (code, reason.as_str()),
        (1008, "unknown Graph message type \"Explode\"")
    );
    let big = format!(
        r#"{{"Namespace":"Graph","Type":"NodeAdded","Obj":{{"ID":"x","Metadata":{{"Pad":"{}"}}}}}}"#,
        "a".repeat(100_000)
    );
    let (_, reason) = refused_with(&an, &format!("bad3-{tag}"), big).await;
    assert_eq!(
        api.count("G.V().Has('@ID','x').Count()").await,
        0,
        "{reason}"
    );

    // A second connection with a connected host id is refused with 409.
    match raw_agent(&an, &ids[0]).await {
        Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 409),
        Err(e) => panic!("expected 409, got {e}"),
        Ok(_) => panic!("a duplicate host id was accepted"),
    }
    // The analyzer's own host id is not an agent's.
    match raw_agent(&an, &format!("an-{tag}")).await {
        Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 409),
        other => panic!("expected 409, got {:?}", other.map(|_| ())),
    }

    // A killed agent's subgraph goes (DeleteOnDisconnect); the others stay.
    agents[2].kill();
    let gone = eventually(Duration::from_secs(5), || async {
        api.count(&format!("G.V().Has('@Host','{}').Count()", ids[2]))
            .await
            == 0
    })
    .await;
    assert!(
        gone.is_some(),
        "host 3's subgraph stayed after its agent died"
    );
    assert_eq!(api.hosts().await, sorted(&all[..2]));

    // The whole API serves the merged graph: status lists the agents.
    let status: Value = reqwest::get(format!("{}/api/status", api.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for id in &ids[..2] {
        assert!(status["Agents"].get(id).is_some(), "{status}");
    }
    assert!(status["Agents"].get(&ids[2]).is_none(), "{status}");

    // /metrics counts the agents connected (and no replication peer).
    let metrics = reqwest::get(format!("{}/metrics", api.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("topotap_websocket_clients{kind=\"agent\"} 2\n")
            && metrics.contains("topotap_websocket_clients{kind=\"peer\"} 0\n"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analyzers_replicate_and_agents_resync() {
    let etcd = Etcd::start().await;
    let mut net = Net::new();
    let tag = net.tag.clone();
    let (port_a, port_b) = (free_port(), free_port());
    let ip = net.analyzer_ip();
    let peer_a = format!("{ip}:{port_a}");
    let peer_b = format!("{ip}:{port_b}");
    let a = analyzer(
        &net,
        &etcd,
        &format!("a-{tag}"),
        port_a,
        &["--insecure-no-auth", "--peer", &peer_b],
    );
    let mut b = analyzer(
        &net,
        &etcd,
        &format!("b-{tag}"),
        port_b,
        &["--insecure-no-auth", "--peer", &peer_a],
    );
    let (api_a, api_b) = (Api::new(&a), Api::new(&b));
    let ids: Vec<String> = (1..=3).map(|i| format!("r{i}-{tag}")).collect();
    let (ns1, d1) = net.host(1);
    let (ns2, d2) = net.host(2);
    let (ns3, d3) = net.host(3);
    // Host 1 reports to A, host 2 to B, host 3 to both.
    let _h1 = agent(&ns1, &d1, &ids[0], &[&a], &[]);
    let _h2 = agent(&ns2, &d2, &ids[1], &[&b], &[]);
    let _h3 = agent(&ns3, &d3, &ids[2], &[&a, &b], &[]);
    let all: Vec<&str> = ids.iter().map(String::as_str).collect();
    for api in [&api_a, &api_b] {
        assert!(
            eventually(Duration::from_secs(15), || async {
                api.hosts().await == sorted(&all)
            })
            .await
            .is_some(),
            "{} shows {:?}",
            api.base,
            api.hosts().await
        );
    }
    // No element is duplicated by replication: one eth0 per host on both (a host node
    // may show a moment before its interfaces, which replication sends one by one).
    let eth0s = "G.V().Has('Name','eth0').Count()";
    for api in [&api_a, &api_b] {
        let three = eventually(Duration::from_secs(10), || async {
            api.count(eth0s).await >= 3
        })
        .await;
        assert!(three.is_some(), "{}: eth0 count never reached 3", api.base);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for api in [&api_a, &api_b] {
        assert_eq!(api.count(eth0s).await, 3, "{}", api.base);
    }

    // A namespace made on host 2 (an agent of B) shows on A.
    let name = format!("m{tag}");
    let started = Instant::now();
    net.netns_in(&d2, &name);
    let q = format!("G.V().Has('Type','netns','Name','{name}').Count()");
    let seen = eventually(Duration::from_secs(5), || async {
        api_a.count(&q).await == 1
    })
    .await;
    assert!(seen.is_some(), "namespace {name} never reached A");
    println!(
        "namespace of host 2 reached A after {:?}",
        started.elapsed()
    );

    // B dies: A drops B's hosts that no agent of A reports (host 2), keeps the others.
    b.kill();
    let dropped = eventually(Duration::from_secs(15), || async {
        api_a.hosts().await == sorted(&[all[0], all[2]])
    })
    .await;
    assert!(
        dropped.is_some(),
        "A shows {:?} after B died",
        api_a.hosts().await
    );

    // B comes back on the same address: host 2's agent reconnects and resyncs, B gets
    // A's hosts again, and A gets host 2 again.
    b = analyzer(
        &net,
        &etcd,
        &format!("b-{tag}"),
        port_b,
        &["--insecure-no-auth", "--peer", &peer_a],
    );
    let api_b = Api::new(&b);
    for api in [&api_a, &api_b] {
        assert!(
            eventually(Duration::from_secs(20), || async {
                api.hosts().await == sorted(&all)
            })
            .await
            .is_some(),
            "{} shows {:?} after B restarted",
            api.base,
            api.hosts().await
        );
        assert!(
            eventually(Duration::from_secs(5), || async {
                api.count(&q).await == 1
            })
            .await
            .is_some(),
            "{}: namespace {name} missing after the resync",
            api.base
        );
    }
    for api in [&api_a, &api_b] {
        assert_eq!(
            api.count("G.V().Has('Name','eth0').Count()").await,
            3,
            "{}",
            api.base
        );
    }
    drop(b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_authenticate_to_the_analyzer() {
    let etcd = Etcd::start().await;
    let mut net = Net::new();
    let tag = net.tag.clone();
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    std::fs::write(
        &htpasswd,
        format!(
            "fleet:{}\nviewer:{}\n",
            bcrypt::hash("s3cret", 5).unwrap(),
            bcrypt::hash("look", 5).unwrap()
        ),
    )
    .unwrap();
    let roles = dir.path().join("roles.toml");
    std::fs::write(&roles, "[users]\nfleet = \"admin\"\nviewer = \"reader\"\n").unwrap();
    let good = dir.path().join("good");
    std::fs::write(&good, "fleet:s3cret\n").unwrap();
    let wrong = dir.path().join("wrong");
    std::fs::write(&wrong, "fleet:nope\n").unwrap();
    let reader = dir.path().join("reader");
    std::fs::write(&reader, "viewer:look\n").unwrap();
    let an = analyzer(
        &net,
        &etcd,
        &format!("an-{tag}"),
        0,
        &[
            "--auth-htpasswd",
            htpasswd.to_str().unwrap(),
            "--auth-roles",
            roles.to_str().unwrap(),
        ],
    );
    let mut api = Api::new(&an);
    api.auth = Some(("fleet".into(), "s3cret".into()));
    let ids: Vec<String> = (1..=3).map(|i| format!("t{i}-{tag}")).collect();
    let mut agents = Vec::new();
    for (i, file) in [&good, &wrong, &reader].into_iter().enumerate() {
        let (ns, d) = net.host(i as u8 + 1);
        let token = file.to_str().unwrap();
        agents.push(agent(
            &ns,
            &d,
            &ids[i],
            &[&an],
            &["--analyzer-token-file", token],
        ));
    }
    assert!(
        eventually(Duration::from_secs(15), || async {
            api.hosts().await == sorted(&[ids[0].as_str()])
        })
        .await
        .is_some(),
        "shows {:?}",
        api.hosts().await
    );
    // The refused agents stay out, as retried attempts do.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(api.hosts().await, sorted(&[ids[0].as_str()]));
    // Without credentials: 401; with a reader's: 403.
    match raw_agent(&an, &format!("anon-{tag}")).await {
        Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 401),
        other => panic!("expected 401, got {:?}", other.map(|_| ())),
    }
    let mut req = format!("ws://{}/ws/agent/topology", an.addr)
        .into_client_request()
        .unwrap();
    use base64::Engine;
    let basic = base64::engine::general_purpose::STANDARD.encode("viewer:look");
    let h = req.headers_mut();
    h.insert("X-Host-ID", format!("viewer-{tag}").parse().unwrap());
    h.insert("X-Client-Type", "skydive-agent".parse().unwrap());
    h.insert("Authorization", format!("Basic {basic}").parse().unwrap());
    match tokio_tungstenite::connect_async(req).await {
        Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 403),
        other => panic!("expected 403, got {:?}", other.map(|_| ())),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_authenticate_with_client_certificates() {
    let etcd = Etcd::start().await;
    let mut net = Net::new();
    let tag = net.tag.clone();
    let ca = common::certs::TestCa::new(&format!("fleet-ca-{tag}"));
    let (server_cert, server_key) = ca.server_for_ip(&net.analyzer_ip());
    let (client_cert, client_key) = ca.client("fleet-agent");
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    std::fs::write(
        &htpasswd,
        format!("viewer:{}\n", bcrypt::hash("look", 5).unwrap()),
    )
    .unwrap();
    let roles = dir.path().join("roles.toml");
    std::fs::write(
        &roles,
        "[users]\nfleet-agent = \"admin\"\nviewer = \"reader\"\n",
    )
    .unwrap();
    let an = analyzer(
        &net,
        &etcd,
        &format!("an-{tag}"),
        0,
        &[
            "--tls-cert",
            &server_cert,
            "--tls-key",
            &server_key,
            "--tls-client-ca",
            &ca.ca(),
            "--auth-htpasswd",
            htpasswd.to_str().unwrap(),
            "--auth-roles",
            roles.to_str().unwrap(),
        ],
    );
    let pem = std::fs::read(ca.ca()).unwrap();
    let api = Api {
        base: format!("https://{}", an.addr),
        http: reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap(),
        auth: Some(("viewer".into(), "look".into())),
    };
    let ids: Vec<String> = (1..=2).map(|i| format!("c{i}-{tag}")).collect();
    let (ns1, d1) = net.host(1);
    let (ns2, d2) = net.host(2);
    let ca_path = ca.ca();
    // Host 1 presents a client certificate; host 2 trusts the analyzer but has none.
    let _h1 = agent(
        &ns1,
        &d1,
        &ids[0],
        &[&an],
        &[
            "--cacert",
            &ca_path,
            "--tls-cert",
            &client_cert,
            "--tls-key",
            &client_key,
        ],
    );
    let _h2 = agent(&ns2, &d2, &ids[1], &[&an], &["--cacert", &ca_path]);
    assert!(
        eventually(Duration::from_secs(15), || async {
            api.hosts().await == sorted(&[ids[0].as_str()])
        })
        .await
        .is_some(),
        "shows {:?}",
        api.hosts().await
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(api.hosts().await, sorted(&[ids[0].as_str()]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vxlan_tunnels_link_hosts_on_the_analyzer() {
    let etcd = Etcd::start().await;
    let mut net = Net::new();
    let tag = net.tag.clone();
    let an = analyzer(
        &net,
        &etcd,
        &format!("an-{tag}"),
        0,
        &["--insecure-no-auth"],
    );
    let api = Api::new(&an);
    let ids: Vec<String> = (1..=2).map(|i| format!("x{i}-{tag}")).collect();
    let (ns1, d1) = net.host(1);
    let (ns2, d2) = net.host(2);
    let (ip1, ip2) = (net.host_ip(1), net.host_ip(2));
    // A VXLAN on each host whose remote end is the other host's eth0.
    let (vx1, vx2) = (format!("vx{tag}a"), format!("vx{tag}b"));
    for (ns, vx, local, remote) in [(&ns1, &vx1, &ip1, &ip2), (&ns2, &vx2, &ip2, &ip1)] {
        common::net::sh(&format!(
            "ip -n {ns} link add {vx} type vxlan id 42 local {local} remote {remote} \
             dstport 4789 dev eth0 && ip -n {ns} link set {vx} up"
        ));
    }
    let _h1 = agent(&ns1, &d1, &ids[0], &[&an], &[]);
    let mut h2 = agent(&ns2, &d2, &ids[1], &[&an], &[]);
    let all: Vec<&str> = ids.iter().map(String::as_str).collect();
    assert!(
        eventually(Duration::from_secs(15), || async {
            api.hosts().await == sorted(&all)
        })
        .await
        .is_some(),
        "the analyzer shows {:?}",
        api.hosts().await
    );

    // The agent records the tunnel's endpoints from netlink.
    let node = api.query(&format!("G.V().Has('Name','{vx1}')")).await;
    let md = &node[0]["Metadata"];
    assert_eq!(md["Type"], "vxlan", "{md}");
    assert_eq!(md["LocalIP"], json!(ip1), "{md}");
    assert_eq!(md["RemoteIP"], json!(ip2), "{md}");
    assert_eq!(md["VNI"], 42, "{md}");
    assert_eq!(md["TunnelPort"], 4789, "{md}");

    // Each tunnel gets an edge to the other host's eth0, so a path crosses hosts.
    let tunnels = || async {
        api.query("G.E().Has('RelationType','tunnel')")
            .await
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    let both = eventually(Duration::from_secs(10), || async {
        tunnels().await.len() == 2
    })
    .await;
    assert!(both.is_some(), "tunnel edges: {:?}", tunnels().await);
    let eth0_2 = api
        .query(&format!("G.V().Has('@Host','{}','Name','eth0')", ids[1]))
        .await[0]["ID"]
        .clone();
    let vx1_id = api.query(&format!("G.V().Has('Name','{vx1}')")).await[0]["ID"].clone();
    let edge = tunnels()
        .await
        .into_iter()
        .find(|e| e["Parent"] == vx1_id)
        .expect("an edge from host 1's tunnel");
    assert_eq!(edge["Child"], eth0_2, "{edge}");
    assert_eq!(edge["Host"], json!(ids[0]), "{edge}");
    assert_eq!(
        edge["Origin"],
        json!(format!("analyzer.an-{tag}")),
        "{edge}"
    );
    let path = api
        .query(&format!(
            "G.V().Has('Name','{vx1}').ShortestPathTo(Metadata('Name','{vx2}'))"
        ))
        .await;
    let hosts: Vec<&str> = path[0]
        .as_array()
        .unwrap_or_else(|| panic!("no path: {path}"))
        .iter()
        .map(|n| n["Host"].as_str().unwrap())
        .collect();
    assert_eq!(hosts.first(), Some(&ids[0].as_str()), "{path}");
    assert_eq!(hosts.last(), Some(&ids[1].as_str()), "{path}");

    // Either side going takes its edge away: the tunnel on host 1, then all of host 2.
    common::net::sh(&format!("ip -n {ns1} link del {vx1}"));
    let one = eventually(Duration::from_secs(10), || async {
        tunnels().await.len() == 1
    })
    .await;
    assert!(one.is_some(), "tunnel edges: {:?}", tunnels().await);
    h2.kill();
    let none = eventually(Duration::from_secs(10), || async {
        tunnels().await.is_empty()
    })
    .await;
    assert!(none.is_some(), "tunnel edges: {:?}", tunnels().await);
}

/// A Skydive agent sends metadata changes as `NodePartiallyUpdated` /
/// `EdgePartiallyUpdated`: the analyzer applies them to that host's elements and
/// refuses a malformed op with its reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_updates_of_an_agent_change_its_elements() {
    let etcd = Etcd::start().await;
    let tag = common::rand_tag();
    let an = fleet::analyzer_on(
        "127.0.0.1:0",
        &etcd,
        &format!("an-{tag}"),
        &["--insecure-no-auth"],
    );
    let api = Api::new(&an);
    let host = format!("p-{tag}");
    let (a, b) = (format!("{host}-a"), format!("{host}-b"));
    let mut ws = raw_agent(&an, &host).await.expect("connect");
    fleet::send_graph(
        &mut ws,
        "Sync",
        json!({
            "Nodes": [
                {"ID": a, "Metadata": {"Name": "pa", "Type": "veth", "MTU": 1500}},
                {"ID": b, "Metadata": {"Name": "pb", "Type": "veth"}},
            ],
            "Edges": [{"ID": format!("{host}-e"), "Parent": a, "Child": b,
                       "Metadata": {"RelationType": "layer2"}}],
        }),
    )
    .await;
    fleet::send_graph(
        &mut ws,
        "NodePartiallyUpdated",
        json!({"ID": a, "UpdatedAt": 1, "Revision": 2, "Ops": [
            {"Type": 1, "Key": "Captures", "Value": [{"ID": "c1", "State": "active"}]},
            {"Type": 1, "Key": "Neighbors.Count", "Value": 2},
            {"Type": 2, "Key": "MTU"},
        ]}),
    )
    .await;
    fleet::send_graph(
        &mut ws,
        "EdgePartiallyUpdated",
        json!({"ID": format!("{host}-e"), "Ops": [{"Type": 1, "Key": "Weight", "Value": 3}]}),
    )
    .await;
    let node = || async {
        api.try_query(&format!("G.V('{a}')"))
            .await
            .and_then(|v| v.get(0).cloned())
            .unwrap_or(Value::Null)
    };
    assert!(
        eventually(Duration::from_secs(10), || async {
            let md = &node().await["Metadata"];
            md["Captures"][0]["State"] == "active"
                && md["Neighbors"]["Count"] == 2
                && md.get("MTU").is_none()
                && md["Name"] == "pa"
        })
        .await
        .is_some(),
        "{}",
        node().await
    );
    assert_eq!(
        api.query(&format!("G.E('{host}-e').Values('Weight')"))
            .await,
        json!([3])
    );
    // A bad op: the connection is closed with the reason.
    fleet::send_graph(
        &mut ws,
        "NodePartiallyUpdated",
        json!({"ID": a, "Ops": [{"Type": 7, "Key": "X"}]}),
    )
    .await;
    let reason = loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Message::Close(Some(f))))) => break f.reason.to_string(),
            Ok(Some(Ok(_))) => continue,
            other => panic!("the analyzer did not close the connection: {other:?}"),
        }
    };
    assert_eq!(
        reason,
        "NodePartiallyUpdated: Ops[0]: unknown Type 7 (1 sets a key, 2 removes it)"
    );
}
