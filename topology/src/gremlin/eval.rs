//! Step-by-step evaluation (skydive-behaviour.md §2.5).

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::VecDeque;
use std::rc::Rc;

use hashbrown::{HashMap, HashSet};
use petgraph::Direction;
use serde_json::{Map, Value};
use topotap_grammar::ast::{Keyword, Param, Query, Step, StepKind};

use super::filter::{self, field, Combine, Element, Field, Filter, Key, Num, Obj, Special};
use super::{EvalError, ExtOutput, Extensions, Output, MAX_ELEMENTS, MAX_PATH_VISITS};
use crate::{EdgeIx, Graph, Identifier, NodeIx};

/// The graph a traversal currently walks: after `SubGraph()`, only its nodes and edges.
struct Scope {
    nodes: Vec<NodeIx>,
    edges: Vec<EdgeIx>,
    node_set: HashSet<NodeIx>,
    edge_set: HashSet<EdgeIx>,
}

impl Scope {
    fn new(nodes: Vec<NodeIx>, edges: Vec<EdgeIx>) -> Scope {
        Scope {
            node_set: nodes.iter().copied().collect(),
            edge_set: edges.iter().copied().collect(),
            nodes,
            edges,
        }
    }
}

/// What the previous step produced.
enum Stage {
    /// The current scope's graph (whole graph, or the last `SubGraph()`).
    Graph,
    Nodes(Vec<NodeIx>),
    Edges(Vec<EdgeIx>),
    Paths(Vec<Vec<NodeIx>>),
    /// `Values`, `ValueMap`, `Keys`: `null` instead of `[]` when `null_if_empty`.
    List {
        items: Vec<Value>,
        null_if_empty: bool,
    },
    /// `Count`, `Sum`: nothing follows these.
    Scalar(Value),
    Ext(Box<dyn ExtOutput>),
}

pub(crate) struct Evaluator<'g, 'x> {
    graph: &'g Graph,
    ext: &'x Extensions,
    scope: Option<Rc<Scope>>,
    labels: HashMap<String, Stage>,
    /// Nodes and edges visited by `ShortestPathTo` so far.
    path_work: usize,
    /// Reused per node by neighbour steps: `for_each_edge` lists newest first.
    buf: Vec<(EdgeIx, NodeIx)>,
}

fn err(message: impl Into<String>) -> EvalError {
    EvalError::new(message)
}

fn too_many() -> EvalError {
    err(format!(
        "result exceeds {MAX_ELEMENTS} elements; narrow the query with Has(), Dedup() or Limit()"
    ))
}

impl<'g, 'x> Evaluator<'g, 'x> {
    pub(crate) fn new(graph: &'g Graph, ext: &'x Extensions) -> Self {
        Evaluator {
            graph,
            ext,
            scope: None,
            labels: HashMap::new(),
            path_work: 0,
            buf: Vec::new(),
        }
    }

    pub(crate) fn run(mut self, query: &Query) -> Result<Output, EvalError> {
        let steps = &query.steps;
        let mut stage = Stage::Graph;
        let mut prev = String::from("G");
        let mut i = 0;
        while i < steps.len() {
            let step = &steps[i];
            let input = match &stage {
                Stage::Ext(e) => e.name().to_owned(),
                _ => std::mem::take(&mut prev),
            };
            // Like Skydive's Reduce: `Has`-style steps right after a source or traversal
            // step filter while it walks, instead of in a second pass. Same results.
            let mut absorbed = Vec::new();
            let mut last = i;
            if absorbs(&step.kind, &stage) {
                while let Some(next) = steps.get(last + 1) {
                    match has_filter(next) {
                        None => break,
                        Some(f) => absorbed.push(f.map_err(|e| e.located(last + 2, next))?),
                    }
                    last += 1;
                }
            }
            stage = self
                .step(stage, step, &input, &absorbed)
                .map_err(|e| e.located(i + 1, step))?;
            prev = steps[last].kind.name().to_owned();
            i = last + 1;
        }
        Ok(self.into_output(stage))
    }

