//! A temporal graph kept in memory: every revision of every node and edge over a
//! window of time, asked as the graph of any instant of it without building a graph.
//!
//! - One identity per node ID and per edge ID ever seen in the window, held in a
//!   [`Graph`] (its ID index, insertion order, adjacency and `Host`/`Origin`
//!   interner); each identity keeps its revisions `[from, to)`, oldest first.
//! - Every change is logged in time order; every so often (every
//!   `max(1024, identities)` changes) a checkpoint records which revision of each
//!   element is current. The graph at `t` ([`Timeline::at`]) starts from the last
//!   checkpoint at or before `t` and replays the changes after it up to `t`: its cost
//!   is the number of identities plus at most one checkpoint interval, whatever the
//!   number of revisions.
//! - [`At::view`] is a [`View`] the Gremlin evaluator reads like the live graph: an
//!   element without a revision at `t` is not there, an edge is there only when both
//!   its ends are.
//! - A memory budget: beyond it, the oldest checkpoint intervals go, with the
//!   revisions that ended in them, and the timeline's start moves forward.
//!
//! Times never go back: a change dated before the latest one is applied at the latest.

use std::collections::VecDeque;

use hashbrown::HashSet;
use petgraph::stable_graph::{EdgeIndex, NodeIndex};

use crate::graph::{Stamp, View};
use crate::{Edge, EdgeIx, Graph, Identifier, Metadata, Node, NodeIx};

/// No revision.
const NONE: u32 = u32::MAX;
/// Still the current revision.
const OPEN: i64 = i64::MAX;
/// Bytes of one logged change.
const ENTRY_BYTES: u64 = std::mem::size_of::<Entry>() as u64;
/// Fewest changes between two checkpoints.
const MIN_INTERVAL: usize = 1024;

struct Rev {
    to: i64,
    /// Estimated bytes this revision takes.
    bytes: u64,
    stamp: Stamp,
}

#[derive(Default)]
struct Hist {
    /// Revisions removed from the front (global revision numbers start there).
    base: u32,
    revs: Vec<Rev>,
    /// Log position of the last change to this element.
    last_pos: u64,
}

impl Hist {
    fn get(&self, global: u32) -> Option<&Stamp> {
        if global == NONE || global < self.base {
            return None;
        }
        self.revs
            .get((global - self.base) as usize)
            .map(|r| &r.stamp)
    }

    fn open(&self) -> bool {
        self.revs.last().is_some_and(|r| r.to == OPEN)
    }
}

/// One change: element `ix` (a node's or an edge's index) has revision `rev` (a global
/// revision number; [`NONE`]: none) from `at` on.
#[derive(Clone, Copy)]
struct Entry {
    at: i64,
    ix: u32,
    rev: u32,
    node: bool,
}

/// The current revision of every element after the change before log position `pos`.
struct Checkpoint {
    pos: u64,
    /// The time of that change (the timeline's start for the first one).
    at: i64,
    nodes: Vec<u32>,
    edges: Vec<u32>,
    /// Bytes of the revisions that ended after this checkpoint and before the next.
    freeable: u64,
}

impl Checkpoint {
    fn bytes(&self) -> u64 {
        4 * (self.nodes.len() + self.edges.len()) as u64
    }
}

/// What a timeline holds, for `/api/status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimelineStats {
    /// The oldest instant it answers for (ms since the epoch).
    pub start: i64,
    /// The latest change it holds.
    pub last: i64,
    pub revisions: u64,
    /// Node and edge identities.
    pub elements: u64,
    /// Estimated bytes (revision documents, the change log and checkpoints).
    pub bytes: u64,
    pub budget: u64,
}

/// See the [module documentation](self).
pub struct Timeline {
    graph: Graph,
    nodes: Vec<Hist>,
    edges: Vec<Hist>,
    cur_nodes: Vec<u32>,
    cur_edges: Vec<u32>,
    log: VecDeque<Entry>,
    /// Log position of `log[0]`.
    log_pos: u64,
    checkpoints: VecDeque<Checkpoint>,
    since_checkpoint: usize,
    /// Estimated bytes at the last checkpoint.
    bytes_at_checkpoint: u64,
    last: i64,
    budget: u64,
    bytes: u64,
    revisions: u64,
}

