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
