//! Sinks that export what a capture sees. They own the sockets (opened in topotap's
//! namespace by `sink_for`, off the async workers: opening resolves names) and drive the
//! pure exporters of `topotap_targets::export`; what they send is counted in their
//! sender's [`SendCounters`](topotap_targets::send::SendCounters), shown as `Export`.
//!
//! - [`resolve_collector`]: the one place a capture's `Target` becomes an address, for
//!   the sinks and for the filter that keeps topotap's own exports out of every capture
//!   ([`export_flows`]).
//! - [`FlowExportSink`]: the NetFlow v5 and IPFIX sinks (a flow meter, an exporter, a
//!   UDP socket); [`netflow`] and [`ipfix`] only configure it.
//! - [`sflow`] and [`erspan`]: an sFlow agent and an ERSPAN mirroring session.

pub mod erspan;
pub mod ipfix;
pub mod netflow;
pub mod sflow;

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use topotap_targets::export::pipeline::{ExportPipeline, FlowExporter, FlowMeter, FlowTimeouts};
use topotap_targets::flow::{xxh64, FlowTableConfig};
use topotap_targets::packet::{LinkType, Timestamp};
use topotap_targets::send::{resolve_host, resolve_socket_addr, UdpExporter};

use super::engine::{ExportFlow, ExportStats, PacketSink};
use super::placer::Target;
use super::{parse_target, Capture, TargetType};
use crate::error::Error;

/// Where a capture's exports go, resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Collector {
    /// A NetFlow, IPFIX or sFlow collector.
    Udp(SocketAddr),
    /// An ERSPAN destination (GRE has no port).
    Gre(IpAddr),
}

impl Collector {
    /// The traffic topotap sends there, to keep out of every capture.
    pub fn export_flow(&self) -> ExportFlow {
        match *self {
            Collector::Udp(a) => ExportFlow::Udp(a.ip(), a.port()),
            Collector::Gre(ip) => ExportFlow::Gre(ip),
        }
    }
}

/// Why a capture's sink could not be opened. What validation lets through can still
/// fail here only because of the environment ([`OpenError::Resolve`],
/// [`OpenError::Socket`]: unavailable, try again), or, for a target validation did not
/// see, because of the capture itself ([`OpenError::Target`], [`OpenError::Config`]).
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The target is not an address this target type can send to.
    #[error("{0}")]
    Target(String),
    /// The collector's name does not resolve.
    #[error("cannot resolve {kind} target {target}: {source}")]
    Resolve {
        kind: TargetType,
        target: String,
        source: io::Error,
    },
    /// The socket could not be opened or configured.
    #[error("cannot open a {what} socket to {peer}: {source}")]
    Socket {
        what: &'static str,
        peer: String,
        source: io::Error,
    },
    /// The exporter refuses the capture's parameters.
    #[error("{0}")]
    Config(String),
}

impl OpenError {
    fn socket(what: &'static str, peer: impl ToString) -> impl FnOnce(io::Error) -> Self {
        let peer = peer.to_string();
        move |source| OpenError::Socket { what, peer, source }
    }
}

impl From<OpenError> for Error {
    fn from(e: OpenError) -> Self {
        match e {
            OpenError::Target(_) | OpenError::Config(_) => Error::invalid(e),
            OpenError::Resolve { .. } | OpenError::Socket { .. } => Error::unavailable(e),
        }
    }
}

/// Resolves a capture's `Target` for its `TargetType`: `host:port` for the UDP formats,
/// a host (any port ignored) for ERSPAN. Blocks on a name lookup: call it on a blocking
/// thread, never on an async worker.
pub fn resolve_collector(kind: TargetType, target: &str) -> Result<Collector, OpenError> {
    let (host, port) = parse_target(target).map_err(|e| OpenError::Target(e.to_string()))?;
    let resolve = |source| OpenError::Resolve {
        kind,
        target: target.to_owned(),
        source,
    };
    match kind.usual_port() {
        _ if kind.is_erspan() => resolve_host(&host).map(Collector::Gre).map_err(resolve),
        None => Err(OpenError::Target(format!("{kind} does not export"))),
        Some(usual) if port == 0 => Err(OpenError::Target(format!(
            "{kind} target {target} needs a port (usually {usual})"
        ))),
        Some(_) => match host.parse::<IpAddr>() {
            Ok(ip) => Ok(SocketAddr::new(ip, port)),
            Err(_) => resolve_socket_addr(&format!("{host}:{port}")),
        }
        .map(Collector::Udp)
        .map_err(resolve),
    }
}