    fn step(
        &mut self,
        stage: Stage,
        step: &Step,
        input: &str,
        and: &[Filter],
    ) -> Result<Stage, EvalError> {
        use StepKind as K;
        let g = self.graph;
        let p = step.params.as_slice();
        let wrong = || EvalError::cannot_follow(step, input);

        if let K::Extension(name) = &step.kind {
            if let Some(ext) = self.ext.get(name).cloned() {
                let out = ext.apply(self.output_of(stage), step, g)?;
                return Ok(self.stage_of(out));
            }
            return match stage {
                Stage::Ext(e) => Ok(self.stage_of(e.apply_step(step, g)?)),
                _ => Err(err(format!("unknown step '{name}'"))),
            };
        }
        let stage = match stage {
            Stage::Ext(e) if step.kind != K::G => return Ok(self.stage_of(e.apply_step(step, g)?)),
            s => s,
        };

        match (&step.kind, stage) {
            (K::G, _) => Ok(Stage::Graph),
            (K::V, Stage::Graph) => self.v(p, and),
            (K::E, Stage::Graph) => self.e(p, and),
            (K::Has, s) => self.retain(s, &filter_params(p, Combine::All)?, wrong),
            (K::HasEither, s) => self.retain(s, &filter_params(p, Combine::Any)?, wrong),
            (K::HasKey, s) => {
                let key = one_string(p, "HasKey")?;
                self.retain(
                    s,
                    &filter_params(&[Param::Str(key.to_owned())], Combine::All)?,
                    wrong,
                )
            }
            (K::HasNot, s) => self.retain(s, &Filter::absent(one_string(p, "HasNot")?), wrong),
            (K::Out, Stage::Nodes(n)) => self.neighbours(&n, &[Direction::Outgoing], p, and),
            (K::In, Stage::Nodes(n)) => self.neighbours(&n, &[Direction::Incoming], p, and),
            (K::Both, Stage::Nodes(n)) => {
                self.neighbours(&n, &[Direction::Outgoing, Direction::Incoming], p, and)
            }
            (K::OutE, Stage::Nodes(n)) => self.edges_of(&n, &[Direction::Outgoing], p, and),
            (K::InE, Stage::Nodes(n)) => self.edges_of(&n, &[Direction::Incoming], p, and),
            (K::BothE, Stage::Nodes(n)) => {
                self.edges_of(&n, &[Direction::Outgoing, Direction::Incoming], p, and)
            }
            // Skydive's inverted naming (§2.5): InV is the parent, OutV the child.
            (K::InV, Stage::Edges(e)) => self.endpoints(&e, true, false, p, and),
            (K::OutV, Stage::Edges(e)) => self.endpoints(&e, false, true, p, and),
            (K::BothV, Stage::Edges(e)) => self.endpoints(&e, true, true, p, and),
            (K::Dedup, s) => self.dedup(s, p, wrong),
            (K::Count, s) => {
                let n = match s {
                    Stage::Nodes(v) => v.len(),
                    Stage::Edges(v) => v.len(),
                    Stage::Paths(v) => v.len(),
                    Stage::List { items, .. } => items.len(),
                    _ => return Err(wrong()),
                };
                no_params(p, "Count")?;
                Ok(Stage::Scalar(Value::from(n)))
            }
            (K::Range, s) => {
                let (a, b) = match p {
                    [a, b] => (index(a, "Range")?, index(b, "Range")?),
                    _ => return Err(err("Range takes exactly two integer parameters")),
                };
                slice(s, a, b).ok_or_else(wrong)
            }
            (K::Limit, s) => match p {
                [n] => slice(s, 0, index(n, "Limit")?).ok_or_else(wrong),
                _ => Err(err("Limit takes exactly one integer parameter")),
            },
            (K::Sort, s) => self.sort(s, p, wrong),
            (K::Values, s) => self.values(s, one_string(p, "Values")?, wrong),
            (K::ValueMap, s) => self.value_map(s, p, wrong),
            (K::Keys, s) => {
                no_params(p, "Keys")?;
                self.keys(s, wrong)
            }
            (K::Sum, s) => self.sum(s, p, wrong),
            (K::ShortestPathTo, Stage::Nodes(n)) => self.shortest_paths(n, p),
            (K::SubGraph, s) => self.subgraph(s, p, wrong),
            (K::As, s @ (Stage::Nodes(_) | Stage::Edges(_))) => {
                let label = one_string(p, "As")?.to_owned();
                let saved = match &s {
                    Stage::Nodes(v) => Stage::Nodes(v.clone()),
                    Stage::Edges(v) => Stage::Edges(v.clone()),
                    _ => unreachable!("matched above"),
                };
                self.labels.insert(label, saved);
                Ok(s)
            }
            (K::Select, Stage::Scalar(_)) => Err(wrong()),
            (K::Select, _) => self.select(p),
            _ => Err(wrong()),
        }
    }

    // ----- conversions ---------------------------------------------------------------

    fn into_output(mut self, stage: Stage) -> Output {
        self.output_of(stage)
    }

