//! Prometheus metrics (`GET /metrics`), encoded by `prometheus-client` in the Prometheus
//! text format, or OpenMetrics when the scraper asks for it.
//!
//! Most values are read at scrape time by collectors: the graph's node and edge counts
//! (a read lock, held for two integer reads), the capture points' counters (the plain
//! atomics the capture threads already keep, read without any lock on the packet path),
//! and the process's own figures from `/proc/self`. Only the HTTP request metrics are
//! recorded as they happen.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::info::Info;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};
use topotap_topology::SharedGraph;

use crate::capture::engine::{ExportStats, WorkerShared, WorkerState};

/// `Content-Type` of the OpenMetrics text format.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

type HttpLabels = [(&'static str, String); 3];
/// `outcome` of a call to etcd: `ok`, `error` or `timeout`.
type EtcdLabels = [(&'static str, &'static str); 1];

/// Time of the calls an analyzer makes to etcd, by outcome; shared by every clone of
/// the etcd client and read by `/metrics`.
#[derive(Clone, Debug)]
pub struct EtcdDurations(Family<EtcdLabels, Histogram>);

impl Default for EtcdDurations {
    fn default() -> Self {
        EtcdDurations(Family::new_with_constructor(duration_histogram))
    }
}

impl EtcdDurations {
    pub fn observe(&self, outcome: &'static str, elapsed: Duration) {
        self.0
            .get_or_create(&[("outcome", outcome)])
            .observe(elapsed.as_secs_f64());
    }
}
type RouteLabels = [(&'static str, String); 2];

/// Everything `/metrics` shows.
pub struct Metrics {
    registry: Registry,
    http_requests: Family<HttpLabels, Counter>,
    http_duration: Family<RouteLabels, Histogram>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// What the collectors read at scrape time.
#[derive(Clone)]
pub struct Sources {
    pub graph: SharedGraph,
    pub host_id: String,
    pub captures: Arc<CaptureBoard>,
    /// WebSocket clients connected, by kind.
    pub websocket_clients: Arc<dyn Fn() -> Vec<(&'static str, usize)> + Send + Sync>,
    /// An analyzer's calls to etcd.
    pub etcd: Option<EtcdDurations>,
    /// The history writer's counters, when the history is on.
    pub history: Option<Arc<dyn Fn() -> HistoryGauges + Send + Sync>>,
}

/// The history writer's numbers at scrape time.
#[derive(Debug, Clone, Copy, Default)]
pub struct HistoryGauges {
    pub backlog: u64,
    pub bytes: u64,
    pub written: u64,
    pub failures: u64,
}

impl Metrics {
    pub fn new(sources: Sources) -> Self {
        let mut registry = Registry::default();
        registry.register(
            "topotap_build",
            "topotap's version and the source revision it was built from",
            Info::new(vec![
                ("version", env!("CARGO_PKG_VERSION").to_owned()),
                ("revision", env!("TOPOTAP_REVISION").to_owned()),
            ]),
        );
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "topotap_http_requests",
            "HTTP requests answered, by method, route template and status code",
            http_requests.clone(),
        );
        let http_duration =
            Family::<RouteLabels, Histogram>::new_with_constructor(duration_histogram);
        registry.register_with_unit(
            "topotap_http_request_duration",
            "Time to answer HTTP requests (until the response head), by method and route template",
            Unit::Seconds,
            http_duration.clone(),
        );
        if let Some(etcd) = &sources.etcd {
            registry.register_with_unit(
                "topotap_etcd_request_duration",
                "Time of the calls to etcd (definitions, agent leases, election), by outcome",
                Unit::Seconds,
                etcd.0.clone(),
            );
        }
        registry.register_collector(Box::new(TopotapCollector { sources }));
        registry.register_collector(Box::new(ProcessCollector));
        Metrics {
            registry,
            http_requests,
            http_duration,
        }
    }

    /// Records one answered request; `path` is mapped to its route template.
    pub fn observe_http(&self, method: &str, path: &str, code: u16, elapsed: Duration) {
        let route = route_template(path);
        let method = match method {
            "GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE" | "OPTIONS" => method,
            _ => "other",
        };
        self.http_requests
            .get_or_create(&[
                ("method", method.to_owned()),
                ("route", route.to_owned()),
                ("code", code.to_string()),
            ])
            .inc();
        self.http_duration
            .get_or_create(&[("method", method.to_owned()), ("route", route.to_owned())])
            .observe(elapsed.as_secs_f64());
    }

    /// The scrape: Prometheus text (version 0.0.4) unless `accept` asks for OpenMetrics.
    /// Returns the body and its content type.
    pub fn render(&self, accept: Option<&str>) -> (String, &'static str) {
        topotap_topology::blocking::section("metrics scrape");
        let mut out = String::with_capacity(64 * 1024);
        if wants_openmetrics(accept) {
            // Writing to a String cannot fail.
            let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
            (out, OPENMETRICS_CONTENT_TYPE)
        } else {
            let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
            (
                out,
                prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            )
        }
    }
}

fn duration_histogram() -> Histogram {
    // 0.5 ms .. ~16 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// Whether an `Accept` header prefers OpenMetrics to the Prometheus text format (as
/// Prometheus sends it: `application/openmetrics-text;version=1.0.0;q=0.5,...`).
fn wants_openmetrics(accept: Option<&str>) -> bool {
    let Some(accept) = accept else { return false };
    let mut best_om = -1.0f32;
    let mut best_text = -1.0f32;
    for part in accept.split(',') {
        let mut fields = part.split(';').map(str::trim);
        let media = fields.next().unwrap_or_default().to_ascii_lowercase();
        let q = fields
            .filter_map(|f| f.strip_prefix("q="))
            .find_map(|q| q.parse::<f32>().ok())
            .unwrap_or(1.0);
        match media.as_str() {
            "application/openmetrics-text" => best_om = best_om.max(q),
            "text/plain" | "*/*" | "text/*" => best_text = best_text.max(q),
            _ => {}
        }
    }
    best_om > 0.0 && best_om >= best_text
}

/// The route template of a request path: the label of the HTTP metrics, never the raw
/// path (IDs would make a series per element). Paths that match no route are
/// `unmatched`.
pub fn route_template(path: &str) -> &'static str {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        [""] => "/",
        ["topology"] => "/topology",
        ["ui", ..] => "/ui/{path}",
        ["metrics"] => "/metrics",
        ["ws", "subscriber"] => "/ws/subscriber",
        ["api"] => "/api",
        ["api", "status"] => "/api/status",
        ["api", "topology"] => "/api/topology",
        ["api", "pcap"] => "/api/pcap",
        ["api", "openapi.json"] => "/api/openapi.json",
        ["api", "node"] => "/api/node",
        ["api", "node", _] => "/api/node/{id}",
        ["api", "edge"] => "/api/edge",
        ["api", "edge", _] => "/api/edge/{id}",
        ["api", "capture"] => "/api/capture",
        ["api", "capture", _] => "/api/capture/{id}",
        ["api", "injectpacket"] => "/api/injectpacket",
        ["api", "injectpacket", _] => "/api/injectpacket/{id}",
        _ => "unmatched",
    }
}

/// The capture points running now, with the counters their threads keep, and the
/// export totals of those that ended (so that export counters never go back).
#[derive(Default)]
pub struct CaptureBoard {
    inner: Mutex<BoardInner>,
}

#[derive(Default)]
struct BoardInner {
    points: HashMap<(String, String), CapturePoint>,
    /// Capture points that could not start.
    failed: usize,
    /// Export counters of ended capture points, by target type.
    retired: HashMap<String, ExportTotals>,
}

#[derive(Default, Clone, Copy)]
struct ExportTotals {
    messages: u64,
    errors: u64,
    bytes: u64,
}

impl ExportTotals {
    fn of(stats: &ExportStats) -> Self {
        let s = stats.counters().snapshot();
        ExportTotals {
            messages: s.sent,
            errors: s.errors,
            bytes: s.bytes,
        }
    }

    fn add(&mut self, o: ExportTotals) {
        self.messages += o.messages;
        self.errors += o.errors;
        self.bytes += o.bytes;
    }
}

/// One capture on one interface.
#[derive(Clone)]
pub struct CapturePoint {
    pub capture: String,
    pub interface: String,
    pub target_type: String,
    pub shared: Arc<WorkerShared>,
    pub export: Option<Arc<ExportStats>>,
}

impl CaptureBoard {
    /// Replaces the set of capture points (keyed by capture and node); those that left
    /// add their export counters to the totals.
    pub fn sync(
        &self,
        points: impl IntoIterator<Item = ((String, String), CapturePoint)>,
        failed: usize,
    ) {
        let mut inner = self.inner.lock();
        let mut next: HashMap<(String, String), CapturePoint> = points.into_iter().collect();
        let old = std::mem::take(&mut inner.points);
        for (key, point) in old {
            match next.get(&key) {
                Some(p) if Arc::ptr_eq(&p.shared, &point.shared) => {}
                _ => {
                    if let Some(x) = &point.export {
                        inner
                            .retired
                            .entry(point.target_type.clone())
                            .or_default()
                            .add(ExportTotals::of(x));
                    }
                }
            }
        }
        inner.points = std::mem::take(&mut next);
        inner.failed = failed;
    }

    fn snapshot(&self) -> (Vec<CapturePoint>, usize, HashMap<String, ExportTotals>) {
        let inner = self.inner.lock();
        (
            inner.points.values().cloned().collect(),
            inner.failed,
            inner.retired.clone(),
        )
    }
}

struct TopotapCollector {
    sources: Sources,
}

impl std::fmt::Debug for TopotapCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopotapCollector").finish_non_exhaustive()
    }
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: i64,
) -> Result<(), std::fmt::Error> {
    let g = ConstGauge::new(value);
    g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)
}

impl Collector for TopotapCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = &self.sources;
        let (nodes, edges) = {
            let g = s.graph.read();
            (g.node_count(), g.edge_count())
        };
        gauge(
            &mut encoder,
            "topotap_graph_nodes",
            "Nodes in the topology graph",
            nodes as i64,
        )?;
        gauge(
            &mut encoder,
            "topotap_graph_edges",
            "Edges in the topology graph",
            edges as i64,
        )?;
        if let Some(h) = &s.history {
            let h = h();
            gauge(
                &mut encoder,
                "topotap_history_backlog",
                "Graph changes waiting to be written to the history store",
                h.backlog as i64,
            )?;
            gauge(
                &mut encoder,
                "topotap_history_bytes",
                "Bytes of revisions kept by the history store (as of its last retention run)",
                h.bytes as i64,
            )?;
            let c = ConstCounter::new(h.written);
            c.encode(encoder.encode_descriptor(
                "topotap_history_changes_written",
                "Graph changes written to the history store",
                None,
                c.metric_type(),
            )?)?;
            let c = ConstCounter::new(h.failures);
            c.encode(encoder.encode_descriptor(
                "topotap_history_write_failures",
                "Failed writes to the history store (each is tried again)",
                None,
                c.metric_type(),
            )?)?;
        }

        let (points, failed, retired) = s.captures.snapshot();

        // Capture points by state (every state shown, 0 included, so that alerts on
        // `error` see a series).
        let mut states: [(&str, i64); 4] = [
            ("starting", 0),
            ("active", 0),
            ("error", failed as i64),
            ("stopped", 0),
        ];
        for p in &points {
            let i = match &*p.shared.state.lock() {
                WorkerState::Starting => 0,
                WorkerState::Active => 1,
                WorkerState::Error(_) => 2,
                WorkerState::Stopped => 3,
            };
            states[i].1 += 1;
        }
        {
            let mut family = encoder.encode_descriptor(
                "topotap_captures",
                "Capture points (a capture on one interface) by state",
                None,
                MetricType::Gauge,
            )?;
            for (state, n) in states {
                let labels = [("state", state)];
                ConstGauge::new(n).encode(family.encode_family(&labels)?)?;
            }
        }

        {
            let mut family = encoder.encode_descriptor(
                "topotap_capture_packets",
                "Packets seen by a capture point: received by the capture, or dropped by the kernel before it could read them",
                None,
                MetricType::Counter,
            )?;
            for p in &points {
                for (outcome, v) in [
                    ("received", p.shared.received.load(Ordering::Relaxed)),
                    ("dropped", p.shared.dropped.load(Ordering::Relaxed)),
                ] {
                    let labels = [
                        ("capture", p.capture.as_str()),
                        ("host", s.host_id.as_str()),
                        ("interface", p.interface.as_str()),
                        ("outcome", outcome),
                    ];
                    ConstCounter::new(v).encode(family.encode_family(&labels)?)?;
                }
            }
        }

        // Export counters by target type: running capture points plus ended ones.
        let mut exports = retired;
        for p in &points {
            if let Some(x) = &p.export {
                exports
                    .entry(p.target_type.clone())
                    .or_default()
                    .add(ExportTotals::of(x));
            }
        }
        let mut exports: Vec<(String, ExportTotals)> = exports.into_iter().collect();
        exports.sort_by(|a, b| a.0.cmp(&b.0));
        {
            let mut family = encoder.encode_descriptor(
                "topotap_export_messages",
                "Messages sent to flow collectors and mirror receivers (NetFlow, IPFIX, sFlow datagrams; ERSPAN packets), or that failed to send",
                None,
                MetricType::Counter,
            )?;
            for (target_type, t) in &exports {
                for (outcome, v) in [("sent", t.messages), ("error", t.errors)] {
                    let labels = [("target_type", target_type.as_str()), ("outcome", outcome)];
                    ConstCounter::new(v).encode(family.encode_family(&labels)?)?;
                }
            }
        }
        {
            let unit = Unit::Bytes;
            let mut family = encoder.encode_descriptor(
                "topotap_export",
                "Bytes sent to flow collectors and mirror receivers",
                Some(&unit),
                MetricType::Counter,
            )?;
            for (target_type, t) in &exports {
                let labels = [("target_type", target_type.as_str())];
                ConstCounter::new(t.bytes).encode(family.encode_family(&labels)?)?;
            }
        }

        {
            let mut family = encoder.encode_descriptor(
                "topotap_websocket_clients",
                "WebSocket clients connected, by endpoint",
                None,
                MetricType::Gauge,
            )?;
            for (kind, n) in (s.websocket_clients)() {
                let labels = [("kind", kind)];
                ConstGauge::new(n as i64).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

/// The standard `process_*` metrics, from `/proc/self`.
#[derive(Debug)]
struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Ok(me) = procfs::process::Process::myself() else {
            return Ok(());
        };
        if let Ok(stat) = me.stat() {
            let tps = procfs::ticks_per_second() as f64;
            let cpu = ConstCounter::new((stat.utime + stat.stime) as f64 / tps);
            let unit = Unit::Seconds;
            cpu.encode(encoder.encode_descriptor(
                "process_cpu",
                "Total user and system CPU time spent in seconds",
                Some(&unit),
                cpu.metric_type(),
            )?)?;
            let page = procfs::page_size() as i64;
            let bytes = Unit::Bytes;
            let rss = ConstGauge::new(stat.rss as i64 * page);
            rss.encode(encoder.encode_descriptor(
                "process_resident_memory",
                "Resident memory size in bytes",
                Some(&bytes),
                rss.metric_type(),
            )?)?;
            let vsize = ConstGauge::new(stat.vsize as i64);
            vsize.encode(encoder.encode_descriptor(
                "process_virtual_memory",
                "Virtual memory size in bytes",
                Some(&bytes),
                vsize.metric_type(),
            )?)?;
            gauge(
                &mut encoder,
                "process_threads",
                "Number of OS threads in the process",
                stat.num_threads,
            )?;
            if let Ok(boot) = procfs::boot_time_secs() {
                let start = ConstGauge::new(boot as f64 + stat.starttime as f64 / tps);
                start.encode(encoder.encode_descriptor(
                    "process_start_time",
                    "Start time of the process since unix epoch in seconds",
                    Some(&unit),
                    start.metric_type(),
                )?)?;
            }
        }
        if let Ok(n) = me.fd_count() {
            gauge(
                &mut encoder,
                "process_open_fds",
                "Number of open file descriptors",
                n as i64,
            )?;
        }
        if let Ok(limits) = me.limits() {
            if let procfs::process::LimitValue::Value(max) = limits.max_open_files.soft_limit {
                gauge(
                    &mut encoder,
                    "process_max_fds",
                    "Maximum number of open file descriptors",
                    max as i64,
                )?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use topotap_topology::Graph;

    #[test]
    fn routes_are_templates_with_bounded_values() {
        assert_eq!(route_template("/api/node/abc-123"), "/api/node/{id}");
        assert_eq!(route_template("/api/capture/"), "/api/capture");
        assert_eq!(
            route_template("/api/injectpacket/x"),
            "/api/injectpacket/{id}"
        );
        assert_eq!(route_template("/ui/js/app.js"), "/ui/{path}");
        assert_eq!(route_template("/"), "/");
        assert_eq!(route_template("/api/node/a/b"), "unmatched");
        assert_eq!(route_template("/random/path/123"), "unmatched");
    }

    #[test]
    fn openmetrics_only_when_preferred() {
        assert!(!wants_openmetrics(None));
        assert!(!wants_openmetrics(Some("*/*")));
        assert!(!wants_openmetrics(Some("text/plain;version=0.0.4")));
        assert!(wants_openmetrics(Some(
            "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.4,*/*;q=0.1"
        )));
        assert!(!wants_openmetrics(Some(
            "application/openmetrics-text;q=0.2,text/plain;q=0.9"
        )));
        assert!(!wants_openmetrics(Some("application/openmetrics-text;q=0")));
    }

    fn board_metrics(board: Arc<CaptureBoard>) -> Metrics {
        Metrics::new(Sources {
            history: None,
            graph: SharedGraph::new(Graph::new(), "h"),
            host_id: "h".into(),
            captures: board,
            websocket_clients: Arc::new(Vec::new),
            etcd: None,
        })
    }

    /// A capture point that sent `sent` datagrams of 100 bytes to a loopback socket.
    fn point(uuid: &str, sent: u64) -> ((String, String), CapturePoint) {
        let collector = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let peer = collector.local_addr().unwrap();
        let exporter = topotap_targets::send::UdpExporter::connect_addr(peer).unwrap();
        for _ in 0..sent {
            assert!(exporter.send(&[0u8; 100]));
        }
        let export = ExportStats::new(exporter.counters(), peer);
        let shared = Arc::new(WorkerShared::default());
        shared.received.store(7, Ordering::Relaxed);
        (
            (uuid.into(), "node".into()),
            CapturePoint {
                capture: uuid.into(),
                interface: "eth0".into(),
                target_type: "netflowv5".into(),
                shared,
                export: Some(export),
            },
        )
    }

    #[test]
    fn export_counters_survive_the_end_of_their_capture() {
        let board = Arc::new(CaptureBoard::default());
        let m = board_metrics(board.clone());
        let b = point("b", 4);
        board.sync([point("a", 3), b.clone()], 1);
        let (text, _) = m.render(None);
        assert!(text.contains(
            "topotap_export_messages_total{target_type=\"netflowv5\",outcome=\"sent\"} 7\n"
        ));
        assert!(
            text.contains("topotap_captures{state=\"error\"} 1\n"),
            "{text}"
        );
        assert!(text.contains(
            "topotap_capture_packets_total{capture=\"a\",host=\"h\",interface=\"eth0\",outcome=\"received\"} 7\n"
        ), "{text}");
        // "a" ends: its series goes, its exports stay counted.
        board.sync([b], 0);
        let (text, _) = m.render(None);
        assert!(
            text.contains(
                "topotap_export_messages_total{target_type=\"netflowv5\",outcome=\"sent\"} 7\n"
            ),
            "{text}"
        );
        assert!(text.contains("topotap_export_bytes_total{target_type=\"netflowv5\"} 700\n"));
        assert!(!text.contains("capture=\"a\""), "{text}");
    }
}
