//! The topology graph: store, change events, identities and the Gremlin evaluator.
#![forbid(unsafe_code)]

pub mod blocking;
pub mod element;
pub mod graph;
pub mod gremlin;
mod id;
pub mod schema;
pub mod shared;
pub mod tid;
pub mod timeline;

pub use element::{now_ms, Edge, Metadata, Node};
pub use graph::{EdgeIx, EdgeRef, Graph, GraphError, GraphEvent, NodeIx, NodeRef, View};
pub use id::Identifier;
pub use shared::SharedGraph;
