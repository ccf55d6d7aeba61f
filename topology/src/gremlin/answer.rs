//! A query's answer as owned, sized JSON, to write without holding the graph lock.
//!
//! [`Snapshot::take`] runs under the read lock: it copies each distinct node or edge of
//! the result once (a result may name the same element many times) and refuses, before
//! copying anything, a result whose JSON would certainly exceed the byte budget.
//! [`Snapshot::encode`] runs after the lock is released: it writes each distinct
//! element once and knows the exact answer size before the first byte is sent;
//! [`Answer::into_chunks`] then streams it.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use hashbrown::HashMap;
use serde_json::Value;

use super::budget::{json_size_lower_bound, too_many_bytes};
use super::{Budget, Compiled, EvalError, Output};
use crate::{Edge, EdgeIx, Graph, Node, NodeIx, SharedGraph, View};

/// Evaluates `query` under the read lock of `graph`, snapshots the result, releases
/// the lock and encodes it: the whole query path of `POST /api/topology`. Blocking
/// (takes the lock and may run for up to the budget's timeout).
pub fn answer(graph: &SharedGraph, query: &Compiled, budget: &Budget) -> Result<Answer, EvalError> {
    let snapshot = {
        let g = graph.read();
        Snapshot::of_query(g.view(), query, budget)?
    };
    snapshot.encode(budget)
}

/// The whole graph as `{"Nodes":[...],"Edges":[...]}` (`GET /api/topology`), within
/// the byte budget: copied under the read lock (refused before copying when it would
/// certainly be too large), encoded after the lock is released. Blocking.
pub fn whole_graph(graph: &SharedGraph, budget: &Budget) -> Result<Answer, EvalError> {
    let snapshot = {
        let g = graph.read();
        Snapshot::whole(&g, budget)?
    };
    snapshot.encode(budget)
}

/// The owned data of an answer, taken under the read lock.
pub struct Snapshot {
    shape: Shape,
    nodes: Vec<Node>,
    edges: Vec<Edge>,
}

/// Element positions refer to `Snapshot::nodes` / `Snapshot::edges`.
enum Shape {
    Graph {
        nodes: Vec<u32>,
        edges: Vec<u32>,
    },
    /// Every node and edge, as an object rather than a one-element list.
    Whole,
    Nodes(Vec<u32>),
    Edges(Vec<u32>),
    Paths(Vec<Vec<u32>>),
    Value(Value),
}

/// Distinct elements in first-seen order, with a lower bound of the answer size.
struct Distinct<I> {
    index: HashMap<I, u32>,
    order: Vec<I>,
    /// Lower bound of each distinct element's JSON size.
    sizes: Vec<usize>,
}

impl<I: Copy + Eq + std::hash::Hash> Distinct<I> {
    fn new() -> Self {
        Distinct {
            index: HashMap::new(),
            order: Vec::new(),
            sizes: Vec::new(),
        }
    }

    /// Position of `ix`, and the lower bound of its size added to `total`.
    fn add(&mut self, ix: I, total: &mut usize, size: impl FnOnce() -> usize) -> u32 {
        let pos = match self.index.get(&ix) {
            Some(p) => *p,
            None => {
                let p = self.order.len() as u32;
                self.index.insert(ix, p);
                self.order.push(ix);
                self.sizes.push(size());
                p
            }
        };
        // One comma per element at least.
        *total = total.saturating_add(self.sizes[pos as usize] + 1);
        pos
    }
}

/// Fixed text of a node's JSON (`{"ID":"","Metadata":,"Host":"",...}`), a lower bound.
const NODE_OVERHEAD: usize = 100;
/// An edge adds `,"Parent":"","Child":""`.
const EDGE_OVERHEAD: usize = NODE_OVERHEAD + 23;

impl Snapshot {
    /// Copies what the answer to `out` needs out of `graph`. Fails with
    /// [`super::ErrorKind::TooLarge`] as soon as the answer would certainly exceed
    /// `budget.max_bytes`, before copying.
    pub fn take(out: Output, graph: &Graph, budget: &Budget) -> Result<Snapshot, EvalError> {
        Snapshot::take_view(out, graph.view(), budget)
    }

    /// Evaluates `query` over `view` and takes the answer's snapshot: what
    /// [`answer`] does under the read lock.
    pub fn of_query(
        view: View<'_>,
        query: &Compiled,
        budget: &Budget,
    ) -> Result<Snapshot, EvalError> {
        let out = query.evaluate_view(view, budget)?;
        Snapshot::take_view(out, view, budget)
    }

