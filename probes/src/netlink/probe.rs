//! The netlink probe of one namespace: an initial dump, then the multicast groups, with
//! a full resync (dump + diff) on socket overrun. Only socket reads and kernel requests
//! happen here; translation is in `translate`, graph changes in `registry`.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::Arc;

use futures_util::StreamExt;
use netlink_packet_core::{NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_REQUEST};
use netlink_packet_route::address::AddressMessage;
use netlink_packet_route::neighbour::NeighbourMessage;
use netlink_packet_route::nsid::{NsidAttribute, NsidMessage};
use netlink_packet_route::route::RouteMessage;
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use serde_json::Value;
use topotap_topology::now_ms;

use super::ethtool;
use super::registry::{NsKey, Registry};
use super::translate::{self, Fields, LinkView};
use crate::nsenter::{open_ioctl_socket, open_route_socket, RouteSocket};
use crate::Ctx;

/// Name of the netlink probe in the status board.
pub const STATUS: &str = "netlink";

/// Addresses, neighbours and routes of the namespace's interfaces, kept to rebuild the
/// list-valued keys after each change.
#[derive(Default)]
struct Derived {
    addrs: HashMap<u32, BTreeSet<(bool, String)>>,
    neighbours: HashMap<u32, BTreeMap<String, Value>>,
    fdb: HashMap<u32, BTreeMap<String, Value>>,
    routes: HashMap<u32, translate::InterfaceRoutes>,
}

impl Derived {
    fn fields(&self, index: u32) -> Fields {
        let list = |v6: bool| {
            let l: Vec<Value> = self
                .addrs
                .get(&index)
                .into_iter()
                .flatten()
                .filter(|(is6, _)| *is6 == v6)
                .map(|(_, c)| Value::from(c.clone()))
                .collect();
            (!l.is_empty()).then_some(Value::Array(l))
        };
        let neighbours = self
            .neighbours
            .get(&index)
            .filter(|n| !n.is_empty())
            .map(|n| Value::Array(n.values().cloned().collect()));
        let fdb = self
            .fdb
            .get(&index)
            .filter(|n| !n.is_empty())
            .map(|n| Value::Array(n.values().cloned().collect()));
        let routes = self
            .routes
            .get(&index)
            .filter(|r| !r.is_empty())
            .map(translate::routing_tables);
        vec![
            ("IPV4", list(false)),
            ("IPV6", list(true)),
            ("Neighbors", neighbours),
            ("FDB", fdb),
            ("RoutingTables", routes),
        ]
    }

    fn address(&mut self, add: bool, msg: &AddressMessage) -> Option<u32> {
        let (index, v6, cidr) = translate::address_cidr(msg)?;
        let set = self.addrs.entry(index).or_default();
        if add {
            set.insert((v6, cidr));
        } else {
            set.remove(&(v6, cidr));
        }
        Some(index)
    }

    fn neighbour(&mut self, add: bool, msg: &NeighbourMessage) -> Option<u32> {
        let (index, key, value, map) = match translate::neighbour_entry(msg) {
            Some((i, k, v)) => (i, k, v, &mut self.neighbours),
            None => {
                let (i, k, v) = translate::fdb_entry(msg)?;
                (i, k, v, &mut self.fdb)
            }
        };
        let map = map.entry(index).or_default();
        if add {
            map.insert(key, value);
        } else {
            map.remove(&key);
        }
        Some(index)
    }

    fn route(&mut self, add: bool, msg: &RouteMessage) -> Vec<u32> {
        let Some(r) = translate::route_view(msg) else {
            return Vec::new();
        };
        for index in &r.ifindexes {
            let map = self.routes.entry(*index).or_default();
            if add {
                map.insert((r.table, r.key.clone()), (r.src.clone(), r.value.clone()));
            } else {
                map.remove(&(r.table, r.key.clone()));
            }
        }
        r.ifindexes
    }

    fn forget(&mut self, index: u32) {
        self.addrs.remove(&index);
        self.neighbours.remove(&index);
        self.fdb.remove(&index);
        self.routes.remove(&index);
    }
}

/// One change read from the socket or a dump.
enum Change {
    NewLink(Box<LinkView>),
    DelLink(u32),
    Address(bool, AddressMessage),
    Neighbour(bool, NeighbourMessage),
    Route(bool, RouteMessage),
}

