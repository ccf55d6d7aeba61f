//! The `sflow` target: an sFlow v5 agent per capture point, sending to the capture's `Target`
//! (`host:port`, usually port 6343) over UDP from topotap's namespace.
//!
//! - Flow samples: random 1-in-`SamplingRate` (0 or 1 = every packet), the first `HeaderSize` bytes of
//!   each sampled frame (128 when `HeaderSize` is 0), `drops` = the capture's kernel drops.
//! - Counter samples: generic interface counters every `PollingInterval` seconds, 0 = none (Skydive's
//!   and Open vSwitch's meaning; the Skydive CLI sends 10 by default). They come from the node's
//!   `Metric` (kernel statistics, refreshed by the netlink probe every few seconds), `LinkFlags`,
//!   `State`, `Speed` and `EncapType`.
//! - Agent address: the host's primary IPv4 address (the source of its default route); without a
//!   default route, the address topotap sends from towards the collector.
//! - Sub-agent id and sampling seed: stable hashes of the capture UUID and the node, so that each
//!   capture point has its own datagram sequence at the collector.
//! - Datagrams stay under a 1500-byte path MTU (1472 bytes of UDP payload to an IPv4 collector, 1452 to
//!   an IPv6 one) and leave at most one tick (100 ms) after their first sample.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use topotap_targets::export::sflow::{
    header_protocol, SflowAgent, SflowConfig, DEFAULT_HEADER_SIZE,
};
use topotap_targets::packet::{LinkType, Timestamp};
use topotap_targets::send::UdpExporter;
use topotap_targets::wire::sflow5::{udp_payload_budget, DatagramHeader, IfCounters};
use topotap_targets::wire::Reader;
use topotap_topology::Metadata;
use topotap_topology::{Identifier, SharedGraph};

use super::erspan::fnv1a;
use super::{connect_udp, OpenError};
use crate::capture::engine::{ExportStats, PacketSink};
use crate::capture::placer::Target;
use crate::capture::{Capture, SinkContext};

/// Path MTU assumed towards collectors.
pub const PATH_MTU: usize = 1500;

/// Samples one capture point and exports sFlow v5 datagrams.
pub struct SflowSink {
    agent: SflowAgent,
    exporter: UdpExporter,
    stats: Arc<ExportStats>,
    graph: Option<SharedGraph>,
    node: Identifier,
}

impl SflowSink {
    /// Resolves the collector, opens the UDP socket and starts the agent; the error says why not.
    pub fn open(capture: &Capture, target: &Target, ctx: &SinkContext) -> Result<Self, OpenError> {
        let exporter = connect_udp(capture)?;
        let peer = exporter.peer();
        // Never stall the capture thread on a full socket buffer: such sends fail and are counted.
        exporter
            .set_nonblocking(true)
            .map_err(OpenError::socket("UDP", peer))?;
        let from = exporter.local_addr().ok().map(|a| a.ip());
        let point = format!("{}/{}", capture.uuid, target.node);
        let header_size = if capture.header_size > 0 {
            capture.header_size as usize
        } else {
            DEFAULT_HEADER_SIZE
        };
        let config = SflowConfig {
            agent: ctx
                .sflow_agent
                .unwrap_or_else(|| default_agent_address(from)),
            sub_agent_id: fnv1a(point.as_bytes()) as u32,
            sampling_rate: capture.sampling_rate.max(1),
            header_size,
            polling_interval: Duration::from_secs(u64::from(capture.polling_interval)),
            if_index: u32::try_from(target.if_index).unwrap_or(0),
            budget: udp_payload_budget(PATH_MTU, peer.is_ipv6()),
            seed: fnv1a(format!("seed/{point}").as_bytes()),
        };
        let agent = SflowAgent::new(config, crate::capture::engine::now())
            .map_err(|e| OpenError::Config(format!("sFlow agent: {e}")))?;
        Ok(Self {
            agent,
            stats: ExportStats::new(exporter.counters(), peer),
            exporter,
            graph: Some(ctx.graph.clone()),
            node: target.node.clone(),
        })
    }

    fn counters(&self) -> IfCounters {
        self.graph
            .as_ref()
            .and_then(|g| {
                let g = g.read();
                g.node_by_id(&self.node).map(|n| if_counters(n.metadata()))
            })
            .unwrap_or_default()
    }
}

/// Sends a datagram, counting the samples it carries.
fn send(exporter: &UdpExporter, datagram: &[u8]) {
    let samples = DatagramHeader::parse(&mut Reader::new(datagram))
        .map(|(_, n)| u64::from(n))
        .unwrap_or(0);
    exporter.send_records(datagram, samples);
}

impl PacketSink for SflowSink {
    fn packet(&mut self, link: LinkType, ts: Timestamp, orig_len: u32, data: &[u8]) {
        let protocol = match link {
            LinkType::Ethernet => header_protocol::ETHERNET,
            LinkType::Ipv4 => header_protocol::IPV4,
            LinkType::Ipv6 => header_protocol::IPV6,
            LinkType::Raw => match data.first().map(|b| b >> 4) {
                Some(6) => header_protocol::IPV6,
                _ => header_protocol::IPV4,
            },
            // Cooked and loopback headers have no sFlow header protocol.
            _ => return,
        };
        let Self {
            agent, exporter, ..
        } = self;
        agent.packet(ts, protocol, orig_len, data, &mut |d| send(exporter, d));
    }

    fn tick(&mut self, now: Timestamp) {
        if self.agent.counters_due(now) {
            let counters = self.counters();
            let Self {
                agent, exporter, ..
            } = self;
            agent.push_counters(now, counters, &mut |d| send(exporter, d));
        }
        let Self {
            agent, exporter, ..
        } = self;
        agent.flush(now, &mut |d| send(exporter, d));
    }

