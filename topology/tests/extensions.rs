//! The extension mechanism: registration (case-insensitive), parameter validation with
//! located errors, consuming core results, and delegation of following core steps to
//! extension values.

use std::any::Any;
use std::sync::Arc;

use serde_json::{json, Value};
use topotap_grammar::ast::{Param, Step, StepKind};
use topotap_topology::gremlin::{
    evaluate, EvalError, ExtOutput, Extensions, Output, StepExtension,
};
use topotap_topology::{Edge, Graph, Identifier, Metadata, Node, NodeIx, View};

/// `Numbers(i...)`: a value set that is not made of graph elements (like flows).
struct NumbersStep;

#[derive(Debug)]
struct Numbers(Vec<i64>);

impl StepExtension for NumbersStep {
    fn name(&self) -> &str {
        "Numbers"
    }

    fn apply(&self, input: Output, step: &Step, _: View<'_>) -> Result<Output, EvalError> {
        if !matches!(input, Output::Graph { .. }) {
            return Err(EvalError::cannot_follow(step, input.kind()));
        }
        let numbers = step
            .params
            .iter()
            .map(|p| match p {
                Param::Int(i) => Ok(*i),
                _ => Err(EvalError::new("Numbers takes integers")),
            })
            .collect::<Result<_, _>>()?;
        Ok(Output::Ext(Box::new(Numbers(numbers))))
    }
}

impl ExtOutput for Numbers {
    fn name(&self) -> &str {
        "Numbers"
    }

    fn to_json(&self, _: View<'_>) -> Value {
        json!(self.0)
    }

