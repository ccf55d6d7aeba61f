//! Replication between analyzers (Skydive's `/ws/replication`): each analyzer pushes
//! a full `Sync` of its local hosts (those of its own agents, and what was written
//! through its API) to every peer, then only the changes of those hosts. What came
//! from a peer is never forwarded, so nothing loops; a peer that goes away takes its
//! hosts with it, and a reconnection starts with a full `Sync`. The analyzer a link
//! goes to may send orders for this analyzer's agents back over it ([`super::relay`]).

use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::analyzer::{Fleet, LocalShare};
use super::link::{self, Credentials, Endpoint, LinkSpec, Requests, Share};
use super::protocol;
use super::relay::{Leads, Relay};

/// Starts one replication link per peer; each runs until `shutdown`. `leads` says
/// whether this analyzer leads the dispatch (it then relays no peer's orders).
pub fn start(
    fleet: Arc<Fleet>,
    peers: &[Endpoint],
    credentials: Credentials,
    leads: Leads,
    shutdown: watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    let share: Arc<dyn Share> = Arc::new(LocalShare(fleet.clone()));
    let relay: Arc<dyn Requests> = Arc::new(Relay {
        fleet: fleet.clone(),
        leads,
    });
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
                requests: Some(relay.clone()),
            };
            tokio::spawn(link::run(spec, shutdown.clone()))
        })
        .collect()
}