impl Timeline {
    /// An empty timeline answering from `start` on, keeping about `budget` bytes.
    pub fn new(start: i64, budget: u64) -> Timeline {
        Timeline {
            graph: Graph::with_event_capacity(1),
            nodes: Vec::new(),
            edges: Vec::new(),
            cur_nodes: Vec::new(),
            cur_edges: Vec::new(),
            log: VecDeque::new(),
            log_pos: 0,
            checkpoints: VecDeque::from([Checkpoint {
                pos: 0,
                at: start,
                nodes: Vec::new(),
                edges: Vec::new(),
                freeable: 0,
            }]),
            since_checkpoint: 0,
            bytes_at_checkpoint: 0,
            last: start,
            budget,
            bytes: 0,
            revisions: 0,
        }
    }

    /// The oldest instant the timeline answers for.
    pub fn start(&self) -> i64 {
        self.checkpoints.front().map_or(self.last, |c| c.at)
    }

    /// Whether the graph at `t` is known here.
    pub fn covers(&self, t: i64) -> bool {
        t >= self.start()
    }

    pub fn stats(&self) -> TimelineStats {
        TimelineStats {
            start: self.start(),
            last: self.last,
            revisions: self.revisions,
            elements: (self.graph.node_count() + self.graph.edge_count()) as u64,
            bytes: self.bytes,
            budget: self.budget,
        }
    }

    fn clamp(&mut self, at: i64) -> i64 {
        self.last = self.last.max(at);
        self.last
    }

    /// From `at` on, the node is `node`.
    pub fn open_node(&mut self, at: i64, node: &Node) {
        let at = self.clamp(at);
        let ix = match self.graph.find_node(&node.id) {
            Some(ix) => ix,
            None => self
                .graph
                .add_node(Node {
                    id: node.id.clone(),
                    metadata: Metadata::new(),
                    host: node.host.clone(),
                    origin: node.origin.clone(),
                    created_at: node.created_at,
                    updated_at: node.updated_at,
                    deleted_at: None,
                    revision: node.revision,
                })
                .expect("no node of this ID"),
        };
        let stamp = self.stamp_of(
            &node.id,
            &node.metadata,
            &node.host,
            &node.origin,
            (node.created_at, node.updated_at, node.revision),
        );
        let bytes = crate::gremlin::node_size_lower_bound(&node.metadata) as u64;
        self.push(true, ix.0.index(), at, Some((stamp, bytes)));
    }

    /// From `at` on, the edge is `edge`; left out when one of its ends was never seen.
    pub fn open_edge(&mut self, at: i64, edge: &Edge) {
        let at = self.clamp(at);
        let (Some(parent), Some(child)) = (
            self.graph.find_node(&edge.parent),
            self.graph.find_node(&edge.child),
        ) else {
            return;
        };
        let ix = match self.graph.find_edge(&edge.id) {
            Some(ix) if self.graph.endpoints(ix) == (parent, child) => ix,
            old => {
                // New, or the same ID between other ends: a new identity.
                if let Some(old) = old {
                    self.push(false, old.0.index(), at, None);
                }
                let placeholder = Edge {
                    id: edge.id.clone(),
                    metadata: Metadata::new(),
                    host: edge.host.clone(),
                    origin: edge.origin.clone(),
                    created_at: edge.created_at,
                    updated_at: edge.updated_at,
                    deleted_at: None,
                    revision: edge.revision,
                    parent: edge.parent.clone(),
                    child: edge.child.clone(),
                };
                match self.graph.add_edge_revision(placeholder) {
                    Ok(ix) => ix,
                    Err(_) => return,
                }
            }
        };
        let stamp = self.stamp_of(
            &edge.id,
            &edge.metadata,
            &edge.host,
            &edge.origin,
            (edge.created_at, edge.updated_at, edge.revision),
        );
        let bytes = crate::gremlin::edge_size_lower_bound(&edge.metadata) as u64;
        self.push(false, ix.0.index(), at, Some((stamp, bytes)));
    }

    /// The node is gone from `at` on.
    pub fn close_node(&mut self, at: i64, id: &Identifier) {
        let at = self.clamp(at);
        if let Some(ix) = self.graph.find_node(id) {
            self.push(true, ix.0.index(), at, None);
        }
    }

