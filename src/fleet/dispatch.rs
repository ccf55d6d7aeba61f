//! The leading analyzer's placement of captures and injections on agents (Skydive's
//! on-demand client).
//!
//! Every analyzer looks at the merged graph; only the one that dispatches
//! (`Services::dispatches`, the elected leader) acts. What runs is read from the graph
//! itself, not remembered: an agent writes `Metadata.Captures` and
//! `Metadata.PacketInjections` on its nodes, which reach every analyzer as ordinary
//! graph updates. So a new leader sees what its predecessor started and starts none of
//! it again, and an agent that reconnects with captures deleted meanwhile has them
//! stopped. Agents are idempotent per (capture UUID, node) and per injection UUID, so
//! even two dispatchers at once cannot run anything twice.
//!
//! The decision ([`orders`]) is pure: desired (each capture's query evaluated on the
//! merged graph, each injection's source node) against observed (the entries on the
//! nodes) gives `Start` and `Stop` orders; [`Holds`] keeps an order from being sent
//! again while its effect has not yet shown in the graph.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::sync::broadcast::error::RecvError;
use topotap_topology::{schema, Graph, GraphEvent, Identifier};
use tracing::{info, warn};

use super::analyzer::Fleet;
use super::protocol::{self, Request};
use crate::capture::placer::{self, Debounce};
use crate::injection::resource::JobState;
use crate::services::Services;

/// Quiet time after a graph or store change before matching again.
pub const QUIET: Duration = Duration::from_millis(300);
/// Longest wait between a change and the matching that follows it.
pub const MAX_DELAY: Duration = Duration::from_secs(1);
/// Matching runs at least this often (leadership changes, resends).
pub const ROUND: Duration = Duration::from_secs(1);
/// An order is not sent again for this long while its effect does not show.
pub const RESEND: Duration = Duration::from_secs(5);
/// An order the agent refused as pointless (a `Stop` of what it does not run) waits
/// this long before it is sent again.
pub const REFUSED_HOLD: Duration = Duration::from_secs(60);
/// Longest wait for an agent's reply.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// What an order is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum What {
    Capture,
    Injection,
}

impl What {
    fn namespace(self) -> &'static str {
        match self {
            What::Capture => protocol::NS_CAPTURE,
            What::Injection => protocol::NS_INJECTION,
        }
    }

    fn key(self) -> &'static str {
        match self {
            What::Capture => schema::key::CAPTURES,
            What::Injection => "PacketInjections",
        }
    }
}

/// One order to an agent.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Order {
    pub start: bool,
    pub what: What,
    pub uuid: String,
    pub node: Identifier,
    pub host: String,
}

/// Where things should run and where they run, as the merged graph shows it.
#[derive(Debug, Default, Clone)]
pub struct World {
    /// (capture, node) -> host, from the captures' queries.
    pub desired_captures: BTreeMap<(String, Identifier), String>,
    /// (capture, node) -> host, from `Metadata.Captures`.
    pub observed_captures: BTreeMap<(String, Identifier), String>,
    /// Injection -> (source node, host).
    pub desired_injections: BTreeMap<String, (Identifier, String)>,
    /// (injection, node) -> host, from `Metadata.PacketInjections`.
    pub observed_injections: BTreeMap<(String, Identifier), String>,
    /// Every stored injection (those whose source is not found included).
    pub stored_injections: BTreeSet<String>,
}

/// The orders that take what runs to what should: captures start where they match
/// and do not run, and stop where they run and no longer match (deleted, expired, or
/// the node left their query); an injection starts on its source if it runs nowhere,
/// and stops where it runs once deleted.
pub fn orders(w: &World) -> Vec<Order> {
    let mut out = Vec::new();
    for ((uuid, node), host) in &w.desired_captures {
        if !w
            .observed_captures
            .contains_key(&(uuid.clone(), node.clone()))
        {
            out.push(order(true, What::Capture, uuid, node, host));
        }
    }
    for ((uuid, node), host) in &w.observed_captures {
        if !w
            .desired_captures
            .contains_key(&(uuid.clone(), node.clone()))
        {
            out.push(order(false, What::Capture, uuid, node, host));
        }
    }
    let running: BTreeSet<&String> = w.observed_injections.keys().map(|(u, _)| u).collect();
    for (uuid, (node, host)) in &w.desired_injections {
        if !running.contains(uuid) {
            out.push(order(true, What::Injection, uuid, node, host));
        }
    }
    for ((uuid, node), host) in &w.observed_injections {
        if !w.stored_injections.contains(uuid) {
            out.push(order(false, What::Injection, uuid, node, host));
        }
    }
    out
}

