//! Query budgets on the real binary, under an address-space cap: the reproducer of a
//! 1.13 GB answer (eight `Both()` over a star with a 1 MB node) is a quick 413, writes
//! go through meanwhile, and a query over its time budget is a 503.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::Topotap;
use serde_json::json;

/// Caps the address space of the running server at 3 GB.
fn cap_address_space(pid: u32) {
    let out = Command::new("prlimit")
        .args([&format!("--pid={pid}"), "--as=3000000000"])
        .output()
        .expect("run prlimit");
    assert!(
        out.status.success(),
        "prlimit: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

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
    cap_address_space(t.pid());
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
    cap_address_space(t.pid());
    star(&t, 300, 0).await;
    let q = format!("G.V(){}", ".Both().Dedup()".repeat(3000));
    let (s, v) = t.try_query(&q).await;
    assert_eq!(s, 503, "{v}");
    assert!(
        v.as_str().unwrap_or("").contains("50 ms time budget"),
        "{v}"
    );
}
