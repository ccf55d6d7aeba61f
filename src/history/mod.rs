//! The history of the graph: every revision of every node and edge, with the interval
//! `[from, to)` in which it was the current one (milliseconds since the Unix epoch),
//! kept behind one trait, [`HistoryStore`]:
//!
//! - [`redb_store::RedbStore`]: embedded, one file in the state dir (`allinone`);
//! - [`postgres::PostgresStore`]: PostgreSQL (`--history postgres://...`, the fleet).
//!
//! A revision is opened when an element is added or its metadata changes (interface
//! metric samples and flow snapshots written into metadata are revisions like any other
//! change) and closed when it changes again or is deleted. [`writer`] feeds a store
//! from the graph's event broadcast in batches, off the probes' path: a slow or
//! unreachable store makes a backlog, counted in `/api/status` and `/metrics`, never a
//! wait for a probe; a lagging writer compares the store's open revisions with a new
//! snapshot of the graph.
//!
//! Queries (`G.At(t)`, `G.Context(t, d)`) read the revisions valid at `t` (or during
//! `[t-d, t]`), build a [`Graph`] of them ([`graph_of`]) and run the ordinary Gremlin
//! evaluator over it. The graphs of the last few instants asked are kept ([`History`]),
//! each with the span of time around its instant in which the same revisions were
//! valid ([`PointRead`]), and reused for any instant of that span while the store's
//! [`Stamp`] says nothing written since can have changed it: asking again for a time
//! (the UI's time slider, a poll of `G.At`) costs about what the live query costs.

pub mod flows;
pub mod postgres;
mod postgres_flows;
mod redb_flows;
mod redb_index;
pub mod redb_store;
pub mod timeline;
pub mod writer;

use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use topotap_topology::timeline::Timeline;
use topotap_topology::{Edge, Graph, Node, SharedGraph, View};

use flows::{FlowChange, FlowRevision, FlowStats, PastFlow};

/// Whether a revision is a node's or an edge's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Node,
    Edge,
}

impl Kind {
    pub fn code(self) -> u8 {
        match self {
            Kind::Node => b'n',
            Kind::Edge => b'e',
        }
    }

    pub fn from_code(c: u8) -> Option<Kind> {
        match c {
            b'n' => Some(Kind::Node),
            b'e' => Some(Kind::Edge),
            _ => None,
        }
    }
}

/// One write to the history.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// From `at` on, this is the element (its JSON as the API shows it); closes the
    /// element's open revision, if any, at `at`.
    Open {
        kind: Kind,
        id: String,
        at: i64,
        doc: Vec<u8>,
    },
    /// The element's open revision ends at `at` (deleted).
    Close { kind: Kind, id: String, at: i64 },
}

/// A stored revision.
#[derive(Debug, Clone, PartialEq)]
pub struct Revision {
    pub kind: Kind,
    pub from: i64,
    /// `None`: still the current one.
    pub to: Option<i64>,
    /// Whether it ended because the element was deleted (not changed again).
    pub deleted: bool,
    /// The element's JSON (`Node` or `Edge`).
    pub doc: Vec<u8>,
}

/// Where a store is at, for reusing a past graph built from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Changes with every write.
    pub version: u64,
    /// Counts the writes that had a change at a time before the latest change already
    /// stored. Any other write changes the history only from the latest stored change
    /// on: every span that ends at or before it stays as it was.
    pub rewrites: u64,
    /// The oldest instant the history covers ([`HistoryStore::horizon`]). Removing old
    /// revisions changes nothing at or after it.
    pub horizon: i64,
}

/// The revisions valid at an instant `t`, and the span of time around `t` in which
/// exactly these were valid: from the last change at or before `t` (`lo`, included)
/// to the first change after it (`hi`, excluded; `None`: none stored yet).
#[derive(Debug, Clone)]
pub struct PointRead {
    pub revisions: Vec<Revision>,
    pub lo: i64,
    pub hi: Option<i64>,
    /// The store as it was when these were read.
    pub stamp: Stamp,
}

/// Why the history could not be read or written: one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("history store: {0}")]
pub struct HistoryError(pub String);

impl HistoryError {
    pub fn new(e: impl std::fmt::Display) -> Self {
        HistoryError(e.to_string().replace(['\n', '\r'], " "))
    }
}

/// Where revisions are kept. Every call blocks (run it on a blocking thread) and a
/// write returns only once it is durable.
pub trait HistoryStore: Send + Sync {
    /// `redb`, `postgres`.
    fn backend(&self) -> &'static str;

