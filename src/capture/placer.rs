//! Placement that follows the topology: every capture's Gremlin query is evaluated
//! against the live graph whenever the graph or the set of captures changes, and a
//! capture thread runs on exactly the capturable interfaces it matches. An interface
//! that comes to match (a namespace created later) gets one; an interface that stops
//! matching or disappears has its capture stopped and its `Captures` entry removed.
//!
//! The decisions are pure and clock-free, and tested on a virtual clock:
//! - [`Debounce`]: when to place again after changes (quiet for [`DEBOUNCE`], but never
//!   later than [`MAX_DELAY`] after the first unhandled change, so churn cannot starve
//!   placement);
//! - [`Reconciler`]: desired (captures x matched interfaces) vs placed -> start/stop
//!   actions, and which graph events matter (not the placer's own `Captures` writes);
//! - [`Publisher`]: which nodes' `Metadata.Captures` to write: only when a state or an
//!   error changed, counters at most once per [`COUNTERS_INTERVAL`].
//!
//! [`run`] is the async shell: it feeds events and the clock to them and executes the
//! actions, with everything that may block (query evaluation, name resolution, socket
//! opens, thread joins) on blocking threads.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::broadcast::error::RecvError;
use topotap_topology::gremlin::{Budget, ErrorKind, Extensions, Output};
use topotap_topology::{schema, Graph, GraphEvent, Identifier, NodeIx, SharedGraph};
use tracing::{debug, warn};

use super::engine::{
    effective_filter, CaptureSpec, Input, Opened, PacketSink, Worker, WorkerState,
};
use super::flows::FlowRegistry;
use super::Capture;
use crate::error::Error;
use crate::resources::Definitions;

/// How long the graph must stay quiet before placement runs again.
pub const DEBOUNCE: Duration = Duration::from_millis(100);
/// Longest wait between a change and the placement that follows it, however busy the
/// graph is.
pub const MAX_DELAY: Duration = Duration::from_millis(500);
/// How often capture states are looked at (a change is published at once).
pub const STATE_INTERVAL: Duration = Duration::from_millis(250);
/// Counters (packets, flows, exports) are published at most this often.
pub const COUNTERS_INTERVAL: Duration = Duration::from_secs(1);

/// The metadata key the placer owns on captured nodes.
pub const CAPTURES_KEY: &str = schema::key::CAPTURES;

/// Builds what a capture's packets are fed to, given the capture and the node it runs
/// on. May block (name resolution, socket opens): called on a blocking thread.
pub type SinkFactory =
    Arc<dyn Fn(&Capture, &Target) -> Result<Box<dyn PacketSink>, Error> + Send + Sync>;

/// Where a capture runs: the interface node and what is needed to open it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub node: Identifier,
    pub tid: String,
    pub ifname: String,
    pub if_index: i64,
    pub netns: Option<PathBuf>,
    /// What the capture reads there.
    pub via: Via,
}

impl Target {
    /// Whether both name the same interface, read the same way: all but the `TID`,
    /// which only tags flows.
    fn same_interface(&self, other: &Target) -> bool {
        self.node == other.node
            && self.ifname == other.ifname
            && self.if_index == other.if_index
            && self.netns == other.netns
            && self.via == other.via
    }
}

/// What a capture reads on its node, by its `Type` and the node's.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Via {
    /// libpcap on the interface (`pcap`, `afpacket`, the default on interfaces).
    #[default]
    Interface,
    /// An sFlow collector socket (`sflow`).
    Sflow,
    /// A TCP socket taking pcap streams (`pcapsocket`).
    PcapSocket,
    /// The bridge's own sFlow (`ovssflow`, the default on OVS bridges): `ifname` is the
    /// bridge, `netns` where vswitchd's devices live (where the collector listens).
    OvsSflow,
    /// An OVS mirror of a port (`ovsmirror`): `ifname` is the mirror's output port,
    /// made in `netns`, where vswitchd's devices live.
    OvsMirror { bridge: String, port: String },
}

impl Via {
    /// The capture type that serves `capture` this way.
    pub fn engine(&self, capture: &Capture) -> &'static str {
        match self {
            Via::Interface if capture.engine() == "afpacket" => "afpacket",
            Via::Interface => "pcap",
            Via::Sflow => "sflow",
            Via::PcapSocket => "pcapsocket",
            Via::OvsSflow => "ovssflow",
            Via::OvsMirror { .. } => "ovsmirror",
        }
    }
}

/// Builds the input of a capture that is not libpcap on its interface (sockets, OVS
/// configurations). May block: called on a blocking thread.
pub type InputFactory = Arc<dyn Fn(&Capture, &Target) -> Result<Opened, Error> + Send + Sync>;

/// A capture on one node.
pub type Key = (String, Identifier);

/// Where every capture should run now.
pub type Desired = BTreeMap<Key, (Capture, Target)>;

/// The interfaces a capture is active on, and why its query failed if it did, kept by
/// the placer and read by the API (`Count`, `Error`). Shared by every copy of a
/// capture resource.
#[derive(Debug, Default)]
pub struct ActiveOn {
    nodes: parking_lot::Mutex<Vec<Identifier>>,
    error: parking_lot::Mutex<Option<String>>,
    /// Why it could not start where it matched, if it could start nowhere.
    failure: parking_lot::Mutex<Option<String>>,
}

impl ActiveOn {
    /// How many of them are still in `g` (an interface that left the graph is no
    /// longer captured, even before the placer has stopped its thread).
    pub fn count(&self, g: &Graph) -> u64 {
        self.nodes
            .lock()
            .iter()
            .filter(|n| g.find_node(n).is_some())
            .count() as u64
    }

    fn set(&self, nodes: Vec<Identifier>) {
        *self.nodes.lock() = nodes;
    }

    /// What an analyzer sees of the capture: where it is active (its agents'
    /// `Captures` entries), why its query selects nothing, and why it runs nowhere (an
    /// agent's `error` entry, or a refused dispatch).
    pub fn set_remote(
        &self,
        nodes: Vec<Identifier>,
        query_error: Option<String>,
        failure: Option<String>,
    ) {
        self.set(nodes);
        self.set_error(query_error);
        self.set_failure(failure);
    }

