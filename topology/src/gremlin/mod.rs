//! The Gremlin evaluator: a parsed [`Query`] over a [`Graph`] → an [`Output`] with
//! Skydive's result shapes (skydive-behaviour.md §1.7, §2).
//!
//! Evaluation walks the steps left to right over a *stage* (the graph, a node set, an
//! edge set, paths, values, or an extension value). Contracts:
//!
//! - **Order** is deterministic: graph insertion order, neighbours of a node oldest edge
//!   first, and `Sort` is stable (§2.8). The default `Sort()` key of nodes is
//!   `@CreatedAt` (Skydive reads `CreatedAt` from metadata, which sorts nothing).
//! - **Skydive quirks kept**, because clients rely on them: `InV()` is an edge's
//!   *parent* and `OutV()` its *child*; `Out/In/Both(filter)` filter the neighbour and
//!   do not dedup.
//! - **Deliberate fixes**: `OUTSIDE(a, b)` works (x < a or x > b); `IPV4RANGE` tests CIDR
//!   containment of the address part of `a.b.c.d[/n]` strings.
//! - **Decisions where Skydive is vague**: `Dedup(k...)` compares the values of all keys
//!   positionally (absent = null); `Select` returns the union of labelled sets without
//!   duplicates; `Keys()` also lists dotted sub-keys of nested maps and of maps in lists;
//!   `Sum` adds integers exactly and switches to floats if any term is one; `.G` after a
//!   `SubGraph()` returns to that subgraph; `Count`, `Dedup`, `Range`/`Limit`, `Sort`,
//!   `Has` and `Sum` also apply to value lists, nothing applies to `Count`/`Sum` results.
//! - `Has`-style steps right after `V`, `E`, `Out`, ... filter during that step (Skydive's
//!   reduce), with identical results.
//! - **Bounded**: node/edge/path sets larger than [`MAX_ELEMENTS`] and
//!   `ShortestPathTo` searches visiting more than [`MAX_PATH_VISITS`] nodes fail with an
//!   [`EvalError`]; nothing recurses on user-controlled depth.
//! - Extension steps (`Flows()`, ...) come from an [`Extensions`] registry; core steps
//!   applied to an extension value are delegated to it ([`ExtOutput::apply_step`]).
//!
//! - **Compiled once**: [`compile`] checks everything that does not depend on the graph
//!   (unknown steps and predicates, arity, types, regexes, extension parameters) and
//!   gives a [`Compiled`] query; evaluation only checks what does (which step may
//!   follow which).
//! - **Budgeted**: [`Compiled::evaluate`] runs within a [`Budget`] of elements, answer
//!   bytes and time.
//!
//! The [`Output`] holds graph handles: serialise it under the same read lock it was
//! evaluated under, or turn it into an [`Answer`] (owned, sized) under the lock and
//! write that after releasing it.

mod answer;
mod budget;
mod compile;
mod eval;
mod filter;
mod output;

use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use topotap_grammar::ast::{Query, Step};

use crate::{EdgeIx, Graph, NodeIx, View};

pub use answer::{
    answer, edge_size_lower_bound, node_size_lower_bound, whole_graph, Answer, Snapshot,
};
pub use budget::{too_many_bytes, Budget};
pub use compile::{compile, CompileError, Compiled, SortSpec, TimeContext, TimeRange};
pub use eval::pick;
pub use filter::ValueFilter;
pub use output::OutputJson;
pub use topotap_grammar::time::{TimePoint, Window};

/// Largest node, edge or path set (paths count their nodes) a step may produce by
/// default ([`Budget::max_elements`]).
pub const MAX_ELEMENTS: usize = Budget::DEFAULT_MAX_ELEMENTS;
/// Most nodes all `ShortestPathTo` searches of one query may visit together.
pub const MAX_PATH_VISITS: usize = 10_000_000;

/// Evaluates a parsed query over `graph` with no budget but [`MAX_ELEMENTS`]; extension
/// steps are looked up in `ext`, and an unknown step fails only if evaluation reaches
/// it. Prefer [`compile`] and [`Compiled::evaluate`].
pub fn evaluate(query: &Query, graph: &Graph, ext: &Extensions) -> Result<Output, EvalError> {
    compile::Compiled::new(query.clone(), ext, false)?.evaluate(graph, &Budget::unlimited())
}

/// The result of a query. `Send`, so it can be serialised on another task (under the
/// same read lock).
pub enum Output {
    /// Bare `G` or `...SubGraph()`: nodes and the edges among them.
    Graph {
        nodes: Vec<NodeIx>,
        edges: Vec<EdgeIx>,
    },
    Nodes(Vec<NodeIx>),
    Edges(Vec<EdgeIx>),
    /// `ShortestPathTo(...)`: one path (source first) per source that reaches a target.
    Paths(Vec<Vec<NodeIx>>),
    /// `Count`, `Values`, `ValueMap`, `Keys`, `Sum`: the JSON result itself.
    Value(serde_json::Value),
    /// A value produced by an extension step.
    Ext(Box<dyn ExtOutput>),
}

