//! Walks: neighbours, incident edges, edge endpoints, shortest paths and subgraphs.

use std::collections::VecDeque;
use std::rc::Rc;

use hashbrown::{HashMap, HashSet};
use petgraph::Direction;

use super::{all, dedup_nodes, err, Evaluator, Scope, Stage};
use crate::gremlin::filter::Filter;
use crate::gremlin::{EvalError, MAX_PATH_VISITS};
use crate::{EdgeIx, NodeIx};

impl Evaluator<'_> {
    /// Edges of `n` in direction `dir` that are in scope, oldest first, into `self.buf`.
    fn collect_edges(&mut self, n: NodeIx, dir: Direction) {
        let buf = &mut self.buf;
        buf.clear();
        self.graph
            .for_each_edge(n, dir, |e, other| buf.push((e, other)));
        buf.reverse();
        if let Some(s) = &self.scope {
            buf.retain(|(e, _)| s.edge_set.contains(e));
        }
    }

    pub(super) fn neighbours(
        &mut self,
        nodes: &[NodeIx],
        dirs: &[Direction],
        f: &Filter,
        and: &[&Filter],
    ) -> Result<Stage, EvalError> {
        let g = self.graph;
        let unfiltered = f.is_empty() && and.is_empty();
        let mut out = Vec::with_capacity(nodes.len());
        for &n in nodes {
            for &dir in dirs {
                self.collect_edges(n, dir);
                if unfiltered {
                    out.extend(self.buf.iter().map(|(_, other)| *other));
                } else {
                    out.extend(
                        self.buf
                            .iter()
                            .map(|(_, other)| *other)
                            .filter(|o| all(f, and, &g.node(*o))),
                    );
                }
                self.meter.work(1 + self.buf.len())?;
            }
            self.meter.elements(out.len())?;
        }
        Ok(Stage::Nodes(out))
    }

    pub(super) fn edges_of(
        &mut self,
        nodes: &[NodeIx],
        dirs: &[Direction],
        f: &Filter,
        and: &[&Filter],
    ) -> Result<Stage, EvalError> {
        let g = self.graph;
        let mut out = Vec::with_capacity(nodes.len());
        for &n in nodes {
            for &dir in dirs {
                self.collect_edges(n, dir);
                out.extend(
                    self.buf
                        .iter()
                        .map(|(e, _)| *e)
                        .filter(|e| all(f, and, &g.edge(*e))),
                );
                self.meter.work(1 + self.buf.len())?;
            }
            self.meter.elements(out.len())?;
        }
        Ok(Stage::Edges(out))
    }

    pub(super) fn endpoints(
        &mut self,
        edges: &[EdgeIx],
        parent: bool,
        child: bool,
        f: &Filter,
        and: &[&Filter],
    ) -> Result<Stage, EvalError> {
        let g = self.graph;
        self.meter
            .elements(edges.len() * (usize::from(parent) + usize::from(child)))?;
        self.meter.work(edges.len())?;
        let mut out = Vec::with_capacity(edges.len());
        for &e in edges {
            let (pa, ch) = g.endpoints(e);
            if parent && all(f, and, &g.node(pa)) {
                out.push(pa);
            }
            if child && all(f, and, &g.node(ch)) {
                out.push(ch);
            }
        }
        Ok(Stage::Nodes(out))
    }

    pub(super) fn shortest_paths(
        &mut self,
        sources: Vec<NodeIx>,
        target: &Filter,
        edges: &Filter,
    ) -> Result<Stage, EvalError> {
        let mut seen = HashSet::with_capacity(sources.len());
        let mut paths = Vec::new();
        let mut total = 0usize;
        for s in sources {
            if !seen.insert(s) {
                continue;
            }
            if let Some(path) = self.shortest_path(s, target, edges)? {
                total += path.len();
                self.meter.elements(total)?;
                paths.push(path);
            }
        }
        Ok(Stage::Paths(paths))
    }

    /// Breadth-first search over edges in both directions (unit weights, undirected, as
    /// Skydive's Dijkstra) to the nearest node matching `target`; ties go to the node
    /// reached through the older edge.
    fn shortest_path(
        &mut self,
        source: NodeIx,
        target: &Filter,
        edges: &Filter,
    ) -> Result<Option<Vec<NodeIx>>, EvalError> {
        let g = self.graph;
        if target.matches(&g.node(source)) {
            return Ok(Some(vec![source]));
        }
        let mut parent: HashMap<NodeIx, NodeIx> = HashMap::new();
        parent.insert(source, source);
        let mut queue = VecDeque::from([source]);
        while let Some(n) = queue.pop_front() {
            for dir in [Direction::Outgoing, Direction::Incoming] {
                self.collect_edges(n, dir);
                self.path_work += 1 + self.buf.len();
                if self.path_work > MAX_PATH_VISITS {
                    return Err(err(format!(
                        "ShortestPathTo visited more than {MAX_PATH_VISITS} nodes and edges; narrow its sources"
                    )));
                }
                self.meter.work(1 + self.buf.len())?;
                for &(e, other) in &self.buf {
                    if parent.contains_key(&other) || !edges.matches(&g.edge(e)) {
                        continue;
                    }
                    parent.insert(other, n);
                    if target.matches(&g.node(other)) {
                        let mut path = vec![other];
                        let mut cur = other;
                        while cur != source && path.len() <= parent.len() {
                            cur = parent[&cur];
                            path.push(cur);
                        }
                        path.reverse();
                        return Ok(Some(path));
                    }
                    queue.push_back(other);
                }
            }
        }
        Ok(None)
    }

    pub(super) fn subgraph(
        &mut self,
        stage: Stage,
        f: &Filter,
        wrong: impl FnOnce() -> EvalError,
    ) -> Result<Stage, EvalError> {
        let g = self.graph;
        let (nodes, edges) = match stage {
            Stage::Graph => {
                let (nodes, edges) = match self.scope.as_deref() {
                    None => (g.nodes().collect(), g.edges().collect::<Vec<_>>()),
                    Some(s) => (s.nodes.clone(), s.edges.clone()),
                };
                let edges = edges
                    .into_iter()
                    .filter(|e| f.matches(&g.edge(*e)))
                    .collect();
                (nodes, edges)
            }
            Stage::Nodes(v) => {
                let nodes = dedup_nodes(v);
                let edges = self.edges_among(&nodes, f)?;
                (nodes, edges)
            }
            Stage::Paths(paths) => {
                let nodes = dedup_nodes(paths.into_iter().flatten().collect());
                let edges = self.edges_among(&nodes, f)?;
                (nodes, edges)
            }
            Stage::Edges(v) => {
                let mut seen = HashSet::with_capacity(v.len());
                let edges: Vec<EdgeIx> = v
                    .into_iter()
                    .filter(|e| seen.insert(*e) && f.matches(&g.edge(*e)))
                    .collect();
                let ends = edges
                    .iter()
                    .flat_map(|e| {
                        let (a, b) = g.endpoints(*e);
                        [a, b]
                    })
                    .collect();
                (dedup_nodes(ends), edges)
            }
            _ => return Err(wrong()),
        };
        self.meter.work(nodes.len() + edges.len())?;
        self.scope = Some(Rc::new(Scope::new(nodes, edges)));
        Ok(Stage::Graph)
    }

    /// Edges in scope between two of `nodes`, by parent in `nodes` order, oldest first.
    fn edges_among(&mut self, nodes: &[NodeIx], f: &Filter) -> Result<Vec<EdgeIx>, EvalError> {
        let set: HashSet<NodeIx> = nodes.iter().copied().collect();
        let g = self.graph;
        let mut edges = Vec::new();
        for &n in nodes {
            self.collect_edges(n, Direction::Outgoing);
            edges.extend(
                self.buf
                    .iter()
                    .filter(|(e, child)| set.contains(child) && f.matches(&g.edge(*e)))
                    .map(|(e, _)| *e),
            );
            self.meter.work(1 + self.buf.len())?;
        }
        Ok(edges)
    }
}
