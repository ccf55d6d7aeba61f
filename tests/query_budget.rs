//! Query budgets on the real binary, under an address-space cap: the reproducer of a
//! 1.13 GB answer (eight `Both()` over a star with a 1 MB node) is a quick 413, writes
//! go through meanwhile, and a query over its time budget is a 503.

mod common;

use std::time::{Duration, Instant};

use common::Topotap;
use serde_json::json;

/// The server's address-space cap: an unbounded allocation fails instead of taking the machine.
const AS_CAP: u64 = 3_000_000_000;

async fn star(t: &Topotap, leaves: usize, big: usize) {
    let (s, v) = t
        .request(
            "POST",
            "/api/node",
            Some(&json!({"ID": "hub", "Metadata": {"Name": "hub", "Type": "bridge"}}).to_string()),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    for i in 0..leaves {
        let mut md = json!({"Name": format!("leaf{i}"), "Type": "veth"});
        if i == 0 && big > 0 {
            md["Blob"] = json!("x".repeat(big));
        }
        let (s, v) = t
            .request(
                "POST",
                "/api/node",
                Some(&json!({"ID": format!("leaf{i}"), "Metadata": md}).to_string()),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        let e = json!({"ID": format!("e{i}"), "Parent": "hub", "Child": format!("leaf{i}"),
                       "Metadata": {"RelationType": "ownership"}});
        let (s, v) = t.request("POST", "/api/edge", Some(&e.to_string())).await;
        assert_eq!(s, 201, "{v}");
    }
}

#[tokio::test]
async fn an_exploding_answer_is_a_quick_413_and_writes_go_through() {
    let t = Topotap::start_api_only();
    common::cap_address_space(t.pid(), AS_CAP);
    // A 1 MB node: just under the default metadata limit (1 MiB).
    star(&t, 10, 1_000_000).await;
    let q = "G.V().Both().Both().Both().Both().Both().Both().Both().Both()";
    let start = Instant::now();
    let (s, v) = t.try_query(q).await;
    assert_eq!(s, 413, "{v}");
    assert!(
        v.as_str()
            .unwrap_or("")
            .contains("answer exceeds 67108864 bytes"),
        "{v}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );

    // Several at once, with a write in the middle: the write is not held up.
    let mut queries = Vec::new();
    for _ in 0..4 {
        let url = t.url("/api/topology");
        let body = json!({ "GremlinQuery": q }).to_string();
        queries.push(tokio::spawn(async move {
            reqwest::Client::new()
                .post(url)
                .header("Content-Type", "application/json")
                .body(body)
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        }));
    }
    let w = Instant::now();
    let (s, v) = t
        .request(
            "POST",
            "/api/node",
            Some(&json!({"ID": "late", "Metadata": {"Name": "late", "Type": "veth"}}).to_string()),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    assert!(w.elapsed() < Duration::from_secs(5), "{:?}", w.elapsed());
    for q in queries {
        assert_eq!(q.await.unwrap(), 413);
    }
    // Still alive and answering.
    assert_eq!(t.query("G.V().Count()").await, json!(12));
}

#[tokio::test]
async fn a_query_over_its_time_budget_is_a_503() {
    let t = Topotap::start(&["--no-probes", "--query-timeout", "50ms"]);
    common::cap_address_space(t.pid(), AS_CAP);
    star(&t, 300, 0).await;
    let q = format!("G.V(){}", ".Both().Dedup()".repeat(3000));
    let (s, v) = t.try_query(&q).await;
    assert_eq!(s, 503, "{v}");
    assert!(
        v.as_str().unwrap_or("").contains("50 ms time budget"),
        "{v}"
    );
}

/// `GET /api/topology` (the whole graph) is held to the byte budget like a query: a
/// 413 with a one-line reason once the graph is larger, and writes go on meanwhile.
#[tokio::test]
async fn the_whole_graph_over_the_byte_budget_is_a_413() {
    let t = Topotap::start(&["--no-probes", "--max-result-bytes", "2000000"]);
    common::cap_address_space(t.pid(), AS_CAP);
    star(&t, 3, 900_000).await;
    let (s, v) = t.request("GET", "/api/topology", None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["Nodes"].as_array().map(Vec::len), Some(4), "{v}");
    assert_eq!(v["Edges"].as_array().map(Vec::len), Some(3), "{v}");
    let body = json!({"ID": "big2", "Metadata": {"Name": "big2", "Type": "veth",
                      "Blob": "y".repeat(900_000)}});
    for id in ["big2", "big3"] {
        let mut b = body.clone();
        b["ID"] = json!(id);
        let (s, v) = t.request("POST", "/api/node", Some(&b.to_string())).await;
        assert_eq!(s, 201, "{v}");
    }
    let (s, v) = t.request("GET", "/api/topology", None).await;
    assert_eq!(s, 413, "{v}");
    let reason = v.as_str().unwrap_or("");
    assert!(reason.contains("answer exceeds 2000000 bytes"), "{v}");
    assert!(!reason.trim_end().contains('\n'), "one line: {reason:?}");
    // Smaller again: answered.
    let (s, v) = t.request("DELETE", "/api/node/big3", None).await;
    assert!(s == 200 || s == 204, "{s} {v}");
    let (s, v) = t.request("DELETE", "/api/node/big2", None).await;
    assert!(s == 200 || s == 204, "{s} {v}");
    let (s, v) = t.request("GET", "/api/topology", None).await;
    assert_eq!(s, 200, "{v}");
}

/// A capture whose query runs out of its budget is not silently idle: the capture
/// shows why (`Error`), and so does `/api/status`; one within the budget shows none.
#[tokio::test]
async fn a_capture_whose_query_is_over_its_budget_shows_the_error() {
    let t = Topotap::start(&["--no-probes", "--max-result-elements", "5"]);
    star(&t, 10, 0).await;
    let create = |q: &str| json!({"GremlinQuery": q, "Name": q}).to_string();
    let (s, big) = t
        .request("POST", "/api/capture", Some(&create("G.V().Both()")))
        .await;
    assert_eq!(s, 201, "{big}");
    let (s, small) = t
        .request(
            "POST",
            "/api/capture",
            Some(&create("G.V().Has('Name', 'leaf1')")),
        )
        .await;
    assert_eq!(s, 201, "{small}");
    let big = big["UUID"].as_str().unwrap().to_owned();
    let small = small["UUID"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(10);
    let shown = loop {
        let (s, v) = t.request("GET", &format!("/api/capture/{big}"), None).await;
        assert_eq!(s, 200, "{v}");
        if v.get("Error").is_some() || Instant::now() > deadline {
            break v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        shown["Error"]
            .as_str()
            .unwrap_or("")
            .contains("result exceeds 5 elements"),
        "{shown}"
    );
    assert_eq!(shown["Count"], 0, "{shown}");
    let (_, v) = t
        .request("GET", &format!("/api/capture/{small}"), None)
        .await;
    assert!(v.get("Error").is_none(), "{v}");
    let (s, status) = t.request("GET", "/api/status", None).await;
    assert_eq!(s, 200);
    let errors = &status["Captures"]["QueryErrors"];
    assert!(errors[&big].as_str().is_some(), "{status}");
    assert!(errors.get(&small).is_none(), "{status}");
}