    fn output_of(&mut self, stage: Stage) -> Output {
        match stage {
            Stage::Graph => match &self.scope {
                None => Output::Graph {
                    nodes: self.graph.nodes().collect(),
                    edges: self.graph.edges().collect(),
                },
                Some(s) => Output::Graph {
                    nodes: s.nodes.clone(),
                    edges: s.edges.clone(),
                },
            },
            Stage::Nodes(v) => Output::Nodes(v),
            Stage::Edges(v) => Output::Edges(v),
            Stage::Paths(v) => Output::Paths(v),
            Stage::List {
                items,
                null_if_empty,
            } => Output::Value(if items.is_empty() && null_if_empty {
                Value::Null
            } else {
                Value::Array(items)
            }),
            Stage::Scalar(v) => Output::Value(v),
            Stage::Ext(e) => Output::Ext(e),
        }
    }

    fn stage_of(&mut self, out: Output) -> Stage {
        match out {
            Output::Graph { nodes, edges } => {
                self.scope = Some(Rc::new(Scope::new(nodes, edges)));
                Stage::Graph
            }
            Output::Nodes(v) => Stage::Nodes(v),
            Output::Edges(v) => Stage::Edges(v),
            Output::Paths(v) => Stage::Paths(v),
            Output::Value(Value::Array(items)) => Stage::List {
                items,
                null_if_empty: false,
            },
            Output::Value(v) => Stage::Scalar(v),
            Output::Ext(e) => Stage::Ext(e),
        }
    }

    // ----- sources -------------------------------------------------------------------

    fn in_scope_node(&self, ix: NodeIx) -> bool {
        self.scope.as_ref().is_none_or(|s| s.node_set.contains(&ix))
    }

    fn in_scope_edge(&self, ix: EdgeIx) -> bool {
        self.scope.as_ref().is_none_or(|s| s.edge_set.contains(&ix))
    }

    fn v(&self, p: &[Param], and: &[Filter]) -> Result<Stage, EvalError> {
        let g = self.graph;
        if let [Param::Str(id)] = p {
            return g
                .find_node(&Identifier::from(id.as_str()))
                .filter(|ix| self.in_scope_node(*ix))
                .map(|ix| Stage::Nodes(vec![ix]))
                .ok_or_else(|| err(format!("Node '{id}' does not exist")))
                .and_then(|s| self.retain_all(s, and));
        }
        let f = filter_params(p, Combine::All)?;
        let keep = |ix: &NodeIx| all(&f, and, &g.node(*ix));
        Ok(Stage::Nodes(match &self.scope {
            None => g.nodes().filter(keep).collect(),
            Some(s) => s.nodes.iter().copied().filter(keep).collect(),
        }))
    }

    fn e(&self, p: &[Param], and: &[Filter]) -> Result<Stage, EvalError> {
        let g = self.graph;
        if let [Param::Str(id)] = p {
            return g
                .find_edge(&Identifier::from(id.as_str()))
                .filter(|ix| self.in_scope_edge(*ix))
                .map(|ix| Stage::Edges(vec![ix]))
                .ok_or_else(|| err(format!("Edge '{id}' does not exist")))
                .and_then(|s| self.retain_all(s, and));
        }
        let f = filter_params(p, Combine::All)?;
        let keep = |ix: &EdgeIx| all(&f, and, &g.edge(*ix));
        Ok(Stage::Edges(match &self.scope {
            None => g.edges().filter(keep).collect(),
            Some(s) => s.edges.iter().copied().filter(keep).collect(),
        }))
    }

    // ----- filters -------------------------------------------------------------------

    fn retain(
        &self,
        stage: Stage,
        f: &Filter,
        wrong: impl FnOnce() -> EvalError,
    ) -> Result<Stage, EvalError> {
        let g = self.graph;
        Ok(match stage {
            Stage::Nodes(mut v) => {
                v.retain(|ix| f.matches(&g.node(*ix)));
                Stage::Nodes(v)
            }
            Stage::Edges(mut v) => {
                v.retain(|ix| f.matches(&g.edge(*ix)));
                Stage::Edges(v)
            }
            // On values, Has filters the maps of the list (§2.5).
            Stage::List {
                mut items,
                null_if_empty,
            } => {
                items.retain(|v| matches!(v, Value::Object(m) if f.matches(&Obj(m))));
                Stage::List {
                    items,
                    null_if_empty,
                }
            }
            _ => return Err(wrong()),
        })
    }

    fn retain_all(&self, mut stage: Stage, filters: &[Filter]) -> Result<Stage, EvalError> {
        for f in filters {
            stage = self.retain(stage, f, || err("filter on a stage without elements"))?;
        }
        Ok(stage)
    }

    // ----- traversal -----------------------------------------------------------------

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

