//! The analyzer's side of the fleet: `/ws/agent/topology` (agents push their
//! subgraphs), `/ws/replication` (peer analyzers push theirs), and the bookkeeping of
//! who owns which host in the merged graph.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use topotap_topology::{GraphEvent, SharedGraph};
use tracing::{info, warn};
use warp::filters::ws::{Message, WebSocket};
use warp::http::{HeaderMap, HeaderValue, StatusCode};
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use super::merge::{self, Owner};
use super::protocol::{self, Refused};
use crate::http::{reply_error, ApiError};

/// Interval between pings to agents and peers.
const PING_INTERVAL: Duration = Duration::from_secs(2);
/// An agent or peer that answers none of this many pings in a row (no message, no
/// pong: 10 s at the ping interval) is dropped. Counted in pings rather than in time,
/// so that an analyzer too busy to ping on time does not blame the agent for it.
const UNANSWERED_PINGS: u32 = 5;
/// Close code for a refused message (policy violation).
const CLOSE_POLICY: u16 = 1008;
/// Close code for an oversized message.
const CLOSE_TOO_BIG: u16 = 1009;
/// Longest close reason a close frame carries.
const CLOSE_REASON_MAX: usize = 123;

/// Connected agents and peers, and who owns each host of the merged graph.
pub struct Fleet {
    pub graph: SharedGraph,
    /// This analyzer's host id.
    pub host_id: String,
    /// Largest message accepted from an agent or a peer, in bytes.
    pub max_message_bytes: usize,
    /// Connected agents and peers. Held only for a lookup or an insertion, never while
    /// waiting for the graph: `register` and `request` take it on async workers.
    conns: Mutex<Conns>,
    /// Who writes each host of the merged graph. Changed only under the graph's write
    /// lock, taken after it (lock order: graph, then owners), and never across a wait
    /// for the graph, so readers (`is_local`, `/api/status`) wait at most for one
    /// ownership decision (or one peer's message).
    owners: Mutex<HashMap<String, Owner>>,
    next: AtomicU64,
    refused: AtomicU64,
    /// Leases of connected agents in etcd, renewed while their connection lasts.
    pub liveness: std::sync::OnceLock<crate::etcd::Liveness>,
    /// Requests sent to agents waiting for their reply, by request UUID.
    pending: Mutex<HashMap<String, tokio::sync::oneshot::Sender<protocol::Reply>>>,
}

/// Why a request to an agent got no reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("agent {0} is not connected to this analyzer")]
    NotConnected(String),
    #[error("agent {host} did not answer within {ms} ms")]
    Timeout { host: String, ms: u128 },
    /// Sent through the peer analyzer holding the agent's connection, which could not
    /// deliver it or answer in time.
    #[error("through analyzer {peer}: {reason}")]
    Relayed { peer: String, reason: String },
}

/// Time kept by the analyzer relaying a request for its answer to come back, out of
/// the requester's timeout: its agent's timeout is that much shorter.
const RELAY_MARGIN: Duration = Duration::from_millis(500);

#[derive(Default)]
struct Conns {
    agents: HashMap<String, Connection>,
    peers: HashMap<String, Connection>,
}

struct Connection {
    id: u64,
    addr: String,
    since: i64,
    /// Messages to send on the connection (a `SyncRequest` to a peer).
    tx: mpsc::Sender<String>,
}

/// Which side of the fleet a connection is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Agent,
    Peer,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Agent => "agent",
            Kind::Peer => "peer",
        }
    }
}

/// A registered connection: unregistered (and its host's subgraph removed) on drop,
/// whether or not the upgrade ever ran.
struct Registration {
    fleet: Arc<Fleet>,
    kind: Kind,
    host: String,
    id: u64,
    delete_on_disconnect: bool,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let fleet = self.fleet.clone();
        let (kind, host, id, delete) = (
            self.kind,
            std::mem::take(&mut self.host),
            self.id,
            self.delete_on_disconnect,
        );
        // Removing a subgraph takes the graph's write lock: not on an async worker.
        let work = move || fleet.disconnected(kind, &host, id, delete);
        match tokio::runtime::Handle::try_current() {
            Ok(h) => {
                h.spawn_blocking(work);
            }
            Err(_) => work(),
        }
    }
}

