//! Query text → [`Compiled`] query: typed steps with their filters, regexes and keys
//! built once, and extension steps resolved through the [`Extensions`] registry.
//!
//! Everything that does not depend on the graph is checked here — step names, arity,
//! parameter types, predicates, regexes, extension parameters — so that a query stored
//! with a capture, an injection or a subscriber is refused when it is created, with the
//! line and column of the culprit, and evaluation has no argument to check.

use std::fmt;
use std::sync::Arc;

use topotap_grammar::ast::{Keyword, Param, Query, Step, StepKind};
use topotap_grammar::time::{TimePoint, Window};
use topotap_grammar::ParseError;

use super::budget::Meter;
use super::filter::{Combine, Filter, Key, Special};
use super::{eval, Budget, EvalError, Extensions, Output, StepExtension};
use crate::{Graph, View};

/// Why a query was refused before evaluation: `line L, column C: <message>`, one line.
pub type CompileError = ParseError;

/// A query ready to evaluate any number of times, over any graph, from any thread.
///
/// ```
/// use topotap_topology::gremlin::{compile, Budget, Extensions};
/// use topotap_topology::Graph;
///
/// let q = compile("G.V().Has('Type', 'veth').Count()", &Extensions::new()).unwrap();
/// let out = q.evaluate(&Graph::new(), &Budget::default()).unwrap();
/// assert_eq!(out.to_json(&Graph::new()), 0);
///
/// let e = compile("G.V().Nope()", &Extensions::new()).unwrap_err();
/// assert_eq!(e.to_string(), "line 1, column 7: unknown step 'Nope'");
/// ```
#[derive(Clone)]
pub struct Compiled {
    query: Query,
    ops: Arc<[Op]>,
    context: Option<TimeContext>,
}

/// The time a query looks at (`G.Context(t[, d])` / `G.At(...)`, §2.7): the graph as it
/// was at `t`, or, with a window, every revision valid between `t - d` and `t`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeContext {
    pub at: TimePoint,
    pub window: Option<Window>,
}

/// A [`TimeContext`] resolved against a clock, in milliseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRange {
    /// Start of the window (`i64::MIN` for `FOREVER`); equal to `at` for a time point.
    pub from: i64,
    pub at: i64,
}

impl TimeRange {
    /// Whether this is one instant rather than a window.
    pub fn is_point(&self) -> bool {
        self.from == self.at
    }
}

impl TimeContext {
    fn of(p: &[Param]) -> Result<TimeContext, EvalError> {
        use topotap_grammar::time;
        let bad = |e: time::BadTime| err(e.0);
        let at = match p.first() {
            Some(Param::Keyword(Keyword::Now)) => TimePoint::Now,
            Some(Param::Int(n)) => time::time_from_int(*n).map_err(bad)?,
            Some(Param::Str(s)) => time::parse_time(s).map_err(bad)?,
            _ => {
                return Err(err(format!(
                    "Context takes a time: {}",
                    time::ACCEPTED_TIMES
                )))
            }
        };
        let window = match p.get(1) {
            None => None,
            Some(Param::Keyword(Keyword::Forever)) => Some(Window::Forever),
            Some(Param::Int(n)) if *n >= 0 => Some(Window::Duration(n.saturating_mul(1000))),
            Some(Param::Str(s)) => Some(time::parse_window(s).map_err(bad)?),
            Some(_) => return Err(err(time::ACCEPTED_WINDOWS)),
        };
        Ok(TimeContext { at, window })
    }

    /// The instant or window this context means when now is `now_ms`.
    pub fn resolve(&self, now_ms: i64) -> TimeRange {
        let at = self.at.resolve(now_ms);
        let from = match self.window {
            None => at,
            Some(Window::Forever) => i64::MIN,
            Some(Window::Duration(d)) => at.saturating_sub(d),
        };
        TimeRange { from, at }
    }
}

