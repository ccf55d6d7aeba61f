//! topotap export targets: the wire formats of the capture targets and the sockets that send them.
//!
//! - [`wire`]: pure encoders/decoders (NetFlow v5, IPFIX, sFlow v5, GRE + ERSPAN II/III).
//! - [`export`]: per-capture exporter state machines (sFlow agent, ERSPAN session).
//! - [`send`]: thin senders (a connected UDP exporter socket, a raw GRE socket for ERSPAN).
//!
//! This crate depends on no other topotap crate; the flow table and the capture pipeline call into it.

#![forbid(unsafe_code)]

pub mod export;
pub mod flow;
pub mod packet;
pub mod pcapfile;
pub mod send;
pub mod wire;
