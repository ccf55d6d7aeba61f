//! The `local` target: a flow table per capture point, and the `Flows()` Gremlin step
//! over all of them (Skydive §6.6).
//!
//! `G.Flows(...)` gives every flow, `G.V()...Flows()` the flows captured on those nodes.
//! On a flow set: `Has`/`HasEither` (with `Network`, `Link` and `Transport` matching
//! either end), `Dedup([key])` (default `TrackingID`), `Sort([ASC|DESC,] [key])`
//! (default `Last`), `Range`/`Limit`, `Count`, `Values(key)`, `Sum(key)` and
//! `CaptureNode()`/`Hops()`/`Node()` (the node each flow was captured on).

use std::any::Any;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;
use serde_json::{json, Value};
use topotap_grammar::ast::{Param, Step, StepKind};
use topotap_targets::flow::{Flow, FlowTable};
use topotap_targets::packet::{decode, LinkType, Timestamp};
use topotap_topology::element::lookup;
use topotap_topology::gremlin::{
    compile, pick, CompileError, Compiled, EvalError, ExtOutput, Extensions, Output, Records,
    StepExtension, ValueFilter,
};
use topotap_topology::{Identifier, NodeIx, View};

use super::engine::PacketSink;
use super::raw::{RawPacket, RawStore};
use crate::history::flows::PastFlow;

/// One capture point's flow table, shared between its capture thread and queries.
pub struct FlowSource {
    pub node: Identifier,
    pub capture_id: String,
    pub table: Mutex<FlowTable>,
    /// Raw frames kept per flow (`RawPacketLimit`); locked after `table` when both are.
    pub raw: Mutex<RawStore>,
}

impl FlowSource {
    pub fn new(node: Identifier, capture_id: String, table: FlowTable) -> FlowSource {
        FlowSource {
            node,
            capture_id,
            table: Mutex::new(table),
            raw: Mutex::default(),
        }
    }
}

/// Every live flow table, by (capture, node).
#[derive(Default)]
pub struct FlowRegistry {
    sources: Mutex<BTreeMap<(String, Identifier), Arc<FlowSource>>>,
    /// Tables of finished pcap uploads, oldest first, kept for queries.
    retained: Mutex<std::collections::VecDeque<(String, Identifier)>>,
}

/// How many finished pcap uploads stay queryable with `Flows()`.
pub const RETAINED_UPLOADS: usize = 16;

impl FlowRegistry {
    /// Keeps a finished table (a pcap upload) queryable, forgetting the oldest beyond
    /// [`RETAINED_UPLOADS`].
    pub fn retain(&self, source: Arc<FlowSource>) {
        let key = (source.capture_id.clone(), source.node.clone());
        self.add(source);
        let mut retained = self.retained.lock();
        retained.push_back(key);
        while retained.len() > RETAINED_UPLOADS {
            if let Some(old) = retained.pop_front() {
                self.sources.lock().remove(&old);
            }
        }
    }

    pub fn add(&self, source: Arc<FlowSource>) {
        self.sources
            .lock()
            .insert((source.capture_id.clone(), source.node.clone()), source);
    }

    /// The flow table counters of one capture point, as shown in its `Captures` entry.
    pub fn table_stats(&self, capture_id: &str, node: &Identifier) -> Option<Value> {
        let source = self
            .sources
            .lock()
            .get(&(capture_id.to_owned(), node.clone()))
            .cloned()?;
        let st = source.table.lock().stats();
        Some(json!({
            "Active": st.flows,
            "Created": st.created,
            "Expired": st.expired,
            "Evicted": st.evicted,
            "Undecoded": st.undecoded,
        }))
    }

    /// Flows currently held for a capture, over all its capture points.
    pub fn flow_count(&self, capture_id: &str) -> usize {
        let sources: Vec<Arc<FlowSource>> = self.sources.lock().values().cloned().collect();
        sources
            .iter()
            .filter(|s| s.capture_id == capture_id)
            .map(|s| s.table.lock().len())
            .sum()
    }