fn order(start: bool, what: What, uuid: &str, node: &Identifier, host: &str) -> Order {
    Order {
        start,
        what,
        uuid: uuid.to_owned(),
        node: node.clone(),
        host: host.to_owned(),
    }
}

/// Orders recently sent, not to be sent again before their time.
#[derive(Debug, Default)]
pub struct Holds(HashMap<Order, Instant>);

impl Holds {
    /// The orders of `all` not held at `now`; holds that ran out are forgotten.
    pub fn due(&mut self, all: Vec<Order>, now: Instant) -> Vec<Order> {
        self.0.retain(|_, until| *until > now);
        all.into_iter()
            .filter(|o| !self.0.contains_key(o))
            .collect()
    }

    pub fn hold(&mut self, order: Order, until: Instant) {
        self.0.insert(order, until);
    }

    pub fn clear(&mut self) {
        self.0.clear();
    }
}

/// The nodes carrying `Captures` or `PacketInjections` entries, followed from the
/// graph's events: a round reads those nodes instead of visiting every node of the
/// merged graph (a second or so per round at 200,000 nodes, under the graph's read
/// lock, which held agents' changes back).
#[derive(Debug)]
pub struct Carriers {
    ids: HashSet<Identifier>,
    /// Events were missed: the next round visits the whole graph once.
    stale: bool,
}

impl Default for Carriers {
    fn default() -> Self {
        Carriers {
            ids: HashSet::new(),
            stale: true,
        }
    }
}

fn carries(m: &topotap_topology::Metadata) -> bool {
    [What::Capture, What::Injection]
        .iter()
        .any(|w| m.get(w.key()).is_some())
}

impl Carriers {
    /// Follows one change of the graph (events are seen in order, so the last one
    /// about a node decides).
    pub fn see(&mut self, event: &GraphEvent) {
        match event {
            GraphEvent::NodeAdded(n) | GraphEvent::NodeUpdated(n) => {
                if carries(&n.metadata) {
                    self.ids.insert(n.id.clone());
                } else {
                    self.ids.remove(&n.id);
                }
            }
            GraphEvent::NodeDeleted(n) => {
                self.ids.remove(&n.id);
            }
            _ => {}
        }
    }

    /// Changes were missed: visit the whole graph next time.
    pub fn lost_track(&mut self) {
        self.stale = true;
    }

    /// The nodes to read in `g` (every carrier of `g` if events were missed).
    fn nodes(&mut self, g: &Graph) -> Vec<topotap_topology::NodeIx> {
        if std::mem::take(&mut self.stale) {
            self.ids = g
                .nodes()
                .filter(|ix| carries(g.node(*ix).metadata()))
                .map(|ix| g.node(ix).id().clone())
                .collect();
        }
        self.ids.iter().filter_map(|id| g.find_node(id)).collect()
    }
}

/// One entry of `Metadata.Captures` or `Metadata.PacketInjections` on a node.
struct Seen {
    key: (String, Identifier),
    host: String,
    state: String,
    /// `PacketCount` (injections).
    packets: u64,
    /// `"on <node name> (host <host>): <Error>"`, for an entry with an `Error`.
    error: Option<String>,
}

/// The entries of `key` (`Captures`, `PacketInjections`) on the nodes `carriers` of `g`.
fn observed(g: &Graph, carriers: &[topotap_topology::NodeIx], key: &str) -> Vec<Seen> {
    let mut out = Vec::new();
    for &ix in carriers {
        let n = g.node(ix);
        let Some(Value::Array(entries)) = n.metadata().get(key) else {
            continue;
        };
        for e in entries {
            if let Some(id) = e.get("ID").and_then(Value::as_str) {
                let state = e.get("State").and_then(Value::as_str).unwrap_or("");
                let packets = e.get("PacketCount").and_then(Value::as_u64).unwrap_or(0);
                let error = e.get("Error").and_then(Value::as_str).map(|reason| {
                    let name = n
                        .metadata()
                        .get(schema::key::NAME)
                        .and_then(Value::as_str)
                        .map_or_else(|| n.id().to_string(), str::to_owned);
                    format!("on {name} (host {}): {reason}", n.host())
                });
                out.push(Seen {
                    key: (id.to_owned(), n.id().clone()),
                    host: n.host().to_owned(),
                    state: state.to_owned(),
                    packets,
                    error,
                });
            }
        }
    }
    out
}

