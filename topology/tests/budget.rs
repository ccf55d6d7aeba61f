//! Compiling queries (errors located by line and column) and evaluating them within a
//! budget of elements, answer bytes and time.

use std::time::{Duration, Instant};

use serde_json::json;
use topotap_topology::gremlin::{
    answer, compile, whole_graph, Budget, ErrorKind, Extensions, Snapshot,
};
use topotap_topology::{Edge, Graph, Metadata, Node, SharedGraph};

fn md(v: serde_json::Value) -> Metadata {
    v.as_object().cloned().unwrap_or_default()
}

/// A star: `hub` linked to `leaves` nodes, the first leaf carrying a `big`-byte value.
fn star(leaves: usize, big: usize) -> Graph {
    let mut g = Graph::new();
    g.add_node(Node::new(
        "hub".into(),
        md(json!({"Name": "hub", "Type": "bridge"})),
        "h",
        "o",
    ))
    .unwrap();
    for i in 0..leaves {
        let mut m = md(json!({"Name": format!("leaf{i}"), "Type": "veth", "MTU": 1500 + i}));
        if i == 0 {
            m.insert("Blob".into(), json!("x".repeat(big)));
        }
        g.add_node(Node::new(format!("leaf{i}").into(), m, "h", "o"))
            .unwrap();
        g.add_edge(Edge::new(
            "hub".into(),
            format!("leaf{i}").into(),
            md(json!({"RelationType": "ownership"})),
            "h",
            "o",
        ))
        .unwrap();
    }
    g
}

fn ext() -> Extensions {
    Extensions::new()
}

#[test]
fn unknown_steps_and_predicates_are_refused_with_their_position() {
    let e = compile("G.V().Nope()", &ext()).unwrap_err();
    assert_eq!(e.to_string(), "line 1, column 7: unknown step 'Nope'");
    let e = compile("G.V()\n  .Has('Name', 'a')\n  .Bogus()", &ext()).unwrap_err();
    assert_eq!((e.line, e.column), (3, 4), "{e}");
    let e = compile("G.V().Has('Name', NOPE('a'))", &ext()).unwrap_err();
    assert!(e.to_string().starts_with("line 1, column 19:"), "{e}");
    let e = compile("G.V().Has('Name', REGEX('eth('))", &ext()).unwrap_err();
    assert!(
        e.to_string().starts_with("line 1, column 7: invalid regex"),
        "{e}"
    );
    let e = compile("G.V().Range(1)", &ext()).unwrap_err();
    assert!(
        e.to_string().contains("Range takes exactly two integer"),
        "{e}"
    );
}

#[test]
fn compiled_queries_give_the_same_answers_as_before() {
    let g = star(10, 10);
    for q in [
        "G",
        "G.V()",
        "G.E()",
        "G.V().Has('Type', 'veth').Sort(DESC, 'MTU').Limit(3)",
        "G.V('hub').Out().Values('MTU')",
        "G.V().Dedup('Type')",
        "G.V('leaf1').ShortestPathTo(Metadata('Name', 'leaf2'))",
        "G.V('hub').Out().SubGraph()",
        "G.V().Keys()",
        "G.V().Count()",
        "G.V().ValueMap('Name', 'MTU')",
    ] {
        let compiled = compile(q, &ext()).unwrap();
        let out = compiled.evaluate(&g, &Budget::default()).unwrap();
        let want = serde_json::to_vec(&out.json(&g)).unwrap();
        // The lock-free answer path writes the same bytes.
        let snap = Snapshot::take(out, &g, &Budget::default()).unwrap();
        let got = snap.encode(&Budget::default()).unwrap();
        assert_eq!(got.len(), want.len(), "{q}");
        assert_eq!(
            String::from_utf8(got.to_vec()).unwrap(),
            String::from_utf8(want).unwrap(),
            "{q}"
        );
    }
}