    /// Why the capture's query could not be evaluated at the last placement, or else
    /// why it could start on none of the nodes it matched (an `ovssflow` capture that
    /// OVSDB refused).
    pub fn error(&self) -> Option<String> {
        self.query_error().or_else(|| self.failure.lock().clone())
    }

    fn query_error(&self) -> Option<String> {
        self.error.lock().clone()
    }

    fn set_failure(&self, failure: Option<String>) {
        *self.failure.lock() = failure;
    }

    fn set_error(&self, error: Option<String>) {
        *self.error.lock() = error;
    }
}

// ---------------------------------------------------------------------------------
// Pure decisions.

/// When to place again: [`DEBOUNCE`] after the last change, but at most [`MAX_DELAY`]
/// after the first change not yet handled.
#[derive(Debug, Clone)]
pub struct Debounce {
    quiet: Duration,
    max_delay: Duration,
    first: Option<Instant>,
    last: Option<Instant>,
}

impl Debounce {
    pub fn new(quiet: Duration, max_delay: Duration) -> Self {
        Debounce {
            quiet,
            max_delay,
            first: None,
            last: None,
        }
    }

    /// Something changed at `now`.
    pub fn changed(&mut self, now: Instant) {
        self.first.get_or_insert(now);
        self.last = Some(now);
    }

    /// When placement is due, if anything changed.
    pub fn deadline(&self) -> Option<Instant> {
        let first = self.first?;
        let last = self.last.unwrap_or(first);
        Some((last + self.quiet).min(first + self.max_delay))
    }

    /// Sleeps until `deadline` (a [`Debounce::deadline`] taken before a `select!` whose
    /// other arms call [`Debounce::changed`]); never wakes when there is none.
    pub async fn sleep_until(deadline: Option<Instant>) {
        match deadline {
            Some(d) => tokio::time::sleep_until(d.into()).await,
            None => std::future::pending().await,
        }
    }

    /// Whether placement is due at `now`; if so, the changes count as handled.
    pub fn take_due(&mut self, now: Instant) -> bool {
        match self.deadline() {
            Some(d) if now >= d => {
                self.first = None;
                self.last = None;
                true
            }
            _ => false,
        }
    }
}

impl Default for Debounce {
    fn default() -> Self {
        Debounce::new(DEBOUNCE, MAX_DELAY)
    }
}

/// What to do to a capture point.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Stop the capture running there.
    Stop(Key),
    /// Open the sink and start capturing (again, after a failure).
    Start(Key, Box<(Capture, Target)>),
    /// Only the node's `TID` changed: tell the running capture, do not restart it.
    Retag(Key, String),
}

#[derive(Debug, Clone)]
struct Placed {
    capture: Capture,
    target: Target,
    /// Why it could not start, if it could not.
    failed: Option<String>,
}

/// Desired vs placed captures, and the placer's own writes to tell its events apart.
#[derive(Debug, Default)]
pub struct Reconciler {
    placed: BTreeMap<Key, Placed>,
    /// Revision each node got from the placer's last `Captures` write.
    own_writes: HashMap<Identifier, i64>,
}

impl Reconciler {
    /// The actions that take what is placed to `desired`: stops for what no longer
    /// matches or whose capture or interface changed, starts for what is new or failed
    /// before (a name may come to resolve), retags where only the node's `TID` changed
    /// (its namespace was named, its bridge adopted it: same interface, same packets).
    pub fn plan(&mut self, desired: &Desired) -> Vec<Action> {
        let mut actions = Vec::new();
        self.placed.retain(|key, p| {
            let keep = match desired.get(key) {
                Some((c, t)) if *c == p.capture && t.same_interface(&p.target) => {
                    if t.tid != p.target.tid {
                        p.target.tid = t.tid.clone();
                        if p.failed.is_none() {
                            actions.push(Action::Retag(key.clone(), t.tid.clone()));
                        }
                    }
                    true
                }
                _ => false,
            };
            if !keep && p.failed.is_none() {
                actions.push(Action::Stop(key.clone()));
            }
            keep
        });
        for (key, (capture, target)) in desired {
            let start = match self.placed.get(key) {
                None => true,
                Some(p) => p.failed.is_some(),
            };
            if start {
                actions.push(Action::Start(
                    key.clone(),
                    Box::new((capture.clone(), target.clone())),
                ));
            }
        }
        actions
    }

    /// A start went through.
    pub fn started(&mut self, key: Key, capture: Capture, target: Target) {
        self.placed.insert(
            key,
            Placed {
                capture,
                target,
                failed: None,
            },
        );
    }

    /// A start failed; returns whether the reason is new (worth logging).
    pub fn failed(&mut self, key: Key, capture: Capture, target: Target, reason: String) -> bool {
        let new = self.placed.get(&key).and_then(|p| p.failed.as_ref()) != Some(&reason);
        self.placed.insert(
            key,
            Placed {
                capture,
                target,
                failed: Some(reason),
            },
        );
        new
    }

    /// Captures that could not start, with the reason.
    pub fn failures(&self) -> impl Iterator<Item = (&Key, &Capture, &str)> {
        self.placed
            .iter()
            .filter_map(|(k, p)| p.failed.as_deref().map(|r| (k, &p.capture, r)))
    }

    /// The placer wrote `Captures` on `node`, which is now at `revision`.
    pub fn wrote(&mut self, node: Identifier, revision: i64) {
        self.own_writes.insert(node, revision);
    }

    /// Whether a graph event may change placement: everything but the placer's own
    /// `Captures` writes.
    pub fn relevant(&mut self, event: &GraphEvent) -> bool {
        match event {
            GraphEvent::NodeUpdated(n) if self.own_writes.get(&n.id) == Some(&n.revision) => {
                self.own_writes.remove(&n.id);
                false
            }
            GraphEvent::NodeDeleted(n) => {
                self.own_writes.remove(&n.id);
                true
            }
            _ => true,
        }
    }
}

/// One capture's entry in a node's `Metadata.Captures`.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub id: String,
    /// `starting`, `active`, `stopped` or `error`.
    pub state: &'static str,
    pub error: Option<String>,
    /// The whole entry, counters included.
    pub json: Value,
}

#[derive(Debug)]
struct Written {
    entries: Vec<Entry>,
    /// When counters alone were last written (state changes do not count).
    counters_at: Option<Instant>,
}

