//! Placement that follows the topology: every capture's Gremlin query is evaluated
//! against the live graph whenever the graph or the set of captures changes, and a
//! capture thread runs on exactly the capturable interfaces it matches. An interface
//! that comes to match (a namespace created later) gets one; an interface that stops
//! matching or disappears has its capture stopped and its `Captures` entry removed.
//!
//! Every second, `Metadata.Captures` of each captured node is refreshed with the state
//! and counters of its captures (`active` or `error` with the reason).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::broadcast::error::RecvError;
use topotap_topology::gremlin::Output;
use topotap_topology::{Graph, Identifier, NodeIx};
use tracing::{debug, warn};

use super::engine::{effective_filter, CaptureSpec, PacketSink, Worker, WorkerState};
use super::Capture;
use crate::error::Error;
use crate::metrics::CapturePoint;
use crate::services::Services;

/// How long graph changes are collected before placement runs again.
const DEBOUNCE: Duration = Duration::from_millis(100);
/// How often `Metadata.Captures` is refreshed.
const STATS_INTERVAL: Duration = Duration::from_secs(1);

/// Node types that are not network interfaces.
const NOT_CAPTURABLE: &[&str] = &["host", "netns", "ovsbridge", "ovsport"];

/// Builds what a capture's packets are fed to, given the capture and the node it runs on.
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
}

type Key = (String, Identifier);

struct Running {
    worker: Worker,
    target: Target,
    capture: Capture,
}

/// Runs placement until `shutdown` turns true; then stops every capture, letting each
/// sink export what it still holds.
pub async fn run(
    state: Services,
    sinks: SinkFactory,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut placer = Placer {
        state,
        sinks,
        running: HashMap::new(),
        failed: BTreeMap::new(),
        decorated: BTreeSet::new(),
    };
    let mut store = placer.state.captures.watch();
    let mut events = placer.state.graph.subscribe();
    let mut stats = tokio::time::interval(STATS_INTERVAL);
    let mut dirty = true;
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            changed = store.changed() => {
                if changed.is_err() {
                    break;
                }
                dirty = true;
            }
            ev = events.recv() => match ev {
                Ok(_) => dirty = true,
                Err(RecvError::Lagged(_)) => {
                    events = placer.state.graph.subscribe();
                    dirty = true;
                }
                Err(RecvError::Closed) => break,
            },
            _ = stats.tick() => placer.publish_state(),
            _ = tokio::time::sleep(DEBOUNCE), if dirty => {
                dirty = false;
                placer.reconcile().await;
                placer.sync_board();
                placer.publish_state();
            }
        }
    }
    placer.stop_all().await;
}

struct Placer {
    state: Services,
    sinks: SinkFactory,
    running: HashMap<Key, Running>,
    /// Captures that could not start on a node, with the reason (shown as `error`).
    failed: BTreeMap<Key, (Capture, String)>,
    /// Nodes whose `Captures` key we set, to clear it when nothing runs there any more.
    decorated: BTreeSet<Identifier>,
}

impl Placer {
    /// Evaluates every capture's query and starts/stops workers to match.
    async fn reconcile(&mut self) {
        let captures = self.state.captures.list();
        let mut desired: HashMap<Key, (Capture, Target)> = HashMap::new();
        {
            let g = self.state.graph.read();
            for c in &captures {
                let Ok(ast) = topotap_grammar::parse(&c.gremlin_query) else {
                    continue;
                };
                let nodes =
                    match topotap_topology::gremlin::evaluate(&ast, &g, &self.state.extensions) {
                        Ok(out) => matched_nodes(out),
                        Err(e) => {
                            debug!(capture = %c.uuid, "query failed: {e}");
                            continue;
                        }
                    };
                for n in nodes {
                    if let Some(t) = capture_target(&g, n) {
                        desired.insert((c.uuid.clone(), t.node.clone()), (c.clone(), t));
                    }
                }
            }
        }
        // Stop what no longer matches, or whose interface was renamed or moved.
        let stale: Vec<Key> = self
            .running
            .iter()
            .filter(|(k, r)| match desired.get(*k) {
                None => true,
                Some((c, t)) => *t != r.target || *c != r.capture,
            })
            .map(|(k, _)| k.clone())
            .collect();
        let mut stopping = Vec::new();
        for k in stale {
            if let Some(r) = self.running.remove(&k) {
                stopping.push(r.worker);
            }
        }
        if !stopping.is_empty() {
            // Joining waits for the final export of each sink: off the async workers.
            let _ = tokio::task::spawn_blocking(move || {
                for w in stopping {
                    w.stop();
                }
            })
            .await;
        }
        self.failed.retain(|k, _| desired.contains_key(k));

        let new: Vec<(Key, (Capture, Target))> = desired
            .into_iter()
            .filter(|(k, _)| !self.running.contains_key(k))
            .collect();
        if new.is_empty() {
            return;
        }
        // Resolving collectors and opening export sockets block (name lookups): off the
        // async workers, all the new captures of this round in one blocking task.
        let sinks = self.sinks.clone();
        let opened = tokio::task::spawn_blocking(move || {
            let exports = super::export::export_flows(&captures);
            new.into_iter()
                .map(|(key, (capture, target))| {
                    let spec = CaptureSpec {
                        ifname: target.ifname.clone(),
                        netns: target.netns.clone(),
                        bpf: effective_filter(&capture.bpf_filter, &exports),
                        snaplen: capture.snaplen(),
                    };
                    let sink = sinks(&capture, &target);
                    (key, capture, target, spec, sink)
                })
                .collect::<Vec<_>>()
        })
        .await;
        let Ok(opened) = opened else {
            warn!("opening capture sinks failed");
            return;
        };
        for (key, capture, target, spec, sink) in opened {
            match sink {
                Ok(sink) => {
                    self.failed.remove(&key);
                    let worker = Worker::spawn(spec, sink);
                    self.running.insert(
                        key,
                        Running {
                            worker,
                            target,
                            capture,
                        },
                    );
                }
                Err(e) => {
                    let reason = e.reason().to_owned();
                    // Retried at every placement (a name may come to resolve); said once.
                    if self.failed.get(&key).map(|(_, r)| r) != Some(&reason) {
                        warn!(capture = %capture.uuid, node = %target.node, "cannot start: {reason}");
                    }
                    self.failed.insert(key, (capture, reason));
                }
            }
        }
    }

