//! The interfaces the netlink probes know, per namespace, and how they map onto graph
//! nodes and edges (Skydive §3.4–§3.7).
//!
//! Node identity is `(namespace, ifindex)`: a rename or a MAC change updates the same
//! node. Relations are recomputed from the registry whenever an interface changes:
//! - veth pairs: exactly one `layer2 {Type: veth}` edge per pair, parent = the end with
//!   the higher ifindex (ties across namespaces: the higher namespace inode). The peer's
//!   namespace comes from `IFLA_LINK_NETNSID` mapped through ids verified with
//!   `RTM_GETNSID`, never from a search of all namespaces for the ifindex;
//! - bridge (any master but `openvswitch`) -> member `layer2` without `Type`;
//! - vlan parent -> vlan `layer2 {Type: vlan}`.
//!
//! Interface nodes are shared with the OVS probe under the contract of
//! [`crate::ovsdb::merge`]:
//! - a new link first adopts the node the OVS probe made for it
//!   ([`merge::find_adoptable_interface_node`]) instead of creating a second one;
//! - a link that goes away deletes its node, except a node that carries an OVS `UUID`
//!   and stands for a device OVS drives ([`schema::is_ovs_driven`], e.g. an internal
//!   port): that one is only unlinked (netlink keys, ownership and netlink `layer2`
//!   edges removed) and left to the OVS probe;
//! - a device moved to another namespace (an internal port `ip link set P netns NS`)
//!   keeps its node whichever namespace reports first: if the new namespace made a node
//!   for it before the old one reported the deletion, the unlinked OVS node takes that
//!   node's place (same name and MAC, no `UUID`) and the fresh one is deleted.
//!
//! No I/O here: the probes do the kernel requests and call these methods under one lock,
//! together with the graph's write lock (always registry first, then graph).

use std::collections::HashMap;
use std::fs::File;
use std::sync::Arc;

use serde_json::{json, Value};
use topotap_topology::element::{remove_field, set_field};
use topotap_topology::schema::{self, key};
use topotap_topology::{tid, Edge, Graph, Identifier, Metadata, Node};

use super::translate::{Fields, LinkView, DERIVED_KEYS, LINK_KEYS};
use crate::ovsdb::merge;

/// A network namespace, identified by its nsfs inode.
pub type NsKey = u64;

/// A namespace whose interfaces are tracked.
#[derive(Debug, Clone)]
pub struct NsEntry {
    /// The node owning its interfaces: the host node (root namespace) or a netns node.
    pub owner: Identifier,
    pub owner_tid: Identifier,
    /// Shown as `LinkNetNsName` on interfaces whose peer lives there.
    pub name: String,
    /// An open handle on the namespace, for `RTM_GETNSID` requests naming it.
    pub file: Option<Arc<File>>,
}

#[derive(Debug, Clone)]
struct IfEntry {
    id: Identifier,
    kind: String,
    peer_index: Option<u32>,
    link_netnsid: Option<i32>,
    /// The namespace of a veth's peer, learned from the peer, when the kernel never
    /// said it: a veth made with both ends in one namespace, whose peer was then moved,
    /// gets no notification of the move and keeps no `IFLA_LINK_NETNSID`. Only read
    /// while `link_netnsid` is `None` and no veth of that index is in its own namespace.
    peer_ns: Option<NsKey>,
    master: Option<u32>,
    parent: Option<u32>,
}

type IfKey = (NsKey, u32);

/// What [`Registry::upsert_link`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct Upserted {
    pub id: Identifier,
    /// The link was new to the registry: its node was made, or adopted from the OVS probe.
    pub created: bool,
    /// The link names a peer namespace id not mapped yet while a matching peer is known:
    /// the probe should verify candidates with `RTM_GETNSID` and call again.
    pub needs_nsid: bool,
}

pub struct Registry {
    host: String,
    origin: String,
    namespaces: HashMap<NsKey, NsEntry>,
    interfaces: HashMap<IfKey, IfEntry>,
    by_id: HashMap<Identifier, IfKey>,
    /// `(namespace, nsid as seen from it)` -> namespace.
    nsids: HashMap<(NsKey, i32), NsKey>,
}

fn relation(rel: &str, kind: Option<&str>) -> Metadata {
    let mut m = Metadata::new();
    m.insert("RelationType".into(), Value::from(rel));
    if let Some(k) = kind {
        m.insert("Type".into(), Value::from(k));
    }
    m
}

/// Netlink keys the OVS probe also provides: they stay on a node netlink unlinks.
/// `IfIndex` is not one of them: an index only means something in its namespace.
const SHARED_WITH_OVS: &[&str] = &["Name", "Type", "MAC", "Driver"];

/// Keys only the netlink probe sets besides [`LINK_KEYS`] and [`DERIVED_KEYS`].
const OTHER_NETLINK_KEYS: &[&str] = &[
    "LinkNetNsName",
    "Metric",
    "LastUpdateMetric",
    "TID",
    "BusInfo",
    "Speed",
    "Duplex",
    "Features",
];

/// New counters for one interface node.
pub struct MetricUpdate {
    id: Identifier,
    metric: Value,
    last: Option<Value>,
}

/// Removes what only the netlink probe of the link's namespace knows from a node it
/// gives up (the OVS probe puts its own `TID` back when its bridge owns the node).
fn strip_netlink_keys(m: &mut Metadata) {
    let keys = LINK_KEYS
        .iter()
        .filter(|k| !SHARED_WITH_OVS.contains(k))
        .chain(DERIVED_KEYS)
        .chain(OTHER_NETLINK_KEYS);
    for k in keys {
        m.remove(*k);
    }
}

/// Whether the node must outlive its link: it carries an OVS `UUID` and stands for a
/// device OVS drives (Skydive: "OVS-driven with `UUID` → only unlinked").
fn kept_for_ovs(m: &Metadata) -> bool {
    m.contains_key(key::UUID) && schema::is_ovs_driven(m)
}

/// Applies `fields` to metadata (`None` removes); `Type` is left alone on nodes the OVS
/// probe has claimed (it has a `UUID`), as its type wins (§3.4).
pub fn apply_fields(m: &mut Metadata, fields: &Fields) {
    let ovs_owned = m.contains_key("UUID");
    for (k, v) in fields {
        if *k == "Type" && ovs_owned {
            continue;
        }
        match v {
            Some(v) => {
                set_field(m, k, v.clone());
            }
            None => {
                remove_field(m, k);
            }
        }
    }
}

impl Registry {
    pub fn new(host: &str, origin: &str) -> Self {
        Registry {
            host: host.to_owned(),
            origin: origin.to_owned(),
            namespaces: HashMap::new(),
            interfaces: HashMap::new(),
            by_id: HashMap::new(),
            nsids: HashMap::new(),
        }
    }

    pub fn add_namespace(&mut self, key: NsKey, entry: NsEntry) {
        self.namespaces.insert(key, entry);
    }