    pub fn remove(&self, capture_id: &str, node: &Identifier) {
        self.sources
            .lock()
            .remove(&(capture_id.to_owned(), node.clone()));
    }

    /// Every table as (capture, node, flows as JSON), at most `max` flows in all; true
    /// when some were left out.
    pub fn tables(&self, max: usize) -> (Vec<(String, Identifier, Vec<Value>)>, bool) {
        let sources: Vec<Arc<FlowSource>> = self.sources.lock().values().cloned().collect();
        let mut out = Vec::new();
        let mut left = max;
        let mut truncated = false;
        for s in sources {
            let t = s.table.lock();
            truncated |= t.len() > left;
            let flows: Vec<Value> = t.flows().take(left).map(Flow::to_json).collect();
            left -= flows.len();
            out.push((s.capture_id.clone(), s.node.clone(), flows));
        }
        (out, truncated)
    }

    /// The raw packets a capture kept for flow `uuid`.
    pub fn raw_packets(&self, capture_id: &str, uuid: u64) -> Vec<RawPacket> {
        let sources: Vec<Arc<FlowSource>> = self
            .sources
            .lock()
            .iter()
            .filter(|((c, _), _)| c == capture_id)
            .map(|(_, s)| s.clone())
            .collect();
        for s in sources {
            let raw = s.raw.lock();
            let packets = raw.packets_of(uuid);
            if !packets.is_empty() {
                return packets.to_vec();
            }
        }
        Vec::new()
    }

    /// Copies of the flows of the sources `keep` accepts.
    fn collect(&self, keep: impl Fn(&FlowSource) -> bool) -> Vec<Flow> {
        let sources: Vec<Arc<FlowSource>> = self.sources.lock().values().cloned().collect();
        let mut out = Vec::new();
        for s in sources.iter().filter(|s| keep(s)) {
            out.extend(s.table.lock().flows().cloned());
        }
        out
    }
}

/// Feeds captured frames into a flow table.
pub struct LocalSink {
    pub source: Arc<FlowSource>,
    pub registry: Arc<FlowRegistry>,
    /// Keep the table queryable after the capture ends (pcap uploads).
    pub retain: bool,
    /// Raw frames to keep per flow (`RawPacketLimit`, 0 = none).
    pub raw_limit: u8,
    /// Where flow snapshots go for the history (`None`: history off).
    pub history: Option<crate::history::flows::FlowRecorder>,
}

impl LocalSink {
    /// Records a flow event for the history; `raw`: the capture point's raw frames
    /// (locked by the caller), whose frames of the flow go with its snapshot.
    fn record(&self, now: Timestamp, ev: &topotap_targets::flow::FlowEvent, raw: &RawStore) {
        if let Some(h) = &self.history {
            let s = &self.source;
            h.record(&s.capture_id, &s.node, now.as_millis() as i64, ev, || {
                let packets = raw.packets_of(ev.flow.uuid());
                if packets.is_empty() {
                    Vec::new()
                } else {
                    super::raw::encode_packets(packets)
                }
            });
        }
    }
}

impl PacketSink for LocalSink {
    fn packet(&mut self, link: LinkType, ts: Timestamp, orig_len: u32, data: &[u8]) {
        let packet = decode(link, data);
        let mut table = self.source.table.lock();
        if self.raw_limit == 0 {
            table.process(ts, &packet, orig_len);
            return;
        }
        let raw = &self.source.raw;
        table.process_keeping(ts, &packet, orig_len, self.raw_limit, |flow| {
            let frame = RawPacket {
                ts,
                index: flow.raw_packets_captured() + 1,
                link,
                orig_len,
                data: data.into(),
            };
            raw.lock()
                .keep(flow.uuid(), flow.raw_packets_captured() + 1, frame)
        });
    }

