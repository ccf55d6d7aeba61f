//! The topology graph store.
//!
//! petgraph's `StableGraph` holds compact elements; an ID index maps [`Identifier`]s to
//! graph indices; insertion-ordered lists give every traversal a deterministic order.
//! Every mutation publishes a [`GraphEvent`] on a bounded broadcast channel: writers never
//! wait for subscribers, and a subscriber that falls behind is told it lagged and must
//! resynchronise from a fresh snapshot.
//!
//! Memory per element is kept small (see `benches/`): IDs are 16-byte UUIDs when
//! canonical, `Host`/`Origin` are interned, `Parent`/`Child` come from the edge's
//! endpoints, and the ID index stores only a 4-byte graph index per entry.

use std::hash::{BuildHasher, Hash};
use std::sync::Arc;

use hashbrown::HashTable;
use petgraph::stable_graph::{EdgeIndex, NodeIndex, StableDiGraph};
use petgraph::visit::EdgeRef as _;
use petgraph::Direction;
use serde_json::Value;
use tokio::sync::broadcast;

use crate::element::{now_ms, Edge, Metadata, Node};
use crate::timeline::Selection;
use crate::Identifier;

/// Handle of a node inside one [`Graph`]; valid until that node is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeIx(pub(crate) NodeIndex);

/// Handle of an edge inside one [`Graph`]; valid until that edge is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EdgeIx(pub(crate) EdgeIndex);

/// What went wrong with a graph mutation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GraphError {
    #[error("Node '{0}' already exists")]
    DuplicateNode(Identifier),
    #[error("Edge '{0}' already exists")]
    DuplicateEdge(Identifier),
    #[error("Node '{0}' does not exist")]
    NoSuchNode(Identifier),
    #[error("Edge '{0}' does not exist")]
    NoSuchEdge(Identifier),
    #[error("Parent node not found")]
    NoParent,
    #[error("Child node not found")]
    NoChild,
}

/// A change to the graph, carrying the element as it is after the change (or as it was,
/// for deletions).
#[derive(Debug, Clone, PartialEq)]
pub enum GraphEvent {
    NodeAdded(Node),
    NodeUpdated(Node),
    NodeDeleted(Node),
    EdgeAdded(Edge),
    EdgeUpdated(Edge),
    EdgeDeleted(Edge),
}

impl GraphEvent {
    /// Skydive's message type name (`NodeAdded`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            GraphEvent::NodeAdded(_) => "NodeAdded",
            GraphEvent::NodeUpdated(_) => "NodeUpdated",
            GraphEvent::NodeDeleted(_) => "NodeDeleted",
            GraphEvent::EdgeAdded(_) => "EdgeAdded",
            GraphEvent::EdgeUpdated(_) => "EdgeUpdated",
            GraphEvent::EdgeDeleted(_) => "EdgeDeleted",
        }
    }
}

/// Default capacity of the event channel; a subscriber more than this many events
/// behind gets `RecvError::Lagged` and must resynchronise.
pub const DEFAULT_EVENT_CAPACITY: usize = 65_536;

#[derive(Debug)]
pub(crate) struct Stamp {
    pub(crate) id: Identifier,
    pub(crate) metadata: Metadata,
    /// Index of the (`Host`, `Origin`) pair in the graph's interner.
    pub(crate) source: u32,
    pub(crate) created_at: i64,
    pub(crate) updated_at: i64,
    /// Set only in graphs built from history: when the element was deleted.
    pub(crate) deleted_at: Option<i64>,
    pub(crate) revision: i64,
    /// Position in the graph's insertion-order list.
    pub(crate) order: u32,
}

impl Stamp {
    /// Changes the metadata through `f`; when it really changed, bumps the revision and
    /// `UpdatedAt`. Returns whether it changed.
    fn change(&mut self, f: impl FnOnce(&mut Metadata)) -> bool {
        let before = self.metadata.clone();
        f(&mut self.metadata);
        if self.metadata == before {
            return false;
        }
        self.revision += 1;
        self.updated_at = now_ms().max(self.updated_at);
        true
    }
}

/// (`Host`, `Origin`) pairs shared by many elements, stored once, with how many live
/// elements use each, and which: a host's elements are found without visiting the
/// graph (a fleet analyzer drops a departed host's subgraph at the cost of that
/// subgraph, not of the whole merged graph).
#[derive(Debug, Default)]
pub(crate) struct Interner {
    pairs: Vec<(Arc<str>, Arc<str>)>,
    live: Vec<u32>,
    index: std::collections::HashMap<(Arc<str>, Arc<str>), u32>,
    /// The pairs of each host.
    by_host: std::collections::HashMap<Arc<str>, Vec<u32>>,
    /// The nodes and the edges using each pair.
    nodes: Vec<hashbrown::HashSet<NodeIndex>>,
    edges: Vec<hashbrown::HashSet<EdgeIndex>>,
}

/// Forgets `ix` in `set`, and the set's memory once it is empty.
fn forget<T: Hash + Eq>(set: &mut hashbrown::HashSet<T>, ix: &T) {
    set.remove(ix);
    if set.is_empty() && set.capacity() > 0 {
        *set = hashbrown::HashSet::new();
    }
}

impl Interner {
    /// The pair's index, counting one more element using it.
    fn acquire(&mut self, host: &str, origin: &str) -> u32 {
        let i = self.intern(host, origin);
        self.live[i as usize] += 1;
        i
    }