    pub fn has_namespace(&self, key: NsKey) -> bool {
        self.namespaces.contains_key(&key)
    }

    pub fn namespace(&self, key: NsKey) -> Option<&NsEntry> {
        self.namespaces.get(&key)
    }

    pub fn namespace_count(&self) -> usize {
        self.namespaces.len()
    }

    pub fn interface_count(&self) -> usize {
        self.interfaces.len()
    }

    /// Forgets a namespace: deletes its interface nodes and, unless it is owned by the
    /// host itself (`delete_owner == false`), its owner node with everything it owns.
    pub fn remove_namespace(&mut self, g: &mut Graph, key: NsKey, delete_owner: bool) {
        let Some(ns) = self.namespaces.remove(&key) else {
            return;
        };
        let gone: Vec<IfKey> = self
            .interfaces
            .keys()
            .filter(|k| k.0 == key)
            .copied()
            .collect();
        for k in gone {
            self.remove_interface(g, k, &ns.owner);
        }
        self.nsids
            .retain(|(from, _), to| *from != key && *to != key);
        if delete_owner && g.find_node(&ns.owner).is_some() {
            if let Err(e) = g.delete_subtree(&ns.owner) {
                tracing::warn!(namespace = %ns.name, error = %e, "deleting namespace node");
            }
        }
        // Interfaces elsewhere lose their LinkNetNsName toward it.
        let affected: Vec<IfKey> = self
            .interfaces
            .iter_mut()
            .filter(|(_, e)| e.link_netnsid.is_some() || e.peer_ns == Some(key))
            .map(|(k, e)| {
                if e.peer_ns == Some(key) {
                    e.peer_ns = None;
                }
                *k
            })
            .collect();
        for k in affected {
            self.sync_relations(g, k);
        }
    }

    /// A namespace's owner node got another name (and so TID): interfaces' TIDs and the
    /// `LinkNetNsName` of peers follow.
    pub fn rename_namespace(&mut self, g: &mut Graph, key: NsKey, name: &str, tid: Identifier) {
        let Some(ns) = self.namespaces.get_mut(&key) else {
            return;
        };
        ns.name = name.to_owned();
        ns.owner_tid = tid.clone();
        let keys: Vec<IfKey> = self.interfaces.keys().copied().collect();
        for k in keys {
            let e = &self.interfaces[&k];
            if k.0 == key {
                let id = e.id.clone();
                let _ = g.update_node(&id, |m| {
                    let n = m.get("Name").and_then(Value::as_str).unwrap_or("");
                    let t = m.get("Type").and_then(Value::as_str).unwrap_or("");
                    let owned = tid::owned(&tid, n, t).to_string();
                    m.insert("TID".into(), Value::from(owned));
                });
            } else if e.link_netnsid.is_some() || e.peer_ns == Some(key) {
                self.sync_relations(g, k);
            }
        }
    }

    /// Interface indexes known in a namespace.
    pub fn indexes(&self, ns: NsKey) -> Vec<u32> {
        self.interfaces
            .keys()
            .filter(|k| k.0 == ns)
            .map(|k| k.1)
            .collect()
    }

    pub fn node_id(&self, ns: NsKey, index: u32) -> Option<&Identifier> {
        self.interfaces.get(&(ns, index)).map(|e| &e.id)
    }

    /// Whether the veth `(ns, index)` is known without its peer index (its first
    /// notification can come before the peer has an index).
    pub fn veth_without_peer(&self, ns: NsKey, index: u32) -> bool {
        self.interfaces
            .get(&(ns, index))
            .is_some_and(|e| e.kind == "veth" && e.peer_index.is_none())
    }

    /// Interfaces of `ns` whose link names a namespace id not mapped yet.
    pub fn unresolved(&self, ns: NsKey) -> Vec<(u32, i32)> {
        self.interfaces
            .iter()
            .filter(|(k, _)| k.0 == ns)
            .filter_map(|(k, e)| {
                let id = e.link_netnsid?;
                (!self.nsids.contains_key(&(ns, id))).then_some((k.1, id))
            })
            .collect()
    }

    /// Namespaces that may hold the veth peer of `view` (in `ns`): those with a veth
    /// whose own peer index is `view.index` and index is `view.peer_index` (whatever it
    /// says of its peer's namespace: the kernel does not tell a veth its peer moved,
    /// and the namespaces' messages come in any order). The probe confirms each with
    /// `RTM_GETNSID` before anything is linked.
    fn candidate_namespaces(&self, ns: NsKey, view: &LinkView) -> Vec<NsKey> {
        let Some(peer) = view.peer_index else {
            return Vec::new();
        };
        self.interfaces
            .iter()
            .filter(|(k, e)| {
                k.0 != ns && k.1 == peer && e.kind == "veth" && e.peer_index == Some(view.index)
            })
            .map(|(k, _)| k.0)
            .collect()
    }

    /// [`Self::candidate_namespaces`] with handles to ask the kernel about them.
    pub fn peer_candidates(&self, ns: NsKey, view: &LinkView) -> Vec<(NsKey, Arc<File>)> {
        self.candidate_namespaces(ns, view)
            .into_iter()
            .filter_map(|k| Some((k, self.namespaces.get(&k)?.file.clone()?)))
            .collect()
    }

    /// Every other namespace, for a full `RTM_GETNSID` pass.
    pub fn other_namespaces(&self, ns: NsKey) -> Vec<(NsKey, Arc<File>)> {
        self.namespaces
            .iter()
            .filter(|(k, _)| **k != ns)
            .filter_map(|(k, e)| Some((*k, e.file.clone()?)))
            .collect()
    }

    pub fn nsid_known(&self, ns: NsKey, nsid: i32) -> bool {
        self.nsids.contains_key(&(ns, nsid))
    }

    /// Records that, seen from `ns`, namespace id `nsid` is `target`, and updates the
    /// interfaces of `ns` that refer to it.
    pub fn record_nsid(&mut self, g: &mut Graph, ns: NsKey, nsid: i32, target: NsKey) {
        if !self.namespaces.contains_key(&ns) || !self.namespaces.contains_key(&target) {
            return;
        }
        if self.nsids.insert((ns, nsid), target) == Some(target) {
            return;
        }
        let affected: Vec<IfKey> = self
            .interfaces
            .iter()
            .filter(|(k, e)| k.0 == ns && e.link_netnsid == Some(nsid))
            .map(|(k, _)| *k)
            .collect();
        for k in affected {
            self.sync_relations(g, k);
            self.sync_dependents(g, k);
        }
    }