    /// Applies changes in order, all or none.
    fn apply(&self, changes: &[Change]) -> Result<(), HistoryError>;

    /// Whether several servers share this store (a fleet's analyzers): then only the
    /// leader writes, with [`HistoryStore::take_over`] and [`HistoryStore::apply_as`].
    fn shared(&self) -> bool {
        false
    }

    /// Makes the holder of `token` (a leader's term, greater for each new term) the
    /// store's only writer: from now on an [`HistoryStore::apply_as`] with an older
    /// token fails, and one in flight has finished. Fails when a newer token holds it.
    fn take_over(&self, _token: i64) -> Result<(), HistoryError> {
        Ok(())
    }

    /// [`HistoryStore::apply`], only while `token` is the store's writer.
    fn apply_as(&self, _token: i64, changes: &[Change]) -> Result<(), HistoryError> {
        self.apply(changes)
    }

    /// The open revisions (the elements current as far as the store knows), as
    /// `(kind, id, doc)`.
    fn open_revisions(&self) -> Result<Vec<(Kind, String, Vec<u8>)>, HistoryError>;

    /// Revisions valid at some instant of `[from, at]`: begun at or before `at`, and
    /// open or ended after `from`. A time point is `from == at`.
    fn between(&self, from: i64, at: i64) -> Result<Vec<Revision>, HistoryError>;

    /// The oldest instant the history covers: when it began, or up to where old
    /// revisions were removed.
    fn horizon(&self) -> Result<i64, HistoryError>;

    /// Removes revisions that ended before `cutoff` and moves the horizon there.
    /// Returns how many were removed.
    fn purge_before(&self, cutoff: i64) -> Result<u64, HistoryError>;

    /// Removes the oldest ended revisions until the stored revisions take at most
    /// `max_bytes`; returns how many were removed.
    fn enforce_size(&self, max_bytes: u64) -> Result<u64, HistoryError>;

    /// Bytes of revision documents kept, and how many revisions.
    fn usage(&self) -> Result<(u64, u64), HistoryError>;

    /// Bytes the store takes on disk (its file, or its table and indexes), when it
    /// tells.
    fn disk_bytes(&self) -> Result<Option<u64>, HistoryError> {
        Ok(None)
    }

    /// Gives the space of removed revisions back to the file system when the store
    /// does not on its own; blocks reads and writes while it runs. Returns whether it
    /// did.
    fn compact(&self) -> Result<bool, HistoryError> {
        Ok(false)
    }

    /// Where the store is at; `None` when it does not tell (then no past graph built
    /// from it is reused). A store that gives it gives [`HistoryStore::at_point`].
    fn stamp(&self) -> Result<Option<Stamp>, HistoryError> {
        Ok(None)
    }

    /// The revisions valid at `at` with their span and stamp, read together (as one
    /// snapshot); `None` when the store does not tell spans.
    fn at_point(&self, _at: i64) -> Result<Option<PointRead>, HistoryError> {
        Ok(None)
    }

    // Flow snapshots ([`flows`]), kept apart from the node and edge revisions.

    /// Applies flow changes in order, all or none.
    fn apply_flows(&self, _changes: &[FlowChange]) -> Result<(), HistoryError> {
        Err(HistoryError(format!(
            "the {} store keeps no flows",
            self.backend()
        )))
    }

    /// Flow revisions valid at some instant of `[from, at]` (a point: `from == at`).
    fn flows_between(&self, _from: i64, _at: i64) -> Result<Vec<FlowRevision>, HistoryError> {
        Ok(Vec::new())
    }

    /// Closes at `at` the open flow revisions whose ID starts with `prefix` (a server's
    /// flows, when it starts: its tables are new); returns how many.
    fn close_open_flows(&self, _prefix: &str, _at: i64) -> Result<u64, HistoryError> {
        Ok(0)
    }

    /// Removes flow revisions that ended before `cutoff`; returns how many.
    fn purge_flows_before(&self, _cutoff: i64) -> Result<u64, HistoryError> {
        Ok(0)
    }

    /// Removes the oldest ended flow revisions until they take at most `max_bytes`;
    /// returns how many.
    fn enforce_flow_size(&self, _max_bytes: u64) -> Result<u64, HistoryError> {
        Ok(0)
    }

    /// Bytes of flow documents kept, and how many flow revisions.
    fn flow_usage(&self) -> Result<(u64, u64), HistoryError> {
        Ok((0, 0))
    }
}