impl Fleet {
    pub fn new(graph: SharedGraph, host_id: &str, max_message_bytes: usize) -> Arc<Self> {
        Arc::new(Fleet {
            graph,
            host_id: host_id.to_owned(),
            max_message_bytes,
            conns: Mutex::default(),
            owners: Mutex::default(),
            next: AtomicU64::new(1),
            refused: AtomicU64::new(0),
            liveness: std::sync::OnceLock::new(),
            pending: Mutex::default(),
        })
    }

    /// Hosts this analyzer can send requests to: those of its agents, and those a
    /// connected peer replicates as its own (their agent is connected to that peer).
    pub fn reachable_hosts(&self) -> Vec<String> {
        let relayed: Vec<(String, String)> = self
            .owners
            .lock()
            .iter()
            .filter_map(|(h, o)| match o {
                Owner::Peer(p) => Some((h.clone(), p.clone())),
                Owner::Agent(_) => None,
            })
            .collect();
        let conns = self.conns.lock();
        let mut hosts: Vec<String> = conns.agents.keys().cloned().collect();
        hosts.extend(
            relayed
                .into_iter()
                .filter(|(h, p)| conns.peers.contains_key(p) && !conns.agents.contains_key(h))
                .map(|(h, _)| h),
        );
        hosts
    }

    /// Sends `request` to `host`'s agent and waits for its reply, at most `timeout`
    /// in all. An agent not connected here is reached through the peer analyzer whose
    /// replication link brings its host ([`super::relay`]).
    pub async fn request(
        &self,
        host: &str,
        request: protocol::Request,
        timeout: Duration,
    ) -> Result<protocol::Reply, RequestError> {
        if self.conns.lock().agents.contains_key(host) {
            return self.request_local(host, request, timeout).await;
        }
        let peer = match self.owners.lock().get(host) {
            Some(Owner::Peer(p)) => p.clone(),
            _ => return Err(RequestError::NotConnected(host.to_owned())),
        };
        let tx = self
            .conns
            .lock()
            .peers
            .get(&peer)
            .map(|c| c.tx.clone())
            .ok_or_else(|| RequestError::NotConnected(host.to_owned()))?;
        let budget = timeout.saturating_sub(RELAY_MARGIN).max(timeout / 2);
        let relay = protocol::Request::new(
            protocol::NS_RELAY,
            "Forward",
            json!({
                "Host": host,
                "TimeoutMs": u64::try_from(budget.as_millis()).unwrap_or(u64::MAX),
                "Request": request,
            }),
        );
        let relayed = |reason: String| RequestError::Relayed {
            peer: peer.clone(),
            reason,
        };
        let reply = match self.exchange(&tx, relay, timeout).await {
            Some(Ok(r)) => r,
            Some(Err(())) => return Err(relayed("connection lost".into())),
            None => {
                return Err(relayed(format!(
                    "no answer within {} ms",
                    timeout.as_millis()
                )))
            }
        };
        if reply.status != 200 {
            return Err(relayed(reply.reason()));
        }
        reply
            .obj
            .get("Reply")
            .cloned()
            .and_then(|r| serde_json::from_value::<protocol::Reply>(r).ok())
            .ok_or_else(|| relayed("an answer without the agent's Reply".into()))
    }

    /// Sends `request` on `tx` and waits for the reply with its UUID: `None` after
    /// `timeout`, `Some(Err)` if the connection went first.
    async fn exchange(
        &self,
        tx: &mpsc::Sender<String>,
        request: protocol::Request,
        timeout: Duration,
    ) -> Option<Result<protocol::Reply, ()>> {
        let (reply_tx, reply_rx) = tokio::sync::oneshot::channel();
        let uuid = request.uuid.clone();
        self.pending.lock().insert(uuid.clone(), reply_tx);
        let exchange = async {
            tx.send(request.to_text()).await.map_err(|_| ())?;
            reply_rx.await.map_err(|_| ())
        };
        let answer = tokio::time::timeout(timeout, exchange).await;
        self.pending.lock().remove(&uuid);
        answer.ok()
    }