/// Decides which nodes' `Captures` to write: a node whose entries changed state or
/// error at once, one whose counters alone changed at most once per `counters_interval`.
#[derive(Debug)]
pub struct Publisher {
    counters_interval: Duration,
    written: BTreeMap<Identifier, Written>,
}

/// A write to do: the node and its new `Captures` list (`None`: remove the key).
pub type Write = (Identifier, Option<Vec<Value>>);

impl Publisher {
    pub fn new(counters_interval: Duration) -> Self {
        Publisher {
            counters_interval,
            written: BTreeMap::new(),
        }
    }

    /// The writes that bring the graph to `now_entries` (every node with a capture,
    /// entries in any order).
    pub fn changes(
        &mut self,
        mut now_entries: BTreeMap<Identifier, Vec<Entry>>,
        now: Instant,
    ) -> Vec<Write> {
        let mut writes = Vec::new();
        let gone: Vec<Identifier> = self
            .written
            .keys()
            .filter(|n| !now_entries.contains_key(*n))
            .cloned()
            .collect();
        for node in gone {
            self.written.remove(&node);
            writes.push((node, None));
        }
        let visible = |e: &[Entry]| {
            e.iter()
                .map(|e| (e.id.clone(), e.state, e.error.clone()))
                .collect::<Vec<_>>()
        };
        for (node, entries) in &mut now_entries {
            entries.sort_by(|a, b| a.id.cmp(&b.id));
            let write = match self.written.get(node) {
                None => true,
                Some(w) => {
                    if visible(&w.entries) != visible(entries) {
                        true
                    } else {
                        w.entries != *entries
                            && w.counters_at
                                .is_none_or(|t| now >= t + self.counters_interval)
                    }
                }
            };
            if write {
                writes.push((
                    node.clone(),
                    Some(entries.iter().map(|e| e.json.clone()).collect()),
                ));
                let counters_at = match self.written.get(node) {
                    Some(w) if visible(&w.entries) == visible(entries) => Some(now),
                    Some(w) => w.counters_at,
                    None => None,
                };
                self.written.insert(
                    node.clone(),
                    Written {
                        entries: std::mem::take(entries),
                        counters_at,
                    },
                );
            }
        }
        writes
    }
}

impl Default for Publisher {
    fn default() -> Self {
        Publisher::new(COUNTERS_INTERVAL)
    }
}

/// Captures an analyzer dispatched to this agent, each on the nodes it named (fleet
/// mode's on-demand `Start`/`Stop`). Idempotent per (capture UUID, node): a second
/// `Start` of the same pair, from any analyzer, changes nothing, so two dispatchers
/// cannot run a capture twice on one interface.
pub struct Assigned {
    captures: parking_lot::Mutex<BTreeMap<String, (Capture, BTreeSet<Identifier>)>>,
    changed: tokio::sync::watch::Sender<u64>,
}

impl Default for Assigned {
    fn default() -> Self {
        Assigned {
            captures: Default::default(),
            changed: tokio::sync::watch::Sender::new(0),
        }
    }
}

impl Assigned {
    /// Runs `capture` on `node` too; false when it already did (the capture first
    /// received for a UUID is kept).
    pub fn start(&self, capture: Capture, node: Identifier) -> bool {
        let mut st = self.captures.lock();
        let entry = st
            .entry(capture.uuid.clone())
            .or_insert_with(|| (capture, BTreeSet::new()));
        let new = entry.1.insert(node);
        drop(st);
        if new {
            self.changed.send_modify(|n| *n += 1);
        }
        new
    }

    /// Stops capture `uuid` on `node`; false when it was not running there.
    pub fn stop(&self, uuid: &str, node: &Identifier) -> bool {
        let mut st = self.captures.lock();
        let Some((_, nodes)) = st.get_mut(uuid) else {
            return false;
        };
        let was = nodes.remove(node);
        if nodes.is_empty() {
            st.remove(uuid);
        }
        drop(st);
        if was {
            self.changed.send_modify(|n| *n += 1);
        }
        was
    }

    /// Every dispatched capture and its nodes.
    pub fn list(&self) -> Vec<(Capture, Vec<Identifier>)> {
        self.captures
            .lock()
            .values()
            .map(|(c, n)| (c.clone(), n.iter().cloned().collect()))
            .collect()
    }

    pub fn watch(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changed.subscribe()
    }
}

/// Where the dispatched captures run: each on the nodes it was given that are in `g`
/// and are capturable interfaces.
pub fn assigned_desired(assigned: &[(Capture, Vec<Identifier>)], g: &Graph) -> Desired {
    let mut desired = Desired::new();
    for (c, nodes) in assigned {
        for id in nodes {
            if let Some(t) = g.find_node(id).and_then(|ix| capture_target(g, ix, c)) {
                desired.insert((c.uuid.clone(), t.node.clone()), (c.clone(), t));
            }
        }
    }
    desired
}

/// Whether `capture` can run on node `id` of `g` (an interface, or the OVS bridge or
/// port its type takes).
pub fn capturable(g: &Graph, id: &Identifier, capture: &Capture) -> bool {
    g.find_node(id)
        .and_then(|ix| capture_target(g, ix, capture))
        .is_some()
}

/// Why a capture's query selects nothing to run on, by capture UUID.
pub type QueryErrors = BTreeMap<String, String>;

/// Where every capture should run: its stored query evaluated on `g` within `budget`,
/// each matched interface. A capture whose query does not compile with `ext` or runs
/// out of its budget (elements, bytes, time) runs nowhere and is in the errors; one
/// whose query does not apply to this graph (`G.V('id')` of a node not there yet)
/// just matches nothing.
pub fn desired(
    captures: &[Capture],
    g: &Graph,
    ext: &Extensions,
    budget: &Budget,
) -> (Desired, QueryErrors) {
    let mut desired = Desired::new();
    let mut errors = QueryErrors::new();
    for c in captures {
        let query = match c.query.get(&c.gremlin_query, ext) {
            Ok(q) => q,
            Err(e) => {
                errors.insert(c.uuid.clone(), format!("GremlinQuery: {e}"));
                continue;
            }
        };
        let nodes = match query.evaluate(g, budget) {
            Ok(out) => matched_nodes(out),
            Err(e) if e.kind == ErrorKind::Invalid => {
                debug!(capture = %c.uuid, "query failed: {e}");
                continue;
            }
            Err(e) => {
                errors.insert(c.uuid.clone(), format!("GremlinQuery: {e}"));
                continue;
            }
        };
        for n in nodes {
            if let Some(t) = capture_target(g, n, c) {
                desired.insert((c.uuid.clone(), t.node.clone()), (c.clone(), t));
            }
        }
    }
    (desired, errors)
}

