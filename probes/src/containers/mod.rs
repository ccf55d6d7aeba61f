//! Containers (Skydive's runc and docker probes): each running container becomes a
//! `container` node owned by the `netns` node of its network namespace (the host node
//! for a container on the host's network), and the namespace is named after it.
//!
//! Sources: runc state directories (`runc::scan`: runc itself, containerd's and
//! Docker's runc roots), watched with inotify and re-read on a period; and, when its
//! socket answers, the Docker Engine API (`docker`), which gives names, images and
//! labels. The namespace is matched to the netns watcher's nodes by the inode of the
//! container process's namespace file.

mod docker;
pub(crate) mod runc;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use inotify::{Inotify, WatchMask};
use serde_json::{json, Value};
use tokio::time::Instant;
use topotap_topology::schema::{key, relation};
use topotap_topology::{tid, Edge, Graph, Identifier, Metadata, Node};

use crate::netlink::registry::{NsKey, Registry};
use crate::Ctx;

pub const STATUS: &str = "containers";

use topotap_topology::schema::node_type::CONTAINER as NODE_TYPE;

/// Labels (Docker, CRI-O) and annotations (containerd's CRI plugin) naming the
/// Kubernetes pod of a container.
const POD_NAME: &[&str] = &["io.kubernetes.pod.name", "io.kubernetes.cri.sandbox-name"];
const POD_NAMESPACE: &[&str] = &[
    "io.kubernetes.pod.namespace",
    "io.kubernetes.cri.sandbox-namespace",
];
const CRI_CONTAINER_NAME: &str = "io.kubernetes.cri.container-name";
const CRI_CONTAINER_TYPE: &str = "io.kubernetes.cri.container-type";
const CRI_IMAGE_NAME: &str = "io.kubernetes.cri.image-name";

/// Quiet time after a change in a state directory before it is read: runc writes a
/// container's directory and then its state.
const SETTLE: Duration = Duration::from_millis(50);

/// What manages a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Manager {
    Runc,
    Containerd,
    Docker,
}

impl Manager {
    pub fn as_str(self) -> &'static str {
        match self {
            Manager::Runc => "runc",
            Manager::Containerd => "containerd",
            Manager::Docker => "docker",
        }
    }
}

/// A network namespace as its file's `(inode, device)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NsId {
    pub ino: u64,
    pub dev: u64,
}

/// A container as found.
#[derive(Debug, Clone, PartialEq)]
pub struct Container {
    pub id: String,
    pub name: String,
    pub image: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub manager: Manager,
    pub pid: u32,
    /// `running`, `created` (runc) or Docker's state.
    pub status: String,
    /// Its network namespace, while its process runs.
    pub netns: Option<NsId>,
    pub pod_name: Option<String>,
    pub pod_namespace: Option<String>,
    /// A pod's sandbox (its namespace is named after the pod).
    pub sandbox: bool,
}

fn first_of(labels: &BTreeMap<String, String>, keys: &[&str]) -> Option<String> {
    keys.iter()
        .find_map(|k| labels.get(*k))
        .filter(|v| !v.is_empty())
        .cloned()
}

impl Container {
    pub(crate) fn new(
        id: String,
        manager: Manager,
        pid: u32,
        status: &str,
        netns: Option<NsId>,
        labels: BTreeMap<String, String>,
    ) -> Self {
        let sandbox = labels.get(CRI_CONTAINER_TYPE).map(String::as_str) == Some("sandbox");
        let pod_name = first_of(&labels, POD_NAME);
        let name = if sandbox {
            pod_name.clone()
        } else {
            first_of(&labels, &[CRI_CONTAINER_NAME])
        }
        .unwrap_or_else(|| id.clone());
        Container {
            image: first_of(&labels, &[CRI_IMAGE_NAME]),
            pod_namespace: first_of(&labels, POD_NAMESPACE),
            pod_name,
            sandbox,
            name,
            id,
            manager,
            pid,
            status: status.to_owned(),
            netns,
            labels,
        }
    }

    /// Takes what Docker says about the same container.
    fn merge_docker(&mut self, d: &docker::DockerContainer) {
        self.name = d.name.clone();
        if !d.image.is_empty() {
            self.image = Some(d.image.clone());
        }
        self.labels.extend(d.labels.clone());
        self.manager = Manager::Docker;
        self.status = d.status.clone();
        self.pod_name = first_of(&self.labels, POD_NAME);
        self.pod_namespace = first_of(&self.labels, POD_NAMESPACE);
    }

