//! What flow snapshots cost the history, for the embedded store (redb, durable commits)
//! and, when the PostgreSQL server binaries are installed and the bench runs as root,
//! for a real PostgreSQL started in a temp dir (initdb + pg_ctl, unix socket only):
//! - 10,000 UDP flows through a real flow table, 10 update intervals with a packet per
//!   flow in each: 100,000 update snapshots;
//! - on the capture thread: `FlowRecorder::record` per snapshot (the flow's JSON and a
//!   queue push, never a wait);
//! - in the store: write cost per snapshot, in batches of `flows::BATCH` (what the flow
//!   writer does), and bytes per flow revision;
//! - baseline, in the same run and store: as many node revisions (an interface node
//!   with counters, as the netlink probe writes them), in batches of the same size.
//!
//! `cargo bench --bench history_flows`
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
use topotap_targets::flow::synth::udp_frame;
use topotap_targets::flow::{FlowEvent, FlowTable, FlowTableConfig};
use topotap_targets::packet::{decode, LinkType, Timestamp};
use topotap_topology::{Identifier, Metadata, Node};

use history::flows::{FlowChange, FlowRecorder};
use history::postgres::PostgresStore;
use history::redb_store::RedbStore;
use history::{Change, HistoryStore, Kind};
use pg::Postgres;

const FLOWS: u32 = 10_000;
const ROUNDS: u64 = 10;
const T0: u64 = 1_700_000_000;

/// The snapshots of the flow table, as the recorder makes them, and what recording
/// them cost on the capture thread.
struct Snapshots {
    changes: Vec<FlowChange>,
    record: Duration,
}

fn snapshots() -> Snapshots {
    let mut table = FlowTable::new(FlowTableConfig {
        active_timeout: Duration::from_secs(1),
        capture_id: "bench-capture".into(),
        node_tid: "bench-tid".into(),
        ..FlowTableConfig::default()
    });
    let total = FLOWS as usize * ROUNDS as usize;
    let (recorder, queue) = FlowRecorder::new("bench-host", total + 1, Arc::default());
    let node = Identifier::from("bench-node");
    let mut events: Vec<(i64, FlowEvent)> = Vec::with_capacity(total);
    let mut record = Duration::ZERO;
    for r in 0..ROUNDS {
        for f in 0..FLOWS {
            let frame = udp_frame(f, r % 2 == 1);
            let ts = Timestamp::from_secs(T0 + r) + Duration::from_micros(u64::from(f));
            table.process(ts, &decode(LinkType::Ethernet, &frame), frame.len() as u32);
        }
        let tick = Timestamp::from_secs(T0 + r + 1);
        let now = tick.as_millis() as i64;
        let round: Vec<FlowEvent> = table.poll_updates(tick).collect();
        let began = Instant::now();
        for e in &round {
            recorder.record("bench-capture", &node, now, e, Vec::new);
        }
        record += began.elapsed();
        events.extend(round.into_iter().map(|e| (now, e)));
    }
    drop(queue);
    // The same changes the recorder queued, for the store.
    let changes = events
        .iter()
        .map(|(at, e)| FlowChange::Open {
            id: recorder.flow_id("bench-capture", &node, e.flow.uuid()),
            node: node.to_string(),
            at: *at,
            start: e.flow.start_ms() as i64,
            doc: serde_json::to_vec(&e.flow.to_json()).unwrap(),
            raw: Vec::new(),
        })
        .collect();
    Snapshots { changes, record }
}

fn interface(i: usize, rx: u64) -> Node {
    let mut m = Metadata::new();
    m.insert("Name".into(), json!(format!("veth{i}")));
    m.insert("Type".into(), json!("veth"));
    m.insert("MTU".into(), json!(1500));
    m.insert(
        "MAC".into(),
        json!(format!("02:00:00:00:{:02x}:{:02x}", i / 256, i % 256)),
    );
    m.insert("State".into(), json!("UP"));
    m.insert(
        "Metric".into(),
        json!({"RxBytes": rx * 1500, "RxPackets": rx, "TxBytes": rx * 1400, "TxPackets": rx}),
    );
    Node::new(
        Identifier::from(format!("node-{i}").as_str()),
        m,
        "bench-host",
        "agent.bench-host",
    )
}