    /// [`Snapshot::take`] of a result evaluated over `view`.
    pub fn take_view(out: Output, graph: View<'_>, budget: &Budget) -> Result<Snapshot, EvalError> {
        let max = budget.max_bytes;
        let mut total = 0usize;
        let mut nodes: Distinct<NodeIx> = Distinct::new();
        let mut edges: Distinct<EdgeIx> = Distinct::new();
        let node_size = |ix: NodeIx| {
            let n = graph.node(ix);
            NODE_OVERHEAD + json_size_lower_bound_map(n.metadata())
        };
        let edge_size = |ix: EdgeIx| {
            let e = graph.edge(ix);
            EDGE_OVERHEAD + json_size_lower_bound_map(e.metadata())
        };
        let check = |total: usize| {
            if total > max {
                Err(too_many_bytes(max))
            } else {
                Ok(())
            }
        };
        let mut node_list = |v: &[NodeIx], total: &mut usize| -> Result<Vec<u32>, EvalError> {
            let mut out = Vec::with_capacity(v.len());
            for ix in v {
                out.push(nodes.add(*ix, total, || node_size(*ix)));
                check(*total)?;
            }
            Ok(out)
        };
        let shape = match out {
            Output::Graph { nodes: n, edges: e } => {
                let n = node_list(&n, &mut total)?;
                let mut el = Vec::with_capacity(e.len());
                for ix in &e {
                    el.push(edges.add(*ix, &mut total, || edge_size(*ix)));
                    check(total)?;
                }
                Shape::Graph {
                    nodes: n,
                    edges: el,
                }
            }
            Output::Nodes(n) => Shape::Nodes(node_list(&n, &mut total)?),
            Output::Edges(e) => {
                let mut el = Vec::with_capacity(e.len());
                for ix in &e {
                    el.push(edges.add(*ix, &mut total, || edge_size(*ix)));
                    check(total)?;
                }
                Shape::Edges(el)
            }
            Output::Paths(paths) => {
                let mut out = Vec::with_capacity(paths.len());
                for p in &paths {
                    out.push(node_list(p, &mut total)?);
                }
                Shape::Paths(out)
            }
            Output::Value(v) => {
                check(json_size_lower_bound(&v))?;
                Shape::Value(v)
            }
            Output::Ext(e) => {
                let v = e.to_json(graph);
                check(json_size_lower_bound(&v))?;
                Shape::Value(v)
            }
        };
        Ok(Snapshot {
            shape,
            nodes: nodes
                .order
                .iter()
                .map(|ix| graph.node(*ix).to_owned())
                .collect(),
            edges: edges
                .order
                .iter()
                .map(|ix| graph.edge(*ix).to_owned())
                .collect(),
        })
    }

    /// Copies every node and edge of `graph`. Fails with
    /// [`super::ErrorKind::TooLarge`] as soon as the graph's JSON would certainly exceed
    /// `budget.max_bytes`, before copying.
    pub fn whole(graph: &Graph, budget: &Budget) -> Result<Snapshot, EvalError> {
        Snapshot::whole_view(graph.view(), budget)
    }

    /// [`Snapshot::whole`] of a view.
    pub fn whole_view(graph: View<'_>, budget: &Budget) -> Result<Snapshot, EvalError> {
        let max = budget.max_bytes;
        let mut total = 0usize;
        for ix in graph.nodes() {
            let size = NODE_OVERHEAD + json_size_lower_bound_map(graph.node(ix).metadata());
            total = total.saturating_add(size + 1);
            if total > max {
                return Err(too_many_bytes(max));
            }
        }
        for ix in graph.edges() {
            let size = EDGE_OVERHEAD + json_size_lower_bound_map(graph.edge(ix).metadata());
            total = total.saturating_add(size + 1);
            if total > max {
                return Err(too_many_bytes(max));
            }
        }
        Ok(Snapshot {
            shape: Shape::Whole,
            nodes: graph.nodes().map(|ix| graph.node(ix).to_owned()).collect(),
            edges: graph.edges().map(|ix| graph.edge(ix).to_owned()).collect(),
        })
    }

