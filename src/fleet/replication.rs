//! Replication between analyzers (Skydive's `/ws/replication`): each analyzer pushes
//! a full `Sync` of its local hosts (those of its own agents, and what was written
//! through its API) to every peer, then only the changes of those hosts. What came
//! from a peer is never forwarded, so nothing loops; a peer that goes away takes its
//! hosts with it, and a reconnection starts with a full `Sync`.

use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::analyzer::{Fleet, LocalShare};
use super::link::{self, Credentials, Endpoint, LinkSpec, Share};
use super::protocol;

/// Starts one replication link per peer; each runs until `shutdown`.
pub fn start(
    fleet: Arc<Fleet>,
    peers: &[Endpoint],
    credentials: Credentials,
    shutdown: watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    let share: Arc<dyn Share> = Arc::new(LocalShare(fleet.clone()));
    peers
        .iter()
        .map(|endpoint| {
            let spec = LinkSpec {
                endpoint: endpoint.clone(),
                path: protocol::REPLICATION_PATH,
                host_id: fleet.host_id.clone(),
                client_type: protocol::ANALYZER_CLIENT_TYPE,
                credentials: credentials.clone(),
                share: share.clone(),
                requests: None,
            };
            tokio::spawn(link::run(spec, shutdown.clone()))
        })
        .collect()
}
