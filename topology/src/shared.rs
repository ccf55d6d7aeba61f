//! The graph shared between probes, the API and subscribers.

use std::sync::Arc;

use parking_lot::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use tokio::sync::broadcast;

use crate::{Edge, Graph, GraphEvent, Node};

/// A [`Graph`] behind a read/write lock, cheap to clone. Queries take the read lock;
/// probes take the write lock for one batch of changes at a time.
#[derive(Clone, Default)]
pub struct SharedGraph {
    inner: Arc<RwLock<Graph>>,
    host: Arc<str>,
}

impl SharedGraph {
    /// A graph whose elements created by this process carry `Host = host`.
    pub fn new(graph: Graph, host: &str) -> Self {
        SharedGraph {
            inner: Arc::new(RwLock::new(graph)),
            host: Arc::from(host),
        }
    }

    /// This process' host id.
    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn read(&self) -> RwLockReadGuard<'_, Graph> {
        self.inner.read()
    }

    pub fn write(&self) -> RwLockWriteGuard<'_, Graph> {
        self.inner.write()
    }

    /// Subscribes to changes without taking the lock.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<GraphEvent>> {
        self.inner.read().subscribe()
    }

    /// Subscribes and copies every node and edge under one read lock: the copy plus the
    /// events that follow are the graph, with nothing missed or seen twice.
    pub fn subscribe_with_snapshot(
        &self,
    ) -> (broadcast::Receiver<Arc<GraphEvent>>, Vec<Node>, Vec<Edge>) {
        let g = self.inner.read();
        let rx = g.subscribe();
        let (nodes, edges) = g.snapshot();
        (rx, nodes, edges)
    }
}