    fn sampled(
        &mut self,
        link: LinkType,
        ts: Timestamp,
        orig_len: u32,
        data: &[u8],
        sampling_rate: u32,
    ) {
        if sampling_rate <= 1 {
            // Raw packets are kept for unsampled frames as for captured ones.
            return self.packet(link, ts, orig_len, data);
        }
        let packet = decode(link, data);
        self.source
            .table
            .lock()
            .process_sampled(ts, &packet, orig_len, sampling_rate);
    }

    fn retag(&mut self, node_tid: &str) {
        self.source.table.lock().retag(node_tid);
    }

    fn tick(&mut self, now: Timestamp) {
        let mut t = self.source.table.lock();
        // Updates and expiries are state transitions of the table: snapshots for the
        // history (queued, never waited for), with the flow's raw frames; the raw
        // frames of a flow go with it.
        let mut raw = self.source.raw.lock();
        for e in t.poll_updates(now) {
            self.record(now, &e, &raw);
        }
        for e in t.drain_expired(now) {
            self.record(now, &e, &raw);
            raw.forget(e.flow.uuid());
        }
    }

    fn finish(&mut self, now: Timestamp) {
        if self.retain {
            self.tick(now);
            if self.history.is_some() {
                // In the history, the upload's flows end with the file (they stay in
                // the live table for queries).
                let t = self.source.table.lock();
                let raw = self.source.raw.lock();
                for flow in t.flows() {
                    let ev = topotap_targets::flow::FlowEvent {
                        kind: topotap_targets::flow::FlowEventKind::Flushed,
                        flow: flow.clone(),
                    };
                    self.record(now, &ev, &raw);
                }
            }
            // Kept for queries only: no more packets will come.
            self.source.table.lock().shrink_to_fit();
            self.registry.retain(self.source.clone());
        } else {
            if self.history.is_some() {
                // The flows end with the capture.
                let mut t = self.source.table.lock();
                let raw = self.source.raw.lock();
                for e in t.poll_updates(now) {
                    self.record(now, &e, &raw);
                }
                for e in t.flush_all() {
                    self.record(now, &e, &raw);
                }
            }
            self.registry
                .remove(&self.source.capture_id, &self.source.node);
        }
    }
}

/// The `Flows()` step.
pub struct FlowsStep {
    pub registry: Arc<FlowRegistry>,
    /// An analyzer's: the flows its agents answered for this query.
    pub remote: Option<Arc<RemoteFlows>>,
    /// A query of a past time (`G.At`/`G.Context`): the flows of that time, from the
    /// history, instead of the live tables.
    pub past: Option<Arc<Vec<Arc<PastFlow>>>>,
}

impl FlowsStep {
    /// The step of a query of a past time: the flows read from the history.
    pub fn past(flows: Vec<PastFlow>) -> FlowsStep {
        FlowsStep {
            registry: Arc::default(),
            remote: None,
            past: Some(Arc::new(flows.into_iter().map(Arc::new).collect())),
        }
    }
}

/// Flows fetched from elsewhere (an analyzer's agents), as JSON with the node each
/// was captured on.
pub type Fetched = Vec<(Identifier, Arc<Value>)>;
/// Fetches remote flows: the flows, and one line per source that did not answer fully.
pub type FetchFlows =
    Arc<dyn Fn() -> futures_util::future::BoxFuture<'static, (Fetched, Vec<String>)> + Send + Sync>;
/// Fetches the remote flows of a past time (`from`, `at`: ms since the epoch) from
/// their sources' histories: the flows, and one line per source that did not answer
/// fully.
pub type FetchPastFlows = Arc<
    dyn Fn(i64, i64) -> futures_util::future::BoxFuture<'static, (Vec<PastFlow>, Vec<String>)>
        + Send
        + Sync,
>;

/// The flows of an analyzer's agents, fetched before each query that uses `Flows()`
/// (never while the graph is locked) and read by the step.
pub struct RemoteFlows {
    fetch: FetchFlows,
    fetch_past: FetchPastFlows,
    last: Mutex<Arc<Fetched>>,
}

impl RemoteFlows {
    pub fn new(fetch: FetchFlows, fetch_past: FetchPastFlows) -> Arc<Self> {
        Arc::new(RemoteFlows {
            fetch,
            fetch_past,
            last: Mutex::default(),
        })
    }