    /// Creates or updates the node of a link. `extra` carries keys other messages own
    /// (addresses, neighbours, routes); `metric` is set only when given.
    pub fn upsert_link(
        &mut self,
        g: &mut Graph,
        ns: NsKey,
        view: &LinkView,
        extra: &Fields,
        metric: Option<(Value, Option<Value>)>,
    ) -> Option<Upserted> {
        let owner = self.namespaces.get(&ns)?.clone();
        let key = (ns, view.index);
        let tid = tid::owned(&owner.owner_tid, &view.name, &view.kind);
        let existing = self
            .interfaces
            .get(&key)
            .map(|e| e.id.clone())
            .filter(|id| g.find_node(id).is_some());
        let created = existing.is_none();
        let id = match existing {
            Some(id) => {
                let _ = g.update_node(&id, |m| {
                    apply_fields(m, &view.fields);
                    apply_fields(m, extra);
                    set_field(m, "TID", Value::from(tid.to_string()));
                });
                id
            }
            None => {
                if let Some(old) = self.interfaces.remove(&key) {
                    self.by_id.remove(&old.id);
                }
                let fill = |m: &mut Metadata| {
                    apply_fields(m, &view.fields);
                    apply_fields(m, extra);
                    m.insert("TID".into(), Value::from(tid.to_string()));
                    if let Some((metric, last)) = metric {
                        m.insert("Metric".into(), metric);
                        match last {
                            Some(last) => {
                                m.insert("LastUpdateMetric".into(), last);
                            }
                            None => {
                                m.remove("LastUpdateMetric");
                            }
                        }
                    }
                };
                match self.adoptable(g, view) {
                    Some(id) => {
                        tracing::debug!(interface = %view.name, node = %id, "adopting the OVS interface node");
                        let _ = g.update_node(&id, fill);
                        self.take_ownership(g, &owner.owner, &id);
                        id
                    }
                    None => {
                        let id = Identifier::random();
                        let mut m = Metadata::new();
                        fill(&mut m);
                        if let Err(e) =
                            g.add_node(Node::new(id.clone(), m, &self.host, &self.origin))
                        {
                            tracing::warn!(error = %e, "adding interface node");
                            return None;
                        }
                        self.take_ownership(g, &owner.owner, &id);
                        id
                    }
                }
            }
        };
        // What was learned of the peer's namespace holds as long as the kernel still
        // describes the same pair without a namespace id.
        let peer_ns = self
            .interfaces
            .get(&key)
            .filter(|old| view.link_netnsid.is_none() && old.peer_index == view.peer_index)
            .and_then(|old| old.peer_ns);
        self.interfaces.insert(
            key,
            IfEntry {
                id: id.clone(),
                kind: view.kind.clone(),
                peer_index: view.peer_index,
                link_netnsid: view.link_netnsid,
                peer_ns,
                master: view.master,
                parent: view.parent,
            },
        );
        self.by_id.insert(id.clone(), key);
        self.sync_relations(g, key);
        self.sync_dependents(g, key);
        let needs_nsid = match view.link_netnsid {
            Some(n) if view.kind == "veth" => {
                !self.nsids.contains_key(&(ns, n))
                    && !self.candidate_namespaces(ns, view).is_empty()
            }
            _ => false,
        };
        Some(Upserted {
            id,
            created,
            needs_nsid,
        })
    }

    /// Sets keys owned by address/neighbour/route messages on a known interface.
    pub fn set_fields(&mut self, g: &mut Graph, ns: NsKey, index: u32, fields: &Fields) {
        if let Some(e) = self.interfaces.get(&(ns, index)) {
            let _ = g.update_node(&e.id, |m| apply_fields(m, fields));
        }
    }

    /// The next `Metric`/`LastUpdateMetric` of an interface, read from the graph
    /// (`None`: unknown interface, or `next` found nothing changed), to write with
    /// [`Self::write_metric`]. Only reads: the caller holds the read lock.
    pub fn next_metric(
        &self,
        g: &Graph,
        ns: NsKey,
        index: u32,
        next: impl FnOnce(Option<&Value>) -> Option<(Value, Option<Value>)>,
    ) -> Option<MetricUpdate> {
        let e = self.interfaces.get(&(ns, index))?;
        let node = g.node_by_id(&e.id)?;
        let (metric, last) = next(node.metadata().get("Metric"))?;
        Some(MetricUpdate {
            id: e.id.clone(),
            metric,
            last,
        })
    }

    /// Sets `Metric`/`LastUpdateMetric` only.
    pub fn write_metric(g: &mut Graph, update: MetricUpdate) {
        let MetricUpdate { id, metric, last } = update;
        let _ = g.update_node(&id, |m| {
            m.insert("Metric".into(), metric);
            match last {
                Some(l) => {
                    m.insert("LastUpdateMetric".into(), l);
                }
                None => {
                    m.remove("LastUpdateMetric");
                }
            }
        });
    }

    /// `RTM_DELLINK`: the node goes, with every edge touching it, unless the OVS probe
    /// keeps it (see [`Self::remove_interface`]).
    pub fn remove_link(&mut self, g: &mut Graph, ns: NsKey, index: u32) {
        let Some(owner) = self.namespaces.get(&ns).map(|n| n.owner.clone()) else {
            return;
        };
        self.remove_interface(g, (ns, index), &owner);
    }

    /// Forgets an interface of the namespace owned by `owner`. Its node is deleted,
    /// unless it carries an OVS `UUID` and stands for a device OVS drives: then it is
    /// unlinked ([`Self::unlink`]) and stays for the OVS probe, which gives it back to
    /// its bridge (or deletes it when its row goes). If another namespace already made
    /// its own node for the same device (it was moved there), that node is merged into
    /// this one, which keeps its ID.
    fn remove_interface(&mut self, g: &mut Graph, key: IfKey, owner: &Identifier) {
        let Some(e) = self.interfaces.remove(&key) else {
            return;
        };
        self.by_id.remove(&e.id);
        // A veth whose peer was learned to be this one forgets it; one whose peer this
        // was in its own namespace looks for it elsewhere (it may have moved).
        let orphans: Vec<IfKey> = self
            .interfaces
            .iter_mut()
            .filter(|(k, o)| {
                o.peer_index == Some(key.1) && (o.peer_ns == Some(key.0) || k.0 == key.0)
            })
            .map(|(k, o)| {
                if o.peer_ns == Some(key.0) {
                    o.peer_ns = None;
                }
                *k
            })
            .collect();
        for k in orphans {
            self.sync_relations(g, k);
        }
        let Some(node) = g.node_by_id(&e.id) else {
            return;
        };
        if !kept_for_ovs(node.metadata()) {
            let _ = g.delete_node(&e.id);
            return;
        }
        tracing::debug!(node = %e.id, "link gone: OVS interface node unlinked, not deleted");
        self.unlink(g, &e.id, owner);
        self.take_over_moved(g, &e.id);
    }

