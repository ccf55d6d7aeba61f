//! Sinks that export what a capture sees: they own the sockets (opened in topotap's
//! namespace by `sink_for`) and drive the pure exporters of `topotap_targets::export`.

pub mod erspan;
pub mod ipfix;
pub mod netflow;
pub mod sflow;