    fn finish(&mut self, now: Timestamp) {
        let Self {
            agent, exporter, ..
        } = self;
        agent.flush(now, &mut |d| send(exporter, d));
    }

    fn start_clock(&mut self, first: Timestamp) {
        self.agent.start_clock(first);
    }

    fn capture_drops(&mut self, dropped: u64) {
        self.agent.set_drops(dropped);
    }

    fn export_stats(&self) -> Option<Arc<ExportStats>> {
        Some(self.stats.clone())
    }
}

/// The agent address: the host's primary IPv4 address, i.e. the source address of its default route
/// (found by a route lookup: connecting a UDP socket sends nothing), else `fallback` (the address the
/// exporter sends from), else 0.0.0.0.
pub fn default_agent_address(fallback: Option<IpAddr>) -> IpAddr {
    let primary = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))
        .and_then(|s| {
            // TEST-NET-2: never a local network, so the lookup takes the default route.
            s.connect((Ipv4Addr::new(198, 51, 100, 1), 9))?;
            s.local_addr()
        })
        .ok()
        .map(|a: SocketAddr| a.ip())
        .filter(|ip| !ip.is_unspecified());
    primary
        .or(fallback.filter(|ip| !ip.is_unspecified()))
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

fn metric(md: &Metadata, key: &str) -> u64 {
    md.get("Metric")
        .and_then(|m| m.get(key))
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

/// Generic interface counters (sFlow counter record 0:1) from an interface node's metadata. Packet
/// counters are 32-bit on the wire and wrap like SNMP counters; counters the kernel does not keep
/// (broadcasts, unknown protocols, outgoing multicast) are 2^32-1, sFlow's "unknown".
pub fn if_counters(md: &Metadata) -> IfCounters {
    const UNKNOWN: u32 = u32::MAX;
    let if_type = match md.get("EncapType").and_then(Value::as_str) {
        Some("ether") => 6,     // ethernetCsmacd
        Some("loopback") => 24, // softwareLoopback
        _ => 1,                 // other
    };
    let admin_up = md
        .get("LinkFlags")
        .and_then(Value::as_array)
        .is_some_and(|f| f.iter().any(|v| v == "UP"));
    let oper_up = md.get("State").and_then(Value::as_str) == Some("UP");
    let rx_packets = metric(md, "RxPackets");
    let multicast = metric(md, "Multicast");
    IfCounters {
        if_index: md.get("IfIndex").and_then(Value::as_u64).unwrap_or(0) as u32,
        if_type,
        // `Speed` is in Mbit/s.
        if_speed: md
            .get("Speed")
            .and_then(Value::as_u64)
            .unwrap_or(0)
            .saturating_mul(1_000_000),
        if_direction: 0,
        if_status: u32::from(admin_up) | u32::from(oper_up) << 1,
        in_octets: metric(md, "RxBytes"),
        in_ucast_pkts: rx_packets.saturating_sub(multicast) as u32,
        in_multicast_pkts: multicast as u32,
        in_broadcast_pkts: UNKNOWN,
        in_discards: metric(md, "RxDropped") as u32,
        in_errors: metric(md, "RxErrors") as u32,
        in_unknown_protos: UNKNOWN,
        out_octets: metric(md, "TxBytes"),
        out_ucast_pkts: metric(md, "TxPackets") as u32,
        out_multicast_pkts: UNKNOWN,
        out_broadcast_pkts: UNKNOWN,
        out_discards: metric(md, "TxDropped") as u32,
        out_errors: metric(md, "TxErrors") as u32,
        // The capture opens the interface in promiscuous mode.
        promiscuous_mode: 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn counters_from_node_metadata() {
        let md = json!({
            "IfIndex": 7, "EncapType": "ether", "LinkFlags": ["UP", "BROADCAST"], "State": "UP",
            "Speed": 10000,
            "Metric": {"RxPackets": 110, "Multicast": 10, "RxBytes": 5_000_000_000u64,
                       "TxPackets": 4_294_967_297u64, "TxBytes": 99, "RxDropped": 2, "TxErrors": 3}
        });
        let c = if_counters(md.as_object().unwrap());
        assert_eq!((c.if_index, c.if_type, c.if_speed), (7, 6, 10_000_000_000));
        assert_eq!(c.if_status, 3);
        assert_eq!((c.in_ucast_pkts, c.in_multicast_pkts), (100, 10));
        assert_eq!(c.in_octets, 5_000_000_000);
        assert_eq!(c.out_ucast_pkts, 1, "32-bit counters wrap");
        assert_eq!((c.out_octets, c.in_discards, c.out_errors), (99, 2, 3));
        assert_eq!(c.in_broadcast_pkts, u32::MAX);
        let down = json!({"LinkFlags": ["BROADCAST"], "State": "DOWN"});
        let c = if_counters(down.as_object().unwrap());
        assert_eq!((c.if_status, c.if_type, c.in_octets), (0, 1, 0));
        let admin_only = json!({"LinkFlags": ["UP"], "State": "LOWERLAYERDOWN"});
        assert_eq!(if_counters(admin_only.as_object().unwrap()).if_status, 1);
    }

    #[test]
    fn agent_address_is_never_unspecified_when_a_fallback_exists() {
        let fallback = IpAddr::V4(Ipv4Addr::new(10, 9, 8, 7));
        let a = default_agent_address(Some(fallback));
        assert!(!a.is_unspecified());
        assert!(a.is_ipv4());
    }
}
