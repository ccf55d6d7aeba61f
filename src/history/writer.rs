//! Feeds a [`HistoryStore`] from the graph's event broadcast.
//!
//! The task never blocks a probe: the broadcast does not wait for it, and store
//! writes run on blocking threads in batches (at most [`BATCH`] changes, or whatever
//! arrived within [`BATCH_WAIT`]). When the store fails, the batch is kept and tried
//! again with a backoff while new changes queue up in the broadcast (its capacity,
//! `graph::DEFAULT_EVENT_CAPACITY`); that queue is the backlog shown in `/api/status`
//! and `/metrics`. When the broadcast lagged, the writer starts over from a snapshot
//! of the graph, compared with the store's open revisions ([`reconcile`]).
//!
//! Times: an added or updated element's revision begins at its `UpdatedAt`; a deletion
//! ends it when the writer sees it. Times never go back, so revisions of one element
//! never overlap.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::{Map, Value};
use tokio::sync::{broadcast, watch};
use topotap_topology::{now_ms, Edge, GraphEvent, Node, SharedGraph};

use super::{Change, History, HistoryStore, Kind};

/// A fleet's leader election, as the writer sees it (`etcd::Leadership`).
pub trait Leadership: Send + Sync {
    /// This server's term's token while it leads (greater for each new term).
    fn token(&self) -> Option<i64>;
    /// Turns true when this server takes office and false when it leaves it.
    fn changes(&self) -> watch::Receiver<bool>;
}

/// Most changes written in one transaction.
pub const BATCH: usize = 4096;
/// How long a batch waits for more changes once the first arrived.
pub const BATCH_WAIT: Duration = Duration::from_millis(50);
/// How often retention runs.
pub const RETENTION_EVERY: Duration = Duration::from_secs(10);

/// The writer's counters, read by `/api/status` and `/metrics`.
#[derive(Default)]
pub struct Stats {
    /// Whether this server writes the history now (a fleet's analyzers: only the
    /// leader).
    pub writing: AtomicBool,
    /// Changes waiting to be written (queued here and in the broadcast).
    pub backlog: AtomicU64,
    /// Changes written.
    pub written: AtomicU64,
    /// Failed writes.
    pub failures: AtomicU64,
    /// Times the writer started over from a snapshot after it lagged.
    pub resyncs: AtomicU64,
    /// Times the in-memory timeline started over from a snapshot after it lagged.
    pub timeline_resyncs: AtomicU64,
    /// Revisions removed by retention.
    pub purged: AtomicU64,
    /// Bytes of stored revision documents, as of the last retention run.
    pub bytes: AtomicU64,
    /// Bytes the store takes on disk, as of the last retention run (0: not told).
    pub disk_bytes: AtomicU64,
    /// Most bytes of documents (revisions and flow snapshots) the store held since it
    /// was last compacted.
    pub peak: AtomicU64,
    /// Times the store was compacted.
    pub compactions: AtomicU64,
    /// Time of the last successful write (ms), 0 before.
    pub last_write: AtomicI64,
    /// The last write error, cleared by a successful write.
    pub error: Mutex<Option<String>>,
}

impl Stats {
    /// The numbers `/metrics` shows.
    pub fn gauges(&self) -> crate::metrics::HistoryGauges {
        crate::metrics::HistoryGauges {
            backlog: self.backlog.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            written: self.written.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
        }
    }

    pub fn to_json(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert(
            "Writing".into(),
            self.writing.load(Ordering::Relaxed).into(),
        );
        m.insert(
            "Backlog".into(),
            self.backlog.load(Ordering::Relaxed).into(),
        );
        m.insert(
            "Written".into(),
            self.written.load(Ordering::Relaxed).into(),
        );
        m.insert(
            "WriteFailures".into(),
            self.failures.load(Ordering::Relaxed).into(),
        );
        m.insert(
            "Resyncs".into(),
            self.resyncs.load(Ordering::Relaxed).into(),
        );
        m.insert("Purged".into(), self.purged.load(Ordering::Relaxed).into());
        m.insert("Bytes".into(), self.bytes.load(Ordering::Relaxed).into());
        let disk = self.disk_bytes.load(Ordering::Relaxed);
        if disk > 0 {
            m.insert("DiskBytes".into(), disk.into());
        }
        m.insert(
            "Compactions".into(),
            self.compactions.load(Ordering::Relaxed).into(),
        );
        if let Some(err) = self.error.lock().clone() {
            m.insert("Error".into(), err.into());
        }
        m
    }
}

