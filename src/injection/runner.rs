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
use topotap_topology::Identifier;
use tracing::{debug, warn};

use super::forge::{Forger, Headers, PacketPlan, Rng, Transport, DEFAULT_PAYLOAD_LEN};
use super::resource::{parse_mac, replay_frames, Injection, JobState};
use super::sender::{self, Frames, Job};
use crate::services::Services;

/// How often node metadata is refreshed, sources checked and TTLs applied.
pub const TICK: Duration = Duration::from_millis(500);

/// Runs until `shutdown` turns true, then stops every injection in progress.
pub async fn run(state: Services, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let store = state.injections.clone();
    let mut changes = store.watch();
    let mut runner = Runner {
        state,
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
    state: Services,
    /// Every stored injection this runner has seen, by UUID.
    jobs: HashMap<String, Injection>,
    /// Nodes whose `PacketInjections` we set, to clear it when nothing is left.
    decorated: BTreeSet<Identifier>,
}

impl Runner {
    /// Starts what is new in the store and stops what left it.
    fn reconcile(&mut self) {
        let current: HashMap<String, Injection> = self
            .state
            .injections
            .list()
            .into_iter()
            .map(|i| (i.uuid.clone(), i))
            .collect();
        self.jobs.retain(|uuid, inj| {
            let keep = current.contains_key(uuid);
            if !keep {
                debug!(injection = %uuid, "deleted: stopping");
                inj.progress.finish(JobState::Stopped);
            }
            keep
        });
        for (uuid, inj) in current {
            if self.jobs.contains_key(&uuid) {
                continue;
            }
            start(&inj);
            self.jobs.insert(uuid, inj);
        }
    }

    /// Ends, with an error, injections whose source interface left the topology (its
    /// namespace deleted, the link removed): sending would go nowhere or into a
    /// namespace kept alive only by the socket.
    fn check_sources(&mut self) {
        let g = self.state.graph.read();
        for inj in self.jobs.values() {
            if inj.progress.state.lock().is_over() {
                continue;
            }
            let Some(source) = inj.progress.source.lock().clone() else {
                continue;
            };
            if g.find_node(&source.node).is_none() {
                let reason = format!(
                    "interface {} left the topology (node {})",
                    source.ifname, source.node
                );
                warn!(injection = %inj.uuid, "{reason}");
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
        let mut g = self.state.graph.write();
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

/// Starts the sending thread of a new injection; what cannot start ends as `error`.
fn start(inj: &Injection) {
    let Some(source) = inj.progress.source.lock().clone() else {
        inj.progress.finish(JobState::Error(
            "the source interface was never resolved".into(),
        ));
        return;
    };
    let frames = match frames(inj) {
        Ok(f) => f,
        Err(e) => {
            inj.progress.finish(JobState::Error(e));
            return;
        }
    };
    sender::spawn(Job {
        source,
        frames,
        count: inj.count,
        interval: Duration::from_millis(inj.interval),
        progress: inj.progress.clone(),
    });
}

/// The frames of an injection: its pcap file, or the forging plan from its fields
/// (validated and resolved at create).
fn frames(inj: &Injection) -> Result<Frames, String> {
    if !inj.pcap.is_empty() {
        return replay_frames(&inj.pcap).map(Frames::Replay);
    }
    let (transport, _) = Transport::from_type(&inj.kind)
        .ok_or_else(|| format!("unsupported type {:?}", inj.kind))?;
    let mac = |s: &str| parse_mac(s).ok_or_else(|| format!("invalid MAC {s:?}"));
    let ip = |s: &str| {
        s.parse::<std::net::IpAddr>()
            .map_err(|_| format!("invalid IP {s:?}"))
    };
    let headers = Headers {
        transport,
        src_mac: mac(&inj.src_mac)?,
        dst_mac: mac(&inj.dst_mac)?,
        src_ip: ip(&inj.src_ip)?,
        dst_ip: ip(&inj.dst_ip)?,
        ttl: inj.ttl,
        dst_port: inj.dst_port,
    };
    let mut rng = Rng::from_entropy();
    let payload = if !inj.payload.is_empty() {
        inj.payload.as_bytes().to_vec()
    } else if transport == Transport::TcpSyn {
        Vec::new()
    } else {
        let mut p = Vec::new();
        rng.letters(DEFAULT_PAYLOAD_LEN, &mut p);
        p
    };
    let plan = PacketPlan {
        headers,
        base_id: if transport == Transport::IcmpEcho {
            inj.icmp_id
        } else {
            inj.src_port
        },
        random: inj.mode == "random",
        increment: usize::try_from(inj.increment_payload).unwrap_or(0),
        payload,
    };
    Ok(Frames::Forged(Box::new(Forger::new(plan, rng))))
}
