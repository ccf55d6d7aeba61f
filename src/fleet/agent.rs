//! `topotap agent`: the probes' graph pushed to every analyzer.

use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use topotap_topology::{GraphEvent, SharedGraph};

use super::link::{self, Credentials, Endpoint, LinkSpec, Share, Snapshot};
use super::protocol;

/// What an agent shares: its whole graph.
pub struct WholeGraph(pub SharedGraph);

impl Share for WholeGraph {
    fn forwards(&self, _: &GraphEvent) -> bool {
        true
    }

    fn snapshot(&self) -> Snapshot {
        let (rx, nodes, edges) = self.0.subscribe_with_snapshot();
        (nodes, edges, rx)
    }
}

/// Starts one link per analyzer; each runs until `shutdown`.
pub fn start(
    graph: SharedGraph,
    host_id: &str,
    analyzers: &[Endpoint],
    credentials: Credentials,
    requests: Arc<dyn link::Requests>,
    shutdown: watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    let share: Arc<dyn Share> = Arc::new(WholeGraph(graph));
    analyzers
        .iter()
        .map(|endpoint| {
            let spec = LinkSpec {
                endpoint: endpoint.clone(),
                path: protocol::AGENT_PATH,
                host_id: host_id.to_owned(),
                client_type: protocol::AGENT_CLIENT_TYPE,
                credentials: credentials.clone(),
                share: share.clone(),
                requests: Some(requests.clone()),
            };
            tokio::spawn(link::run(spec, shutdown.clone()))
        })
        .collect()
}