fn node_doc(n: &Node) -> Vec<u8> {
    serde_json::to_vec(n).unwrap_or_default()
}

fn edge_doc(e: &Edge) -> Vec<u8> {
    serde_json::to_vec(e).unwrap_or_default()
}

/// Changes that bring the store's open revisions to the graph's state `snapshot`, at
/// time `at`: elements that changed or appeared are opened, those gone are closed,
/// the unchanged ones are left alone.
pub fn reconcile(
    open: Vec<(Kind, String, Vec<u8>)>,
    nodes: &[Node],
    edges: &[Edge],
    at: i64,
) -> Vec<Change> {
    let mut stored: HashMap<(Kind, String), Vec<u8>> = open
        .into_iter()
        .map(|(k, id, doc)| ((k, id), doc))
        .collect();
    let mut changes = Vec::new();
    let same_node = |doc: &[u8], n: &Node| {
        serde_json::from_slice::<Node>(doc)
            .is_ok_and(|s| s.metadata == n.metadata && s.host == n.host && s.origin == n.origin)
    };
    let same_edge = |doc: &[u8], e: &Edge| {
        serde_json::from_slice::<Edge>(doc).is_ok_and(|s| {
            s.metadata == e.metadata
                && s.host == e.host
                && s.origin == e.origin
                && s.parent == e.parent
                && s.child == e.child
        })
    };
    for n in nodes {
        let id = n.id.to_string();
        match stored.remove(&(Kind::Node, id.clone())) {
            Some(doc) if same_node(&doc, n) => {}
            _ => changes.push(Change::Open {
                kind: Kind::Node,
                id,
                at,
                doc: node_doc(n),
            }),
        }
    }
    for e in edges {
        let id = e.id.to_string();
        match stored.remove(&(Kind::Edge, id.clone())) {
            Some(doc) if same_edge(&doc, e) => {}
            _ => changes.push(Change::Open {
                kind: Kind::Edge,
                id,
                at,
                doc: edge_doc(e),
            }),
        }
    }
    let mut gone: Vec<(Kind, String)> = stored.into_keys().collect();
    gone.sort();
    changes.extend(
        gone.into_iter()
            .map(|(kind, id)| Change::Close { kind, id, at }),
    );
    changes
}

/// Turns graph events into changes with times that never go back: an added or
/// updated element's revision begins at its `UpdatedAt`, a deletion ends it now.
pub(crate) struct Clock {
    last: i64,
}

impl Clock {
    pub(crate) fn new() -> Clock {
        Clock { last: 0 }
    }

    pub(crate) fn stamp(&mut self, t: i64) -> i64 {
        self.last = self.last.max(t);
        self.last
    }

    /// When the change `ev` happened.
    pub(crate) fn at(&mut self, ev: &GraphEvent) -> i64 {
        match ev {
            GraphEvent::NodeAdded(n) | GraphEvent::NodeUpdated(n) => self.stamp(n.updated_at),
            GraphEvent::EdgeAdded(e) | GraphEvent::EdgeUpdated(e) => self.stamp(e.updated_at),
            GraphEvent::NodeDeleted(_) | GraphEvent::EdgeDeleted(_) => self.stamp(now_ms()),
        }
    }

    fn change(&mut self, ev: &GraphEvent) -> Change {
        let at = self.at(ev);
        match ev {
            GraphEvent::NodeAdded(n) | GraphEvent::NodeUpdated(n) => Change::Open {
                kind: Kind::Node,
                id: n.id.to_string(),
                at,
                doc: node_doc(n),
            },
            GraphEvent::EdgeAdded(e) | GraphEvent::EdgeUpdated(e) => Change::Open {
                kind: Kind::Edge,
                id: e.id.to_string(),
                at,
                doc: edge_doc(e),
            },
            GraphEvent::NodeDeleted(n) => Change::Close {
                kind: Kind::Node,
                id: n.id.to_string(),
                at,
            },
            GraphEvent::EdgeDeleted(e) => Change::Close {
                kind: Kind::Edge,
                id: e.id.to_string(),
                at,
            },
        }
    }
}