    fn neighbours(
        &mut self,
        nodes: &[NodeIx],
        dirs: &[Direction],
        p: &[Param],
        and: &[Filter],
    ) -> Result<Stage, EvalError> {
        let f = filter_params(p, Combine::All)?;
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
                            .filter(|o| all(&f, and, &g.node(*o))),
                    );
                }
            }
            if out.len() > MAX_ELEMENTS {
                return Err(too_many());
            }
        }
        Ok(Stage::Nodes(out))
    }

    fn edges_of(
        &mut self,
        nodes: &[NodeIx],
        dirs: &[Direction],
        p: &[Param],
        and: &[Filter],
    ) -> Result<Stage, EvalError> {
        let f = filter_params(p, Combine::All)?;
        let g = self.graph;
        let mut out = Vec::with_capacity(nodes.len());
        for &n in nodes {
            for &dir in dirs {
                self.collect_edges(n, dir);
                out.extend(
                    self.buf
                        .iter()
                        .map(|(e, _)| *e)
                        .filter(|e| all(&f, and, &g.edge(*e))),
                );
            }
            if out.len() > MAX_ELEMENTS {
                return Err(too_many());
            }
        }
        Ok(Stage::Edges(out))
    }

    fn endpoints(
        &self,
        edges: &[EdgeIx],
        parent: bool,
        child: bool,
        p: &[Param],
        and: &[Filter],
    ) -> Result<Stage, EvalError> {
        let f = filter_params(p, Combine::All)?;
        let g = self.graph;
        let mut out = Vec::with_capacity(edges.len());
        for &e in edges {
            let (pa, ch) = g.endpoints(e);
            if parent && all(&f, and, &g.node(pa)) {
                out.push(pa);
            }
            if child && all(&f, and, &g.node(ch)) {
                out.push(ch);
            }
        }
        if out.len() > MAX_ELEMENTS {
            return Err(too_many());
        }
        Ok(Stage::Nodes(out))
    }

    // ----- set operations ------------------------------------------------------------

    fn dedup(
        &self,
        stage: Stage,
        p: &[Param],
        wrong: impl FnOnce() -> EvalError,
    ) -> Result<Stage, EvalError> {
        let keys = string_keys(p, "Dedup")?;
        let g = self.graph;
        let mut seen_keys: HashSet<String> = HashSet::new();
        // Elements with none of the keys are always kept (§2.5).
        let mut by_keys = |k: Option<String>| k.is_none_or(|k| seen_keys.insert(k));
        Ok(match stage {
            Stage::Nodes(mut v) => {
                if keys.is_empty() {
                    let mut seen = HashSet::with_capacity(v.len());
                    v.retain(|ix| seen.insert(*ix));
                } else {
                    v.retain(|ix| by_keys(dedup_key(&g.node(*ix), &keys)));
                }
                Stage::Nodes(v)
            }
            Stage::Edges(mut v) => {
                if keys.is_empty() {
                    let mut seen = HashSet::with_capacity(v.len());
                    v.retain(|ix| seen.insert(*ix));
                } else {
                    v.retain(|ix| by_keys(dedup_key(&g.edge(*ix), &keys)));
                }
                Stage::Edges(v)
            }
            Stage::Paths(mut v) => {
                if !keys.is_empty() {
                    return Err(err("Dedup on paths takes no keys"));
                }
                let mut seen: HashSet<Vec<NodeIx>> = HashSet::new();
                v.retain(|path| seen.insert(path.clone()));
                Stage::Paths(v)
            }
            Stage::List {
                mut items,
                null_if_empty,
            } => {
                items.retain(|item| match (item, keys.is_empty()) {
                    (_, true) => by_keys(Some(item.to_string())),
                    (Value::Object(m), false) => by_keys(dedup_key(&Obj(m), &keys)),
                    _ => true,
                });
                Stage::List {
                    items,
                    null_if_empty,
                }
            }
            _ => return Err(wrong()),
        })
    }

    fn sort(
        &self,
        stage: Stage,
        p: &[Param],
        wrong: impl FnOnce() -> EvalError,
    ) -> Result<Stage, EvalError> {
        let (desc, key) = match p {
            [] => (false, None),
            [Param::Str(k)] => (false, Some(k.as_str())),
            [Param::Keyword(Keyword::Asc)] => (false, None),
            [Param::Keyword(Keyword::Desc)] => (true, None),
            [Param::Keyword(Keyword::Asc), Param::Str(k)] => (false, Some(k.as_str())),
            [Param::Keyword(Keyword::Desc), Param::Str(k)] => (true, Some(k.as_str())),
            _ => {
                return Err(err(
                    "Sort takes no parameters, a string key, or ASC|DESC and a string key",
                ))
            }
        };
        let g = self.graph;
        // Nodes and edges sort by creation time unless told otherwise (§2.8).
        let elem_key = key.map_or(
            Key::Special(Special::CreatedAt, "@CreatedAt".into()),
            Key::parse,
        );
        let cmp = |a: &SortKey<'_>, b: &SortKey<'_>| a.compare(b, desc);
        Ok(match stage {
            Stage::Nodes(v) => {
                let mut keyed: Vec<(SortKey<'_>, NodeIx)> = v
                    .into_iter()
                    .map(|ix| (SortKey::of(field(&g.node(ix), &elem_key)), ix))
                    .collect();
                keyed.sort_by(|a, b| cmp(&a.0, &b.0));
                Stage::Nodes(keyed.into_iter().map(|(_, ix)| ix).collect())
            }
            Stage::Edges(v) => {
                let mut keyed: Vec<(SortKey<'_>, EdgeIx)> = v
                    .into_iter()
                    .map(|ix| (SortKey::of(field(&g.edge(ix), &elem_key)), ix))
                    .collect();
                keyed.sort_by(|a, b| cmp(&a.0, &b.0));
                Stage::Edges(keyed.into_iter().map(|(_, ix)| ix).collect())
            }
            Stage::List {
                items,
                null_if_empty,
            } => {
                let key = key.map(Key::parse);
                let mut order: Vec<(SortKey<'_>, usize)> = items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| {
                        let k = match (&key, item) {
                            (None, v) => SortKey::of(Some(Field::Json(v))),
                            (Some(k), Value::Object(m)) => SortKey::of(field(&Obj(m), k)),
                            (Some(_), _) => SortKey::Missing,
                        };
                        (k, i)
                    })
                    .collect();
                order.sort_by(|a, b| cmp(&a.0, &b.0));
                let order: Vec<usize> = order.into_iter().map(|(_, i)| i).collect();
                let mut slots: Vec<Option<Value>> = items.into_iter().map(Some).collect();
                let items = order.into_iter().filter_map(|i| slots[i].take()).collect();
                Stage::List {
                    items,
                    null_if_empty,
                }
            }
            _ => return Err(wrong()),
        })
    }

    // ----- values --------------------------------------------------------------------

    fn values(
        &self,
        stage: Stage,
        key: &str,
        wrong: impl FnOnce() -> EvalError,
    ) -> Result<Stage, EvalError> {
        let key = Key::parse(key);
        let g = self.graph;
        let push = |items: &mut Vec<Value>, f: Option<Field<'_>>| {
            // Empty lists and maps are skipped (§1.7).
            if let Some(f) = f.filter(|f| !f.is_empty_container()) {
                items.push(f.to_value());
            }
        };
        let mut items = Vec::new();
        match stage {
            Stage::Nodes(v) => v
                .iter()
                .for_each(|ix| push(&mut items, field(&g.node(*ix), &key))),
            Stage::Edges(v) => v
                .iter()
                .for_each(|ix| push(&mut items, field(&g.edge(*ix), &key))),
            Stage::List { items: list, .. } => {
                for item in &list {
                    if let Value::Object(m) = item {
                        push(&mut items, field(&Obj(m), &key));
                    }
                }
            }
            _ => return Err(wrong()),
        }
        Ok(Stage::List {
            items,
            null_if_empty: true,
        })
    }

    fn value_map(
        &self,
        stage: Stage,
        p: &[Param],
        wrong: impl FnOnce() -> EvalError,
    ) -> Result<Stage, EvalError> {
        let names = string_keys(p, "ValueMap")?;
        if names.is_empty() {
            return Err(err("ValueMap takes one or more string keys"));
        }
        let raw: Vec<&str> = p.iter().filter_map(Param::as_str).collect();
        let g = self.graph;
        let items: Vec<Value> = match stage {
            Stage::Nodes(v) => v
                .iter()
                .filter_map(|ix| value_map_of(&g.node(*ix), &raw, &names))
                .collect(),
            Stage::Edges(v) => v
                .iter()
                .filter_map(|ix| value_map_of(&g.edge(*ix), &raw, &names))
                .collect(),
            Stage::List { items, .. } => items
                .iter()
                .filter_map(|item| match item {
                    Value::Object(m) => value_map_of(&Obj(m), &raw, &names),
                    _ => None,
                })
                .collect(),
            _ => return Err(wrong()),
        };
        Ok(Stage::List {
            items,
            null_if_empty: false,
        })
    }

    fn keys(&self, stage: Stage, wrong: impl FnOnce() -> EvalError) -> Result<Stage, EvalError> {
        let g = self.graph;
        let mut keys = KeySet::default();
        match stage {
            Stage::Nodes(v) => {
                if !v.is_empty() {
                    Special::NODE_KEYS.iter().for_each(|k| keys.add(k));
                }
                let mut seen = HashSet::with_capacity(v.len());
                for ix in v.into_iter().filter(|ix| seen.insert(*ix)) {
                    keys.add_metadata(g.node(ix).metadata());
                }
            }
            Stage::Edges(v) => {
                if !v.is_empty() {
                    Special::NODE_KEYS.iter().for_each(|k| keys.add(k));
                    keys.add("Parent");
                    keys.add("Child");
                }
                let mut seen = HashSet::with_capacity(v.len());
                for ix in v.into_iter().filter(|ix| seen.insert(*ix)) {
                    keys.add_metadata(g.edge(ix).metadata());
                }
            }
            Stage::List { items, .. } => {
                for item in &items {
                    if let Value::Object(m) = item {
                        keys.add_metadata(m);
                    }
                }
            }
            _ => return Err(wrong()),
        }
        Ok(Stage::List {
            items: keys.order.into_iter().map(Value::String).collect(),
            null_if_empty: true,
        })
    }

    fn sum(
        &self,
        stage: Stage,
        p: &[Param],
        wrong: impl FnOnce() -> EvalError,
    ) -> Result<Stage, EvalError> {
        let key = match p {
            [] => None,
            [Param::Str(k)] => Some(Key::parse(k)),
            _ => return Err(err("Sum takes no parameters or one string key")),
        };
        let g = self.graph;
        let mut acc = Sum::default();
        match (stage, &key) {
            (Stage::Nodes(v), Some(k)) => {
                for ix in v {
                    let n = g.node(ix);
                    acc.add(field(&n, k), || format!("node '{}'", n.id()))?;
                }
            }
            (Stage::Edges(v), Some(k)) => {
                for ix in v {
                    let e = g.edge(ix);
                    acc.add(field(&e, k), || format!("edge '{}'", e.id()))?;
                }
            }
            (Stage::Nodes(_) | Stage::Edges(_), None) => {
                return Err(err("Sum on nodes or edges takes a key"))
            }
            (Stage::List { items, .. }, key) => {
                for (i, item) in items.iter().enumerate() {
                    let f = match (key, item) {
                        (None, v) => Some(Field::Json(v)),
                        (Some(k), Value::Object(m)) => field(&Obj(m), k),
                        (Some(_), _) => None,
                    };
                    acc.add(f, || format!("value {}", i + 1))?;
                }
            }
            _ => return Err(wrong()),
        }
        Ok(Stage::Scalar(acc.into_value()))
    }

    // ----- paths and subgraphs -------------------------------------------------------

    fn shortest_paths(&mut self, sources: Vec<NodeIx>, p: &[Param]) -> Result<Stage, EvalError> {
        let (target, edges) = match p {
            [Param::Metadata(t)] => (Filter::from_metadata(t).map_err(err)?, Filter::all()),
            [Param::Metadata(t), Param::Metadata(e)] => (
                Filter::from_metadata(t).map_err(err)?,
                Filter::from_metadata(e).map_err(err)?,
            ),
            _ => {
                return Err(err(
                    "ShortestPathTo takes one or two Metadata(...) parameters",
                ))
            }
        };
        let mut seen = HashSet::with_capacity(sources.len());
        let mut paths = Vec::new();
        let mut total = 0usize;
        for s in sources {
            if !seen.insert(s) {
                continue;
            }
            if let Some(path) = self.shortest_path(s, &target, &edges)? {
                total += path.len();
                if total > MAX_ELEMENTS {
                    return Err(too_many());
                }
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

    fn subgraph(
        &mut self,
        stage: Stage,
        p: &[Param],
        wrong: impl FnOnce() -> EvalError,
    ) -> Result<Stage, EvalError> {
        let f = filter_params(p, Combine::All)?;
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
                let edges = self.edges_among(&nodes, &f);
                (nodes, edges)
            }
            Stage::Paths(paths) => {
                let nodes = dedup_nodes(paths.into_iter().flatten().collect());
                let edges = self.edges_among(&nodes, &f);
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
        self.scope = Some(Rc::new(Scope::new(nodes, edges)));
        Ok(Stage::Graph)
    }

    /// Edges in scope between two of `nodes`, by parent in `nodes` order, oldest first.
    fn edges_among(&mut self, nodes: &[NodeIx], f: &Filter) -> Vec<EdgeIx> {
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
        }
        edges
    }

    fn select(&self, p: &[Param]) -> Result<Stage, EvalError> {
        let labels = string_keys(p, "Select")?;
        if labels.is_empty() {
            return Err(err("Select takes one or more labels"));
        }
        let mut nodes: Option<Vec<NodeIx>> = None;
        let mut edges: Option<Vec<EdgeIx>> = None;
        for label in p.iter().filter_map(Param::as_str) {
            match self.labels.get(label) {
                Some(Stage::Nodes(v)) => nodes.get_or_insert_with(Vec::new).extend(v),
                Some(Stage::Edges(v)) => edges.get_or_insert_with(Vec::new).extend(v),
                _ => {
                    return Err(err(format!(
                        "no step labelled '{label}': label a step with As('{label}') first"
                    )))
                }
            }
        }
        match (nodes, edges) {
            (Some(n), None) => Ok(Stage::Nodes(dedup_nodes(n))),
            (None, Some(e)) => {
                let mut seen = HashSet::with_capacity(e.len());
                Ok(Stage::Edges(
                    e.into_iter().filter(|x| seen.insert(*x)).collect(),
                ))
            }
            _ => Err(err("Select cannot mix node and edge labels")),
        }
    }
}

// ----- helpers -------------------------------------------------------------------------

/// Whether `Has`-style steps following `kind` on `stage` can filter during it.
fn absorbs(kind: &StepKind, stage: &Stage) -> bool {
    use StepKind as K;
    match stage {
        Stage::Graph => matches!(kind, K::V | K::E),
        Stage::Nodes(_) => matches!(kind, K::Out | K::In | K::Both | K::OutE | K::InE | K::BothE),
        Stage::Edges(_) => matches!(kind, K::OutV | K::InV | K::BothV),
        _ => false,
    }
}

/// The filter of a `Has`, `HasKey`, `HasNot` or `HasEither` step.
fn has_filter(step: &Step) -> Option<Result<Filter, EvalError>> {
    let p = step.params.as_slice();
    Some(match step.kind {
        StepKind::Has => filter_params(p, Combine::All),
        StepKind::HasEither => filter_params(p, Combine::Any),
        StepKind::HasKey => one_string(p, "HasKey")
            .and_then(|k| filter_params(&[Param::Str(k.to_owned())], Combine::All)),
        StepKind::HasNot => one_string(p, "HasNot").map(Filter::absent),
        _ => return None,
    })
}

#[inline]
fn all<'g>(f: &Filter, and: &[Filter], e: &impl Element<'g>) -> bool {
    f.matches(e) && and.iter().all(|x| x.matches(e))
}

