//! Derives the OVS part of the graph from the mirrored database.
//!
//! [`Reconciler::reconcile`] makes the graph agree with a [`Database`] as a whole: it
//! creates, updates and deletes the nodes and edges the probe is responsible for and
//! leaves everything else alone. Applying it after the initial monitor reply, after
//! each update and after a reconnect gives the same result as replaying history, so a
//! reconnect needs no special path and never duplicates nodes (the probe remembers the
//! node of each OVSDB row UUID for its whole life). Cost is linear in the number of
//! rows per call; statistics are not monitored, so calls follow configuration changes.
//!
//! Graph shape (Skydive §3.8/§3.9):
//! - host `ownership` -> `ovsbridge`; bridge `ownership` + `layer2` -> `ovsport`;
//!   port `layer2` -> interface; patch interfaces `layer2 {Type: patch}` with each other
//!   (parent: the row with the smaller UUID);
//! - bridge `ownership` -> interface only while no host/netns node owns it;
//! - interface facts merged into the netlink node per [`merge`].

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::Value;
use topotap_topology::{element, tid, Edge, Graph, GraphEvent, Identifier, Metadata, Node, NodeIx};
use tracing::debug;

use super::mapping::{self, BRIDGE_KEYS, INTERFACE_KEYS, PORT_KEYS};
use super::merge::{self, Owner};
use super::rows::{Database, InterfaceRow};

use topotap_topology::schema::relation::{LAYER2, OWNERSHIP};

/// The probe's memory of which graph node stands for which OVSDB row.
#[derive(Debug)]
pub struct Reconciler {
    host: Identifier,
    host_name: String,
    origin: String,
    bridges: HashMap<String, Identifier>,
    ports: HashMap<String, Identifier>,
    interfaces: HashMap<String, TrackedInterface>,
    /// Whether the probe put `Ovs` on the host node.
    host_ovs: bool,
    /// Our nodes by ID, rebuilt after each reconcile, for [`Reconciler::concerns`].
    watched: HashMap<Identifier, Watched>,
    /// Names of our interfaces.
    watched_names: HashSet<String>,
}

#[derive(Debug, Clone, PartialEq)]
enum Watched {
    Bridge,
    Port,
    Interface { written_type: Option<String> },
}

#[derive(Debug, Clone)]
struct TrackedInterface {
    node: Identifier,
    name: String,
    /// The `Type` the probe wrote (the OVS type), and the one it replaced.
    written_type: Option<String>,
    replaced_type: Option<Value>,
}

impl Reconciler {
    /// `host` is the ID of the host node (it may appear in the graph later);
    /// `host_name` its name, used for `Host`/`Origin` of created elements and for the
    /// host TID when the host node has none.
    pub fn new(host: Identifier, host_name: &str) -> Self {
        Reconciler {
            host,
            host_name: host_name.to_owned(),
            origin: format!("agent.{host_name}"),
            bridges: HashMap::new(),
            ports: HashMap::new(),
            interfaces: HashMap::new(),
            host_ovs: false,
            watched: HashMap::new(),
            watched_names: HashSet::new(),
        }
    }

    /// The node currently standing for an OVSDB row (bridge, port or interface UUID).
    pub fn node_of(&self, uuid: &str) -> Option<&Identifier> {
        self.bridges
            .get(uuid)
            .or_else(|| self.ports.get(uuid))
            .or_else(|| self.interfaces.get(uuid).map(|t| &t.node))
    }

    /// Whether a change made by someone else may require a new [`Reconciler::reconcile`]:
    /// the host node appeared, a node of ours was deleted, an interface node of ours
    /// gained or lost an owner or lost the keys we wrote, or a node appeared with the
    /// name of one of our interfaces (netlink may have made a duplicate).
    pub fn concerns(&self, event: &GraphEvent) -> bool {
        let interface = |id: &Identifier| match self.watched.get(id) {
            Some(Watched::Interface { written_type }) => Some(written_type),
            _ => None,
        };
        match event {
            GraphEvent::NodeAdded(n) => {
                n.id == self.host
                    || n.metadata
                        .get("Name")
                        .and_then(Value::as_str)
                        .is_some_and(|name| self.watched_names.contains(name))
            }
            GraphEvent::NodeDeleted(n) => self.watched.contains_key(&n.id),
            GraphEvent::NodeUpdated(n) => interface(&n.id).is_some_and(|written| {
                n.metadata.get("UUID").is_none()
                    || written
                        .as_deref()
                        .is_some_and(|t| n.metadata.get("Type").and_then(Value::as_str) != Some(t))
            }),
            GraphEvent::EdgeAdded(e) | GraphEvent::EdgeDeleted(e) => {
                e.metadata.get("RelationType").and_then(Value::as_str) == Some(OWNERSHIP)
                    && self.watched.get(&e.parent) != Some(&Watched::Bridge)
                    && interface(&e.child).is_some()
            }
            GraphEvent::EdgeUpdated(_) => false,
        }
    }

