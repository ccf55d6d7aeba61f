//! Step-by-step evaluation of a [`Compiled`](super::Compiled) query
//! (skydive-behaviour.md §2.5), split by what a step works on:
//!
//! - [`source`]: `V`, `E` and `Has`-style filters;
//! - [`traverse`]: neighbour, edge and endpoint walks, `ShortestPathTo`, `SubGraph`;
//! - [`sets`]: `Dedup`, `Sort`, `Range`/`Limit`, `Count`, `As`/`Select`;
//! - [`values`]: `Values`, `ValueMap`, `Keys`, `Sum`.
//!
//! Parameters were checked when the query was compiled; what remains here are the
//! checks that depend on the input (which step may follow which) and the budget.

mod sets;
mod source;
mod traverse;
mod values;

use std::rc::Rc;

use hashbrown::{HashMap, HashSet};
use serde_json::Value;
use topotap_grammar::ast::Step;

pub use sets::pick;

use super::budget::Meter;
use super::compile::{Op, Walk};
use super::filter::{Element, Filter};
use super::{EvalError, ExtOutput, Output};
use crate::{EdgeIx, NodeIx, View};

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

pub(crate) struct Evaluator<'g> {
    graph: View<'g>,
    meter: Meter,
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

impl<'g> Evaluator<'g> {
    pub(crate) fn new(graph: View<'g>, meter: Meter) -> Self {
        Evaluator {
            graph,
            meter,
            scope: None,
            labels: HashMap::new(),
            path_work: 0,
            buf: Vec::new(),
        }
    }