    /// One element using pair `i` is gone.
    fn release(&mut self, i: u32) {
        let n = &mut self.live[i as usize];
        *n = n.saturating_sub(1);
    }

    fn release_node(&mut self, i: u32, ix: NodeIndex) {
        self.release(i);
        forget(&mut self.nodes[i as usize], &ix);
    }

    fn release_edge(&mut self, i: u32, ix: EdgeIndex) {
        self.release(i);
        forget(&mut self.edges[i as usize], &ix);
    }

    pub(crate) fn intern(&mut self, host: &str, origin: &str) -> u32 {
        if let Some(i) = self.index.get(&(Arc::from(host), Arc::from(origin))) {
            return *i;
        }
        let key: (Arc<str>, Arc<str>) = (Arc::from(host), Arc::from(origin));
        self.pairs.push(key.clone());
        self.live.push(0);
        self.nodes.push(hashbrown::HashSet::new());
        self.edges.push(hashbrown::HashSet::new());
        let i = (self.pairs.len() - 1) as u32;
        self.by_host.entry(key.0.clone()).or_default().push(i);
        self.index.insert(key, i);
        i
    }

    /// Whether any live element has `Host` = `host`.
    fn has_host(&self, host: &str) -> bool {
        self.pairs_of(host).any(|i| self.live[i as usize] > 0)
    }

    fn pairs_of(&self, host: &str) -> impl Iterator<Item = u32> + '_ {
        self.by_host.get(host).into_iter().flatten().copied()
    }

    pub(crate) fn host(&self, i: u32) -> &str {
        &self.pairs[i as usize].0
    }

    pub(crate) fn origin(&self, i: u32) -> &str {
        &self.pairs[i as usize].1
    }
}

/// How much to grow a full element array by: a quarter, not the usual double, so a
/// large graph carries about 12% spare capacity on average instead of about 50%.
/// Growth stays geometric, so adding elements stays amortised O(1).
fn growth(len: usize) -> usize {
    len / 4 + 64
}

fn grow_gently<T>(v: &mut Vec<T>) {
    if v.len() == v.capacity() {
        v.reserve_exact(growth(v.len()));
    }
}

/// Insertion-ordered list with O(1) removal by position (tombstones) and amortised
/// compaction.
#[derive(Debug)]
struct OrderList<I> {
    slots: Vec<Option<I>>,
    live: usize,
}

impl<I: Copy> OrderList<I> {
    fn new() -> Self {
        OrderList {
            slots: Vec::new(),
            live: 0,
        }
    }

    fn push(&mut self, ix: I) -> u32 {
        grow_gently(&mut self.slots);
        self.slots.push(Some(ix));
        self.live += 1;
        (self.slots.len() - 1) as u32
    }

    fn remove(&mut self, pos: u32) {
        if let Some(slot) = self.slots.get_mut(pos as usize) {
            if slot.take().is_some() {
                self.live -= 1;
            }
        }
    }

    /// Compacts when more than half the slots are tombstones; `renumber` is told each
    /// surviving element's new position.
    fn maybe_compact(&mut self, mut renumber: impl FnMut(I, u32)) {
        if self.slots.len() < 64 || self.live * 2 > self.slots.len() {
            return;
        }
        self.slots.retain(Option::is_some);
        for (pos, ix) in self.slots.iter().enumerate() {
            if let Some(ix) = ix {
                renumber(*ix, pos as u32);
            }
        }
        self.slots.shrink_to(self.slots.len() * 2);
    }

    fn iter(&self) -> impl DoubleEndedIterator<Item = I> + '_ {
        self.slots.iter().filter_map(|s| *s)
    }
}

/// The topology graph.
pub struct Graph {
    pub(crate) inner: StableDiGraph<Stamp, Stamp, u32>,
    node_ids: HashTable<NodeIndex>,
    edge_ids: HashTable<EdgeIndex>,
    node_order: OrderList<NodeIndex>,
    edge_order: OrderList<EdgeIndex>,
    pub(crate) strings: Interner,
    hasher: hashbrown::DefaultHashBuilder,
    events: broadcast::Sender<Arc<GraphEvent>>,
}

impl Default for Graph {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Graph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Graph")
            .field("nodes", &self.node_count())
            .field("edges", &self.edge_count())
            .finish()
    }
}

impl Graph {
    pub fn new() -> Self {
        Self::with_event_capacity(DEFAULT_EVENT_CAPACITY)
    }

    pub fn with_event_capacity(capacity: usize) -> Self {
        let (events, _) = broadcast::channel(capacity.max(1));
        Graph {
            inner: StableDiGraph::default(),
            node_ids: HashTable::new(),
            edge_ids: HashTable::new(),
            node_order: OrderList::new(),
            edge_order: OrderList::new(),
            strings: Interner::default(),
            hasher: Default::default(),
            events,
        }
    }