    /// Sends `request` to `host`'s agent, which must be connected here, and waits for
    /// its reply, at most `timeout` in all.
    pub async fn request_local(
        &self,
        host: &str,
        request: protocol::Request,
        timeout: Duration,
    ) -> Result<protocol::Reply, RequestError> {
        let tx = self
            .conns
            .lock()
            .agents
            .get(host)
            .map(|c| c.tx.clone())
            .ok_or_else(|| RequestError::NotConnected(host.to_owned()))?;
        match self.exchange(&tx, request, timeout).await {
            Some(Ok(reply)) => Ok(reply),
            Some(Err(())) => Err(RequestError::NotConnected(host.to_owned())),
            None => Err(RequestError::Timeout {
                host: host.to_owned(),
                ms: timeout.as_millis(),
            }),
        }
    }

    /// A message of an agent or a peer that is not a graph change: the reply to a
    /// request (a peer's, to a relayed one).
    fn deliver(&self, host: &str, text: &str) {
        match protocol::parse_other::<protocol::Reply>(text) {
            Ok(Some(reply)) => {
                if let Some(tx) = self.pending.lock().remove(&reply.uuid) {
                    let _ = tx.send(reply);
                }
            }
            Ok(None) => {}
            Err(e) => warn!(host, reason = %e, "agent message ignored"),
        }
    }