/// Compiles `text`, resolving extension steps in `ext`.
pub fn compile(text: &str, ext: &Extensions) -> Result<Compiled, CompileError> {
    let query = topotap_grammar::parse(text)?;
    Compiled::new(query, ext, true).map_err(|e| {
        let pos = e.position().unwrap_or(0);
        ParseError::at(text, pos, e.message)
    })
}

impl Compiled {
    /// Compiles a parsed query. With `strict`, an unknown step is an error; without, it
    /// fails only if evaluation reaches it (what [`super::evaluate`] did before queries
    /// were compiled). Errors are located at their step.
    pub(crate) fn new(query: Query, ext: &Extensions, strict: bool) -> Result<Compiled, EvalError> {
        let mut ops = Vec::with_capacity(query.steps.len());
        let mut context = None;
        for (i, step) in query.steps.iter().enumerate() {
            let op = Op::compile(step, ext, strict).map_err(|e| e.located(i + 1, step))?;
            if let Op::Context(c) = &op {
                if i != 0 {
                    return Err(err("Context must be the first step after G").located(i + 1, step));
                }
                context = Some(*c);
            }
            ops.push(op);
        }
        Ok(Compiled {
            query,
            ops: ops.into(),
            context,
        })
    }

    /// Compiles a parsed query strictly; errors carry the step's position.
    pub fn from_query(query: Query, ext: &Extensions) -> Result<Compiled, EvalError> {
        Compiled::new(query, ext, true)
    }

    /// The time the query looks at, if it starts with `Context`/`At`; `None`: the
    /// live graph. The caller evaluates such a query over the graph of that time.
    pub fn time_context(&self) -> Option<TimeContext> {
        self.context
    }

    /// The parsed query.
    pub fn query(&self) -> &Query {
        &self.query
    }

    /// Evaluates over `graph` within `budget`.
    pub fn evaluate(&self, graph: &Graph, budget: &Budget) -> Result<Output, EvalError> {
        self.evaluate_view(graph.view(), budget)
    }

    /// Evaluates over `view` (the live graph, or a timeline at an instant) within
    /// `budget`.
    pub fn evaluate_view(&self, view: View<'_>, budget: &Budget) -> Result<Output, EvalError> {
        crate::blocking::section("Gremlin evaluation");
        eval::Evaluator::new(view, Meter::new(budget)).run(&self.query.steps, &self.ops)
    }
}

impl fmt::Display for Compiled {
    /// Canonical Gremlin.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.query.fmt(f)
    }
}

impl fmt::Debug for Compiled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Compiled")
            .field(&self.query.to_string())
            .finish()
    }
}

/// Which way a traversal step walks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Walk {
    /// `Out`, `In`, `Both`: to neighbour nodes.
    Nodes { out: bool, inc: bool },
    /// `OutE`, `InE`, `BothE`: to edges.
    Edges { out: bool, inc: bool },
    /// `InV` (parent), `OutV` (child), `BothV`: edge endpoints (Skydive's naming).
    Ends { parent: bool, child: bool },
}

/// A compiled step.
pub(crate) enum Op {
    G,
    /// `V()`, `V(id)`, `V(k, v, ...)`.
    V(Source),
    E(Source),
    /// `Has`, `HasEither`, `HasKey`, `HasNot`.
    Has(Filter),
    Walk(Walk, Filter),
    /// `Dedup(k...)`: no keys = by identity.
    Dedup(Vec<Key>),
    Count,
    /// `Range(a, b)`, `Limit(n)` = `Range(0, n)`.
    Range(usize, usize),
    Sort(SortSpec),
    Values(Key),
    ValueMap(Vec<(String, Key)>),
    Keys,
    Sum(Option<Key>),
    ShortestPathTo {
        target: Filter,
        edges: Filter,
    },
    SubGraph(Filter),
    As(String),
    Select(Vec<String>),
    /// `Context(t[, d])`: chooses the graph before evaluation; a no-op on it.
    Context(TimeContext),
    /// A registered extension step.
    Ext(Arc<dyn StepExtension>),
    /// A step that only an extension value understands (`CaptureNode()` after
    /// `Flows()`), or, when not compiled strictly, an unknown step.
    ValueStep,
}

