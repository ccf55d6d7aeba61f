//! sFlow counter samples as interface metrics. An agent polling its interfaces (Open
//! vSwitch with a `polling` interval, hsflowd, a switch) sends generic interface
//! counters (`if_counters`) by ifIndex; each becomes the `SFlow` key of the matching
//! interface node: `SFlow.Metric` (totals since the first sample) and
//! `SFlow.LastUpdateMetric` (what changed since the previous one), with the netlink
//! probe's counter names and `Start`/`Last`, so `Metrics('SFlow')` reads them as it
//! reads the netlink probe's `LastUpdateMetric` (Skydive's `TestSFlowMetric`).
//!
//! The matching node is found from the captured node: for an OVS bridge, the
//! interfaces of its ports; for an interface, the interfaces of its namespace (its
//! owner's), itself included. A sample whose ifIndex matches none is dropped.

use serde_json::{Map, Value};
use topotap_probes::netlink::translate::next_metric_of;
use topotap_targets::wire::sflow5::IfCounters;
use topotap_topology::schema::{self, node_type};
use topotap_topology::{Graph, Identifier, NodeIx, SharedGraph};

/// The metadata key the counters go under.
pub const SFLOW_KEY: &str = "SFlow";

/// Writes the counter samples a capture receives into the graph.
#[derive(Clone)]
pub struct CounterWriter {
    pub graph: SharedGraph,
    /// The captured node.
    pub node: Identifier,
}

impl CounterWriter {
    /// Writes `samples` (received at `now_ms`) into the interfaces they match; returns
    /// how many nodes changed.
    pub fn write(&self, samples: &[IfCounters], now_ms: i64) -> usize {
        if samples.is_empty() {
            return 0;
        }
        topotap_topology::blocking::section("sFlow counters");
        let mut g = self.graph.write();
        let Some(ix) = g.find_node(&self.node) else {
            return 0;
        };
        let interfaces = interfaces_of(&g, ix);
        let mut changed = 0;
        for c in samples {
            for (_, id) in interfaces
                .iter()
                .filter(|(i, _)| *i == i64::from(c.if_index))
            {
                let Some(nix) = g.find_node(id) else { continue };
                let previous = g
                    .node(nix)
                    .metadata()
                    .get(SFLOW_KEY)
                    .and_then(|s| s.get("Metric"))
                    .cloned();
                let Some((metric, last)) = next_metric_of(previous.as_ref(), counters(c), now_ms)
                else {
                    continue;
                };
                let mut sflow = Map::new();
                sflow.insert("Metric".into(), metric);
                if let Some(last) = last {
                    sflow.insert("LastUpdateMetric".into(), last);
                }
                if g.update_node(id, |m| {
                    m.insert(SFLOW_KEY.into(), Value::Object(sflow));
                })
                .unwrap_or(false)
                {
                    changed += 1;
                }
            }
        }
        changed
    }
}

/// The generic interface counters under the netlink probe's names (non-zero ones, as
/// the netlink probe writes them).
pub fn counters(c: &IfCounters) -> Map<String, Value> {
    let rx_packets = u64::from(c.in_ucast_pkts)
        + u64::from(c.in_multicast_pkts)
        + u64::from(c.in_broadcast_pkts);
    let tx_packets = u64::from(c.out_ucast_pkts)
        + u64::from(c.out_multicast_pkts)
        + u64::from(c.out_broadcast_pkts);
    let mut m = Map::new();
    for (k, v) in [
        ("Multicast", u64::from(c.in_multicast_pkts)),
        ("RxBytes", c.in_octets),
        ("RxDropped", u64::from(c.in_discards)),
        ("RxErrors", u64::from(c.in_errors)),
        ("RxPackets", rx_packets),
        ("TxBytes", c.out_octets),
        ("TxDropped", u64::from(c.out_discards)),
        ("TxErrors", u64::from(c.out_errors)),
        ("TxPackets", tx_packets),
    ] {
        if v != 0 {
            m.insert(k.to_owned(), Value::from(v));
        }
    }
    m
}

/// `(IfIndex, ID)` of the interfaces whose counters a capture on `ix` may receive.
fn interfaces_of(g: &Graph, ix: NodeIx) -> Vec<(i64, Identifier)> {
    let children = |ix: NodeIx| g.out_edges(ix).map(move |e| g.edge(e).child().ix());
    let md = g.node(ix).metadata();
    let mut nodes: Vec<NodeIx> = if schema::type_of(md) == Some(node_type::OVSBRIDGE) {
        children(ix)
            .filter(|&p| schema::type_of(g.node(p).metadata()) == Some(node_type::OVSPORT))
            .flat_map(children)
            .collect()
    } else {
        let owners: Vec<NodeIx> = g
            .in_edges(ix)
            .filter(|&e| schema::is_ownership(g.edge(e).metadata()))
            .map(|e| g.edge(e).parent().ix())
            .collect();
        let mut v: Vec<NodeIx> = owners.into_iter().flat_map(children).collect();
        v.push(ix);
        v
    };
    let mut seen = Vec::new();
    nodes.retain(|n| {
        let new = !seen.contains(n);
        seen.push(*n);
        new
    });
    nodes
        .into_iter()
        .filter_map(|n| {
            let node = g.node(n);
            let i = node
                .metadata()
                .get(schema::key::IF_INDEX)
                .and_then(Value::as_i64)?;
            Some((i, node.id().clone()))
        })
        .collect()
}