fn filter_params(p: &[Param], combine: Combine) -> Result<Filter, EvalError> {
    Filter::from_params(p, combine).map_err(err)
}

fn one_string<'p>(p: &'p [Param], step: &str) -> Result<&'p str, EvalError> {
    match p {
        [Param::Str(s)] => Ok(s),
        _ => Err(err(format!("{step} takes exactly one string parameter"))),
    }
}

fn no_params(p: &[Param], step: &str) -> Result<(), EvalError> {
    if p.is_empty() {
        Ok(())
    } else {
        Err(err(format!("{step} takes no parameters")))
    }
}

fn string_keys(p: &[Param], step: &str) -> Result<Vec<Key>, EvalError> {
    p.iter()
        .map(|x| match x {
            Param::Str(s) => Ok(Key::parse(s)),
            other => Err(err(format!(
                "{step} takes string keys, found {}",
                filter::describe(other)
            ))),
        })
        .collect()
}

fn index(p: &Param, step: &str) -> Result<usize, EvalError> {
    match p {
        Param::Int(i) if *i >= 0 => Ok(usize::try_from(*i).unwrap_or(usize::MAX)),
        other => Err(err(format!(
            "{step} takes non-negative integers, found {}",
            filter::describe(other)
        ))),
    }
}

/// Items `[a, b)`; `None` when the stage has no items.
fn slice(stage: Stage, a: usize, b: usize) -> Option<Stage> {
    fn cut<T>(mut v: Vec<T>, a: usize, b: usize) -> Vec<T> {
        v.truncate(b);
        v.drain(..a.min(v.len()));
        v
    }
    Some(match stage {
        Stage::Nodes(v) => Stage::Nodes(cut(v, a, b)),
        Stage::Edges(v) => Stage::Edges(cut(v, a, b)),
        Stage::Paths(v) => Stage::Paths(cut(v, a, b)),
        Stage::List {
            items,
            null_if_empty,
        } => Stage::List {
            items: cut(items, a, b),
            null_if_empty,
        },
        _ => return None,
    })
}