    /// Writes `Metadata.Captures` on every node that has or had a capture.
    fn publish_state(&mut self) {
        let mut per_node: BTreeMap<Identifier, Vec<Value>> = BTreeMap::new();
        for ((_, node), r) in &self.running {
            let sh = &r.worker.shared;
            let (state, error) = match &*sh.state.lock() {
                WorkerState::Active => ("active", None),
                WorkerState::Starting => ("starting", None),
                WorkerState::Stopped => ("stopped", None),
                WorkerState::Error(e) => ("error", Some(e.clone())),
            };
            let mut entry = json!({
                "ID": r.capture.uuid,
                "State": state,
                "PacketsReceived": sh.received.load(Ordering::Relaxed),
                "PacketsDropped": sh.dropped.load(Ordering::Relaxed),
                "PacketsIfDropped": sh.if_dropped.load(Ordering::Relaxed),
                "Type": r.capture.engine(),
            });
            if !r.capture.bpf_filter.is_empty() {
                entry["BPFFilter"] = r.capture.bpf_filter.clone().into();
            }
            if let Some(e) = error {
                entry["Error"] = e.into();
            }
            if let Some(x) = &r.worker.export {
                entry["Export"] = x.to_json();
            }
            if let Some(f) = self.state.sinks.flows.table_stats(&r.capture.uuid, node) {
                entry["Flows"] = f;
            }
            per_node.entry(node.clone()).or_default().push(entry);
        }
        for ((_, node), (capture, reason)) in &self.failed {
            let mut entry = json!({
                "ID": capture.uuid,
                "State": "error",
                "Error": reason,
                "PacketsReceived": 0,
                "PacketsDropped": 0,
                "PacketsIfDropped": 0,
                "Type": capture.engine(),
            });
            if !capture.bpf_filter.is_empty() {
                entry["BPFFilter"] = capture.bpf_filter.clone().into();
            }
            per_node.entry(node.clone()).or_default().push(entry);
        }
        let mut g = self.state.graph.write();
        for (node, mut list) in per_node.clone() {
            list.sort_by(|a, b| a["ID"].as_str().cmp(&b["ID"].as_str()));
            let _ = g.update_node(&node, |m| {
                m.insert("Captures".into(), Value::Array(list));
            });
        }
        for node in &self.decorated {
            if !per_node.contains_key(node) {
                let _ = g.update_node(node, |m| {
                    m.remove("Captures");
                });
            }
        }
        self.decorated = per_node.into_keys().collect();
    }

    async fn stop_all(&mut self) {
        let workers: Vec<Worker> = self.running.drain().map(|(_, r)| r.worker).collect();
        let _ = tokio::task::spawn_blocking(move || {
            for w in workers {
                w.stop();
            }
        })
        .await;
        self.failed.clear();
        self.sync_board();
    }

    /// Shows the running capture points to `/metrics` (which reads their counters at
    /// scrape time).
    fn sync_board(&self) {
        let points = self.running.iter().map(|((uuid, node), r)| {
            let target_type = match r.capture.target_type.as_str() {
                "" => "local".to_owned(),
                t => t.to_owned(),
            };
            (
                (uuid.clone(), node.to_string()),
                CapturePoint {
                    capture: uuid.clone(),
                    interface: r.target.ifname.clone(),
                    target_type,
                    shared: r.worker.shared.clone(),
                    export: r.worker.export.clone(),
                },
            )
        });
        self.state.capture_board.sync(points, self.failed.len());
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

/// The interface behind a node, if packets can be captured there: a network interface
/// known to the kernel (it has an `IfIndex`), in the namespace of its owner.
fn capture_target(g: &Graph, ix: NodeIx) -> Option<Target> {
    let node = g.node(ix);
    let md = node.metadata();
    let kind = md.get("Type").and_then(Value::as_str).unwrap_or("");
    if NOT_CAPTURABLE.contains(&kind) {
        return None;
    }
    let ifname = md.get("Name").and_then(Value::as_str)?.to_owned();
    let if_index = md.get("IfIndex").and_then(Value::as_i64)?;
    let mut netns = None;
    for e in g.in_edges(ix) {
        let edge = g.edge(e);
        if edge.metadata().get("RelationType").and_then(Value::as_str) == Some("ownership") {
            let owner = edge.parent();
            let om = owner.metadata();
            if om.get("Type").and_then(Value::as_str) == Some("netns") {
                netns = om.get("Path").and_then(Value::as_str).map(PathBuf::from);
            }
        }
    }
    Some(Target {
        node: node.id().clone(),
        tid: md
            .get("TID")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        ifname,
        if_index,
        netns,
    })
}
