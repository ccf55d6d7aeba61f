//! `/ws/subscriber`: the live graph over WebSocket (§8).
//!
//! A client sends `SyncRequest` with a `GremlinFilter` ending in `SubGraph()` and gets a
//! `SyncReply` with that subgraph; from then on it receives `NodeAdded`, `NodeUpdated`,
//! `NodeDeleted`, `EdgeAdded`, `EdgeUpdated` and `EdgeDeleted` for the filtered subgraph
//! only: after each batch of graph changes the filter is evaluated again and the
//! difference is sent. Without a filter every change is forwarded. A client too slow to
//! keep up is resynchronised with a fresh `SyncReply` instead of slowing the graph down.
//!
//! Connection parameters come from headers (`X-Client-Type`, `X-Host-ID`,
//! `X-Gremlin-Filter`) or, for browsers, from the lower-case query parameters.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::broadcast::error::RecvError;
use topotap_topology::{Edge, GraphEvent, Identifier, Node};
use warp::filters::ws::{Message, WebSocket};
use warp::http::HeaderMap;
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use super::{with_state, AppState};

/// Interval between server pings; a client that stops answering is dropped by the
/// transport once writes fail.
const PING_INTERVAL: Duration = Duration::from_secs(2);
/// Graph events handled as one batch before the filter is evaluated again.
const MAX_BATCH: usize = 4096;

/// The JSON envelope of every message (`StructMessage`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WsMessage {
    #[serde(rename = "Namespace", default)]
    pub namespace: String,
    #[serde(rename = "Type", default)]
    pub kind: String,
    #[serde(rename = "UUID", default)]
    pub uuid: String,
    #[serde(rename = "Status", default, skip_serializing_if = "is_zero")]
    pub status: u16,
    #[serde(rename = "Obj", default)]
    pub obj: Value,
}

fn is_zero(v: &u16) -> bool {
    *v == 0
}

impl WsMessage {
    fn graph(kind: &str, uuid: String, status: u16, obj: Value) -> Self {
        WsMessage {
            namespace: "Graph".into(),
            kind: kind.into(),
            uuid,
            status,
            obj,
        }
    }
}

/// Connected subscribers, for `/api/status`.
#[derive(Default)]
pub struct Subscribers {
    next: u64,
    live: BTreeMap<u64, Value>,
}

impl Subscribers {
    fn add(&mut self, info: Value) -> u64 {
        self.next += 1;
        self.live.insert(self.next, info);
        self.next
    }

    fn remove(&mut self, id: u64) {
        self.live.remove(&id);
    }

    /// Clients connected.
    pub fn count(&self) -> usize {
        self.live.len()
    }

    pub fn to_json(&self) -> Value {
        let mut map = serde_json::Map::new();
        for info in self.live.values() {
            let key = info["HostID"].as_str().unwrap_or_default().to_owned();
            map.insert(key, info.clone());
        }
        Value::Object(map)
    }
}

struct Params {
    client_type: String,
    host_id: String,
    filter: Option<String>,
}

fn param(headers: &HeaderMap, query: &HashMap<String, String>, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| query.get(&name.to_ascii_lowercase()).cloned())
}

pub fn routes(state: AppState) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("ws" / "subscriber")
        .and(warp::ws())
        .and(warp::header::headers_cloned())
        .and(warp::query::<HashMap<String, String>>())
        .and(crate::http::remote())
        .and(with_state(state))
        .map(
            |ws: warp::ws::Ws,
             headers: HeaderMap,
             query: HashMap<String, String>,
             addr: Option<SocketAddr>,
             state: AppState| {
                let addr = addr.map(|a| a.to_string()).unwrap_or_default();
                let params = Params {
                    client_type: param(&headers, &query, "X-Client-Type").unwrap_or_default(),
                    host_id: param(&headers, &query, "X-Host-ID").unwrap_or_else(|| addr.clone()),
                    filter: param(&headers, &query, "X-Gremlin-Filter").filter(|f| !f.is_empty()),
                };
                let mut resp = ws
                    .max_message_size(1 << 20)
                    .on_upgrade(move |socket| session(socket, state, params, addr))
                    .into_response();
                resp.headers_mut().insert(
                    "X-Service-Type",
                    warp::http::HeaderValue::from_static("analyzer"),
                );
                resp
            },
        )
}

/// What a filtered subscriber currently sees, by ID, with the revision it was sent at.
#[derive(Default)]
struct View {
    nodes: BTreeMap<Identifier, Node>,
    edges: BTreeMap<Identifier, Edge>,
}

