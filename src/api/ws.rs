//! `/ws/subscriber`: the live graph over WebSocket (§8).
//!
//! A client sends `SyncRequest` with a `GremlinFilter` ending in `SubGraph()` and gets a
//! `SyncReply` with that subgraph; from then on it receives `NodeAdded`, `NodeUpdated`,
//! `NodeDeleted`, `EdgeAdded`, `EdgeUpdated` and `EdgeDeleted` for the filtered subgraph
//! only: after each batch of graph changes the filter is evaluated again and the
//! difference is sent. Without a filter every change is forwarded.
//!
//! Every subscriber also receives fired alerts, `{"Namespace":"Alert","Type":"Alert",
//! "Obj":{"UUID","Name","Timestamp","ReasonData"}}` (see `crate::alert`).
//!
//! Connection parameters come from headers (`X-Client-Type`, `X-Host-ID`,
//! `X-Gremlin-Filter`) or, for browsers, from the lower-case query parameters.
//!
//! # Fan-out
//!
//! One [`Hub`] task serves every subscriber. It reads the graph's change events in
//! batches and, for each batch, serialises every change once for the unfiltered
//! subscribers and evaluates every *distinct* filter once (subscribers whose filters
//! print to the same canonical Gremlin share one evaluation and one diff). That work
//! runs on a blocking thread; the graph's read lock is held only to evaluate and copy
//! the elements that changed, never while serialising or sending. Filters are compiled
//! once, when they are given.
//!
//! Every evaluation runs within the server's query budget (`--max-result-elements`,
//! `--max-result-bytes`, `--query-timeout`), the subgraph's size included. A
//! `SyncRequest` whose filter runs out of it gets a `SyncReply` with status 413 or 503
//! and the reason; a filter that runs out of it later, as the graph grows, sends its
//! subscribers that reply and closes their connections with the reason (close code
//! 1008), so a filter never holds unbounded memory or the hub's time.
//!
//! Each subscriber has a bounded queue of messages (shared, already serialised). A
//! subscriber whose queue is full (it stopped reading) is disconnected and counted in
//! `/api/status` under `WebSocket`, so one stuck client costs bounded memory and never
//! slows the graph or the other subscribers down.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::{broadcast, mpsc, oneshot, Notify};
use topotap_grammar::time::{parse_time, time_from_int, TimePoint, ACCEPTED_TIMES};
use topotap_topology::gremlin::{
    compile, edge_size_lower_bound, node_size_lower_bound, too_many_bytes, Budget, Compiled,
    ErrorKind, EvalError, Extensions, Snapshot,
};
use topotap_topology::{Edge, EdgeIx, GraphEvent, Identifier, Node, NodeIx, SharedGraph};
use warp::filters::ws::{Message, WebSocket};
use warp::http::HeaderMap;
use warp::reply::Response;
use warp::{Filter as _, Rejection, Reply};

use super::{with_state, AppState};
use crate::error::Error;

/// Interval between server pings; a client that stops answering is dropped by the
/// transport once writes fail.
const PING_INTERVAL: Duration = Duration::from_secs(2);
/// Most messages waiting for one subscriber (Skydive's `http.ws.queue_size`).
pub const QUEUE_MESSAGES: usize = 10_000;
/// Most bytes waiting for one subscriber. A single larger message (a big `SyncReply`)
/// is still accepted into an empty queue.
pub const QUEUE_BYTES: usize = 32 << 20;
/// Messages written to a socket before it is flushed.
const WRITE_BATCH: usize = 64;
/// Requests from subscribers waiting for the hub; senders wait beyond this.
const HUB_COMMANDS: usize = 1024;
/// Close code of a subscriber whose filter ran out of its budget (policy violation).
const CLOSE_BUDGET: u16 = 1008;
/// Longest close reason a WebSocket close frame carries.
const CLOSE_REASON_MAX: usize = 123;

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

/// A serialised message, shared by every subscriber it goes to.
type Text = Arc<str>;