    /// The edge is gone from `at` on.
    pub fn close_edge(&mut self, at: i64, id: &Identifier) {
        let at = self.clamp(at);
        if let Some(ix) = self.graph.find_edge(id) {
            self.push(false, ix.0.index(), at, None);
        }
    }

    /// Brings the current revisions to the graph's state `nodes`, `edges` at `at`
    /// (after missed changes): what changed or appeared is opened, what is gone is
    /// closed, the rest is left alone. Compares what the history's writer compares.
    pub fn reconcile(&mut self, at: i64, nodes: &[Node], edges: &[Edge]) {
        let mut seen_nodes: HashSet<usize> = HashSet::with_capacity(nodes.len());
        let mut seen_edges: HashSet<usize> = HashSet::with_capacity(edges.len());
        for n in nodes {
            let same = self.graph.find_node(&n.id).and_then(|ix| {
                let s = self.current(true, ix.0.index())?;
                (s.metadata == n.metadata
                    && self.graph.strings.host(s.source) == n.host
                    && self.graph.strings.origin(s.source) == n.origin)
                    .then_some(ix)
            });
            match same {
                Some(ix) => {
                    seen_nodes.insert(ix.0.index());
                }
                None => {
                    self.open_node(at, n);
                    if let Some(ix) = self.graph.find_node(&n.id) {
                        seen_nodes.insert(ix.0.index());
                    }
                }
            }
        }
        for e in edges {
            let same = self.graph.find_edge(&e.id).and_then(|ix| {
                let s = self.current(false, ix.0.index())?;
                let (p, c) = self.graph.endpoints(ix);
                (s.metadata == e.metadata
                    && self.graph.strings.host(s.source) == e.host
                    && self.graph.strings.origin(s.source) == e.origin
                    && self.graph.node(p).id() == &e.parent
                    && self.graph.node(c).id() == &e.child)
                    .then_some(ix)
            });
            match same {
                Some(ix) => {
                    seen_edges.insert(ix.0.index());
                }
                None => {
                    self.open_edge(at, e);
                    if let Some(ix) = self.graph.find_edge(&e.id) {
                        seen_edges.insert(ix.0.index());
                    }
                }
            }
        }
        let gone = |cur: &[u32], seen: &HashSet<usize>| -> Vec<usize> {
            (0..cur.len())
                .filter(|i| cur[*i] != NONE && !seen.contains(i))
                .collect()
        };
        for i in gone(&self.cur_edges, &seen_edges) {
            self.push(false, i, at, None);
        }
        for i in gone(&self.cur_nodes, &seen_nodes) {
            self.push(true, i, at, None);
        }
    }

    fn current(&self, node: bool, i: usize) -> Option<&Stamp> {
        let (hists, cur) = if node {
            (&self.nodes, &self.cur_nodes)
        } else {
            (&self.edges, &self.cur_edges)
        };
        hists.get(i)?.get(*cur.get(i)?)
    }

    fn stamp_of(
        &mut self,
        id: &Identifier,
        metadata: &Metadata,
        host: &str,
        origin: &str,
        (created_at, updated_at, revision): (i64, i64, i64),
    ) -> Stamp {
        Stamp {
            id: id.clone(),
            metadata: metadata.clone(),
            source: self.graph.strings.intern(host, origin),
            created_at,
            updated_at,
            deleted_at: None,
            revision,
            order: 0,
        }
    }

    /// Ends element `i`'s open revision at `at` and, with `rev`, opens that one.
    fn push(&mut self, node: bool, i: usize, at: i64, rev: Option<(Stamp, u64)>) {
        let pos = self.log_pos + self.log.len() as u64;
        let (hists, cur) = if node {
            (&mut self.nodes, &mut self.cur_nodes)
        } else {
            (&mut self.edges, &mut self.cur_edges)
        };
        if hists.len() <= i {
            hists.resize_with(i + 1, Hist::default);
            cur.resize(i + 1, NONE);
        }
        let h = &mut hists[i];
        let was_open = h.open();
        if rev.is_none() && !was_open {
            return;
        }
        if was_open {
            let last = h.revs.last_mut().expect("open");
            last.to = at;
            if let Some(c) = self.checkpoints.back_mut() {
                c.freeable += last.bytes;
            }
        }
        let global = match rev {
            Some((stamp, bytes)) => {
                let bytes = bytes + std::mem::size_of::<Rev>() as u64;
                h.revs.push(Rev {
                    to: OPEN,
                    bytes,
                    stamp,
                });
                self.bytes += bytes;
                self.revisions += 1;
                h.base + (h.revs.len() - 1) as u32
            }
            None => NONE,
        };
        h.last_pos = pos;
        cur[i] = global;
        self.log.push_back(Entry {
            at,
            ix: i as u32,
            rev: global,
            node,
        });
        self.bytes += ENTRY_BYTES;
        self.since_checkpoint += 1;
        // Every so many changes, or sooner when they are large: a checkpoint is where
        // the budget can cut.
        if self.since_checkpoint >= MIN_INTERVAL.max(self.cur_nodes.len() + self.cur_edges.len())
            || self.bytes.saturating_sub(self.bytes_at_checkpoint) > self.budget / 16
        {
            self.checkpoint();
        }
    }