/// Why `capture` would capture nothing on `g` as it is, one line each (none when its
/// query selects at least one capturable interface): it matches nothing, or only
/// nodes that are not interfaces (a host, a namespace, an OVS bridge).
pub fn warnings(capture: &Capture, g: &Graph, ext: &Extensions, budget: &Budget) -> Vec<String> {
    let query = match capture.query.get(&capture.gremlin_query, ext) {
        Ok(q) => q,
        Err(e) => return vec![format!("GremlinQuery: {e}")],
    };
    let nodes = match query.evaluate(g, budget) {
        Ok(out) => matched_nodes(out),
        Err(e) if e.kind == ErrorKind::Invalid => {
            return vec![format!(
                "GremlinQuery does not apply to the topology now ({e}): nothing is captured until it matches an interface"
            )]
        }
        Err(e) => return vec![format!("GremlinQuery: {e}: nothing is captured")],
    };
    if nodes.is_empty() {
        return vec![
            "GremlinQuery matches no node now: nothing is captured until it matches an interface"
                .to_owned(),
        ];
    }
    if nodes
        .iter()
        .any(|&n| capture_target(g, n, capture).is_some())
    {
        return Vec::new();
    }
    const SHOWN: usize = 3;
    let mut named: Vec<String> = nodes
        .iter()
        .take(SHOWN)
        .map(|&n| {
            let md = g.node(n).metadata();
            let ty = schema::type_of(md).unwrap_or("untyped");
            match schema::str_of(md, schema::key::NAME) {
                Some(name) => format!("{ty} {name}"),
                None => format!("{ty} {}", g.node(n).id()),
            }
        })
        .collect();
    if nodes.len() > SHOWN {
        named.push(format!("{} more", nodes.len() - SHOWN));
    }
    vec![format!(
        "GremlinQuery matches {} node{} but no capturable interface ({}): nothing is captured; \
         select interfaces, e.g. append .Out() to capture on the interfaces a namespace holds",
        nodes.len(),
        if nodes.len() == 1 { "" } else { "s" },
        named.join(", "),
    )]
}

// ---------------------------------------------------------------------------------
// The async shell.

/// What the placer works with.
#[derive(Clone)]
pub struct Inputs {
    pub graph: SharedGraph,
    pub captures: Definitions<Capture>,
    pub extensions: Arc<Extensions>,
    /// Limits of each evaluation of a capture's query (the server's query budget).
    pub budget: Budget,
    pub flows: Arc<FlowRegistry>,
    pub sinks: SinkFactory,
    /// Opens the inputs that are not an interface (sockets, OVS configurations).
    pub inputs: InputFactory,
    /// Running capture points as `/metrics` shows them.
    pub board: Arc<crate::metrics::CaptureBoard>,
    /// Captures dispatched by analyzers (an agent's); placed besides the stored ones.
    pub assigned: Arc<Assigned>,
}

struct Running {
    worker: Worker,
    capture: Capture,
    ifname: String,
    /// The capture type that serves it there.
    engine: &'static str,
}

struct Shell {
    inputs: Inputs,
    reconciler: Reconciler,
    publisher: Publisher,
    running: HashMap<Key, Running>,
    /// Captures as of the last placement, whose `Count` the placer keeps.
    captures: Vec<Capture>,
}

/// Runs placement until `shutdown` turns true; then stops every capture, letting each
/// sink export what it still holds.
pub async fn run(inputs: Inputs, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let mut store = inputs.captures.watch();
    let mut assigned = inputs.assigned.watch();
    let mut events = inputs.graph.subscribe();
    let mut shell = Shell {
        inputs,
        reconciler: Reconciler::default(),
        publisher: Publisher::default(),
        running: HashMap::new(),
        captures: Vec::new(),
    };
    let mut debounce = Debounce::default();
    debounce.changed(Instant::now());
    let mut states = tokio::time::interval(STATE_INTERVAL);
    states.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let due = Debounce::sleep_until(debounce.deadline());
        tokio::select! {
            _ = shutdown.changed() => break,
            changed = store.changed() => {
                if changed.is_err() {
                    break;
                }
                debounce.changed(Instant::now());
            }
            Ok(()) = assigned.changed() => debounce.changed(Instant::now()),
            ev = events.recv() => match ev {
                Ok(ev) => {
                    if shell.reconciler.relevant(&ev) {
                        debounce.changed(Instant::now());
                    }
                }
                Err(RecvError::Lagged(_)) => {
                    events = shell.inputs.graph.subscribe();
                    debounce.changed(Instant::now());
                }
                Err(RecvError::Closed) => break,
            },
            _ = states.tick() => {
                // The publisher writes a node at once when a state changed, and
                // counters alone at most once per COUNTERS_INTERVAL.
                shell.publish(Instant::now());
            }
            _ = due => {
                if debounce.take_due(Instant::now()) {
                    shell.place().await;
                    shell.sync_board();
                    shell.publish(Instant::now());
                }
            }
        }
    }
    shell.stop_all().await;
}