    /// Fetches the flows again; returns what did not answer (one line each).
    pub async fn refresh(&self) -> Vec<String> {
        let (flows, errors) = (self.fetch)().await;
        *self.last.lock() = Arc::new(flows);
        errors
    }

    /// The flows of the time `[from, at]` (ms since the epoch), and what did not answer
    /// (one line each).
    pub async fn past(&self, from: i64, at: i64) -> (Vec<PastFlow>, Vec<String>) {
        (self.fetch_past)(from, at).await
    }

    fn collect(&self, keep: impl Fn(&Identifier) -> bool) -> Vec<FlowItem> {
        let last = self.last.lock().clone();
        last.iter()
            .filter(|(n, _)| keep(n))
            .map(|(_, f)| FlowItem::Remote(f.clone()))
            .collect()
    }
}

/// One flow of a `Flows()` answer: from a local table, or as an agent sent it.
#[derive(Clone)]
pub enum FlowItem {
    Table(Flow),
    Remote(Arc<Value>),
    /// From the history: the flow as it was, with its metric samples of the time asked.
    Past(Arc<PastFlow>),
}

/// The dotted path `key` in a flow's JSON.
fn json_field(v: &Value, key: &str) -> Option<Value> {
    let mut cur: &Value = v;
    for part in key.split('.') {
        cur = cur.get(part)?;
    }
    Some(cur.clone())
}

impl FlowItem {
    pub fn to_json(&self) -> Value {
        match self {
            FlowItem::Table(f) => f.to_json(),
            FlowItem::Remote(v) => (**v).clone(),
            FlowItem::Past(p) => p.doc.clone(),
        }
    }

    /// A key as `Flow::field` resolves it; for a remote flow, the dotted path in its
    /// JSON.
    pub fn field(&self, key: &str) -> Option<Value> {
        match self {
            FlowItem::Table(f) => f.field(key),
            FlowItem::Remote(v) => json_field(v, key),
            FlowItem::Past(p) => json_field(&p.doc, key),
        }
    }

    pub fn node_tid(&self) -> String {
        match self {
            FlowItem::Table(f) => f.node_tid().to_owned(),
            FlowItem::Remote(v) => v
                .get("NodeTID")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            FlowItem::Past(p) => p
                .doc
                .get("NodeTID")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        }
    }
}

impl StepExtension for FlowsStep {
    fn name(&self) -> &str {
        "Flows"
    }

    fn check(&self, step: &Step) -> Result<(), EvalError> {
        if step.params.is_empty() {
            Ok(())
        } else {
            ValueFilter::new(&step.params, false).map(|_| ())
        }
    }

    fn value_steps(&self) -> &[&str] {
        &["CaptureNode", "Hops", "Node", "Nodes"]
    }

    fn apply(&self, input: Output, step: &Step, graph: View<'_>) -> Result<Output, EvalError> {
        let ids: Option<HashSet<&Identifier>> = match &input {
            Output::Graph { nodes, .. } if is_whole_graph(nodes, graph) => None,
            Output::Graph { nodes, .. } | Output::Nodes(nodes) => {
                Some(nodes.iter().map(|n| graph.node(*n).id()).collect())
            }
            Output::Paths(paths) => Some(
                paths
                    .iter()
                    .flatten()
                    .map(|n| graph.node(*n).id())
                    .collect(),
            ),
            other => return Err(EvalError::cannot_follow(step, other.kind())),
        };
        let keep = |n: &Identifier| ids.as_ref().is_none_or(|ids| ids.contains(n));
        if let Some(past) = &self.past {
            let flows = past
                .iter()
                .filter(|f| keep(&f.node))
                .map(|f| FlowItem::Past(f.clone()))
                .collect();
            let set = FlowSet(flows);
            return if step.params.is_empty() {
                Ok(Output::Ext(Box::new(set)))
            } else {
                set.filter(&step.params, false)
            };
        }
        let mut flows: Vec<FlowItem> = self
            .registry
            .collect(|s| keep(&s.node))
            .into_iter()
            .map(FlowItem::Table)
            .collect();
        if let Some(remote) = &self.remote {
            flows.extend(remote.collect(keep));
        }
        let set = FlowSet(flows);
        if step.params.is_empty() {
            Ok(Output::Ext(Box::new(set)))
        } else {
            set.filter(&step.params, false)
        }
    }
}

