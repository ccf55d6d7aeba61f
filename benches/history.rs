//! The history's costs, for the embedded store (redb, durable commits) and, when the
//! PostgreSQL server binaries are installed and the bench runs as root, for a real
//! PostgreSQL started in a temp dir (initdb + pg_ctl, unix socket only):
//! - write cost per change and bytes per revision: 1,000 interface nodes, then 100,000
//!   metadata updates (metric samples, 100 per ms), with one node in 100 deleted and
//!   created again, written in batches of 1,000 (what the writer does under churn);
//! - `G.At(t)` on that churned history against the same query on the live graph (the
//!   baseline), at `NOW` and at a time in the middle of the churn, for three queries:
//!   a count with `Has`, a lookup by name and the whole `V()`. "cold" builds the past
//!   graph from the store every time (a fresh `History`); "repeat" asks again for a
//!   time already asked (what the time slider and polling do); "rebuild" is what every
//!   `G.At` did before past graphs were kept; "timeline" is a `History` with the
//!   in-memory timeline fed with the churn (128 MiB budget), where every query is a
//!   first one (nothing is kept per time). Medians of 15 runs;
//! - growth per day at 10 changes/s, extrapolated from the bytes per revision.
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
#[path = "common/postgres.rs"]
mod pg;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use topotap_topology::gremlin::{answer, compile, Budget, Extensions, Snapshot};
use topotap_topology::timeline::Timeline;
use topotap_topology::{Graph, Metadata, Node, SharedGraph};

use history::postgres::PostgresStore;
use history::redb_store::RedbStore;
use history::{Change, History, HistoryStore, Kind, Retention};
use pg::Postgres;