impl Shell {
    /// Evaluates every capture's query and starts/stops workers to match.
    async fn place(&mut self) {
        let inputs = self.inputs.clone();
        // Queries and the names of export targets: off the async workers.
        let computed = tokio::task::spawn_blocking(move || {
            let captures = inputs.captures.list();
            let assigned = inputs.assigned.list();
            let (desired, errors) = {
                let g = inputs.graph.read();
                let (mut d, errors) = desired(&captures, &g, &inputs.extensions, &inputs.budget);
                d.extend(assigned_desired(&assigned, &g));
                (d, errors)
            };
            let mut captures = captures;
            captures.extend(assigned.into_iter().map(|(c, _)| c));
            let exports = super::export::export_flows(&captures);
            (captures, desired, errors, exports)
        })
        .await;
        let Ok((captures, desired, errors, exports)) = computed else {
            return;
        };
        for c in &captures {
            let error = errors.get(&c.uuid).cloned();
            if error.is_some() && error != c.active.query_error() {
                warn!(capture = %c.uuid, "runs nowhere: {}", error.as_deref().unwrap_or(""));
            }
            c.active.set_error(error);
        }
        self.captures = captures;
        let actions = self.reconciler.plan(&desired);
        if actions.is_empty() {
            return;
        }
        let mut stopping = Vec::new();
        let mut starting = Vec::new();
        for a in actions {
            match a {
                Action::Stop(key) => {
                    if let Some(r) = self.running.remove(&key) {
                        debug!(capture = %key.0, node = %key.1, ifname = %r.ifname, "stopping capture point");
                        stopping.push(r.worker);
                    }
                }
                Action::Start(key, what) => {
                    let (capture, target) = *what;
                    starting.push((key, capture, target));
                }
                Action::Retag(key, tid) => {
                    if let Some(r) = self.running.get(&key) {
                        debug!(capture = %key.0, node = %key.1, %tid, "capture point retagged");
                        r.worker.retag(&tid);
                    }
                }
            }
        }
        let sinks = self.inputs.sinks.clone();
        let open = self.inputs.inputs.clone();
        // Joining waits for the final export of each sink; opening a sink may resolve
        // a name: both on a blocking thread.
        let started = tokio::task::spawn_blocking(move || {
            for w in stopping {
                w.stop();
            }
            starting
                .into_iter()
                .map(|(key, capture, target)| {
                    let spec = CaptureSpec {
                        ifname: target.ifname.clone(),
                        netns: target.netns.clone(),
                        bpf: effective_filter(&capture.bpf_filter, &exports),
                        snaplen: capture.snaplen(),
                        mirror: matches!(target.via, Via::OvsMirror { .. }),
                    };
                    // The sink first: an input may change OVS, undone if the sink fails.
                    let worker = sinks(&capture, &target).and_then(|sink| {
                        let opened = match target.via {
                            Via::Interface => Opened::new(Input::Interface(spec)),
                            _ => {
                                let mut opened = open(&capture, &target)?;
                                opened.bpf = spec.bpf.clone();
                                if let Input::Interface(s) = &mut opened.input {
                                    *s = spec;
                                }
                                opened
                            }
                        };
                        Ok(Worker::spawn_input(opened, sink))
                    });
                    (key, capture, target, worker)
                })
                .collect::<Vec<_>>()
        })
        .await;
        let Ok(started) = started else { return };
        for (key, capture, target, worker) in started {
            match worker {
                Ok(worker) => {
                    let ifname = target.ifname.clone();
                    debug!(capture = %capture.uuid, node = %target.node, %ifname, netns = ?target.netns, "capture point started");
                    let engine = target.via.engine(&capture);
                    self.reconciler
                        .started(key.clone(), capture.clone(), target);
                    self.running.insert(
                        key,
                        Running {
                            worker,
                            capture,
                            ifname,
                            engine,
                        },
                    );
                }
                Err(e) => {
                    let reason = e.reason().to_owned();
                    if self.reconciler.failed(
                        key.clone(),
                        capture.clone(),
                        target.clone(),
                        reason.clone(),
                    ) {
                        warn!(capture = %capture.uuid, node = %target.node, "cannot start: {reason}");
                    }
                }
            }
        }
    }

    /// Shows the running capture points to `/metrics` (which reads their counters at
    /// scrape time).
    fn sync_board(&self) {
        let points = self.running.iter().map(|((uuid, node), r)| {
            (
                (uuid.clone(), node.to_string()),
                crate::metrics::CapturePoint {
                    capture: uuid.clone(),
                    interface: r.ifname.clone(),
                    target_type: r.capture.target_kind().as_str().to_owned(),
                    shared: r.worker.shared.clone(),
                    export: r.worker.export.clone(),
                },
            )
        });
        self.inputs
            .board
            .sync(points, self.reconciler.failures().count());
    }

    /// Writes `Metadata.Captures` where it changed, and each capture's `Count`.
    fn publish(&mut self, now: Instant) {
        let mut per_node: BTreeMap<Identifier, Vec<Entry>> = BTreeMap::new();
        let mut active: HashMap<&str, Vec<Identifier>> = HashMap::new();
        for ((_, node), r) in &self.running {
            let sh = &r.worker.shared;
            let state = sh.state.lock().clone();
            let (name, error) = match state {
                WorkerState::Active => ("active", None),
                WorkerState::Starting => ("starting", None),
                WorkerState::Stopped => ("stopped", None),
                WorkerState::Error(e) => ("error", Some(e)),
            };
            if name == "active" {
                active
                    .entry(r.capture.uuid.as_str())
                    .or_default()
                    .push(node.clone());
            }
            let mut json = json!({
                "ID": r.capture.uuid,
                "State": name,
                "PacketsReceived": sh.received.load(Ordering::Relaxed),
                "PacketsDropped": sh.dropped.load(Ordering::Relaxed),
                "PacketsIfDropped": sh.if_dropped.load(Ordering::Relaxed),
                "Type": r.engine,
            });
            if !r.capture.bpf_filter.is_empty() {
                json["BPFFilter"] = r.capture.bpf_filter.clone().into();
            }
            if let Some(e) = &error {
                json["Error"] = e.clone().into();
            }
            if let Some(x) = &r.worker.export {
                json["Export"] = x.to_json();
            }
            if let Some(listen) = &r.worker.listen {
                json["Listen"] = listen.clone().into();
                json["Malformed"] = sh.malformed.load(Ordering::Relaxed).into();
            }
            if let Some(f) = self.inputs.flows.table_stats(&r.capture.uuid, node) {
                json["Flows"] = f;
            }
            per_node.entry(node.clone()).or_default().push(Entry {
                id: r.capture.uuid.clone(),
                state: name,
                error,
                json,
            });
        }
        for ((_, node), capture, reason) in self.reconciler.failures() {
            let mut json = json!({
                "ID": capture.uuid,
                "State": "error",
                "Error": reason,
                "PacketsReceived": 0,
                "PacketsDropped": 0,
                "PacketsIfDropped": 0,
                "Type": capture.engine(),
            });
            if !capture.bpf_filter.is_empty() {
                json["BPFFilter"] = capture.bpf_filter.clone().into();
            }
            per_node.entry(node.clone()).or_default().push(Entry {
                id: capture.uuid.clone(),
                state: "error",
                error: Some(reason.to_owned()),
                json,
            });
        }
        let mut failed: HashMap<&str, String> = HashMap::new();
        for ((_, node), capture, reason) in self.reconciler.failures() {
            failed
                .entry(capture.uuid.as_str())
                .or_insert_with(|| format!("on {node}: {reason}"));
        }
        for c in &self.captures {
            let on = active.remove(c.uuid.as_str()).unwrap_or_default();
            c.active.set_failure(if on.is_empty() {
                failed.remove(c.uuid.as_str())
            } else {
                None
            });
            c.active.set(on);
        }
        let writes = self.publisher.changes(per_node, now);
        if writes.is_empty() {
            return;
        }
        let mut g = self.inputs.graph.write();
        for (node, list) in writes {
            let changed = g.update_node(&node, |m| match list {
                Some(list) => {
                    m.insert(CAPTURES_KEY.into(), Value::Array(list));
                }
                None => {
                    m.remove(CAPTURES_KEY);
                }
            });
            if let (Ok(true), Some(ix)) = (changed, g.find_node(&node)) {
                self.reconciler.wrote(node, g.node(ix).revision());
            }
        }
    }