    /// A receiver of every change made after this call. Subscribe while holding a read
    /// lock on the graph to pair a snapshot with exactly the changes that follow it.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<GraphEvent>> {
        self.events.subscribe()
    }

    /// The sending side, for subscribing without access to the graph.
    pub fn event_sender(&self) -> broadcast::Sender<Arc<GraphEvent>> {
        self.events.clone()
    }

    fn publish(&self, event: impl FnOnce() -> GraphEvent) {
        if self.events.receiver_count() > 0 {
            // An error only means every receiver went away meanwhile.
            let _ = self.events.send(Arc::new(event()));
        }
    }

    fn hash(&self, id: &Identifier) -> u64 {
        self.hasher.hash_one(id)
    }

    // ----- reads -------------------------------------------------------------------

    pub fn node_count(&self) -> usize {
        self.inner.node_count()
    }

    pub fn edge_count(&self) -> usize {
        self.inner.edge_count()
    }

    /// All nodes in insertion order.
    pub fn nodes(&self) -> impl DoubleEndedIterator<Item = NodeIx> + '_ {
        self.node_order.iter().map(NodeIx)
    }

    /// All edges in insertion order.
    pub fn edges(&self) -> impl DoubleEndedIterator<Item = EdgeIx> + '_ {
        self.edge_order.iter().map(EdgeIx)
    }

    pub fn find_node(&self, id: &Identifier) -> Option<NodeIx> {
        let inner = &self.inner;
        self.node_ids
            .find(self.hash(id), |ix| &inner[*ix].id == id)
            .map(|ix| NodeIx(*ix))
    }

    pub fn find_edge(&self, id: &Identifier) -> Option<EdgeIx> {
        let inner = &self.inner;
        self.edge_ids
            .find(self.hash(id), |ix| &inner[*ix].id == id)
            .map(|ix| EdgeIx(*ix))
    }

    /// The live graph as a [`View`], what queries read.
    pub fn view(&self) -> View<'_> {
        View {
            graph: self,
            at: None,
        }
    }

    /// A view of a node. Panics if `ix` was deleted: handles come from this graph's own
    /// iterators under the same lock, so that is a logic error.
    pub fn node(&self, ix: NodeIx) -> NodeRef<'_> {
        NodeRef {
            graph: self,
            ix,
            stamp: &self.inner[ix.0],
        }
    }

    pub fn edge(&self, ix: EdgeIx) -> EdgeRef<'_> {
        EdgeRef {
            view: self.view(),
            ix,
            stamp: &self.inner[ix.0],
        }
    }

    pub fn node_by_id(&self, id: &Identifier) -> Option<NodeRef<'_>> {
        self.find_node(id).map(|ix| self.node(ix))
    }

    pub fn edge_by_id(&self, id: &Identifier) -> Option<EdgeRef<'_>> {
        self.find_edge(id).map(|ix| self.edge(ix))
    }

    /// `(parent, child)` of an edge.
    pub fn endpoints(&self, ix: EdgeIx) -> (NodeIx, NodeIx) {
        let (p, c) = self
            .inner
            .edge_endpoints(ix.0)
            .expect("edge handle from this graph");
        (NodeIx(p), NodeIx(c))
    }

    /// Edges where `ix` is the parent, oldest first.
    pub fn out_edges(&self, ix: NodeIx) -> impl Iterator<Item = EdgeIx> + '_ {
        self.adjacent(ix, Direction::Outgoing)
    }

    /// Edges where `ix` is the child, oldest first.
    pub fn in_edges(&self, ix: NodeIx) -> impl Iterator<Item = EdgeIx> + '_ {
        self.adjacent(ix, Direction::Incoming)
    }

    /// Calls `f` with every edge where `ix` is the parent (`Outgoing`) or child
    /// (`Incoming`), newest first, without allocating. The hot path of traversals.
    #[inline]
    pub fn for_each_edge(&self, ix: NodeIx, dir: Direction, mut f: impl FnMut(EdgeIx, NodeIx)) {
        for e in self.inner.edges_directed(ix.0, dir) {
            let other = match dir {
                Direction::Outgoing => e.target(),
                Direction::Incoming => e.source(),
            };
            f(EdgeIx(e.id()), NodeIx(other));
        }
    }

    fn adjacent(&self, ix: NodeIx, dir: Direction) -> impl Iterator<Item = EdgeIx> + '_ {
        // petgraph lists a node's edges newest first; reverse for insertion order.
        let mut edges: Vec<EdgeIx> = self
            .inner
            .edges_directed(ix.0, dir)
            .map(|e| EdgeIx(e.id()))
            .collect();
        edges.reverse();
        edges.into_iter()
    }

    /// Owned snapshot of every node and edge, in insertion order.
    pub fn snapshot(&self) -> (Vec<Node>, Vec<Edge>) {
        (
            self.nodes().map(|n| self.node(n).to_owned()).collect(),
            self.edges().map(|e| self.edge(e).to_owned()).collect(),
        )
    }

    // ----- writes ------------------------------------------------------------------

    /// Whether any node or edge has `Host` = `host` (without visiting the elements).
    pub fn has_host(&self, host: &str) -> bool {
        self.strings.has_host(host)
    }

    /// The nodes and the edges whose `Host` is `host`, each in insertion order. Costs
    /// the host's elements, not the graph's.
    pub fn host_elements(&self, host: &str) -> (Vec<NodeIx>, Vec<EdgeIx>) {
        let mut nodes: Vec<NodeIndex> = Vec::new();
        let mut edges: Vec<EdgeIndex> = Vec::new();
        for i in self.strings.pairs_of(host) {
            nodes.extend(self.strings.nodes[i as usize].iter().copied());
            edges.extend(self.strings.edges[i as usize].iter().copied());
        }
        nodes.sort_unstable_by_key(|ix| self.inner[*ix].order);
        edges.sort_unstable_by_key(|ix| self.inner[*ix].order);
        (
            nodes.into_iter().map(NodeIx).collect(),
            edges.into_iter().map(EdgeIx).collect(),
        )
    }

    /// Adds a node as given (timestamps and revision included).
    pub fn add_node(&mut self, node: Node) -> Result<NodeIx, GraphError> {
        if self.find_node(&node.id).is_some() {
            return Err(GraphError::DuplicateNode(node.id));
        }
        let hash = self.hash(&node.id);
        let stamp = Stamp {
            source: self.strings.acquire(&node.host, &node.origin),
            id: node.id.clone(),
            metadata: Metadata::new(),
            created_at: node.created_at,
            updated_at: node.updated_at,
            deleted_at: node.deleted_at,
            revision: node.revision,
            order: 0,
        };
        if self.inner.node_count() == self.inner.capacity().0 {
            self.inner
                .reserve_exact_nodes(growth(self.inner.node_count()));
        }
        let source = stamp.source;
        let ix = self.inner.add_node(stamp);
        self.strings.nodes[source as usize].insert(ix);
        let order = self.node_order.push(ix);
        let w = &mut self.inner[ix];
        w.order = order;
        w.metadata = node.metadata.clone();
        let inner = &self.inner;
        let hasher = &self.hasher;
        self.node_ids
            .insert_unique(hash, ix, |i| hasher.hash_one(&inner[*i].id));
        self.publish(|| GraphEvent::NodeAdded(node));
        Ok(NodeIx(ix))
    }

    /// Adds an edge as given; its parent and child must exist.
    pub fn add_edge(&mut self, edge: Edge) -> Result<EdgeIx, GraphError> {
        if self.find_edge(&edge.id).is_some() {
            return Err(GraphError::DuplicateEdge(edge.id));
        }
        let parent = self.find_node(&edge.parent).ok_or(GraphError::NoParent)?;
        let child = self.find_node(&edge.child).ok_or(GraphError::NoChild)?;
        let hash = self.hash(&edge.id);
        let stamp = Stamp {
            source: self.strings.acquire(&edge.host, &edge.origin),
            id: edge.id.clone(),
            metadata: edge.metadata.clone(),
            created_at: edge.created_at,
            updated_at: edge.updated_at,
            deleted_at: edge.deleted_at,
            revision: edge.revision,
            order: 0,
        };
        if self.inner.edge_count() == self.inner.capacity().1 {
            self.inner
                .reserve_exact_edges(growth(self.inner.edge_count()));
        }
        let source = stamp.source;
        let ix = self.inner.add_edge(parent.0, child.0, stamp);
        self.strings.edges[source as usize].insert(ix);
        self.inner[ix].order = self.edge_order.push(ix);
        let inner = &self.inner;
        let hasher = &self.hasher;
        self.edge_ids
            .insert_unique(hash, ix, |i| hasher.hash_one(&inner[*i].id));
        self.publish(|| GraphEvent::EdgeAdded(edge));
        Ok(EdgeIx(ix))
    }

    /// Adds a node even when one with the same ID is there: for graphs built from
    /// history, where a time window holds several revisions of an element. The ID then
    /// finds the revision added last; the others stay in traversals and listings.
    pub fn add_node_revision(&mut self, node: Node) -> NodeIx {
        if let Some(old) = self.find_node(&node.id) {
            let hash = self.hash(&node.id);
            if let Ok(entry) = self.node_ids.find_entry(hash, |i| *i == old.0) {
                entry.remove();
            }
        }
        self.add_node(node)
            .expect("no node of this ID is indexed any more")
    }

    /// Adds an edge even when one with the same ID is there (see
    /// [`Graph::add_node_revision`]), between the last added revisions of its parent
    /// and child; fails only when one of them is missing.
    pub fn add_edge_revision(&mut self, edge: Edge) -> Result<EdgeIx, GraphError> {
        let old = self.find_edge(&edge.id);
        if self.find_node(&edge.parent).is_none() {
            return Err(GraphError::NoParent);
        }
        if self.find_node(&edge.child).is_none() {
            return Err(GraphError::NoChild);
        }
        if let Some(old) = old {
            let hash = self.hash(&edge.id);
            if let Ok(entry) = self.edge_ids.find_entry(hash, |i| *i == old.0) {
                entry.remove();
            }
        }
        self.add_edge(edge)
    }

    /// Changes a node's metadata through `f`. When the metadata actually changed, the
    /// revision is incremented, `UpdatedAt` set to now and `NodeUpdated` published.
    /// Returns whether it changed.
    pub fn update_node(
        &mut self,
        id: &Identifier,
        f: impl FnOnce(&mut Metadata),
    ) -> Result<bool, GraphError> {
        let ix = self
            .find_node(id)
            .ok_or_else(|| GraphError::NoSuchNode(id.clone()))?;
        if !self.inner[ix.0].change(f) {
            return Ok(false);
        }
        self.publish(|| GraphEvent::NodeUpdated(self.node(ix).to_owned()));
        Ok(true)
    }

    /// Sets one (dotted) metadata key of a node; see [`Graph::update_node`].
    pub fn set_node_field(
        &mut self,
        id: &Identifier,
        key: &str,
        value: Value,
    ) -> Result<bool, GraphError> {
        self.update_node(id, |m| {
            crate::element::set_field(m, key, value);
        })
    }

    /// Changes an edge's metadata through `f`; like [`Graph::update_node`].
    pub fn update_edge(
        &mut self,
        id: &Identifier,
        f: impl FnOnce(&mut Metadata),
    ) -> Result<bool, GraphError> {
        let ix = self
            .find_edge(id)
            .ok_or_else(|| GraphError::NoSuchEdge(id.clone()))?;
        if !self.inner[ix.0].change(f) {
            return Ok(false);
        }
        self.publish(|| GraphEvent::EdgeUpdated(self.edge(ix).to_owned()));
        Ok(true)
    }

    /// Deletes an edge and returns it.
    pub fn delete_edge(&mut self, id: &Identifier) -> Result<Edge, GraphError> {
        let ix = self
            .find_edge(id)
            .ok_or_else(|| GraphError::NoSuchEdge(id.clone()))?;
        Ok(self.remove_edge_ix(ix))
    }

    pub(crate) fn remove_edge_ix(&mut self, ix: EdgeIx) -> Edge {
        let edge = self.edge(ix).to_owned();
        let hash = self.hash(&edge.id);
        if let Ok(entry) = self.edge_ids.find_entry(hash, |i| *i == ix.0) {
            entry.remove();
        }
        let stamp = self
            .inner
            .remove_edge(ix.0)
            .expect("edge handle from this graph");
        self.strings.release_edge(stamp.source, ix.0);
        self.edge_order.remove(stamp.order);
        let inner = &mut self.inner;
        self.edge_order.maybe_compact(|e, pos| inner[e].order = pos);
        self.publish(|| GraphEvent::EdgeDeleted(edge.clone()));
        edge
    }

    /// Deletes a node, after deleting every edge touching it (each published as
    /// `EdgeDeleted`), and returns it.
    pub fn delete_node(&mut self, id: &Identifier) -> Result<Node, GraphError> {
        let ix = self
            .find_node(id)
            .ok_or_else(|| GraphError::NoSuchNode(id.clone()))?;
        let mut edges: Vec<EdgeIx> = self.out_edges(ix).collect();
        edges.extend(self.in_edges(ix));
        edges.sort_unstable();
        edges.dedup();
        for e in edges {
            self.remove_edge_ix(e);
        }
        let node = self.node(ix).to_owned();
        let hash = self.hash(&node.id);
        if let Ok(entry) = self.node_ids.find_entry(hash, |i| *i == ix.0) {
            entry.remove();
        }
        let stamp = self
            .inner
            .remove_node(ix.0)
            .expect("node handle from this graph");
        self.strings.release_node(stamp.source, ix.0);
        self.node_order.remove(stamp.order);
        let inner = &mut self.inner;
        self.node_order.maybe_compact(|n, pos| inner[n].order = pos);
        self.publish(|| GraphEvent::NodeDeleted(node.clone()));
        Ok(node)
    }

    /// Deletes a node and, recursively, every node it owns through `ownership` edges.
    /// Returns how many nodes were deleted.
    pub fn delete_subtree(&mut self, id: &Identifier) -> Result<usize, GraphError> {
        let root = self
            .find_node(id)
            .ok_or_else(|| GraphError::NoSuchNode(id.clone()))?;
        let mut order = vec![root];
        let mut i = 0;
        while i < order.len() {
            let n = order[i];
            for e in self.out_edges(n) {
                if crate::schema::is_ownership(self.edge(e).metadata()) {
                    let (_, child) = self.endpoints(e);
                    if !order.contains(&child) {
                        order.push(child);
                    }
                }
            }
            i += 1;
        }
        let ids: Vec<Identifier> = order.iter().map(|n| self.node(*n).id().clone()).collect();
        // Children first, so subscribers never see an orphan.
        for id in ids.iter().rev() {
            self.delete_node(id)?;
        }
        Ok(ids.len())
    }
}

