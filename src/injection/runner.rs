//! Runs the stored injections: a sending thread for every new one, a stop for every
//! deleted one, an `error` end for one whose source interface left the topology, and
//! `Metadata.PacketInjections` on each source node refreshed every [`TICK`] (entries
//! `{ID, State, Type, Count, Interval, PacketCount, SrcIP, DstIP, Error?}`). Finished
//! injections keep their entry, `State: done`, until the resource is deleted or
//! expires (`X-Resource-TTL`, applied here).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::{json, Value};
use topotap_topology::{Identifier, SharedGraph};
use tracing::{debug, warn};

use super::forge::{Forger, Rng};
use super::resource::{Injection, JobState, PlannedFrames};
use super::sender::{self, Frames, Job};
use crate::resources::Definitions;

/// How often node metadata is refreshed, sources checked and TTLs applied.
pub const TICK: Duration = Duration::from_millis(500);

/// Runs until `shutdown` turns true, then stops every injection in progress. Runs
/// the stored injections and those analyzers dispatched to this agent (`dispatched`).
pub async fn run(
    graph: SharedGraph,
    injections: Definitions<Injection>,
    dispatched: Definitions<Injection>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let store = injections.clone();
    let mut changes = store.watch();
    let mut dispatched_changes = dispatched.watch();
    let mut runner = Runner {
        graph,
        injections,
        dispatched,
        jobs: HashMap::new(),
        decorated: BTreeSet::new(),
    };
    let mut tick = tokio::time::interval(TICK);
    runner.reconcile();
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            changed = changes.changed() => {
                if changed.is_err() {
                    break;
                }
                runner.reconcile();
                runner.publish();
            }
            Ok(()) = dispatched_changes.changed() => {
                runner.reconcile();
                runner.publish();
            }
            _ = tick.tick() => {
                store.expire(topotap_topology::now_ms()).await;
                runner.check_sources();
                runner.publish();
            }
        }
    }
    for inj in runner.jobs.values() {
        inj.progress.finish(JobState::Stopped);
    }
}

struct Runner {
    graph: SharedGraph,
    injections: Definitions<Injection>,
    dispatched: Definitions<Injection>,
    /// Every stored injection this runner has seen, by UUID.
    jobs: HashMap<String, Injection>,
    /// Nodes whose `PacketInjections` we set, to clear it when nothing is left.
    decorated: BTreeSet<Identifier>,
}

impl Runner {
    /// Starts what is new in the store and stops what left it.
    fn reconcile(&mut self) {
        let current: HashMap<String, Injection> = self
            .injections
            .list()
            .into_iter()
            .chain(self.dispatched.list())
            .map(|i| (i.uuid.clone(), i))
            .collect();
        let (start, stop) = changes(&self.jobs, &current);
        for uuid in stop {
            if let Some(inj) = self.jobs.remove(&uuid) {
                debug!(injection = %uuid, "deleted: stopping");
                inj.progress.finish(JobState::Stopped);
            }
        }
        for uuid in start {
            if let Some(inj) = current.get(&uuid) {
                start_job(inj);
                self.jobs.insert(uuid, inj.clone());
            }
        }
    }

    /// Ends, with an error, injections whose source interface left the topology (its
    /// namespace deleted, the link removed): sending would go nowhere or into a
    /// namespace kept alive only by the socket.
    fn check_sources(&mut self) {
        let lost = {
            let g = self.graph.read();
            lost_sources(self.jobs.values(), |n| g.find_node(n).is_some())
        };
        for (uuid, reason) in lost {
            warn!(injection = %uuid, "{reason}");
            if let Some(inj) = self.jobs.get(&uuid) {
                inj.progress.finish(JobState::Error(reason));
            }
        }
    }

    /// Writes `Metadata.PacketInjections` on every source node.
    fn publish(&mut self) {
        let mut per_node: BTreeMap<Identifier, Vec<Value>> = BTreeMap::new();
        for inj in self.jobs.values() {
            let Some(source) = inj.progress.source.lock().clone() else {
                continue;
            };
            let state = inj.progress.state.lock().clone();
            let mut entry = json!({
                "ID": inj.uuid,
                "State": state.name(),
                "Type": inj.kind,
                "Count": inj.count,
                "Interval": inj.interval,
                "PacketCount": inj.progress.packets.load(Ordering::Relaxed),
                "SrcIP": inj.src_ip,
                "DstIP": inj.dst_ip,
            });
            if !inj.pcap.is_empty() {
                entry["Pcap"] = true.into();
            }
            if let JobState::Error(e) = state {
                entry["Error"] = e.into();
            }
            per_node.entry(source.node).or_default().push(entry);
        }
        let mut g = self.graph.write();
        for (node, mut list) in per_node.clone() {
            list.sort_by(|a, b| a["ID"].as_str().cmp(&b["ID"].as_str()));
            let _ = g.update_node(&node, |m| {
                m.insert("PacketInjections".into(), Value::Array(list));
            });
        }
        for node in &self.decorated {
            if !per_node.contains_key(node) {
                let _ = g.update_node(node, |m| {
                    m.remove("PacketInjections");
                });
            }
        }
        self.decorated = per_node.into_keys().collect();
    }
}