/// The world as this analyzer sees it, and sets each capture's `Count` and `Error`
/// from it (and from `board`'s refused orders). Blocking (query evaluation).
fn look(services: &Services, carriers: &mut Carriers, board: &Board) -> World {
    topotap_topology::blocking::section("fleet dispatch");
    let captures = services.captures.list();
    let injections = services.injections.list();
    let g = services.graph.read();
    let carrying = carriers.nodes(&g);
    let mut w = World::default();
    let (desired, mut query_errors) =
        placer::desired(&captures, &g, &services.extensions, &services.query_budget);
    for (key, (_, target)) in desired {
        if let Some(ix) = g.find_node(&target.node) {
            w.desired_captures.insert(key, g.node(ix).host().to_owned());
        }
    }
    let mut active: HashMap<String, Vec<Identifier>> = HashMap::new();
    let mut failed: HashMap<String, String> = HashMap::new();
    for seen in observed(&g, &carrying, What::Capture.key()) {
        if seen.state == "active" {
            active
                .entry(seen.key.0.clone())
                .or_default()
                .push(seen.key.1.clone());
        } else if let Some(e) = seen.error {
            failed.entry(seen.key.0.clone()).or_insert(e);
        }
        w.observed_captures.insert(seen.key, seen.host);
    }
    for c in &captures {
        let on = active.remove(&c.uuid).unwrap_or_default();
        let failure = if on.is_empty() {
            failed
                .remove(&c.uuid)
                .or_else(|| board.capture_failure(&c.uuid))
        } else {
            None
        };
        c.active
            .set_remote(on, query_errors.remove(&c.uuid), failure);
    }
    // How each injection does where it runs: its `State` and `PacketCount` here.
    let mut progress: HashMap<String, (JobState, u64)> = HashMap::new();
    for seen in observed(&g, &carrying, What::Injection.key()) {
        if let Some(state) = JobState::from_entry(&seen.state, seen.error.as_deref()) {
            progress.insert(seen.key.0.clone(), (state, seen.packets));
        }
        w.observed_injections.insert(seen.key, seen.host);
    }
    for inj in &injections {
        w.stored_injections.insert(inj.uuid.clone());
        match progress.remove(&inj.uuid) {
            Some((state, packets)) => inj.progress.observe(state, packets),
            None => {
                if let Some(reason) = board.injection_failure(&inj.uuid) {
                    let packets = inj.progress.packets.load(Ordering::Relaxed);
                    inj.progress.observe(JobState::Error(reason), packets);
                }
            }
        }
        let node = match inj.progress.source.lock().clone() {
            Some(s) => Some(s.node),
            None => crate::injection::resource::source_node(
                &inj.src,
                &g,
                &services.extensions,
                &services.query_budget,
            ),
        };
        if let Some(ix) = node.as_ref().and_then(|n| g.find_node(n)) {
            let n = g.node(ix);
            w.desired_injections
                .insert(inj.uuid.clone(), (n.id().clone(), n.host().to_owned()));
        }
    }
    w
}

