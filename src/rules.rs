//! Node rules and edge rules (`/api/noderule`, `/api/edgerule`, Skydive §1.9): stored
//! definitions that write the graph.
//!
//! - A node rule with `Action` `create` makes the node of its `Metadata` (which names
//!   its `Type` and `Name`; its ID is derived from them as Skydive's `GenID`); one with
//!   `update` merges its `Metadata` into every node its `Query` selects, and never
//!   changes `Type` or `Name`.
//! - An edge rule links the first node of its `Src` query to the first node of its
//!   `Dst` query with its `Metadata` (a `RelationType` is required).
//!
//! [`run`] applies them whenever the rules or the graph change (debounced like the
//! capture placer), each query within the server's budget, and undoes what a deleted
//! rule did: its node or edge is removed, the keys it set are removed from the nodes
//! it updated. The graph is rebuilt at every start, so rules are applied again from
//! their store: they survive restarts as captures do.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::watch;
use topotap_topology::gremlin::{compile, Budget, Extensions, Output};
use topotap_topology::schema::{self, key};
use topotap_topology::{Edge, Graph, Identifier, Metadata, Node, NodeIx, SharedGraph};
use tracing::{debug, warn};

use crate::capture::placer::Debounce;
use crate::error::Error;
use crate::resources::{headed_resource, Definitions, Resource};

/// Why a rule does nothing now (a query over its budget, endpoints not found), as the
/// engine last found it; shared by every copy of the rule.
#[derive(Debug, Clone, Default)]
pub struct RuleStatus(Arc<Mutex<Option<String>>>);

impl RuleStatus {
    pub fn get(&self) -> Option<String> {
        self.0.lock().clone()
    }

    fn set(&self, error: Option<String>) {
        *self.0.lock() = error;
    }
}

impl PartialEq for RuleStatus {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// `Action` of a node rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum NodeAction {
    Create,
    Update,
}

headed_resource! {
/// A node rule as clients send and receive it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NodeRule {
    /// `create`: the node's metadata (`Type` and `Name` required); `update`: the keys
    /// merged into every node the query selects (not `Type` nor `Name`).
    #[serde(rename = "Metadata", default)]
    #[schema(value_type = Object)]
    pub metadata: Metadata,
    #[serde(rename = "Action")]
    pub action: NodeAction,
    /// `update` only: the Gremlin query selecting the nodes to update.
    #[serde(rename = "Query", default, skip_serializing_if = "String::is_empty")]
    pub query: String,
    /// Output only: why the rule does nothing now.
    #[serde(rename = "Error", default, skip_serializing_if = "String::is_empty")]
    #[schema(read_only)]
    pub error: String,
    #[serde(skip)]
    pub status: RuleStatus,
}
}

headed_resource! {
/// An edge rule as clients send and receive it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EdgeRule {
    /// Gremlin: the edge's parent is the first node it selects.
    #[serde(rename = "Src")]
    pub src: String,
    /// Gremlin: the edge's child is the first node it selects.
    #[serde(rename = "Dst")]
    pub dst: String,
    /// The edge's metadata, with a non-empty `RelationType`.
    #[serde(rename = "Metadata", default)]
    #[schema(value_type = Object)]
    pub metadata: Metadata,
    /// Output only: why the rule links nothing now.
    #[serde(rename = "Error", default, skip_serializing_if = "String::is_empty")]
    #[schema(read_only)]
    pub error: String,
    #[serde(skip)]
    pub status: RuleStatus,
}
}

fn check_query(field: &str, text: &str, ext: &Extensions) -> Result<(), Error> {
    if text.trim().is_empty() {
        return Err(Error::invalid(format!(
            "{field}: a Gremlin query is required"
        )));
    }
    compile(text, ext)
        .map(|_| ())
        .map_err(|e| Error::invalid(format!("{field}: Not a valid Gremlin expression: {e}")))
}

fn non_empty_str(md: &Metadata, k: &str) -> bool {
    md.get(k)
        .and_then(Value::as_str)
        .is_some_and(|s| !s.is_empty())
}

impl NodeRule {
    /// The ID of the node a `create` rule makes: Skydive's `GenID(Type, Name)`.
    pub fn node_id(&self) -> Identifier {
        let t = schema::str_of(&self.metadata, key::TYPE).unwrap_or("");
        let n = schema::str_of(&self.metadata, key::NAME).unwrap_or("");
        Identifier::v5(&format!("{t}{n}"))
    }