    fn checkpoint(&mut self) {
        let c = Checkpoint {
            pos: self.log_pos + self.log.len() as u64,
            at: self.last,
            nodes: self.cur_nodes.clone(),
            edges: self.cur_edges.clone(),
            freeable: 0,
        };
        self.bytes += c.bytes();
        self.checkpoints.push_back(c);
        self.since_checkpoint = 0;
        self.bytes_at_checkpoint = self.bytes;
        if self.bytes > self.budget {
            self.trim();
        }
    }

    /// Drops the oldest checkpoint intervals until about nine tenths of the budget are
    /// used (or only the latest checkpoint is left): the changes logged in them, the
    /// revisions that ended by the new start, and the identities left with nothing.
    fn trim(&mut self) {
        let target = self.budget / 10 * 9;
        let mut freed = 0u64;
        let mut k = 0;
        while k + 1 < self.checkpoints.len() && self.bytes.saturating_sub(freed) > target {
            let c = &self.checkpoints[k];
            let entries = self.checkpoints[k + 1].pos - c.pos;
            freed += c.freeable + c.bytes() + entries * ENTRY_BYTES;
            k += 1;
        }
        if k == 0 {
            return;
        }
        for c in self.checkpoints.drain(..k) {
            self.bytes -= c.bytes();
        }
        let first = &self.checkpoints[0];
        let (start, pos) = (first.at, first.pos);
        let drop = (pos - self.log_pos) as usize;
        self.log.drain(..drop);
        self.log_pos = pos;
        self.bytes -= drop as u64 * ENTRY_BYTES;
        let mut bytes = self.bytes;
        let mut revisions = self.revisions;
        for h in self.nodes.iter_mut().chain(self.edges.iter_mut()) {
            let n = h.revs.partition_point(|r| r.to <= start);
            if n > 0 {
                for r in h.revs.drain(..n) {
                    bytes -= r.bytes;
                    revisions -= 1;
                }
                h.base += n as u32;
            }
        }
        self.bytes = bytes;
        self.revisions = revisions;
        self.bytes_at_checkpoint = self.bytes_at_checkpoint.min(bytes);
        // Identities with nothing left, whose last change is before the new start:
        // edges, then nodes without edges.
        for i in 0..self.edges.len() {
            let h = &self.edges[i];
            let ix = EdgeIndex::new(i);
            if h.revs.is_empty() && h.last_pos < pos && self.graph.inner.edge_weight(ix).is_some() {
                self.graph.remove_edge_ix(EdgeIx(ix));
                self.edges[i] = Hist::default();
            }
        }
        for i in 0..self.nodes.len() {
            let h = &self.nodes[i];
            let ix = NodeIndex::new(i);
            if h.revs.is_empty()
                && h.last_pos < pos
                && self.graph.inner.node_weight(ix).is_some()
                && self.graph.inner.neighbors_undirected(ix).next().is_none()
            {
                let id = self.graph.inner[ix].id.clone();
                let _ = self.graph.delete_node(&id);
                self.nodes[i] = Hist::default();
            }
        }
    }