impl Output {
    /// Skydive's JSON for this result (§1.7).
    pub fn to_json(&self, graph: &Graph) -> serde_json::Value {
        self.to_json_view(graph.view())
    }

    /// [`Output::to_json`] of a result evaluated over `view`.
    pub fn to_json_view(&self, view: View<'_>) -> serde_json::Value {
        serde_json::to_value(self.json_view(view)).unwrap_or(serde_json::Value::Null)
    }

    /// A `Serialize` view writing the same JSON as [`Output::to_json`] without building a
    /// `Value` tree (`serde_json::to_writer(w, &output.json(&graph))`).
    pub fn json<'a>(&'a self, graph: &'a Graph) -> OutputJson<'a> {
        OutputJson::new(self, graph.view())
    }

    /// [`Output::json`] of a result evaluated over `view`.
    pub fn json_view<'a>(&'a self, view: View<'a>) -> OutputJson<'a> {
        OutputJson::new(self, view)
    }

    /// The nodes and edges of a graph result (`G`, `...SubGraph()`); `None` otherwise.
    pub fn into_subgraph(self) -> Option<(Vec<NodeIx>, Vec<EdgeIx>)> {
        match self {
            Output::Graph { nodes, edges } => Some((nodes, edges)),
            _ => None,
        }
    }

    /// What produced this kind of result, for messages (`G`, `V`, `E`, `ShortestPathTo`,
    /// `Value`, or the extension's name).
    pub fn kind(&self) -> &str {
        match self {
            Output::Graph { .. } => "G",
            Output::Nodes(_) => "V",
            Output::Edges(_) => "E",
            Output::Paths(_) => "ShortestPathTo",
            Output::Value(_) => "Value",
            Output::Ext(e) => e.name(),
        }
    }
}

impl fmt::Debug for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Output::Graph { nodes, edges } => f
                .debug_struct("Graph")
                .field("nodes", nodes)
                .field("edges", edges)
                .finish(),
            Output::Nodes(n) => f.debug_tuple("Nodes").field(n).finish(),
            Output::Edges(e) => f.debug_tuple("Edges").field(e).finish(),
            Output::Paths(p) => f.debug_tuple("Paths").field(p).finish(),
            Output::Value(v) => f.debug_tuple("Value").field(v).finish(),
            Output::Ext(e) => f.debug_tuple("Ext").field(&e.name()).finish(),
        }
    }
}

/// A step implemented outside this crate (`Flows()`, `Metrics()`, ...).
pub trait StepExtension: Send + Sync {
    /// The step name as registered (matched case-insensitively).
    fn name(&self) -> &str;

    /// Checks the step's parameters when the query is compiled; return
    /// [`EvalError::new`] (the compiler locates it at the step).
    fn check(&self, step: &Step) -> Result<(), EvalError> {
        let _ = step;
        Ok(())
    }

    /// Steps that only this extension's values understand (`CaptureNode` after
    /// `Flows`), so that queries using them compile.
    fn value_steps(&self) -> &[&str] {
        &[]
    }

    /// Applies the step to the previous stage's result. Parameters were checked by
    /// [`StepExtension::check`]; return [`EvalError::new`] (the evaluator adds the step's
    /// position) or [`EvalError::cannot_follow`] for an input the step does not take.
    fn apply(&self, input: Output, step: &Step, graph: View<'_>) -> Result<Output, EvalError>;
}

/// The records of an extension value (flows, ...), so that the core `Dedup`, `Sort`,
/// `Range`/`Limit` and `Count` apply to them with the same semantics as on nodes.
pub trait Records {
    fn len(&self) -> usize;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The value of `key` (as written, without a `Metadata.` prefix) on record `i`.
    fn field(&self, i: usize, key: &str) -> Option<serde_json::Value>;

    /// Keeps the records at `order` (indices into the current records, each at most
    /// once), in that order. [`pick`] does this for a `Vec`.
    fn keep(&mut self, order: &[usize]);

    /// The key of `Sort()` without one.
    fn default_sort_key(&self) -> &str;

    /// The keys of `Dedup()` without any.
    fn default_dedup_keys(&self) -> &[&str];
}

/// A value produced by an extension step. Core steps that follow it (other than `.G`
/// and registered extension steps) are delegated to [`ExtOutput::apply_step`].
pub trait ExtOutput: Send {
    /// Names the value in messages (`step Values cannot follow Flows`).
    fn name(&self) -> &str;