fn dedup_nodes(v: Vec<NodeIx>) -> Vec<NodeIx> {
    let mut seen = HashSet::with_capacity(v.len());
    v.into_iter().filter(|n| seen.insert(*n)).collect()
}

/// One `ValueMap` entry; `None` when `e` has none of the keys (§1.7: skipped).
fn value_map_of<'g>(e: &impl Element<'g>, raw: &[&str], keys: &[Key]) -> Option<Value> {
    let mut m = Map::new();
    for (name, key) in raw.iter().zip(keys) {
        if let Some(f) = field(e, key).filter(|f| !f.is_empty_container()) {
            m.insert((*name).to_owned(), f.to_value());
        }
    }
    (!m.is_empty()).then_some(Value::Object(m))
}

/// The `Dedup(k...)` identity of an element: its key values (null where absent), or
/// `None` when it has none of the keys.
fn dedup_key<'g>(e: &impl Element<'g>, keys: &[Key]) -> Option<String> {
    let mut any = false;
    let values: Vec<Value> = keys
        .iter()
        .map(|k| match field(e, k) {
            Some(f) => {
                any = true;
                f.to_value()
            }
            None => Value::Null,
        })
        .collect();
    any.then(|| Value::Array(values).to_string())
}

/// A sort key: numbers before strings before booleans before anything else; missing
/// values last in both directions.
enum SortKey<'a> {
    Num(Num),
    Str(Cow<'a, str>),
    Bool(bool),
    Other(String),
    Missing,
}