const NODES: usize = 1_000;
const CHANGES: usize = 100_000;
const BATCH: usize = 1_000;
const RUNS: usize = 15;

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

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The churn: what the store is given (times from 0, moved to after the store's
/// creation when written), and the live graph it leads to.
struct Churn {
    batches: Vec<Vec<Change>>,
    live: Graph,
}

fn churn() -> Churn {
    // 100 changes per millisecond: the churn spans one second.
    let t0 = 0;
    let mut live = Graph::new();
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
    let mut batches = vec![first];
    let mut batch = Vec::with_capacity(BATCH);
    for c in 0..CHANGES {
        let i = c % NODES;
        let n = interface(i, (c / NODES + 1) as u64);
        let at = t0 + 1 + (c / 100) as i64;
        if c % 100 == 99 {
            // Deleted, and created again in the same batch.
            batch.push(Change::Close {
                kind: Kind::Node,
                id: n.id.to_string(),
                at,
            });
        }
        batch.push(Change::Open {
            kind: Kind::Node,
            id: n.id.to_string(),
            at,
            doc: serde_json::to_vec(&n).unwrap(),
        });
        if c >= CHANGES - NODES {
            live.update_node(&n.id, |m| *m = n.metadata.clone())
                .unwrap();
        }
        if batch.len() >= BATCH {
            batches.push(std::mem::take(&mut batch));
        }
    }
    if !batch.is_empty() {
        batches.push(batch);
    }
    Churn { batches, live }
}

/// Writes the churn; returns the time per change (the first batch, the creation of
/// the nodes, not counted), and the time the churn began. It begins after the store's
/// horizon (its creation) and is over before the queries ask for `NOW`.
fn write(store: &dyn HistoryStore, churn: &Churn) -> (Duration, i64) {
    let t0 = store.horizon().unwrap() + 10;
    let at = |b: &[Change]| -> Vec<Change> {
        b.iter()
            .cloned()
            .map(|mut c| {
                match &mut c {
                    Change::Open { at, .. } | Change::Close { at, .. } => *at += t0,
                }
                c
            })
            .collect()
    };
    let batches: Vec<Vec<Change>> = churn.batches.iter().map(|b| at(b)).collect();
    store.apply(&batches[0]).unwrap();
    let mut spent = Duration::ZERO;
    let mut changes = 0;
    for b in &batches[1..] {
        let start = Instant::now();
        store.apply(b).unwrap();
        spent += start.elapsed();
        changes += b.len();
    }
    while topotap_topology::now_ms() <= t0 + 1 + (CHANGES / 100) as i64 {
        std::thread::sleep(Duration::from_millis(10));
    }
    (spent / changes as u32, t0)
}

/// The churn fed to a history's in-memory timeline, as the server's feed does, from
/// the time the churn begins; returns the timeline's estimated bytes and the time the
/// feed took per change.
fn feed_timeline(history: &History, churn: &Churn, t0: i64) -> (u64, Duration) {
    let tl = history.timeline().expect("a timeline");
    let mut tl = tl.write();
    *tl = Timeline::new(t0, 128 << 20);
    let start = Instant::now();
    let mut n = 0u32;
    for b in &churn.batches {
        for c in b {
            n += 1;
            match c {
                Change::Open { at, doc, .. } => {
                    let node: Node = serde_json::from_slice(doc).unwrap();
                    tl.open_node(*at + t0, &node);
                }
                Change::Close { at, id, .. } => tl.close_node(*at + t0, &id.as_str().into()),
            }
        }
    }
    let per_change = start.elapsed() / n;
    (tl.stats().bytes, per_change)
}

const QUERIES: [(&str, &str); 3] = [
    ("count", ".V().Has('Type', 'veth').Count()"),
    ("by name", ".V().Has('Name', 'veth500')"),
    ("all", ".V()"),
];

/// `G.At(t)` against the live graph, for every query, at `NOW` and mid-churn.
fn queries(store: Arc<dyn HistoryStore>, t0: i64, live: &SharedGraph, churn: &Churn) {
    let with_timeline = History::new(store.clone(), Retention::default()).with_timeline(128 << 20);
    let (bytes, feed) = feed_timeline(&with_timeline, churn, t0);
    println!(
        "  timeline: {} revisions, {:.1} MiB estimated, fed at {:.2} us per change",
        with_timeline.timeline().unwrap().read().stats().revisions,
        bytes as f64 / (1024.0 * 1024.0),
        feed.as_secs_f64() * 1e6
    );
    let ext = Extensions::new();
    let budget = Budget::unlimited();
    let mid = t0 + CHANGES as i64 / 200;
    for (name, q) in QUERIES {
        let q_live = compile(&format!("G{q}"), &ext).unwrap();
        let mut times = Vec::new();
        let mut len = 0;
        for _ in 0..RUNS {
            let start = Instant::now();
            len = answer(live, &q_live, &budget).unwrap().len();
            times.push(start.elapsed());
        }
        let l = median(times);
        println!("  {name:8} G{q}: live {:.3} ms ({len} bytes)", ms(l));
        for (when, at) in [("NOW", "'NOW'".to_owned()), ("mid-churn", mid.to_string())] {
            let q_past = compile(&format!("G.At({at}){q}"), &ext).unwrap();
            let run = |history: &History| {
                let start = Instant::now();
                let range = q_past
                    .time_context()
                    .unwrap()
                    .resolve(topotap_topology::now_ms());
                let past = history.graph_between(range.from, range.at).unwrap();
                let a = past
                    .with_view(|v| Snapshot::of_query(v, &q_past, &budget))
                    .unwrap()
                    .unwrap()
                    .encode(&budget)
                    .unwrap();
                (start.elapsed(), a.len())
            };
            // What every query did before past graphs were kept: read the horizon and
            // the revisions, build the graph, query it.
            let rebuild: Vec<Duration> = (0..RUNS)
                .map(|_| {
                    let start = Instant::now();
                    let range = q_past
                        .time_context()
                        .unwrap()
                        .resolve(topotap_topology::now_ms());
                    let horizon = store.horizon().unwrap();
                    assert!(range.at >= horizon);
                    let revs = store.between(range.from, range.at).unwrap();
                    let g = SharedGraph::new(history::graph_of(revs), "bench-host");
                    answer(&g, &q_past, &budget).unwrap();
                    start.elapsed()
                })
                .collect();
            let b = median(rebuild);
            let mut cold = Vec::new();
            let mut past_len = 0;
            for _ in 0..RUNS {
                let (d, n) = run(&History::new(store.clone(), Retention::default()));
                cold.push(d);
                past_len = n;
            }
            let history = History::new(store.clone(), Retention::default());
            run(&history);
            let repeat: Vec<Duration> = (0..RUNS).map(|_| run(&history).0).collect();
            let (c, r) = (median(cold), median(repeat));
            // Through a history with the timeline: nothing is kept per time, so every
            // query is a first one.
            let mut tl_len = 0;
            let timeline: Vec<Duration> = (0..RUNS)
                .map(|_| {
                    let (d, n) = run(&with_timeline);
                    tl_len = n;
                    d
                })
                .collect();
            assert_eq!(
                tl_len, past_len,
                "the timeline answers what the store answers"
            );
            let tl = median(timeline);
            println!(
                "           G.At({when}): rebuild {:.3} ms ({:.1}x), cold {:.3} ms ({:.1}x), repeat {:.3} ms ({:.2}x), timeline {:.3} ms ({:.2}x) ({past_len} bytes)",
                ms(b),
                b.as_secs_f64() / l.as_secs_f64(),
                ms(c),
                c.as_secs_f64() / l.as_secs_f64(),
                ms(r),
                r.as_secs_f64() / l.as_secs_f64(),
                ms(tl),
                tl.as_secs_f64() / l.as_secs_f64(),
            );
        }
    }
}

fn report(revisions: u64, per_change: Duration, stored_bytes: u64, doc_bytes: u64) {
    let per_revision = stored_bytes as f64 / revisions as f64;
    println!("  revisions stored: {revisions}");
    println!(
        "  write cost: {:.1} us per change (batches of {BATCH}, one durable commit each)",
        per_change.as_secs_f64() * 1e6
    );
    println!(
        "  bytes per revision: {per_revision:.0} stored ({stored_bytes} bytes), {:.0} of JSON document",
        doc_bytes as f64 / revisions as f64
    );
    println!(
        "  growth per day at 10 changes/s (864,000 revisions, extrapolated): {:.0} MiB",
        per_revision * 864_000.0 / (1024.0 * 1024.0)
    );
}

fn redb(churn: &Churn, live: &SharedGraph) {
    println!("redb (embedded):");
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("history.redb");
    let store = RedbStore::open(&path).expect("open the store");
    let (per_change, t0) = write(&store, churn);
    let (doc_bytes, revisions) = store.usage().unwrap();
    drop(store);
    let file_bytes = std::fs::metadata(&path).unwrap().len();
    report(revisions, per_change, file_bytes, doc_bytes);
    let store = RedbStore::open(&path).unwrap();
    queries(Arc::new(store), t0, live, churn);
}

fn postgres(churn: &Churn, live: &SharedGraph) {
    let pg = match Postgres::start() {
        Ok(pg) => pg,
        Err(e) => {
            println!("PostgreSQL: skipped ({})", e.trim());
            return;
        }
    };
    println!("PostgreSQL 15 (local, unix socket, default settings):");
    let store = PostgresStore::connect(&pg.url()).expect("connect");
    let (per_change, t0) = write(&store, churn);
    let (doc_bytes, revisions) = store.usage().unwrap();
    let mut client = postgres::Client::connect(&pg.url(), postgres::NoTls).unwrap();
    client
        .batch_execute("VACUUM ANALYZE topotap_revisions")
        .unwrap();
    let table: i64 = client
        .query_one("SELECT pg_total_relation_size('topotap_revisions')", &[])
        .unwrap()
        .get(0);
    report(revisions, per_change, table as u64, doc_bytes);
    queries(Arc::new(store), t0, live, churn);
}

fn main() {
    let mut churn = churn();
    let live = SharedGraph::new(std::mem::take(&mut churn.live), "bench-host");
    redb(&churn, &live);
    postgres(&churn, &live);
}