    pub fn validate(&self, ext: &Extensions) -> Result<(), Error> {
        match self.action {
            NodeAction::Create => {
                if !non_empty_str(&self.metadata, key::TYPE)
                    || !non_empty_str(&self.metadata, key::NAME)
                {
                    return Err(Error::invalid(
                        "Metadata: a create rule needs non-empty string Type and Name",
                    ));
                }
                if !self.query.is_empty() {
                    return Err(Error::invalid("Query: only update rules have a query"));
                }
            }
            NodeAction::Update => {
                check_query("Query", &self.query, ext)?;
                if self.metadata.is_empty() {
                    return Err(Error::invalid(
                        "Metadata: an update rule needs at least one key",
                    ));
                }
                if self.metadata.contains_key(key::TYPE) || self.metadata.contains_key(key::NAME) {
                    return Err(Error::invalid(
                        "Metadata: Name and Type fields can not be changed",
                    ));
                }
            }
        }
        Ok(())
    }
}

impl EdgeRule {
    pub fn validate(&self, ext: &Extensions) -> Result<(), Error> {
        check_query("Src", &self.src, ext)?;
        check_query("Dst", &self.dst, ext)?;
        if !non_empty_str(&self.metadata, key::RELATION_TYPE) {
            return Err(Error::invalid(
                "Metadata: an edge rule needs a non-empty string RelationType",
            ));
        }
        Ok(())
    }
}

impl Resource for NodeRule {
    const NAME: &'static str = "noderule";
    const TITLE: &'static str = "Noderule";
    const OUTPUT_ONLY: &'static [&'static str] = &["Error"];

    fn uuid(&self) -> &str {
        &self.uuid
    }

    fn set_uuid(&mut self, uuid: String) {
        self.uuid = uuid;
    }

    fn prepare(&mut self) -> Result<(), Error> {
        // The query was checked with the server's extensions by the route.
        self.error.clear();
        Ok(())
    }

    fn duplicates(&self, other: &Self) -> bool {
        match (self.action, other.action) {
            (NodeAction::Create, NodeAction::Create) => self.node_id() == other.node_id(),
            (NodeAction::Update, NodeAction::Update) => {
                self.query == other.query && self.metadata == other.metadata
            }
            _ => false,
        }
    }

    fn decorate(&mut self, _graph: &Graph) {
        self.error = self.status.get().unwrap_or_default();
    }
}

impl Resource for EdgeRule {
    const NAME: &'static str = "edgerule";
    const TITLE: &'static str = "Edgerule";
    const OUTPUT_ONLY: &'static [&'static str] = &["Error"];

    fn uuid(&self) -> &str {
        &self.uuid
    }

    fn set_uuid(&mut self, uuid: String) {
        self.uuid = uuid;
    }

    fn prepare(&mut self) -> Result<(), Error> {
        self.error.clear();
        Ok(())
    }

    fn duplicates(&self, other: &Self) -> bool {
        self.src == other.src
            && self.dst == other.dst
            && self.metadata.get(key::RELATION_TYPE) == other.metadata.get(key::RELATION_TYPE)
    }

    fn decorate(&mut self, _graph: &Graph) {
        self.error = self.status.get().unwrap_or_default();
    }
}

// ---------------------------------------------------------------------------------
// The engine.

/// What the engine needs.
#[derive(Clone)]
pub struct Inputs {
    pub graph: SharedGraph,
    pub node_rules: Definitions<NodeRule>,
    pub edge_rules: Definitions<EdgeRule>,
    pub extensions: Arc<Extensions>,
    pub budget: Budget,
    /// `Host` of what rules create.
    pub host: String,
    /// `Origin` of what rules create.
    pub origin: String,
}

/// What the engine did, to undo it when a rule goes away.
#[derive(Default)]
pub struct Applied {
    /// Nodes made by `create` rules, by rule.
    nodes: HashMap<String, Identifier>,
    /// Keys set by `update` rules: by rule, the nodes and the keys.
    updates: HashMap<String, (HashSet<Identifier>, Vec<String>)>,
    /// Edges made by edge rules, by rule.
    edges: HashMap<String, Identifier>,
}

/// What one pass found, computed under the read lock.
struct Plan {
    nodes: Vec<(String, Node)>,
    /// Merged metadata by node (later rules, by UUID, win), and which rules touch it.
    updates: BTreeMap<Identifier, Metadata>,
    touched: HashMap<String, HashSet<Identifier>>,
    edges: Vec<(String, Edge)>,
    errors: HashMap<String, Option<String>>,
}

