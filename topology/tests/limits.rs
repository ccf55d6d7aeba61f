//! Evaluation never panics and never blows up: result-size caps, a bounded
//! `ShortestPathTo`, and arbitrary step sequences over a small graph.

use proptest::prelude::*;
use serde_json::json;
use topotap_topology::gremlin::{evaluate, Extensions, MAX_ELEMENTS};
use topotap_topology::{Edge, Graph, Metadata, Node};

fn md(name: &str) -> Metadata {
    json!({"Name": name, "Type": "device", "MTU": 1500})
        .as_object()
        .cloned()
        .unwrap_or_default()
}

fn rel() -> Metadata {
    json!({"RelationType": "layer2"})
        .as_object()
        .cloned()
        .unwrap_or_default()
}

/// Every node linked to every other one (both directions).
fn clique(n: usize) -> Graph {
    let mut g = Graph::new();
    for i in 0..n {
        g.add_node(Node::new(
            format!("n{i}").into(),
            md(&format!("n{i}")),
            "h",
            "o",
        ))
        .unwrap();
    }
    for i in 0..n {
        for j in 0..n {
            if i != j {
                let e = Edge::new(
                    format!("n{i}").into(),
                    format!("n{j}").into(),
                    rel(),
                    "h",
                    "o",
                );
                g.add_edge(e).unwrap();
            }
        }
    }
    g
}

/// A path n0 - n1 - ... - n(len-1).
fn chain(len: usize) -> Graph {
    let mut g = Graph::new();
    for i in 0..len {
        g.add_node(Node::new(
            format!("n{i}").into(),
            md(&format!("n{i}")),
            "h",
            "o",
        ))
        .unwrap();
        if i > 0 {
            let e = Edge::new(
                format!("n{}", i - 1).into(),
                format!("n{i}").into(),
                rel(),
                "h",
                "o",
            );
            g.add_edge(e).unwrap();
        }
    }
    g
}

fn eval(g: &Graph, q: &str) -> Result<serde_json::Value, String> {
    let query = topotap_grammar::parse(q).map_err(|e| e.to_string())?;
    evaluate(&query, g, &Extensions::new())
        .map(|o| o.to_json(g))
        .map_err(|e| e.to_string())
}

#[test]
fn exploding_traversals_are_capped() {
    let g = clique(60);
    // 60 * 118^3 ≈ 98M elements without the cap.
    let e = eval(&g, "G.V().Both().Both().Both().Count()").unwrap_err();
    assert!(
        e.contains(&format!("result exceeds {MAX_ELEMENTS} elements")),
        "{e}"
    );
    assert!(e.starts_with("step 4 (Both)"), "{e}");
    // Dedup keeps it small.
    assert_eq!(
        eval(
            &g,
            "G.V().Both().Dedup().Both().Dedup().Both().Dedup().Count()"
        ),
        Ok(json!(60))
    );
}

#[test]
fn shortest_path_search_is_bounded() {
    let g = chain(5_000);
    // Each of the 5000 searches would visit the whole chain: 25M visits.
    let e = eval(&g, "G.V().ShortestPathTo(Metadata('Name', 'nope'))").unwrap_err();
    assert!(e.contains("ShortestPathTo visited more than"), "{e}");
    // One long search is fine.
    let p = eval(&g, "G.V('n0').ShortestPathTo(Metadata('Name', 'n4999'))").unwrap();
    assert_eq!(p[0].as_array().map(Vec::len), Some(5_000));
}

/// Metadata as deep as serde_json parses (128 levels) is walked iteratively.
#[test]
fn deep_metadata_keys_and_lookups() {
    let mut g = Graph::new();
    let mut v = json!(1);
    for _ in 0..120 {
        v = json!({ "k": v });
    }
    let mut m = Metadata::new();
    m.insert("Deep".into(), v);
    g.add_node(Node::new("deep".into(), m, "h", "o")).unwrap();
    let keys = eval(&g, "G.V().Keys()").unwrap();
    assert_eq!(keys.as_array().map(Vec::len), Some(7 + 121));
    let dotted = format!("Deep{}", ".k".repeat(120));
    assert_eq!(
        eval(&g, &format!("G.V().Has('{dotted}', 1).Count()")),
        Ok(json!(1))
    );
}

const FRAGMENTS: &[&str] = &[
    ".V()",
    ".V('n1')",
    ".E()",
    ".Has('Name', 'n1')",
    ".Has('MTU', GT(10))",
    ".HasKey('Name')",
    ".HasNot('X')",
    ".HasEither('Name', 'n0', 'Name', 'n2')",
    ".Out()",
    ".In()",
    ".Both()",
    ".OutE()",
    ".InE()",
    ".BothE()",
    ".OutV()",
    ".InV()",
    ".BothV()",
    ".Dedup()",
    ".Dedup('Name')",
    ".Count()",
    ".Range(1, 3)",
    ".Limit(2)",
    ".Sort()",
    ".Sort(DESC, 'Name')",
    ".Values('Name')",
    ".ValueMap('Name', 'MTU')",
    ".Keys()",
    ".Sum('MTU')",
    ".Sum()",
    ".ShortestPathTo(Metadata('Name', 'n3'))",
    ".SubGraph()",
    ".As('x')",
    ".Select('x')",
    ".G",
    ".Has('Name', REGEX('n.*'))",
    ".Has('IP', IPV4RANGE('10.0.0.0/8'))",
    ".Foo()",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_step_sequence_evaluates_or_errors(steps in prop::collection::vec(0..FRAGMENTS.len(), 0..8)) {
        let g = chain(6);
        let q: String = std::iter::once("G").chain(steps.iter().map(|i| FRAGMENTS[*i])).collect();
        let query = topotap_grammar::parse(&q).expect("fragments parse");
        match evaluate(&query, &g, &Extensions::new()) {
            Ok(out) => {
                let streamed = serde_json::to_value(out.json(&g)).unwrap();
                prop_assert_eq!(streamed, out.to_json(&g));
            }
            Err(e) => {
                let s = e.to_string();
                prop_assert!(!s.contains('\n'));
                prop_assert!(e.position().is_some(), "{}", s);
            }
        }
    }
}