/// What to keep and for how long.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// Revisions that ended longer ago than this are removed.
    pub keep: Duration,
    /// Most bytes of revision documents kept; the oldest go first beyond it.
    pub max_bytes: u64,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            keep: Duration::from_secs(24 * 3600),
            max_bytes: 1 << 30,
        }
    }
}

/// How many past graphs are kept for reuse.
pub const KEPT_PASTS: usize = 4;

/// A past graph kept for reuse: the graph of the revisions valid in `[lo, hi)`.
struct KeptPast {
    lo: i64,
    hi: Option<i64>,
    stamp: Stamp,
    graph: SharedGraph,
}

impl KeptPast {
    /// Whether this is the graph at `t` in a store now at `now`: `t` is in the span,
    /// and nothing written since changed the span (no write at all, or only writes
    /// from the latest change on, which is at or after a closed span's end).
    fn serves(&self, t: i64, now: &Stamp) -> bool {
        self.lo <= t
            && self.hi.is_none_or(|hi| t < hi)
            && self.stamp.rewrites == now.rewrites
            && (self.stamp.version == now.version || self.hi.is_some())
    }

    /// Whether it can still serve some instant.
    fn live(&self, now: &Stamp) -> bool {
        self.stamp.rewrites == now.rewrites
            && (self.stamp.version == now.version || self.hi.is_some())
            && self.hi.is_none_or(|hi| hi > now.horizon)
    }
}

/// The past graphs kept, the most recently used last, and how often one served.
#[derive(Default)]
struct Kept {
    pasts: Mutex<Vec<KeptPast>>,
    served: std::sync::atomic::AtomicU64,
}

impl Kept {
    fn get(&self, t: i64, now: &Stamp) -> Option<SharedGraph> {
        let mut kept = self.pasts.lock();
        kept.retain(|k| k.live(now));
        let i = kept.iter().rposition(|k| k.serves(t, now))?;
        let k = kept.remove(i);
        let graph = k.graph.clone();
        kept.push(k);
        self.served
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Some(graph)
    }

    fn put(&self, k: KeptPast) {
        let mut kept = self.pasts.lock();
        if kept.len() >= KEPT_PASTS {
            kept.remove(0);
        }
        kept.push(k);
    }
}

/// The history of a running server: its store and the writer's counters.
#[derive(Clone)]
pub struct History {
    pub store: Arc<dyn HistoryStore>,
    pub stats: Arc<writer::Stats>,
    /// The flow recorder's counters.
    pub flow_stats: Arc<FlowStats>,
    pub retention: Retention,
    kept: Arc<Kept>,
    /// The recent past in memory ([`timeline`]), when kept.
    timeline: Option<Arc<RwLock<Timeline>>>,
    /// The store's horizon as last read (`i64::MIN`: not yet).
    horizon_seen: Arc<std::sync::atomic::AtomicI64>,
    /// Point reads the timeline answered.
    timeline_served: Arc<std::sync::atomic::AtomicU64>,
}

impl History {
    pub fn new(store: Arc<dyn HistoryStore>, retention: Retention) -> Self {
        History {
            store,
            stats: Arc::default(),
            flow_stats: Arc::default(),
            retention,
            kept: Arc::default(),
            timeline: None,
            horizon_seen: Arc::new(std::sync::atomic::AtomicI64::new(i64::MIN)),
            timeline_served: Arc::default(),
        }
    }

    /// Keeps the recent past in memory too, within about `budget` bytes: point reads
    /// of a time it covers are answered from it ([`timeline::feed`] feeds it).
    pub fn with_timeline(mut self, budget: u64) -> Self {
        self.timeline = Some(Arc::new(RwLock::new(timeline::unfed(budget))));
        self
    }

    /// The in-memory timeline, when kept.
    pub fn timeline(&self) -> Option<&Arc<RwLock<Timeline>>> {
        self.timeline.as_ref()
    }

    /// Notes the store's horizon as just read.
    fn saw_horizon(&self, horizon: i64) {
        self.horizon_seen
            .store(horizon, std::sync::atomic::Ordering::Relaxed);
    }

    /// Reads the store's horizon and notes it. Blocking.
    pub fn refresh_horizon(&self) -> Result<i64, HistoryError> {
        let h = self.store.horizon()?;
        self.saw_horizon(h);
        Ok(h)
    }