    /// Takes a node the registry no longer tracks off the namespace owned by `owner`:
    /// its netlink-only keys, the ownership edge and the `layer2` edges derived from
    /// links (veth, bridge member, vlan) with the interfaces still known go; keys the
    /// OVS probe also provides, and its edges, stay.
    fn unlink(&mut self, g: &mut Graph, id: &Identifier, owner: &Identifier) {
        let Some(ix) = g.find_node(id) else {
            return;
        };
        let doomed: Vec<Identifier> = g
            .in_edges(ix)
            .chain(g.out_edges(ix))
            .filter(|eix| {
                let edge = g.edge(*eix);
                let md = edge.metadata();
                let (parent, child) = (edge.parent().id(), edge.child().id());
                match schema::str_of(md, key::RELATION_TYPE) {
                    Some(schema::relation::OWNERSHIP) => child == id && parent == owner,
                    Some(schema::relation::LAYER2) => {
                        let other = if parent == id { child } else { parent };
                        self.by_id.contains_key(other)
                            && matches!(
                                md.get("Type").and_then(Value::as_str),
                                None | Some("veth" | "vlan")
                            )
                    }
                    _ => false,
                }
            })
            .map(|eix| g.edge(eix).id().clone())
            .collect();
        for e in doomed {
            let _ = g.delete_edge(&e);
        }
        let _ = g.update_node(id, strip_netlink_keys);
    }

    /// A node for this link to adopt instead of creating one: the node the OVS probe
    /// made for the same device, if no namespace has it.
    fn adoptable(&self, g: &Graph, view: &LinkView) -> Option<Identifier> {
        let ix = merge::find_adoptable_interface_node(
            g,
            &view.name,
            Some(i64::from(view.index)),
            view.mac(),
        )?;
        let id = g.node(ix).id().clone();
        (!self.by_id.contains_key(&id)).then_some(id)
    }

    /// `owner` becomes the only `ownership` parent of `id` (an adopted node loses its
    /// bridge as owner at once; the OVS probe would otherwise remove that edge itself).
    fn take_ownership(&self, g: &mut Graph, owner: &Identifier, id: &Identifier) {
        let Some(ix) = g.find_node(id) else {
            return;
        };
        let others: Vec<Identifier> = g
            .in_edges(ix)
            .map(|e| g.edge(e))
            .filter(|e| schema::is_ownership(e.metadata()) && e.parent().id() != owner)
            .map(|e| e.id().clone())
            .collect();
        for e in others {
            let _ = g.delete_edge(&e);
        }
        let edge = Edge::new(
            owner.clone(),
            id.clone(),
            relation(schema::relation::OWNERSHIP, None),
            &self.host,
            &self.origin,
        );
        if g.find_edge(&edge.id).is_none() {
            if let Err(e) = g.add_edge(edge) {
                tracing::warn!(error = %e, "adding ownership edge");
            }
        }
    }

    /// `id` was just unlinked: if a namespace made a node of its own for the same
    /// device meanwhile (same `Name` and `MAC`, no `UUID`: its `RTM_NEWLINK` was handled
    /// before the old namespace's `RTM_DELLINK`), `id` takes that node's place — its
    /// metadata (but `Type`, which OVS owns), its registry entry, its ownership and
    /// link relations — and the fresh node is deleted.
    fn take_over_moved(&mut self, g: &mut Graph, id: &Identifier) {
        let Some(node) = g.node_by_id(id) else {
            return;
        };
        let md = node.metadata();
        let (Some(name), Some(mac)) = (
            md.get("Name").and_then(Value::as_str),
            md.get("MAC").and_then(Value::as_str),
        ) else {
            return;
        };
        let found = self.interfaces.iter().find(|(_, e)| {
            e.id != *id
                && g.node_by_id(&e.id).is_some_and(|n| {
                    let m = n.metadata();
                    !m.contains_key("UUID")
                        && m.get("Name").and_then(Value::as_str) == Some(name)
                        && m.get("MAC")
                            .and_then(Value::as_str)
                            .is_some_and(|x| x.eq_ignore_ascii_case(mac))
                })
        });
        let Some((key, fresh)) = found.map(|(k, e)| (*k, e.id.clone())) else {
            return;
        };
        let Some(owner) = self.namespaces.get(&key.0).map(|n| n.owner.clone()) else {
            return;
        };
        let Ok(fresh_node) = g.delete_node(&fresh) else {
            return;
        };
        tracing::debug!(node = %id, duplicate = %fresh, "moved OVS interface: keeping its node");
        let _ = g.update_node(id, |m| {
            for (k, v) in fresh_node.metadata {
                if k != "Type" {
                    m.insert(k, v);
                }
            }
        });
        self.take_ownership(g, &owner, id);
        self.by_id.remove(&fresh);
        self.by_id.insert(id.clone(), key);
        if let Some(e) = self.interfaces.get_mut(&key) {
            e.id = id.clone();
        }
        self.sync_relations(g, key);
        self.sync_dependents(g, key);
    }

    /// The other end of a veth, when its namespace is mapped and it is known: through
    /// `IFLA_LINK_NETNSID`, else in its own namespace, else where the peer said it is
    /// (see [`IfEntry::peer_ns`]), if the peer names it back.
    fn veth_peer(&self, key: IfKey, e: &IfEntry) -> Option<IfKey> {
        if e.kind != "veth" {
            return None;
        }
        let index = e.peer_index?;
        let is_veth = |pk: &IfKey| self.interfaces.get(pk).is_some_and(|p| p.kind == "veth");
        match e.link_netnsid {
            Some(n) => {
                let pk = (*self.nsids.get(&(key.0, n))?, index);
                is_veth(&pk).then_some(pk)
            }
            None if is_veth(&(key.0, index)) => Some((key.0, index)),
            None => {
                let pk = (e.peer_ns?, index);
                self.interfaces
                    .get(&pk)
                    .is_some_and(|p| p.kind == "veth" && p.peer_index == Some(key.1))
                    .then_some(pk)
            }
        }
    }

    fn vlan_parent(&self, key: IfKey, e: &IfEntry) -> Option<IfKey> {
        if e.kind != "vlan" {
            return None;
        }
        let ns = match e.link_netnsid {
            None => key.0,
            Some(n) => *self.nsids.get(&(key.0, n))?,
        };
        let pk = (ns, e.parent?);
        self.interfaces.contains_key(&pk).then_some(pk)
    }

    fn master_of(&self, key: IfKey, e: &IfEntry) -> Option<IfKey> {
        let mk = (key.0, e.master?);
        let m = self.interfaces.get(&mk)?;
        (m.kind != "openvswitch").then_some(mk)
    }