/// The reproducer of a 1.13 GB answer: eight `Both()` over a star with a 1 MB node.
#[test]
fn an_exploding_answer_is_refused_before_it_is_built() {
    let shared = SharedGraph::new(star(10, 1 << 20), "h");
    let q = compile(
        "G.V().Both().Both().Both().Both().Both().Both().Both().Both()",
        &ext(),
    )
    .unwrap();
    let start = Instant::now();
    let e = answer(&shared, &q, &Budget::default())
        .err()
        .expect("too large");
    assert_eq!(e.kind, ErrorKind::TooLarge);
    assert!(
        e.to_string().contains("answer exceeds 67108864 bytes"),
        "{e}"
    );
    assert!(start.elapsed() < Duration::from_secs(5));
    // The same query with Dedup is small and fits.
    let q = compile(
        "G.V().Both().Both().Dedup().Has('Type', 'veth').Count()",
        &ext(),
    )
    .unwrap();
    let a = answer(&shared, &q, &Budget::default()).unwrap();
    assert_eq!(a.to_vec(), b"10");
}

/// `GET /api/topology`: the whole graph, as `serde_json` writes it, within the byte
/// budget; a graph over it is refused before it is copied.
#[test]
fn the_whole_graph_is_written_within_the_byte_budget() {
    let g = star(10, 1000);
    let expected = {
        let (nodes, edges) = g.snapshot();
        serde_json::to_vec(&json!({"Nodes": nodes, "Edges": edges})).unwrap()
    };
    let shared = SharedGraph::new(g, "h");
    let a = whole_graph(&shared, &Budget::default()).unwrap();
    assert_eq!(a.len(), expected.len());
    let got: serde_json::Value = serde_json::from_slice(&a.to_vec()).unwrap();
    let want: serde_json::Value = serde_json::from_slice(&expected).unwrap();
    assert_eq!(got, want);

    let small = Budget {
        max_bytes: 2000,
        ..Budget::default()
    };
    let e = whole_graph(&shared, &small).err().expect("too large");
    assert_eq!(e.kind, ErrorKind::TooLarge);
    assert!(e.to_string().contains("answer exceeds 2000 bytes"), "{e}");
    // Exactly its size fits.
    let exact = Budget {
        max_bytes: expected.len(),
        ..Budget::default()
    };
    assert_eq!(whole_graph(&shared, &exact).unwrap().len(), expected.len());

    let empty = SharedGraph::new(Graph::new(), "h");
    let a = whole_graph(&empty, &Budget::default()).unwrap();
    assert_eq!(a.to_vec(), br#"{"Nodes":[],"Edges":[]}"#);
}

#[test]
fn intermediate_sets_are_bounded_by_the_element_budget() {
    let g = star(10, 0);
    let budget = Budget {
        max_elements: 1000,
        ..Budget::default()
    };
    // The final count is small, but the traversal before it is not.
    let q = compile(
        "G.V().Both().Both().Both().Both().Both().Both().Count()",
        &ext(),
    )
    .unwrap();
    let e = q.evaluate(&g, &budget).unwrap_err();
    assert_eq!(e.kind, ErrorKind::TooLarge);
    assert!(
        e.to_string().contains("result exceeds 1000 elements"),
        "{e}"
    );
    assert!(q.evaluate(&g, &Budget::default()).is_ok());
}

#[test]
fn value_lists_count_against_the_byte_budget_while_built() {
    let g = star(10, 1 << 16);
    let budget = Budget {
        max_bytes: 1 << 20,
        ..Budget::default()
    };
    let q = compile(
        "G.V().Both().Both().Both().Both().Values('Blob').Count()",
        &ext(),
    )
    .unwrap();
    let e = q.evaluate(&g, &budget).unwrap_err();
    assert_eq!(e.kind, ErrorKind::TooLarge, "{e}");
}

#[test]
fn the_time_budget_stops_a_long_evaluation() {
    let g = star(2000, 0);
    let budget = Budget {
        timeout: Duration::from_millis(20),
        ..Budget::default()
    };
    let q = format!("G.V(){}", ".Both().Dedup()".repeat(2000));
    let q = compile(&q, &ext()).unwrap();
    let start = Instant::now();
    let e = q.evaluate(&g, &budget).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Timeout, "{e}");
    assert!(e.to_string().contains("20 ms time budget"), "{e}");
    assert!(start.elapsed() < Duration::from_secs(2));
}