    /// The graph at `at` from the timeline, when it covers `at` and `at` is not before
    /// the store's horizon (as last read).
    fn timeline_at(&self, at: i64) -> Option<Past> {
        let tl = self.timeline.as_ref()?;
        let horizon = self.horizon_seen.load(std::sync::atomic::Ordering::Relaxed);
        let start = tl.read().start();
        if at < horizon || at < start {
            return None;
        }
        self.timeline_served
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Some(Past {
            graph: PastGraph::Timeline {
                timeline: tl.clone(),
                at,
                history: Box::new(self.clone()),
            },
            horizon: if horizon == i64::MIN { start } else { horizon },
            complete: true,
        })
    }

    /// The flows as they were during `[from, at]` (at `at` when `from == at`), one per
    /// flow, and whether the history reaches back to `from`. Blocking.
    pub fn flows_between(&self, from: i64, at: i64) -> Result<(Vec<PastFlow>, bool), HistoryError> {
        self.flows_of(None, from, at)
    }

    /// As [`History::flows_between`], the flows `host` recorded only (a store shared by
    /// several agents holds theirs too). Blocking.
    pub fn host_flows_between(
        &self,
        host: &str,
        from: i64,
        at: i64,
    ) -> Result<(Vec<PastFlow>, bool), HistoryError> {
        self.flows_of(Some(&format!("{host}/")), from, at)
    }

    fn flows_of(
        &self,
        prefix: Option<&str>,
        from: i64,
        at: i64,
    ) -> Result<(Vec<PastFlow>, bool), HistoryError> {
        topotap_topology::blocking::section("history flow read");
        let horizon = self.store.horizon()?;
        if at < horizon {
            return Ok((Vec::new(), false));
        }
        let mut revisions = self.store.flows_between(from, at)?;
        if let Some(p) = prefix {
            revisions.retain(|r| r.id.starts_with(p));
        }
        Ok((flows::past_flows(revisions), from >= horizon))
    }

    /// The graph as it was during `[from, at]` (at `at` when `from == at`), and whether
    /// the history reaches back to `from`. Blocking.
    pub fn graph_between(&self, from: i64, at: i64) -> Result<Past, HistoryError> {
        topotap_topology::blocking::section("history read");
        if from == at {
            if let Some(past) = self.timeline_at(at) {
                return Ok(past);
            }
        }
        self.graph_from_store(from, at)
    }

    /// [`History::graph_between`] read from the store.
    fn graph_from_store(&self, from: i64, at: i64) -> Result<Past, HistoryError> {
        if from == at {
            if let Some(stamp) = self.store.stamp()? {
                self.saw_horizon(stamp.horizon);
                if let Some(past) = self.graph_at(at, stamp)? {
                    return Ok(past);
                }
            }
        }
        let horizon = self.refresh_horizon()?;
        if at < horizon {
            return Ok(Past::before(horizon));
        }
        let mut revisions = self.store.between(from, at)?;
        // Deleted as of `at`: a deletion after it is not known yet at `at`.
        for r in &mut revisions {
            r.deleted &= r.to.is_some_and(|to| to <= at);
        }
        Ok(Past {
            graph: PastGraph::Built(SharedGraph::new(graph_of(revisions), "")),
            horizon,
            complete: from >= horizon,
        })
    }

    /// The graph at `at`: a kept one when one serves, else read and kept.
    fn graph_at(&self, at: i64, stamp: Stamp) -> Result<Option<Past>, HistoryError> {
        if at < stamp.horizon {
            return Ok(Some(Past::before(stamp.horizon)));
        }
        if let Some(graph) = self.kept.get(at, &stamp) {
            return Ok(Some(Past {
                graph: PastGraph::Built(graph),
                horizon: stamp.horizon,
                complete: true,
            }));
        }
        let Some(mut read) = self.store.at_point(at)? else {
            return Ok(None);
        };
        // A deletion after `at` is not known yet at `at` (as in a window): every
        // revision valid at an instant ends after it.
        for r in &mut read.revisions {
            r.deleted = false;
        }
        let horizon = read.stamp.horizon;
        if at < horizon {
            return Ok(Some(Past::before(horizon)));
        }
        let graph = SharedGraph::new(graph_of(read.revisions), "");
        self.kept.put(KeptPast {
            lo: read.lo,
            hi: read.hi,
            stamp: read.stamp,
            graph: graph.clone(),
        });
        Ok(Some(Past {
            graph: PastGraph::Built(graph),
            horizon,
            complete: true,
        }))
    }