/// Matches and dispatches until `shutdown` turns true; what it sends and what fails
/// is on `board`.
pub async fn run(
    services: Services,
    fleet: Arc<Fleet>,
    board: Arc<Board>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut captures = services.captures.watch();
    let mut injections = services.injections.watch();
    let mut events = services.graph.subscribe();
    let mut debounce = Debounce::new(QUIET, MAX_DELAY);
    let mut tick = tokio::time::interval(ROUND);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let holds = Arc::new(Mutex::new(Holds::default()));
    let mut leading = false;
    let mut carriers = Carriers::default();
    loop {
        let due = Debounce::sleep_until(debounce.deadline());
        tokio::select! {
            _ = shutdown.changed() => return,
            Ok(()) = captures.changed() => debounce.changed(Instant::now()),
            Ok(()) = injections.changed() => debounce.changed(Instant::now()),
            ev = events.recv() => match ev {
                Ok(ev) => {
                    carriers.see(&ev);
                    debounce.changed(Instant::now());
                }
                Err(RecvError::Lagged(_)) => {
                    events = services.graph.subscribe();
                    carriers.lost_track();
                    debounce.changed(Instant::now());
                }
                Err(RecvError::Closed) => return,
            },
            _ = tick.tick() => {}
            _ = due => {
                if !debounce.take_due(Instant::now()) {
                    continue;
                }
            }
        }
        let leads = services.dispatches();
        if leads != leading {
            info!(
                leading = leads,
                "captures and injections dispatch: {}",
                if leads {
                    "this analyzer leads"
                } else {
                    "another analyzer leads"
                }
            );
            holds.lock().clear();
            board.lead(leads);
            leading = leads;
        }
        let (s, b) = (services.clone(), board.clone());
        let mut c = std::mem::take(&mut carriers);
        let Ok((world, c)) = tokio::task::spawn_blocking(move || {
            let world = look(&s, &mut c, &b);
            (world, c)
        })
        .await
        else {
            // `carriers` is stale (the default): the next round visits the graph.
            continue;
        };
        carriers = c;
        if !leads {
            continue;
        }
        let connected: BTreeSet<String> = fleet.reachable_hosts().into_iter().collect();
        let now = Instant::now();
        let (all, away): (Vec<Order>, Vec<Order>) = orders(&world)
            .into_iter()
            .partition(|o| connected.contains(&o.host));
        board.round(&all, away);
        let due = holds.lock().due(all, now);
        for o in due {
            holds.lock().hold(o.clone(), now + RESEND);
            let request = match request_for(&services, &o) {
                Some(r) => r,
                None => continue,
            };
            let (fleet, holds, board) = (fleet.clone(), holds.clone(), board.clone());
            board.sent(&o);
            tokio::spawn(async move {
                let answer = fleet.request(&o.host, request, REPLY_TIMEOUT).await;
                match &answer {
                    Ok(reply) if reply.status == 200 => {
                        info!(host = %o.host, node = %o.node, id = %o.uuid, "{} {}", o.what.namespace(), if o.start { "started" } else { "stopped" });
                    }
                    Ok(reply) => {
                        warn!(host = %o.host, node = %o.node, id = %o.uuid, status = reply.status, "{} {} refused: {}", o.what.namespace(), o.verb(), reply.reason());
                        if let Some(hold) = refused_hold(o.start, reply.status) {
                            holds.lock().hold(o.clone(), Instant::now() + hold);
                        }
                    }
                    Err(e) => warn!(id = %o.uuid, "{} not sent: {e}", o.what.namespace()),
                }
                board.answered(&o, answer);
            });
        }
    }
}

/// How long an order the agent refused with `status` waits before it is sent again,
/// when longer than [`RESEND`]: a `Stop` of what the agent does not run (404), and a
/// `Start` the agent refuses for good (a resource or a node it cannot take, a target
/// its `--allow-target` forbids; not a node it has not shown yet, 404).
fn refused_hold(start: bool, status: u16) -> Option<Duration> {
    let for_good = if start {
        (400..500).contains(&status) && status != 404 && status != 408 && status != 429
    } else {
        status == 404
    };
    for_good.then_some(REFUSED_HOLD)
}

// ---------------------------------------------------------------------------------
// What the dispatcher did, for `/api/status` and the captures' `Error`.

/// Why an order did not take effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The agent's status, when it answered.
    pub status: Option<u16>,
    pub reason: String,
    /// When (ms since the epoch).
    pub at: i64,
}

impl Failure {
    /// `"host H refused node N (status): reason"`, or `"node N: reason"` when the
    /// agent did not answer.
    fn describe(&self, o: &Order) -> String {
        match self.status {
            Some(status) => format!(
                "host {} refused node {} ({status}): {}",
                o.host, o.node, self.reason
            ),
            None => format!("node {}: {}", o.node, self.reason),
        }
    }
}

/// The dispatcher's counters, its orders waiting for a reply, those it cannot send
/// (their agent is not connected to this analyzer), and those that failed, each
/// until it succeeds or is no longer wanted. Shown in `/api/status` as
/// `Fleet.Dispatch`.
#[derive(Default)]
pub struct Board(Mutex<BoardState>);

#[derive(Default)]
struct BoardState {
    leading: bool,
    sent: u64,
    succeeded: u64,
    refused: u64,
    unanswered: u64,
    in_flight: BTreeMap<Order, i64>,
    waiting: BTreeSet<Order>,
    failures: BTreeMap<Order, Failure>,
}

