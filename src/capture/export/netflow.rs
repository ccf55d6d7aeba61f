//! The `netflowv5` target: a flow table per capture point whose flows are exported as NetFlow v5
//! records to the capture's `Target` (`host:port`, often port 2055) over UDP, from topotap's own
//! namespace.
//!
//! The record semantics are those of [`topotap_targets::export::pipeline`]: one record per direction
//! that saw packets since the previous export, Layer-3 byte deltas, the real protocol number,
//! cumulative TCP flags per direction, the first packet's ToS, `input` = the captured interface's
//! ifindex (in its namespace) and `output` = 0, `First`/`Last`/`SysUptime` in ms since this capture
//! point started (for `/api/pcap` and `topotap pcap`: since the file's first packet, so flows keep
//! the durations the file recorded). Flows are exported every active timeout (default 60 s,
//! `--flow-export-active-timeout`) while active and once more when idle for the inactive timeout
//! (default 15 s, `--flow-export-inactive-timeout`); stopping or deleting the capture (or stopping
//! topotap) exports everything still held. `SamplingRate` N > 1 accounts 1 packet in N and announces it in `sampling_interval`.
//! IPv6 flows do not fit v5: they are counted in `Export.Skipped` (use the `ipfix` target for them).
//!
//! `engine_type`/`engine_id` are a 16-bit hash of the capture and the node, so that a collector keeps
//! one `flow_sequence` per capture point even when several send from the same address.
//!
//! The timeouts are constants: Skydive's capture resource has no field for them.

use topotap_targets::export::netflow::{NetflowV5Config, NetflowV5Exporter};
use topotap_targets::export::pipeline::FlowTimeouts;

use super::{capture_point_hash, connect_udp, meter, FlowExportSink, OpenError};
use crate::capture::engine;
use crate::capture::placer::Target;
use crate::capture::Capture;

/// NetFlow v5 export of one capture point.
pub type NetflowSink = FlowExportSink<NetflowV5Exporter>;

impl NetflowSink {
    /// Resolves the collector, opens the UDP socket and builds the exporter; the error says why not.
    pub fn open(
        capture: &Capture,
        target: &Target,
        timeouts: FlowTimeouts,
    ) -> Result<Self, OpenError> {
        // Blocking: a full socket buffer delays the capture thread for a moment instead of losing
        // records (the kernel ring keeps capturing meanwhile).
        let sender = connect_udp(capture)?;
        let point = capture_point_hash(capture, target);
        let config = NetflowV5Config {
            // A capture file restarts this clock at its first packet (`start_clock`).
            boot: engine::now(),
            engine_type: (point >> 8) as u8,
            engine_id: point as u8,
            sampling_interval: capture.sampling_rate.max(1),
            input_if_index: u32::try_from(target.if_index).unwrap_or(0),
        };
        let exporter =
            NetflowV5Exporter::new(config).map_err(|e| OpenError::Config(e.to_string()))?;
        Ok(FlowExportSink::new(
            meter(capture, target, config.sampling_interval, timeouts),
            exporter,
            sender,
        ))
    }
}
