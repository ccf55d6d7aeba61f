//! The `ipfix` target: a flow table per capture point whose flows are exported as IPFIX (RFC 7011)
//! messages to the capture's `Target` (`host:port`, usually port 4739) over UDP, from topotap's own
//! namespace.
//!
//! Same flow semantics and timeouts as the `netflowv5` target (see [`super::netflow`]), IPv4 and IPv6
//! alike, with absolute millisecond timestamps and a flowEndReason per record
//! ([`topotap_targets::export::ipfix`]). Templates 256 (IPv4) and 257 (IPv6) are sent at start and
//! again every 60 s or 20 messages. The observation domain id is a 32-bit hash of the capture and the
//! node, so each capture point has its own sequence at the collector.
//!
//! The standard templates have no sampling field, so this target refuses `SamplingRate` > 1 rather
//! than send counts a collector could not scale.

use topotap_targets::export::ipfix::{IpfixConfig, IpfixExporter};
use topotap_targets::export::pipeline::FlowTimeouts;

use super::{capture_point_hash, connect_udp, meter, FlowExportSink, OpenError};
use crate::capture::placer::Target;
use crate::capture::Capture;

/// IPFIX export of one capture point.
pub type IpfixSink = FlowExportSink<IpfixExporter>;

impl IpfixSink {
    /// Resolves the collector, opens the UDP socket and builds the exporter; the error says why not.
    pub fn open(
        capture: &Capture,
        target: &Target,
        timeouts: FlowTimeouts,
    ) -> Result<Self, OpenError> {
        if capture.sampling_rate > 1 {
            return Err(OpenError::Config(format!(
                "the ipfix target does not sample (SamplingRate {}: use 1, or the sflow or netflowv5 target)",
                capture.sampling_rate
            )));
        }
        let sender = connect_udp(capture)?;
        let config = IpfixConfig {
            observation_domain_id: capture_point_hash(capture, target) as u32,
            ingress_if_index: u32::try_from(target.if_index).unwrap_or(0),
            ..IpfixConfig::default()
        };
        let exporter = IpfixExporter::new(config).map_err(|e| OpenError::Config(e.to_string()))?;
        Ok(FlowExportSink::new(
            meter(capture, target, 1, timeouts),
            exporter,
            sender,
        ))
    }
}
