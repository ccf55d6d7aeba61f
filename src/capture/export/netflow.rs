//! The `netflowv5` target: a flow table per capture point whose flows are exported as NetFlow v5
//! records to the capture's `Target` (`host:port`, often port 2055) over UDP, from topotap's own
//! namespace.
//!
//! The record semantics are those of [`topotap_targets::export::pipeline`]: one record per direction
//! that saw packets since the previous export, Layer-3 byte deltas, the real protocol number,
//! cumulative TCP flags per direction, the first packet's ToS, `input` = the captured interface's
//! ifindex (in its namespace) and `output` = 0, `First`/`Last`/`SysUptime` in ms since this capture
//! point started. Flows are exported every active timeout (default 60 s, `--flow-export-active-timeout`)
//! while active and once more when idle for the inactive timeout (default 15 s,
//! `--flow-export-inactive-timeout`); stopping or deleting the capture (or stopping topotap) exports everything
//! still held. `SamplingRate` N > 1 accounts 1 packet in N and announces it in `sampling_interval`.
//! IPv6 flows do not fit v5: they are counted in `Export.Skipped` (use the `ipfix` target for them).
//!
//! `engine_type`/`engine_id` are a 16-bit hash of the capture and the node, so that a collector keeps
//! one `flow_sequence` per capture point even when several send from the same address.
//!
//! The timeouts are constants: Skydive's capture resource has no field for them.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use topotap_targets::export::netflow::{NetflowV5Config, NetflowV5Exporter};
use topotap_targets::export::pipeline::{ExportPipeline, FlowExporter, FlowMeter, FlowTimeouts};
use topotap_targets::flow::{xxh64, FlowTableConfig};
use topotap_targets::packet::{LinkType, Timestamp};
use topotap_targets::send::UdpExporter;

use crate::capture::engine::{self, ExportStats, PacketSink};
use crate::capture::placer::Target;
use crate::capture::{parse_target, Capture};

/// NetFlow v5 export of one capture point.
pub type NetflowSink = FlowExportSink<NetflowV5Exporter>;

/// A flow exporter (NetFlow v5 or IPFIX) of one capture point and its collector socket.
pub struct FlowExportSink<E> {
    pipeline: ExportPipeline<E>,
    sender: UdpExporter,
    stats: Arc<ExportStats>,
}

impl NetflowSink {
    /// Resolves the collector, opens the UDP socket and builds the exporter; the error says why not.
    pub fn open(
        capture: &Capture,
        target: &Target,
        timeouts: FlowTimeouts,
    ) -> Result<Self, String> {
        let sender = connect(capture, "NetFlow", 2055)?;
        let point = capture_point_hash(capture, target);
        let config = NetflowV5Config {
            boot: engine::now(),
            engine_type: (point >> 8) as u8,
            engine_id: point as u8,
            sampling_interval: capture.sampling_rate.max(1),
            input_if_index: u32::try_from(target.if_index).unwrap_or(0),
        };
        let exporter = NetflowV5Exporter::new(config).map_err(|e| e.to_string())?;
        Ok(FlowExportSink::new(
            meter(capture, target, config.sampling_interval, timeouts),
            exporter,
            sender,
        ))
    }
}

impl<E: FlowExporter> FlowExportSink<E> {
    pub fn new(meter: FlowMeter, exporter: E, sender: UdpExporter) -> Self {
        FlowExportSink {
            pipeline: ExportPipeline::new(meter, exporter),
            sender,
            stats: Arc::default(),
        }
    }

    /// Flows the format could not carry, shown as `Export.Skipped`.
    fn publish_skipped(&self) {
        let s = self.pipeline.exporter.stats();
        self.stats.skipped.store(s.skipped_ipv6, Ordering::Relaxed);
    }
}

/// The flow table of a capture point, with the export timeouts and 1-in-`sampling` packet sampling.
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

/// Resolves the capture's `Target` once and connects a UDP socket to it, in the calling thread's
/// namespace (topotap's: `sink_for` runs outside the capture thread).
pub fn connect(capture: &Capture, format: &str, usual_port: u16) -> Result<UdpExporter, String> {
    let (host, port) = parse_target(&capture.target)?;
    if port == 0 {
        return Err(format!(
            "{format} target {} needs a port (usually {usual_port})",
            capture.target
        ));
    }
    let peer: SocketAddr = (host.as_str(), port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {format} target {}: {e}", capture.target))?
        .next()
        .ok_or_else(|| format!("{format} target {} has no address", capture.target))?;
    // Blocking: a full socket buffer delays the capture thread for a moment instead of losing records
    // (the kernel ring keeps capturing meanwhile). A refused or unroutable collector fails at once.
    UdpExporter::connect_addr(peer).map_err(|e| format!("cannot open a UDP socket to {peer}: {e}"))
}

/// Sends one datagram of `records` flow records and accounts for it.
fn send(sender: &UdpExporter, stats: &ExportStats, datagram: &[u8], records: u32) {
    if sender.send(datagram) {
        stats.messages.fetch_add(1, Ordering::Relaxed);
        stats
            .records
            .fetch_add(u64::from(records), Ordering::Relaxed);
        stats
            .bytes
            .fetch_add(datagram.len() as u64, Ordering::Relaxed);
    } else {
        // `send` just failed in a syscall on this thread, and only atomics ran since: errno is still
        // its error.
        let e = std::io::Error::last_os_error();
        stats.send_errors.fetch_add(1, Ordering::Relaxed);
        *stats.last_error.lock() = Some(format!("send to {}: {e}", sender.peer()));
    }
}

impl<E: FlowExporter + Send> PacketSink for FlowExportSink<E> {
    fn packet(&mut self, link: LinkType, ts: Timestamp, orig_len: u32, data: &[u8]) {
        self.pipeline.packet(link, ts, orig_len, data);
    }

    fn tick(&mut self, now: Timestamp) {
        let (sender, stats) = (&self.sender, &*self.stats);
        self.pipeline
            .tick(now, |d, records| send(sender, stats, d, records));
        self.publish_skipped();
    }

    fn finish(&mut self, now: Timestamp) {
        let (sender, stats) = (&self.sender, &*self.stats);
        self.pipeline
            .finish(now, |d, records| send(sender, stats, d, records));
        self.publish_skipped();
    }

    fn export_stats(&self) -> Option<Arc<ExportStats>> {
        Some(self.stats.clone())
    }
}
