//! One `/metrics` scrape rendered with 1,000 running capture points (each with export
//! counters) and a 10,000-node graph, in the Prometheus text format and in OpenMetrics.
//! Target: under 50 ms per scrape.
//!
//! `cargo bench --bench metrics -- --warm-up-time 1 --measurement-time 3`
//!
//! The binary crate has no library target: the metrics module and the capture engine
//! types it reads are compiled into this bench from their sources.
#![allow(dead_code, unused_imports)]

#[path = "../src/capture"]
mod capture {
    pub mod counters;
    pub mod engine;
    pub mod input;
    pub mod wait;
}
#[path = "../src/metrics.rs"]
mod metrics;
#[path = "../src/netns.rs"]
mod netns;

use std::hint::black_box;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::json;
use topotap_topology::{Graph, Metadata, Node, SharedGraph};

use capture::engine::{ExportStats, WorkerShared, WorkerState};
use metrics::{CaptureBoard, CapturePoint, Metrics, Sources};

const NODES: usize = 10_000;
const CAPTURES: usize = 1_000;

fn setup() -> (Metrics, Vec<std::net::UdpSocket>) {
    let mut g = Graph::new();
    for i in 0..NODES {
        let mut m = Metadata::new();
        m.insert("Name".into(), json!(format!("veth{i}")));
        m.insert("Type".into(), json!("veth"));
        g.add_node(Node::new(
            format!("node-{i}").into(),
            m,
            "bench-host",
            "agent.bench-host",
        ))
        .expect("unique node");
    }
    let graph = SharedGraph::new(g, "bench-host");
    let board = Arc::new(CaptureBoard::default());
    let collector = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let peer = collector.local_addr().unwrap();
    let types = ["netflowv5", "ipfix", "sflow", "erspanv1"];
    let points = (0..CAPTURES).map(|i| {
        let shared = Arc::new(WorkerShared::default());
        shared
            .received
            .store(1_000_000 + i as u64, Ordering::Relaxed);
        shared.dropped.store(i as u64, Ordering::Relaxed);
        *shared.state.lock() = WorkerState::Active;
        let exporter = topotap_targets::send::UdpExporter::connect_addr(peer).unwrap();
        exporter.send(&[0u8; 64]);
        let uuid = format!("00000000-0000-4000-8000-{i:012}");
        (
            (uuid.clone(), format!("node-{i}")),
            CapturePoint {
                capture: uuid,
                interface: format!("veth{i}"),
                target_type: types[i % types.len()].to_owned(),
                shared,
                export: Some(ExportStats::new(exporter.counters(), peer)),
            },
        )
    });
    board.sync(points, 0);
    let m = Metrics::new(Sources {
        graph,
        host_id: "bench-host".into(),
        captures: board,
        websocket_clients: Arc::new(|| vec![("subscriber", 3)]),
        etcd: None,
        history: None,
    });
    // Some HTTP history, as a running server has.
    for (i, path) in [
        "/api",
        "/api/topology",
        "/api/node/x",
        "/api/capture",
        "/metrics",
    ]
    .iter()
    .enumerate()
    {
        for code in [200u16, 400, 404] {
            m.observe_http(
                "GET",
                path,
                code,
                std::time::Duration::from_micros(100 * i as u64),
            );
        }
    }
    (m, vec![collector])
}

fn bench(c: &mut Criterion) {
    let (m, _collector) = setup();
    let (text, _) = m.render(None);
    assert!(text.lines().count() > 2 * CAPTURES);
    let mut g = c.benchmark_group("metrics_scrape_1000_captures_10000_nodes");
    g.bench_function("prometheus_text", |b| b.iter(|| black_box(m.render(None))));
    g.bench_function("openmetrics", |b| {
        b.iter(|| black_box(m.render(Some("application/openmetrics-text;version=1.0.0"))))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