/// What a query reads: the live graph ([`Graph::view`]), or a [`Timeline`] as it was
/// at an instant ([`crate::timeline::At::view`]). `Copy`; the methods are the graph's
/// read methods, and on the live graph they are exactly those.
///
/// [`Timeline`]: crate::timeline::Timeline
#[derive(Clone, Copy)]
pub struct View<'g> {
    graph: &'g Graph,
    /// In a past view: the revision of each element at that instant.
    at: Option<&'g Selection<'g>>,
}

impl<'g> View<'g> {
    pub(crate) fn past(graph: &'g Graph, at: &'g Selection<'g>) -> Self {
        View {
            graph,
            at: Some(at),
        }
    }

    /// The graph read; in a past view, every identity ever seen in its window.
    pub fn graph(&self) -> &'g Graph {
        self.graph
    }

    /// Whether this is a past view.
    pub fn is_past(&self) -> bool {
        self.at.is_some()
    }

    pub fn node_count(&self) -> usize {
        match self.at {
            None => self.graph.node_count(),
            Some(s) => s.node_count,
        }
    }

    pub fn edge_count(&self) -> usize {
        match self.at {
            None => self.graph.edge_count(),
            Some(s) => s.edge_count,
        }
    }

    /// The nodes there, in insertion order.
    pub fn nodes(&self) -> impl DoubleEndedIterator<Item = NodeIx> + 'g {
        let at = self.at;
        self.graph
            .nodes()
            .filter(move |ix| at.is_none_or(|s| s.node(*ix).is_some()))
    }

    /// The edges there (both ends there too), in insertion order.
    pub fn edges(&self) -> impl DoubleEndedIterator<Item = EdgeIx> + 'g {
        let at = self.at;
        self.graph
            .edges()
            .filter(move |ix| at.is_none_or(|s| s.edge(*ix).is_some()))
    }

    pub fn find_node(&self, id: &Identifier) -> Option<NodeIx> {
        let ix = self.graph.find_node(id)?;
        self.at.is_none_or(|s| s.node(ix).is_some()).then_some(ix)
    }

    pub fn find_edge(&self, id: &Identifier) -> Option<EdgeIx> {
        let ix = self.graph.find_edge(id)?;
        self.at.is_none_or(|s| s.edge(ix).is_some()).then_some(ix)
    }

    /// A view of a node that is there. Panics otherwise: handles come from this view's
    /// own iterators under the same lock, so that is a logic error.
    #[inline]
    pub fn node(&self, ix: NodeIx) -> NodeRef<'g> {
        match self.at {
            None => self.graph.node(ix),
            Some(s) => NodeRef {
                graph: self.graph,
                ix,
                stamp: s.node(ix).expect("node handle from this view"),
            },
        }
    }

    #[inline]
    pub fn edge(&self, ix: EdgeIx) -> EdgeRef<'g> {
        match self.at {
            None => self.graph.edge(ix),
            Some(s) => EdgeRef {
                view: *self,
                ix,
                stamp: s.edge(ix).expect("edge handle from this view"),
            },
        }
    }

    pub fn node_by_id(&self, id: &Identifier) -> Option<NodeRef<'g>> {
        self.find_node(id).map(|ix| self.node(ix))
    }

    pub fn edge_by_id(&self, id: &Identifier) -> Option<EdgeRef<'g>> {
        self.find_edge(id).map(|ix| self.edge(ix))
    }

    /// `(parent, child)` of an edge.
    pub fn endpoints(&self, ix: EdgeIx) -> (NodeIx, NodeIx) {
        self.graph.endpoints(ix)
    }

    /// Edges there where `ix` is the parent, oldest first.
    pub fn out_edges(&self, ix: NodeIx) -> impl Iterator<Item = EdgeIx> + 'g {
        let at = self.at;
        self.graph
            .out_edges(ix)
            .filter(move |e| at.is_none_or(|s| s.edge(*e).is_some()))
    }

    /// Edges there where `ix` is the child, oldest first.
    pub fn in_edges(&self, ix: NodeIx) -> impl Iterator<Item = EdgeIx> + 'g {
        let at = self.at;
        self.graph
            .in_edges(ix)
            .filter(move |e| at.is_none_or(|s| s.edge(*e).is_some()))
    }

    /// [`Graph::for_each_edge`], over the edges there.
    #[inline]
    pub fn for_each_edge(&self, ix: NodeIx, dir: Direction, mut f: impl FnMut(EdgeIx, NodeIx)) {
        match self.at {
            None => self.graph.for_each_edge(ix, dir, f),
            Some(s) => self.graph.for_each_edge(ix, dir, |e, other| {
                if s.edge(e).is_some() {
                    f(e, other)
                }
            }),
        }
    }

    /// Owned snapshot of every node and edge there, in insertion order.
    pub fn snapshot(&self) -> (Vec<Node>, Vec<Edge>) {
        (
            self.nodes().map(|n| self.node(n).to_owned()).collect(),
            self.edges().map(|e| self.edge(e).to_owned()).collect(),
        )
    }
}