async fn blocking<T: Send + 'static>(
    store: &Arc<dyn HistoryStore>,
    f: impl FnOnce(&dyn HistoryStore) -> T + Send + 'static,
) -> Option<T> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || {
        topotap_topology::blocking::section("history write");
        f(store.as_ref())
    })
    .await
    .ok()
}

/// Who writes the history: this server alone, or a fleet's leading analyzer (a store
/// shared by the analyzers).
#[derive(Clone)]
pub enum Gate {
    /// The store is this server's own.
    Alone,
    /// Only while this analyzer leads, with its term's token as the store's fence.
    Leader(Arc<dyn Leadership>),
}

/// Why a writing session ended.
enum Ended {
    Shutdown,
    /// The term ended (or the store refused its token): wait to lead again.
    Lost,
}

/// The term a session writes under (`None`: alone).
#[derive(Clone, Copy)]
struct Term<'a> {
    leadership: Option<&'a dyn Leadership>,
    token: i64,
}

impl Term<'_> {
    fn holds(&self) -> bool {
        self.leadership
            .is_none_or(|l| l.token() == Some(self.token))
    }
}

/// Writes `batch` until it is written, the term ends or `shutdown` turns true; counts
/// failures. Meanwhile, events keep queueing in `rx`.
async fn write(
    history: &History,
    term: Term<'_>,
    batch: Vec<Change>,
    rx: &broadcast::Receiver<Arc<GraphEvent>>,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), Ended> {
    let batch = Arc::new(batch);
    let mut backoff = Duration::from_millis(200);
    loop {
        if !term.holds() {
            return Err(Ended::Lost);
        }
        history
            .stats
            .backlog
            .store((rx.len() + batch.len()) as u64, Ordering::Relaxed);
        let b = batch.clone();
        let fenced = term.leadership.is_some();
        let token = term.token;
        let result = blocking(&history.store, move |s| {
            if fenced {
                s.apply_as(token, &b)
            } else {
                s.apply(&b)
            }
        })
        .await;
        match result {
            Some(Ok(())) => {
                let s = &history.stats;
                s.written.fetch_add(batch.len() as u64, Ordering::Relaxed);
                s.last_write.store(now_ms(), Ordering::Relaxed);
                *s.error.lock() = None;
                return Ok(());
            }
            Some(Err(err)) => {
                let s = &history.stats;
                if s.failures.fetch_add(1, Ordering::Relaxed) % 50 == 0 {
                    tracing::warn!(error = %err, "history: write failed; the live graph goes on, changes are queued");
                }
                *s.error.lock() = Some(err.to_string());
            }
            None => {
                *history.stats.error.lock() = Some("history write task failed".into());
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.changed() => return Err(Ended::Shutdown),
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// Documents removed since the last compaction that make the next one worth it, at
/// the least: below this, what a compaction gives back is not worth blocking the store.
pub const COMPACT_AFTER: u64 = 1 << 20;

/// Whether to compact a store that kept `kept` bytes of documents after `freed` bytes
/// were removed since its last compaction: once at least half of what it held went,
/// so a store that retention keeps at a steady size compacts about once per retention
/// period, and one that shrank (a burst of churn expired, a lower cap) soon after.
fn worth_compacting(freed: u64, kept: u64) -> bool {
    freed >= COMPACT_AFTER && freed >= kept
}

/// Runs retention: what ended before `now - keep`, then the size cap; then compacts
/// the store when enough was removed since it last was ([`worth_compacting`]): the
/// documents kept (flow snapshots included, which their own retention removes)
/// against the most it held since.
pub(crate) async fn retain(history: &History) {
    let keep = history.retention.keep;
    let max = history.retention.max_bytes;
    let peak_before = history.stats.peak.load(Ordering::Relaxed);
    let result = blocking(&history.store, move |s| {
        let cutoff = now_ms().saturating_sub(keep.as_millis() as i64);
        let held = |s: &dyn HistoryStore| -> Result<(u64, u64), super::HistoryError> {
            let graph = s.usage()?.0;
            Ok((graph, graph + s.flow_usage()?.0))
        };
        let peak = peak_before.max(held(s)?.1);
        let n = s.purge_before(cutoff)? + s.enforce_size(max)?;
        let (bytes, kept) = held(s)?;
        let compacted = worth_compacting(peak.saturating_sub(kept), kept) && s.compact()?;
        let peak = if compacted { kept } else { peak };
        let horizon = s.horizon()?;
        Ok::<_, super::HistoryError>((n, bytes, peak, compacted, s.disk_bytes()?, horizon))
    })
    .await;
    match result {
        Some(Ok((n, bytes, peak, compacted, disk, horizon))) => {
            // The timeline answers nothing older than the store keeps, from now on.
            history.saw_horizon(horizon);
            history.stats.purged.fetch_add(n, Ordering::Relaxed);
            history.stats.bytes.store(bytes, Ordering::Relaxed);
            history
                .stats
                .disk_bytes
                .store(disk.unwrap_or(0), Ordering::Relaxed);
            history.stats.peak.store(peak, Ordering::Relaxed);
            if compacted {
                history.stats.compactions.fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    disk_bytes = disk.unwrap_or(0),
                    "history: store compacted after retention"
                );
            }
        }
        Some(Err(err)) => {
            tracing::warn!(error = %err, "history: retention failed");
        }
        None => {}
    }
}

/// Keeps `history` current with `graph` until `shutdown` turns true. With
/// [`Gate::Leader`], only while this analyzer leads: a new leader takes the store over
/// (the former leader's writes are refused from then on), compares its graph with the
/// store's open revisions and writes the difference, then follows its graph's events:
/// what did not change keeps its revision, so the history has neither a gap nor a
/// duplicate across a change of leader.
pub async fn run(
    graph: SharedGraph,
    history: History,
    gate: Gate,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut clock = Clock::new();
    let leadership = match gate {
        Gate::Alone => {
            history.stats.writing.store(true, Ordering::Relaxed);
            let term = Term {
                leadership: None,
                token: 0,
            };
            let _ = session(&graph, &history, term, &mut clock, &mut shutdown).await;
            return;
        }
        Gate::Leader(l) => l,
    };
    let mut changes = leadership.changes();
    loop {
        history.stats.writing.store(false, Ordering::Relaxed);
        history.stats.backlog.store(0, Ordering::Relaxed);
        let token = loop {
            if let Some(t) = leadership.token() {
                break t;
            }
            tokio::select! {
                r = changes.changed() => if r.is_err() { return },
                // The term is also checked by the clock (a lapsed renewal).
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.changed() => return,
            }
        };
        let taken = blocking(&history.store, move |s| s.take_over(token)).await;
        match taken {
            Some(Ok(())) => {}
            other => {
                if let Some(Err(err)) = other {
                    tracing::warn!(error = %err, "history: cannot take the history over");
                    *history.stats.error.lock() = Some(err.to_string());
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    _ = shutdown.changed() => return,
                }
            }
        }
        tracing::info!(
            term = token,
            "history: this analyzer leads and writes the history"
        );
        history.stats.writing.store(true, Ordering::Relaxed);
        let term = Term {
            leadership: Some(leadership.as_ref()),
            token,
        };
        match session(&graph, &history, term, &mut clock, &mut shutdown).await {
            Ended::Shutdown => return,
            Ended::Lost => {
                tracing::info!("history: no longer leading; the leader writes the history");
            }
        }
    }
}

/// Writes the history while `term` holds: a snapshot compared with the store, then
/// the graph's events, starting over from a snapshot after a lag.
async fn session(
    graph: &SharedGraph,
    history: &History,
    term: Term<'_>,
    clock: &mut Clock,
    shutdown: &mut watch::Receiver<bool>,
) -> Ended {
    let mut retention = tokio::time::interval(RETENTION_EVERY);
    retention.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    'resync: loop {
        let (mut rx, nodes, edges) = graph.subscribe_with_snapshot();
        let open = loop {
            if !term.holds() {
                return Ended::Lost;
            }
            match blocking(&history.store, |s| s.open_revisions()).await {
                Some(Ok(open)) => break open,
                Some(Err(err)) => {
                    history.stats.failures.fetch_add(1, Ordering::Relaxed);
                    *history.stats.error.lock() = Some(err.to_string());
                }
                None => {}
            }
            history
                .stats
                .backlog
                .store(rx.len() as u64, Ordering::Relaxed);
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.changed() => return Ended::Shutdown,
            }
        };
        let at = clock.stamp(now_ms());
        let changes = reconcile(open, &nodes, &edges, at);
        drop((nodes, edges));
        for chunk in changes.chunks(BATCH) {
            if let Err(end) = write(history, term, chunk.to_vec(), &rx, shutdown).await {
                return end;
            }
        }
        loop {
            history
                .stats
                .backlog
                .store(rx.len() as u64, Ordering::Relaxed);
            let first = tokio::select! {
                r = rx.recv() => r,
                _ = retention.tick() => {
                    if !term.holds() {
                        return Ended::Lost;
                    }
                    retain(history).await;
                    continue;
                }
                _ = shutdown.changed() => return Ended::Shutdown,
            };
            let mut batch = Vec::new();
            match first {
                Ok(ev) => batch.push(clock.change(&ev)),
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    history.stats.resyncs.fetch_add(1, Ordering::Relaxed);
                    continue 'resync;
                }
                Err(broadcast::error::RecvError::Closed) => return Ended::Shutdown,
            }
            let deadline = tokio::time::Instant::now() + BATCH_WAIT;
            while batch.len() < BATCH {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Ok(ev)) => batch.push(clock.change(&ev)),
                    Ok(Err(broadcast::error::RecvError::Lagged(_))) => {
                        history.stats.resyncs.fetch_add(1, Ordering::Relaxed);
                        // What was received is still true; write it, then start over.
                        if let Err(end) = write(history, term, batch, &rx, shutdown).await {
                            return end;
                        }
                        continue 'resync;
                    }
                    Ok(Err(broadcast::error::RecvError::Closed)) | Err(_) => break,
                }
            }
            if let Err(end) = write(history, term, batch, &rx, shutdown).await {
                return end;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::redb_store::RedbStore;
    use crate::history::Retention;

    #[test]
    fn compaction_waits_for_half_of_the_documents_to_go() {
        assert!(!worth_compacting(COMPACT_AFTER - 1, 0));
        assert!(!worth_compacting(COMPACT_AFTER, COMPACT_AFTER + 1));
        assert!(worth_compacting(COMPACT_AFTER, COMPACT_AFTER));
        assert!(worth_compacting(10 * COMPACT_AFTER, COMPACT_AFTER));
    }

    #[tokio::test]
    async fn retention_that_removes_most_revisions_shrinks_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.redb");
        let store = Arc::new(RedbStore::open(&path).unwrap());
        let t0 = store.horizon().unwrap();
        // 4,000 revisions of 100 elements, about 8 MB; all but the last of each ended.
        let doc = vec![b'x'; 2000];
        for b in 0..40 {
            let changes: Vec<Change> = (0..100)
                .map(|i| Change::Open {
                    kind: Kind::Node,
                    id: format!("n{i}"),
                    at: t0 + b,
                    doc: doc.clone(),
                })
                .collect();
            store.apply(&changes).unwrap();
        }
        let history = History::new(
            store.clone(),
            Retention {
                keep: Duration::from_millis(1),
                max_bytes: 1 << 30,
            },
        );
        while now_ms() <= t0 + 50 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let grown = std::fs::metadata(&path).unwrap().len();
        retain(&history).await;
        let shrunk = std::fs::metadata(&path).unwrap().len();
        assert!(shrunk < grown / 4, "{grown} bytes, then {shrunk}");
        assert_eq!(history.stats.purged.load(Ordering::Relaxed), 3900);
        assert_eq!(history.stats.compactions.load(Ordering::Relaxed), 1);
        let status = history.status();
        assert_eq!(status["DiskBytes"], serde_json::json!(shrunk), "{status}");
        // What is left is intact, and the store still takes writes.
        assert_eq!(store.open_revisions().unwrap().len(), 100);
        assert_eq!(store.between(t0 + 45, t0 + 45).unwrap().len(), 100);
        store
            .apply(&[Change::Close {
                kind: Kind::Node,
                id: "n0".into(),
                at: now_ms(),
            }])
            .unwrap();
        // Nothing more to give back: no second compaction.
        retain(&history).await;
        assert_eq!(history.stats.compactions.load(Ordering::Relaxed), 1);
    }
}