    /// The `History` section of `/api/status`.
    pub fn status(&self) -> serde_json::Value {
        let mut s = self.stats.to_json();
        self.flow_stats.extend_json(&mut s);
        s.insert("Backend".into(), self.store.backend().into());
        s.insert(
            "RetentionSeconds".into(),
            self.retention.keep.as_secs().into(),
        );
        s.insert("MaxBytes".into(), self.retention.max_bytes.into());
        if let Some(tl) = &self.timeline {
            let t = tl.read().stats();
            let fed = t.start != i64::MAX;
            s.insert(
                "Timeline".into(),
                serde_json::json!({
                    "Start": fed.then_some(t.start),
                    "Last": fed.then_some(t.last),
                    "Revisions": t.revisions,
                    "Elements": t.elements,
                    "Bytes": t.bytes,
                    "MaxBytes": t.budget,
                    "Served": self.timeline_served.load(std::sync::atomic::Ordering::Relaxed),
                    "Resyncs": self.stats.timeline_resyncs.load(std::sync::atomic::Ordering::Relaxed),
                }),
            );
        }
        serde_json::Value::Object(s)
    }
}

/// Where a past graph is read from.
pub enum PastGraph {
    /// Built from the store's revisions; shared with later queries of the same time:
    /// read it, never change it.
    Built(SharedGraph),
    /// The timeline at `at`.
    Timeline {
        timeline: Arc<RwLock<Timeline>>,
        at: i64,
        /// To read the store instead when the timeline no longer covers `at` (its
        /// budget moved its start meanwhile).
        history: Box<History>,
    },
}

/// A past graph.
pub struct Past {
    pub graph: PastGraph,
    /// The oldest instant the history covers.
    pub horizon: i64,
    /// Whether the asked time (or the whole window) is within the history; when not,
    /// the graph holds only what is left (nothing before the horizon).
    pub complete: bool,
}

impl Past {
    /// Before the history: nothing.
    fn before(horizon: i64) -> Past {
        Past {
            graph: PastGraph::Built(SharedGraph::new(Graph::with_event_capacity(1), "")),
            horizon,
            complete: false,
        }
    }

    /// Runs `f` over the graph under its read lock. Blocking.
    pub fn with_view<R>(&self, f: impl FnOnce(View<'_>) -> R) -> Result<R, HistoryError> {
        match &self.graph {
            PastGraph::Built(g) => Ok(f(g.read().view())),
            PastGraph::Timeline {
                timeline,
                at,
                history,
            } => {
                {
                    let tl = timeline.read();
                    if let Some(a) = tl.at(*at) {
                        return Ok(f(a.view()));
                    }
                }
                history.graph_from_store(*at, *at)?.with_view(f)
            }
        }
    }
}

/// A graph of revisions: nodes oldest first, then edges oldest first, so that an ID
/// finds its latest revision and an edge links the latest revisions of its ends. An
/// edge whose ends are not there (removed by retention) is left out. A revision that
/// ended by a deletion carries `DeletedAt`, as in Skydive.
pub fn graph_of(mut revisions: Vec<Revision>) -> Graph {
    revisions.sort_by_key(|r| (r.kind, r.from));
    let mut graph = Graph::with_event_capacity(1);
    for r in revisions {
        let deleted_at = r.to.filter(|_| r.deleted);
        match r.kind {
            Kind::Node => {
                if let Ok(mut n) = serde_json::from_slice::<Node>(&r.doc) {
                    n.deleted_at = deleted_at;
                    graph.add_node_revision(n);
                }
            }
            Kind::Edge => {
                if let Ok(mut e) = serde_json::from_slice::<Edge>(&r.doc) {
                    e.deleted_at = deleted_at;
                    let _ = graph.add_edge_revision(e);
                }
            }
        }
    }
    graph
}

/// How `--history` chose to keep the history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    Off,
    /// The redb file in the state dir.
    Embedded,
    /// A PostgreSQL connection string.
    Postgres(String),
}