    fn register(
        self: &Arc<Self>,
        kind: Kind,
        host: &str,
        addr: String,
        delete_on_disconnect: bool,
    ) -> Result<(Registration, mpsc::Receiver<String>), ApiError> {
        if host == self.host_id {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!("host id {host:?} is this analyzer's own"),
            ));
        }
        let mut st = self.conns.lock();
        let (map, other) = match kind {
            Kind::Agent => (&st.agents, &st.peers),
            Kind::Peer => (&st.peers, &st.agents),
        };
        if let Some(c) = map.get(host).or_else(|| other.get(host)) {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!(
                    "host id {host:?} is already connected (from {}): a second connection with the same host id is refused",
                    c.addr
                ),
            ));
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(16);
        let conn = Connection {
            id,
            addr,
            since: topotap_topology::now_ms(),
            tx,
        };
        match kind {
            Kind::Agent => {
                st.agents.insert(host.to_owned(), conn);
            }
            Kind::Peer => {
                st.peers.insert(host.to_owned(), conn);
            }
        }
        Ok((
            Registration {
                fleet: self.clone(),
                kind,
                host: host.to_owned(),
                id,
                delete_on_disconnect,
            },
            rx,
        ))
    }

    /// A connection ended: forget it and remove what it owned.
    fn disconnected(&self, kind: Kind, host: &str, id: u64, delete: bool) {
        topotap_topology::blocking::section("fleet disconnect");
        {
            let mut conns = self.conns.lock();
            let map = match kind {
                Kind::Agent => &mut conns.agents,
                Kind::Peer => &mut conns.peers,
            };
            if map.get(host).is_some_and(|c| c.id == id) {
                map.remove(host);
            }
        }
        let mut lost = Vec::new();
        {
            let mut g = self.graph.write();
            let mut owners = self.owners.lock();
            match kind {
                Kind::Agent => {
                    if owners.get(host) == Some(&Owner::Agent(id)) {
                        owners.remove(host);
                        drop(owners);
                        if delete {
                            let (n, e) = merge::remove_host(&mut g, host);
                            info!(
                                host,
                                nodes = n,
                                edges = e,
                                "agent gone: its subgraph is removed"
                            );
                        }
                        lost.push(host.to_owned());
                    }
                }
                Kind::Peer => {
                    let owned: Vec<String> = owners
                        .iter()
                        .filter(|(_, o)| **o == Owner::Peer(host.to_owned()))
                        .map(|(h, _)| h.clone())
                        .collect();
                    for h in &owned {
                        owners.remove(h);
                    }
                    drop(owners);
                    for h in owned {
                        merge::remove_host(&mut g, &h);
                        lost.push(h);
                    }
                    info!(
                        peer = host,
                        hosts = lost.len(),
                        "peer gone: its hosts are removed"
                    );
                }
            }
        }
        if !lost.is_empty() {
            self.ask_peers_to_resync();
        }
    }

    /// No analyzer renews `host`'s lease in etcd any more (its agent died, or the
    /// analyzer holding it did): unless its agent is connected here, its subgraph goes.
    pub fn lease_expired(&self, host: &str) {
        topotap_topology::blocking::section("fleet lease expiry");
        // Under the graph's lock: an agent connecting now applies its `Sync` after
        // this, not before.
        let mut g = self.graph.write();
        if self.conns.lock().agents.contains_key(host) {
            return;
        }
        self.owners.lock().remove(host);
        let (n, e) = merge::remove_host(&mut g, host);
        if n + e > 0 {
            info!(
                host,
                nodes = n,
                edges = e,
                "agent's lease expired: its subgraph is removed"
            );
        }
    }

    /// Other peers may have the hosts just lost: ask each for a full `Sync`.
    fn ask_peers_to_resync(&self) {
        let conns = self.conns.lock();
        for c in conns.peers.values() {
            let _ = c.tx.try_send(protocol::sync_request());
        }
    }

    /// Applies one text message of `host`'s connection.
    fn apply(&self, kind: Kind, host: &str, id: u64, text: &str) -> Result<(), Refused> {
        topotap_topology::blocking::section("fleet message");
        let Some(msg) = protocol::parse(text)? else {
            self.deliver(host, text);
            return Ok(());
        };
        // The graph first, then the owners for as long as the decision takes: nothing
        // waits for the graph while holding a lock the async side needs.
        let mut g = self.graph.write();
        match kind {
            Kind::Agent => {
                let displaced = {
                    let mut owners = self.owners.lock();
                    matches!(
                        owners.insert(host.to_owned(), Owner::Agent(id)),
                        Some(Owner::Peer(_))
                    )
                };
                if displaced {
                    // A local agent wins over a peer's copy of its host.
                    merge::remove_host(&mut g, host);
                }
                merge::apply_agent(&mut g, host, msg)
            }
            Kind::Peer => {
                let own = self.host_id.clone();
                let gone = {
                    let mut owners = self.owners.lock();
                    merge::apply_peer(&mut g, &mut owners, &own, host, msg)
                };
                drop(g);
                if !gone.is_empty() {
                    self.ask_peers_to_resync();
                }
                Ok(())
            }
        }
    }

    /// Whether a change was made here (by a local agent or through this analyzer's
    /// API) rather than received from a peer: only those are replicated.
    pub fn is_local(&self, host: &str, origin: &str) -> bool {
        if origin.starts_with(merge::DERIVED_ORIGIN) {
            return false;
        }
        !matches!(self.owners.lock().get(host), Some(Owner::Peer(_)))
    }

    /// The local part of the graph, for a replication `Sync`, and the changes after it.
    pub fn local_snapshot(&self) -> super::link::Snapshot {
        // Copied first: the owners are not held while waiting for the graph.
        let remote: std::collections::HashSet<String> = self
            .owners
            .lock()
            .iter()
            .filter(|(_, o)| matches!(o, Owner::Peer(_)))
            .map(|(h, _)| h.clone())
            .collect();
        let local = |host: &str, origin: &str| {
            !origin.starts_with(merge::DERIVED_ORIGIN) && !remote.contains(host)
        };
        let g = self.graph.read();
        let rx = g.subscribe();
        let nodes = g
            .nodes()
            .map(|n| g.node(n))
            .filter(|n| local(n.host(), n.origin()))
            .map(|n| n.to_owned())
            .collect();
        let edges = g
            .edges()
            .map(|e| g.edge(e))
            .filter(|e| local(e.host(), e.origin()))
            .map(|e| e.to_owned())
            .collect();
        (nodes, edges, rx)
    }

    /// Agents and replicating peers connected to this analyzer (`/metrics`).
    pub fn connection_counts(&self) -> Vec<(&'static str, usize)> {
        let conns = self.conns.lock();
        vec![("agent", conns.agents.len()), ("peer", conns.peers.len())]
    }

    /// The `Agents` and `Peers` sections of `/api/status`.
    pub fn status(&self) -> serde_json::Map<String, Value> {
        let conn = |c: &Connection| json!({"Address": c.addr, "ConnectedSince": c.since});
        let (agents, peers) = {
            let conns = self.conns.lock();
            let agents: serde_json::Map<String, Value> = conns
                .agents
                .iter()
                .map(|(h, c)| (h.clone(), conn(c)))
                .collect();
            let peers: serde_json::Map<String, Value> = conns
                .peers
                .iter()
                .map(|(h, c)| (h.clone(), conn(c)))
                .collect();
            (agents, peers)
        };
        let mut hosts = serde_json::Map::new();
        for (h, o) in self.owners.lock().iter() {
            let v = match o {
                Owner::Agent(_) => "agent".to_owned(),
                Owner::Peer(p) => format!("peer {p}"),
            };
            hosts.insert(h.clone(), v.into());
        }
        let mut out = serde_json::Map::new();
        out.insert("Agents".into(), Value::Object(agents));
        out.insert("Peers".into(), json!({"Incomers": peers, "Outgoers": {}}));
        out.insert(
            "Fleet".into(),
            json!({
                "Hosts": hosts,
                "RefusedConnections": self.refused.load(Ordering::Relaxed),
                "MaxMessageBytes": self.max_message_bytes,
            }),
        );
        out
    }
}