impl Order {
    fn verb(&self) -> &'static str {
        if self.start {
            "Start"
        } else {
            "Stop"
        }
    }

    fn to_json(&self) -> serde_json::Map<String, Value> {
        let v = json!({
            "Namespace": self.what.namespace(),
            "Type": self.verb(),
            "ID": self.uuid,
            "NodeID": self.node.to_string(),
            "Host": self.host,
        });
        match v {
            Value::Object(m) => m,
            _ => unreachable!("a JSON object"),
        }
    }
}

impl Board {
    /// This analyzer leads (or no longer does): what it knew of the last term goes.
    pub fn lead(&self, leading: bool) {
        let mut st = self.0.lock();
        st.leading = leading;
        st.waiting.clear();
        st.failures.clear();
    }

    /// A round of the leader: `wanted` are the orders it may send, `away` those
    /// whose agent is not connected here. A failure whose order is no longer wanted
    /// (it took effect after all, or its capture went) is forgotten.
    pub fn round(&self, wanted: &[Order], away: Vec<Order>) {
        let wanted: BTreeSet<&Order> = wanted.iter().collect();
        let mut st = self.0.lock();
        st.failures.retain(|o, _| wanted.contains(o));
        st.waiting = away.into_iter().collect();
    }

    pub fn sent(&self, o: &Order) {
        let mut st = self.0.lock();
        st.sent += 1;
        st.in_flight.insert(o.clone(), topotap_topology::now_ms());
    }

    /// The agent's answer to `o` (or why there was none).
    pub fn answered(
        &self,
        o: &Order,
        answer: Result<protocol::Reply, super::analyzer::RequestError>,
    ) {
        let mut st = self.0.lock();
        st.in_flight.remove(o);
        let failure = match answer {
            Ok(reply) if reply.status == 200 => {
                st.succeeded += 1;
                st.failures.remove(o);
                return;
            }
            Ok(reply) => {
                st.refused += 1;
                Failure {
                    status: Some(reply.status),
                    reason: reply.reason(),
                    at: topotap_topology::now_ms(),
                }
            }
            Err(e) => {
                st.unanswered += 1;
                Failure {
                    status: None,
                    reason: e.to_string(),
                    at: topotap_topology::now_ms(),
                }
            }
        };
        st.failures.insert(o.clone(), failure);
    }

    /// Why capture `uuid` could not be started, if an agent refused it or could not be
    /// reached: `"host H refused node N: reason"`.
    pub fn capture_failure(&self, uuid: &str) -> Option<String> {
        let st = self.0.lock();
        let mine = |o: &Order| o.start && o.what == What::Capture && o.uuid == uuid;
        if let Some((o, f)) = st.failures.iter().find(|(o, _)| mine(o)) {
            return Some(f.describe(o));
        }
        st.waiting.iter().find(|o| mine(o)).map(|o| {
            format!(
                "node {}: {}",
                o.node,
                super::analyzer::RequestError::NotConnected(o.host.clone())
            )
        })
    }

    /// Why injection `uuid` could not be started, if its agent refused it or could
    /// not be reached.
    pub fn injection_failure(&self, uuid: &str) -> Option<String> {
        let st = self.0.lock();
        let (o, f) = st
            .failures
            .iter()
            .find(|(o, _)| o.start && o.what == What::Injection && o.uuid == uuid)?;
        Some(f.describe(o))
    }

    /// `Fleet.Dispatch` of `/api/status`.
    pub fn status(&self) -> Value {
        let st = self.0.lock();
        let in_flight: Vec<Value> = st
            .in_flight
            .iter()
            .map(|(o, since)| {
                let mut m = o.to_json();
                m.insert("Since".into(), (*since).into());
                Value::Object(m)
            })
            .collect();
        let waiting: Vec<Value> = st
            .waiting
            .iter()
            .map(|o| {
                let mut m = o.to_json();
                m.insert(
                    "Reason".into(),
                    super::analyzer::RequestError::NotConnected(o.host.clone())
                        .to_string()
                        .into(),
                );
                Value::Object(m)
            })
            .collect();
        let failed: Vec<Value> = st
            .failures
            .iter()
            .map(|(o, f)| {
                let mut m = o.to_json();
                if let Some(s) = f.status {
                    m.insert("Status".into(), s.into());
                }
                m.insert("Reason".into(), f.reason.clone().into());
                m.insert("At".into(), f.at.into());
                Value::Object(m)
            })
            .collect();
        json!({
            "Leading": st.leading,
            "Sent": st.sent,
            "Succeeded": st.succeeded,
            "Refused": st.refused,
            "Unanswered": st.unanswered,
            "InFlight": in_flight,
            "Waiting": waiting,
            "Failed": failed,
        })
    }
}