    fn rebuild_watch(&mut self) {
        self.watched.clear();
        self.watched_names.clear();
        for id in self.bridges.values() {
            self.watched.insert(id.clone(), Watched::Bridge);
        }
        for id in self.ports.values() {
            self.watched.insert(id.clone(), Watched::Port);
        }
        for t in self.interfaces.values() {
            self.watched.insert(
                t.node.clone(),
                Watched::Interface {
                    written_type: t.written_type.clone(),
                },
            );
            self.watched_names.insert(t.name.clone());
        }
    }

    /// Makes the graph's OVS part agree with `db`.
    pub fn reconcile(&mut self, graph: &mut Graph, db: &Database) {
        let host_ix = graph.find_node(&self.host);
        let host_tid = host_ix
            .and_then(|ix| {
                graph
                    .node(ix)
                    .metadata()
                    .get("TID")
                    .and_then(Value::as_str)
                    .map(Identifier::from)
            })
            .unwrap_or_else(|| tid::host(&self.host_name));

        let bridges: Vec<_> = db.bridges().collect();
        let ports: Vec<_> = db.ports().collect();
        let interfaces: Vec<_> = db.interfaces().collect();
        let mut port_bridge: HashMap<&str, &str> = HashMap::new();
        for b in &bridges {
            for p in &b.ports {
                port_bridge.entry(p.as_str()).or_insert(b.uuid.as_str());
            }
        }
        let mut interface_port: HashMap<&str, &str> = HashMap::new();
        for p in &ports {
            for i in &p.interfaces {
                interface_port.entry(i.as_str()).or_insert(p.uuid.as_str());
            }
        }

        // Removals first, so that a row re-created under the same name finds no stale
        // node carrying the old UUID.
        let live: HashSet<&str> = interfaces.iter().map(|i| i.uuid.as_str()).collect();
        let gone: Vec<String> = self
            .interfaces
            .keys()
            .filter(|u| !live.contains(u.as_str()))
            .cloned()
            .collect();
        for uuid in gone {
            if let Some(t) = self.interfaces.remove(&uuid) {
                self.release_interface(graph, &t);
            }
        }
        let live: HashSet<&str> = ports.iter().map(|p| p.uuid.as_str()).collect();
        self.ports.retain(|uuid, id| {
            let keep = live.contains(uuid.as_str());
            if !keep {
                let _ = graph.delete_node(id);
            }
            keep
        });
        let live: HashSet<&str> = bridges.iter().map(|b| b.uuid.as_str()).collect();
        self.bridges.retain(|uuid, id| {
            let keep = live.contains(uuid.as_str());
            if !keep {
                let _ = graph.delete_node(id);
            }
            keep
        });

        for b in &bridges {
            let id = self
                .bridges
                .entry(b.uuid.clone())
                .or_insert_with(Identifier::random)
                .clone();
            let md = mapping::bridge_metadata(b, &host_tid);
            self.upsert(graph, &id, md, BRIDGE_KEYS);
            if host_ix.is_some() {
                self.ensure_edge(graph, &self.host, &id, OWNERSHIP, None);
            }
        }

        let bridge_ids: HashSet<Identifier> = self.bridges.values().cloned().collect();
        for p in &ports {
            let id = self
                .ports
                .entry(p.uuid.clone())
                .or_insert_with(Identifier::random)
                .clone();
            let md = mapping::port_metadata(p, &host_tid);
            self.upsert(graph, &id, md, PORT_KEYS);
            let parent = port_bridge
                .get(p.uuid.as_str())
                .and_then(|b| self.bridges.get(*b));
            if let Some(parent) = parent {
                self.ensure_edge(graph, parent, &id, OWNERSHIP, None);
                self.ensure_edge(graph, parent, &id, LAYER2, None);
            }
            remove_in_edges(graph, &id, |rel, _, from| {
                (rel == OWNERSHIP || rel == LAYER2)
                    && bridge_ids.contains(from)
                    && Some(from) != parent
            });
        }

        let port_ids: HashSet<Identifier> = self.ports.values().cloned().collect();
        for row in &interfaces {
            let node = self.resolve_interface(graph, row, &bridge_ids);
            let port = interface_port
                .get(row.uuid.as_str())
                .and_then(|p| self.ports.get(*p));
            let bridge_uuid = interface_port
                .get(row.uuid.as_str())
                .and_then(|p| port_bridge.get(p));
            let bridge = bridge_uuid.and_then(|b| self.bridges.get(*b));
            let bridge_tid = bridge_uuid.map(|b| tid::ovs(&host_tid, b, "ovsbridge"));

            if let Some(port) = port {
                self.ensure_edge(graph, port, &node, LAYER2, None);
            }
            remove_in_edges(graph, &node, |rel, ty, from| {
                rel == LAYER2 && ty.is_none() && port_ids.contains(from) && Some(from) != port
            });

            let Some(ix) = graph.find_node(&node) else {
                continue;
            };
            let others_own = owned_by_others(graph, ix, &bridge_ids);
            match (bridge, others_own) {
                (Some(bridge), false) => {
                    self.ensure_edge(graph, bridge, &node, OWNERSHIP, None);
                    remove_in_edges(graph, &node, |rel, _, from| {
                        rel == OWNERSHIP && bridge_ids.contains(from) && from != bridge
                    });
                    if let Some(bridge_tid) = &bridge_tid {
                        let md = graph.node(ix).metadata();
                        let ty = md.get("Type").and_then(Value::as_str).unwrap_or("");
                        let tid = tid::owned(bridge_tid, &row.name, ty).to_string();
                        let _ = graph.set_node_field(&node, "TID", tid.into());
                    }
                }
                _ => remove_in_edges(graph, &node, |rel, _, from| {
                    rel == OWNERSHIP && bridge_ids.contains(from)
                }),
            }
        }

        self.reconcile_patches(graph, &interfaces);

        match (host_ix, db.open_vswitch()) {
            (Some(_), Some(row)) => {
                let ovs = mapping::host_ovs_metadata(&row);
                let _ = graph.set_node_field(&self.host, "Ovs", ovs);
                self.host_ovs = true;
            }
            (Some(_), None) if self.host_ovs => {
                let _ = graph.update_node(&self.host, |md| {
                    md.remove("Ovs");
                });
                self.host_ovs = false;
            }
            _ => {}
        }
        self.rebuild_watch();
    }