/// The replication share of an analyzer: its local hosts.
pub struct LocalShare(pub Arc<Fleet>);

impl super::link::Share for LocalShare {
    fn forwards(&self, event: &GraphEvent) -> bool {
        let (host, origin) = protocol::event_source(event);
        self.0.is_local(host, origin)
    }

    fn snapshot(&self) -> super::link::Snapshot {
        self.0.local_snapshot()
    }
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

fn bad_request(msg: String) -> Response {
    reply_error(ApiError::new(StatusCode::BAD_REQUEST, msg))
}

/// `/ws/agent/topology` and `/ws/replication`.
pub fn routes(fleet: Arc<Fleet>) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let f = fleet.clone();
    let agent = warp::path!("ws" / "agent" / "topology")
        .and(warp::ws())
        .and(warp::header::headers_cloned())
        .and(crate::http::remote())
        .map(move |ws, headers, addr| upgrade(f.clone(), Kind::Agent, ws, headers, addr));
    let replication = warp::path!("ws" / "replication")
        .and(warp::ws())
        .and(warp::header::headers_cloned())
        .and(crate::http::remote())
        .map(move |ws, headers, addr| upgrade(fleet.clone(), Kind::Peer, ws, headers, addr));
    agent.or(replication).unify()
}

fn upgrade(
    fleet: Arc<Fleet>,
    kind: Kind,
    ws: warp::ws::Ws,
    headers: HeaderMap,
    addr: Option<SocketAddr>,
) -> Response {
    let addr = addr.map(|a| a.to_string()).unwrap_or_default();
    let refuse = |resp: Response, why: &str| {
        fleet.refused.fetch_add(1, Ordering::Relaxed);
        warn!(kind = kind.name(), %addr, reason = why, "fleet connection refused");
        resp
    };
    let Some(host) = header(&headers, protocol::HOST_ID) else {
        let msg = format!(
            "{} header required: the {}'s host id",
            protocol::HOST_ID,
            kind.name()
        );
        return refuse(bad_request(msg.clone()), &msg);
    };
    if !protocol::valid_host_id(&host) {
        let msg = format!(
            "invalid {} {host:?}: 1 to 253 letters, digits, '.', '-', '_' or ':'",
            protocol::HOST_ID
        );
        return refuse(bad_request(msg.clone()), &msg);
    }
    if header(&headers, protocol::CLIENT_TYPE).is_none() {
        let msg = format!("{} header required", protocol::CLIENT_TYPE);
        return refuse(bad_request(msg.clone()), &msg);
    }
    if let Some(p) = header(&headers, "X-Client-Protocol") {
        if p != "json" {
            let msg = format!("X-Client-Protocol {p:?} is not supported: use json");
            return refuse(bad_request(msg.clone()), &msg);
        }
    }
    let delete = match header(&headers, protocol::PERSISTENCE_POLICY).as_deref() {
        None | Some(protocol::DELETE_ON_DISCONNECT) => true,
        Some("Persistent") => false,
        Some(other) => {
            let msg = format!(
                "{} {other:?}: expected DeleteOnDisconnect or Persistent",
                protocol::PERSISTENCE_POLICY
            );
            return refuse(bad_request(msg.clone()), &msg);
        }
    };
    let (reg, rx) = match fleet.register(kind, &host, addr.clone(), delete) {
        Ok(r) => r,
        Err(e) => {
            let msg = e.message.clone();
            return refuse(reply_error(e), &msg);
        }
    };
    info!(kind = kind.name(), host = %host, %addr, "fleet connection");
    let limit = fleet.max_message_bytes;
    let mut resp = ws
        .max_message_size(limit)
        .max_frame_size(limit)
        .on_upgrade(move |socket| session(socket, reg, rx))
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&fleet.host_id) {
        resp.headers_mut().insert(protocol::HOST_ID, v);
    }
    resp.headers_mut()
        .insert(protocol::SERVICE_TYPE, HeaderValue::from_static("analyzer"));
    resp
}