/// A `Graph` message whose `Obj` is already JSON text; the same bytes as serialising
/// a [`WsMessage`].
fn graph_message(kind: &str, uuid: &str, status: u16, obj: &str) -> Text {
    let uuid = serde_json::to_string(uuid).unwrap_or_else(|_| "\"\"".into());
    let status = if status == 0 {
        String::new()
    } else {
        format!(",\"Status\":{status}")
    };
    format!(r#"{{"Namespace":"Graph","Type":"{kind}","UUID":{uuid}{status},"Obj":{obj}}}"#).into()
}

/// A `SyncReply` about a time the history does not fully cover: `History` says so as
/// the REST header does (`before-retention; horizon=<ms>`).
fn past_message(uuid: &str, note: &str, obj: &str) -> Text {
    let uuid = serde_json::to_string(uuid).unwrap_or_else(|_| "\"\"".into());
    let note = serde_json::to_string(note).unwrap_or_else(|_| "\"\"".into());
    format!(
        r#"{{"Namespace":"Graph","Type":"SyncReply","UUID":{uuid},"Status":200,"History":{note},"Obj":{obj}}}"#
    )
    .into()
}

fn error_message(kind: &str, uuid: &str, status: u16, reason: &str) -> Text {
    let obj = serde_json::to_string(reason).unwrap_or_else(|_| "\"\"".into());
    graph_message(kind, uuid, status, &obj)
}

fn to_json_text(v: &impl Serialize) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

fn uuid() -> String {
    Identifier::random().to_string()
}

/// Counters shown under `WebSocket` in `/api/status`.
#[derive(Default)]
struct Stats {
    disconnected_slow: AtomicU64,
    disconnected_budget: AtomicU64,
    evaluations: AtomicU64,
    filters: AtomicU64,
}

/// Connected subscribers, for `/api/status`, and the hub that serves them.
#[derive(Default)]
pub struct Subscribers {
    next: u64,
    live: BTreeMap<u64, Value>,
    hub: Option<mpsc::Sender<Command>>,
    stats: Arc<Stats>,
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

    /// The hub's request channel, starting the hub on first use.
    fn hub(&mut self, graph: &SharedGraph, budget: Budget) -> mpsc::Sender<Command> {
        match &self.hub {
            Some(tx) if !tx.is_closed() => tx.clone(),
            _ => {
                let (tx, rx) = mpsc::channel(HUB_COMMANDS);
                let hub = Hub {
                    graph: graph.clone(),
                    budget,
                    events: None,
                    subs: HashMap::new(),
                    groups: HashMap::new(),
                    closing: Vec::new(),
                    stats: self.stats.clone(),
                };
                tokio::spawn(hub.run(rx));
                self.hub = Some(tx.clone());
                tx
            }
        }
    }

    /// The `Subscribers` section of `/api/status`: connected clients by host ID.
    pub fn to_json(&self) -> Value {
        let mut map = serde_json::Map::new();
        for info in self.live.values() {
            let key = info["HostID"].as_str().unwrap_or_default().to_owned();
            map.insert(key, info.clone());
        }
        Value::Object(map)
    }

    /// The `WebSocket` section of `/api/status`: subscribers, distinct filters being
    /// evaluated, evaluations so far, subscribers disconnected because they did not
    /// read their messages, and because their filter ran out of its budget.
    pub fn stats_json(&self) -> Value {
        json!({
            "Subscribers": self.live.len(),
            "Filters": self.stats.filters.load(Ordering::Relaxed),
            "FilterEvaluations": self.stats.evaluations.load(Ordering::Relaxed),
            "DisconnectedSlow": self.stats.disconnected_slow.load(Ordering::Relaxed),
            "DisconnectedOverBudget": self.stats.disconnected_budget.load(Ordering::Relaxed),
            "QueueMessages": QUEUE_MESSAGES,
            "QueueBytes": QUEUE_BYTES,
        })
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

pub fn routes(
    state: AppState,
) -> impl warp::Filter<Extract = (Response,), Error = Rejection> + Clone {
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

// ----- filters -----------------------------------------------------------------------

/// A subscriber's Gremlin filter, compiled once when it is given.
pub struct Filter {
    /// The canonical text of the query: subscribers with the same key share one
    /// evaluation.
    key: String,
    /// The text as the client gave it, for messages.
    text: String,
    query: Compiled,
}

/// Why a filter gave no subgraph: the status of the `SyncReply` and the reason.
#[derive(Debug, Clone)]
struct FilterError {
    kind: ErrorKind,
    reason: String,
}

impl FilterError {
    fn invalid(reason: String) -> Self {
        FilterError {
            kind: ErrorKind::Invalid,
            reason,
        }
    }

    fn eval(e: EvalError) -> Self {
        let reason = match e.kind {
            ErrorKind::Invalid => format!("Invalid Gremlin filter: {e}"),
            _ => format!("Gremlin filter: {e}"),
        };
        FilterError {
            kind: e.kind,
            reason,
        }
    }

    /// 400 for a filter that does not apply, 413 or 503 for one over its budget.
    fn status(&self) -> u16 {
        match self.kind {
            ErrorKind::Invalid => 400,
            ErrorKind::TooLarge => 413,
            ErrorKind::Timeout => 503,
        }
    }

    /// Whether the filter ran out of its budget (its subscribers are disconnected).
    fn over_budget(&self) -> bool {
        self.kind != ErrorKind::Invalid
    }
}

impl Filter {
    /// Compiles `text` with the server's extension steps; the error is
    /// [`Error::Invalid`], a one-line reason with the line and column of the culprit.
    pub fn compile(text: &str, ext: &Extensions) -> Result<Filter, Error> {
        let query = compile(text, ext)
            .map_err(|e| Error::invalid(format!("Invalid Gremlin filter: {e}")))?;
        Ok(Filter {
            key: query.to_string(),
            text: text.to_owned(),
            query,
        })
    }

    /// The subgraph the filter selects within `budget`; it must return a graph (end in
    /// `SubGraph()`).
    fn evaluate(
        &self,
        graph: topotap_topology::View<'_>,
        budget: &Budget,
    ) -> Result<(Vec<NodeIx>, Vec<EdgeIx>), FilterError> {
        let out = self
            .query
            .evaluate_view(graph, budget)
            .map_err(FilterError::eval)?;
        out.into_subgraph().ok_or_else(|| {
            FilterError::invalid(format!(
                "Gremlin query '{}' did not return a graph",
                self.text
            ))
        })
    }
}

/// Elements of a filtered view, in the order the filter returned them, each with its
/// revision and its JSON as last sent.
#[derive(Default)]
struct Elements {
    order: Vec<Identifier>,
    seen: HashMap<Identifier, Seen>,
}

struct Seen {
    revision: i64,
    json: Text,
}

impl Elements {
    fn json_array(&self) -> String {
        let mut out = String::from("[");
        for (i, id) in self.order.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&self.seen[id].json);
        }
        out.push(']');
        out
    }
}

/// What one filter currently selects.
#[derive(Default)]
struct View {
    nodes: Elements,
    edges: Elements,
}

impl View {
    fn json(&self) -> String {
        format!(
            r#"{{"Nodes":{},"Edges":{}}}"#,
            self.nodes.json_array(),
            self.edges.json_array()
        )
    }
}

/// One element of a new evaluation, copied out of the graph only if it changed.
enum Fresh<T> {
    Kept(Identifier),
    Changed(T),
}

/// The whole graph's JSON for unfiltered subscribers, or why it is over the budget.
type Whole = Result<Text, FilterError>;

/// Elements whose ID appears in a batch of changes; `None` means anything may have
/// changed (the hub lagged).
type Touched = Option<HashSet<Identifier>>;

/// A fresh evaluation: nodes and edges, copied out only where they changed.
type FreshView = (Vec<Fresh<Node>>, Vec<Fresh<Edge>>);

fn pick<T>(
    id: &Identifier,
    revision: i64,
    old: &Elements,
    touched: &Touched,
    copy: impl FnOnce() -> T,
) -> Fresh<T> {
    let unchanged = old.seen.get(id).is_some_and(|s| s.revision == revision)
        && touched.as_ref().is_some_and(|t| !t.contains(id));
    if unchanged {
        Fresh::Kept(id.clone())
    } else {
        Fresh::Changed(copy())
    }
}

/// Evaluates `filter` under the read lock within `budget` and copies out only what
/// changed since `old`. The subgraph's JSON (the elements kept as last sent, a lower
/// bound of the others) must fit the byte budget, checked before anything is copied.
fn evaluate_fresh(
    graph: &SharedGraph,
    budget: &Budget,
    filter: &Filter,
    old: &View,
    touched: &Touched,
) -> Result<FreshView, FilterError> {
    let g = graph.read();
    let (nodes, edges) = filter.evaluate(g.view(), budget)?;
    let max = budget.max_bytes;
    let mut size = 0usize;
    for ix in &nodes {
        let n = g.node(*ix);
        let s = match old.nodes.seen.get(n.id()) {
            Some(seen) if seen.revision == n.revision() => seen.json.len(),
            _ => node_size_lower_bound(n.metadata()),
        };
        size = size.saturating_add(s + 1);
        if size > max {
            return Err(FilterError::eval(too_many_bytes(max)));
        }
    }
    for ix in &edges {
        let e = g.edge(*ix);
        let s = match old.edges.seen.get(e.id()) {
            Some(seen) if seen.revision == e.revision() => seen.json.len(),
            _ => edge_size_lower_bound(e.metadata()),
        };
        size = size.saturating_add(s + 1);
        if size > max {
            return Err(FilterError::eval(too_many_bytes(max)));
        }
    }
    let nodes = nodes
        .into_iter()
        .map(|ix| {
            let n = g.node(ix);
            pick(n.id(), n.revision(), &old.nodes, touched, || n.to_owned())
        })
        .collect();
    let edges = edges
        .into_iter()
        .map(|ix| {
            let e = g.edge(ix);
            pick(e.id(), e.revision(), &old.edges, touched, || e.to_owned())
        })
        .collect();
    Ok((nodes, edges))
}

trait Element: Serialize {
    fn id(&self) -> &Identifier;
    fn revision(&self) -> i64;
}

impl Element for Node {
    fn id(&self) -> &Identifier {
        &self.id
    }
    fn revision(&self) -> i64 {
        self.revision
    }
}

impl Element for Edge {
    fn id(&self) -> &Identifier {
        &self.id
    }
    fn revision(&self) -> i64 {
        self.revision
    }
}

/// Builds the new elements from a fresh evaluation, and the Added/Updated messages
/// (`added`, `updated` kinds) for what changed; `old` keeps what disappeared.
fn merge<T: Element>(
    old: &mut Elements,
    fresh: Vec<Fresh<T>>,
    kinds: (&str, &str),
    out: &mut Vec<Text>,
) -> Elements {
    let mut new = Elements {
        order: Vec::with_capacity(fresh.len()),
        seen: HashMap::with_capacity(fresh.len()),
    };
    for f in fresh {
        let (id, seen) = match f {
            Fresh::Kept(id) => match old.seen.remove(&id) {
                Some(s) => (id, s),
                None => continue,
            },
            Fresh::Changed(el) => {
                let json: Text = to_json_text(&el).into();
                let kind = if old.seen.remove(el.id()).is_some() {
                    kinds.1
                } else {
                    kinds.0
                };
                out.push(graph_message(kind, &uuid(), 0, &json));
                (
                    el.id().clone(),
                    Seen {
                        revision: el.revision(),
                        json,
                    },
                )
            }
        };
        // A set that lists an element twice keeps its first place.
        if !new.seen.contains_key(&id) {
            new.order.push(id.clone());
            new.seen.insert(id, seen);
        }
    }
    new
}

/// Replaces `view` with a fresh evaluation and returns the messages that take a
/// subscriber from the old view to the new one: deletions first (edges, then nodes),
/// then added or updated nodes, then edges.
fn apply(view: &mut View, fresh: FreshView) -> Vec<Text> {
    let mut changes = Vec::new();
    let nodes = merge(
        &mut view.nodes,
        fresh.0,
        ("NodeAdded", "NodeUpdated"),
        &mut changes,
    );
    let mut edge_changes = Vec::new();
    let edges = merge(
        &mut view.edges,
        fresh.1,
        ("EdgeAdded", "EdgeUpdated"),
        &mut edge_changes,
    );
    // What is left in the old view is gone.
    let mut out = Vec::new();
    for id in &view.edges.order {
        if let Some(s) = view.edges.seen.get(id) {
            out.push(graph_message("EdgeDeleted", &uuid(), 0, &s.json));
        }
    }
    for id in &view.nodes.order {
        if let Some(s) = view.nodes.seen.get(id) {
            out.push(graph_message("NodeDeleted", &uuid(), 0, &s.json));
        }
    }
    out.extend(changes);
    out.extend(edge_changes);
    *view = View { nodes, edges };
    out
}

// ----- the hub -------------------------------------------------------------------------

/// The sending side of a subscriber's queue.
#[derive(Clone)]
struct Outbox {
    tx: mpsc::Sender<Text>,
    /// Bytes queued and not yet taken by the writer.
    bytes: Arc<AtomicUsize>,
    /// Told when the subscriber is dropped (for not reading, or with a reason).
    kicked: Arc<Notify>,
    /// Close code and reason to send after what is queued, when dropped with a reason.
    close: Arc<parking_lot::Mutex<Option<(u16, String)>>>,
}

impl Outbox {
    fn new() -> (Outbox, mpsc::Receiver<Text>) {
        let (tx, rx) = mpsc::channel(QUEUE_MESSAGES);
        let outbox = Outbox {
            tx,
            bytes: Arc::default(),
            kicked: Arc::new(Notify::new()),
            close: Arc::default(),
        };
        (outbox, rx)
    }

    /// Queues a message; false when the queue is full.
    fn push(&self, msg: Text) -> bool {
        let len = msg.len();
        let queued = self.bytes.load(Ordering::Relaxed);
        if queued > 0 && queued + len > QUEUE_BYTES {
            return false;
        }
        match self.tx.try_send(msg) {
            Ok(()) => {
                self.bytes.fetch_add(len, Ordering::Relaxed);
                true
            }
            // A closed queue: the session is ending and will leave on its own.
            Err(mpsc::error::TrySendError::Closed(_)) => true,
            Err(mpsc::error::TrySendError::Full(_)) => false,
        }
    }

    fn taken(&self, len: usize) {
        self.bytes.fetch_sub(len, Ordering::Relaxed);
    }
}

/// The filter a `SyncRequest` asks for.
enum Wanted {
    /// No `GremlinFilter`: the current one.
    Keep,
    /// Every change (`""`).
    All,
    Filter(Arc<Filter>),
}

enum Command {
    Join {
        id: u64,
        outbox: Outbox,
        /// `Err`: a connection-time filter that did not compile; the subscriber gets
        /// nothing until it sends a `SyncRequest`.
        filter: Result<Option<Arc<Filter>>, ()>,
    },
    Sync {
        id: u64,
        uuid: String,
        wanted: Wanted,
    },
    /// A `SyncRequest` with a `Time`: the subscriber gets no live changes until its
    /// next `SyncRequest` without one; `done` gets the filter to evaluate on the past
    /// graph (and kept for that next request).
    Past {
        id: u64,
        wanted: Wanted,
        done: oneshot::Sender<Option<Arc<Filter>>>,
    },
    Leave {
        id: u64,
    },
}

/// What a subscriber receives.
#[derive(Clone, PartialEq)]
enum Mode {
    Nothing,
    All,
    Group(String),
}

struct Sub {
    outbox: Outbox,
    mode: Mode,
    filter: Option<Arc<Filter>>,
}

struct Group {
    filter: Arc<Filter>,
    /// `None` until first evaluated successfully.
    view: Option<View>,
    members: HashSet<u64>,
}

struct Hub {
    graph: SharedGraph,
    /// Limits of each filter evaluation.
    budget: Budget,
    /// Subscribed while there are subscribers.
    events: Option<broadcast::Receiver<Arc<GraphEvent>>>,
    subs: HashMap<u64, Sub>,
    groups: HashMap<String, Group>,
    /// Subscribers to disconnect after this round's messages, with the reason.
    closing: Vec<(u64, String)>,
    stats: Arc<Stats>,
}

/// What woke the hub.
enum Wake {
    Command(Command),
    Event(Result<Arc<GraphEvent>, RecvError>),
}

async fn next_event(
    rx: &mut Option<broadcast::Receiver<Arc<GraphEvent>>>,
) -> Result<Arc<GraphEvent>, RecvError> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

impl Hub {
    async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        loop {
            let wake = tokio::select! {
                cmd = commands.recv() => match cmd {
                    Some(c) => Wake::Command(c),
                    None => return,
                },
                ev = next_event(&mut self.events) => Wake::Event(ev),
            };
            let mut cmds = Vec::new();
            let mut first = None;
            match wake {
                Wake::Command(c) => cmds.push(c),
                Wake::Event(Err(RecvError::Closed)) => self.events = None,
                Wake::Event(e) => first = Some(e),
            }
            while let Ok(c) = commands.try_recv() {
                cmds.push(c);
            }
            // Evaluation and serialisation run on a blocking thread.
            let hub = tokio::task::spawn_blocking(move || {
                self.round(cmds, first);
                self
            })
            .await;
            match hub {
                Ok(h) => self = h,
                // A panic in a round: every session sees its queue close.
                Err(_) => return,
            }
        }
    }

    /// One round: the changes since the last round go out to the subscribers as they
    /// were, then the requests are applied in order.
    fn round(&mut self, cmds: Vec<Command>, first: Option<Result<Arc<GraphEvent>, RecvError>>) {
        let mut batch = Vec::new();
        let mut lagged = false;
        match first {
            Some(Ok(e)) => batch.push(e),
            Some(Err(_)) => lagged = true,
            None => {}
        }
        let needs_snapshot = cmds.iter().any(|c| match c {
            Command::Sync { id, wanted, .. } => match wanted {
                Wanted::All => true,
                Wanted::Keep => self.subs.get(id).is_some_and(|s| s.filter.is_none()),
                Wanted::Filter(_) => false,
            },
            _ => false,
        });
        let joins = cmds.iter().any(|c| matches!(c, Command::Join { .. }));
        // Under the read lock no change can happen: the drained batch and the snapshot
        // meet exactly.
        let snapshot = {
            let g = self.graph.read();
            if let Some(rx) = &mut self.events {
                loop {
                    match rx.try_recv() {
                        Ok(e) => batch.push(e),
                        Err(TryRecvError::Lagged(_)) => lagged = true,
                        Err(TryRecvError::Empty) => break,
                        Err(TryRecvError::Closed) => break,
                    }
                }
            } else if joins {
                self.events = Some(g.subscribe());
            }
            let all_lagged = lagged && self.subs.values().any(|s| s.mode == Mode::All);
            (needs_snapshot || all_lagged).then(|| Snapshot::whole(&g, &self.budget))
        };
        // The whole graph for unfiltered subscribers, within the byte budget like
        // `GET /api/topology`, written after the lock is released.
        let snapshot_json: Option<Whole> = snapshot.map(|s| {
            s.and_then(|s| s.encode(&self.budget))
                .map(|a| String::from_utf8_lossy(&a.to_vec()).into())
                .map_err(FilterError::eval)
        });

        let mut outgoing: Vec<(u64, Text)> = Vec::new();
        self.dispatch(&batch, lagged, snapshot_json.as_ref(), &mut outgoing);
        for cmd in cmds {
            self.command(cmd, snapshot_json.as_ref(), &mut outgoing);
        }
        self.deliver(outgoing);
        if self.subs.is_empty() {
            self.events = None;
        }
        self.stats
            .filters
            .store(self.groups.len() as u64, Ordering::Relaxed);
    }

    fn dispatch(
        &mut self,
        batch: &[Arc<GraphEvent>],
        lagged: bool,
        snapshot: Option<&Whole>,
        out: &mut Vec<(u64, Text)>,
    ) {
        if batch.is_empty() && !lagged {
            return;
        }
        let all: Vec<u64> = self
            .subs
            .iter()
            .filter(|(_, s)| s.mode == Mode::All)
            .map(|(id, _)| *id)
            .collect();
        if !all.is_empty() {
            if lagged {
                // Changes were lost: start again from a snapshot, or, if the whole graph
                // is over the budget, disconnect with the reason.
                match snapshot {
                    Some(Ok(obj)) => {
                        for id in &all {
                            out.push((*id, graph_message("SyncReply", &uuid(), 200, obj)));
                        }
                    }
                    Some(Err(e)) => {
                        let msg = error_message("SyncReply", &uuid(), e.status(), &e.reason);
                        for id in &all {
                            out.push((*id, msg.clone()));
                            self.closing.push((*id, e.reason.clone()));
                        }
                    }
                    None => {}
                }
            } else {
                for event in batch {
                    let msg = event_message(event);
                    out.extend(all.iter().map(|id| (*id, msg.clone())));
                }
            }
        }
        let touched: Touched =
            (!lagged).then(|| batch.iter().map(|e| event_id(e).clone()).collect());
        let keys: Vec<String> = self.groups.keys().cloned().collect();
        for key in keys {
            self.refresh(&key, &touched, out);
        }
    }

    /// Evaluates a group's filter again and queues the difference for its members.
    /// When the evaluation fails the group keeps its view; when it runs out of its
    /// budget, every member gets the reason and is disconnected.
    fn refresh(&mut self, key: &str, touched: &Touched, out: &mut Vec<(u64, Text)>) {
        let Some(group) = self.groups.get_mut(key) else {
            return;
        };
        let Some(view) = &mut group.view else {
            return;
        };
        self.stats.evaluations.fetch_add(1, Ordering::Relaxed);
        match evaluate_fresh(&self.graph, &self.budget, &group.filter, view, touched) {
            Ok(fresh) => {
                for msg in apply(view, fresh) {
                    out.extend(group.members.iter().map(|id| (*id, msg.clone())));
                }
            }
            Err(e) if e.over_budget() => {
                let msg = error_message("SyncReply", &uuid(), e.status(), &e.reason);
                for id in &group.members {
                    out.push((*id, msg.clone()));
                    self.closing.push((*id, e.reason.clone()));
                }
            }
            Err(_) => {}
        }
    }

    /// A group for `filter`, evaluated if it is new; the error of its first evaluation.
    fn group_view(&mut self, filter: &Arc<Filter>) -> Result<&View, FilterError> {
        let group = self
            .groups
            .entry(filter.key.clone())
            .or_insert_with(|| Group {
                filter: filter.clone(),
                view: None,
                members: HashSet::new(),
            });
        if group.view.is_none() {
            self.stats.evaluations.fetch_add(1, Ordering::Relaxed);
            let mut view = View::default();
            match evaluate_fresh(&self.graph, &self.budget, filter, &view, &None) {
                Ok(fresh) => {
                    apply(&mut view, fresh);
                    group.view = Some(view);
                }
                Err(e) => {
                    if group.members.is_empty() {
                        self.groups.remove(&filter.key);
                    }
                    return Err(e);
                }
            }
        }
        self.groups[&filter.key]
            .view
            .as_ref()
            .ok_or_else(|| FilterError::invalid("filter not evaluated".to_owned()))
    }

    /// Moves a subscriber to `mode`, leaving its old group.
    fn set_mode(&mut self, id: u64, mode: Mode, filter: Option<Arc<Filter>>) {
        let Some(sub) = self.subs.get_mut(&id) else {
            return;
        };
        let old = std::mem::replace(&mut sub.mode, mode.clone());
        sub.filter = filter;
        if old == mode {
            return;
        }
        if let Mode::Group(key) = old {
            self.leave_group(&key, id);
        }
        if let Mode::Group(key) = mode {
            if let Some(g) = self.groups.get_mut(&key) {
                g.members.insert(id);
            }
        }
    }

    fn leave_group(&mut self, key: &str, id: u64) {
        if let Some(g) = self.groups.get_mut(key) {
            g.members.remove(&id);
            if g.members.is_empty() {
                self.groups.remove(key);
            }
        }
    }

    fn command(&mut self, cmd: Command, snapshot: Option<&Whole>, out: &mut Vec<(u64, Text)>) {
        match cmd {
            Command::Join { id, outbox, filter } => {
                self.subs.insert(
                    id,
                    Sub {
                        outbox,
                        mode: Mode::Nothing,
                        filter: None,
                    },
                );
                match filter {
                    Ok(None) => self.set_mode(id, Mode::All, None),
                    // A filter given at connection time applies from the start, as in
                    // Skydive; if it cannot be evaluated the subscriber waits for a
                    // SyncRequest.
                    Ok(Some(f)) => match self.group_view(&f) {
                        Ok(_) => self.set_mode(id, Mode::Group(f.key.clone()), Some(f)),
                        Err(e) if e.over_budget() => {
                            let msg = error_message("SyncReply", &uuid(), e.status(), &e.reason);
                            out.push((id, msg));
                            self.closing.push((id, e.reason));
                        }
                        Err(_) => self.set_mode(id, Mode::Nothing, Some(f)),
                    },
                    Err(()) => {}
                }
            }
            Command::Sync { id, uuid, wanted } => {
                let Some(sub) = self.subs.get(&id) else {
                    return;
                };
                let filter = match wanted {
                    Wanted::Keep => sub.filter.clone(),
                    Wanted::All => None,
                    Wanted::Filter(f) => Some(f),
                };
                match filter {
                    None => match snapshot {
                        Some(Err(e)) => {
                            out.push((id, error_message("SyncReply", &uuid, e.status(), &e.reason)))
                        }
                        _ => {
                            let obj = match snapshot {
                                Some(Ok(obj)) => obj,
                                _ => "{\"Nodes\":[],\"Edges\":[]}",
                            };
                            out.push((id, graph_message("SyncReply", &uuid, 200, obj)));
                            self.set_mode(id, Mode::All, None);
                        }
                    },
                    Some(f) => match self.group_view(&f) {
                        Ok(view) => {
                            out.push((id, graph_message("SyncReply", &uuid, 200, &view.json())));
                            self.set_mode(id, Mode::Group(f.key.clone()), Some(f));
                        }
                        Err(e) => {
                            out.push((id, error_message("SyncReply", &uuid, e.status(), &e.reason)))
                        }
                    },
                }
            }
            Command::Past { id, wanted, done } => {
                let Some(sub) = self.subs.get(&id) else {
                    return;
                };
                let filter = match wanted {
                    Wanted::Keep => sub.filter.clone(),
                    Wanted::All => None,
                    Wanted::Filter(f) => Some(f),
                };
                self.set_mode(id, Mode::Nothing, filter.clone());
                let _ = done.send(filter);
            }
            Command::Leave { id } => {
                if let Some(sub) = self.subs.remove(&id) {
                    if let Mode::Group(key) = sub.mode {
                        self.leave_group(&key, id);
                    }
                }
            }
        }
    }

    /// Queues the messages; a subscriber whose queue is full is disconnected, and so is
    /// one whose filter ran out of its budget, after its last message.
    fn deliver(&mut self, outgoing: Vec<(u64, Text)>) {
        let mut kicked = HashSet::new();
        for (id, msg) in outgoing {
            if kicked.contains(&id) {
                continue;
            }
            let Some(sub) = self.subs.get(&id) else {
                continue;
            };
            if !sub.outbox.push(msg) {
                kicked.insert(id);
            }
        }
        for id in kicked {
            if let Some(sub) = self.subs.remove(&id) {
                sub.outbox.kicked.notify_one();
                self.stats.disconnected_slow.fetch_add(1, Ordering::Relaxed);
                if let Mode::Group(key) = sub.mode {
                    self.leave_group(&key, id);
                }
            }
        }
        for (id, reason) in std::mem::take(&mut self.closing) {
            if let Some(sub) = self.subs.remove(&id) {
                *sub.outbox.close.lock() = Some((CLOSE_BUDGET, close_reason(&reason)));
                sub.outbox.kicked.notify_one();
                self.stats
                    .disconnected_budget
                    .fetch_add(1, Ordering::Relaxed);
                if let Mode::Group(key) = sub.mode {
                    self.leave_group(&key, id);
                }
            }
        }
    }
}

/// `reason` cut to what a close frame carries, on a character boundary.
fn close_reason(reason: &str) -> String {
    if reason.len() <= CLOSE_REASON_MAX {
        return reason.to_owned();
    }
    let mut end = CLOSE_REASON_MAX;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason[..end].to_owned()
}

fn event_id(event: &GraphEvent) -> &Identifier {
    match event {
        GraphEvent::NodeAdded(n) | GraphEvent::NodeUpdated(n) | GraphEvent::NodeDeleted(n) => &n.id,
        GraphEvent::EdgeAdded(e) | GraphEvent::EdgeUpdated(e) | GraphEvent::EdgeDeleted(e) => &e.id,
    }
}

fn event_message(event: &GraphEvent) -> Text {
    let obj = match event {
        GraphEvent::NodeAdded(n) | GraphEvent::NodeUpdated(n) | GraphEvent::NodeDeleted(n) => {
            to_json_text(n)
        }
        GraphEvent::EdgeAdded(e) | GraphEvent::EdgeUpdated(e) | GraphEvent::EdgeDeleted(e) => {
            to_json_text(e)
        }
    };
    graph_message(event.name(), &uuid(), 0, &obj)
}

// ----- one connection --------------------------------------------------------------------

async fn session(socket: WebSocket, state: AppState, params: Params, addr: String) {
    let (sub_id, hub) = {
        let mut subs = state.subscribers.lock();
        let id = subs.add(json!({
            "HostID": params.host_id,
            "ClientType": params.client_type,
            "Addr": addr,
            "ConnectTime": topotap_topology::now_ms(),
        }));
        (id, subs.hub(&state.graph, state.query_budget))
    };
    let (outbox, mut inbox) = Outbox::new();
    let ext = state.extensions.clone();
    let filter = match params.filter.as_deref().map(|f| Filter::compile(f, &ext)) {
        None => Ok(None),
        Some(Ok(f)) => Ok(Some(Arc::new(f))),
        Some(Err(_)) => Err(()),
    };
    let join = Command::Join {
        id: sub_id,
        outbox: outbox.clone(),
        filter,
    };
    if hub.send(join).await.is_ok() {
        let (mut tx, mut rx) = socket.split();
        let writer = async {
            let mut ping = tokio::time::interval(PING_INTERVAL);
            ping.tick().await;
            loop {
                let first = tokio::select! {
                    m = inbox.recv() => match m {
                        Some(m) => m,
                        None => break,
                    },
                    _ = ping.tick() => {
                        if tx.send(Message::ping(Vec::new())).await.is_err() {
                            break;
                        }
                        continue;
                    }
                };
                // Write what is queued, then flush once.
                let mut next = Some(first);
                let mut written = 0;
                let mut failed = false;
                while let Some(m) = next.take() {
                    outbox.taken(m.len());
                    if tx.feed(Message::text(&*m)).await.is_err() {
                        failed = true;
                        break;
                    }
                    written += 1;
                    if written < WRITE_BATCH {
                        next = inbox.try_recv().ok();
                    }
                }
                if failed || tx.flush().await.is_err() {
                    break;
                }
            }
        };
        let reader = async {
            while let Some(Ok(msg)) = rx.next().await {
                if msg.is_close() {
                    break;
                }
                let Ok(text) = msg.to_str() else {
                    continue;
                };
                match parse_request(text, &ext) {
                    Ok(Request::Live(uuid, wanted)) => {
                        let cmd = Command::Sync {
                            id: sub_id,
                            uuid,
                            wanted,
                        };
                        if hub.send(cmd).await.is_err() {
                            break;
                        }
                    }
                    Ok(Request::Past(uuid, wanted, at)) => {
                        // Live changes stop before the past graph is sent.
                        let (done, filter) = oneshot::channel();
                        let cmd = Command::Past {
                            id: sub_id,
                            wanted,
                            done,
                        };
                        if hub.send(cmd).await.is_err() {
                            break;
                        }
                        let Ok(filter) = filter.await else {
                            break;
                        };
                        outbox.push(past_reply(&state, &uuid, at, filter).await);
                    }
                    Err(reply) => {
                        outbox.push(reply);
                    }
                }
            }
        };
        // Fired alerts go to every subscriber, whatever its filter (Skydive's `Alert`
        // namespace). A subscriber too slow to take them is dropped like one too slow
        // for graph messages.
        let mut alerts = state.alert_messages.subscribe();
        let alerts = async {
            loop {
                match alerts.recv().await {
                    Ok(msg) => {
                        if !outbox.push(msg) {
                            break;
                        }
                    }
                    Err(RecvError::Lagged(_)) => continue,
                    Err(RecvError::Closed) => std::future::pending::<()>().await,
                }
            }
        };
        tokio::select! {
            _ = writer => {}
            _ = reader => {}
            _ = alerts => {}
            _ = outbox.kicked.notified() => {}
        }
        // Dropped with a reason: what is queued (the error), then a close frame that
        // says why, within a bounded time.
        let close = outbox.close.lock().take();
        if let Some((code, reason)) = close {
            let farewell = async {
                while let Ok(m) = inbox.try_recv() {
                    outbox.taken(m.len());
                    if tx.feed(Message::text(&*m)).await.is_err() {
                        return;
                    }
                }
                let _ = tx.send(Message::close_with(code, reason)).await;
            };
            let _ = tokio::time::timeout(PING_INTERVAL, farewell).await;
        }
        let _ = hub.send(Command::Leave { id: sub_id }).await;
    }
    state.subscribers.lock().remove(sub_id);
}

#[derive(Deserialize)]
struct SyncRequest {
    #[serde(rename = "GremlinFilter")]
    gremlin_filter: Option<String>,
    #[serde(rename = "Time")]
    time: Option<Value>,
}

/// A valid `SyncRequest`: of the live graph, or of the graph at a time.
enum Request {
    Live(String, Wanted),
    Past(String, Wanted, TimePoint),
}

/// `SyncRequest`'s `Time`: absent, `null` or `0` is the live graph; otherwise the forms
/// of `G.At` (milliseconds as Skydive sends them, Unix seconds, RFC 3339, a relative
/// duration, `NOW`).
fn sync_time(v: Option<&Value>) -> Result<Option<TimePoint>, String> {
    let bad =
        |v: &Value| format!("invalid Time {v}: {ACCEPTED_TIMES}, or milliseconds since the epoch");
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_i64() {
            Some(0) => Ok(None),
            Some(i) => time_from_int(i)
                .map(Some)
                .map_err(|_| bad(&Value::Number(n.clone()))),
            None => Err(bad(&Value::Number(n.clone()))),
        },
        Some(Value::String(t)) => parse_time(t).map(Some).map_err(|e| e.0),
        Some(other) => Err(bad(other)),
    }
}