    async fn stop_all(&mut self) {
        let workers: Vec<Worker> = self.running.drain().map(|(_, r)| r.worker).collect();
        self.sync_board();
        let _ = tokio::task::spawn_blocking(move || {
            for w in workers {
                w.stop();
            }
        })
        .await;
    }
}

/// The nodes a capture query selected, whatever shape its result has.
fn matched_nodes(out: Output) -> Vec<NodeIx> {
    match out {
        Output::Nodes(n) => n,
        Output::Graph { nodes, .. } => nodes,
        Output::Paths(paths) => paths.into_iter().flatten().collect(),
        _ => Vec::new(),
    }
}

/// Where `capture` runs on a node, if it can: by its `Type`, libpcap on an interface
/// known to the kernel (in the namespace of its owner), a socket on an interface or an
/// OVS bridge, the sFlow of an OVS bridge (also the default there), a mirror of an OVS
/// port.
fn capture_target(g: &Graph, ix: NodeIx, capture: &Capture) -> Option<Target> {
    let md = g.node(ix).metadata();
    let kind = schema::type_of(md);
    let name = schema::str_of(md, schema::key::NAME)?;
    let target = |ifname: &str, if_index, netns: Option<&std::path::Path>, via| Target {
        node: g.node(ix).id().clone(),
        tid: schema::str_of(md, schema::key::TID)
            .unwrap_or_default()
            .to_owned(),
        ifname: ifname.to_owned(),
        if_index,
        netns: netns.map(PathBuf::from),
        via,
    };
    let bridge = kind == Some(schema::node_type::OVSBRIDGE);
    let interface = || {
        schema::kernel_interface(g, ix).map(|i| target(i.name, i.if_index, i.netns, Via::Interface))
    };
    match capture.engine_on(kind) {
        "ovssflow" if bridge => Some(target(name, 0, ovs_netns(g, ix, name), Via::OvsSflow)),
        "ovsmirror" if kind == Some(schema::node_type::OVSPORT) => {
            let (bix, bname) = g.in_edges(ix).find_map(|e| {
                let p = g.edge(e).parent();
                let pm = p.metadata();
                (schema::type_of(pm) == Some(schema::node_type::OVSBRIDGE))
                    .then(|| Some((p.ix(), schema::str_of(pm, schema::key::NAME)?)))
                    .flatten()
            })?;
            Some(target(
                &super::ovs::mirror_port_name(&capture.uuid, name),
                0,
                ovs_netns(g, bix, bname),
                Via::OvsMirror {
                    bridge: bname.to_owned(),
                    port: name.to_owned(),
                },
            ))
        }
        "sflow" | "pcapsocket" if bridge || schema::kernel_interface(g, ix).is_some() => {
            let via = if capture.engine() == "sflow" {
                Via::Sflow
            } else {
                Via::PcapSocket
            };
            Some(target(name, 0, None, via))
        }
        "pcap" | "afpacket" => interface(),
        _ => None,
    }
}