async fn session(socket: WebSocket, state: AppState, params: Params, addr: String) {
    let sub_id = state.subscribers.lock().add(json!({
        "HostID": params.host_id,
        "ClientType": params.client_type,
        "Addr": addr,
        "ConnectTime": topotap_topology::now_ms(),
    }));
    let (mut tx, mut rx) = socket.split();
    let mut filter = params.filter;
    let mut events = state.graph.subscribe();
    // A filter given at connection time applies from the start, as in Skydive.
    let mut view = match &filter {
        Some(f) => compute_view(&state, f).ok(),
        None => None,
    };
    let mut ping = tokio::time::interval(PING_INTERVAL);
    ping.tick().await;

    loop {
        let outgoing: Vec<WsMessage> = tokio::select! {
            incoming = rx.next() => match incoming {
                Some(Ok(msg)) if msg.is_text() => {
                    handle_request(&state, msg.to_str().unwrap_or(""), &mut filter, &mut view, &mut events)
                }
                Some(Ok(msg)) if msg.is_close() => break,
                Some(Ok(_)) => Vec::new(),
                Some(Err(_)) | None => break,
            },
            event = events.recv() => match event {
                Ok(first) => {
                    let mut batch = vec![first];
                    while batch.len() < MAX_BATCH {
                        match events.try_recv() {
                            Ok(e) => batch.push(e),
                            Err(_) => break,
                        }
                    }
                    match (&filter, &mut view) {
                        (Some(f), Some(v)) => diff_view(&state, f, v),
                        (Some(_), None) => Vec::new(),
                        (None, _) => batch.iter().map(|e| event_message(e)).collect(),
                    }
                }
                Err(RecvError::Lagged(_)) => {
                    events = state.graph.subscribe();
                    resync(&state, &filter, &mut view, &mut events)
                }
                Err(RecvError::Closed) => break,
            },
            _ = ping.tick() => {
                if tx.send(Message::ping(Vec::new())).await.is_err() {
                    break;
                }
                Vec::new()
            }
        };
        let mut failed = false;
        for msg in outgoing {
            let text = match serde_json::to_string(&msg) {
                Ok(t) => t,
                Err(_) => continue,
            };
            if tx.feed(Message::text(text)).await.is_err() {
                failed = true;
                break;
            }
        }
        if failed || tx.flush().await.is_err() {
            break;
        }
    }
    state.subscribers.lock().remove(sub_id);
}

fn event_message(event: &GraphEvent) -> WsMessage {
    let obj = match event {
        GraphEvent::NodeAdded(n) | GraphEvent::NodeUpdated(n) | GraphEvent::NodeDeleted(n) => {
            serde_json::to_value(n)
        }
        GraphEvent::EdgeAdded(e) | GraphEvent::EdgeUpdated(e) | GraphEvent::EdgeDeleted(e) => {
            serde_json::to_value(e)
        }
    }
    .unwrap_or(Value::Null);
    WsMessage::graph(event.name(), uuid(), 0, obj)
}

fn uuid() -> String {
    Identifier::random().to_string()
}

#[derive(Deserialize)]
struct SyncRequest {
    #[serde(rename = "GremlinFilter")]
    gremlin_filter: Option<String>,
    #[serde(rename = "Time")]
    time: Option<Value>,
}

fn handle_request(
    state: &AppState,
    text: &str,
    filter: &mut Option<String>,
    view: &mut Option<View>,
    events: &mut tokio::sync::broadcast::Receiver<Arc<GraphEvent>>,
) -> Vec<WsMessage> {
    let msg: WsMessage = match serde_json::from_str(text) {
        Ok(m) => m,
        Err(e) => {
            return vec![WsMessage::graph(
                "Error",
                String::new(),
                400,
                Value::String(format!("invalid message: {e}")),
            )]
        }
    };
    if msg.namespace != "Graph" || msg.kind != "SyncRequest" {
        return vec![WsMessage {
            namespace: msg.namespace,
            kind: format!("{}Reply", msg.kind),
            uuid: msg.uuid,
            status: 400,
            obj: Value::String(format!("unsupported message type '{}'", msg.kind)),
        }];
    }
    let req: SyncRequest = match serde_json::from_value(msg.obj) {
        Ok(r) => r,
        Err(e) => {
            return vec![WsMessage::graph(
                "SyncReply",
                msg.uuid,
                400,
                Value::String(format!("invalid SyncRequest: {e}")),
            )]
        }
    };
    if req.time.as_ref().is_some_and(|t| !t.is_null()) {
        return vec![WsMessage::graph(
            "SyncReply",
            msg.uuid,
            400,
            Value::String(
                "history (Time) is not supported: topotap keeps the live graph only".into(),
            ),
        )];
    }
    let new_filter = match req.gremlin_filter {
        None => filter.clone(),
        Some(f) if f.trim().is_empty() => None,
        Some(f) => Some(f),
    };
    // Subscribe again before the snapshot so no change between them is lost.
    *events = state.graph.subscribe();
    let reply = match &new_filter {
        Some(f) => match compute_view(state, f) {
            Ok(v) => {
                let obj = view_json(&v);
                *view = Some(v);
                WsMessage::graph("SyncReply", msg.uuid, 200, obj)
            }
            Err(e) => {
                return vec![WsMessage::graph(
                    "SyncReply",
                    msg.uuid,
                    400,
                    Value::String(e),
                )]
            }
        },
        None => {
            *view = None;
            let (nodes, edges) = state.graph.read().snapshot();
            WsMessage::graph(
                "SyncReply",
                msg.uuid,
                200,
                json!({"Nodes": nodes, "Edges": edges}),
            )
        }
    };
    *filter = new_filter;
    vec![reply]
}