    /// Finds (or makes) the node of an Interface row and merges the row's facts in.
    fn resolve_interface(
        &mut self,
        graph: &mut Graph,
        row: &InterfaceRow,
        bridge_ids: &HashSet<Identifier>,
    ) -> Identifier {
        let facts = mapping::interface_facts(row);
        let mut tracked = self.interfaces.get(&row.uuid).cloned();

        if let Some(t) = &tracked {
            match graph.find_node(&t.node) {
                None => tracked = None,
                Some(ix) if !owned_by_others(graph, ix, bridge_ids) => {
                    // Our own node: if netlink made one for the same device meanwhile,
                    // keep theirs (one node per interface) and move our facts there.
                    let theirs =
                        merge::find_interface_node(graph, &row.name, facts.ifindex, row.mac())
                            .filter(|other| {
                                *other != ix && merge::owner(graph, *other) != Owner::OvsSide
                            });
                    if let Some(other) = theirs {
                        debug!(interface = %row.name, "OVS interface node merged into netlink node");
                        let _ = graph.delete_node(&t.node);
                        tracked = Some(TrackedInterface {
                            node: graph.node(other).id().clone(),
                            name: row.name.clone(),
                            written_type: None,
                            replaced_type: None,
                        });
                    }
                }
                Some(_) => {}
            }
        }

        let mut t = match tracked {
            Some(t) => t,
            None => {
                let found = merge::find_interface_node(graph, &row.name, facts.ifindex, row.mac());
                let node = match found {
                    Some(ix) => graph.node(ix).id().clone(),
                    None => {
                        let id = Identifier::random();
                        let mut md = Metadata::new();
                        md.insert("Name".into(), row.name.clone().into());
                        let node = Node::new(id.clone(), md, &self.host_name, &self.origin);
                        let _ = graph.add_node(node);
                        id
                    }
                };
                TrackedInterface {
                    node,
                    name: row.name.clone(),
                    written_type: None,
                    replaced_type: None,
                }
            }
        };
        t.name = row.name.clone();

        let others_own = graph
            .find_node(&t.node)
            .is_some_and(|ix| owned_by_others(graph, ix, bridge_ids));
        let mut written_type = t.written_type.clone();
        let mut replaced_type = t.replaced_type.clone();
        let _ = graph.update_node(&t.node, |md| {
            for key in INTERFACE_KEYS {
                match facts.owned.get(*key) {
                    Some(v) => {
                        element::set_field(md, key, v.clone());
                    }
                    None => {
                        md.remove(*key);
                    }
                }
            }
            match &facts.kind {
                Some(kind) => {
                    if written_type.is_none() {
                        replaced_type = md.get("Type").cloned();
                    }
                    element::set_field(md, "Type", kind.clone().into());
                    written_type = Some(kind.clone());
                }
                None => {
                    if let Some(ours) = written_type.take() {
                        restore_type(md, &ours, replaced_type.take());
                    }
                }
            }
            if let Some(mac) = &facts.mac {
                if !others_own || !md.contains_key("MAC") {
                    element::set_field(md, "MAC", mac.clone().into());
                }
            }
            if let Some(ifindex) = facts.ifindex {
                if !others_own || !md.contains_key("IfIndex") {
                    element::set_field(md, "IfIndex", ifindex.into());
                }
            }
            if !md.contains_key("Driver") {
                md.insert("Driver".into(), facts.driver.clone().into());
            }
            if !md.contains_key("Name") {
                md.insert("Name".into(), row.name.clone().into());
            }
        });
        t.written_type = written_type;
        t.replaced_type = replaced_type;
        let node = t.node.clone();
        self.interfaces.insert(row.uuid.clone(), t);
        node
    }