    /// Writes the answer; fails with [`super::ErrorKind::TooLarge`] if it is longer than
    /// `budget.max_bytes`. Call without the graph lock.
    pub fn encode(self, budget: &Budget) -> Result<Answer, EvalError> {
        let max = budget.max_bytes;
        let encode = |r: serde_json::Result<Vec<u8>>| -> Result<Bytes, EvalError> {
            r.map(Bytes::from)
                .map_err(|e| EvalError::new(format!("Error while encoding response: {e}")))
        };
        let mut pieces: Vec<Bytes> = Vec::with_capacity(self.nodes.len() + self.edges.len());
        let mut piece_bytes = 0usize;
        for n in &self.nodes {
            let b = encode(serde_json::to_vec(n))?;
            // Every distinct element is in the answer at least once.
            piece_bytes = piece_bytes.saturating_add(b.len());
            if piece_bytes > max {
                return Err(too_many_bytes(max));
            }
            pieces.push(b);
        }
        let edge_base = pieces.len() as u32;
        for e in &self.edges {
            let b = encode(serde_json::to_vec(e))?;
            // Every distinct element is in the answer at least once.
            piece_bytes = piece_bytes.saturating_add(b.len());
            if piece_bytes > max {
                return Err(too_many_bytes(max));
            }
            pieces.push(b);
        }
        drop(self.nodes);
        drop(self.edges);
        let mut toks = Vec::new();
        let list = |toks: &mut Vec<Tok>, items: &[u32], base: u32| {
            toks.push(Tok::Lit(b"["));
            for (i, p) in items.iter().enumerate() {
                if i > 0 {
                    toks.push(Tok::Lit(b","));
                }
                toks.push(Tok::Piece(base + p));
            }
            toks.push(Tok::Lit(b"]"));
        };
        match &self.shape {
            Shape::Graph { nodes, edges } => {
                toks.push(Tok::Lit(b"[{\"Nodes\":"));
                list(&mut toks, nodes, 0);
                toks.push(Tok::Lit(b",\"Edges\":"));
                list(&mut toks, edges, edge_base);
                toks.push(Tok::Lit(b"}]"));
            }
            Shape::Whole => {
                let all = |n: usize| (0..n as u32).collect::<Vec<u32>>();
                toks.push(Tok::Lit(b"{\"Nodes\":"));
                list(&mut toks, &all(edge_base as usize), 0);
                toks.push(Tok::Lit(b",\"Edges\":"));
                list(
                    &mut toks,
                    &all(pieces.len() - edge_base as usize),
                    edge_base,
                );
                toks.push(Tok::Lit(b"}"));
            }
            Shape::Nodes(v) => list(&mut toks, v, 0),
            Shape::Edges(v) => list(&mut toks, v, edge_base),
            Shape::Paths(paths) => {
                toks.push(Tok::Lit(b"["));
                for (i, p) in paths.iter().enumerate() {
                    if i > 0 {
                        toks.push(Tok::Lit(b","));
                    }
                    list(&mut toks, p, 0);
                }
                toks.push(Tok::Lit(b"]"));
            }
            Shape::Value(v) => {
                let mut w = Bounded {
                    buf: Vec::new(),
                    max,
                };
                serde_json::to_writer(&mut w, v).map_err(|_| too_many_bytes(max))?;
                pieces.push(Bytes::from(w.buf));
                toks.push(Tok::Piece((pieces.len() - 1) as u32));
            }
        }
        let len = toks.iter().fold(0usize, |n, t| {
            n.saturating_add(match t {
                Tok::Lit(l) => l.len(),
                Tok::Piece(p) => pieces[*p as usize].len(),
            })
        });
        if len > max {
            return Err(too_many_bytes(max));
        }
        Ok(Answer {
            pieces: pieces.into(),
            toks,
            len,
        })
    }
}

/// A `Write` into memory that fails past `max` bytes.
struct Bounded {
    buf: Vec<u8>,
    max: usize,
}

impl std::io::Write for Bounded {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        if self.buf.len().saturating_add(b.len()) > self.max {
            return Err(std::io::Error::other("answer too large"));
        }
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A lower bound of the JSON size of a node with metadata `m`, found without writing
/// it: to refuse an answer before copying it out of the graph.
pub fn node_size_lower_bound(m: &crate::Metadata) -> usize {
    NODE_OVERHEAD + json_size_lower_bound_map(m)
}

/// A lower bound of the JSON size of an edge with metadata `m`.
pub fn edge_size_lower_bound(m: &crate::Metadata) -> usize {
    EDGE_OVERHEAD + json_size_lower_bound_map(m)
}

fn json_size_lower_bound_map(m: &crate::Metadata) -> usize {
    2 + m.len().saturating_sub(1)
        + m.iter()
            .map(|(k, v)| k.len() + 3 + json_size_lower_bound(v))
            .fold(0, usize::saturating_add)
}

enum Tok {
    Lit(&'static [u8]),
    Piece(u32),
}

/// An encoded answer: its exact length is known, its bytes are produced in chunks.
/// Each distinct element is held once however often the answer repeats it.
pub struct Answer {
    pieces: Arc<[Bytes]>,
    toks: Vec<Tok>,
    len: usize,
}

impl Answer {
    /// Length of the answer in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The answer in chunks of about `chunk` bytes (elements larger than that are
    /// their own chunk).
    pub fn into_chunks(self, chunk: usize) -> impl Iterator<Item = Bytes> + Send + 'static {
        let Answer { pieces, toks, .. } = self;
        let mut toks = toks.into_iter();
        let mut pending: Option<Bytes> = None;
        std::iter::from_fn(move || {
            if let Some(p) = pending.take() {
                return Some(p);
            }
            let mut buf = BytesMut::new();
            for t in toks.by_ref() {
                match t {
                    Tok::Lit(l) => buf.extend_from_slice(l),
                    Tok::Piece(p) => {
                        let piece = &pieces[p as usize];
                        if piece.len() >= chunk {
                            if buf.is_empty() {
                                return Some(piece.clone());
                            }
                            pending = Some(piece.clone());
                            return Some(buf.freeze());
                        }
                        buf.extend_from_slice(piece);
                    }
                }
                if buf.len() >= chunk {
                    break;
                }
            }
            (!buf.is_empty()).then(|| buf.freeze())
        })
    }

    /// The whole answer in one buffer.
    pub fn to_vec(self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len);
        for c in self.into_chunks(64 * 1024) {
            out.extend_from_slice(&c);
        }
        out
    }
}
