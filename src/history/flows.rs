//! Flow snapshots in the history: each flow of a `local` capture target is kept as
//! revisions with their validity interval `[from, to)` (ms), like nodes and edges, in
//! the same store but apart from them (their own tables), so that `G.At(t).Flows()`
//! shows the flows as they were at `t` and `Flows().Metrics()` over a window gives
//! each flow's `LastUpdateMetric` series.
//!
//! The flow tables report a flow at every update tick it saw packets in (its state, with
//! the `LastUpdateMetric` of the interval that ended) and when it leaves the table
//! (expired, evicted, or its capture stopped). [`FlowRecorder`] turns those reports into
//! [`FlowChange`]s and queues them without ever waiting: the queue is bounded
//! ([`QUEUE`]), what does not fit is dropped and counted (`/api/status` `History`
//! `FlowsDropped`). [`run`] writes the queue in batches on blocking threads.
//!
//! Times: a flow's first revision begins at its `Start` (it was in the table from its
//! first packet on) and holds its first snapshot; each later snapshot begins at the
//! update tick that took it; a flow that saw packets after its last snapshot gets a
//! final one from its `Last`; the last revision ends when the flow left the table. A
//! restart closes the revisions the previous run left open (its tables are gone).
//!
//! A snapshot also keeps the raw frames its flow held then (a capture's
//! `RawPacketLimit`, at most 10 of them, each at most the capture's `HeaderSize`),
//! counted with its revision's bytes: `RawPackets()` of a past time answers from them.
//!
//! The flows of a pcap upload (`POST /api/pcap`) are recorded too, on the file's own
//! clock: their revisions span the times the file's packets carry, and end when the
//! file does (the flows stay in the live table for queries meanwhile). Retention
//! counts from those times, so a file older than the retention is gone at its next
//! run.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::sync::{mpsc, watch};
use topotap_targets::flow::{Flow, FlowEvent, FlowEventKind};
use topotap_topology::{now_ms, Identifier};

use super::{HistoryError, HistoryStore};

/// Flow changes waiting to be written, at most; beyond it they are dropped and counted.
pub const QUEUE: usize = 65_536;
/// Most flow changes written in one transaction.
pub const BATCH: usize = 4096;
/// How long a batch waits for more changes once the first arrived.
pub const BATCH_WAIT: Duration = Duration::from_millis(200);

/// One write of the flow history.
#[derive(Debug, Clone, PartialEq)]
pub enum FlowChange {
    /// From `at` on, this is the flow (its JSON as the API shows it). Closes the flow's
    /// open revision at `at`; a flow without one begins at `start` (its first packet).
    Open {
        id: String,
        node: String,
        at: i64,
        start: i64,
        doc: Vec<u8>,
        /// The raw frames the flow held ([`crate::capture::raw::encode_packets`]);
        /// empty: none.
        raw: Vec<u8>,
    },
    /// The flow left its table at `at`.
    Close { id: String, at: i64 },
}

/// A stored flow revision.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowRevision {
    /// `<host>/<capture>/<node>/<UUID>`: one flow of one capture point.
    pub id: String,
    /// The graph node the flow was captured on.
    pub node: String,
    pub from: i64,
    /// `None`: still in its table.
    pub to: Option<i64>,
    /// The flow's JSON.
    pub doc: Vec<u8>,
    /// Its raw frames ([`crate::capture::raw::encode_packets`]); empty: none.
    pub raw: Vec<u8>,
}

/// The flow recorder's counters.
#[derive(Default)]
pub struct FlowStats {
    /// Flow changes queued and not written yet.
    pub backlog: AtomicU64,
    /// Flow changes written.
    pub written: AtomicU64,
    /// Flow changes dropped because the queue was full.
    pub dropped: AtomicU64,
    /// Failed flow writes.
    pub failures: AtomicU64,
    /// Flow revisions removed by retention.
    pub purged: AtomicU64,
    /// Bytes of stored flow documents, as of the last retention run.
    pub bytes: AtomicU64,
}

impl FlowStats {
    /// The `Flows...` keys of `/api/status` `History`.
    pub fn extend_json(&self, m: &mut Map<String, Value>) {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        m.insert("FlowsBacklog".into(), get(&self.backlog).into());
        m.insert("FlowsWritten".into(), get(&self.written).into());
        m.insert("FlowsDropped".into(), get(&self.dropped).into());
        m.insert("FlowsWriteFailures".into(), get(&self.failures).into());
        m.insert("FlowsPurged".into(), get(&self.purged).into());
        m.insert("FlowsBytes".into(), get(&self.bytes).into());
    }
}