impl<'a> SortKey<'a> {
    fn of(f: Option<Field<'a>>) -> SortKey<'a> {
        let Some(f) = f else {
            return SortKey::Missing;
        };
        if let Some(n) = f.as_num() {
            return SortKey::Num(n);
        }
        match f {
            Field::Json(Value::String(s)) => SortKey::Str(Cow::Borrowed(s)),
            Field::Str(s) => SortKey::Str(s),
            Field::Json(Value::Bool(b)) => SortKey::Bool(*b),
            Field::Json(Value::Null) => SortKey::Missing,
            other => SortKey::Other(other.to_value().to_string()),
        }
    }

    fn rank(&self) -> u8 {
        match self {
            SortKey::Num(_) => 0,
            SortKey::Str(_) => 1,
            SortKey::Bool(_) => 2,
            SortKey::Other(_) => 3,
            SortKey::Missing => 4,
        }
    }

    fn compare(&self, other: &SortKey<'_>, desc: bool) -> Ordering {
        match (self, other) {
            (SortKey::Missing, SortKey::Missing) => return Ordering::Equal,
            (SortKey::Missing, _) => return Ordering::Greater,
            (_, SortKey::Missing) => return Ordering::Less,
            _ => {}
        }
        let o = match (self, other) {
            (SortKey::Num(a), SortKey::Num(b)) => a.cmp(*b).unwrap_or(Ordering::Equal),
            (SortKey::Str(a), SortKey::Str(b)) => a.cmp(b),
            (SortKey::Bool(a), SortKey::Bool(b)) => a.cmp(b),
            (SortKey::Other(a), SortKey::Other(b)) => a.cmp(b),
            (a, b) => a.rank().cmp(&b.rank()),
        };
        if desc {
            o.reverse()
        } else {
            o
        }
    }
}

/// Keys in first-seen order, without duplicates.
#[derive(Default)]
struct KeySet {
    seen: HashSet<String>,
    order: Vec<String>,
}

impl KeySet {
    fn add(&mut self, k: &str) {
        if !self.seen.contains(k) {
            self.seen.insert(k.to_owned());
            self.order.push(k.to_owned());
        }
    }