    /// Re-derives the relations where `key` is the child (or a veth end) and its
    /// `LinkNetNsName`.
    fn sync_relations(&mut self, g: &mut Graph, key: IfKey) {
        let Some(e) = self.interfaces.get(&key).cloned() else {
            return;
        };
        let Some(ix) = g.find_node(&e.id) else {
            return;
        };

        // The namespace the kernel names, or, for a veth it names none for, where its
        // peer turned out to be.
        let link_ns = match e.link_netnsid {
            Some(n) => self.nsids.get(&(key.0, n)).copied(),
            None => self
                .veth_peer(key, &e)
                .map(|pk| pk.0)
                .filter(|ns| *ns != key.0),
        };
        let netns_name = link_ns
            .and_then(|ns| self.namespaces.get(&ns))
            .map(|ns| ns.name.clone())
            .filter(|n| !n.is_empty());
        let _ = g.update_node(&e.id, |m| match netns_name {
            Some(n) => {
                set_field(m, "LinkNetNsName", Value::from(n));
            }
            None => {
                m.remove("LinkNetNsName");
            }
        });

        // veth: parent = higher (ifindex, namespace).
        let veth = self.veth_peer(key, &e).map(|pk| {
            let peer_id = self.interfaces[&pk].id.clone();
            if (pk.1, pk.0) > (key.1, key.0) {
                (peer_id, e.id.clone())
            } else {
                (e.id.clone(), peer_id)
            }
        });
        let master = self
            .master_of(key, &e)
            .map(|mk| self.interfaces[&mk].id.clone());
        let vlan_parent = self
            .vlan_parent(key, &e)
            .map(|pk| self.interfaces[&pk].id.clone());

        // Collect the managed layer2 edges touching this node.
        let mut stale = Vec::new();
        let mut have_veth = false;
        let mut have_master = false;
        let mut have_vlan = false;
        let mut edges: Vec<_> = g.in_edges(ix).collect();
        edges.extend(g.out_edges(ix));
        for eix in edges {
            let edge = g.edge(eix);
            let md = edge.metadata();
            if md.get("RelationType") != Some(&json!("layer2")) {
                continue;
            }
            let parent = edge.parent().id().clone();
            let child = edge.child().id().clone();
            let other = if parent == e.id { &child } else { &parent };
            if !self.by_id.contains_key(other) {
                continue; // someone else's edge (OVS port -> interface, ...)
            }
            match md.get("Type").and_then(Value::as_str) {
                Some("veth") => {
                    if veth.as_ref() == Some(&(parent.clone(), child.clone())) {
                        have_veth = true;
                    } else {
                        stale.push(edge.id().clone());
                    }
                }
                None if child == e.id => {
                    if master.as_ref() == Some(&parent) {
                        have_master = true;
                    } else {
                        stale.push(edge.id().clone());
                    }
                }
                Some("vlan") if child == e.id => {
                    if vlan_parent.as_ref() == Some(&parent) {
                        have_vlan = true;
                    } else {
                        stale.push(edge.id().clone());
                    }
                }
                _ => {}
            }
        }
        for id in stale {
            let _ = g.delete_edge(&id);
        }
        let mut add = Vec::new();
        if let (false, Some((p, c))) = (have_veth, veth) {
            add.push((p, c, relation("layer2", Some("veth"))));
        }
        if let (false, Some(m)) = (have_master, master) {
            add.push((m, e.id.clone(), relation("layer2", None)));
        }
        if let (false, Some(p)) = (have_vlan, vlan_parent) {
            add.push((p, e.id.clone(), relation("layer2", Some("vlan"))));
        }
        for (p, c, md) in add {
            let edge = Edge::new(p, c, md, &self.host, &self.origin);
            if g.find_edge(&edge.id).is_none() {
                if let Err(err) = g.add_edge(edge) {
                    tracing::warn!(error = %err, "adding layer2 edge");
                }
            }
        }
    }

