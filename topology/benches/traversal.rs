//! Gremlin evaluation against the same traversal hand-written on a petgraph
//! `StableDiGraph<Metadata, Metadata>` holding identical data (100k nodes, 200k edges),
//! measured in the same run. Target: evaluation within 1.5x of hand-written.
//!
//! `cargo bench -p topotap-topology --bench traversal -- --warm-up-time 1 --measurement-time 3`

mod common;

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use petgraph::stable_graph::{NodeIndex, StableDiGraph};
use petgraph::Direction;
use regex::Regex;
use serde_json::Value;
use topotap_grammar::ast::Query;
use topotap_topology::gremlin::{evaluate, Extensions, Output};
use topotap_topology::{Graph, Metadata};

const HAS_OUT_REGEX: &str = "G.V().Has('Type','veth').Out().Has('Name', REGEX('eth.*'))";
const THREE_HOPS: &str = "G.V().Has('Type','netns').Out().Out().Out()";

fn topotap_graph() -> Graph {
    let (nodes, edges) = common::elements();
    let mut g = Graph::new();
    for n in nodes {
        g.add_node(n).expect("unique node");
    }
    for e in edges {
        g.add_edge(e).expect("endpoints exist");
    }
    g
}

fn petgraph_graph() -> StableDiGraph<Metadata, Metadata> {
    let mut g = StableDiGraph::default();
    let ix: Vec<NodeIndex> = (0..common::GROUPS * common::PER_GROUP)
        .map(|i| g.add_node(common::node_metadata(i)))
        .collect();
    for (p, c, m) in common::edges() {
        g.add_edge(ix[p], ix[c], m);
    }
    g
}

fn is(m: &Metadata, key: &str, want: &str) -> bool {
    matches!(m.get(key), Some(Value::String(s)) if s == want)
}

/// `V().Has('Type','veth').Out().Has('Name', REGEX('eth.*'))` by hand.
fn hand_has_out_regex(g: &StableDiGraph<Metadata, Metadata>, re: &Regex) -> Vec<NodeIndex> {
    let mut out = Vec::new();
    for n in g.node_indices() {
        if !is(&g[n], "Type", "veth") {
            continue;
        }
        for c in g.neighbors_directed(n, Direction::Outgoing) {
            if matches!(g[c].get("Name"), Some(Value::String(s)) if re.is_match(s)) {
                out.push(c);
            }
        }
    }
    out
}

/// `V().Has('Type','netns').Out().Out().Out()` by hand.
fn hand_three_hops(g: &StableDiGraph<Metadata, Metadata>) -> Vec<NodeIndex> {
    let mut set: Vec<NodeIndex> = g
        .node_indices()
        .filter(|n| is(&g[*n], "Type", "netns"))
        .collect();
    for _ in 0..3 {
        let mut next = Vec::with_capacity(set.len());
        for n in set {
            next.extend(g.neighbors_directed(n, Direction::Outgoing));
        }
        set = next;
    }
    set
}

fn count(out: &Output) -> usize {
    match out {
        Output::Nodes(v) => v.len(),
        other => panic!("expected nodes, got {other:?}"),
    }
}

fn bench(c: &mut Criterion) {
    let graph = topotap_graph();
    let pg = petgraph_graph();
    let ext = Extensions::new();
    let parse = |q: &str| -> Query { topotap_grammar::parse(q).expect("benchmark query parses") };
    let q1 = parse(HAS_OUT_REGEX);
    let q3 = parse(THREE_HOPS);
    let re = Regex::new("^(?:eth.*)$").expect("valid regex");

    // Same answers before timing anything.
    let n1 = count(&evaluate(&q1, &graph, &ext).expect("evaluates"));
    assert_eq!(n1, hand_has_out_regex(&pg, &re).len());
    let n3 = count(&evaluate(&q3, &graph, &ext).expect("evaluates"));
    assert_eq!(n3, hand_three_hops(&pg).len());
    eprintln!("{HAS_OUT_REGEX}: {n1} nodes; {THREE_HOPS}: {n3} nodes");

    let mut g = c.benchmark_group("has_out_regex");
    g.bench_function("gremlin", |b| {
        b.iter(|| evaluate(black_box(&q1), &graph, &ext).map(|o| count(&o)))
    });
    g.bench_function("petgraph_by_hand", |b| {
        b.iter(|| {
            // Compiled per run, as the evaluator compiles once per query.
            let re = Regex::new("^(?:eth.*)$").expect("valid regex");
            hand_has_out_regex(black_box(&pg), &re).len()
        })
    });
    g.bench_function("parse_eval_json", |b| {
        b.iter(|| {
            let q = parse(black_box(HAS_OUT_REGEX));
            let out = evaluate(&q, &graph, &ext).expect("evaluates");
            serde_json::to_vec(&out.json(&graph)).map(|v| v.len())
        })
    });
    g.finish();

    let mut g = c.benchmark_group("three_hops");
    g.bench_function("gremlin", |b| {
        b.iter(|| evaluate(black_box(&q3), &graph, &ext).map(|o| count(&o)))
    });
    g.bench_function("petgraph_by_hand", |b| {
        b.iter(|| hand_three_hops(black_box(&pg)).len())
    });
    g.bench_function("parse_eval", |b| {
        b.iter(|| {
            let q = parse(black_box(THREE_HOPS));
            evaluate(&q, &graph, &ext).map(|o| count(&o))
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