/// The namespace where the devices of vswitchd serving the bridge `bix` live: that of
/// the bridge's own internal interface (port and interface named like the bridge);
/// topotap's own when it is not known.
fn ovs_netns<'g>(g: &'g Graph, bix: NodeIx, bridge: &str) -> Option<&'g std::path::Path> {
    let named =
        |ix: NodeIx| schema::str_of(g.node(ix).metadata(), schema::key::NAME) == Some(bridge);
    g.out_edges(bix)
        .map(|e| g.edge(e).child().ix())
        .filter(|&p| named(p))
        .flat_map(|p| {
            g.out_edges(p)
                .map(|e| g.edge(e).child().ix())
                .collect::<Vec<_>>()
        })
        .filter(|&i| named(i))
        .find_map(|i| schema::kernel_interface(g, i))
        .and_then(|i| i.netns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use topotap_topology::{Edge, Node};

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn debounce_waits_for_quiet() {
        let t0 = Instant::now();
        let mut d = Debounce::default();
        assert_eq!(d.deadline(), None);
        assert!(!d.take_due(t0));
        d.changed(t0);
        d.changed(t0 + ms(50));
        assert_eq!(d.deadline(), Some(t0 + ms(150)));
        assert!(!d.take_due(t0 + ms(149)));
        assert!(d.take_due(t0 + ms(150)));
        assert_eq!(d.deadline(), None, "handled");
    }

    /// A change every 50 ms, forever: placement still runs every 500 ms.
    #[test]
    fn debounce_is_bounded_under_churn() {
        let t0 = Instant::now();
        let mut d = Debounce::default();
        let mut placements = Vec::new();
        let mut now = t0;
        while now < t0 + ms(2_000) {
            d.changed(now);
            // Time advances in 10 ms steps until the next change.
            for _ in 0..5 {
                now += ms(10);
                if d.take_due(now) {
                    placements.push(now - t0);
                }
            }
        }
        assert_eq!(placements, vec![ms(500), ms(1_000), ms(1_500), ms(2_000)]);
        // Each placement came at most MAX_DELAY after the first change it handled.
        assert!(placements
            .windows(2)
            .all(|w| w[1] - w[0] <= MAX_DELAY + ms(10)));
    }

    fn capture(uuid: &str, q: &str) -> Capture {
        Capture {
            uuid: uuid.into(),
            gremlin_query: q.into(),
            ..Default::default()
        }
    }

    fn target(node: &str, ifname: &str) -> Target {
        Target {
            node: Identifier::from(node),
            tid: String::new(),
            ifname: ifname.into(),
            if_index: 2,
            netns: None,
            via: Via::Interface,
        }
    }

    fn want(entries: &[(&Capture, &Target)]) -> Desired {
        entries
            .iter()
            .map(|(c, t)| {
                (
                    (c.uuid.clone(), t.node.clone()),
                    ((*c).clone(), (*t).clone()),
                )
            })
            .collect()
    }

    #[test]
    fn reconciler_starts_stops_restarts_and_retries() {
        let mut r = Reconciler::default();
        let c1 = capture("c1", "G.V()");
        let (a, b) = (target("a", "eth0"), target("b", "eth1"));
        let key = |c: &Capture, t: &Target| (c.uuid.clone(), t.node.clone());

        let d = want(&[(&c1, &a), (&c1, &b)]);
        let actions = r.plan(&d);
        assert_eq!(
            actions,
            vec![
                Action::Start(key(&c1, &a), Box::new((c1.clone(), a.clone()))),
                Action::Start(key(&c1, &b), Box::new((c1.clone(), b.clone()))),
            ]
        );
        r.started(key(&c1, &a), c1.clone(), a.clone());
        assert!(r.failed(key(&c1, &b), c1.clone(), b.clone(), "no socket".into()));
        assert_eq!(r.failures().count(), 1);

        // Nothing changed: only the failure is retried; the same failure is not news.
        assert_eq!(
            r.plan(&d),
            vec![Action::Start(
                key(&c1, &b),
                Box::new((c1.clone(), b.clone()))
            )]
        );
        assert!(!r.failed(key(&c1, &b), c1.clone(), b.clone(), "no socket".into()));

        // The interface was renamed: stop and start again.
        let a2 = target("a", "eth9");
        let d = want(&[(&c1, &a2)]);
        assert_eq!(
            r.plan(&d),
            vec![
                Action::Stop(key(&c1, &a)),
                Action::Start(key(&c1, &a2), Box::new((c1.clone(), a2.clone()))),
            ]
        );
        r.started(key(&c1, &a2), c1.clone(), a2.clone());
        assert_eq!(r.failures().count(), 0, "b no longer matches");

        // Only the node's TID changed (its namespace got its name, its bridge adopted
        // it): the capture goes on, retagged once.
        let a3 = Target {
            tid: "tid-2".into(),
            ..a2.clone()
        };
        let d = want(&[(&c1, &a3)]);
        assert_eq!(
            r.plan(&d),
            vec![Action::Retag(key(&c1, &a3), "tid-2".into())]
        );
        assert!(r.plan(&d).is_empty());
        let a2 = a3;

        // The capture was deleted.
        assert_eq!(r.plan(&Desired::new()), vec![Action::Stop(key(&c1, &a2))]);
        assert!(r.plan(&Desired::new()).is_empty());
    }

    #[test]
    fn own_captures_writes_are_not_events() {
        let mut r = Reconciler::default();
        let mut n = Node::new(Identifier::from("n"), Default::default(), "h", "test");
        n.revision = 4;
        r.wrote(n.id.clone(), 4);
        assert!(!r.relevant(&GraphEvent::NodeUpdated(n.clone())));
        // Anything else about that node is.
        assert!(r.relevant(&GraphEvent::NodeUpdated(n.clone())));
        n.revision = 5;
        assert!(r.relevant(&GraphEvent::NodeUpdated(n.clone())));
        assert!(r.relevant(&GraphEvent::NodeAdded(n)));
    }

    fn entry(id: &str, state: &'static str, received: u64) -> Entry {
        Entry {
            id: id.into(),
            state,
            error: None,
            json: json!({"ID": id, "State": state, "PacketsReceived": received}),
        }
    }

    #[test]
    fn publisher_writes_states_at_once_counters_once_a_second() {
        let t0 = Instant::now();
        let mut p = Publisher::default();
        let n = Identifier::from("n");
        let at = |entries: Vec<Entry>| BTreeMap::from([(n.clone(), entries)]);

        let w = p.changes(
            at(vec![entry("b", "starting", 0), entry("a", "active", 0)]),
            t0,
        );
        assert_eq!(w.len(), 1);
        let list = w[0].1.as_ref().unwrap();
        assert_eq!(
            (list[0]["ID"].as_str(), list[1]["ID"].as_str()),
            (Some("a"), Some("b"))
        );
        // Idle: nothing to write, ever.
        for i in 1..20 {
            assert!(p
                .changes(
                    at(vec![entry("a", "active", 0), entry("b", "starting", 0)]),
                    t0 + ms(250 * i)
                )
                .is_empty());
        }
        let t1 = t0 + ms(5_000);
        // A state change is written at once, counters with it.
        let w = p.changes(
            at(vec![entry("a", "active", 7), entry("b", "active", 0)]),
            t1,
        );
        assert_eq!(w.len(), 1);
        // Counters alone: written, then not again before a second has passed.
        let w = p.changes(
            at(vec![entry("a", "active", 8), entry("b", "active", 0)]),
            t1 + ms(250),
        );
        assert_eq!(w[0].1.as_ref().unwrap()[0]["PacketsReceived"], 8);
        assert!(p
            .changes(
                at(vec![entry("a", "active", 9), entry("b", "active", 0)]),
                t1 + ms(500)
            )
            .is_empty());
        let w = p.changes(
            at(vec![entry("a", "active", 9), entry("b", "active", 0)]),
            t1 + ms(1_250),
        );
        assert_eq!(w[0].1.as_ref().unwrap()[0]["PacketsReceived"], 9);
        // Nothing left on the node: the key is removed, once.
        assert_eq!(
            p.changes(BTreeMap::new(), t1 + ms(1_300)),
            vec![(n.clone(), None)]
        );
        assert!(p.changes(BTreeMap::new(), t1 + ms(1_400)).is_empty());
    }

    #[test]
    fn desired_follows_queries_and_skips_non_interfaces() {
        let mut g = Graph::new();
        let md = |v: Value| v.as_object().unwrap().clone();
        let ns = Node::new(
            Identifier::from("ns"),
            md(json!({"Type": "netns", "Name": "a", "Path": "/var/run/netns/a"})),
            "h",
            "test",
        );
        let eth = Node::new(
            Identifier::from("eth"),
            md(json!({"Type": "veth", "Name": "eth0", "IfIndex": 2})),
            "h",
            "test",
        );
        g.add_node(ns.clone()).unwrap();
        g.add_node(eth.clone()).unwrap();
        g.add_edge(Edge::new(
            ns.id.clone(),
            eth.id.clone(),
            md(json!({"RelationType": "ownership"})),
            "h",
            "test",
        ))
        .unwrap();
        let captures = [
            capture("c1", "G.V()"),
            capture("c2", "G.V().Has('Name', 'x')"),
        ];
        let (d, errors) = desired(&captures, &g, &Extensions::default(), &Budget::default());
        assert_eq!(
            d.len(),
            1,
            "the netns is not an interface; c2 matches nothing"
        );
        assert!(errors.is_empty(), "{errors:?}");
        let (c, t) = &d[&("c1".to_owned(), eth.id.clone())];
        assert_eq!(c.uuid, "c1");
        assert_eq!((t.ifname.as_str(), t.if_index), ("eth0", 2));
        assert_eq!(t.netns, Some(PathBuf::from("/var/run/netns/a")));
        // The query was compiled once and is kept with the capture: every copy of it
        // evaluates the same compiled query.
        let first = captures[0].query.get("", &Extensions::default()).unwrap() as *const _;
        let copy = captures[0].clone();
        assert_eq!(
            copy.query.get("", &Extensions::default()).unwrap() as *const _,
            first
        );
    }

    #[test]
    fn a_query_over_its_budget_is_an_error_of_its_capture_not_a_silent_nothing() {
        let mut g = Graph::new();
        let md = |v: Value| v.as_object().unwrap().clone();
        for i in 0..20 {
            g.add_node(Node::new(
                Identifier::from(format!("n{i}").as_str()),
                md(json!({"Type": "veth", "Name": format!("eth{i}"), "IfIndex": i + 2})),
                "h",
                "test",
            ))
            .unwrap();
            if i > 0 {
                g.add_edge(Edge::new(
                    Identifier::from("n0"),
                    Identifier::from(format!("n{i}").as_str()),
                    md(json!({"RelationType": "layer2"})),
                    "h",
                    "test",
                ))
                .unwrap();
            }
        }
        // A walk is what grows a result: 38 nodes from 20.
        let captures = [
            capture("small", "G.V().Has('Name', 'eth1')"),
            capture("big", "G.V().Both()"),
            capture("node-not-there-yet", "G.V('nope')"),
        ];
        let budget = Budget {
            max_elements: 10,
            ..Budget::default()
        };
        let (d, errors) = desired(&captures, &g, &Extensions::default(), &budget);
        assert_eq!(d.len(), 1, "{d:?}");
        assert!(d.contains_key(&("small".to_owned(), Identifier::from("n1"))));
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors["big"].starts_with("GremlinQuery: ")
                && errors["big"].contains("result exceeds 10 elements"),
            "{errors:?}"
        );
        let slow = Budget {
            timeout: Duration::ZERO,
            ..Budget::default()
        };
        let (d, errors) = desired(&captures[1..2], &g, &Extensions::default(), &slow);
        assert!(d.is_empty());
        assert!(errors["big"].contains("time budget"), "{errors:?}");
    }
}