    /// The graph at `t`; `None` before the timeline's start.
    pub fn at(&self, t: i64) -> Option<At<'_>> {
        if !self.covers(t) {
            return None;
        }
        let k = self.checkpoints.partition_point(|c| c.at <= t) - 1;
        let c = &self.checkpoints[k];
        let mut nodes = c.nodes.clone();
        nodes.resize(self.cur_nodes.len(), NONE);
        let mut edges = c.edges.clone();
        edges.resize(self.cur_edges.len(), NONE);
        let from = (c.pos - self.log_pos) as usize;
        for e in self.log.range(from..) {
            if e.at > t {
                break;
            }
            if e.node {
                nodes[e.ix as usize] = e.rev;
            } else {
                edges[e.ix as usize] = e.rev;
            }
        }
        let nodes: Vec<Option<&Stamp>> = nodes
            .iter()
            .zip(&self.nodes)
            .map(|(g, h)| h.get(*g))
            .collect();
        let graph = &self.graph;
        let edges: Vec<Option<&Stamp>> = edges
            .iter()
            .zip(&self.edges)
            .enumerate()
            .map(|(i, (g, h))| {
                let s = h.get(*g)?;
                let (p, c) = graph.endpoints(EdgeIx(EdgeIndex::new(i)));
                let there = |n: NodeIx| nodes.get(n.0.index()).copied().flatten().is_some();
                (there(p) && there(c)).then_some(s)
            })
            .collect();
        Some(At {
            graph,
            sel: Selection {
                node_count: nodes.iter().filter(|s| s.is_some()).count(),
                edge_count: edges.iter().filter(|s| s.is_some()).count(),
                nodes,
                edges,
            },
        })
    }
}

/// The revision of each element at an instant.
pub(crate) struct Selection<'g> {
    nodes: Vec<Option<&'g Stamp>>,
    edges: Vec<Option<&'g Stamp>>,
    pub(crate) node_count: usize,
    pub(crate) edge_count: usize,
}

impl<'g> Selection<'g> {
    #[inline]
    pub(crate) fn node(&self, ix: NodeIx) -> Option<&'g Stamp> {
        self.nodes.get(ix.0.index()).copied().flatten()
    }

    #[inline]
    pub(crate) fn edge(&self, ix: EdgeIx) -> Option<&'g Stamp> {
        self.edges.get(ix.0.index()).copied().flatten()
    }
}

/// A [`Timeline`] at an instant.
pub struct At<'g> {
    graph: &'g Graph,
    sel: Selection<'g>,
}

