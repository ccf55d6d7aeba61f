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
//! evaluator over it.

pub mod postgres;
pub mod redb_store;
pub mod writer;

use std::sync::Arc;
use std::time::Duration;

use topotap_topology::{Edge, Graph, Node};

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
    /// The element's JSON (`Node` or `Edge`).
    pub doc: Vec<u8>,
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

/// The history of a running server: its store and the writer's counters.
#[derive(Clone)]
pub struct History {
    pub store: Arc<dyn HistoryStore>,
    pub stats: Arc<writer::Stats>,
    pub retention: Retention,
}

impl History {
    pub fn new(store: Arc<dyn HistoryStore>, retention: Retention) -> Self {
        History {
            store,
            stats: Arc::default(),
            retention,
        }
    }

    /// The graph as it was during `[from, at]` (at `at` when `from == at`), and whether
    /// the history reaches back to `from`. Blocking.
    pub fn graph_between(&self, from: i64, at: i64) -> Result<Past, HistoryError> {
        topotap_topology::blocking::section("history read");
        let horizon = self.store.horizon()?;
        if at < horizon {
            return Ok(Past {
                graph: Graph::with_event_capacity(1),
                horizon,
                complete: false,
            });
        }
        let revisions = self.store.between(from, at)?;
        Ok(Past {
            graph: graph_of(revisions),
            horizon,
            complete: from >= horizon,
        })
    }

    /// The `History` section of `/api/status`.
    pub fn status(&self) -> serde_json::Value {
        let mut s = self.stats.to_json();
        s.insert("Backend".into(), self.store.backend().into());
        s.insert(
            "RetentionSeconds".into(),
            self.retention.keep.as_secs().into(),
        );
        s.insert("MaxBytes".into(), self.retention.max_bytes.into());
        serde_json::Value::Object(s)
    }
}

/// A past graph.
pub struct Past {
    pub graph: Graph,
    /// The oldest instant the history covers.
    pub horizon: i64,
    /// Whether the asked time (or the whole window) is within the history; when not,
    /// the graph holds only what is left (nothing before the horizon).
    pub complete: bool,
}

/// A graph of revisions: nodes oldest first, then edges oldest first, so that an ID
/// finds its latest revision and an edge links the latest revisions of its ends. An
/// edge whose ends are not there (removed by retention) is left out.
pub fn graph_of(mut revisions: Vec<Revision>) -> Graph {
    revisions.sort_by_key(|r| (r.kind, r.from));
    let mut graph = Graph::with_event_capacity(1);
    for r in revisions {
        match r.kind {
            Kind::Node => {
                if let Ok(n) = serde_json::from_slice::<Node>(&r.doc) {
                    graph.add_node_revision(n);
                }
            }
            Kind::Edge => {
                if let Ok(e) = serde_json::from_slice::<Edge>(&r.doc) {
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