impl<'g> From<&'g Graph> for View<'g> {
    fn from(graph: &'g Graph) -> Self {
        graph.view()
    }
}

/// Read-only view of a node.
#[derive(Clone, Copy)]
pub struct NodeRef<'g> {
    graph: &'g Graph,
    ix: NodeIx,
    stamp: &'g Stamp,
}

/// Read-only view of an edge.
#[derive(Clone, Copy)]
pub struct EdgeRef<'g> {
    /// Its ends are read through the view: in a past view, as they were then.
    view: View<'g>,
    ix: EdgeIx,
    stamp: &'g Stamp,
}

macro_rules! element_accessors {
    () => {
        pub fn id(&self) -> &'g Identifier {
            &self.stamp.id
        }
        pub fn metadata(&self) -> &'g Metadata {
            &self.stamp.metadata
        }
        pub fn host(&self) -> &'g str {
            self.graph().strings.host(self.stamp.source)
        }
        pub fn origin(&self) -> &'g str {
            self.graph().strings.origin(self.stamp.source)
        }
        pub fn created_at(&self) -> i64 {
            self.stamp.created_at
        }
        pub fn updated_at(&self) -> i64 {
            self.stamp.updated_at
        }
        pub fn revision(&self) -> i64 {
            self.stamp.revision
        }
        /// `None` for live elements; in a graph built from history, when the element
        /// was deleted.
        pub fn deleted_at(&self) -> Option<i64> {
            self.stamp.deleted_at
        }
    };
}