impl Backend {
    /// `--history`: `off`, `embedded` (or empty), or a `postgres://` / `postgresql://` URL.
    pub fn parse(s: &str) -> Result<Backend, String> {
        let t = s.trim();
        match t {
            "" | "embedded" | "redb" => Ok(Backend::Embedded),
            "off" | "none" => Ok(Backend::Off),
            _ if t.starts_with("postgres://")
                || t.starts_with("postgresql://")
                || t.starts_with("host=") =>
            {
                Ok(Backend::Postgres(t.to_owned()))
            }
            _ => Err(format!(
                "invalid --history {s:?}: expected off, embedded, or postgres://USER@HOST/DB"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::redb_store::RedbStore;
    use super::*;
    use topotap_topology::{Identifier, Metadata};

    fn node(id: &str, v: u64) -> Node {
        let mut m = Metadata::new();
        m.insert("Name".into(), id.into());
        m.insert("V".into(), v.into());
        Node::new(Identifier::from(id), m, "h", "o")
    }

    fn open_node(id: &str, v: u64, at: i64) -> Change {
        Change::Open {
            kind: Kind::Node,
            id: id.into(),
            at,
            doc: serde_json::to_vec(&node(id, v)).unwrap(),
        }
    }

    fn open_edge(a: &str, b: &str, v: u64, at: i64) -> Change {
        let mut m = Metadata::new();
        m.insert("RelationType".into(), "layer2".into());
        m.insert("V".into(), v.into());
        let e = Edge::new(Identifier::from(a), Identifier::from(b), m, "h", "o");
        Change::Open {
            kind: Kind::Edge,
            id: e.id.to_string(),
            at,
            doc: serde_json::to_vec(&e).unwrap(),
        }
    }

    fn close(kind: Kind, id: &str, at: i64) -> Change {
        Change::Close {
            kind,
            id: id.into(),
            at,
        }
    }

    /// Nodes and edges as sorted JSON lines.
    fn json_lines((nodes, edges): (Vec<Node>, Vec<Edge>)) -> Vec<String> {
        let mut out: Vec<String> = nodes
            .iter()
            .map(|n| serde_json::to_string(n).unwrap())
            .chain(edges.iter().map(|e| serde_json::to_string(e).unwrap()))
            .collect();
        out.sort();
        out
    }

    /// A graph's elements as sorted JSON lines.
    fn contents(g: &SharedGraph) -> Vec<String> {
        json_lines(g.read().snapshot())
    }

    /// A past graph's elements as sorted JSON lines.
    fn past_contents(p: &Past) -> Vec<String> {
        json_lines(p.with_view(|v| v.snapshot()).unwrap())
    }

    /// The graph at `t` built from the store, nothing reused.
    fn fresh(store: &dyn HistoryStore, t: i64) -> Vec<String> {
        let mut revisions = store.between(t, t).unwrap();
        for r in &mut revisions {
            r.deleted &= r.to.is_some_and(|to| to <= t);
        }
        contents(&SharedGraph::new(graph_of(revisions), ""))
    }

    fn served(h: &History) -> u64 {
        h.kept.served.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Nodes a..f created, updated and deleted (with the edges between them) at
    /// pseudo-random steps 10 ms apart from `base`, in batches of `per_batch`.
    fn churn(base: i64, steps: usize, seed: u64) -> Vec<Change> {
        let ids = ["a", "b", "c", "d", "e", "f"];
        let mut alive = [false; 6];
        let mut x = seed;
        let mut out = Vec::new();
        for k in 0..steps {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let i = (x >> 33) as usize % ids.len();
            let at = base + 10 * k as i64;
            let edge = |out: &mut Vec<Change>, i: usize, alive: &[bool; 6], v| {
                if i > 0 && i < alive.len() && alive[i] && alive[i - 1] {
                    out.push(open_edge(ids[i - 1], ids[i], v, at));
                }
            };
            match (x >> 40) % 3 {
                0 if alive[i] => {
                    // Deleted, with its edges.
                    alive[i] = false;
                    out.push(close(Kind::Node, ids[i], at));
                    for j in [i.saturating_sub(1), i + 1] {
                        if j < ids.len() && j != i {
                            let (p, c) = if j < i { (j, i) } else { (i, j) };
                            let e = Edge::new(
                                Identifier::from(ids[p]),
                                Identifier::from(ids[c]),
                                {
                                    let mut m = Metadata::new();
                                    m.insert("RelationType".into(), "layer2".into());
                                    m
                                },
                                "h",
                                "o",
                            );
                            out.push(close(Kind::Edge, &e.id.to_string(), at));
                        }
                    }
                }
                _ => {
                    // Created or updated, and linked to its alive neighbour.
                    alive[i] = true;
                    out.push(open_node(ids[i], k as u64, at));
                    edge(&mut out, i, &alive, k as u64);
                    edge(&mut out, i + 1, &alive, k as u64);
                }
            }
        }
        out
    }

    #[test]
    fn a_kept_past_serves_only_its_span_while_nothing_changed_it() {
        let g = SharedGraph::new(Graph::new(), "");
        let s = |version, rewrites| Stamp {
            version,
            rewrites,
            horizon: 0,
        };
        let closed = KeptPast {
            lo: 100,
            hi: Some(200),
            stamp: s(1, 0),
            graph: g.clone(),
        };
        assert!(closed.serves(100, &s(1, 0)));
        assert!(closed.serves(199, &s(1, 0)));
        assert!(!closed.serves(99, &s(1, 0)));
        assert!(!closed.serves(200, &s(1, 0)));
        // Writes after the span leave it; a write before the latest change may not.
        assert!(closed.serves(150, &s(7, 0)));
        assert!(!closed.serves(150, &s(7, 1)));
        let open = KeptPast {
            lo: 100,
            hi: None,
            stamp: s(1, 0),
            graph: g,
        };
        assert!(open.serves(10_000, &s(1, 0)));
        assert!(!open.serves(10_000, &s(2, 0)));
        assert!(!open.serves(99, &s(1, 0)));
    }

    #[test]
    fn past_graphs_equal_the_history_at_every_time_while_it_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(RedbStore::open(&dir.path().join("h.redb")).unwrap());
        let history = History::new(store.clone(), Retention::default());
        let base = topotap_topology::now_ms() + 1000;
        let changes = churn(base, 300, 7);
        let end = base + 3000;
        for (n, batch) in changes.chunks(25).enumerate() {
            store.apply(batch).unwrap();
            // Times at and around changes, before them, mid-way and after everything;
            // each asked twice (the second time, a kept graph may answer).
            let written = match batch.last().unwrap() {
                Change::Open { at, .. } | Change::Close { at, .. } => *at,
            };
            let probes = [
                base,
                base + 5,
                written,
                written - 1,
                written + 1,
                base + (written - base) / 2,
                base + 10 * (n as i64 * 7 % 30),
                end + 1000,
            ];
            for t in probes.into_iter().chain(probes) {
                let past = history.graph_between(t, t).unwrap();
                assert!(past.complete, "t={t}");
                assert_eq!(
                    past_contents(&past),
                    fresh(store.as_ref(), t),
                    "t={t} batch {n}"
                );
            }
        }
        let reused = served(&history);
        assert!(reused > 100, "kept graphs served {reused} times");
        // Deletions and the edges left out are there: somewhere a node is missing.
        assert!((0..300).any(|k| fresh(store.as_ref(), base + 10 * k).len() < 6));

        // A write before the latest change (a rewrite of the past): nothing kept is
        // trusted any more.
        let t = base + 1500;
        let was = past_contents(&history.graph_between(t, t).unwrap());
        store.apply(&[open_node("z", 1, t - 3)]).unwrap();
        let now = past_contents(&history.graph_between(t, t).unwrap());
        assert_ne!(was, now);
        assert_eq!(now, fresh(store.as_ref(), t));

        // Before the horizon: nothing, and said so.
        store.purge_before(base + 2000).unwrap();
        let past = history.graph_between(base + 1999, base + 1999).unwrap();
        assert!(!past.complete);
        assert!(past_contents(&past).is_empty());
        let t = base + 2500;
        let past = history.graph_between(t, t).unwrap();
        assert!(past.complete);
        assert_eq!(past_contents(&past), fresh(store.as_ref(), t));
    }

    /// A JSON value with every list sorted, to compare answers up to order.
    fn sorted_json(v: &serde_json::Value) -> String {
        match v {
            serde_json::Value::Array(items) => {
                let mut items: Vec<String> = items.iter().map(sorted_json).collect();
                items.sort();
                format!("[{}]", items.join(","))
            }
            serde_json::Value::Object(m) => {
                let fields: Vec<String> = m
                    .iter()
                    .map(|(k, v)| format!("{k:?}:{}", sorted_json(v)))
                    .collect();
                format!("{{{}}}", fields.join(","))
            }
            other => other.to_string(),
        }
    }

    /// Writes `changes` to the store and to the history's timeline.
    fn write_both(history: &History, changes: &[Change]) {
        history.store.apply(changes).unwrap();
        let mut tl = history.timeline().unwrap().write();
        for c in changes {
            match c {
                Change::Open {
                    kind: Kind::Node,
                    at,
                    doc,
                    ..
                } => tl.open_node(*at, &serde_json::from_slice(doc).unwrap()),
                Change::Open {
                    kind: Kind::Edge,
                    at,
                    doc,
                    ..
                } => tl.open_edge(*at, &serde_json::from_slice(doc).unwrap()),
                Change::Close {
                    kind: Kind::Node,
                    id,
                    at,
                } => tl.close_node(*at, &id.as_str().into()),
                Change::Close {
                    kind: Kind::Edge,
                    id,
                    at,
                } => tl.close_edge(*at, &id.as_str().into()),
            }
        }
    }

    fn timeline_history(store: Arc<dyn HistoryStore>, start: i64, budget: u64) -> History {
        let history = History::new(store, Retention::default()).with_timeline(budget);
        *history.timeline().unwrap().write() = Timeline::new(start, budget);
        history
    }

    #[test]
    fn the_timeline_answers_what_the_store_answers_at_every_time() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(RedbStore::open(&dir.path().join("h.redb")).unwrap());
        let base = topotap_topology::now_ms() + 1000;
        let history = timeline_history(store.clone(), base, 1 << 30);
        // Deletions, creations again of the same IDs, edges, several changes per ms.
        let changes = churn(base, 3000, 3);
        for batch in changes.chunks(100) {
            write_both(&history, batch);
        }
        let end = base + 30_000;
        for t in (base..end + 20).step_by(23) {
            let past = history.graph_between(t, t).unwrap();
            assert!(matches!(past.graph, PastGraph::Timeline { .. }), "t={t}");
            assert!(past.complete);
            assert_eq!(past_contents(&past), fresh(store.as_ref(), t), "t={t}");
        }
        // Before the timeline's start: the store answers.
        let past = history.graph_between(base - 1, base - 1).unwrap();
        assert!(matches!(past.graph, PastGraph::Built(_)));
        // A window is read from the store.
        let past = history.graph_between(base, base + 100).unwrap();
        assert!(matches!(past.graph, PastGraph::Built(_)));
        let status = history.status();
        assert_eq!(
            status["Timeline"]["Start"],
            serde_json::json!(base),
            "{status}"
        );
        assert!(status["Timeline"]["Revisions"].as_u64().unwrap() > 1000);

        // The same query, answered from each.
        let ext = topotap_topology::gremlin::Extensions::new();
        let budget = topotap_topology::gremlin::Budget::unlimited();
        for t in (base..end).step_by(997) {
            for q in [
                "G.V().Has('V', GT(100)).Out().Count()",
                "G.E().Has('RelationType', 'layer2').InV().Values('Name')",
                "G.V().Has('Name', 'c').Both().SubGraph()",
                "G.V('a').ShortestPathTo(Metadata('Name', 'f'))",
            ] {
                let q = topotap_topology::gremlin::compile(q, &ext).unwrap();
                // The same answer, up to order: the timeline lists elements in the
                // order they first appeared (as the live graph does), a graph built
                // from the store in the order their revisions began.
                let run = |p: &Past| {
                    let a = p
                        .with_view(|v| {
                            topotap_topology::gremlin::Snapshot::of_query(v, &q, &budget)
                                .map(|s| s.encode(&budget).unwrap().to_vec())
                                .map_err(|e| e.to_string())
                        })
                        .unwrap();
                    let a = match a {
                        Ok(a) => a,
                        Err(e) => return vec![e],
                    };
                    let mut items: Vec<String> = match serde_json::from_slice(&a).unwrap() {
                        serde_json::Value::Array(items) => items.iter().map(sorted_json).collect(),
                        other => vec![other.to_string()],
                    };
                    items.sort();
                    items
                };
                let from_store = history.graph_from_store(t, t).unwrap();
                let from_timeline = history.graph_between(t, t).unwrap();
                assert_eq!(run(&from_timeline), run(&from_store), "t={t} {q}");
            }
        }
    }

    #[test]
    fn a_time_the_timeline_let_go_of_is_read_from_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(RedbStore::open(&dir.path().join("h.redb")).unwrap());
        let base = topotap_topology::now_ms() + 1000;
        let history = timeline_history(store.clone(), base, 200_000);
        for batch in churn(base, 20_000, 9).chunks(500) {
            write_both(&history, batch);
        }
        let start = history.timeline().unwrap().read().start();
        assert!(start > base + 1000, "the budget moved the start: {start}");
        for t in [
            base,
            base + 500,
            start - 1,
            start,
            start + 3,
            base + 200_000,
        ] {
            let past = history.graph_between(t, t).unwrap();
            assert_eq!(
                matches!(past.graph, PastGraph::Timeline { .. }),
                t >= start,
                "t={t}"
            );
            assert_eq!(past_contents(&past), fresh(store.as_ref(), t), "t={t}");
        }
    }
}