    /// An Interface row disappeared: delete a node nobody else owns, otherwise take
    /// the OVS facts and edges off it.
    fn release_interface(&self, graph: &mut Graph, t: &TrackedInterface) {
        let Some(ix) = graph.find_node(&t.node) else {
            return;
        };
        let bridge_ids: HashSet<Identifier> = self.bridges.values().cloned().collect();
        if !owned_by_others(graph, ix, &bridge_ids) {
            let _ = graph.delete_node(&t.node);
            return;
        }
        let _ = graph.update_node(&t.node, |md| {
            for key in INTERFACE_KEYS {
                md.remove(*key);
            }
            if let Some(ours) = &t.written_type {
                restore_type(md, ours, t.replaced_type.clone());
            }
        });
        let port_ids: HashSet<Identifier> = self.ports.values().cloned().collect();
        remove_in_edges(graph, &t.node, |rel, _, from| {
            (rel == OWNERSHIP && bridge_ids.contains(from))
                || (rel == LAYER2 && port_ids.contains(from))
        });
        let patch_edges: Vec<Identifier> = graph
            .out_edges(ix)
            .chain(graph.in_edges(ix))
            .filter(|e| is_patch(graph.edge(*e).metadata()))
            .map(|e| graph.edge(e).id().clone())
            .collect();
        for e in patch_edges {
            let _ = graph.delete_edge(&e);
        }
    }

    /// One `layer2 {Type: patch}` edge per pair of patch interfaces naming each other
    /// (either side naming the other is enough); stale patch edges are removed.
    fn reconcile_patches(&self, graph: &mut Graph, interfaces: &[InterfaceRow]) {
        let by_name: HashMap<&str, &InterfaceRow> = interfaces
            .iter()
            .filter(|i| i.kind == "patch")
            .map(|i| (i.name.as_str(), i))
            .collect();
        let mut wanted: BTreeMap<Identifier, (Identifier, Identifier)> = BTreeMap::new();
        for row in interfaces {
            let Some(peer) = row.patch_peer().and_then(|p| by_name.get(p)) else {
                continue;
            };
            if peer.uuid == row.uuid {
                continue;
            }
            let (a, b) = if row.uuid < peer.uuid {
                (row, *peer)
            } else {
                (*peer, row)
            };
            let (Some(pa), Some(pb)) = (self.interfaces.get(&a.uuid), self.interfaces.get(&b.uuid))
            else {
                continue;
            };
            let id = Identifier::for_edge(&pa.node, &pb.node, LAYER2);
            wanted.insert(id, (pa.node.clone(), pb.node.clone()));
        }
        let mut stale = Vec::new();
        for t in self.interfaces.values() {
            let Some(ix) = graph.find_node(&t.node) else {
                continue;
            };
            for e in graph.out_edges(ix) {
                let edge = graph.edge(e);
                if is_patch(edge.metadata()) && !wanted.contains_key(edge.id()) {
                    stale.push(edge.id().clone());
                }
            }
        }
        for e in stale {
            let _ = graph.delete_edge(&e);
        }
        for (parent, child) in wanted.values() {
            self.ensure_edge(graph, parent, child, LAYER2, Some("patch"));
        }
    }