    /// Every key of `m` and, breadth first, the dotted keys of nested maps and of maps in
    /// lists (`ExtID.attached-mac`, `Captures.State`). No recursion: metadata depth comes
    /// from the network.
    fn add_metadata(&mut self, m: &Map<String, Value>) {
        let mut queue: VecDeque<(String, &Map<String, Value>)> =
            VecDeque::from([(String::new(), m)]);
        while let Some((prefix, m)) = queue.pop_front() {
            for (k, v) in m {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                self.add(&key);
                match v {
                    Value::Object(sub) => queue.push_back((key, sub)),
                    Value::Array(items) => {
                        for item in items {
                            if let Value::Object(sub) = item {
                                queue.push_back((key.clone(), sub));
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}

/// `Sum`: integers while every term is one (overflow is an error), floats otherwise.
#[derive(Default)]
struct Sum {
    int: i64,
    float: Option<f64>,
}

impl Sum {
    fn add(
        &mut self,
        f: Option<Field<'_>>,
        what: impl FnOnce() -> String,
    ) -> Result<(), EvalError> {
        let Some(f) = f else { return Ok(()) };
        match (f.as_num(), &mut self.float) {
            (Some(Num::I(i)), None) => {
                self.int = self
                    .int
                    .checked_add(i)
                    .ok_or_else(|| err("Sum overflows a 64-bit integer"))?;
            }
            (Some(n), Some(x)) => *x += n.as_f64(),
            (Some(Num::F(x)), None) => self.float = Some(self.int as f64 + x),
            (None, _) => {
                return Err(err(format!(
                    "Sum: {} has a non-numeric value {}",
                    what(),
                    f.to_value()
                )))
            }
        }
        Ok(())
    }

    fn into_value(self) -> Value {
        match self.float {
            None => Value::from(self.int),
            Some(x) => serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number),
        }
    }
}