pub(crate) enum Source {
    Id(crate::Identifier),
    Filter(Filter),
}

/// `Sort([ASC|DESC,] [key])`.
#[derive(Debug, Clone)]
pub struct SortSpec {
    pub desc: bool,
    /// The key as written, if any.
    pub key: Option<String>,
}

impl SortSpec {
    /// `Sort()`'s parameters; the grammar has already checked their shape.
    pub fn of(p: &[Param]) -> Result<SortSpec, EvalError> {
        let (desc, key) = match p {
            [] => (false, None),
            [Param::Str(k)] => (false, Some(k.clone())),
            [Param::Keyword(Keyword::Asc)] => (false, None),
            [Param::Keyword(Keyword::Desc)] => (true, None),
            [Param::Keyword(Keyword::Asc), Param::Str(k)] => (false, Some(k.clone())),
            [Param::Keyword(Keyword::Desc), Param::Str(k)] => (true, Some(k.clone())),
            _ => {
                return Err(err(
                    "Sort takes no parameters, a string key, or ASC|DESC and a string key",
                ))
            }
        };
        Ok(SortSpec { desc, key })
    }

    pub(crate) fn element_key(&self) -> Key {
        // Nodes and edges sort by creation time unless told otherwise (§2.8).
        self.key.as_deref().map_or(
            Key::Special(Special::CreatedAt, "@CreatedAt".into()),
            Key::parse,
        )
    }
}

fn err(message: impl Into<String>) -> EvalError {
    EvalError::new(message)
}

fn filter(p: &[Param], combine: Combine) -> Result<Filter, EvalError> {
    Filter::from_params(p, combine).map_err(err)
}

fn one_string<'p>(p: &'p [Param], step: &str) -> Result<&'p str, EvalError> {
    match p {
        [Param::Str(s)] => Ok(s),
        _ => Err(err(format!("{step} takes exactly one string parameter"))),
    }
}

fn strings(p: &[Param], step: &str) -> Result<Vec<String>, EvalError> {
    p.iter()
        .map(|x| match x {
            Param::Str(s) => Ok(s.clone()),
            other => Err(err(format!(
                "{step} takes string keys, found {}",
                super::filter::describe(other)
            ))),
        })
        .collect()
}

fn index(p: &Param, step: &str) -> Result<usize, EvalError> {
    match p {
        Param::Int(i) if *i >= 0 => Ok(usize::try_from(*i).unwrap_or(usize::MAX)),
        other => Err(err(format!(
            "{step} takes non-negative integers, found {}",
            super::filter::describe(other)
        ))),
    }
}

fn no_params(p: &[Param], step: &str) -> Result<(), EvalError> {
    if p.is_empty() {
        Ok(())
    } else {
        Err(err(format!("{step} takes no parameters")))
    }
}