    /// Creates a node with `desired`, or sets the probe's `keys` on an existing one to
    /// `desired` (removing those absent from it).
    fn upsert(&self, graph: &mut Graph, id: &Identifier, desired: Metadata, keys: &[&str]) {
        if graph.find_node(id).is_none() {
            let node = Node::new(id.clone(), desired, &self.host_name, &self.origin);
            let _ = graph.add_node(node);
            return;
        }
        let _ = graph.update_node(id, |md| {
            for key in keys {
                match desired.get(*key) {
                    Some(v) if md.get(*key) != Some(v) => {
                        md.insert((*key).to_owned(), v.clone());
                    }
                    Some(_) => {}
                    None => {
                        md.remove(*key);
                    }
                }
            }
        });
    }

    fn ensure_edge(
        &self,
        graph: &mut Graph,
        parent: &Identifier,
        child: &Identifier,
        relation: &str,
        kind: Option<&str>,
    ) {
        if graph
            .find_edge(&Identifier::for_edge(parent, child, relation))
            .is_some()
        {
            return;
        }
        let mut md = Metadata::new();
        md.insert("RelationType".into(), relation.into());
        if let Some(kind) = kind {
            md.insert("Type".into(), kind.into());
        }
        let edge = Edge::new(
            parent.clone(),
            child.clone(),
            md,
            &self.host_name,
            &self.origin,
        );
        if let Err(e) = graph.add_edge(edge) {
            debug!(%parent, %child, relation, error = %e, "OVS edge not added");
        }
    }
}

fn is_patch(md: &Metadata) -> bool {
    md.get("RelationType").and_then(Value::as_str) == Some(LAYER2)
        && md.get("Type").and_then(Value::as_str) == Some("patch")
}

/// Puts back the `Type` the probe replaced, if the node still has the one it wrote.
fn restore_type(md: &mut Metadata, ours: &str, replaced: Option<Value>) {
    if md.get("Type").and_then(Value::as_str) != Some(ours) {
        return;
    }
    match replaced {
        Some(v) => {
            md.insert("Type".into(), v);
        }
        None => {
            md.remove("Type");
        }
    }
}

/// Whether a node has an `ownership` parent other than one of our bridges.
fn owned_by_others(graph: &Graph, ix: NodeIx, bridges: &HashSet<Identifier>) -> bool {
    graph.in_edges(ix).any(|e| {
        let edge = graph.edge(e);
        edge.metadata().get("RelationType").and_then(Value::as_str) == Some(OWNERSHIP)
            && !bridges.contains(edge.parent().id())
    })
}

/// Deletes the edges into `child` for which `pred(relation, Type, parent)` holds.
fn remove_in_edges(
    graph: &mut Graph,
    child: &Identifier,
    pred: impl Fn(&str, Option<&str>, &Identifier) -> bool,
) {
    let Some(ix) = graph.find_node(child) else {
        return;
    };
    let doomed: Vec<Identifier> = graph
        .in_edges(ix)
        .filter(|e| {
            let edge = graph.edge(*e);
            let md = edge.metadata();
            let rel = md.get("RelationType").and_then(Value::as_str).unwrap_or("");
            let ty = md.get("Type").and_then(Value::as_str);
            pred(rel, ty, edge.parent().id())
        })
        .map(|e| graph.edge(e).id().clone())
        .collect();
    for e in doomed {
        let _ = graph.delete_edge(&e);
    }
}

#[cfg(test)]
mod tests;
