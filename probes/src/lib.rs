//! Live topology probes: the host node, one netlink probe per network namespace, the
//! namespace watcher (netns files and process-held namespaces), the container probe
//! (runc, containerd and Docker) and, when configured, the OVSDB probe.
//!
//! [`start`] creates the host node and starts everything; the returned [`Probes`] handle
//! stops it all when dropped or [shut down](Probes::shutdown).
#![deny(unsafe_code)]

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use parking_lot::Mutex;
use serde_json::Value;
use tokio::task::JoinHandle;
use topotap_topology::{tid, Identifier, Metadata, Node, SharedGraph};

pub mod containers;
pub mod host;
pub mod netlink;
pub mod netns;
mod nsenter;
pub mod ovsdb;
pub mod status;

pub use status::{ProbeState, ProbeStatus};

use netlink::registry::{NsEntry, NsKey, Registry};
use status::StatusBoard;

/// What to probe and how often.
#[derive(Debug, Clone)]
pub struct ProbesConfig {
    /// `Host` of every element and `Name` of the host node; empty = the machine's hostname.
    pub host_id: String,
    /// Directories whose files are network namespaces (bind mounts).
    pub netns_paths: Vec<PathBuf>,
    /// How often `/proc/*/ns/net` is scanned (and the netns directories re-listed).
    pub proc_scan_interval: Duration,
    /// How often interface counters (`Metric`) are refreshed.
    pub metrics_interval: Duration,
    /// OVSDB address (`unix:/path` or `tcp:host:port`); `None` disables the OVSDB probe.
    pub ovsdb: Option<String>,
    /// Keys set on the host node on top of what is read from the machine (Skydive's
    /// agent metadata).
    pub host_metadata: Metadata,
    /// runc state directories (`<root>/<id>/state.json`, or one level deeper for
    /// containerd's namespaces) whose containers name their network namespaces.
    pub runc_roots: Vec<PathBuf>,
    /// The Docker Engine API socket, read when it exists; `None` disables it.
    pub docker_socket: Option<PathBuf>,
}

/// runc roots watched by default: runc's own, containerd's and Docker's.
pub const DEFAULT_RUNC_ROOTS: &[&str] = &[
    "/run/runc",
    "/run/containerd/runc",
    "/run/docker/runtime-runc",
];

/// The Docker Engine API socket read by default.
pub const DEFAULT_DOCKER_SOCKET: &str = "/var/run/docker.sock";

impl Default for ProbesConfig {
    fn default() -> Self {
        ProbesConfig {
            host_id: host::hostname(),
            netns_paths: vec![
                PathBuf::from("/var/run/netns"),
                PathBuf::from("/run/docker/netns"),
            ],
            proc_scan_interval: Duration::from_secs(2),
            metrics_interval: Duration::from_secs(30),
            ovsdb: None,
            host_metadata: Metadata::new(),
            runc_roots: DEFAULT_RUNC_ROOTS.iter().map(PathBuf::from).collect(),
            docker_socket: Some(PathBuf::from(DEFAULT_DOCKER_SOCKET)),
        }
    }
}

/// State shared by every probe task.
pub(crate) struct Ctx {
    pub graph: SharedGraph,
    pub registry: Mutex<Registry>,
    pub host_id: String,
    pub origin: String,
    pub host_node: Identifier,
    pub host_tid: Identifier,
    pub metrics_interval: Duration,
    pub status: StatusBoard,
    /// Network namespaces named after a container (set by the container probe, read by
    /// the netns watcher when a namespace's files change).
    pub container_names: Mutex<HashMap<NsKey, String>>,
    /// Signalled by the netns watcher when it added or removed a namespace.
    pub namespaces_changed: tokio::sync::Notify,
    /// Signalled by the container probe when a container's namespace is not known yet.
    pub rescan_namespaces: tokio::sync::Notify,
}

/// The running probes. Dropping it (or [`Probes::shutdown`]) stops every probe; the
/// graph keeps what they created.
pub struct Probes {
    ctx: Arc<Ctx>,
    tasks: Vec<JoinHandle<()>>,
    ovsdb: Option<Arc<Mutex<ovsdb::OvsdbStatus>>>,
}

impl Probes {
    /// The host node's ID.
    pub fn host_node_id(&self) -> &Identifier {
        &self.ctx.host_node
    }

    /// Per-probe state and errors, by probe name (`netlink`, `netns`, `ovsdb`).
    pub fn status(&self) -> Value {
        let mut v = self.ctx.status.to_json();
        if let Value::Object(m) = &mut v {
            let reg = self.ctx.registry.lock();
            if let Some(o) = &self.ovsdb {
                let o = o.lock().clone();
                let mut v = serde_json::to_value(&o).unwrap_or(Value::Null);
                if let Value::Object(ov) = &mut v {
                    let state = if o.connected { "Running" } else { "Error" };
                    ov.insert("State".into(), Value::from(state));
                }
                m.insert("ovsdb".into(), v);
            }
            m.insert(
                "Summary".into(),
                serde_json::json!({
                    "Namespaces": reg.namespace_count(),
                    "Interfaces": reg.interface_count(),
                }),
            );
        }
        v
    }