impl Op {
    fn compile(step: &Step, ext: &Extensions, strict: bool) -> Result<Op, EvalError> {
        use StepKind as K;
        let p = step.params.as_slice();
        let walk = |w: Walk| Ok(Op::Walk(w, filter(p, Combine::All)?));
        let source = || -> Result<Source, EvalError> {
            Ok(match p {
                [Param::Str(id)] => Source::Id(crate::Identifier::from(id.as_str())),
                _ => Source::Filter(filter(p, Combine::All)?),
            })
        };
        Ok(match &step.kind {
            K::G => {
                no_params(p, "G")?;
                Op::G
            }
            K::V => Op::V(source()?),
            K::E => Op::E(source()?),
            K::Has => Op::Has(filter(p, Combine::All)?),
            K::HasEither => Op::Has(filter(p, Combine::Any)?),
            K::HasKey => {
                let key = one_string(p, "HasKey")?;
                Op::Has(filter(&[Param::Str(key.to_owned())], Combine::All)?)
            }
            K::HasNot => Op::Has(Filter::absent(one_string(p, "HasNot")?)),
            K::Out => walk(Walk::Nodes {
                out: true,
                inc: false,
            })?,
            K::In => walk(Walk::Nodes {
                out: false,
                inc: true,
            })?,
            K::Both => walk(Walk::Nodes {
                out: true,
                inc: true,
            })?,
            K::OutE => walk(Walk::Edges {
                out: true,
                inc: false,
            })?,
            K::InE => walk(Walk::Edges {
                out: false,
                inc: true,
            })?,
            K::BothE => walk(Walk::Edges {
                out: true,
                inc: true,
            })?,
            // Skydive's inverted naming (§2.5): InV is the parent, OutV the child.
            K::InV => walk(Walk::Ends {
                parent: true,
                child: false,
            })?,
            K::OutV => walk(Walk::Ends {
                parent: false,
                child: true,
            })?,
            K::BothV => walk(Walk::Ends {
                parent: true,
                child: true,
            })?,
            K::Dedup => Op::Dedup(strings(p, "Dedup")?.iter().map(|k| Key::parse(k)).collect()),
            K::Count => {
                no_params(p, "Count")?;
                Op::Count
            }
            K::Range => match p {
                [a, b] => Op::Range(index(a, "Range")?, index(b, "Range")?),
                _ => return Err(err("Range takes exactly two integer parameters")),
            },
            K::Limit => match p {
                [n] => Op::Range(0, index(n, "Limit")?),
                _ => return Err(err("Limit takes exactly one integer parameter")),
            },
            K::Sort => Op::Sort(SortSpec::of(p)?),
            K::Values => Op::Values(Key::parse(one_string(p, "Values")?)),
            K::ValueMap => {
                let names = strings(p, "ValueMap")?;
                if names.is_empty() {
                    return Err(err("ValueMap takes one or more string keys"));
                }
                Op::ValueMap(
                    names
                        .into_iter()
                        .map(|n| {
                            let k = Key::parse(&n);
                            (n, k)
                        })
                        .collect(),
                )
            }
            K::Keys => {
                no_params(p, "Keys")?;
                Op::Keys
            }
            K::Sum => match p {
                [] => Op::Sum(None),
                [Param::Str(k)] => Op::Sum(Some(Key::parse(k))),
                _ => return Err(err("Sum takes no parameters or one string key")),
            },
            K::ShortestPathTo => match p {
                [Param::Metadata(t)] => Op::ShortestPathTo {
                    target: Filter::from_metadata(t).map_err(err)?,
                    edges: Filter::all(),
                },
                [Param::Metadata(t), Param::Metadata(e)] => Op::ShortestPathTo {
                    target: Filter::from_metadata(t).map_err(err)?,
                    edges: Filter::from_metadata(e).map_err(err)?,
                },
                _ => {
                    return Err(err(
                        "ShortestPathTo takes one or two Metadata(...) parameters",
                    ))
                }
            },
            K::SubGraph => Op::SubGraph(filter(p, Combine::All)?),
            K::As => Op::As(one_string(p, "As")?.to_owned()),
            K::Select => {
                let labels = strings(p, "Select")?;
                if labels.is_empty() {
                    return Err(err("Select takes one or more labels"));
                }
                Op::Select(labels)
            }
            K::Context => Op::Context(TimeContext::of(p)?),
            K::Extension(name) => match ext.get(name) {
                Some(x) => {
                    x.check(step)?;
                    Op::Ext(x.clone())
                }
                None if !strict || ext.is_value_step(name) => Op::ValueStep,
                None => return Err(err(format!("unknown step '{name}'"))),
            },
        })
    }

    /// Whether `Has`-style steps that follow can filter while this step walks.
    pub(crate) fn as_filter(&self) -> Option<&Filter> {
        match self {
            Op::Has(f) => Some(f),
            _ => None,
        }
    }
}