/// The shell never blocks its async thread: with a one-thread runtime, a sink factory
/// that takes a second (a name that resolves slowly) must not stop other tasks.
#[cfg(test)]
mod shell_tests {
    use super::*;
    use crate::resources::Store;
    use std::sync::atomic::AtomicUsize;
    use topotap_topology::Node;

    #[test]
    fn slow_sink_opening_does_not_block_the_runtime() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let graph = SharedGraph::new(Graph::new(), "h");
        let md = |v: Value| v.as_object().unwrap().clone();
        graph
            .write()
            .add_node(Node::new(
                Identifier::from("eth"),
                md(json!({"Type": "veth", "Name": "eth0", "IfIndex": 2})),
                "h",
                "test",
            ))
            .unwrap();
        let captures = Store::<Capture>::open(None);
        rt.block_on(captures.create(
            Capture {
                gremlin_query: "G.V()".into(),
                ..Default::default()
            },
            None,
        ))
        .unwrap();
        let opened = Arc::new(AtomicUsize::new(0));
        let sinks: SinkFactory = {
            let opened = opened.clone();
            Arc::new(move |_: &Capture, _: &Target| {
                std::thread::sleep(Duration::from_secs(1));
                opened.fetch_add(1, Ordering::SeqCst);
                Err(Error::unavailable("cannot resolve collector.invalid"))
            })
        };
        let inputs = Inputs {
            graph: graph.clone(),
            captures,
            extensions: Arc::default(),
            budget: Budget::default(),
            flows: Arc::default(),
            sinks,
            inputs: Arc::new(|_: &Capture, _: &Target| Err(Error::unavailable("no inputs"))),
            board: Arc::default(),
            assigned: Arc::default(),
        };
        let ticks = rt.block_on(async {
            let (stop, stopped) = tokio::sync::watch::channel(false);
            let placer = tokio::spawn(run(inputs, stopped));
            // Counts 10 ms ticks while the placer opens the sink.
            let mut ticks = 0u32;
            let mut interval = tokio::time::interval(Duration::from_millis(10));
            let until = tokio::time::Instant::now() + Duration::from_millis(1_500);
            while tokio::time::Instant::now() < until {
                interval.tick().await;
                ticks += 1;
            }
            let _ = stop.send(true);
            placer.await.unwrap();
            ticks
        });
        assert!(opened.load(Ordering::SeqCst) >= 1, "the sink was opened");
        assert!(
            ticks >= 100,
            "the runtime stalled: {ticks} ticks of 10 ms in 1.5 s"
        );
        // The failure is shown on the node.
        let g = graph.read();
        let n = g.find_node(&Identifier::from("eth")).unwrap();
        assert_eq!(
            g.node(n).metadata()["Captures"][0]["Error"],
            "cannot resolve collector.invalid"
        );
    }
}