impl<'g> NodeRef<'g> {
    element_accessors!();

    fn graph(&self) -> &'g Graph {
        self.graph
    }

    pub fn ix(&self) -> NodeIx {
        self.ix
    }

    pub fn to_owned(&self) -> Node {
        Node {
            id: self.id().clone(),
            metadata: self.metadata().clone(),
            host: self.host().to_owned(),
            origin: self.origin().to_owned(),
            created_at: self.created_at(),
            updated_at: self.updated_at(),
            deleted_at: self.deleted_at(),
            revision: self.revision(),
        }
    }
}

impl<'g> EdgeRef<'g> {
    element_accessors!();

    fn graph(&self) -> &'g Graph {
        self.view.graph
    }

    pub fn ix(&self) -> EdgeIx {
        self.ix
    }

    pub fn parent(&self) -> NodeRef<'g> {
        self.view.node(self.view.graph.endpoints(self.ix).0)
    }

    pub fn child(&self) -> NodeRef<'g> {
        self.view.node(self.view.graph.endpoints(self.ix).1)
    }

    pub fn to_owned(&self) -> Edge {
        Edge {
            id: self.id().clone(),
            metadata: self.metadata().clone(),
            host: self.host().to_owned(),
            origin: self.origin().to_owned(),
            created_at: self.created_at(),
            updated_at: self.updated_at(),
            deleted_at: self.deleted_at(),
            revision: self.revision(),
            parent: self.parent().id().clone(),
            child: self.child().id().clone(),
        }
    }
}