/// Compiles a query with the server's extension steps, to check a capture's or an
/// injection's query when it is created (the flow tables play no part in compiling).
pub fn compile_query(text: &str) -> Result<Compiled, CompileError> {
    static EXTENSIONS: OnceLock<Extensions> = OnceLock::new();
    let ext = EXTENSIONS.get_or_init(|| {
        let mut ext = Extensions::new();
        ext.register(Arc::new(FlowsStep {
            registry: Arc::default(),
            remote: None,
            past: None,
        }));
        ext.register(Arc::new(crate::series::MetricsStep));
        ext.register(Arc::new(super::raw::RawPacketsStep {
            registry: Arc::default(),
        }));
        ext
    });
    compile(text, ext)
}

fn is_whole_graph(nodes: &[topotap_topology::NodeIx], graph: View<'_>) -> bool {
    nodes.len() == graph.node_count()
}

/// A set of flows, the value of `Flows()` and the steps that follow it.
pub struct FlowSet(pub Vec<FlowItem>);

/// `Network`, `Link` and `Transport` alone match either end (§2.6).
fn flow_field(flow: &FlowItem, key: &str) -> Option<Value> {
    match key {
        "Network" | "Link" | "Transport" | "IPV4" | "IPV6" | "ETHERNET" | "TCP" | "UDP"
        | "SCTP" => {
            let a = flow.field(&format!("{key}.A"));
            let b = flow.field(&format!("{key}.B"));
            match (a, b) {
                (None, None) => None,
                (a, b) => Some(Value::Array(a.into_iter().chain(b).collect())),
            }
        }
        _ => flow.field(key),
    }
}

fn string_param(step: &Step, i: usize) -> Option<&str> {
    match step.params.get(i) {
        Some(Param::Str(s)) => Some(s),
        _ => None,
    }
}

/// The first node, in graph order, per value of a metadata key (`MAC`, `TID`), among
/// the nodes that pass an optional filter (the step's parameters, as in Skydive where
/// they are added to the lookup).
struct FirstNodeBy {
    index: HashMap<String, NodeIx>,
}

impl FirstNodeBy {
    fn new(graph: View<'_>, key: &str, filter: Option<&ValueFilter>) -> FirstNodeBy {
        let mut index = HashMap::new();
        for n in graph.nodes() {
            let md = graph.node(n).metadata();
            let Some(v) = md.get(key).and_then(Value::as_str) else {
                continue;
            };
            let v = v.to_ascii_lowercase();
            if index.contains_key(&v) {
                continue;
            }
            if let Some(f) = filter {
                if !f.matches(|k| lookup(md, k).map(|l| l.to_value())) {
                    continue;
                }
            }
            index.insert(v, n);
        }
        FirstNodeBy { index }
    }

    fn get(&self, value: &str) -> Option<NodeIx> {
        self.index.get(&value.to_ascii_lowercase()).copied()
    }
}

/// Finds the interface of a MAC address: the node with that `MAC`, else the node whose
/// peer has it (`PeerIntfMAC`), as Skydive does.
struct MacLookup {
    mac: FirstNodeBy,
    peer: FirstNodeBy,
}

impl MacLookup {
    fn new(graph: View<'_>, filter: Option<&ValueFilter>) -> MacLookup {
        MacLookup {
            mac: FirstNodeBy::new(graph, "MAC", filter),
            peer: FirstNodeBy::new(graph, "PeerIntfMAC", filter),
        }
    }

    fn get(&self, mac: &str) -> Option<NodeIx> {
        self.mac.get(mac).or_else(|| self.peer.get(mac))
    }
}