/// What to start and what to stop: injections new in the store, and those that left it
/// (deleted or expired).
pub fn changes(
    jobs: &HashMap<String, Injection>,
    current: &HashMap<String, Injection>,
) -> (Vec<String>, Vec<String>) {
    let mut start: Vec<String> = current
        .keys()
        .filter(|u| !jobs.contains_key(*u))
        .cloned()
        .collect();
    let mut stop: Vec<String> = jobs
        .keys()
        .filter(|u| !current.contains_key(*u))
        .cloned()
        .collect();
    start.sort();
    stop.sort();
    (start, stop)
}

/// Injections still going whose source interface is no longer in the graph, with the
/// reason they end: sending would go nowhere or into a namespace kept alive only by
/// the socket.
pub fn lost_sources<'a>(
    jobs: impl Iterator<Item = &'a Injection>,
    exists: impl Fn(&Identifier) -> bool,
) -> Vec<(String, String)> {
    let mut lost = Vec::new();
    for inj in jobs {
        if inj.progress.state.lock().is_over() {
            continue;
        }
        let Some(source) = inj.progress.source.lock().clone() else {
            continue;
        };
        if !exists(&source.node) {
            lost.push((
                inj.uuid.clone(),
                format!(
                    "interface {} left the topology (node {})",
                    source.ifname, source.node
                ),
            ));
        }
    }
    lost.sort();
    lost
}

/// Starts the sending thread of a new injection from its plan; one without a plan
/// (never resolved) ends as `error`.
fn start_job(inj: &Injection) {
    let Some(plan) = inj.progress.plan.lock().clone() else {
        inj.progress.finish(JobState::Error(
            "the source interface was never resolved".into(),
        ));
        return;
    };
    let frames = match &plan.frames {
        PlannedFrames::Forged(p) => {
            Frames::Forged(Box::new(Forger::new(p.clone(), Rng::from_entropy())))
        }
        PlannedFrames::Replay(frames) => Frames::Replay(frames.clone()),
    };
    sender::spawn(Job {
        source: plan.source.clone(),
        frames,
        count: plan.count,
        interval: plan.interval,
        progress: inj.progress.clone(),
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::injection::resource::SourceInterface;

    fn injection(uuid: &str, node: Option<&str>) -> Injection {
        let inj = Injection {
            uuid: uuid.into(),
            ..Default::default()
        };
        *inj.progress.source.lock() = node.map(|n| SourceInterface {
            node: Identifier::from(n),
            ifname: format!("if-{n}"),
            netns: None,
        });
        inj
    }

    fn by_uuid(list: &[Injection]) -> HashMap<String, Injection> {
        list.iter().map(|i| (i.uuid.clone(), i.clone())).collect()
    }

    #[test]
    fn new_ones_start_and_deleted_ones_stop() {
        let (a, b, c) = (
            injection("a", None),
            injection("b", None),
            injection("c", None),
        );
        let jobs = by_uuid(&[a.clone(), b.clone()]);
        let current = by_uuid(&[b, c]);
        assert_eq!(
            changes(&jobs, &current),
            (vec!["c".to_owned()], vec!["a".to_owned()])
        );
        assert_eq!(changes(&current, &current), (vec![], vec![]));
    }

    #[test]
    fn injections_whose_interface_left_end_once() {
        let gone = injection("a", Some("n1"));
        let here = injection("b", Some("n2"));
        let done = injection("c", Some("n1"));
        done.progress.finish(JobState::Done);
        let exists = |n: &Identifier| n == &Identifier::from("n2");
        let lost = lost_sources([&gone, &here, &done].into_iter(), exists);
        assert_eq!(lost.len(), 1);
        assert_eq!(lost[0].0, "a");
        assert!(
            lost[0].1.starts_with("interface if-n1 left the topology"),
            "{}",
            lost[0].1
        );
    }
}
