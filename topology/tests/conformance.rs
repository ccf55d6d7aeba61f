//! Data-driven conformance of the Gremlin evaluator: every case of
//! `tests/conformance/cases.txt` is parsed with `topotap_grammar::parse`, evaluated over
//! the fixture graph `tests/conformance/fixture.json`, and compared with its expectation.
//! All failures are reported together, each with its line, the query and a diff.
//!
//! Case format — blocks separated by blank lines, `#` lines are comments:
//!
//! ```text
//! G.V().Has('Type', 'netns')          <- the query (one line)
//! ids: ["ns1", "ns2"]                 <- expectation, may continue on following lines
//! ```
//!
//! Expectations:
//! - `json: <JSON>`  the exact result JSON (§1.7 shapes).
//! - `ids: <JSON>`   the result JSON with every element object replaced by its `ID`:
//!   node/edge sets `["a", ...]`, paths `[["a", "b"], ...]`, graphs
//!   `[{"Nodes": [...], "Edges": [...]}]`.
//! - `error: <text>` evaluation (or parse) fails with a message containing `<text>`.

use serde_json::Value;
use topotap_topology::gremlin::{evaluate, Extensions};
use topotap_topology::{Edge, Graph, Node};

const FIXTURE: &str = include_str!("conformance/fixture.json");
const CASES: &str = include_str!("conformance/cases.txt");

#[derive(Debug)]
enum Expect {
    Json(Value),
    Ids(Value),
    Error(String),
}

struct Case {
    line: usize,
    query: String,
    expect: Expect,
}

fn fixture() -> Graph {
    #[derive(serde::Deserialize)]
    struct Fixture {
        #[serde(rename = "Nodes")]
        nodes: Vec<Node>,
        #[serde(rename = "Edges")]
        edges: Vec<Edge>,
    }
    let f: Fixture = serde_json::from_str(FIXTURE).expect("fixture.json is a graph");
    let mut g = Graph::new();
    for n in f.nodes {
        g.add_node(n).expect("fixture node");
    }
    for e in f.edges {
        g.add_edge(e).expect("fixture edge");
    }
    g
}

fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    let mut block: Vec<(usize, &str)> = Vec::new();
    let lines = CASES.lines().enumerate().map(|(i, l)| (i + 1, l));
    for (n, line) in lines.chain(std::iter::once((0, ""))) {
        if line.trim_start().starts_with('#') {
            continue;
        }
        if !line.trim().is_empty() {
            block.push((n, line));
            continue;
        }
        if block.is_empty() {
            continue;
        }
        let (line, query) = block[0];
        let rest: Vec<&str> = block[1..].iter().map(|(_, l)| *l).collect();
        let rest = rest.join("\n");
        let (kind, body) = rest
            .split_once(':')
            .unwrap_or_else(|| panic!("cases.txt:{line}: expectation missing"));
        let body = body.trim();
        let json = || {
            serde_json::from_str(body)
                .unwrap_or_else(|e| panic!("cases.txt:{line}: bad expected JSON: {e}"))
        };
        let expect = match kind.trim() {
            "json" => Expect::Json(json()),
            "ids" => Expect::Ids(json()),
            "error" => Expect::Error(body.to_owned()),
            other => panic!("cases.txt:{line}: unknown expectation {other:?}"),
        };
        cases.push(Case {
            line,
            query: query.trim().to_owned(),
            expect,
        });
        block.clear();
    }
    cases
}

/// Replaces every object carrying an `ID` by that ID, keeping the structure around it.
fn ids_of(v: &Value) -> Value {
    match v {
        Value::Object(m) => match m.get("ID") {
            Some(id) => id.clone(),
            None => Value::Object(m.iter().map(|(k, v)| (k.clone(), ids_of(v))).collect()),
        },
        Value::Array(items) => Value::Array(items.iter().map(ids_of).collect()),
        other => other.clone(),
    }
}