    /// The JSON result.
    fn to_json(&self, graph: View<'_>) -> serde_json::Value;

    /// Applies a following step: the extension decides which core steps (`Has`,
    /// `Count`, `Dedup`, `Sort`, `Limit`, `Values`, ...) it supports; others should
    /// return [`EvalError::cannot_follow`].
    fn apply_step(self: Box<Self>, step: &Step, graph: View<'_>) -> Result<Output, EvalError>;

    /// The records, if the value is a list of them: then `Dedup`, `Sort`,
    /// `Range`/`Limit` and `Count` are the core steps and never reach
    /// [`ExtOutput::apply_step`].
    fn records(&mut self) -> Option<&mut dyn Records> {
        None
    }

    /// For callers that need the concrete type (e.g. a pcap writer for raw packets).
    fn as_any(&self) -> &dyn Any;
}

/// Registered extension steps, looked up case-insensitively.
#[derive(Clone, Default)]
pub struct Extensions {
    steps: HashMap<String, Arc<dyn StepExtension>>,
}

impl Extensions {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `step` under its [`StepExtension::name`], replacing any step of the same
    /// name.
    pub fn register(&mut self, step: Arc<dyn StepExtension>) -> &mut Self {
        let name = step.name().to_ascii_lowercase();
        self.steps.insert(name, step);
        self
    }

    /// Registers `step` under another name too (`Node` for `CaptureNode`).
    pub fn register_alias(&mut self, alias: &str, step: Arc<dyn StepExtension>) -> &mut Self {
        self.steps.insert(alias.to_ascii_lowercase(), step);
        self
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn StepExtension>> {
        self.steps.get(&name.to_ascii_lowercase())
    }

    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Whether a registered extension's values understand step `name`.
    pub fn is_value_step(&self, name: &str) -> bool {
        self.steps
            .values()
            .any(|s| s.value_steps().iter().any(|v| v.eq_ignore_ascii_case(name)))
    }
}

impl fmt::Debug for Extensions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&String> = self.steps.keys().collect();
        names.sort();
        f.debug_struct("Extensions").field("steps", &names).finish()
    }
}

/// Where an evaluation error happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepLocation {
    /// 1-based index of the step after `G`.
    pub index: usize,
    /// The step name as written (canonical for core steps).
    pub name: String,
    /// Byte offset of the step name in the query (`Step.span.start`).
    pub position: usize,
}

/// What kind of failure an [`EvalError`] is, for callers that map it to a status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ErrorKind {
    /// The query does not apply to this graph (a step that cannot follow another, a
    /// node that does not exist...): HTTP 400.
    #[default]
    Invalid,
    /// An element or byte budget ran out: HTTP 413.
    TooLarge,
    /// The time budget ran out: HTTP 503.
    Timeout,
}

/// Why a query could not be evaluated. `Display` is one line:
/// `step 3 (Count) at column 21: step Count cannot follow Values`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct EvalError {
    /// What kind of failure this is.
    pub kind: ErrorKind,
    /// The step the error is about, when there is one.
    pub location: Option<StepLocation>,
    /// The message without the location (Skydive's text where there is one, e.g.
    /// `Node 'abc' does not exist`).
    pub message: String,
}

impl fmt::Display for EvalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            Some(l) => write!(
                f,
                "step {} ({}) at column {}: {}",
                l.index,
                l.name,
                l.position + 1,
                self.message
            ),
            None => f.write_str(&self.message),
        }
    }
}

impl EvalError {
    /// An error; the evaluator locates it at the step being applied.
    pub fn new(message: impl Into<String>) -> Self {
        Self::with_kind(ErrorKind::Invalid, message)
    }

    /// An error of a given kind (budgets use [`ErrorKind::TooLarge`] and
    /// [`ErrorKind::Timeout`]).
    pub fn with_kind(kind: ErrorKind, message: impl Into<String>) -> Self {
        let message: String = message.into();
        EvalError {
            kind,
            location: None,
            // Keep the one-line contract whatever the source.
            message: message.replace(['\n', '\r'], " "),
        }
    }

    /// `step <step> cannot follow <input>`.
    pub fn cannot_follow(step: &Step, input: &str) -> Self {
        EvalError::new(format!("step {} cannot follow {input}", step.kind.name()))
    }

    /// Byte offset of the step in the query, if the error is about a step.
    pub fn position(&self) -> Option<usize> {
        self.location.as_ref().map(|l| l.position)
    }

    /// Where the step was, for [`CompileError`]s.
    pub(crate) fn located(mut self, index: usize, step: &Step) -> Self {
        if self.location.is_none() {
            self.location = Some(StepLocation {
                index,
                name: step.kind.name().to_owned(),
                position: step.span.start,
            });
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_and_registries_cross_threads() {
        fn send<T: Send>() {}
        fn send_sync<T: Send + Sync>() {}
        send::<Output>();
        send_sync::<Extensions>();
    }

    #[test]
    fn errors_are_one_line() {
        let e = EvalError::new("a\nb");
        assert_eq!(e.to_string(), "a b");
        assert_eq!(e.position(), None);
    }
}
