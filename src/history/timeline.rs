//! Feeds a [`History`]'s in-memory [`Timeline`] from the graph's events, in every
//! server that keeps history (a fleet's followers too, which do not write the store):
//! the recent past is then asked without reading the store.
//!
//! The same times as the store's writer ([`Clock`]): a revision begins at the
//! element's `UpdatedAt`, a deletion ends it when seen, times never go back. Events
//! are applied in batches under a short write lock; after the broadcast lagged, the
//! timeline is brought to a fresh snapshot ([`Timeline::reconcile`]), as the writer
//! does with the store.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::{broadcast, watch};
use topotap_topology::timeline::Timeline;
use topotap_topology::{now_ms, GraphEvent, SharedGraph};

use super::writer::{Clock, RETENTION_EVERY};
use super::History;

/// Most events applied under one write lock.
pub const BATCH: usize = 1024;

/// A timeline that answers for no time yet: [`feed`] starts it at its first snapshot.
pub(crate) fn unfed(budget: u64) -> Timeline {
    Timeline::new(i64::MAX, budget)
}

/// Applies one event.
fn apply(tl: &mut Timeline, clock: &mut Clock, ev: &GraphEvent) {
    let at = clock.at(ev);
    match ev {
        GraphEvent::NodeAdded(n) | GraphEvent::NodeUpdated(n) => tl.open_node(at, n),
        GraphEvent::EdgeAdded(e) | GraphEvent::EdgeUpdated(e) => tl.open_edge(at, e),
        GraphEvent::NodeDeleted(n) => tl.close_node(at, &n.id),
        GraphEvent::EdgeDeleted(e) => tl.close_edge(at, &e.id),
    }
}

/// Reads the store's horizon off the async workers (the timeline answers nothing
/// before it).
async fn refresh_horizon(history: &History) {
    let h = history.clone();
    let read = tokio::task::spawn_blocking(move || {
        topotap_topology::blocking::section("history horizon");
        h.refresh_horizon()
    })
    .await;
    if let Ok(Err(err)) = read {
        tracing::debug!(error = %err, "history: cannot read the horizon");
    }
}

/// Keeps `history`'s timeline current with `graph` until `shutdown` turns true.
pub async fn feed(graph: SharedGraph, history: History, mut shutdown: watch::Receiver<bool>) {
    let Some(timeline) = history.timeline().cloned() else {
        return;
    };
    let mut clock = Clock::new();
    let mut horizon = tokio::time::interval(RETENTION_EVERY);
    horizon.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut batch: Vec<Arc<GraphEvent>> = Vec::with_capacity(BATCH);
    'resync: loop {
        let (mut rx, nodes, edges) = graph.subscribe_with_snapshot();
        let at = clock.stamp(now_ms());
        {
            let mut tl = timeline.write();
            if tl.start() == i64::MAX {
                *tl = Timeline::new(at, tl.stats().budget);
            }
            tl.reconcile(at, &nodes, &edges);
        }
        drop((nodes, edges));
        loop {
            let first = tokio::select! {
                r = rx.recv() => r,
                _ = horizon.tick() => {
                    refresh_horizon(&history).await;
                    continue;
                }
                _ = shutdown.changed() => return,
            };
            match first {
                Ok(ev) => batch.push(ev),
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    history
                        .stats
                        .timeline_resyncs
                        .fetch_add(1, Ordering::Relaxed);
                    continue 'resync;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
            let mut lagged = false;
            while batch.len() < BATCH {
                match rx.try_recv() {
                    Ok(ev) => batch.push(ev),
                    Err(broadcast::error::TryRecvError::Lagged(_)) => {
                        lagged = true;
                        break;
                    }
                    Err(_) => break,
                }
            }
            {
                let mut tl = timeline.write();
                for ev in batch.drain(..) {
                    apply(&mut tl, &mut clock, &ev);
                }
            }
            if lagged {
                history
                    .stats
                    .timeline_resyncs
                    .fetch_add(1, Ordering::Relaxed);
                continue 'resync;
            }
        }
    }
}