fn resync(
    state: &AppState,
    filter: &Option<String>,
    view: &mut Option<View>,
    events: &mut tokio::sync::broadcast::Receiver<Arc<GraphEvent>>,
) -> Vec<WsMessage> {
    let obj = serde_json::to_string(&json!({"GremlinFilter": filter.clone().unwrap_or_default()}))
        .unwrap_or_default();
    let text = format!(
        r#"{{"Namespace":"Graph","Type":"SyncRequest","UUID":"{}","Obj":{obj}}}"#,
        uuid()
    );
    let mut f = filter.clone();
    handle_request(state, &text, &mut f, view, events)
}

/// Evaluates a subscriber's filter; it must return a graph (end in `SubGraph()`).
fn compute_view(state: &AppState, filter: &str) -> Result<View, String> {
    let ast = topotap_grammar::parse(filter).map_err(|e| format!("Invalid Gremlin filter: {e}"))?;
    let g = state.graph.read();
    let out = topotap_topology::gremlin::evaluate(&ast, &g, &state.extensions)
        .map_err(|e| format!("Invalid Gremlin filter: {e}"))?;
    let (nodes, edges) = out
        .into_subgraph()
        .ok_or_else(|| format!("Gremlin query '{filter}' did not return a graph"))?;
    let mut view = View::default();
    for n in nodes {
        let n = g.node(n).to_owned();
        view.nodes.insert(n.id.clone(), n);
    }
    for e in edges {
        let e = g.edge(e).to_owned();
        view.edges.insert(e.id.clone(), e);
    }
    Ok(view)
}

fn view_json(v: &View) -> Value {
    json!({
        "Nodes": v.nodes.values().collect::<Vec<_>>(),
        "Edges": v.edges.values().collect::<Vec<_>>(),
    })
}

/// Evaluates the filter again and returns the messages that take the subscriber from
/// its old view to the new one.
fn diff_view(state: &AppState, filter: &str, old: &mut View) -> Vec<WsMessage> {
    let new = match compute_view(state, filter) {
        Ok(v) => v,
        // The filter parsed before; if it cannot be evaluated now, keep the old view.
        Err(_) => return Vec::new(),
    };
    let mut out = Vec::new();
    let msg = |kind: &str, obj: Value| WsMessage::graph(kind, uuid(), 0, obj);
    for (id, e) in &old.edges {
        if !new.edges.contains_key(id) {
            out.push(msg("EdgeDeleted", to_json(e)));
        }
    }
    for (id, n) in &old.nodes {
        if !new.nodes.contains_key(id) {
            out.push(msg("NodeDeleted", to_json(n)));
        }
    }
    for (id, n) in &new.nodes {
        match old.nodes.get(id) {
            None => out.push(msg("NodeAdded", to_json(n))),
            Some(o) if o.revision != n.revision || o.metadata != n.metadata => {
                out.push(msg("NodeUpdated", to_json(n)))
            }
            Some(_) => {}
        }
    }
    for (id, e) in &new.edges {
        match old.edges.get(id) {
            None => out.push(msg("EdgeAdded", to_json(e))),
            Some(o) if o.revision != e.revision || o.metadata != e.metadata => {
                out.push(msg("EdgeUpdated", to_json(e)))
            }
            Some(_) => {}
        }
    }
    *old = new;
    out
}

fn to_json(v: &impl Serialize) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}
