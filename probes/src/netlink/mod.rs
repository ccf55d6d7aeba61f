//! Netlink probes: one per namespace, translating rtnetlink messages into interface
//! nodes and their layer2 relations.

pub mod ethtool;
pub mod probe;
pub mod registry;
pub mod translate;