/// Serialises the view directly, without building an owned copy.
impl serde::Serialize for NodeRef<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Node", 8)?;
        st.serialize_field("ID", self.id())?;
        st.serialize_field("Metadata", self.metadata())?;
        st.serialize_field("Host", self.host())?;
        st.serialize_field("Origin", self.origin())?;
        st.serialize_field("CreatedAt", &self.created_at())?;
        st.serialize_field("UpdatedAt", &self.updated_at())?;
        st.serialize_field("DeletedAt", &self.deleted_at())?;
        st.serialize_field("Revision", &self.revision())?;
        st.end()
    }
}

impl serde::Serialize for EdgeRef<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Edge", 10)?;
        st.serialize_field("ID", self.id())?;
        st.serialize_field("Metadata", self.metadata())?;
        st.serialize_field("Host", self.host())?;
        st.serialize_field("Origin", self.origin())?;
        st.serialize_field("CreatedAt", &self.created_at())?;
        st.serialize_field("UpdatedAt", &self.updated_at())?;
        st.serialize_field("DeletedAt", &self.deleted_at())?;
        st.serialize_field("Revision", &self.revision())?;
        st.serialize_field("Parent", self.parent().id())?;
        st.serialize_field("Child", self.child().id())?;
        st.end()
    }
}