impl At<'_> {
    /// What queries read.
    pub fn view(&self) -> View<'_> {
        View::past(self.graph, &self.sel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(id: &str, v: u64, at: i64) -> Node {
        let mut m = Metadata::new();
        m.insert("Name".into(), json!(id));
        m.insert("V".into(), json!(v));
        let mut n = Node::new(Identifier::from(id), m, "h", "o");
        n.created_at = 0;
        n.updated_at = at;
        n.revision = v as i64;
        n
    }

    fn edge(p: &str, c: &str, v: u64, at: i64) -> Edge {
        let mut m = Metadata::new();
        m.insert("RelationType".into(), json!("layer2"));
        m.insert("V".into(), json!(v));
        let mut e = Edge::new(Identifier::from(p), Identifier::from(c), m, "h", "o");
        e.created_at = 0;
        e.updated_at = at;
        e
    }

    /// The history written plainly: every revision with its `[from, to)`.
    #[derive(Default)]
    struct Plain {
        nodes: Vec<(i64, i64, Node)>,
        edges: Vec<(i64, i64, Edge)>,
    }

    impl Plain {
        fn close_node(&mut self, id: &Identifier, at: i64) {
            for r in &mut self.nodes {
                if &r.2.id == id && r.1 == OPEN {
                    r.1 = at;
                }
            }
        }
        fn close_edge(&mut self, id: &Identifier, at: i64) {
            for r in &mut self.edges {
                if &r.2.id == id && r.1 == OPEN {
                    r.1 = at;
                }
            }
        }

        /// Sorted JSON of what was there at `t`.
        fn at(&self, t: i64) -> Vec<String> {
            let valid = |from: i64, to: i64| from <= t && t < to;
            let nodes: Vec<&Node> = self
                .nodes
                .iter()
                .filter(|r| valid(r.0, r.1))
                .map(|r| &r.2)
                .collect();
            let there = |id: &Identifier| nodes.iter().any(|n| &n.id == id);
            let mut out: Vec<String> = nodes
                .iter()
                .map(|n| serde_json::to_string(n).unwrap())
                .chain(
                    self.edges
                        .iter()
                        .filter(|r| valid(r.0, r.1) && there(&r.2.parent) && there(&r.2.child))
                        .map(|r| serde_json::to_string(&r.2).unwrap()),
                )
                .collect();
            out.sort();
            out
        }
    }

    fn seen(tl: &Timeline, t: i64) -> Vec<String> {
        let at = tl.at(t).expect("covered");
        let v = at.view();
        let (nodes, edges) = v.snapshot();
        assert_eq!(nodes.len(), v.node_count());
        assert_eq!(edges.len(), v.edge_count());
        // Lookups by ID and adjacency agree with the listing.
        for n in &nodes {
            let ix = v.find_node(&n.id).expect("found by ID");
            let mut adjacent = 0;
            v.for_each_edge(ix, petgraph::Direction::Outgoing, |e, _| {
                assert!(edges.iter().any(|x| &x.id == v.edge(e).id()));
                adjacent += 1;
            });
            assert_eq!(adjacent, edges.iter().filter(|e| e.parent == n.id).count());
        }
        let mut out: Vec<String> = nodes
            .iter()
            .map(|n| serde_json::to_string(n).unwrap())
            .chain(edges.iter().map(|e| serde_json::to_string(e).unwrap()))
            .collect();
        out.sort();
        out
    }

    /// Nodes a..f created, updated, deleted and created again, with the edges between
    /// neighbours, several changes per millisecond; both written the same way.
    fn churn(tl: &mut Timeline, plain: &mut Plain, base: i64, steps: usize, seed: u64) -> i64 {
        let ids = ["a", "b", "c", "d", "e", "f"];
        let mut alive = [false; 6];
        let mut x = seed;
        let mut at = base;
        for k in 0..steps {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let i = (x >> 33) as usize % ids.len();
            if k % 3 == 0 {
                at += 1 + (x >> 60) as i64;
            }
            let id = Identifier::from(ids[i]);
            if (x >> 40) % 3 == 0 && alive[i] {
                alive[i] = false;
                for j in [i.wrapping_sub(1), i + 1] {
                    if j < ids.len() {
                        let (p, c) = if j < i { (j, i) } else { (i, j) };
                        let e = edge(ids[p], ids[c], 0, at);
                        tl.close_edge(at, &e.id);
                        plain.close_edge(&e.id, at);
                    }
                }
                tl.close_node(at, &id);
                plain.close_node(&id, at);
            } else {
                alive[i] = true;
                let n = node(ids[i], k as u64, at);
                tl.open_node(at, &n);
                plain.close_node(&id, at);
                plain.nodes.push((at, OPEN, n));
                for (p, c) in [(i.wrapping_sub(1), i), (i, i + 1)] {
                    if p < ids.len() && c < ids.len() && alive[p] && alive[c] && k % 2 == 0 {
                        let e = edge(ids[p], ids[c], k as u64, at);
                        tl.open_edge(at, &e);
                        plain.close_edge(&e.id, at);
                        plain.edges.push((at, OPEN, e));
                    }
                }
            }
        }
        at
    }

    #[test]
    fn the_graph_at_every_instant_is_the_revisions_valid_then() {
        let mut tl = Timeline::new(1000, u64::MAX);
        let mut plain = Plain::default();
        let end = churn(&mut tl, &mut plain, 1000, 5000, 11);
        assert!(tl.checkpoints.len() > 3, "checkpoints are used");
        for t in (1000..=end + 2).step_by(3) {
            assert_eq!(seen(&tl, t), plain.at(t), "t={t}");
        }
        assert!(tl.at(999).is_none());
        let s = tl.stats();
        assert_eq!(s.revisions as usize, plain.nodes.len() + plain.edges.len());
        assert_eq!(s.elements, 6 + 5);
    }

    #[test]
    fn a_revision_is_chosen_by_time_and_a_readded_id_comes_back() {
        let mut tl = Timeline::new(0, u64::MAX);
        tl.open_node(10, &node("a", 1, 10));
        tl.open_node(10, &node("b", 1, 10));
        tl.open_edge(10, &edge("a", "b", 1, 10));
        tl.open_node(20, &node("a", 2, 20));
        tl.close_node(30, &"a".into());
        tl.open_node(40, &node("a", 3, 40));
        // Deleted and created again in the same millisecond: there.
        tl.close_node(50, &"b".into());
        tl.open_node(50, &node("b", 2, 50));
        // Changed twice in one millisecond: the latest.
        tl.open_node(60, &node("a", 4, 60));
        tl.open_node(60, &node("a", 5, 60));
        let v_of = |t: i64| -> Option<u64> {
            let at = tl.at(t)?;
            let v = at.view();
            let n = v.node_by_id(&"a".into())?;
            n.metadata()["V"].as_u64()
        };
        assert_eq!(v_of(5), None);
        assert_eq!(v_of(10), Some(1));
        assert_eq!(v_of(19), Some(1));
        assert_eq!(v_of(20), Some(2));
        assert_eq!(v_of(30), None);
        assert_eq!(v_of(40), Some(3));
        assert_eq!(v_of(60), Some(5));
        let edges = |t: i64| tl.at(t).unwrap().view().edges().count();
        assert_eq!(edges(10), 1);
        // The edge stays, its end is gone, then back.
        assert_eq!(edges(30), 0);
        assert_eq!(edges(40), 1);
        let at = tl.at(20).unwrap();
        let v = at.view();
        let e = v.edge(v.edges().next().unwrap());
        assert_eq!(e.parent().metadata()["V"], json!(2));
        assert_eq!(v.node_by_id(&"b".into()).unwrap().revision(), 1);
        assert_eq!(
            tl.at(55)
                .unwrap()
                .view()
                .node_by_id(&"b".into())
                .unwrap()
                .revision(),
            2
        );
        // Times never go back: an older change lands at the latest time.
        tl.open_node(1, &node("c", 1, 1));
        assert!(tl.at(59).unwrap().view().node_by_id(&"c".into()).is_none());
        assert!(tl.at(60).unwrap().view().node_by_id(&"c".into()).is_some());
    }

    #[test]
    fn a_budget_moves_the_start_and_keeps_what_is_after_it() {
        let mut tl = Timeline::new(1000, 400_000);
        let mut plain = Plain::default();
        let end = churn(&mut tl, &mut plain, 1000, 20_000, 5);
        let s = tl.stats();
        assert!(s.start > 1000, "{s:?}");
        assert!(s.bytes <= 400_000, "{s:?}");
        assert!((s.revisions as usize) < plain.nodes.len() + plain.edges.len());
        assert!(tl.at(s.start - 1).is_none());
        for t in (s.start..=end + 1).step_by(7) {
            assert_eq!(seen(&tl, t), plain.at(t), "t={t}");
        }
    }

    #[test]
    fn large_revisions_are_cut_by_the_budget_too() {
        let mut tl = Timeline::new(0, 1 << 20);
        for k in 0..100 {
            let mut n = node("big", k, k as i64);
            n.metadata
                .insert("Blob".into(), json!("x".repeat(100 << 10)));
            tl.open_node(k as i64, &n);
        }
        let s = tl.stats();
        assert!(s.bytes <= 1 << 20, "{s:?}");
        assert!(s.start > 50, "{s:?}");
        let at = tl.at(99).unwrap();
        assert_eq!(at.view().node_by_id(&"big".into()).unwrap().revision(), 99);
    }

    #[test]
    fn reconcile_opens_what_changed_and_closes_what_is_gone() {
        let mut tl = Timeline::new(0, u64::MAX);
        tl.open_node(10, &node("a", 1, 10));
        tl.open_node(10, &node("b", 1, 10));
        tl.open_edge(10, &edge("a", "b", 1, 10));
        let was = tl.stats().revisions;
        // Missed: b changed, a gone (with the edge), c added.
        tl.reconcile(20, &[node("b", 2, 15), node("c", 1, 15)], &[]);
        assert_eq!(tl.stats().revisions, was + 2);
        let at = tl.at(20).unwrap();
        let v = at.view();
        let ids: Vec<String> = v.nodes().map(|n| v.node(n).id().to_string()).collect();
        assert_eq!(ids, ["b", "c"]);
        assert_eq!(v.edge_count(), 0);
        assert_eq!(tl.at(19).unwrap().view().edge_count(), 1);
        // Nothing changed: nothing written.
        tl.reconcile(30, &[node("b", 2, 15), node("c", 1, 15)], &[]);
        assert_eq!(tl.stats().revisions, was + 2);
    }
}
