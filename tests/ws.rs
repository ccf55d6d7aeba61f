//! The `/ws/subscriber` protocol with a real WebSocket client.

mod common;

use std::time::Duration;

use common::Topotap;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(t: &Topotap, query: &str) -> Ws {
    let url = format!("ws://{}/ws/subscriber{query}", t.addr);
    let (ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("connect");
    ws
}

/// Next JSON text message, skipping pings; panics after 5 s.
async fn next_json(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("a message within 5 s")
            .expect("stream open")
            .expect("no error");
        if let Message::Text(t) = msg {
            return serde_json::from_str(&t).unwrap();
        }
    }
}

async fn post_node(t: &Topotap, id: &str, name: &str, kind: &str) {
    let body = json!({"ID": id, "Metadata": {"Name": name, "Type": kind}}).to_string();
    let (s, v) = t.request("POST", "/api/node", Some(&body)).await;
    assert_eq!(s, 201, "{v}");
}

#[tokio::test]
async fn sync_then_live_updates_of_filtered_subgraph() {
    let t = Topotap::start_api_only();
    post_node(&t, "h", "host1", "host").await;
    post_node(&t, "a", "eth0", "veth").await;
    let mut ws = connect(&t, "?x-client-type=test").await;
    let req = json!({"Namespace": "Graph", "Type": "SyncRequest", "UUID": "req-1",
        "Obj": {"GremlinFilter": "G.V().Has('Type','veth').SubGraph()"}});
    ws.send(Message::Text(req.to_string().into()))
        .await
        .unwrap();
    let reply = next_json(&mut ws).await;
    assert_eq!(reply["Type"], "SyncReply");
    assert_eq!(reply["UUID"], "req-1");
    assert_eq!(reply["Status"], 200);
    let names: Vec<&str> = reply["Obj"]["Nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["Metadata"]["Name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["eth0"]);

    // Outside the filter: nothing is sent. Inside: NodeAdded.
    post_node(&t, "x", "br0", "bridge").await;
    post_node(&t, "b", "eth1", "veth").await;
    let msg = next_json(&mut ws).await;
    assert_eq!(msg["Namespace"], "Graph");
    assert_eq!(msg["Type"], "NodeAdded");
    assert_eq!(msg["Obj"]["ID"], "b");

    // An update to a node inside, then a deletion.
    let patch = json!([{"op": "add", "path": "/Metadata/MTU", "value": 1400}]).to_string();
    t.request("PATCH", "/api/node/b", Some(&patch)).await;
    let msg = next_json(&mut ws).await;
    assert_eq!(
        (msg["Type"].as_str(), msg["Obj"]["Metadata"]["MTU"].as_i64()),
        (Some("NodeUpdated"), Some(1400))
    );
    t.request("DELETE", "/api/node/b", None).await;
    let msg = next_json(&mut ws).await;
    assert_eq!(
        (msg["Type"].as_str(), msg["Obj"]["ID"].as_str()),
        (Some("NodeDeleted"), Some("b"))
    );

    // The subscriber is listed in the status.
    let (_, status) = t.request("GET", "/api/status", None).await;
    let subs = status["Subscribers"].as_object().unwrap();
    assert_eq!(subs.len(), 1, "{status}");
    assert_eq!(subs.values().next().unwrap()["ClientType"], "test");
}