impl Hash for NodeRef<'_> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.ix.hash(state)
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn has_host_counts_live_elements() {
        let mut g = Graph::new();
        assert!(!g.has_host("h1"));
        let md = Metadata::new();
        g.add_node(Node::new("a".into(), md.clone(), "h1", "o"))
            .unwrap();
        g.add_node(Node::new("b".into(), md.clone(), "h2", "o"))
            .unwrap();
        g.add_edge(Edge::new("a".into(), "b".into(), md, "h1", "other"))
            .unwrap();
        assert!(g.has_host("h1") && g.has_host("h2") && !g.has_host("h3"));
        // Deleting the node deletes the edge too: nothing of h1 is left.
        g.delete_node(&"a".into()).unwrap();
        assert!(!g.has_host("h1"));
        assert!(g.has_host("h2"));
    }

    #[test]
    fn host_elements_follow_adds_and_deletes_in_insertion_order() {
        let mut g = Graph::new();
        let md = Metadata::new();
        let ids = |g: &Graph, host: &str| {
            let (n, e) = g.host_elements(host);
            let n: Vec<String> = n.iter().map(|ix| g.node(*ix).id().to_string()).collect();
            let e: Vec<String> = e.iter().map(|ix| g.edge(*ix).id().to_string()).collect();
            (n, e)
        };
        // Two origins of one host, another host between them.
        for (id, host, origin) in [
            ("c", "h1", "o1"),
            ("x", "h2", "o1"),
            ("a", "h1", "o2"),
            ("b", "h1", "o1"),
        ] {
            g.add_node(Node::new(id.into(), md.clone(), host, origin))
                .unwrap();
        }
        let mut e1 = Edge::new("c".into(), "a".into(), md.clone(), "h1", "o2");
        e1.id = "e1".into();
        let mut e2 = Edge::new("x".into(), "b".into(), md.clone(), "h1", "o1");
        e2.id = "e2".into();
        let mut e3 = Edge::new("x".into(), "c".into(), md.clone(), "h2", "o1");
        e3.id = "e3".into();
        for e in [e1, e2, e3] {
            g.add_edge(e).unwrap();
        }
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(ids(&g, "h1"), (s(&["c", "a", "b"]), s(&["e1", "e2"])));
        assert_eq!(ids(&g, "h2"), (s(&["x"]), s(&["e3"])));
        assert_eq!(ids(&g, "h3"), (vec![], vec![]));
        // Deleting a node takes its edges out of both hosts' elements.
        g.delete_node(&"c".into()).unwrap();
        assert_eq!(ids(&g, "h1"), (s(&["a", "b"]), s(&["e2"])));
        assert_eq!(ids(&g, "h2"), (s(&["x"]), vec![]));
        g.delete_edge(&"e2".into()).unwrap();
        for id in ["a", "b"] {
            g.delete_node(&id.into()).unwrap();
        }
        assert_eq!(ids(&g, "h1"), (vec![], vec![]));
        assert!(!g.has_host("h1"));
        // A node added again after many deletions (the order list compacted) comes
        // after the older ones.
        for i in 0..200 {
            g.add_node(Node::new(
                format!("t{i}").as_str().into(),
                md.clone(),
                "h1",
                "o1",
            ))
            .unwrap();
        }
        for i in 0..150 {
            g.delete_node(&format!("t{i}").as_str().into()).unwrap();
        }
        g.add_node(Node::new("z".into(), md.clone(), "h1", "o1"))
            .unwrap();
        let (n, _) = ids(&g, "h1");
        assert_eq!(n.len(), 51);
        assert_eq!(n.first().map(String::as_str), Some("t150"));
        assert_eq!(n.last().map(String::as_str), Some("z"));
    }

    use super::*;
    use serde_json::json;

    fn md(v: Value) -> Metadata {
        v.as_object().unwrap().clone()
    }

    fn node(g: &mut Graph, id: &str, name: &str) -> Identifier {
        let id = Identifier::from(id);
        g.add_node(Node::new(
            id.clone(),
            md(json!({"Name": name})),
            "h",
            "agent.h",
        ))
        .unwrap();
        id
    }

    fn link(g: &mut Graph, p: &Identifier, c: &Identifier, rel: &str) -> Identifier {
        let e = Edge::new(
            p.clone(),
            c.clone(),
            md(json!({"RelationType": rel})),
            "h",
            "agent.h",
        );
        let id = e.id.clone();
        g.add_edge(e).unwrap();
        id
    }

    #[test]
    fn insertion_order_survives_deletes_and_compaction() {
        let mut g = Graph::new();
        let ids: Vec<_> = (0..200)
            .map(|i| node(&mut g, &format!("n{i}"), "x"))
            .collect();
        for id in ids.iter().step_by(3) {
            g.delete_node(id).unwrap();
        }
        for i in 200..300 {
            node(&mut g, &format!("n{i}"), "x");
        }
        let got: Vec<String> = g.nodes().map(|n| g.node(n).id().to_string()).collect();
        let want: Vec<String> = (0..300)
            .filter(|i| *i >= 200 || i % 3 != 0)
            .map(|i| format!("n{i}"))
            .collect();
        assert_eq!(got, want);
        for id in &want {
            assert!(g.find_node(&Identifier::from(id.as_str())).is_some());
        }
    }

    #[test]
    fn duplicates_and_missing_endpoints_are_errors() {
        let mut g = Graph::new();
        let a = node(&mut g, "a", "a");
        assert_eq!(
            g.add_node(Node::new(a.clone(), Metadata::new(), "h", "o")),
            Err(GraphError::DuplicateNode(a.clone()))
        );
        let e = Edge::new(a.clone(), "zz".into(), Metadata::new(), "h", "o");
        assert_eq!(g.add_edge(e), Err(GraphError::NoChild));
        let e = Edge::new("zz".into(), a.clone(), Metadata::new(), "h", "o");
        assert_eq!(g.add_edge(e), Err(GraphError::NoParent));
    }

    #[test]
    fn adjacency_is_oldest_first_and_delete_node_removes_edges() {
        let mut g = Graph::new();
        let h = node(&mut g, "h", "host");
        let a = node(&mut g, "a", "a");
        let b = node(&mut g, "b", "b");
        link(&mut g, &h, &a, "ownership");
        link(&mut g, &h, &b, "ownership");
        let hx = g.find_node(&h).unwrap();
        let children: Vec<String> = g
            .out_edges(hx)
            .map(|e| g.edge(e).child().id().to_string())
            .collect();
        assert_eq!(children, ["a", "b"]);
        g.delete_node(&a).unwrap();
        assert_eq!(g.edge_count(), 1);
        assert_eq!(g.out_edges(hx).count(), 1);
    }

    #[test]
    fn update_bumps_revision_only_on_change_and_publishes() {
        let mut g = Graph::new();
        let a = node(&mut g, "a", "a");
        let mut rx = g.subscribe();
        assert!(!g.update_node(&a, |_| {}).unwrap());
        assert!(g.set_node_field(&a, "MTU", json!(1500)).unwrap());
        assert!(!g.set_node_field(&a, "MTU", json!(1500)).unwrap());
        let n = g.node_by_id(&a).unwrap();
        assert_eq!(n.revision(), 2);
        match &*rx.try_recv().unwrap() {
            GraphEvent::NodeUpdated(n) => assert_eq!(n.metadata["MTU"], json!(1500)),
            other => panic!("unexpected {other:?}"),
        }
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn events_follow_mutations_in_order() {
        let mut g = Graph::new();
        let mut rx = g.subscribe();
        let h = node(&mut g, "h", "host");
        let a = node(&mut g, "a", "a");
        link(&mut g, &h, &a, "ownership");
        g.delete_subtree(&h).unwrap();
        let names: Vec<&str> = std::iter::from_fn(|| rx.try_recv().ok())
            .map(|e| e.name())
            .collect();
        assert_eq!(
            names,
            [
                "NodeAdded",
                "NodeAdded",
                "EdgeAdded",
                "EdgeDeleted",
                "NodeDeleted",
                "NodeDeleted"
            ]
        );
        assert_eq!(g.node_count(), 0);
    }

    #[test]
    fn lagging_subscriber_is_told_not_blocking_writer() {
        let mut g = Graph::with_event_capacity(4);
        let mut rx = g.subscribe();
        for i in 0..10 {
            node(&mut g, &format!("n{i}"), "x");
        }
        assert!(matches!(
            rx.try_recv(),
            Err(broadcast::error::TryRecvError::Lagged(6))
        ));
    }

    #[test]
    fn views_serialize_like_owned_elements() {
        let mut g = Graph::new();
        let h = node(&mut g, "h", "host");
        let a = node(&mut g, "a", "a");
        let e = link(&mut g, &h, &a, "ownership");
        let n = g.node_by_id(&a).unwrap();
        assert_eq!(
            serde_json::to_value(n).unwrap(),
            serde_json::to_value(n.to_owned()).unwrap()
        );
        let e = g.edge_by_id(&e).unwrap();
        assert_eq!(
            serde_json::to_value(e).unwrap(),
            serde_json::to_value(e.to_owned()).unwrap()
        );
    }
}