    /// The `Container` metadata key.
    pub fn metadata(&self) -> Value {
        let mut c = json!({
            "ID": self.id,
            "Name": self.name,
            "Runtime": self.manager.as_str(),
            "Status": self.status,
            "InitProcessPID": self.pid,
        });
        if let Some(i) = &self.image {
            c["Image"] = Value::from(i.clone());
        }
        if !self.labels.is_empty() {
            c["Labels"] = json!(self.labels);
        }
        if let Some(p) = &self.pod_name {
            c["PodName"] = Value::from(p.clone());
        }
        if let Some(p) = &self.pod_namespace {
            c["PodNamespace"] = Value::from(p.clone());
        }
        c
    }

    /// The keys of its node.
    fn node_metadata(&self, owner_tid: &Identifier) -> Metadata {
        let mut m = Metadata::new();
        m.insert(key::NAME.into(), Value::from(self.name.clone()));
        m.insert(key::TYPE.into(), Value::from(NODE_TYPE));
        m.insert("Manager".into(), Value::from(self.manager.as_str()));
        m.insert("InitProcessPID".into(), Value::from(self.pid));
        m.insert("Container".into(), self.metadata());
        m.insert(
            key::TID.into(),
            Value::from(tid::owned(owner_tid, &self.name, NODE_TYPE).to_string()),
        );
        m
    }
}

/// Keys of a container node the probe writes.
const NODE_KEYS: &[&str] = &[
    "Name",
    "Type",
    "Manager",
    "InitProcessPID",
    "Container",
    "TID",
];

/// Merges runc's and Docker's views: Docker's names, images and labels win for the
/// containers both know; a container only Docker lists gets its namespace from its pid.
fn merge(mut runc: Vec<Container>, docker: &[docker::DockerContainer]) -> Vec<Container> {
    for d in docker {
        match runc.iter_mut().find(|c| c.id == d.id) {
            Some(c) => c.merge_docker(d),
            None => {
                let netns = runc::ns_identity(Path::new(&format!("/proc/{}/ns/net", d.pid)));
                let mut c = Container::new(
                    d.id.clone(),
                    Manager::Docker,
                    d.pid,
                    &d.status,
                    netns.filter(|_| d.pid != 0),
                    BTreeMap::new(),
                );
                c.merge_docker(d);
                runc.push(c);
            }
        }
    }
    runc.sort_by(|a, b| a.id.cmp(&b.id));
    runc.dedup_by(|a, b| a.id == b.id);
    runc
}

/// The container a namespace is named after: a pod's sandbox first, then the first
/// name in order.
fn namespace_names(containers: &[Container], root: NsKey) -> HashMap<NsKey, (String, Manager)> {
    let mut out: HashMap<NsKey, (bool, String, Manager)> = HashMap::new();
    for c in containers {
        let Some(ns) = c.netns else { continue };
        if ns.ino == root {
            continue;
        }
        let better = match out.get(&ns.ino) {
            None => true,
            Some((sandbox, name, _)) => {
                (c.sandbox, std::cmp::Reverse(&c.name)) > (*sandbox, std::cmp::Reverse(name))
            }
        };
        if better {
            out.insert(ns.ino, (c.sandbox, c.name.clone(), c.manager));
        }
    }
    out.into_iter().map(|(k, (_, n, m))| (k, (n, m))).collect()
}

/// A container node the probe made.
struct Applied {
    node: Identifier,
    owner: Identifier,
}

/// A namespace node the probe renamed, and what it was called before.
struct Renamed {
    node: Identifier,
    original: String,
}

/// The probe's state.
pub(crate) struct ContainerProbe {
    ctx: Arc<Ctx>,
    roots: Vec<PathBuf>,
    docker_socket: Option<PathBuf>,
    root: NsKey,
    scan_interval: Duration,
    docker_cache: HashMap<String, docker::DockerContainer>,
    containers: Vec<Container>,
    applied: HashMap<String, Applied>,
    renamed: HashMap<NsKey, Renamed>,
}

impl ContainerProbe {
    pub(crate) fn new(
        ctx: Arc<Ctx>,
        roots: Vec<PathBuf>,
        docker_socket: Option<PathBuf>,
        root: NsKey,
        scan_interval: Duration,
    ) -> Self {
        ContainerProbe {
            ctx,
            roots,
            docker_socket,
            root,
            scan_interval,
            docker_cache: HashMap::new(),
            containers: Vec::new(),
            applied: HashMap::new(),
            renamed: HashMap::new(),
        }
    }