/// Queues flow snapshots for the history; cloned into every `local` flow table.
#[derive(Clone)]
pub struct FlowRecorder {
    tx: mpsc::Sender<FlowChange>,
    stats: Arc<FlowStats>,
    /// Prefixes every flow ID: the revisions of this server's flows.
    host: Arc<str>,
}

/// The receiving end of a [`FlowRecorder`], for [`run`].
pub struct FlowQueue {
    rx: mpsc::Receiver<FlowChange>,
    host: Arc<str>,
}

impl FlowRecorder {
    /// A recorder of `host`'s flows, its queue holding at most `capacity` changes.
    pub fn new(host: &str, capacity: usize, stats: Arc<FlowStats>) -> (FlowRecorder, FlowQueue) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let host: Arc<str> = Arc::from(host);
        (
            FlowRecorder {
                tx,
                stats,
                host: host.clone(),
            },
            FlowQueue { rx, host },
        )
    }

    /// The ID of a flow's revisions.
    pub fn flow_id(&self, capture: &str, node: &Identifier, uuid: u64) -> String {
        format!("{}/{capture}/{node}/{uuid}", self.host)
    }

    fn push(&self, change: FlowChange) {
        match self.tx.try_send(change) {
            Ok(()) => {
                self.stats.backlog.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Records what a flow table reported at `now_ms` about a flow of `capture` on
    /// `node`: a snapshot of an updated flow (with `raw`, the frames it holds, encoded),
    /// the end of one that left the table.
    pub fn record(
        &self,
        capture: &str,
        node: &Identifier,
        now_ms: i64,
        ev: &FlowEvent,
        raw: impl FnOnce() -> Vec<u8>,
    ) {
        let flow = &ev.flow;
        let id = self.flow_id(capture, node, flow.uuid());
        match ev.kind {
            FlowEventKind::Update => self.push(open(id, node, now_ms, flow, raw())),
            FlowEventKind::Expired | FlowEventKind::Evicted | FlowEventKind::Flushed => {
                // Packets since the last snapshot: a final one, from the last packet.
                if unreported(flow) {
                    let at = (flow.last_ms() as i64).min(now_ms);
                    self.push(open(id.clone(), node, at, flow, raw()));
                }
                self.push(FlowChange::Close { id, at: now_ms });
            }
        }
    }
}

/// Whether a flow saw packets its last snapshot does not count.
fn unreported(flow: &Flow) -> bool {
    let m = flow.last_update_metric();
    m.ab_packets + m.ba_packets > 0
}

fn open(id: String, node: &Identifier, at: i64, flow: &Flow, raw: Vec<u8>) -> FlowChange {
    FlowChange::Open {
        id,
        node: node.to_string(),
        at,
        start: flow.start_ms() as i64,
        doc: serde_json::to_vec(&flow.to_json()).unwrap_or_default(),
        raw,
    }
}

/// Writes `store`'s share of `changes`, retried with a backoff until written or
/// `shutdown`; the queue fills meanwhile (and drops what does not fit).
async fn write(
    store: &Arc<dyn HistoryStore>,
    stats: &FlowStats,
    changes: Vec<FlowChange>,
    shutdown: &mut watch::Receiver<bool>,
) -> bool {
    let changes = Arc::new(changes);
    let mut backoff = Duration::from_millis(200);
    loop {
        let (s, c) = (store.clone(), changes.clone());
        let result = tokio::task::spawn_blocking(move || {
            topotap_topology::blocking::section("history flow write");
            s.apply_flows(&c)
        })
        .await;
        match result {
            Ok(Ok(())) => {
                stats
                    .written
                    .fetch_add(changes.len() as u64, Ordering::Relaxed);
                return true;
            }
            Ok(Err(err)) => {
                if stats.failures.fetch_add(1, Ordering::Relaxed) % 50 == 0 {
                    tracing::warn!(error = %err, "history: flow write failed; flows are queued");
                }
            }
            Err(_) => {
                stats.failures.fetch_add(1, Ordering::Relaxed);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.changed() => return false,
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// Writes the recorder's queue to `store` until `shutdown` turns true (then what is
/// queued is written once more, best effort). First closes the revisions of this
/// server's flows that a previous run left open.
pub async fn run(
    store: Arc<dyn HistoryStore>,
    stats: Arc<FlowStats>,
    retention: super::Retention,
    mut queue: FlowQueue,
    mut shutdown: watch::Receiver<bool>,
) {
    let prefix = format!("{}/", queue.host);
    let at = now_ms();
    let s = store.clone();
    let closed = tokio::task::spawn_blocking(move || s.close_open_flows(&prefix, at)).await;
    if let Ok(Err(err)) = closed {
        tracing::warn!(error = %err, "history: cannot close the flows of the previous run");
    }
    let mut every = tokio::time::interval(super::writer::RETENTION_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let first = tokio::select! {
            c = queue.rx.recv() => c,
            _ = every.tick() => {
                let s = store.clone();
                let cutoff = now_ms().saturating_sub(retention.keep.as_millis() as i64);
                let max = retention.max_bytes;
                match tokio::task::spawn_blocking(move || retain(s.as_ref(), cutoff, max)).await {
                    Ok(Ok((n, bytes))) => {
                        stats.purged.fetch_add(n, Ordering::Relaxed);
                        stats.bytes.store(bytes, Ordering::Relaxed);
                    }
                    Ok(Err(err)) => tracing::warn!(error = %err, "history: flow retention failed"),
                    Err(_) => {}
                }
                continue;
            }
            _ = shutdown.changed() => None,
        };
        let Some(first) = first else { break };
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + BATCH_WAIT;
        while batch.len() < BATCH {
            match tokio::time::timeout_at(deadline, queue.rx.recv()).await {
                Ok(Some(c)) => batch.push(c),
                Ok(None) | Err(_) => break,
            }
        }
        let n = batch.len() as u64;
        let written = write(&store, &stats, batch, &mut shutdown).await;
        stats.backlog.fetch_sub(n, Ordering::Relaxed);
        if !written {
            break;
        }
    }
    // Shutting down: what the captures report as they stop (until they have been
    // quiet for a moment, 3 s at most), written once.
    let mut rest = Vec::new();
    let end = tokio::time::Instant::now() + Duration::from_secs(3);
    while rest.len() < QUEUE {
        let quiet = (tokio::time::Instant::now() + Duration::from_millis(500)).min(end);
        match tokio::time::timeout_at(quiet, queue.rx.recv()).await {
            Ok(Some(c)) => rest.push(c),
            Ok(None) | Err(_) => break,
        }
    }
    if !rest.is_empty() {
        let n = rest.len() as u64;
        let s = store.clone();
        let r = tokio::task::spawn_blocking(move || s.apply_flows(&rest)).await;
        if matches!(r, Ok(Ok(()))) {
            stats.written.fetch_add(n, Ordering::Relaxed);
        }
        stats.backlog.fetch_sub(n, Ordering::Relaxed);
    }
}

/// Runs flow retention: what ended before `cutoff`, then what exceeds the bytes the
/// node and edge revisions leave of `max_bytes`.
pub fn retain(
    store: &dyn HistoryStore,
    cutoff: i64,
    max_bytes: u64,
) -> Result<(u64, u64), HistoryError> {
    let mut n = store.purge_flows_before(cutoff)?;
    let (graph_bytes, _) = store.usage()?;
    n += store.enforce_flow_size(max_bytes.saturating_sub(graph_bytes))?;
    Ok((n, store.flow_usage()?.0))
}

/// One flow as it was during a time: its latest revision then (its JSON and raw
/// frames), and the `LastUpdateMetric` of each of its revisions in the time, oldest
/// first.
#[derive(Debug, Clone)]
pub struct PastFlow {
    pub node: Identifier,
    pub doc: Value,
    pub samples: Vec<Map<String, Value>>,
    /// The raw frames of its latest revision that has some, encoded.
    pub raw: Vec<u8>,
}

/// The flows of revisions read for a time (point or window), one per flow, in the
/// order of their first revision.
pub fn past_flows(mut revisions: Vec<FlowRevision>) -> Vec<PastFlow> {
    revisions.sort_by(|a, b| (a.from, &a.id).cmp(&(b.from, &b.id)));
    let mut out: Vec<PastFlow> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for r in revisions {
        let Ok(doc) = serde_json::from_slice::<Value>(&r.doc) else {
            continue;
        };
        let sample = doc
            .get("LastUpdateMetric")
            .and_then(Value::as_object)
            .cloned();
        let i = *index.entry(r.id).or_insert_with(|| {
            out.push(PastFlow {
                node: Identifier::from(r.node.as_str()),
                doc: Value::Null,
                samples: Vec::new(),
                raw: Vec::new(),
            });
            out.len() - 1
        });
        let flow = &mut out[i];
        if let Some(s) = sample {
            let same = |x: &Map<String, Value>| {
                x.get("Start") == s.get("Start") && x.get("Last") == s.get("Last")
            };
            if !flow.samples.iter().any(same) {
                flow.samples.push(s);
            }
        }
        flow.doc = doc;
        if !r.raw.is_empty() {
            flow.raw = r.raw;
        }
    }
    out
}