fn first_node(out: Output) -> Option<NodeIx> {
    match out {
        Output::Nodes(n) => n.into_iter().next(),
        Output::Graph { nodes, .. } => nodes.into_iter().next(),
        _ => None,
    }
}

fn matched(out: Output) -> Vec<NodeIx> {
    match out {
        Output::Nodes(n) => n,
        Output::Graph { nodes, .. } => nodes,
        _ => Vec::new(),
    }
}

fn plan(g: &Graph, nodes: &[NodeRule], edges: &[EdgeRule], inputs: &Inputs) -> Plan {
    let mut p = Plan {
        nodes: Vec::new(),
        updates: BTreeMap::new(),
        touched: HashMap::new(),
        edges: Vec::new(),
        errors: HashMap::new(),
    };
    let run = |field: &str, text: &str| -> Result<Output, String> {
        let q = compile(text, &inputs.extensions).map_err(|e| format!("{field}: {e}"))?;
        q.evaluate(g, &inputs.budget)
            .map_err(|e| format!("{field}: {e}"))
    };
    for r in nodes {
        match r.action {
            NodeAction::Create => {
                p.nodes.push((
                    r.uuid.clone(),
                    Node::new(
                        r.node_id(),
                        r.metadata.clone(),
                        &inputs.host,
                        &inputs.origin,
                    ),
                ));
                p.errors.insert(r.uuid.clone(), None);
            }
            NodeAction::Update => match run("Query", &r.query) {
                Ok(out) => {
                    let ids: HashSet<Identifier> = matched(out)
                        .into_iter()
                        .map(|ix| g.node(ix).id().clone())
                        .collect();
                    for id in &ids {
                        let md = p.updates.entry(id.clone()).or_default();
                        for (k, v) in &r.metadata {
                            md.insert(k.clone(), v.clone());
                        }
                    }
                    p.touched.insert(r.uuid.clone(), ids);
                    p.errors.insert(r.uuid.clone(), None);
                }
                Err(e) => {
                    p.errors.insert(r.uuid.clone(), Some(e));
                }
            },
        }
    }
    for r in edges {
        let ends =
            run("Src", &r.src).and_then(|s| Ok((first_node(s), first_node(run("Dst", &r.dst)?))));
        match ends {
            Ok((Some(s), Some(d))) => {
                let parent = g.node(s).id().clone();
                let child = g.node(d).id().clone();
                p.edges.push((
                    r.uuid.clone(),
                    Edge::new(
                        parent,
                        child,
                        r.metadata.clone(),
                        &inputs.host,
                        &inputs.origin,
                    ),
                ));
                p.errors.insert(r.uuid.clone(), None);
            }
            Ok((s, _)) => {
                let which = if s.is_none() { "Src" } else { "Dst" };
                p.errors
                    .insert(r.uuid.clone(), Some(format!("{which}: no node matches")));
            }
            Err(e) => {
                p.errors.insert(r.uuid.clone(), Some(e));
            }
        }
    }
    p
}