/// The message of an order: the resource as stored (for a `Stop` of something deleted,
/// only its UUID).
fn request_for(services: &Services, o: &Order) -> Option<Request> {
    let resource = match o.what {
        What::Capture => services
            .captures
            .get(&o.uuid)
            .and_then(|c| serde_json::to_value(c).ok()),
        What::Injection => services
            .injections
            .get(&o.uuid)
            .and_then(|i| serde_json::to_value(i).ok()),
    };
    let resource = match (resource, o.start) {
        (Some(r), _) => r,
        (None, true) => return None,
        (None, false) => json!({"UUID": o.uuid}),
    };
    Some(Request::new(
        o.what.namespace(),
        if o.start { "Start" } else { "Stop" },
        json!({"NodeID": o.node.to_string(), "Resource": resource}),
    ))
}

// ---------------------------------------------------------------------------------
// Flow queries.

/// Longest wait for the agents' flow tables (or flow history), all agents asked at
/// once.
pub const FLOW_QUERY_TIMEOUT: Duration = Duration::from_secs(3);

/// Asks every agent this analyzer can reach (its own, and through a peer analyzer
/// those connected to that peer only: [`Fleet::reachable_hosts`]) at once, at most
/// `timeout` in all: the agents' replies with status 200, and one line for each other
/// (no answer in time, refused, its peer analyzer did not relay).
async fn ask_agents(
    fleet: &Arc<Fleet>,
    time: Option<protocol::FlowTime>,
    timeout: Duration,
) -> (Vec<(String, protocol::Reply)>, Vec<String>) {
    let hosts = fleet.reachable_hosts();
    let max_bytes = answer_bytes(fleet);
    let asks = hosts.into_iter().map(|h| {
        let fleet = fleet.clone();
        async move {
            let query = protocol::table_query(time, max_bytes);
            let answer = fleet.request(&h, query, timeout).await;
            (h, answer)
        }
    });
    let mut replies = Vec::new();
    let mut errors = Vec::new();
    for (host, answer) in futures_util::future::join_all(asks).await {
        match answer {
            Ok(r) if r.status == 200 => replies.push((host, r)),
            Ok(r) => errors.push(format!("agent {host}: {}", r.reason())),
            Err(e @ super::analyzer::RequestError::Relayed { .. }) => {
                errors.push(format!("agent {host} {e}"));
            }
            Err(e) => errors.push(e.to_string()),
        }
    }
    (replies, errors)
}

/// Most bytes of flows an agent's answer may carry (`MaxBytes`): this analyzer's
/// message limit, less room for the envelope (and a relaying analyzer's).
pub(super) fn answer_bytes(fleet: &Fleet) -> usize {
    let limit = fleet.max_message_bytes;
    limit - limit / 8
}

fn cut_note(fleet: &Fleet, host: &str, reply: &protocol::Reply) -> Option<String> {
    (reply.obj.get("Truncated") == Some(&Value::Bool(true))).then(|| {
        format!(
            "agent {host}: more flows than one answer holds (at most {} flows, {} bytes), the rest left out",
            super::ondemand::MAX_TABLE_FLOWS,
            answer_bytes(fleet)
        )
    })
}

/// Asks every agent for its flow tables (`Flow` `TableQuery`) and merges the answers;
/// an agent that does not answer within `timeout`, refuses, or cut its answer is one
/// line of the second list.
pub async fn fetch_flows(
    fleet: Arc<Fleet>,
    timeout: Duration,
) -> (crate::capture::flows::Fetched, Vec<String>) {
    let (replies, mut errors) = ask_agents(&fleet, None, timeout).await;
    let mut flows = Vec::new();
    for (host, reply) in replies {
        errors.extend(cut_note(&fleet, &host, &reply));
        let tables = reply
            .obj
            .get("Tables")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for t in tables {
            let Some(node) = t.get("NodeID").and_then(Value::as_str) else {
                continue;
            };
            let node = Identifier::from(node);
            if let Some(Value::Array(list)) = t.get("Flows") {
                flows.extend(list.iter().map(|f| (node.clone(), Arc::new(f.clone()))));
            }
        }
    }
    (flows, errors)
}