#[tokio::test]
async fn unfiltered_subscriber_sees_every_change_and_bad_filters_are_400() {
    let t = Topotap::start_api_only();
    let mut ws = connect(&t, "").await;
    let req = json!({"Namespace": "Graph", "Type": "SyncRequest", "UUID": "u", "Obj": {}});
    ws.send(Message::Text(req.to_string().into()))
        .await
        .unwrap();
    let reply = next_json(&mut ws).await;
    assert_eq!(reply["Obj"], json!({"Nodes": [], "Edges": []}));
    post_node(&t, "a", "eth0", "veth").await;
    post_node(&t, "b", "eth1", "veth").await;
    let body =
        json!({"ID": "e", "Parent": "a", "Child": "b", "Metadata": {"RelationType": "layer2"}})
            .to_string();
    t.request("POST", "/api/edge", Some(&body)).await;
    let kinds: Vec<String> = [
        next_json(&mut ws).await,
        next_json(&mut ws).await,
        next_json(&mut ws).await,
    ]
    .iter()
    .map(|m| m["Type"].as_str().unwrap().to_owned())
    .collect();
    assert_eq!(kinds, ["NodeAdded", "NodeAdded", "EdgeAdded"]);

    for (filter, needle) in [
        ("G.V().Has(", "Invalid Gremlin filter"),
        ("G.V()", "did not return a graph"),
    ] {
        let req = json!({"Namespace": "Graph", "Type": "SyncRequest", "UUID": "bad", "Obj": {"GremlinFilter": filter}});
        ws.send(Message::Text(req.to_string().into()))
            .await
            .unwrap();
        let reply = next_json(&mut ws).await;
        assert_eq!(reply["Status"], 400, "{reply}");
        assert!(reply["Obj"].as_str().unwrap().contains(needle), "{reply}");
    }
    // Garbage does not close the connection.
    ws.send(Message::Text("not json".into())).await.unwrap();
    let reply = next_json(&mut ws).await;
    assert_eq!(reply["Status"], 400);
    post_node(&t, "c", "eth2", "veth").await;
    let msg = next_json(&mut ws).await;
    assert_eq!(msg["Obj"]["ID"], "c");
}

#[tokio::test]
async fn filter_from_connection_parameter() {
    let t = Topotap::start_api_only();
    let filter = "G.V().Has('Type','veth').SubGraph()";
    let mut ws = connect(
        &t,
        &format!(
            "?x-gremlin-filter={}",
            filter
                .replace('\'', "%27")
                .replace('(', "%28")
                .replace(')', "%29")
        ),
    )
    .await;
    // Give the server a moment to register the subscription before changing the graph.
    tokio::time::sleep(Duration::from_millis(200)).await;
    post_node(&t, "x", "br0", "bridge").await;
    post_node(&t, "a", "eth0", "veth").await;
    let msg = next_json(&mut ws).await;
    assert_eq!(
        (msg["Type"].as_str(), msg["Obj"]["ID"].as_str()),
        (Some("NodeAdded"), Some("a"))
    );
}

async fn sync(ws: &mut Ws, uuid: &str, filter: &str) -> Value {
    let req = json!({"Namespace": "Graph", "Type": "SyncRequest", "UUID": uuid,
        "Obj": {"GremlinFilter": filter}});
    ws.send(Message::Text(req.to_string().into()))
        .await
        .unwrap();
    loop {
        let reply = next_json(ws).await;
        if reply["Type"] == "SyncReply" && reply["UUID"] == uuid {
            return reply;
        }
    }
}

async fn ws_status(t: &Topotap) -> Value {
    let (s, status) = t.request("GET", "/api/status", None).await;
    assert_eq!(s, 200);
    status["WebSocket"].clone()
}