/// The `SyncReply` to a `SyncRequest` with a time: the filter (or the whole graph)
/// evaluated on the graph of that time, built from the history, within the query
/// budget. 400 without a history, 503 when the store cannot be read.
async fn past_reply(
    state: &AppState,
    uuid: &str,
    at: TimePoint,
    filter: Option<Arc<Filter>>,
) -> Text {
    let Some(history) = state.history.clone() else {
        return error_message(
            "SyncReply",
            uuid,
            400,
            "Backend does not support history: this server runs with --history off, or its history store could not be opened",
        );
    };
    let at = at.resolve(topotap_topology::now_ms());
    let budget = state.query_budget;
    let result = tokio::task::spawn_blocking(move || {
        let past = history
            .graph_between(at, at)
            .map_err(|e| (503, e.to_string()))?;
        let note = super::topology::PastQuery {
            horizon: past.horizon,
            complete: past.complete,
        }
        .note();
        let fail = |e: FilterError| (e.status(), e.reason);
        let obj = past
            .with_view(|g| match &filter {
                None => Snapshot::whole_view(g, &budget)
                    .and_then(|s| s.encode(&budget))
                    .map(|a| String::from_utf8_lossy(&a.to_vec()).into_owned())
                    .map_err(|e| fail(FilterError::eval(e))),
                Some(f) => {
                    let (nodes, edges) = f.evaluate(g, &budget).map_err(fail)?;
                    subgraph_json(g, &nodes, &edges, &budget).map_err(fail)
                }
            })
            .map_err(|e| (503, e.to_string()))??;
        Ok((obj, note))
    })
    .await;
    match result {
        Ok(Ok((obj, None))) => graph_message("SyncReply", uuid, 200, &obj),
        Ok(Ok((obj, Some(note)))) => past_message(uuid, &note, &obj),
        Ok(Err((status, reason))) => error_message("SyncReply", uuid, status, &reason),
        Err(e) => error_message("SyncReply", uuid, 500, &e.to_string()),
    }
}