fn node_filter(params: &[Param]) -> Result<Option<ValueFilter>, EvalError> {
    if params.is_empty() {
        Ok(None)
    } else {
        ValueFilter::new(params, false).map(Some)
    }
}

/// `In()` (`a`: the node of the flow's source MAC, `Link.A`), `Out()` (`b`: of its
/// destination MAC, `Link.B`) and `Both()`, one node per flow and end found, in flow
/// order, not deduplicated (Skydive's semantics). Flows without a link layer have no
/// ends.
fn ends(
    flows: &[FlowItem],
    graph: View<'_>,
    params: &[Param],
    a: bool,
    b: bool,
) -> Result<Vec<NodeIx>, EvalError> {
    let filter = node_filter(params)?;
    let macs = MacLookup::new(graph, filter.as_ref());
    let mut out = Vec::new();
    for f in flows {
        if a {
            out.extend(mac_of(f, "Link.A").and_then(|m| macs.get(&m)));
        }
        if b {
            out.extend(mac_of(f, "Link.B").and_then(|m| macs.get(&m)));
        }
    }
    Ok(out)
}

/// A flow's MAC address at `Link.A` or `Link.B`, if it has a link layer.
fn mac_of(flow: &FlowItem, key: &str) -> Option<String> {
    flow.field(key)?.as_str().map(str::to_owned)
}

/// `Nodes()`: per flow, the node it was captured on, then the nodes of its two MACs.
fn seen_on(
    flows: &[FlowItem],
    graph: View<'_>,
    params: &[Param],
) -> Result<Vec<NodeIx>, EvalError> {
    let filter = node_filter(params)?;
    let tids = FirstNodeBy::new(graph, "TID", filter.as_ref());
    let macs = MacLookup::new(graph, filter.as_ref());
    let mut out = Vec::new();
    for f in flows {
        let tid = f.node_tid();
        if !tid.is_empty() {
            out.extend(tids.get(&tid));
        }
        for end in ["Link.A", "Link.B"] {
            out.extend(mac_of(f, end).and_then(|m| macs.get(&m)));
        }
    }
    Ok(out)
}

impl FlowSet {
    fn filter(self, params: &[Param], either: bool) -> Result<Output, EvalError> {
        let filter = ValueFilter::new(params, either)?;
        let flows = self
            .0
            .into_iter()
            .filter(|f| filter.matches(|k| flow_field(f, k)))
            .collect();
        Ok(Output::Ext(Box::new(FlowSet(flows))))
    }
}

impl ExtOutput for FlowSet {
    fn name(&self) -> &str {
        "Flows"
    }

    fn to_json(&self, _: View<'_>) -> Value {
        Value::Array(self.0.iter().map(FlowItem::to_json).collect())
    }