/// Asks every agent for the flows of `time` from its history (a `TableQuery` with
/// `From` and `At`) and merges the answers. An agent without history (it refuses), one
/// that answers with its live tables (it ignores the time: a Skydive agent), one whose
/// history does not reach back to `From`, and those [`fetch_flows`] reports are one
/// line each of the second list.
pub async fn fetch_past_flows(
    fleet: Arc<Fleet>,
    time: protocol::FlowTime,
    timeout: Duration,
) -> (Vec<crate::history::flows::PastFlow>, Vec<String>) {
    let (replies, mut errors) = ask_agents(&fleet, Some(time), timeout).await;
    let mut flows = Vec::new();
    for (host, reply) in replies {
        if reply.obj.get("Past") != Some(&Value::Bool(true)) {
            errors.push(format!(
                "agent {host}: answered with its live flows only (no flow history): left out"
            ));
            continue;
        }
        errors.extend(cut_note(&fleet, &host, &reply));
        if reply.obj.get("Complete") == Some(&Value::Bool(false)) {
            errors.push(format!(
                "agent {host}: its flow history does not reach back to {}",
                time.from
            ));
        }
        let list = match reply.obj.get("Flows") {
            Some(Value::Array(list)) => list.as_slice(),
            _ => &[],
        };
        for f in list {
            let (Some(node), Some(doc)) = (f.get("NodeID").and_then(Value::as_str), f.get("Flow"))
            else {
                continue;
            };
            let samples = match f.get("Samples") {
                Some(Value::Array(s)) => s.iter().filter_map(|s| s.as_object().cloned()).collect(),
                _ => Vec::new(),
            };
            flows.push(crate::history::flows::PastFlow {
                node: Identifier::from(node),
                doc: doc.clone(),
                samples,
                // An agent's raw frames stay on the agent.
                raw: Vec::new(),
            });
        }
    }
    (flows, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(u: &str, n: &str) -> (String, Identifier) {
        (u.to_owned(), Identifier::from(n))
    }

    #[test]
    fn carriers_follow_the_nodes_with_captures_or_injections() {
        let node = |id: &str, md: Value| {
            let md = md.as_object().cloned().unwrap_or_default();
            topotap_topology::Node::new(Identifier::from(id), md, "h", "o")
        };
        let mut g = Graph::new();
        g.add_node(node("a", json!({"Captures": [{"ID": "c1"}]})))
            .unwrap();
        g.add_node(node("b", json!({"Name": "eth0"}))).unwrap();
        let names = |c: &mut Carriers, g: &Graph| {
            let mut v: Vec<String> = c
                .nodes(g)
                .into_iter()
                .map(|ix| g.node(ix).id().to_string())
                .collect();
            v.sort();
            v
        };
        // At first (and after missed events) the whole graph is visited.
        let mut c = Carriers::default();
        assert_eq!(names(&mut c, &g), ["a"]);
        // Then events decide: the last one about a node wins.
        let b = node("b", json!({"PacketInjections": [{"ID": "i1"}]}));
        c.see(&GraphEvent::NodeUpdated(b.clone()));
        g.update_node(&"b".into(), |m| *m = b.metadata.clone())
            .unwrap();
        let a = node("a", json!({"Name": "a"}));
        c.see(&GraphEvent::NodeUpdated(a.clone()));
        g.update_node(&"a".into(), |m| *m = a.metadata.clone())
            .unwrap();
        assert_eq!(names(&mut c, &g), ["b"]);
        c.see(&GraphEvent::NodeDeleted(b));
        g.delete_node(&"b".into()).unwrap();
        assert!(names(&mut c, &g).is_empty());
        // Missed events: the graph is read again.
        g.add_node(node("c", json!({"Captures": []}))).unwrap();
        assert!(names(&mut c, &g).is_empty());
        c.lost_track();
        assert_eq!(names(&mut c, &g), ["c"]);
    }

    #[test]
    fn captures_start_where_they_match_and_stop_where_they_no_longer_do() {
        let mut w = World::default();
        w.desired_captures.insert(key("c1", "n1"), "h1".into());
        w.desired_captures.insert(key("c1", "n2"), "h2".into());
        w.observed_captures.insert(key("c1", "n2"), "h2".into());
        // Deleted capture still running after its agent reconnected.
        w.observed_captures.insert(key("old", "n3"), "h3".into());
        let o = orders(&w);
        assert_eq!(
            o,
            vec![
                order(true, What::Capture, "c1", &"n1".into(), "h1"),
                order(false, What::Capture, "old", &"n3".into(), "h3"),
            ]
        );
        // Once the graph shows it running, nothing more is sent: a new leader looking
        // at the same graph sends nothing either.
        w.observed_captures.insert(key("c1", "n1"), "h1".into());
        w.observed_captures.remove(&key("old", "n3"));
        assert!(orders(&w).is_empty());
    }

    #[test]
    fn injections_start_once_and_stop_when_deleted() {
        let mut w = World::default();
        w.stored_injections.insert("i1".into());
        w.desired_injections
            .insert("i1".into(), ("n1".into(), "h1".into()));
        assert_eq!(
            orders(&w),
            vec![order(true, What::Injection, "i1", &"n1".into(), "h1")]
        );
        // Running (or done) somewhere: not again, even if the source query now
        // matches another node.
        w.observed_injections.insert(key("i1", "n9"), "h9".into());
        assert!(orders(&w).is_empty());
        w.stored_injections.clear();
        w.desired_injections.clear();
        assert_eq!(
            orders(&w),
            vec![order(false, What::Injection, "i1", &"n9".into(), "h9")]
        );
    }

    fn reply(status: u16, error: &str) -> protocol::Reply {
        Request::new(protocol::NS_CAPTURE, "Start", json!({}))
            .reply(status, json!({"Error": error}))
    }

    #[test]
    fn the_board_keeps_a_failure_until_it_succeeds_or_is_no_longer_wanted() {
        let b = Board::default();
        b.lead(true);
        let o = order(true, What::Capture, "c1", &"n1".into(), "h1");
        b.sent(&o);
        assert_eq!(b.status()["InFlight"][0]["ID"], "c1");
        b.answered(&o, Ok(reply(400, "Type: not here")));
        assert_eq!(
            b.capture_failure("c1").as_deref(),
            Some("host h1 refused node n1 (400): Type: not here")
        );
        let st = b.status();
        assert_eq!(st["InFlight"], json!([]));
        assert_eq!(st["Failed"][0]["Status"], 400);
        assert_eq!(
            (st["Sent"].clone(), st["Refused"].clone()),
            (json!(1), json!(1))
        );
        // Still wanted: kept; sent again and done: gone.
        b.round(std::slice::from_ref(&o), vec![]);
        assert!(b.capture_failure("c1").is_some());
        b.sent(&o);
        b.answered(&o, Ok(reply(200, "")));
        assert!(b.capture_failure("c1").is_none());
        // Unanswered, then no longer wanted: gone.
        let timeout = super::super::analyzer::RequestError::Timeout {
            host: "h1".into(),
            ms: 5,
        };
        b.answered(&o, Err(timeout));
        assert_eq!(
            b.capture_failure("c1").as_deref(),
            Some("node n1: agent h1 did not answer within 5 ms")
        );
        b.round(&[], vec![o.clone()]);
        assert_eq!(
            b.capture_failure("c1").as_deref(),
            Some("node n1: agent h1 is not connected to this analyzer")
        );
        assert_eq!(b.status()["Waiting"][0]["Host"], "h1");
        // A new term starts clean.
        b.lead(false);
        assert!(b.capture_failure("c1").is_none());
        assert_eq!(b.status()["Leading"], false);
    }

    #[test]
    fn only_refusals_for_good_are_held_longer() {
        assert_eq!(refused_hold(true, 400), Some(REFUSED_HOLD));
        assert_eq!(refused_hold(true, 403), Some(REFUSED_HOLD));
        assert_eq!(refused_hold(true, 404), None);
        assert_eq!(refused_hold(true, 503), None);
        assert_eq!(refused_hold(false, 404), Some(REFUSED_HOLD));
        assert_eq!(refused_hold(false, 400), None);
    }

    #[test]
    fn holds_keep_orders_from_being_resent_until_they_run_out() {
        let t0 = Instant::now();
        let o = order(true, What::Capture, "c1", &"n1".into(), "h1");
        let mut h = Holds::default();
        assert_eq!(h.due(vec![o.clone()], t0), vec![o.clone()]);
        h.hold(o.clone(), t0 + RESEND);
        assert!(h.due(vec![o.clone()], t0 + RESEND / 2).is_empty());
        assert_eq!(h.due(vec![o.clone()], t0 + RESEND), vec![o.clone()]);
        h.hold(o.clone(), t0 + RESEND);
        h.clear();
        assert_eq!(h.due(vec![o.clone()], t0), vec![o]);
    }
}
