//! Fleet mode: `topotap agent` on every host pushes its subgraph to analyzers;
//! `topotap analyzer` merges them into one graph and replicates it to its peers.
//!
//! - [`protocol`]: Skydive's handshake headers and `Graph` envelopes.
//! - [`link`]: the sending side of a connection (sync, deltas, resync, backoff).
//! - [`agent`]: an agent's links to its analyzers.
//! - [`analyzer`]: the receiving side (`/ws/agent/topology`, `/ws/replication`).
//! - [`merge`]: how messages change the merged graph, and who may write what.
//! - [`tunnels`]: edges an analyzer derives between tunnels and their remote hosts.
//! - [`ondemand`]: an agent's answers to analyzers' requests (captures, injections,
//!   flow tables).
//! - [`dispatch`]: the leading analyzer's placement of captures and injections on
//!   agents.
//! - [`relay`]: an analyzer's forwarding of a peer's requests to its own agents.

pub mod agent;
pub mod analyzer;
pub mod dispatch;
pub mod link;
pub mod merge;
pub mod ondemand;
pub mod protocol;
pub mod relay;
pub mod replication;
pub mod tunnels;
