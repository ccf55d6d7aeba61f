//! The history's costs, embedded store (redb, durable commits):
//! - write cost per change and bytes per revision, 100,000 metadata updates of 1,000
//!   interface nodes written in batches of 1,000 (what the writer does under churn);
//! - `G.At(now)` on that churned history against the same query on the live graph
//!   (the baseline), median of 20 runs each;
//! - growth per day at 10 changes/s, from the bytes per revision.
//!
//! `cargo bench --bench history`
//!
//! The binary crate has no library target: the history module (and the metrics types
//! its writer reports to) are compiled into this bench from their sources.
#![allow(dead_code, unused_imports)]

#[path = "../src/capture"]
mod capture {
    pub mod counters;
    pub mod engine;
    pub mod input;
    pub mod wait;
}
#[path = "../src/history/mod.rs"]
mod history;
#[path = "../src/metrics.rs"]
mod metrics;
#[path = "../src/netns.rs"]
mod netns;

use std::time::{Duration, Instant};

use serde_json::json;
use topotap_topology::gremlin::{answer, compile, Budget, Extensions};
use topotap_topology::{Graph, Metadata, Node, SharedGraph};

use history::redb_store::RedbStore;
use history::{Change, History, HistoryStore, Kind, Retention};

const NODES: usize = 1_000;
const CHANGES: usize = 100_000;
const BATCH: usize = 1_000;

fn interface(i: usize, rx: u64) -> Node {
    let mut m = Metadata::new();
    m.insert("Name".into(), json!(format!("veth{i}")));
    m.insert(
        "Type".into(),
        json!(if i % 2 == 0 { "veth" } else { "device" }),
    );
    m.insert("MTU".into(), json!(1500));
    m.insert(
        "MAC".into(),
        json!(format!("02:00:00:00:{:02x}:{:02x}", i / 256, i % 256)),
    );
    m.insert("State".into(), json!("UP"));
    m.insert(
        "LinkFlags".into(),
        json!(["UP", "BROADCAST", "MULTICAST", "LOWER_UP"]),
    );
    m.insert(
        "IPV4".into(),
        json!([format!("10.{}.{}.1/24", i / 256, i % 256)]),
    );
    m.insert(
        "Metric".into(),
        json!({"RxBytes": rx * 1500, "RxPackets": rx, "TxBytes": rx * 1400, "TxPackets": rx}),
    );
    let mut n = Node::new(
        topotap_topology::Identifier::from(format!("node-{i}").as_str()),
        m,
        "bench-host",
        "agent.bench-host",
    );
    n.revision = rx as i64 + 1;
    n
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("history.redb");
    let store = RedbStore::open(&path).expect("open the store");

    // Live graph and its first revisions.
    let mut live = Graph::new();
    let t0 = topotap_topology::now_ms() - 10 * 60_000;
    let first: Vec<Change> = (0..NODES)
        .map(|i| {
            let n = interface(i, 0);
            live.add_node(n.clone()).unwrap();
            Change::Open {
                kind: Kind::Node,
                id: n.id.to_string(),
                at: t0,
                doc: serde_json::to_vec(&n).unwrap(),
            }
        })
        .collect();
    store.apply(&first).unwrap();

    // Churn: 100,000 updates (metric samples), 1 ms apart, in batches.
    let mut write_time = Duration::ZERO;
    let mut batch = Vec::with_capacity(BATCH);
    for c in 0..CHANGES {
        let i = c % NODES;
        let n = interface(i, (c / NODES + 1) as u64);
        batch.push(Change::Open {
            kind: Kind::Node,
            id: n.id.to_string(),
            at: t0 + 1 + c as i64,
            doc: serde_json::to_vec(&n).unwrap(),
        });
        if batch.len() == BATCH {
            let start = Instant::now();
            store.apply(&batch).unwrap();
            write_time += start.elapsed();
            batch.clear();
        }
        if c == CHANGES - 1 {
            live.update_node(&n.id, |m| *m = n.metadata.clone())
                .unwrap();
        }
    }
    let (doc_bytes, revisions) = store.usage().unwrap();
    drop(store);
    let file_bytes = std::fs::metadata(&path).unwrap().len();
    let store = RedbStore::open(&path).unwrap();
    let per_change_us = write_time.as_secs_f64() * 1e6 / CHANGES as f64;
    let per_revision = file_bytes as f64 / revisions as f64;

    println!("revisions stored: {revisions}");
    println!(
        "write cost: {per_change_us:.1} us per change (batches of {BATCH}, durable commit each)"
    );
    println!(
        "bytes per revision: {:.0} in the file ({file_bytes} bytes), {:.0} of JSON document",
        per_revision,
        doc_bytes as f64 / revisions as f64
    );
    let day = per_revision * 10.0 * 86_400.0;
    println!(
        "growth per day at 10 changes/s: {:.0} MiB (864,000 revisions)",
        day / (1024.0 * 1024.0)
    );

    // The same query on the live graph and on the graph of now from the history.
    let history = History::new(std::sync::Arc::new(store), Retention::default());
    let ext = Extensions::new();
    let budget = Budget::unlimited();
    let q_live = compile("G.V().Has('Type', 'veth').Count()", &ext).unwrap();
    let q_past = compile("G.At('NOW').V().Has('Type', 'veth').Count()", &ext).unwrap();
    let shared = SharedGraph::new(live, "bench-host");
    let mut live_times = Vec::new();
    let mut past_times = Vec::new();
    let mut past_read = Vec::new();
    for _ in 0..20 {
        let start = Instant::now();
        let a = answer(&shared, &q_live, &budget).unwrap();
        live_times.push(start.elapsed());
        assert_eq!(a.len(), 3);

        let start = Instant::now();
        let now = topotap_topology::now_ms();
        let past = history.graph_between(now, now).unwrap();
        past_read.push(start.elapsed());
        let g = SharedGraph::new(past.graph, "bench-host");
        let a = answer(&g, &q_past, &budget).unwrap();
        past_times.push(start.elapsed());
        assert_eq!(a.len(), 3);
    }
    let (l, p, r) = (median(live_times), median(past_times), median(past_read));
    println!(
        "G.V().Has('Type','veth').Count() on the live graph ({NODES} nodes): {:.3} ms",
        l.as_secs_f64() * 1e3
    );
    println!(
        "G.At('NOW') same query, history of {revisions} revisions: {:.3} ms ({:.3} ms reading and building the graph), {:.0}x the live query",
        p.as_secs_f64() * 1e3,
        r.as_secs_f64() * 1e3,
        p.as_secs_f64() / l.as_secs_f64()
    );
}