    fn apply_step(self: Box<Self>, step: &Step, graph: View<'_>) -> Result<Output, EvalError> {
        let flows = self.0;
        match &step.kind {
            StepKind::Has => FlowSet(flows).filter(&step.params, false),
            StepKind::HasEither => FlowSet(flows).filter(&step.params, true),
            StepKind::Values => {
                let key =
                    string_param(step, 0).ok_or_else(|| EvalError::new("Values takes one key"))?;
                let values: Vec<Value> = flows
                    .iter()
                    .map(|f| {
                        f.field(key)
                            .ok_or_else(|| EvalError::new(format!("no field '{key}' in a flow")))
                    })
                    .collect::<Result<_, _>>()?;
                Ok(Output::Value(Value::Array(values)))
            }
            StepKind::Sum => {
                let key = string_param(step, 0).unwrap_or("Metric.ABBytes");
                if !(key.starts_with("Metric.") || key.starts_with("LastUpdateMetric.")) {
                    return Err(EvalError::new(format!(
                        "Sum on flows takes a Metric.* or LastUpdateMetric.* key, not '{key}'"
                    )));
                }
                let total: f64 = flows
                    .iter()
                    .filter_map(|f| f.field(key).and_then(|v| v.as_f64()))
                    .sum();
                Ok(Output::Value(json!(total)))
            }
            StepKind::In => Ok(Output::Nodes(ends(
                &flows,
                graph,
                &step.params,
                true,
                false,
            )?)),
            StepKind::Out => Ok(Output::Nodes(ends(
                &flows,
                graph,
                &step.params,
                false,
                true,
            )?)),
            StepKind::Both => Ok(Output::Nodes(ends(
                &flows,
                graph,
                &step.params,
                true,
                true,
            )?)),
            StepKind::Extension(name) if name.eq_ignore_ascii_case("Nodes") => {
                Ok(Output::Nodes(seen_on(&flows, graph, &step.params)?))
            }
            StepKind::Extension(name)
                if ["capturenode", "hops", "node"]
                    .contains(&name.to_ascii_lowercase().as_str()) =>
            {
                let tids: HashSet<String> = flows.iter().map(FlowItem::node_tid).collect();
                let mut seen = HashSet::new();
                let nodes = graph
                    .nodes()
                    .filter(|n| {
                        graph
                            .node(*n)
                            .metadata()
                            .get("TID")
                            .and_then(Value::as_str)
                            .is_some_and(|t| tids.contains(t))
                    })
                    .filter(|n| seen.insert(*n))
                    .collect();
                Ok(Output::Nodes(nodes))
            }
            _ => Err(EvalError::cannot_follow(step, "Flows")),
        }
    }