impl Applied {
    /// Applies a plan to the graph: creates what is missing, changes only what differs
    /// (so that a pass triggered by its own writes writes nothing), and undoes what
    /// rules no longer present did.
    fn apply(
        &mut self,
        g: &mut Graph,
        p: Plan,
        live_nodes: &HashSet<String>,
        live_edges: &HashSet<String>,
    ) {
        // Undo deleted rules first.
        let gone: Vec<String> = self
            .nodes
            .keys()
            .filter(|u| !live_nodes.contains(*u))
            .cloned()
            .collect();
        for u in gone {
            if let Some(id) = self.nodes.remove(&u) {
                if !self.nodes.values().any(|other| *other == id) {
                    let _ = g.delete_node(&id);
                }
            }
        }
        let gone: Vec<String> = self
            .updates
            .keys()
            .filter(|u| !live_nodes.contains(*u))
            .cloned()
            .collect();
        for u in gone {
            if let Some((ids, keys)) = self.updates.remove(&u) {
                for id in ids {
                    // A key another rule still sets on this node stays.
                    let kept = p.updates.get(&id);
                    let _ = g.update_node(&id, |m| {
                        for k in &keys {
                            if kept.is_none_or(|md| !md.contains_key(k)) {
                                m.remove(k);
                            }
                        }
                    });
                }
            }
        }
        let gone: Vec<String> = self
            .edges
            .keys()
            .filter(|u| !live_edges.contains(*u))
            .cloned()
            .collect();
        for u in gone {
            if let Some(id) = self.edges.remove(&u) {
                let _ = g.delete_edge(&id);
            }
        }

        for (uuid, node) in p.nodes {
            let id = node.id.clone();
            if g.find_node(&id).is_some() {
                let md = node.metadata;
                let _ = g.update_node(&id, |m| {
                    for (k, v) in md {
                        if m.get(&k) != Some(&v) {
                            m.insert(k, v);
                        }
                    }
                });
            } else if let Err(e) = g.add_node(node) {
                warn!(rule = %uuid, "node rule: {e}");
                continue;
            }
            self.nodes.insert(uuid, id);
        }
        for (id, md) in &p.updates {
            let _ = g.update_node(id, |m| {
                for (k, v) in md {
                    if m.get(k) != Some(v) {
                        m.insert(k.clone(), v.clone());
                    }
                }
            });
        }
        for (uuid, ids) in p.touched {
            self.updates.entry(uuid).or_default().0.extend(ids);
        }
        for (uuid, edge) in p.edges {
            let id = edge.id.clone();
            if let Some(old) = self.edges.get(&uuid) {
                if *old != id {
                    let _ = g.delete_edge(old);
                    self.edges.remove(&uuid);
                }
            }
            if g.find_edge(&id).is_none() {
                if let Err(e) = g.add_edge(edge) {
                    debug!(rule = %uuid, "edge rule: {e}");
                    continue;
                }
                self.edges.insert(uuid, id);
            } else if self.edges.get(&uuid) == Some(&id) {
                let md = edge.metadata;
                let _ = g.update_edge(&id, |m| {
                    for (k, v) in md {
                        if m.get(&k) != Some(&v) {
                            m.insert(k, v);
                        }
                    }
                });
            }
        }
    }
}

/// One pass: plans under the read lock, applies under the write lock. Blocking.
pub fn pass(inputs: &Inputs, applied: &mut Applied) {
    topotap_topology::blocking::section("rules");
    let nodes = inputs.node_rules.list();
    let edges = inputs.edge_rules.list();
    let p = {
        let g = inputs.graph.read();
        plan(&g, &nodes, &edges, inputs)
    };
    for r in &nodes {
        r.status.set(p.errors.get(&r.uuid).cloned().flatten());
    }
    for r in &edges {
        r.status.set(p.errors.get(&r.uuid).cloned().flatten());
    }
    // The keys each update rule sets, so that its deletion removes them.
    for r in &nodes {
        if r.action == NodeAction::Update {
            let keys: Vec<String> = r.metadata.keys().cloned().collect();
            applied
                .updates
                .entry(r.uuid.clone())
                .or_insert_with(|| (HashSet::new(), Vec::new()))
                .1 = keys;
        }
    }
    let live_nodes: HashSet<String> = nodes.iter().map(|r| r.uuid.clone()).collect();
    let live_edges: HashSet<String> = edges.iter().map(|r| r.uuid.clone()).collect();
    let mut g = inputs.graph.write();
    applied.apply(&mut g, p, &live_nodes, &live_edges);
}

/// Applies the rules until `shutdown` turns true.
pub async fn run(inputs: Inputs, mut shutdown: watch::Receiver<bool>) {
    let mut node_store = inputs.node_rules.watch();
    let mut edge_store = inputs.edge_rules.watch();
    let mut events = inputs.graph.subscribe();
    let mut debounce = Debounce::default();
    debounce.changed(Instant::now());
    let applied = Arc::new(Mutex::new(Applied::default()));
    loop {
        let due = Debounce::sleep_until(debounce.deadline());
        tokio::select! {
            _ = shutdown.changed() => break,
            c = node_store.changed() => {
                if c.is_err() { break; }
                debounce.changed(Instant::now());
            }
            c = edge_store.changed() => {
                if c.is_err() { break; }
                debounce.changed(Instant::now());
            }
            ev = events.recv() => match ev {
                Ok(_) => debounce.changed(Instant::now()),
                Err(RecvError::Lagged(_)) => {
                    events = inputs.graph.subscribe();
                    debounce.changed(Instant::now());
                }
                Err(RecvError::Closed) => break,
            },
            _ = due => {
                if debounce.take_due(Instant::now()) {
                    let (i, a) = (inputs.clone(), applied.clone());
                    // Its own writes come back as events: the next pass finds
                    // nothing to change, and writes nothing.
                    let _ = tokio::task::spawn_blocking(move || pass(&i, &mut a.lock())).await;
                }
            }
        }
    }
}