    /// Runs `ops` (compiled from `steps`, one for one).
    pub(crate) fn run(mut self, steps: &[Step], ops: &[Op]) -> Result<Output, EvalError> {
        debug_assert_eq!(steps.len(), ops.len());
        let mut stage = Stage::Graph;
        let mut prev = String::from("G");
        let mut i = 0;
        while i < ops.len() {
            let step = &steps[i];
            let input = match &stage {
                Stage::Ext(e) => e.name().to_owned(),
                _ => std::mem::take(&mut prev),
            };
            // Like Skydive's Reduce: `Has`-style steps right after a source or traversal
            // step filter while it walks, instead of in a second pass. Same results.
            let mut absorbed: Vec<&Filter> = Vec::new();
            let mut last = i;
            if absorbs(&ops[i], &stage) {
                while let Some(f) = ops.get(last + 1).and_then(Op::as_filter) {
                    absorbed.push(f);
                    last += 1;
                }
            }
            stage = self
                .meter
                .check_clock()
                .and_then(|()| self.step(stage, step, &ops[i], &input, &absorbed))
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
        op: &Op,
        input: &str,
        and: &[&Filter],
    ) -> Result<Stage, EvalError> {
        let g = self.graph;
        let wrong = || EvalError::cannot_follow(step, input);

        match op {
            Op::Ext(ext) => {
                let out = ext.apply(self.output_of(stage), step, g)?;
                return self.stage_of(out);
            }
            Op::ValueStep => {
                return match stage {
                    Stage::Ext(e) => {
                        let out = e.apply_step(step, g)?;
                        self.stage_of(out)
                    }
                    _ => Err(err(format!("unknown step '{}'", step.kind.name()))),
                }
            }
            _ => {}
        }
        let stage = match stage {
            Stage::Ext(mut e) if !matches!(op, Op::G) => {
                // The core set steps work on the records of extension values that have
                // them; anything else is the value's business.
                let core = matches!(op, Op::Dedup(_) | Op::Sort(_) | Op::Range(..) | Op::Count)
                    && e.records().is_some();
                if !core {
                    let out = e.apply_step(step, g)?;
                    return self.stage_of(out);
                }
                Stage::Ext(e)
            }
            s => s,
        };

        match (op, stage) {
            (Op::G, _) => Ok(Stage::Graph),
            // The caller already chose the graph of that time.
            (Op::Context(_), Stage::Graph) => Ok(Stage::Graph),
            (Op::V(src), Stage::Graph) => self.v(src, and),
            (Op::E(src), Stage::Graph) => self.e(src, and),
            (Op::Has(f), s) => self.retain(s, f, wrong),
            (Op::Walk(Walk::Nodes { out, inc }, f), Stage::Nodes(n)) => {
                self.neighbours(&n, directions(*out, *inc), f, and)
            }
            (Op::Walk(Walk::Edges { out, inc }, f), Stage::Nodes(n)) => {
                self.edges_of(&n, directions(*out, *inc), f, and)
            }
            (Op::Walk(Walk::Ends { parent, child }, f), Stage::Edges(e)) => {
                self.endpoints(&e, *parent, *child, f, and)
            }
            (Op::Dedup(keys), s) => self.dedup(s, keys, wrong),
            (Op::Count, s) => {
                let n = match s {
                    Stage::Nodes(v) => v.len(),
                    Stage::Edges(v) => v.len(),
                    Stage::Paths(v) => v.len(),
                    Stage::List { items, .. } => items.len(),
                    Stage::Ext(mut e) => match e.records() {
                        Some(r) => r.len(),
                        None => return Err(wrong()),
                    },
                    _ => return Err(wrong()),
                };
                Ok(Stage::Scalar(Value::from(n)))
            }
            (Op::Range(a, b), s) => slice(s, *a, *b).ok_or_else(wrong),
            (Op::Sort(spec), s) => self.sort(s, spec, wrong),
            (Op::Values(key), s) => self.values(s, key, wrong),
            (Op::ValueMap(keys), s) => self.value_map(s, keys, wrong),
            (Op::Keys, s) => self.keys(s, wrong),
            (Op::Sum(key), s) => self.sum(s, key.as_ref(), wrong),
            (Op::ShortestPathTo { target, edges }, Stage::Nodes(n)) => {
                self.shortest_paths(n, target, edges)
            }
            (Op::SubGraph(f), s) => self.subgraph(s, f, wrong),
            (Op::As(label), s @ (Stage::Nodes(_) | Stage::Edges(_))) => {
                let saved = match &s {
                    Stage::Nodes(v) => Stage::Nodes(v.clone()),
                    Stage::Edges(v) => Stage::Edges(v.clone()),
                    _ => unreachable!("matched above"),
                };
                self.labels.insert(label.clone(), saved);
                Ok(s)
            }
            (Op::Select(_), Stage::Scalar(_)) => Err(wrong()),
            (Op::Select(labels), _) => self.select(labels),
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

    /// An extension's result as the next stage; its size counts against the budget.
    fn stage_of(&mut self, out: Output) -> Result<Stage, EvalError> {
        Ok(match out {
            Output::Graph { nodes, edges } => {
                self.meter
                    .elements(nodes.len().saturating_add(edges.len()))?;
                self.scope = Some(Rc::new(Scope::new(nodes, edges)));
                Stage::Graph
            }
            Output::Nodes(v) => {
                self.meter.elements(v.len())?;
                Stage::Nodes(v)
            }
            Output::Edges(v) => {
                self.meter.elements(v.len())?;
                Stage::Edges(v)
            }
            Output::Paths(v) => {
                self.meter
                    .elements(v.iter().map(Vec::len).fold(0, usize::saturating_add))?;
                Stage::Paths(v)
            }
            Output::Value(Value::Array(items)) => {
                self.meter.elements(items.len())?;
                Stage::List {
                    items,
                    null_if_empty: false,
                }
            }
            Output::Value(v) => Stage::Scalar(v),
            Output::Ext(e) => Stage::Ext(e),
        })
    }
}

// ----- helpers -------------------------------------------------------------------------

fn directions(out: bool, inc: bool) -> &'static [petgraph::Direction] {
    use petgraph::Direction::{Incoming, Outgoing};
    match (out, inc) {
        (true, true) => &[Outgoing, Incoming],
        (true, false) => &[Outgoing],
        (false, _) => &[Incoming],
    }
}

/// Whether `Has`-style steps following `op` on `stage` can filter during it.
fn absorbs(op: &Op, stage: &Stage) -> bool {
    match stage {
        Stage::Graph => matches!(op, Op::V(_) | Op::E(_)),
        Stage::Nodes(_) => matches!(op, Op::Walk(Walk::Nodes { .. } | Walk::Edges { .. }, _)),
        Stage::Edges(_) => matches!(op, Op::Walk(Walk::Ends { .. }, _)),
        _ => false,
    }
}

#[inline]
fn all<'a>(f: &Filter, and: &[&Filter], e: &impl Element<'a>) -> bool {
    f.matches(e) && and.iter().all(|x| x.matches(e))
}

/// Items `[a, b)`; `None` when the stage has no items.
fn slice(stage: Stage, a: usize, b: usize) -> Option<Stage> {
    Some(match stage {
        Stage::Nodes(v) => Stage::Nodes(sets::range(v, a, b)),
        Stage::Edges(v) => Stage::Edges(sets::range(v, a, b)),
        Stage::Paths(v) => Stage::Paths(sets::range(v, a, b)),
        Stage::List {
            items,
            null_if_empty,
        } => Stage::List {
            items: sets::range(items, a, b),
            null_if_empty,
        },
        Stage::Ext(mut e) => {
            let r = e.records()?;
            let n = r.len();
            let keep: Vec<usize> = (a.min(n)..b.min(n)).collect();
            if keep.len() != n {
                r.keep(&keep);
            }
            Stage::Ext(e)
        }
        _ => return None,
    })
}

fn dedup_nodes(v: Vec<NodeIx>) -> Vec<NodeIx> {
    let mut seen = HashSet::with_capacity(v.len());
    v.into_iter().filter(|n| seen.insert(*n)).collect()
}