fn truncate(reason: &str) -> String {
    let mut end = reason.len().min(CLOSE_REASON_MAX);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason[..end].to_owned()
}

async fn session(socket: WebSocket, reg: Registration, mut outbox: mpsc::Receiver<String>) {
    let (mut tx, mut rx) = socket.split();
    let fleet = reg.fleet.clone();
    let (kind, host, id) = (reg.kind, reg.host.clone(), reg.id);
    // The agent's lease in etcd, renewed while this connection lasts; it expires a TTL
    // after the connection ends.
    let _lease: Option<crate::etcd::AgentLease> = match (kind, fleet.liveness.get()) {
        (Kind::Agent, Some(l)) => l.hold(&host).ok(),
        _ => None,
    };
    let mut ping = tokio::time::interval(PING_INTERVAL);
    // After a stall, ping once and wait an interval again rather than catch up.
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut unanswered = 0u32;
    let close = loop {
        // Messages already received come first: a pong waiting in the socket while the
        // analyzer was busy is not a missed one.
        tokio::select! {
            biased;
            out = outbox.recv() => {
                if let Some(text) = out {
                    if tx.send(Message::text(text)).await.is_err() {
                        break None;
                    }
                }
            }
            msg = rx.next() => {
                unanswered = 0;
                match msg {
                    Some(Ok(m)) if m.is_text() => {
                        let text = match m.to_str() { Ok(t) => t.to_owned(), Err(()) => break None };
                        let (f, h) = (fleet.clone(), host.clone());
                        let applied = tokio::task::spawn_blocking(move || f.apply(kind, &h, id, &text)).await;
                        // Time spent here applying (waiting for the graph) is not the
                        // agent's silence: its pongs queue meanwhile.
                        unanswered = 0;
                        match applied {
                            Ok(Ok(())) => {}
                            Ok(Err(refused)) => break Some((CLOSE_POLICY, refused.0)),
                            Err(e) => break Some((1011, format!("internal error: {e}"))),
                        }
                    }
                    Some(Ok(m)) if m.is_binary() => {
                        break Some((CLOSE_POLICY, "binary (protobuf) messages are not supported: send JSON text".to_owned()));
                    }
                    Some(Ok(m)) if m.is_close() => break None,
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        let reason = e.to_string();
                        let too_big = reason.contains("too long") || reason.contains("too big") || reason.contains("Space limit");
                        if too_big {
                            break Some((CLOSE_TOO_BIG, format!("message larger than {} bytes refused", fleet.max_message_bytes)));
                        }
                        info!(kind = kind.name(), host = %host, reason = %reason, "fleet connection lost");
                        break None;
                    }
                    None => break None,
                }
            }
            _ = ping.tick() => {
                if unanswered >= UNANSWERED_PINGS {
                    break Some((1001, format!(
                        "no message or pong for {UNANSWERED_PINGS} pings ({} s)",
                        (PING_INTERVAL * UNANSWERED_PINGS).as_secs()
                    )));
                }
                unanswered += 1;
                if tx.send(Message::ping(Vec::new())).await.is_err() {
                    break None;
                }
            }
        }
    };
    if let Some((code, reason)) = close {
        fleet.refused.fetch_add(1, Ordering::Relaxed);
        warn!(kind = kind.name(), host = %host, reason = %reason, "fleet connection closed: message refused");
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            tx.send(Message::close_with(code, truncate(&reason))),
        )
        .await;
    } else {
        info!(kind = kind.name(), host = %host, "fleet connection ended");
    }
    drop(reg);
}

/// Removes the subgraph of each host whose lease expired in etcd.
pub async fn follow_leases(fleet: Arc<Fleet>, liveness: crate::etcd::Liveness) {
    let mut events = liveness.watch();
    while let Some(event) = events.recv().await {
        if let crate::etcd::LivenessEvent::Gone(host) = event {
            let f = fleet.clone();
            let _ = tokio::task::spawn_blocking(move || f.lease_expired(&host)).await;
        }
    }
}