#[tokio::test]
async fn subscribers_with_the_same_filter_share_one_evaluation() {
    let t = Topotap::start_api_only();
    post_node(&t, "a", "eth0", "veth").await;
    // The same query written three ways compiles to one canonical filter.
    let spellings = [
        "G.V().Has('Type','veth').SubGraph()",
        "g.v().has(\"Type\" \"veth\").subgraph()",
        "G.V().Has('Type', 'veth').SubGraph()",
    ];
    let mut subs = Vec::new();
    for i in 0..12 {
        let mut ws = connect(&t, "?x-client-type=test").await;
        let reply = sync(&mut ws, &format!("s{i}"), spellings[i % 3]).await;
        assert_eq!(reply["Status"], 200, "{reply}");
        assert_eq!(reply["Obj"]["Nodes"][0]["ID"], "a", "{reply}");
        subs.push(ws);
    }
    let mut other = connect(&t, "").await;
    sync(&mut other, "o", "G.V().Has('Type','bridge').SubGraph()").await;
    let before = ws_status(&t).await;
    assert_eq!(before["Subscribers"], 13, "{before}");
    assert_eq!(before["Filters"], 2, "{before}");

    post_node(&t, "b", "eth1", "veth").await;
    for ws in &mut subs {
        let msg = next_json(ws).await;
        assert_eq!(
            (msg["Type"].as_str(), msg["Obj"]["ID"].as_str()),
            (Some("NodeAdded"), Some("b"))
        );
    }
    post_node(&t, "x", "br0", "bridge").await;
    let msg = next_json(&mut other).await;
    assert_eq!(msg["Obj"]["ID"], "x");
    // Two changes, two filters: at most one evaluation per filter and change, however
    // many subscribers share a filter.
    let after = ws_status(&t).await;
    let evaluations = after["FilterEvaluations"].as_u64().unwrap()
        - before["FilterEvaluations"].as_u64().unwrap();
    assert!(
        (2..=4).contains(&evaluations),
        "{evaluations} evaluations: {after}"
    );

    // A subscriber switching to another filter leaves the shared one; the last to
    // leave a filter ends its evaluation.
    sync(&mut other, "o2", "").await;
    drop(subs);
    let mut filters = Value::Null;
    for _ in 0..50 {
        filters = ws_status(&t).await["Filters"].clone();
        if filters == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(filters, 0);
}

#[tokio::test]
async fn a_subscriber_that_never_reads_is_disconnected_and_memory_stays_bounded() {
    // An address-space cap: a queue that grew without bound would fail the server
    // instead of the machine. The history's in-memory timeline keeps revisions up to
    // its own budget: a small one here, so that what is measured is the queues.
    let t = Topotap::start_wrapped(
        &["prlimit", "--as=2147483648", "--"],
        &["--no-probes", "--history-memory", "16777216"],
    );
    let mut reader = connect(&t, "?x-client-type=reader").await;
    sync(&mut reader, "r", "").await;
    let mut stuck = connect(&t, "?x-client-type=stuck&x-host-id=stuck").await;
    sync(&mut stuck, "s", "").await;
    // From now on `stuck` is never read. A node with 256 KiB of metadata changes 400
    // times: 100 MiB of messages, beyond the queue and the socket buffers, while the
    // graph itself stays small.
    let blob = "x".repeat(256 << 10);
    let body = json!({"ID": "big", "Metadata": {"Name": "big", "Type": "device", "Blob": blob}});
    let (s, v) = t
        .request("POST", "/api/node", Some(&body.to_string()))
        .await;
    assert_eq!(s, 201, "{v}");
    let reading = tokio::spawn(async move {
        let mut seen = 0;
        while seen < 400 {
            let msg = next_json(&mut reader).await;
            if msg["Type"] == "NodeUpdated" {
                seen += 1;
            }
        }
        reader
    });
    for i in 0..400 {
        let patch = json!([{"op": "add", "path": "/Metadata/Seq", "value": i}]).to_string();
        let (s, v) = t.request("PATCH", "/api/node/big", Some(&patch)).await;
        assert_eq!(s, 200, "{v}");
    }
    // The subscriber that reads got every change, undisturbed.
    let _reader = tokio::time::timeout(Duration::from_secs(60), reading)
        .await
        .expect("the reading subscriber keeps up")
        .unwrap();
    let mut status = Value::Null;
    for _ in 0..100 {
        status = ws_status(&t).await;
        if status["DisconnectedSlow"] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status["DisconnectedSlow"], 1, "{status}");
    assert_eq!(status["Subscribers"], 1, "{status}");
    let (_, full) = t.request("GET", "/api/status", None).await;
    assert!(full["Subscribers"].get("stuck").is_none(), "{full}");
    // The server's peak memory stayed near one queue's worth, not the 100 MiB sent.
    let hwm = std::fs::read_to_string(format!("/proc/{}/status", t.pid()))
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix("VmHWM:").map(|v| {
                v.trim()
                    .trim_end_matches(" kB")
                    .trim()
                    .parse::<u64>()
                    .unwrap()
            })
        })
        .unwrap();
    assert!(hwm < 200 * 1024, "peak RSS {hwm} kB");
    // The stuck client finds its connection closed once it reads.
    let end = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok(_)) = stuck.next().await {}
    })
    .await;
    assert!(
        end.is_ok(),
        "the stuck subscriber's connection was not closed"
    );
}