pub(crate) struct NsProbe {
    ctx: Arc<Ctx>,
    ns: NsKey,
    name: String,
    handle: rtnetlink::Handle,
    derived: Derived,
    /// Namespace count at the last full `RTM_GETNSID` pass for unmapped ids.
    last_full_pass: usize,
    /// Ethtool facts: the socket they are read through, the last facts per link, the
    /// links being read and those changed again meanwhile, and where readers answer.
    ioctl: Option<Arc<std::os::fd::OwnedFd>>,
    facts: HashMap<u32, Fields>,
    reading: HashSet<u32>,
    reread: HashSet<u32>,
    to_read: Vec<u32>,
    facts_tx: tokio::sync::mpsc::UnboundedSender<(u32, std::io::Result<ethtool::Facts>)>,
}

/// Runs the probe of namespace `ns` (`file: None` = this process' own) until the task is
/// aborted or the socket fails.
pub(crate) async fn run(
    ctx: Arc<Ctx>,
    ns: NsKey,
    name: String,
    file: Option<Arc<File>>,
) -> anyhow::Result<()> {
    let RouteSocket {
        connection,
        handle,
        mut messages,
    } = open_route_socket(file.clone()).await?;
    let conn = AbortOnDrop(tokio::spawn(connection));
    let ioctl = match open_ioctl_socket(file).await {
        Ok(s) => Some(Arc::new(s)),
        Err(e) => {
            ctx.status
                .error(STATUS, format!("{name}: ethtool socket: {e}"));
            None
        }
    };
    let (facts_tx, mut facts_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut probe = NsProbe {
        ctx: ctx.clone(),
        ns,
        name,
        handle,
        derived: Derived::default(),
        last_full_pass: 0,
        ioctl,
        facts: HashMap::new(),
        reading: HashSet::new(),
        reread: HashSet::new(),
        to_read: Vec::new(),
        facts_tx,
    };
    probe.resync().await?;
    let mut tick = tokio::time::interval(ctx.metrics_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            msg = messages.next() => {
                let Some((msg, _)) = msg else {
                    anyhow::bail!("netlink connection closed");
                };
                let mut batch = vec![msg];
                while let Ok((m, _)) = messages.try_recv() {
                    batch.push(m);
                    if batch.len() >= 1024 {
                        break;
                    }
                }
                probe.handle_batch(batch).await;
            }
            _ = tick.tick() => probe.refresh().await,
            Some((index, facts)) = facts_rx.recv() => probe.got_facts(index, facts),
        }
        if conn.0.is_finished() {
            anyhow::bail!("netlink connection ended");
        }
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl NsProbe {
    /// Starts reading the ethtool facts of the links queued by the last changes, on
    /// blocking threads; a link already being read is read again once that ends.
    fn start_reads(&mut self) {
        let Some(sock) = self.ioctl.clone() else {
            self.to_read.clear();
            return;
        };
        for index in std::mem::take(&mut self.to_read) {
            if !self.reading.insert(index) {
                self.reread.insert(index);
                continue;
            }
            let sock = sock.clone();
            let tx = self.facts_tx.clone();
            tokio::task::spawn_blocking(move || {
                let _ = tx.send((index, ethtool::read(&sock, index)));
            });
        }
    }

    /// Records the facts read for link `index` and puts them on its node.
    fn got_facts(&mut self, index: u32, facts: std::io::Result<ethtool::Facts>) {
        self.reading.remove(&index);
        if self.reread.remove(&index) {
            self.to_read.push(index);
            self.start_reads();
            return;
        }
        // An error means the link went away meanwhile: its deletion follows.
        let Ok(facts) = facts else { return };
        let fields = facts.fields();
        // Read again on every metric tick: the node is written only when they changed.
        if self.facts.get(&index) == Some(&fields) {
            return;
        }
        let mut reg = self.ctx.registry.lock();
        if !reg.has_namespace(self.ns) || reg.node_id(self.ns, index).is_none() {
            return;
        }
        let mut g = self.ctx.graph.write();
        reg.set_fields(&mut g, self.ns, index, &fields);
        self.facts.insert(index, fields);
    }

    async fn handle_batch(&mut self, batch: Vec<NetlinkMessage<RouteNetlinkMessage>>) {
        let mut changes = Vec::with_capacity(batch.len());
        for msg in batch {
            match msg.payload {
                NetlinkPayload::Overrun(_) => {
                    tracing::warn!(namespace = %self.name, "netlink overrun, resynchronising");
                    self.ctx.status.add_counter(STATUS, "Overruns", 1);
                    if let Err(e) = self.resync().await {
                        self.ctx
                            .status
                            .error(STATUS, format!("{}: resync: {e:#}", self.name));
                    }
                    return;
                }
                NetlinkPayload::InnerMessage(m) => {
                    if let Some(c) = change(m) {
                        changes.push(c);
                    }
                }
                _ => {}
            }
        }
        self.apply(changes).await;
    }

    /// Maps unknown peer-namespace ids of `views` by asking the kernel about candidate
    /// namespaces (`RTM_GETNSID` with their fd).
    async fn resolve(&mut self, views: &[&LinkView]) {
        let mut asked = HashSet::new();
        for v in views {
            let Some(nsid) = v.link_netnsid else { continue };
            let candidates = {
                let reg = self.ctx.registry.lock();
                if reg.nsid_known(self.ns, nsid) {
                    continue;
                }
                reg.peer_candidates(self.ns, v)
            };
            for (key, file) in candidates {
                if !asked.insert(key) {
                    continue;
                }
                if self.ask_nsid(key, &file).await == Some(nsid) {
                    break;
                }
            }
        }
    }

    /// Asks which id this namespace gives to namespace `key`, and records it.
    async fn ask_nsid(&mut self, key: NsKey, file: &File) -> Option<i32> {
        let id = get_nsid(&mut self.handle, file).await?;
        let mut reg = self.ctx.registry.lock();
        let mut g = self.ctx.graph.write();
        reg.record_nsid(&mut g, self.ns, id, key);
        Some(id)
    }

    async fn apply(&mut self, changes: Vec<Change>) {
        let views: Vec<&LinkView> = changes
            .iter()
            .filter_map(|c| match c {
                Change::NewLink(v) if v.link_netnsid.is_some() && v.kind == "veth" => {
                    Some(v.as_ref())
                }
                _ => None,
            })
            .collect();
        if !views.is_empty() {
            let views: Vec<LinkView> = views.into_iter().cloned().collect();
            let refs: Vec<&LinkView> = views.iter().collect();
            self.resolve(&refs).await;
        }
        let unpeered: Vec<u32> = changes
            .iter()
            .filter_map(|c| match c {
                Change::NewLink(v) if v.kind == "veth" && v.peer_index.is_none() => Some(v.index),
                _ => None,
            })
            .collect();
        let mut retry = self.apply_locked(&changes);
        if !unpeered.is_empty() {
            // A veth's first RTM_NEWLINK can precede its peer's registration and so lack
            // IFLA_LINK; by now the pair exists: ask again.
            let mut again = Vec::new();
            for index in unpeered {
                let req = self.handle.link().get().match_index(index).execute();
                if let Ok(links) = collect(req).await {
                    again.extend(
                        links
                            .iter()
                            .filter(|l| translate::is_device_message(l))
                            .map(translate::link_view),
                    );
                }
            }
            let refs: Vec<&LinkView> = again.iter().collect();
            self.resolve(&refs).await;
            let again: Vec<Change> = again
                .into_iter()
                .map(|v| Change::NewLink(Box::new(v)))
                .collect();
            retry.extend(self.apply_locked(&again));
        }
        if !retry.is_empty() {
            // The peer appeared while we were resolving: verify and link it now.
            let refs: Vec<&LinkView> = retry.iter().collect();
            self.resolve(&refs).await;
            let again: Vec<Change> = retry
                .into_iter()
                .map(|v| Change::NewLink(Box::new(v)))
                .collect();
            self.apply_locked(&again);
        }
        self.start_reads();
    }

    /// Applies changes under the registry and graph locks; returns the links whose peer
    /// namespace still needs verifying.
    fn apply_locked(&mut self, changes: &[Change]) -> Vec<LinkView> {
        let mut retry = Vec::new();
        let mut dirty = BTreeSet::new();
        // Derived state first, so new links get their addresses at creation.
        for c in changes {
            match c {
                Change::Address(add, m) => dirty.extend(self.derived.address(*add, m)),
                Change::Neighbour(add, m) => dirty.extend(self.derived.neighbour(*add, m)),
                Change::Route(add, m) => dirty.extend(self.derived.route(*add, m)),
                _ => {}
            }
        }
        let mut reg = self.ctx.registry.lock();
        if !reg.has_namespace(self.ns) {
            return retry; // being removed
        }
        let mut g = self.ctx.graph.write();
        let now = now_ms();
        for c in changes {
            match c {
                Change::NewLink(v) => {
                    let metric = v
                        .stats
                        .as_ref()
                        .and_then(|s| translate::next_metric(None, s, now));
                    let mut extra = self.derived.fields(v.index);
                    extra.extend(self.facts.get(&v.index).cloned().unwrap_or_default());
                    self.to_read.push(v.index);
                    if let Some(up) = reg.upsert_link(&mut g, self.ns, v, &extra, metric) {
                        if up.needs_nsid {
                            retry.push(v.as_ref().clone());
                        }
                    }
                    dirty.remove(&v.index);
                }
                Change::DelLink(index) => {
                    reg.remove_link(&mut g, self.ns, *index);
                    self.derived.forget(*index);
                    self.facts.remove(index);
                    dirty.remove(index);
                }
                _ => {}
            }
        }
        for index in dirty {
            reg.set_fields(&mut g, self.ns, index, &self.derived.fields(index));
        }
        self.ctx
            .status
            .set_counter(STATUS, "Interfaces", reg.interface_count() as u64);
        retry
    }

    /// Dumps links, addresses, neighbours and routes and makes the graph match them.
    pub(crate) async fn resync(&mut self) -> anyhow::Result<()> {
        let links = collect(self.handle.link().get().execute()).await?;
        let addrs = collect(self.handle.address().get().execute()).await?;
        let mut neighbours = collect(self.handle.neighbours().get().execute()).await?;
        // The bridge forwarding database, in case the unspecified-family dump left it out
        // (entries seen twice are the same map entry).
        neighbours.extend(
            collect(
                self.handle
                    .neighbours()
                    .get()
                    .set_address_family(AddressFamily::Bridge)
                    .execute(),
            )
            .await?,
        );
        let mut routes = Vec::new();
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            let mut m = RouteMessage::default();
            m.header.address_family = family;
            routes.extend(collect(self.handle.route().get(m).execute()).await?);
        }
        self.derived = Derived::default();
        let mut changes: Vec<Change> = Vec::new();
        let present: HashSet<u32> = links
            .iter()
            .filter(|l| translate::is_device_message(l))
            .map(|l| l.header.index)
            .collect();
        let stale: Vec<u32> = {
            let reg = self.ctx.registry.lock();
            reg.indexes(self.ns)
                .into_iter()
                .filter(|i| !present.contains(i))
                .collect()
        };
        changes.extend(stale.into_iter().map(Change::DelLink));
        changes.extend(addrs.into_iter().map(|a| Change::Address(true, a)));
        changes.extend(neighbours.into_iter().map(|n| Change::Neighbour(true, n)));
        changes.extend(routes.into_iter().map(|r| Change::Route(true, r)));
        changes.extend(
            links
                .iter()
                .filter(|l| translate::is_device_message(l))
                .map(|l| Change::NewLink(Box::new(translate::link_view(l)))),
        );
        self.apply(changes).await;
        self.ctx.status.add_counter(STATUS, "Resyncs", 1);
        Ok(())
    }

    /// Periodic work: counters into `Metric`, and a last attempt at mapping namespace ids
    /// still unknown (when namespaces came or went since the previous attempt).
    async fn refresh(&mut self) {
        let repeer = match collect(self.handle.link().get().execute()).await {
            Ok(links) => {
                let now = now_ms();
                let reg = self.ctx.registry.lock();
                let mut repeer = Vec::new();
                // Counters are compared under the read lock; the write lock is taken
                // only when some changed, for those nodes alone.
                let updates: Vec<_> = {
                    let g = self.ctx.graph.read();
                    links
                        .iter()
                        .filter(|l| translate::is_device_message(l))
                        .filter_map(|l| {
                            if reg.veth_without_peer(self.ns, l.header.index) {
                                repeer.push(Change::NewLink(Box::new(translate::link_view(l))));
                            }
                            let stats = l.attributes.iter().find_map(|a| match a {
                                netlink_packet_route::link::LinkAttribute::Stats64(s) => Some(*s),
                                _ => None,
                            })?;
                            reg.next_metric(&g, self.ns, l.header.index, |prev| {
                                translate::next_metric(prev, &stats, now)
                            })
                        })
                        .collect()
                };
                if !updates.is_empty() {
                    let mut g = self.ctx.graph.write();
                    for u in updates {
                        Registry::write_metric(&mut g, u);
                    }
                }
                repeer
            }
            Err(e) => {
                self.ctx
                    .status
                    .error(STATUS, format!("{}: metrics: {e:#}", self.name));
                Vec::new()
            }
        };
        if !repeer.is_empty() {
            self.apply(repeer).await;
        }
        // Ethtool facts also change without a link message (`ethtool -s` setting a
        // speed): every link's are read again, at the pace of the counters.
        self.to_read.extend(self.facts.keys().copied());
        self.start_reads();
        let (unresolved, others, count) = {
            let reg = self.ctx.registry.lock();
            (
                reg.unresolved(self.ns),
                reg.other_namespaces(self.ns),
                reg.namespace_count(),
            )
        };
        if unresolved.is_empty() || count == self.last_full_pass {
            return;
        }
        self.last_full_pass = count;
        let wanted: HashSet<i32> = unresolved.iter().map(|(_, n)| *n).collect();
        let mut found = HashSet::new();
        for (key, file) in others {
            if let Some(id) = self.ask_nsid(key, &file).await {
                found.insert(id);
                if wanted.is_subset(&found) {
                    break;
                }
            }
        }
    }
}

fn change(m: RouteNetlinkMessage) -> Option<Change> {
    Some(match m {
        RouteNetlinkMessage::NewLink(l) if translate::is_device_message(&l) => {
            Change::NewLink(Box::new(translate::link_view(&l)))
        }
        RouteNetlinkMessage::DelLink(l) if translate::is_device_message(&l) => {
            Change::DelLink(l.header.index)
        }
        RouteNetlinkMessage::NewAddress(a) => Change::Address(true, a),
        RouteNetlinkMessage::DelAddress(a) => Change::Address(false, a),
        RouteNetlinkMessage::NewNeighbour(n) => Change::Neighbour(true, n),
        RouteNetlinkMessage::DelNeighbour(n) => Change::Neighbour(false, n),
        RouteNetlinkMessage::NewRoute(r) => Change::Route(true, r),
        RouteNetlinkMessage::DelRoute(r) => Change::Route(false, r),
        _ => return None,
    })
}

async fn collect<T>(
    stream: impl futures_util::Stream<Item = Result<T, rtnetlink::Error>>,
) -> anyhow::Result<Vec<T>> {
    let mut out = Vec::new();
    futures_util::pin_mut!(stream);
    while let Some(item) = stream.next().await {
        out.push(item?);
    }
    Ok(out)
}

/// `RTM_GETNSID` for the namespace open as `file`: the id this socket's namespace gives
/// it, `None` if none is assigned (or the request failed).
async fn get_nsid(handle: &mut rtnetlink::Handle, file: &File) -> Option<i32> {
    let mut msg = NsidMessage::default();
    msg.attributes = vec![NsidAttribute::Fd(file.as_raw_fd() as u32)];
    let mut req = NetlinkMessage::from(RouteNetlinkMessage::GetNsId(msg));
    req.header.flags = NLM_F_REQUEST | NLM_F_ACK;
    let mut responses = handle.request(req).ok()?;
    let mut id = None;
    while let Some(resp) = responses.next().await {
        if let NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewNsId(m)) = resp.payload {
            id = m.attributes.iter().find_map(|a| match a {
                NsidAttribute::Id(i) if *i >= 0 => Some(*i),
                _ => None,
            });
        }
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_fields_are_the_derived_keys() {
        let keys: Vec<&str> = Derived::default()
            .fields(1)
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(keys, translate::DERIVED_KEYS);
    }
}