/// Every destination topotap exports to, to exclude from all captures (a target that
/// does not resolve sends nothing and is left out). Blocks on name lookups, like
/// [`resolve_collector`].
pub fn export_flows(captures: &[Capture]) -> Vec<ExportFlow> {
    let mut out: Vec<ExportFlow> = captures
        .iter()
        .filter(|c| !c.target.is_empty() && c.target_kind().is_export())
        .filter_map(|c| resolve_collector(c.target_kind(), &c.target).ok())
        .map(|c| c.export_flow())
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Resolves the capture's `Target` and connects a UDP socket to it, in the calling
/// thread's namespace (topotap's: `sink_for` runs outside the capture thread).
pub fn connect_udp(capture: &Capture) -> Result<UdpExporter, OpenError> {
    let kind = capture.target_kind();
    let Collector::Udp(peer) = resolve_collector(kind, &capture.target)? else {
        return Err(OpenError::Target(format!("{kind} is not a UDP target")));
    };
    UdpExporter::connect_addr(peer).map_err(OpenError::socket("UDP", peer))
}

/// The flow table of a capture point, with the export timeouts and 1-in-`sampling`
/// packet sampling.
pub fn meter(
    capture: &Capture,
    target: &Target,
    sampling: u32,
    timeouts: FlowTimeouts,
) -> FlowMeter {
    let config = timeouts.table_config(FlowTableConfig {
        capture_id: capture.uuid.clone(),
        node_tid: target.tid.clone(),
        ..FlowTableConfig::default()
    });
    FlowMeter::new(config, sampling)
}

/// A stable hash of (capture, node): the identity of a capture point at the collector.
pub fn capture_point_hash(capture: &Capture, target: &Target) -> u64 {
    xxh64(format!("{}/{}", capture.uuid, target.node).as_bytes(), 0)
}

/// A flow exporter (NetFlow v5 or IPFIX) of one capture point and its collector socket.
pub struct FlowExportSink<E> {
    pipeline: ExportPipeline<E>,
    sender: UdpExporter,
    stats: Arc<ExportStats>,
}

impl<E: FlowExporter> FlowExportSink<E> {
    pub fn new(meter: FlowMeter, exporter: E, sender: UdpExporter) -> Self {
        let stats = ExportStats::new(sender.counters(), sender.peer());
        FlowExportSink {
            pipeline: ExportPipeline::new(meter, exporter),
            sender,
            stats,
        }
    }

    /// Flows the format could not carry, shown as `Export.Skipped`.
    fn publish_skipped(&self) {
        let s = self.pipeline.exporter.stats();
        self.stats.counters().set_skipped(s.skipped_ipv6);
    }
}

impl<E: FlowExporter + Send> PacketSink for FlowExportSink<E> {
    fn packet(&mut self, link: LinkType, ts: Timestamp, orig_len: u32, data: &[u8]) {
        self.pipeline.packet(link, ts, orig_len, data);
    }

    fn sampled(
        &mut self,
        link: LinkType,
        ts: Timestamp,
        orig_len: u32,
        data: &[u8],
        sampling_rate: u32,
    ) {
        self.pipeline
            .sampled(link, ts, orig_len, data, sampling_rate);
    }

    fn tick(&mut self, now: Timestamp) {
        let sender = &self.sender;
        self.pipeline.tick(now, |d, records| {
            sender.send_records(d, u64::from(records));
        });
        self.publish_skipped();
    }

    fn start_clock(&mut self, first: Timestamp) {
        self.pipeline.exporter.start_clock(first);
    }

    fn retag(&mut self, node_tid: &str) {
        self.pipeline.meter.retag(node_tid);
    }

    fn finish(&mut self, now: Timestamp) {
        let sender = &self.sender;
        self.pipeline.finish(now, |d, records| {
            sender.send_records(d, u64::from(records));
        });
        self.publish_skipped();
    }

    fn export_stats(&self) -> Option<Arc<ExportStats>> {
        Some(self.stats.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collectors_resolve_by_target_type() {
        use TargetType::*;
        assert_eq!(
            resolve_collector(NetflowV5, "127.0.0.1:2055").unwrap(),
            Collector::Udp("127.0.0.1:2055".parse().unwrap())
        );
        assert_eq!(
            resolve_collector(Sflow, "[::1]:6343").unwrap(),
            Collector::Udp("[::1]:6343".parse().unwrap())
        );
        assert_eq!(
            resolve_collector(ErspanV1, "[fd00::2]:0").unwrap(),
            Collector::Gre("fd00::2".parse().unwrap())
        );
        let Ok(Collector::Udp(a)) = resolve_collector(Ipfix, "localhost:4739") else {
            panic!("localhost does not resolve");
        };
        assert!(a.ip().is_loopback() && a.port() == 4739);
        let e = resolve_collector(Ipfix, "127.0.0.1:0").unwrap_err();
        assert!(e.to_string().contains("needs a port (usually 4739)"), "{e}");
        assert!(matches!(Error::from(e), Error::Invalid(_)));
        let e = resolve_collector(NetflowV5, "no-such-collector.invalid:2055").unwrap_err();
        assert!(e.to_string().contains("cannot resolve"), "{e}");
        assert!(matches!(Error::from(e), Error::Unavailable(_)));
    }

    #[test]
    fn export_flows_are_resolved_once_each() {
        let capture = |ty: &str, target: &str| Capture {
            target_type: TargetType::from_field(ty).unwrap(),
            target: target.into(),
            ..Capture::default()
        };
        let flows = export_flows(&[
            capture("netflowv5", "127.0.0.1:2055"),
            capture("ipfix", "127.0.0.1:2055"),
            capture("erspanv2", "127.0.0.9:0"),
            capture("", ""),
            capture("sflow", "no-such-collector.invalid:6343"),
        ]);
        assert_eq!(
            flows,
            [
                ExportFlow::Udp("127.0.0.1".parse().unwrap(), 2055),
                ExportFlow::Gre("127.0.0.9".parse().unwrap()),
            ]
        );
    }
}