/// `{"Nodes":[...],"Edges":[...]}` of these elements, within the byte budget.
fn subgraph_json(
    g: topotap_topology::View<'_>,
    nodes: &[NodeIx],
    edges: &[EdgeIx],
    budget: &Budget,
) -> Result<String, FilterError> {
    let max = budget.max_bytes;
    let mut out = String::from("{\"Nodes\":[");
    let check = |out: &String| {
        if out.len() > max {
            Err(FilterError::eval(too_many_bytes(max)))
        } else {
            Ok(())
        }
    };
    for (i, ix) in nodes.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&to_json_text(&g.node(*ix).to_owned()));
        check(&out)?;
    }
    out.push_str("],\"Edges\":[");
    for (i, ix) in edges.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&to_json_text(&g.edge(*ix).to_owned()));
        check(&out)?;
    }
    out.push_str("]}");
    check(&out)?;
    Ok(out)
}

/// Reads a client message: a valid `SyncRequest`, or the reply to anything else (a
/// 400).
fn parse_request(text: &str, ext: &Extensions) -> Result<Request, Text> {
    let msg: WsMessage = serde_json::from_str(text)
        .map_err(|e| error_message("Error", "", 400, &format!("invalid message: {e}")))?;
    if msg.namespace != "Graph" || msg.kind != "SyncRequest" {
        let reply = WsMessage {
            namespace: msg.namespace,
            kind: format!("{}Reply", msg.kind),
            uuid: msg.uuid,
            status: 400,
            obj: Value::String(format!("unsupported message type '{}'", msg.kind)),
        };
        return Err(to_json_text(&reply).into());
    }
    let uuid = msg.uuid;
    let req: SyncRequest = serde_json::from_value(msg.obj).map_err(|e| {
        error_message(
            "SyncReply",
            &uuid,
            400,
            &format!("invalid SyncRequest: {e}"),
        )
    })?;
    let at =
        sync_time(req.time.as_ref()).map_err(|e| error_message("SyncReply", &uuid, 400, &e))?;
    let wanted = match req.gremlin_filter {
        None => Wanted::Keep,
        Some(f) if f.trim().is_empty() => Wanted::All,
        Some(f) => match Filter::compile(&f, ext) {
            Ok(f) => Wanted::Filter(Arc::new(f)),
            Err(e) => return Err(error_message("SyncReply", &uuid, 400, e.reason())),
        },
    };
    Ok(match at {
        None => Request::Live(uuid, wanted),
        Some(at) => Request::Past(uuid, wanted, at),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prebuilt_messages_match_the_envelope() {
        let obj = json!({"ID": "n", "Metadata": {"Name": "a\"b"}});
        for status in [0, 200, 400] {
            let built = graph_message("NodeAdded", "u-\"1", status, &obj.to_string());
            let expected = WsMessage {
                namespace: "Graph".into(),
                kind: "NodeAdded".into(),
                uuid: "u-\"1".into(),
                status,
                obj: obj.clone(),
            };
            assert_eq!(&*built, serde_json::to_string(&expected).unwrap());
        }
    }
}