    fn records(&mut self) -> Option<&mut dyn Records> {
        Some(self)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// `Count`, `Dedup`, `Sort` and `Range`/`Limit` on flows are the core steps.
impl Records for FlowSet {
    fn len(&self) -> usize {
        self.0.len()
    }

    fn field(&self, i: usize, key: &str) -> Option<Value> {
        self.0.get(i).and_then(|f| f.field(key))
    }

    fn keep(&mut self, order: &[usize]) {
        self.0 = pick(std::mem::take(&mut self.0), order);
    }

    fn default_sort_key(&self) -> &str {
        "Last"
    }

    fn default_dedup_keys(&self) -> &[&str] {
        &["TrackingID"]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use topotap_targets::flow::synth::udp_frame;
    use topotap_targets::flow::FlowTableConfig;
    use topotap_topology::gremlin::Budget;
    use topotap_topology::Graph;

    /// Three flows with 1, 2 and 3 client packets, the busiest first seen last.
    fn flows() -> (Graph, Extensions) {
        let mut table = FlowTable::new(FlowTableConfig::default());
        for (flow, packets) in [(7u32, 3u64), (8, 1), (9, 2)] {
            for p in 0..packets {
                let frame = udp_frame(flow, false);
                let ts = Timestamp::from_millis(1_000 * u64::from(flow) + p);
                table.process(ts, &decode(LinkType::Ethernet, &frame), frame.len() as u32);
            }
        }
        let registry = Arc::new(FlowRegistry::default());
        registry.add(Arc::new(FlowSource::new(
            Identifier::from("n"),
            "c".into(),
            table,
        )));
        let mut ext = Extensions::new();
        ext.register(Arc::new(FlowsStep {
            registry,
            remote: None,
            past: None,
        }));
        (Graph::new(), ext)
    }

    /// Flows 7 and 8 captured on node `cap` (TID `tid-cap`), with the client of flow 7,
    /// the server and, after them, a second node with the server's MAC.
    fn flows_on_nodes() -> (Graph, Extensions) {
        let mut table = FlowTable::new(FlowTableConfig {
            node_tid: "tid-cap".into(),
            ..FlowTableConfig::default()
        });
        for flow in [7u32, 8] {
            let frame = udp_frame(flow, false);
            let ts = Timestamp::from_millis(1_000 * u64::from(flow));
            table.process(ts, &decode(LinkType::Ethernet, &frame), frame.len() as u32);
        }
        let registry = Arc::new(FlowRegistry::default());
        registry.add(Arc::new(FlowSource::new(
            Identifier::from("cap"),
            "c".into(),
            table,
        )));
        let mut g = Graph::new();
        for (id, md) in [
            ("cap", json!({"Name": "cap", "TID": "tid-cap"})),
            (
                "client7",
                json!({"Name": "client7", "MAC": "02:00:00:00:07:01"}),
            ),
            (
                "server",
                json!({"Name": "server", "MAC": "02:00:00:00:00:FE", "Type": "veth"}),
            ),
            (
                "server2",
                json!({"Name": "server2", "MAC": "02:00:00:00:00:fe", "Type": "tap"}),
            ),
        ] {
            let md = md.as_object().cloned().unwrap();
            g.add_node(topotap_topology::Node::new(
                Identifier::from(id),
                md,
                "h",
                "test",
            ))
            .unwrap();
        }
        let mut ext = Extensions::new();
        ext.register(Arc::new(FlowsStep {
            registry,
            remote: None,
            past: None,
        }));
        (g, ext)
    }

    #[test]
    fn flows_lead_to_the_nodes_of_their_ends() {
        let (g, ext) = flows_on_nodes();
        let client7 = "G.Flows().Has('Network.A', '10.0.0.7')";
        for (q, want) in [
            (format!("{client7}.In().Values('Name')"), json!(["client7"])),
            // The first node with the MAC, whatever the case of its digits.
            (format!("{client7}.Out().Values('Name')"), json!(["server"])),
            (
                format!("{client7}.Out('Type', 'tap').Values('Name')"),
                json!(["server2"]),
            ),
            (
                format!("{client7}.Out().Has('Type', 'tap').Count()"),
                json!(0),
            ),
            (
                format!("{client7}.Both().Values('Name')"),
                json!(["client7", "server"]),
            ),
            (
                format!("{client7}.Nodes().Values('Name')"),
                json!(["cap", "client7", "server"]),
            ),
            // Flow 8's client has no node: one end each.
            (
                "G.Flows().Sort().In().Values('Name')".into(),
                json!(["client7"]),
            ),
            ("G.Flows().Sort().Out().Count()".into(), json!(2)),
            ("G.Flows().Nodes().Dedup().Count()".into(), json!(3)),
            ("G.Flows().Nodes('Name', 'cap').Count()".into(), json!(2)),
        ] {
            assert_eq!(run(&g, &ext, &q), want, "{q}");
        }
    }

    fn run(g: &Graph, ext: &Extensions, q: &str) -> Value {
        compile(q, ext)
            .unwrap_or_else(|e| panic!("{q}: {e}"))
            .evaluate(g, &Budget::unlimited())
            .unwrap_or_else(|e| panic!("{q}: {e}"))
            .to_json(g)
    }

    #[test]
    fn core_set_steps_work_on_flows() {
        let (g, ext) = flows();
        let packets = ".Values('Metric.ABPackets')";
        for (q, want) in [
            ("G.Flows().Count()", json!(3)),
            (
                &format!("G.Flows().Sort(DESC, 'Metric.ABPackets'){packets}"),
                json!([3, 2, 1]),
            ),
            (
                &format!("G.Flows().Sort('Metric.ABPackets').Limit(2){packets}"),
                json!([1, 2]),
            ),
            // Default key: Last, ascending (flow 7 first, 9 last).
            (&format!("G.Flows().Sort(){packets}"), json!([3, 1, 2])),
            (
                &format!("G.Flows().Sort().Range(1, 3){packets}"),
                json!([1, 2]),
            ),
            ("G.Flows().Range(5, 9).Count()", json!(0)),
            // Default keys: TrackingID, one per flow; every flow has the same server.
            ("G.Flows().Dedup().Count()", json!(3)),
            ("G.Flows().Dedup('Network.B').Count()", json!(1)),
            (
                "G.Flows().Has('Metric.ABPackets', GT(1)).Dedup('Network.B').Count()",
                json!(1),
            ),
        ] {
            assert_eq!(run(&g, &ext, q), want, "{q}");
        }
    }
}