fn pretty(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// `Ok(())` or a description of the mismatch.
fn check(graph: &Graph, case: &Case) -> Result<(), String> {
    let outcome = topotap_grammar::parse(&case.query)
        .map_err(|e| format!("parse error: {e}"))
        .and_then(|q| evaluate(&q, graph, &Extensions::new()).map_err(|e| e.to_string()));
    match (&case.expect, outcome) {
        (Expect::Error(want), Err(got)) if got.contains(want.as_str()) => Ok(()),
        (Expect::Error(want), Err(got)) => Err(format!(
            "error mismatch\n  want substring: {want}\n  got:            {got}"
        )),
        (Expect::Error(want), Ok(out)) => Err(format!(
            "expected error containing {want:?}, got {}",
            pretty(&out.to_json(graph))
        )),
        (_, Err(got)) => Err(format!("unexpected error: {got}")),
        (expect, Ok(out)) => {
            let json = out.to_json(graph);
            // The streaming writer must agree with the Value tree.
            let streamed: Value = serde_json::from_slice(
                &serde_json::to_vec(&out.json(graph)).map_err(|e| e.to_string())?,
            )
            .map_err(|e| e.to_string())?;
            if streamed != json {
                return Err("streamed JSON differs from to_json".to_owned());
            }
            let (want, got) = match expect {
                Expect::Json(want) => (want, json),
                Expect::Ids(want) => (want, ids_of(&json)),
                Expect::Error(_) => unreachable!("handled above"),
            };
            if *want == got {
                Ok(())
            } else {
                Err(format!("want: {}\n  got:  {}", pretty(want), pretty(&got)))
            }
        }
    }
}

#[test]
fn conformance_table() {
    let graph = fixture();
    let cases = cases();
    assert!(cases.len() >= 100, "only {} cases", cases.len());
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|c| {
            check(&graph, c)
                .err()
                .map(|d| format!("cases.txt:{}: {}\n  {d}", c.line, c.query))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} conformance cases failed:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}

#[test]
fn every_core_step_and_predicate_is_covered() {
    let text: String = cases()
        .iter()
        .map(|c| c.query.to_ascii_lowercase())
        .collect::<Vec<_>>()
        .join("\n");
    let steps = [
        ".v(",
        ".e(",
        ".has(",
        ".haskey(",
        ".hasnot(",
        ".haseither(",
        ".out(",
        ".in(",
        ".both(",
        ".oute(",
        ".ine(",
        ".bothe(",
        ".outv(",
        ".inv(",
        ".bothv(",
        ".dedup(",
        ".count(",
        ".range(",
        ".limit(",
        ".sort(",
        ".values(",
        ".valuemap(",
        ".keys(",
        ".sum(",
        ".shortestpathto(",
        ".subgraph(",
        ".as(",
        ".select(",
        ".g.",
    ];
    let predicates = [
        "ne(",
        "nee(",
        "lt(",
        "gt(",
        "lte(",
        "gte(",
        "inside(",
        "outside(",
        "between(",
        "within(",
        "without(",
        "regex(",
        "ipv4range(",
        "metadata(",
    ];
    for s in steps.iter().chain(&predicates) {
        assert!(text.contains(s), "no conformance case uses {s}");
    }
}

#[test]
fn the_full_node_shape_is_skydive_s() {
    let graph = fixture();
    let q = topotap_grammar::parse("G.V('lo')").unwrap();
    let out = evaluate(&q, &graph, &Extensions::new()).unwrap();
    assert_eq!(
        serde_json::to_string(&out.json(&graph)).unwrap(),
        r#"[{"ID":"lo","Metadata":{"IPV4":["127.0.0.1/8"],"IfIndex":1,"LinkFlags":["UP","LOOPBACK"],"MTU":65536,"Name":"lo","State":"UP","Type":"device"},"Host":"h1","Origin":"agent.h1","CreatedAt":1700000001000,"UpdatedAt":1700000001000,"DeletedAt":null,"Revision":1}]"#
    );
}
