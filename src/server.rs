//! `topotap allinone`: the graph, its probes and the API in one process.

use anyhow::Context;
use tokio::net::TcpListener;
use topotap_topology::{Graph, SharedGraph};
use tracing::info;

use crate::api::{self, AppState};
use crate::cli::ServerArgs;

pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    init_logging();
    let host_id = match args.host_id.clone() {
        Some(h) if !h.is_empty() => h,
        _ => hostname(),
    };
    let graph = SharedGraph::new(Graph::new(), &host_id);
    let state = AppState::new(graph, &host_id);

    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let local = listener.local_addr()?;
    info!(%local, host = %host_id, "topotap API listening");
    // Scripts wait for this line to know the API is up.
    println!("listening on http://{local}");

    let routes = api::routes(state);
    warp::serve(routes)
        .incoming(listener)
        .graceful(shutdown_signal())
        .run()
        .await;
    info!("topotap stopped");
    Ok(())
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TOPOTAP_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    info!("shutting down");
}