/// Filters run within the server's query budget: a `SyncRequest` over it is a 413, and
/// a filter that grows over it with the graph gets the reason and a close frame, under
/// an address-space cap so that a view growing without bound would fail the server.
#[tokio::test]
async fn a_filter_over_its_budget_gets_the_reason_and_is_disconnected() {
    let t = Topotap::start_wrapped(
        &["prlimit", "--as=2147483648", "--"],
        &["--no-probes", "--max-result-bytes", "2000000"],
    );
    let mut ws = connect(&t, "?x-client-type=budget").await;
    let filter = "G.V().Has('Type','veth').SubGraph()";
    let reply = sync(&mut ws, "small", filter).await;
    assert_eq!(reply["Status"], 200, "{reply}");
    let big = |id: &str| {
        json!({"ID": id, "Metadata": {"Name": id, "Type": "veth", "Blob": "x".repeat(1_000_000)}})
            .to_string()
    };
    let (s, v) = t.request("POST", "/api/node", Some(&big("big1"))).await;
    assert_eq!(s, 201, "{v}");
    let added = next_json(&mut ws).await;
    assert_eq!(added["Type"], "NodeAdded", "{added}");

    // Another subscriber asks for more than the budget: a 413 with the reason, and it
    // stays connected.
    let mut other = connect(&t, "?x-client-type=other").await;
    let (s, v) = t.request("POST", "/api/node", Some(&big("big2"))).await;
    assert_eq!(s, 201, "{v}");
    let reply = sync(&mut other, "too-big", "G.V().SubGraph()").await;
    assert_eq!(reply["Status"], 413, "{reply}");
    assert!(
        reply["Obj"]
            .as_str()
            .unwrap_or("")
            .contains("answer exceeds 2000000 bytes"),
        "{reply}"
    );
    // So is the whole graph, unfiltered.
    let reply = sync(&mut other, "everything", "").await;
    assert_eq!(reply["Status"], 413, "{reply}");
    let reply = sync(&mut other, "fits", "G.V().Has('Name','big1').SubGraph()").await;
    assert_eq!(reply["Status"], 200, "{reply}");

    // The first filter now selects two big nodes: over the budget. Its subscriber gets
    // the reason, then a close frame that says why.
    let mut reason = None;
    let mut close = None;
    let end = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok(msg)) = ws.next().await {
            match msg {
                Message::Text(text) => {
                    let v: Value = serde_json::from_str(&text).unwrap();
                    if v["Status"] == 413 {
                        reason = v["Obj"].as_str().map(str::to_owned);
                    }
                }
                Message::Close(frame) => close = frame,
                _ => {}
            }
        }
    })
    .await;
    assert!(end.is_ok(), "the connection was not closed");
    let reason = reason.expect("a 413 with the reason before the close");
    assert!(reason.contains("answer exceeds 2000000 bytes"), "{reason}");
    let close = close.expect("a close frame");
    assert_eq!(u16::from(close.code), 1008);
    assert!(
        close.reason.as_str().contains("exceeds 2000000 bytes"),
        "{close:?}"
    );

    let mut status = Value::Null;
    for _ in 0..50 {
        status = ws_status(&t).await;
        if status["DisconnectedOverBudget"] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status["DisconnectedOverBudget"], 1, "{status}");
    assert_eq!(status["DisconnectedSlow"], 0, "{status}");
    // The other subscriber still gets its changes.
    let patch = json!([{"op": "add", "path": "/Metadata/Seq", "value": 1}]).to_string();
    let (s, v) = t.request("PATCH", "/api/node/big1", Some(&patch)).await;
    assert_eq!(s, 200, "{v}");
    loop {
        let msg = next_json(&mut other).await;
        if msg["Type"] == "NodeUpdated" {
            assert_eq!(msg["Obj"]["Metadata"]["Seq"], 1);
            break;
        }
    }
}