    /// A check of namespace file paths: true for a file that is one of the network
    /// namespaces the probes registered (an nsfs inode they know), false for anything
    /// else (a path written into node metadata through the API, a regular file).
    pub fn namespace_check(&self) -> impl Fn(&std::path::Path) -> bool + Send + Sync + 'static {
        use std::os::unix::fs::MetadataExt;
        let ctx = self.ctx.clone();
        move |path: &std::path::Path| {
            let (Ok(file), Ok(own)) = (
                std::fs::metadata(path),
                std::fs::metadata("/proc/self/ns/net"),
            ) else {
                return false;
            };
            // nsfs inodes all live on one device; a regular file elsewhere may share
            // an inode number.
            file.dev() == own.dev() && ctx.registry.lock().has_namespace(file.ino())
        }
    }

    /// One probe's status.
    pub fn probe_status(&self, name: &str) -> Option<ProbeStatus> {
        self.ctx.status.get(name)
    }

    /// Stops every probe and waits for them to end.
    pub async fn shutdown(mut self) {
        for t in &self.tasks {
            t.abort();
        }
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
    }
}

impl Drop for Probes {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// The host node's ID: the node `Type: host` whose `Host` is this graph's host.
pub fn host_node_id(graph: &SharedGraph) -> Option<Identifier> {
    let g = graph.read();
    let host = graph.host();
    let found = g
        .nodes()
        .map(|n| g.node(n))
        .find(|n| {
            n.metadata().get("Type") == Some(&Value::from("host"))
                && (host.is_empty() || n.host() == host)
        })
        .map(|n| n.id().clone());
    found
}

/// Creates the host node and starts the probes. Must be called inside a tokio runtime.
pub async fn start(graph: SharedGraph, config: ProbesConfig) -> anyhow::Result<Probes> {
    let host_id = if config.host_id.is_empty() {
        if graph.host().is_empty() {
            host::hostname()
        } else {
            graph.host().to_owned()
        }
    } else {
        config.host_id.clone()
    };
    let origin = format!("agent.{host_id}");
    let host_tid = tid::host(&host_id);
    let host_node = Identifier::random();
    let mut host_metadata = host::host_metadata(&host_id);
    host_metadata.extend(config.host_metadata.clone());
    graph
        .write()
        .add_node(Node::new(
            host_node.clone(),
            host_metadata,
            &host_id,
            &origin,
        ))
        .context("adding the host node")?;

    let root_file = Arc::new(File::open("/proc/self/ns/net").context("opening own netns")?);
    let root: NsKey = root_file.metadata()?.ino();
    let mut registry = Registry::new(&host_id, &origin);
    registry.add_namespace(
        root,
        NsEntry {
            owner: host_node.clone(),
            owner_tid: host_tid.clone(),
            name: String::new(),
            file: Some(root_file),
        },
    );
    let ctx = Arc::new(Ctx {
        graph: graph.clone(),
        registry: Mutex::new(registry),
        host_id: host_id.clone(),
        origin,
        host_node: host_node.clone(),
        host_tid,
        metrics_interval: config.metrics_interval,
        status: StatusBoard::default(),
        container_names: Mutex::new(HashMap::new()),
        namespaces_changed: tokio::sync::Notify::new(),
        rescan_namespaces: tokio::sync::Notify::new(),
    });

    let mut tasks = Vec::new();
    ctx.status
        .set_state(netlink::probe::STATUS, ProbeState::Starting);
    tasks.push(tokio::spawn(supervise_netlink(
        ctx.clone(),
        root,
        "root".to_owned(),
        None,
    )));

    let watcher = netns::NetnsWatcher::new(
        ctx.clone(),
        config.netns_paths.clone(),
        root,
        config.proc_scan_interval,
    );
    let wctx = ctx.clone();
    tasks.push(tokio::spawn(async move {
        if let Err(e) = watcher.run().await {
            tracing::error!(error = %e, "netns watcher stopped");
            wctx.status.error(netns::STATUS, format!("{e:#}"));
            wctx.status.set_state(netns::STATUS, ProbeState::Error);
        }
    }));

    if !config.runc_roots.is_empty() || config.docker_socket.is_some() {
        ctx.status
            .set_state(containers::STATUS, ProbeState::Starting);
        let probe = containers::ContainerProbe::new(
            ctx.clone(),
            config.runc_roots.clone(),
            config.docker_socket.clone(),
            root,
            config.proc_scan_interval,
        );
        let cctx = ctx.clone();
        tasks.push(tokio::spawn(async move {
            if let Err(e) = probe.run().await {
                tracing::error!(error = %e, "container probe stopped");
                cctx.status.error(containers::STATUS, format!("{e:#}"));
                cctx.status.set_state(containers::STATUS, ProbeState::Error);
            }
        }));
    }

    let ovsdb = config.ovsdb.clone().map(|address| {
        let (task, status) = ovsdb::spawn_with_status(graph.clone(), host_node.clone(), address);
        tasks.push(task);
        status
    });

    Ok(Probes { ctx, tasks, ovsdb })
}

/// Runs the netlink probe of one namespace, restarting it with backoff when its socket
/// fails, until aborted.
pub(crate) async fn supervise_netlink(
    ctx: Arc<Ctx>,
    ns: NsKey,
    name: String,
    file: Option<Arc<File>>,
) {
    let mut backoff = Duration::from_millis(200);
    loop {
        if name == "root" {
            ctx.status
                .set_state(netlink::probe::STATUS, ProbeState::Running);
        }
        let result = netlink::probe::run(ctx.clone(), ns, name.clone(), file.clone()).await;
        if let Err(e) = result {
            tracing::warn!(namespace = %name, error = %format!("{e:#}"), "netlink probe failed");
            ctx.status
                .error(netlink::probe::STATUS, format!("{name}: {e:#}"));
        }
        if !ctx.registry.lock().has_namespace(ns) {
            return;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}