    fn apply_step(self: Box<Self>, step: &Step, _: View<'_>) -> Result<Output, EvalError> {
        let mut v = self.0;
        match &step.kind {
            StepKind::Count => Ok(Output::Value(json!(v.len()))),
            StepKind::Sum => Ok(Output::Value(json!(v.iter().sum::<i64>()))),
            StepKind::Dedup => {
                let mut seen = std::collections::HashSet::new();
                v.retain(|x| seen.insert(*x));
                Ok(Output::Ext(Box::new(Numbers(v))))
            }
            StepKind::Sort => {
                v.sort_unstable();
                Ok(Output::Ext(Box::new(Numbers(v))))
            }
            StepKind::Limit => match step.params.as_slice() {
                [Param::Int(n)] => {
                    v.truncate(usize::try_from(*n).unwrap_or(0));
                    Ok(Output::Ext(Box::new(Numbers(v))))
                }
                _ => Err(EvalError::new("Limit takes one integer")),
            },
            // A step only this value understands, not registered globally.
            StepKind::Extension(name) if name.eq_ignore_ascii_case("Double") => Ok(Output::Ext(
                Box::new(Numbers(v.iter().map(|x| x * 2).collect())),
            )),
            _ => Err(EvalError::cannot_follow(step, "Numbers")),
        }
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// `Degree()`: consumes a node set, yields (node, degree) pairs; `Values('Degree')` and
/// `Has('Degree', n)` are delegated to it.
struct DegreeStep;

struct Degrees(Vec<(NodeIx, usize)>);

impl StepExtension for DegreeStep {
    fn name(&self) -> &str {
        "Degree"
    }

    fn apply(&self, input: Output, step: &Step, graph: View<'_>) -> Result<Output, EvalError> {
        if !step.params.is_empty() {
            return Err(EvalError::new("Degree takes no parameters"));
        }
        let Output::Nodes(nodes) = input else {
            return Err(EvalError::cannot_follow(step, input.kind()));
        };
        let degrees = nodes
            .into_iter()
            .map(|n| (n, graph.out_edges(n).count() + graph.in_edges(n).count()))
            .collect();
        Ok(Output::Ext(Box::new(Degrees(degrees))))
    }
}

impl ExtOutput for Degrees {
    fn name(&self) -> &str {
        "Degree"
    }

    fn to_json(&self, graph: View<'_>) -> Value {
        self.0
            .iter()
            .map(|(n, d)| json!({"ID": graph.node(*n).id().to_string(), "Degree": d}))
            .collect()
    }

    fn apply_step(self: Box<Self>, step: &Step, _: View<'_>) -> Result<Output, EvalError> {
        match (&step.kind, step.params.as_slice()) {
            (StepKind::Values, [Param::Str(k)]) if k == "Degree" => Ok(Output::Value(
                self.0.iter().map(|(_, d)| json!(d)).collect(),
            )),
            (StepKind::Has, [Param::Str(k), Param::Int(want)]) if k == "Degree" => {
                let kept = self
                    .0
                    .into_iter()
                    .filter(|(_, d)| *d as i64 == *want)
                    .map(|(n, _)| n)
                    .collect();
                Ok(Output::Nodes(kept))
            }
            _ => Err(EvalError::cannot_follow(step, "Degree")),
        }
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// `Only('id')`: returns a one-node graph, which later steps must walk as the scope.
struct OnlyStep;

impl StepExtension for OnlyStep {
    fn name(&self) -> &str {
        "Only"
    }

    fn apply(&self, _: Output, step: &Step, graph: View<'_>) -> Result<Output, EvalError> {
        let [Param::Str(id)] = step.params.as_slice() else {
            return Err(EvalError::new("Only takes one node ID"));
        };
        let n = graph
            .find_node(&Identifier::from(id.as_str()))
            .ok_or_else(|| EvalError::new(format!("Node '{id}' does not exist")))?;
        Ok(Output::Graph {
            nodes: vec![n],
            edges: vec![],
        })
    }
}

fn graph() -> Graph {
    let mut g = Graph::new();
    let md = |v: Value| -> Metadata { v.as_object().cloned().unwrap_or_default() };
    for (id, name) in [("a", "a"), ("b", "b"), ("c", "c")] {
        g.add_node(Node::new(id.into(), md(json!({"Name": name})), "h", "o"))
            .unwrap();
    }
    for (p, c) in [("a", "b"), ("a", "c"), ("b", "c")] {
        g.add_edge(Edge::new(
            p.into(),
            c.into(),
            md(json!({"RelationType": "ownership"})),
            "h",
            "o",
        ))
        .unwrap();
    }
    g
}

fn registry() -> Extensions {
    let mut ext = Extensions::new();
    ext.register(Arc::new(NumbersStep))
        .register(Arc::new(DegreeStep))
        .register(Arc::new(OnlyStep));
    ext
}

fn run(q: &str) -> Result<Value, String> {
    let g = graph();
    let query = topotap_grammar::parse(q).map_err(|e| e.to_string())?;
    evaluate(&query, &g, &registry())
        .map(|o| o.to_json(&g))
        .map_err(|e| e.to_string())
}

#[test]
fn extension_steps_are_found_case_insensitively() {
    assert_eq!(run("G.Numbers(3, 1, 2)"), Ok(json!([3, 1, 2])));
    assert_eq!(run("G.NUMBERS(3)"), Ok(json!([3])));
    assert_eq!(run("G.numbers()"), Ok(json!([])));
    assert!(registry().get("dEgReE").is_some());
}

#[test]
fn core_steps_on_extension_values_are_delegated() {
    assert_eq!(run("G.Numbers(3, 1, 2, 3).Count()"), Ok(json!(4)));
    assert_eq!(run("G.Numbers(3, 1, 2, 3).Sum()"), Ok(json!(9)));
    assert_eq!(
        run("G.Numbers(3, 1, 2, 3).Dedup().Sort()"),
        Ok(json!([1, 2, 3]))
    );
    assert_eq!(
        run("G.Numbers(3, 1, 2, 3).Sort().Limit(2)"),
        Ok(json!([1, 1 + 1]))
    );
    // Not registered, but the value understands it.
    assert_eq!(run("G.Numbers(1, 2).Double()"), Ok(json!([2, 4])));
    // `.G` leaves the extension value.
    assert_eq!(run("G.Numbers(1).G.V().Count()"), Ok(json!(3)));
}

#[test]
fn extension_consumes_node_sets_and_returns_core_results() {
    assert_eq!(
        run("G.V().Degree()"),
        Ok(json!([{"ID": "a", "Degree": 2}, {"ID": "b", "Degree": 2}, {"ID": "c", "Degree": 2}]))
    );
    assert_eq!(
        run("G.V().Has('Name', 'a').Degree().Values('Degree')"),
        Ok(json!([2]))
    );
    // Back to a node set: core steps apply again.
    assert_eq!(
        run("G.V().Degree().Has('Degree', 2).Out().Count()"),
        Ok(json!(3))
    );
}

#[test]
fn extension_graph_results_become_the_scope() {
    assert_eq!(run("G.Only('b').V().Count()"), Ok(json!(1)));
    assert_eq!(run("G.Only('b').V().Out().Count()"), Ok(json!(0)));
    let g = graph();
    let q = topotap_grammar::parse("G.Only('b')").unwrap();
    let (nodes, edges) = evaluate(&q, &g, &registry())
        .unwrap()
        .into_subgraph()
        .unwrap();
    assert_eq!((nodes.len(), edges.len()), (1, 0));
}

#[test]
fn extension_errors_are_located_at_their_step() {
    assert_eq!(
        run("G.V().Numbers(1)"),
        Err("step 2 (Numbers) at column 7: step Numbers cannot follow V".into())
    );
    assert_eq!(
        run("G.Numbers('x')"),
        Err("step 1 (Numbers) at column 3: Numbers takes integers".into())
    );
    assert_eq!(
        run("G.V().Degree(1)"),
        Err("step 2 (Degree) at column 7: Degree takes no parameters".into())
    );
    assert_eq!(
        run("G.Numbers(1).Out()"),
        Err("step 2 (Out) at column 14: step Out cannot follow Numbers".into())
    );
    assert_eq!(
        run("G.Numbers(1).Degree()"),
        Err("step 2 (Degree) at column 14: step Degree cannot follow Numbers".into())
    );
    assert_eq!(
        run("G.V().Bar()"),
        Err("step 2 (Bar) at column 7: unknown step 'Bar'".into())
    );
    let err = {
        let g = graph();
        let q = topotap_grammar::parse("G.V().Bar()").unwrap();
        evaluate(&q, &g, &registry()).unwrap_err()
    };
    assert_eq!(err.position(), Some(6));
    assert_eq!(err.message, "unknown step 'Bar'");
}

#[test]
fn extension_values_can_be_downcast_and_serialised() {
    let g = graph();
    let q = topotap_grammar::parse("G.Numbers(7)").unwrap();
    let out = evaluate(&q, &g, &registry()).unwrap();
    let Output::Ext(e) = &out else {
        panic!("expected an extension value, got {out:?}")
    };
    assert_eq!(
        e.as_any().downcast_ref::<Numbers>().map(|n| n.0.clone()),
        Some(vec![7])
    );
    assert_eq!(serde_json::to_string(&out.json(&g)).unwrap(), "[7]");
    assert!(out.into_subgraph().is_none());
}

#[test]
fn without_registry_extension_steps_are_unknown() {
    let g = graph();
    let q = topotap_grammar::parse("G.Numbers(1)").unwrap();
    let e = evaluate(&q, &g, &Extensions::new()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "step 1 (Numbers) at column 3: unknown step 'Numbers'"
    );
}
