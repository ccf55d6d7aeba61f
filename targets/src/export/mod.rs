//! Exporters of one capture point: state machines fed captured frames and a caller's clock, producing
//! the datagrams or packets a sender puts on the wire. No sockets, no clock reads.
//!
//! - [`sflow`]: an sFlow v5 agent (random 1-in-N packet sampling, interface counter polling).
//! - [`erspan`]: an ERSPAN Type II/III mirroring session.

pub mod erspan;
pub mod sflow;