    /// Re-derives relations of the interfaces that point at `key` (members, vlans, the
    /// veth peer). A verified cross-namespace veth pair also maps the other end's
    /// `IFLA_LINK_NETNSID`: veth peers are mutual, so once one end's peer is confirmed,
    /// the other end's namespace id must name this end's namespace.
    fn sync_dependents(&mut self, g: &mut Graph, key: IfKey) {
        let Some(me) = self.interfaces.get(&key).cloned() else {
            return;
        };
        let mut learned = Vec::new();
        if let Some(pk) = self.veth_peer(key, &me) {
            let p = &self.interfaces[&pk];
            if pk.0 != key.0 && p.peer_index == Some(key.1) {
                match p.link_netnsid {
                    Some(n) => learned.push((pk.0, n, key.0)),
                    // The peer may have been made here and moved out of its namespace:
                    // the kernel told it nothing, this end says where it went. (Its
                    // own namespace may not have reported the move yet: a veth there
                    // of this index still comes first until it does.)
                    None if p.peer_ns != Some(key.0) => {
                        if let Some(p) = self.interfaces.get_mut(&pk) {
                            p.peer_ns = Some(key.0);
                        }
                    }
                    None => {}
                }
            }
        }
        let mut deps = Vec::new();
        for (k, e) in &self.interfaces {
            if *k == key {
                continue;
            }
            let peer_is_me = self.veth_peer(*k, e) == Some(key);
            if (k.0 == key.0 && e.master == Some(key.1))
                || self.vlan_parent(*k, e) == Some(key)
                || peer_is_me
            {
                deps.push(*k);
            }
            if peer_is_me && k.0 != key.0 && me.peer_index == Some(k.1) {
                if let Some(n) = me.link_netnsid {
                    learned.push((key.0, n, k.0));
                }
            }
        }
        let mut resync = Vec::new();
        for (from, n, to) in learned {
            if let std::collections::hash_map::Entry::Vacant(slot) = self.nsids.entry((from, n)) {
                slot.insert(to);
                resync.extend(
                    self.interfaces
                        .iter()
                        .filter(|(k, e)| k.0 == from && e.link_netnsid == Some(n))
                        .map(|(k, _)| *k),
                );
            }
        }
        for k in resync.into_iter().chain(deps) {
            self.sync_relations(g, k);
        }
        self.sync_relations(g, key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::translate::LINK_KEYS;

    const ROOT: NsKey = 1;
    const NS1: NsKey = 100;
    const NS2: NsKey = 200;

    fn view(index: u32, name: &str, kind: &str) -> LinkView {
        let fields: Fields = LINK_KEYS
            .iter()
            .map(|k| {
                let v = match *k {
                    "Name" => Some(json!(name)),
                    "Type" => Some(json!(kind)),
                    "IfIndex" => Some(json!(index)),
                    _ => None,
                };
                (*k, v)
            })
            .collect();
        LinkView {
            index,
            name: name.into(),
            kind: kind.into(),
            peer_index: None,
            link_netnsid: None,
            master: None,
            parent: None,
            fields,
            stats: None,
        }
    }

    fn veth(index: u32, name: &str, peer: u32, nsid: Option<i32>) -> LinkView {
        let mut v = view(index, name, "veth");
        v.peer_index = Some(peer);
        v.link_netnsid = nsid;
        v
    }

    fn setup() -> (Registry, Graph) {
        let mut g = Graph::new();
        let mut r = Registry::new("h", "agent.h");
        for (key, name, ty) in [
            (ROOT, "host", "host"),
            (NS1, "ns1", "netns"),
            (NS2, "ns2", "netns"),
        ] {
            let id = Identifier::from(name);
            let md = json!({"Name": name, "Type": ty})
                .as_object()
                .cloned()
                .unwrap();
            g.add_node(Node::new(id.clone(), md, "h", "agent.h"))
                .unwrap();
            r.add_namespace(
                key,
                NsEntry {
                    owner: id.clone(),
                    owner_tid: id,
                    name: name.into(),
                    file: None,
                },
            );
        }
        (r, g)
    }

    fn layer2(g: &Graph, kind: Option<&str>) -> Vec<(String, String)> {
        g.edges()
            .map(|e| g.edge(e))
            .filter(|e| {
                e.metadata().get("RelationType") == Some(&json!("layer2"))
                    && e.metadata().get("Type").and_then(Value::as_str) == kind
            })
            .map(|e| {
                (
                    e.parent().metadata()["Name"].as_str().unwrap().to_owned(),
                    e.child().metadata()["Name"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    #[test]
    fn same_namespace_veth_one_edge_parent_higher_index_either_order() {
        for first_low in [true, false] {
            let (mut r, mut g) = setup();
            let a = veth(5, "a", 6, None);
            let b = veth(6, "b", 5, None);
            let (x, y) = if first_low { (&a, &b) } else { (&b, &a) };
            r.upsert_link(&mut g, ROOT, x, &vec![], None).unwrap();
            assert!(layer2(&g, Some("veth")).is_empty());
            r.upsert_link(&mut g, ROOT, y, &vec![], None).unwrap();
            assert_eq!(layer2(&g, Some("veth")), vec![("b".into(), "a".into())]);
            // Updates keep exactly one edge.
            r.upsert_link(&mut g, ROOT, &a, &vec![], None).unwrap();
            r.upsert_link(&mut g, ROOT, &b, &vec![], None).unwrap();
            assert_eq!(layer2(&g, Some("veth")).len(), 1);
        }
    }

    #[test]
    fn cross_namespace_veth_waits_for_nsid_and_names_the_namespace() {
        let (mut r, mut g) = setup();
        // Both ends have ifindex 2 in their namespaces; each sees the other as nsid 0.
        let a = veth(2, "a", 2, Some(0));
        let b = veth(2, "b", 2, Some(0));
        let up = r.upsert_link(&mut g, NS1, &a, &vec![], None).unwrap();
        assert!(!up.needs_nsid, "no candidate yet");
        let up = r.upsert_link(&mut g, NS2, &b, &vec![], None).unwrap();
        assert!(up.needs_nsid);
        assert_eq!(r.peer_candidates(NS2, &b).len(), 0, "no files in tests");
        assert!(layer2(&g, Some("veth")).is_empty());
        // The probe of NS2 verified: nsid 0 in NS2 is NS1.
        r.record_nsid(&mut g, NS2, 0, NS1);
        assert_eq!(layer2(&g, Some("veth")), vec![("b".into(), "a".into())]);
        // NS1 learned the reverse mapping from the mutual pair.
        let a_id = r.node_id(NS1, 2).unwrap().clone();
        let b_id = r.node_id(NS2, 2).unwrap().clone();
        assert_eq!(
            g.node_by_id(&a_id).unwrap().metadata()["LinkNetNsName"],
            json!("ns2")
        );
        assert_eq!(
            g.node_by_id(&b_id).unwrap().metadata()["LinkNetNsName"],
            json!("ns1")
        );
        // Same ifindex pair in another namespace without a verified id: not linked.
        let c = veth(2, "c", 2, Some(1));
        r.upsert_link(&mut g, ROOT, &c, &vec![], None).unwrap();
        assert_eq!(layer2(&g, Some("veth")).len(), 1);
        // Deleting a namespace removes its interfaces and the pair's edge.
        r.remove_namespace(&mut g, NS2, false);
        assert!(layer2(&g, Some("veth")).is_empty());
        assert!(g.node_by_id(&b_id).is_none());
        assert!(!g
            .node_by_id(&a_id)
            .unwrap()
            .metadata()
            .contains_key("LinkNetNsName"));
    }

    #[test]
    fn a_veth_whose_peer_moves_out_names_the_peer_namespace_on_both_ends() {
        let (mut r, mut g) = setup();
        // Made with both ends in NS1: no namespace id on either.
        let a = veth(5, "a", 6, None);
        r.upsert_link(&mut g, NS1, &a, &vec![], None).unwrap();
        r.upsert_link(&mut g, NS1, &veth(6, "b", 5, None), &vec![], None)
            .unwrap();
        assert_eq!(layer2(&g, Some("veth")), vec![("b".into(), "a".into())]);
        let a_id = r.node_id(NS1, 5).unwrap().clone();
        assert!(metadata(&g, &a_id).get("LinkNetNsName").is_none());
        // b moves to NS2 (same index there); the kernel tells NS1 nothing about a.
        r.remove_link(&mut g, NS1, 6);
        let b = veth(6, "b", 5, Some(3));
        let up = r.upsert_link(&mut g, NS2, &b, &vec![], None).unwrap();
        assert!(up.needs_nsid, "a, whose peer left, is a candidate");
        r.record_nsid(&mut g, NS2, 3, NS1);
        let b_id = r.node_id(NS2, 6).unwrap().clone();
        assert_eq!(metadata(&g, &b_id)["LinkNetNsName"], json!("ns1"));
        assert_eq!(metadata(&g, &a_id)["LinkNetNsName"], json!("ns2"));
        assert_eq!(layer2(&g, Some("veth")), vec![("b".into(), "a".into())]);
        // A late message about a, still without a namespace id, changes nothing.
        r.upsert_link(&mut g, NS1, &a, &vec![], None).unwrap();
        assert_eq!(metadata(&g, &a_id)["LinkNetNsName"], json!("ns2"));
        assert_eq!(layer2(&g, Some("veth")).len(), 1);
        // The namespace is renamed: a follows.
        r.rename_namespace(&mut g, NS2, "ns2b", Identifier::from("ns2b"));
        assert_eq!(metadata(&g, &a_id)["LinkNetNsName"], json!("ns2b"));
        // b comes back to NS1: no LinkNetNsName on either end.
        r.remove_link(&mut g, NS2, 6);
        assert!(metadata(&g, &a_id).get("LinkNetNsName").is_none());
        r.upsert_link(&mut g, NS1, &veth(6, "b", 5, None), &vec![], None)
            .unwrap();
        let b_id = r.node_id(NS1, 6).unwrap().clone();
        assert!(metadata(&g, &a_id).get("LinkNetNsName").is_none());
        assert!(metadata(&g, &b_id).get("LinkNetNsName").is_none());
        assert_eq!(layer2(&g, Some("veth")).len(), 1);
        // Moved out again, the new namespace reporting before the old one.
        r.upsert_link(&mut g, NS2, &b, &vec![], None).unwrap();
        assert!(
            metadata(&g, &a_id).get("LinkNetNsName").is_none(),
            "b still in NS1"
        );
        r.remove_link(&mut g, NS1, 6);
        assert_eq!(metadata(&g, &a_id)["LinkNetNsName"], json!("ns2b"));
        assert_eq!(layer2(&g, Some("veth")).len(), 1);
        r.remove_link(&mut g, NS2, 6);
        r.upsert_link(&mut g, NS1, &veth(6, "b", 5, None), &vec![], None)
            .unwrap();
        assert!(metadata(&g, &a_id).get("LinkNetNsName").is_none());
        // Moved out again, then its namespace goes: a forgets it.
        r.remove_link(&mut g, NS1, 6);
        r.upsert_link(&mut g, NS2, &b, &vec![], None).unwrap();
        assert_eq!(metadata(&g, &a_id)["LinkNetNsName"], json!("ns2b"));
        r.remove_namespace(&mut g, NS2, false);
        assert!(metadata(&g, &a_id).get("LinkNetNsName").is_none());
        assert!(layer2(&g, Some("veth")).is_empty());
    }

    #[test]
    fn rename_and_mac_change_keep_the_node() {
        let (mut r, mut g) = setup();
        let mut v = view(3, "eth0", "device");
        let id = r.upsert_link(&mut g, NS1, &v, &vec![], None).unwrap().id;
        v.name = "eth9".into();
        v.fields[0].1 = Some(json!("eth9"));
        v.fields[3].1 = Some(json!("00:00:00:00:00:aa"));
        let up = r.upsert_link(&mut g, NS1, &v, &vec![], None).unwrap();
        assert_eq!(up.id, id);
        assert!(!up.created);
        let n = g.node_by_id(&id).unwrap();
        assert_eq!(n.metadata()["Name"], json!("eth9"));
        assert_eq!(n.metadata()["MAC"], json!("00:00:00:00:00:aa"));
        assert_eq!(
            n.metadata()["TID"],
            json!(tid::owned(&Identifier::from("ns1"), "eth9", "device").to_string())
        );
        assert_eq!(g.node_count(), 4);
        r.remove_link(&mut g, NS1, 3);
        assert_eq!(g.node_count(), 3);
    }

    #[test]
    fn bridge_membership_follows_master_index_in_any_order() {
        let (mut r, mut g) = setup();
        let mut member = view(4, "m", "veth");
        member.master = Some(10);
        r.upsert_link(&mut g, ROOT, &member, &vec![], None).unwrap();
        assert!(layer2(&g, None).is_empty(), "bridge not known yet");
        r.upsert_link(&mut g, ROOT, &view(10, "br", "bridge"), &vec![], None)
            .unwrap();
        assert_eq!(layer2(&g, None), vec![("br".into(), "m".into())]);
        member.master = None;
        r.upsert_link(&mut g, ROOT, &member, &vec![], None).unwrap();
        assert!(layer2(&g, None).is_empty());
        member.master = Some(10);
        r.upsert_link(&mut g, ROOT, &member, &vec![], None).unwrap();
        r.remove_link(&mut g, ROOT, 10);
        assert!(layer2(&g, None).is_empty());
    }

    #[test]
    fn vlan_edge_and_foreign_edges_are_left_alone() {
        let (mut r, mut g) = setup();
        r.upsert_link(&mut g, ROOT, &veth(4, "p", 5, None), &vec![], None)
            .unwrap();
        let mut v = view(8, "p.10", "vlan");
        v.parent = Some(4);
        r.upsert_link(&mut g, ROOT, &v, &vec![], None).unwrap();
        assert_eq!(layer2(&g, Some("vlan")), vec![("p".into(), "p.10".into())]);
        // An OVS port -> interface edge (parent not an interface of ours) survives.
        let port = Identifier::from("port");
        let mut md = Metadata::new();
        md.insert("Name".into(), json!("port"));
        g.add_node(Node::new(port.clone(), md, "h", "agent.h"))
            .unwrap();
        let p_id = r.node_id(ROOT, 4).unwrap().clone();
        g.add_edge(Edge::new(
            port,
            p_id,
            relation("layer2", None),
            "h",
            "agent.h",
        ))
        .unwrap();
        r.upsert_link(&mut g, ROOT, &veth(4, "p", 5, None), &vec![], None)
            .unwrap();
        assert_eq!(layer2(&g, None), vec![("port".into(), "p".into())]);
    }

    #[test]
    fn ovs_type_wins_and_extra_keys_are_removed_when_empty() {
        let mut m = Metadata::new();
        m.insert("UUID".into(), json!("u"));
        m.insert("Type".into(), json!("internal"));
        m.insert("IPV4".into(), json!(["10.0.0.1/24"]));
        apply_fields(
            &mut m,
            &vec![("Type", Some(json!("openvswitch"))), ("IPV4", None)],
        );
        assert_eq!(m["Type"], json!("internal"));
        assert!(!m.contains_key("IPV4"));
    }

    fn with_mac(mut v: LinkView, mac: &str) -> LinkView {
        for (k, val) in &mut v.fields {
            match *k {
                "MAC" => *val = Some(json!(mac)),
                "State" => *val = Some(json!("UP")),
                "Driver" => {
                    *val = crate::netlink::translate::driver_for_kind(&v.kind).map(Value::from)
                }
                _ => {}
            }
        }
        v
    }

    fn metadata(g: &Graph, id: &Identifier) -> Metadata {
        g.node_by_id(id).unwrap().metadata().clone()
    }

    fn owners(g: &Graph, id: &Identifier) -> Vec<String> {
        let ix = g.find_node(id).unwrap();
        g.in_edges(ix)
            .map(|e| g.edge(e))
            .filter(|e| e.metadata().get("RelationType") == Some(&json!("ownership")))
            .map(|e| e.parent().id().to_string())
            .collect()
    }

    /// What the OVS probe does when it merges an Interface row into a node.
    fn ovs_merges(g: &mut Graph, id: &Identifier, ty: &str) {
        g.update_node(id, |m| {
            m.insert("UUID".into(), json!("row-uuid"));
            m.insert("OfPort".into(), json!(1));
            m.insert("Type".into(), json!(ty));
        })
        .unwrap();
    }

    fn add_bridge(g: &mut Graph) -> Identifier {
        let br = Identifier::from("br");
        let md = json!({"Name": "br0", "Type": "ovsbridge", "UUID": "br-uuid"});
        g.add_node(Node::new(
            br.clone(),
            md.as_object().cloned().unwrap(),
            "h",
            "agent.h",
        ))
        .unwrap();
        br
    }

    #[test]
    fn ovs_interface_is_only_unlinked_when_its_link_goes() {
        let (mut r, mut g) = setup();
        let p = with_mac(view(7, "p", "tuntap"), "aa:00:00:00:00:07");
        let extra = vec![("IPV4", Some(json!(["10.0.0.1/24"])))];
        let id = r.upsert_link(&mut g, NS1, &p, &extra, None).unwrap().id;
        let mut vlan = view(8, "p.5", "vlan");
        vlan.parent = Some(7);
        r.upsert_link(&mut g, NS1, &vlan, &vec![], None).unwrap();
        assert_eq!(layer2(&g, Some("vlan")), vec![("p".into(), "p.5".into())]);
        ovs_merges(&mut g, &id, "internal");
        let nodes = g.node_count();

        r.remove_link(&mut g, NS1, 7);
        assert_eq!(g.node_count(), nodes, "node kept for the OVS probe");
        let m = metadata(&g, &id);
        for gone in ["IfIndex", "State", "LinkFlags", "EncapType", "IPV4", "TID"] {
            assert!(!m.contains_key(gone), "{gone} left: {m:?}");
        }
        assert_eq!(m["Name"], json!("p"));
        assert_eq!(m["Type"], json!("internal"));
        assert_eq!(m["MAC"], json!("aa:00:00:00:00:07"));
        assert_eq!(m["Driver"], json!("tun"));
        assert_eq!(m["UUID"], json!("row-uuid"));
        assert_eq!(m["OfPort"], json!(1));
        assert!(owners(&g, &id).is_empty());
        assert!(layer2(&g, Some("vlan")).is_empty());
        assert!(r.node_id(NS1, 7).is_none());
    }

    #[test]
    fn veths_and_plain_interfaces_are_deleted_with_their_link() {
        let (mut r, mut g) = setup();
        let v = with_mac(veth(5, "v", 6, None), "aa:00:00:00:00:05");
        let vid = r.upsert_link(&mut g, NS1, &v, &vec![], None).unwrap().id;
        ovs_merges(&mut g, &vid, "");
        g.update_node(&vid, |m| {
            m.insert("Type".into(), json!("veth"));
        })
        .unwrap();
        let d = r
            .upsert_link(&mut g, NS1, &view(9, "d", "dummy"), &vec![], None)
            .unwrap()
            .id;
        r.remove_link(&mut g, NS1, 5);
        r.remove_link(&mut g, NS1, 9);
        assert!(g.find_node(&vid).is_none(), "veth port node deleted");
        assert!(g.find_node(&d).is_none());
        assert_eq!(g.node_count(), 3);
    }

    #[test]
    fn new_link_adopts_the_node_ovs_made() {
        let (mut r, mut g) = setup();
        let br = add_bridge(&mut g);
        let ovs = Identifier::from("ovs-made");
        let md = json!({"Name": "p", "UUID": "row-uuid", "Type": "internal",
                        "Driver": "openvswitch", "OfPort": 1});
        g.add_node(Node::new(
            ovs.clone(),
            md.as_object().cloned().unwrap(),
            "h",
            "agent.h",
        ))
        .unwrap();
        g.add_edge(Edge::new(
            br.clone(),
            ovs.clone(),
            relation("ownership", None),
            "h",
            "agent.h",
        ))
        .unwrap();
        // Another name is not adopted.
        let other = r
            .upsert_link(&mut g, NS1, &view(3, "q", "tuntap"), &vec![], None)
            .unwrap();
        assert_ne!(other.id, ovs);

        let p = with_mac(view(4, "p", "tuntap"), "aa:00:00:00:00:04");
        let up = r.upsert_link(&mut g, NS1, &p, &vec![], None).unwrap();
        assert_eq!(up.id, ovs);
        assert!(up.created);
        assert_eq!(
            owners(&g, &ovs),
            vec!["ns1".to_owned()],
            "bridge no longer owns it"
        );
        let m = metadata(&g, &ovs);
        assert_eq!(m["Type"], json!("internal"), "OVS type wins");
        assert_eq!(m["IfIndex"], json!(4));
        assert_eq!(m["MAC"], json!("aa:00:00:00:00:04"));
        assert_eq!(
            m["TID"],
            json!(tid::owned(&Identifier::from("ns1"), "p", "tuntap").to_string())
        );
        assert_eq!(r.node_id(NS1, 4), Some(&ovs));
    }

    #[test]
    fn moved_ovs_interface_keeps_its_node_whichever_namespace_reports_first() {
        for new_first in [false, true] {
            let (mut r, mut g) = setup();
            let mac = "aa:00:00:00:00:07";
            let id = r
                .upsert_link(
                    &mut g,
                    NS1,
                    &with_mac(view(7, "p", "tuntap"), mac),
                    &vec![],
                    None,
                )
                .unwrap()
                .id;
            ovs_merges(&mut g, &id, "internal");
            // A dummy in NS2 enslaved to p's future index: relations follow the move.
            let mut member = view(3, "m", "dummy");
            member.master = Some(2);
            r.upsert_link(&mut g, NS2, &member, &vec![], None).unwrap();
            let nodes = g.node_count();
            let moved = with_mac(view(2, "p", "tuntap"), mac);
            if new_first {
                // NS2 reports the device before NS1 reports it gone: a fresh node first...
                let fresh = r.upsert_link(&mut g, NS2, &moved, &vec![], None).unwrap();
                assert_ne!(fresh.id, id);
                r.remove_link(&mut g, NS1, 7);
                // ...which the OVS node replaces.
                assert!(g.find_node(&fresh.id).is_none());
            } else {
                r.remove_link(&mut g, NS1, 7);
                let up = r.upsert_link(&mut g, NS2, &moved, &vec![], None).unwrap();
                assert_eq!(up.id, id);
            }
            assert_eq!(g.node_count(), nodes, "new_first={new_first}");
            assert_eq!(r.node_id(NS2, 2), Some(&id));
            assert_eq!(owners(&g, &id), vec!["ns2".to_owned()]);
            let m = metadata(&g, &id);
            assert_eq!(m["Type"], json!("internal"));
            assert_eq!(m["UUID"], json!("row-uuid"));
            assert_eq!(m["IfIndex"], json!(2));
            assert_eq!(m["State"], json!("UP"));
            assert_eq!(layer2(&g, None), vec![("p".into(), "m".into())]);

            // And back.
            r.remove_link(&mut g, NS2, 2);
            assert!(layer2(&g, None).is_empty());
            let up = r
                .upsert_link(
                    &mut g,
                    NS1,
                    &with_mac(view(9, "p", "tuntap"), mac),
                    &vec![],
                    None,
                )
                .unwrap();
            assert_eq!(up.id, id);
            assert_eq!(owners(&g, &id), vec!["ns1".to_owned()]);
            assert_eq!(g.node_count(), nodes);
        }
    }

    #[test]
    fn namespace_removal_leaves_ovs_interfaces_to_ovs() {
        let (mut r, mut g) = setup();
        let id = r
            .upsert_link(
                &mut g,
                NS1,
                &with_mac(view(7, "p", "tuntap"), "aa:00:00:00:00:07"),
                &vec![],
                None,
            )
            .unwrap()
            .id;
        ovs_merges(&mut g, &id, "internal");
        let plain = r
            .upsert_link(&mut g, NS1, &view(1, "lo", "device"), &vec![], None)
            .unwrap()
            .id;
        r.remove_namespace(&mut g, NS1, true);
        assert!(g.find_node(&Identifier::from("ns1")).is_none());
        assert!(g.find_node(&plain).is_none());
        assert!(g.find_node(&id).is_some());
        assert!(owners(&g, &id).is_empty());
    }
}