    pub(crate) async fn run(mut self) -> anyhow::Result<()> {
        let inotify = Inotify::init()?;
        let mut events = inotify.into_event_stream(vec![0u8; 16 * 1024])?;
        let mut tick = tokio::time::interval(self.scan_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut due: Option<Instant> = None;
        self.ctx
            .status
            .set_state(STATUS, crate::status::ProbeState::Running);
        loop {
            let settle = async {
                match due {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                ev = events.next() => {
                    match ev {
                        None => anyhow::bail!("inotify stream ended"),
                        Some(Err(e)) => self.ctx.status.error(STATUS, format!("inotify: {e}")),
                        Some(Ok(_)) => {
                            due.get_or_insert_with(|| Instant::now() + SETTLE);
                        }
                    }
                }
                () = settle => {
                    due = None;
                    self.scan(&events).await;
                }
                _ = tick.tick() => self.scan(&events).await,
                () = self.ctx.namespaces_changed.notified() => self.apply(),
            }
        }
    }

    /// Reads every source, then applies what it found.
    async fn scan(&mut self, events: &inotify::EventStream<Vec<u8>>) {
        let roots = self.roots.clone();
        let socket = self.docker_socket.clone();
        let mut watches = events.watches();
        let found = tokio::task::spawn_blocking(move || {
            let scan = runc::scan(&roots);
            let socket = socket.filter(|s| s.exists());
            let mask = WatchMask::CREATE
                | WatchMask::DELETE
                | WatchMask::MOVED_TO
                | WatchMask::MOVED_FROM
                | WatchMask::CLOSE_WRITE;
            // Adding a watch again on a watched directory keeps the same one.
            let failed: Vec<String> = scan
                .dirs
                .iter()
                .filter_map(|d| {
                    watches
                        .add(d, mask)
                        .err()
                        .map(|e| format!("watching {}: {e}", d.display()))
                })
                .collect();
            (scan, failed, socket)
        })
        .await;
        let Ok((scan, failed, socket)) = found else {
            return;
        };
        for e in scan.errors.iter().chain(&failed) {
            self.ctx.status.error(STATUS, e);
        }
        let mut docker = Vec::new();
        if let Some(socket) = socket {
            match docker::containers(&socket, &mut self.docker_cache).await {
                Ok(d) => docker = d,
                Err(e) => self.ctx.status.error(STATUS, format!("docker: {e:#}")),
            }
        }
        let runc = scan.containers;
        let merged = tokio::task::spawn_blocking(move || {
            topotap_topology::blocking::section("container namespaces");
            merge(runc, &docker)
        })
        .await
        .unwrap_or_default();
        for c in &merged {
            if c.manager == Manager::Docker && c.netns.is_none() {
                self.docker_cache.remove(&c.id);
            }
        }
        self.ctx
            .status
            .set_counter(STATUS, "Containers", merged.len() as u64);
        self.containers = merged;
        // A container's namespace the watcher has not seen yet: ask it to look now.
        let unknown = {
            let reg = self.ctx.registry.lock();
            self.containers
                .iter()
                .filter_map(|c| c.netns)
                .any(|ns| !reg.has_namespace(ns.ino))
        };
        if unknown {
            self.ctx.rescan_namespaces.notify_one();
        }
        self.apply();
    }

    /// Makes the graph show the containers found last.
    fn apply(&mut self) {
        let names = namespace_names(&self.containers, self.root);
        *self.ctx.container_names.lock() =
            names.iter().map(|(k, (n, _))| (*k, n.clone())).collect();
        let ctx = self.ctx.clone();
        let mut reg = ctx.registry.lock();
        let mut g = ctx.graph.write();
        self.name_namespaces(&mut reg, &mut g, &names);

        let mut keep: Vec<String> = Vec::new();
        for c in &self.containers {
            let Some(ns) = c.netns else { continue };
            let Some(entry) = reg.namespace(ns.ino) else {
                continue;
            };
            let (owner, owner_tid) = (entry.owner.clone(), entry.owner_tid.clone());
            if g.find_node(&owner).is_none() {
                continue;
            }
            let wanted = c.node_metadata(&owner_tid);
            let current = self
                .applied
                .get(&c.id)
                .filter(|a| a.owner == owner && g.find_node(&a.node).is_some())
                .map(|a| a.node.clone());
            match current {
                Some(node) => {
                    let _ = g.update_node(&node, |m| {
                        for k in NODE_KEYS {
                            match wanted.get(*k) {
                                Some(v) if m.get(*k) != Some(v) => {
                                    m.insert((*k).into(), v.clone());
                                }
                                Some(_) => {}
                                None => {
                                    m.remove(*k);
                                }
                            }
                        }
                    });
                }
                None => {
                    if let Some(old) = self.applied.remove(&c.id) {
                        if g.find_node(&old.node).is_some() {
                            let _ = g.delete_node(&old.node);
                        }
                    }
                    let id = Identifier::random();
                    let node = Node::new(id.clone(), wanted, &self.ctx.host_id, &self.ctx.origin);
                    if let Err(e) = g.add_node(node) {
                        tracing::warn!(container = %c.id, error = %e, "adding container node");
                        continue;
                    }
                    let mut rel = Metadata::new();
                    rel.insert(key::RELATION_TYPE.into(), Value::from(relation::OWNERSHIP));
                    let _ = g.add_edge(Edge::new(
                        owner.clone(),
                        id.clone(),
                        rel,
                        &self.ctx.host_id,
                        &self.ctx.origin,
                    ));
                    tracing::debug!(container = %c.id, name = %c.name, "container node added");
                    self.applied
                        .insert(c.id.clone(), Applied { node: id, owner });
                }
            }
            keep.push(c.id.clone());
        }
        let gone: Vec<String> = self
            .applied
            .keys()
            .filter(|id| !keep.contains(id))
            .cloned()
            .collect();
        for id in gone {
            if let Some(a) = self.applied.remove(&id) {
                if g.find_node(&a.node).is_some() {
                    let _ = g.delete_node(&a.node);
                }
            }
        }
    }

    /// Names each namespace holding a container after it (`Name`, `Manager`), and gives
    /// the others back the name they had.
    fn name_namespaces(
        &mut self,
        reg: &mut Registry,
        g: &mut Graph,
        names: &HashMap<NsKey, (String, Manager)>,
    ) {
        let stale: Vec<NsKey> = self
            .renamed
            .keys()
            .filter(|k| !names.contains_key(k))
            .copied()
            .collect();
        for ino in stale {
            let Some(r) = self.renamed.remove(&ino) else {
                continue;
            };
            let Some(entry) = reg.namespace(ino).cloned() else {
                continue;
            };
            if entry.owner != r.node {
                continue;
            }
            let mut name = r.original;
            let _ = g.update_node(&r.node, |m| {
                // Named after a file since: its name again.
                if let Some(p) = m.get(key::PATH).and_then(Value::as_str) {
                    if !p.starts_with("/proc/") {
                        name = p.rsplit('/').next().unwrap_or(p).to_owned();
                    }
                }
                m.insert(key::NAME.into(), Value::from(name.clone()));
                m.remove("Manager");
            });
            reg.rename_namespace(g, ino, &name, entry.owner_tid);
        }
        for (ino, (name, manager)) in names {
            let Some(entry) = reg.namespace(*ino).cloned() else {
                continue;
            };
            let Some(ix) = g.find_node(&entry.owner) else {
                continue;
            };
            let renamed_here = self.renamed.get(ino).is_some_and(|r| r.node == entry.owner);
            if !renamed_here {
                let original = g
                    .node(ix)
                    .metadata()
                    .get(key::NAME)
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned();
                self.renamed.insert(
                    *ino,
                    Renamed {
                        node: entry.owner.clone(),
                        original,
                    },
                );
            }
            let _ = g.update_node(&entry.owner, |m| {
                if m.get(key::NAME).and_then(Value::as_str) != Some(name) {
                    m.insert(key::NAME.into(), Value::from(name.clone()));
                }
                if m.get("Manager").and_then(Value::as_str) != Some(manager.as_str()) {
                    m.insert("Manager".into(), Value::from(manager.as_str()));
                }
            });
            if entry.name != *name {
                reg.rename_namespace(g, *ino, name, entry.owner_tid);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(id: &str, ino: u64, labels: &[(&str, &str)]) -> Container {
        Container::new(
            id.into(),
            Manager::Containerd,
            1,
            "running",
            Some(NsId { ino, dev: 4 }),
            labels
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
        )
    }

    #[test]
    fn a_pod_sandbox_names_the_namespace() {
        let sandbox = c(
            "s",
            10,
            &[
                (CRI_CONTAINER_TYPE, "sandbox"),
                ("io.kubernetes.cri.sandbox-name", "web-0"),
                ("io.kubernetes.cri.sandbox-namespace", "prod"),
            ],
        );
        let app = c("a", 10, &[(CRI_CONTAINER_NAME, "app")]);
        assert_eq!(sandbox.name, "web-0");
        assert_eq!(sandbox.pod_namespace.as_deref(), Some("prod"));
        assert_eq!(app.name, "app");
        let names = namespace_names(&[app.clone(), sandbox.clone()], 1);
        assert_eq!(names[&10].0, "web-0");
        let names = namespace_names(&[sandbox, app], 1);
        assert_eq!(names[&10].0, "web-0");
    }

    #[test]
    fn host_network_containers_rename_nothing() {
        assert!(namespace_names(&[c("x", 1, &[])], 1).is_empty());
    }

    #[test]
    fn docker_names_win() {
        let runc = vec![c("abc", 10, &[])];
        let d = docker::DockerContainer {
            id: "abc".into(),
            name: "web".into(),
            image: "busybox".into(),
            labels: [("io.kubernetes.pod.name".to_owned(), "p".to_owned())].into(),
            pid: 1,
            status: "running".into(),
        };
        let m = merge(runc, &[d]);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].name, "web");
        assert_eq!(m[0].manager, Manager::Docker);
        assert_eq!(m[0].metadata()["Image"], "busybox");
        assert_eq!(m[0].metadata()["PodName"], "p");
    }
}
