//! Exporters of one capture point: state machines fed captured frames and a caller's clock, producing
//! the datagrams or packets a sender puts on the wire. No sockets, no clock reads.
//!
//! - [`sflow`]: an sFlow v5 agent (random 1-in-N packet sampling, interface counter polling).
//! - [`erspan`]: an ERSPAN Type II/III mirroring session.
//! - [`pipeline`]: the metering side NetFlow v5 and IPFIX share (1-in-N sampler, flow table with
//!   active/inactive timeouts, unidirectional per-direction delta records), the exporter trait and
//!   [`pipeline::ExportPipeline`], which strings them together.
//! - [`netflow`]: NetFlow v5 exporting process.
//! - [`ipfix`]: IPFIX (RFC 7011) over UDP, templates resent periodically.

pub mod erspan;
pub mod ipfix;
pub mod netflow;
pub mod pipeline;
pub mod sflow;