/// As many node revisions as there are snapshots: `FLOWS` nodes, `ROUNDS` updates each.
fn node_changes() -> Vec<Change> {
    let mut out = Vec::new();
    for r in 0..ROUNDS {
        for i in 0..FLOWS as usize {
            let n = interface(i, r + 1);
            out.push(Change::Open {
                kind: Kind::Node,
                id: n.id.to_string(),
                at: ((T0 + r + 1) * 1000) as i64,
                doc: serde_json::to_vec(&n).unwrap(),
            });
        }
    }
    out
}

fn per(d: Duration, n: usize) -> f64 {
    d.as_secs_f64() * 1e6 / n as f64
}

fn measure(
    store: &dyn HistoryStore,
    snaps: &Snapshots,
    nodes: &[Change],
    stored: impl Fn() -> u64,
) {
    let batch = history::flows::BATCH;
    let began = Instant::now();
    for chunk in snaps.changes.chunks(batch) {
        store.apply_flows(chunk).expect("write flow snapshots");
    }
    let flows = began.elapsed();
    let (flow_docs, flow_revs) = store.flow_usage().unwrap();
    let after_flows = stored();
    let began = Instant::now();
    for chunk in nodes.chunks(batch) {
        store.apply(chunk).expect("write node revisions");
    }
    let node_time = began.elapsed();
    let (node_docs, node_revs) = store.usage().unwrap();
    let n = snaps.changes.len();
    println!(
        "  flow snapshots: {n} written, {flow_revs} revisions; {:.1} us per snapshot (batches of {batch}, one durable commit each)",
        per(flows, n)
    );
    println!(
        "  bytes per flow revision: {:.0} stored ({after_flows} bytes), {:.0} of JSON document",
        after_flows as f64 / flow_revs as f64,
        flow_docs as f64 / flow_revs as f64
    );
    println!(
        "  baseline, node revisions: {node_revs} written, {:.1} us per revision, {:.0} bytes of JSON document",
        per(node_time, nodes.len()),
        node_docs as f64 / node_revs as f64
    );
}

fn redb(snaps: &Snapshots, nodes: &[Change]) {
    println!("redb (embedded):");
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("history.redb");
    let store = RedbStore::open(&path).expect("open the store");
    let file = path.clone();
    measure(&store, snaps, nodes, move || {
        std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0)
    });
}

fn postgres(snaps: &Snapshots, nodes: &[Change]) {
    let pg = match Postgres::start() {
        Ok(pg) => pg,
        Err(e) => {
            println!("PostgreSQL: skipped ({})", e.trim());
            return;
        }
    };
    println!("PostgreSQL 15 (local, unix socket, default settings):");
    let store = PostgresStore::connect(&pg.url()).expect("connect");
    let url = pg.url();
    measure(&store, snaps, nodes, move || {
        let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        client
            .batch_execute("VACUUM ANALYZE topotap_flow_revisions")
            .unwrap();
        client
            .query_one(
                "SELECT pg_total_relation_size('topotap_flow_revisions')",
                &[],
            )
            .unwrap()
            .get::<_, i64>(0) as u64
    });
}

fn main() {
    let snaps = snapshots();
    println!(
        "{} flow snapshots of {FLOWS} flows over {ROUNDS} update intervals",
        snaps.changes.len()
    );
    println!(
        "on the capture thread: FlowRecorder::record {:.2} us per snapshot (JSON + queue push)",
        per(snaps.record, snaps.changes.len())
    );
    let nodes = node_changes();
    redb(&snaps, &nodes);
    postgres(&snaps, &nodes);
}
