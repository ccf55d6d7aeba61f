//! Starts the probes on an empty graph and prints, whenever it changes, how many veth
//! and netns nodes whose `Name` starts with a prefix are in the graph, and how many
//! `layer2 {Type: veth}` edges join two of them:
//! `<unix ms> veth=<n> netns=<m> pairs=<p> nodes=<total>`. Used by `bench/netns-scale.sh`.
//!
//! `cargo run --release -p topotap-probes --example watch -- [PREFIX]`

use std::time::Duration;

use topotap_probes::{start, ProbesConfig};
use topotap_topology::{now_ms, Graph, SharedGraph};

fn main() -> anyhow::Result<()> {
    let prefix = std::env::args().nth(1).unwrap_or_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let config = ProbesConfig::default();
        let graph = SharedGraph::new(Graph::new(), &config.host_id);
        let probes = start(graph.clone(), config).await?;
        println!("ready");
        let mut last = (usize::MAX, usize::MAX, usize::MAX, usize::MAX);
        loop {
            let now = {
                let g = graph.read();
                let mut veth = 0;
                let mut netns = 0;
                for n in g.nodes() {
                    let m = g.node(n).metadata();
                    let named = m
                        .get("Name")
                        .and_then(|v| v.as_str())
                        .is_some_and(|s| s.starts_with(&prefix));
                    match m.get("Type").and_then(|v| v.as_str()) {
                        Some("veth") if named => veth += 1,
                        Some("netns") if named => netns += 1,
                        _ => {}
                    }
                }
                let named = |n: topotap_topology::NodeRef<'_>| {
                    n.metadata()
                        .get("Name")
                        .and_then(|v| v.as_str())
                        .is_some_and(|s| s.starts_with(&prefix))
                };
                let pairs = g
                    .edges()
                    .map(|e| g.edge(e))
                    .filter(|e| {
                        e.metadata().get("Type").and_then(|v| v.as_str()) == Some("veth")
                            && named(e.parent())
                            && named(e.child())
                    })
                    .count();
                (veth, netns, pairs, g.node_count())
            };
            if now != last {
                println!(
                    "{} veth={} netns={} pairs={} nodes={}",
                    now_ms(),
                    now.0,
                    now.1,
                    now.2,
                    now.3
                );
                last = now;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(5)) => {}
                _ = tokio::signal::ctrl_c() => break,
            }
        }
        probes.shutdown().await;
        Ok(())
    })
}
