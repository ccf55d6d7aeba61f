//! The namespace watcher (Skydive §3.5): netns files under the configured directories
//! (inotify, plus a periodic listing that catches missed events and directories created
//! later), and namespaces held only by processes (`/proc/<pid>/ns/net`, scanned
//! periodically). Each namespace gets a `netns` node owned by the host and its own
//! netlink probe; when it goes, so does the node with everything it owns.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask};
use serde_json::Value;
use tokio::task::{JoinHandle, JoinSet};
use topotap_topology::schema::{key, node_type, relation};
use topotap_topology::{tid, Edge, Identifier, Metadata, Node};

use crate::netlink::registry::{NsEntry, NsKey};
use crate::Ctx;

pub const STATUS: &str = "netns";

/// Delays between attempts to see a new netns file as a namespace: `ip netns add`
/// creates the file before it bind-mounts the namespace on it.
const MOUNT_RETRIES_MS: &[u64] = &[0, 2, 5, 10, 20, 40, 80, 160, 320, 640, 1280];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// Bind-mounted under a watched directory.
    Paths,
    /// Only held by a process.
    Process,
}

struct Watched {
    node: Identifier,
    source: Source,
    paths: BTreeSet<PathBuf>,
    probe: JoinHandle<()>,
}

impl Drop for Watched {
    fn drop(&mut self) {
        self.probe.abort();
    }
}

/// A namespace file found by a check: `(path, handle, inode, device)`.
type Found = (PathBuf, Arc<File>, u64, u64);

pub(crate) struct NetnsWatcher {
    ctx: Arc<Ctx>,
    dirs: Vec<PathBuf>,
    root: NsKey,
    scan_interval: Duration,
    paths: HashMap<PathBuf, NsKey>,
    namespaces: HashMap<NsKey, Watched>,
    dir_watches: HashMap<WatchDescriptor, PathBuf>,
    /// Listed paths with a check in flight.
    pending: BTreeSet<PathBuf>,
}

/// Whether `file` is a namespace (a nsfs inode), and its `(inode, device)`.
fn nsfs_identity(file: &File) -> Option<(u64, u64)> {
    let fs = nix::sys::statfs::fstatfs(file).ok()?;
    if fs.filesystem_type() != nix::sys::statfs::NSFS_MAGIC {
        return None;
    }
    let m = file.metadata().ok()?;
    Some((m.ino(), m.dev()))
}

/// Opens `path` and checks it is a mounted namespace, retrying after each of `delays`
/// while it is being set up. The file is opened on a blocking thread.
async fn check_path(path: PathBuf, delays: &'static [u64]) -> Option<Found> {
    for delay in delays {
        tokio::time::sleep(Duration::from_millis(*delay)).await;
        let p = path.clone();
        let opened = tokio::task::spawn_blocking(move || open_namespace(&p))
            .await
            .ok()?;
        let (file, ino, dev) = match opened {
            Ok(Some(found)) => found,
            Ok(None) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::debug!(path = %path.display(), error = %e, "opening netns file");
                continue;
            }
        };
        let file = match crate::nsenter::unpinned(file).await {
            Ok(f) => f,
            Err(e) => {
                tracing::debug!(path = %path.display(), error = %e, "reopening namespace");
                return None;
            }
        };
        return Some((path, Arc::new(file), ino, dev));
    }
    None
}

/// The inode of `path`, if it exists. Blocking.
fn inode_of(path: &Path) -> Option<u64> {
    topotap_topology::blocking::section("netns file check");
    std::fs::metadata(path).ok().map(|m| m.ino())
}

/// Opens `path` and, if it is a namespace, returns it with its `(inode, device)`.
/// Blocking.
fn open_namespace(path: &Path) -> std::io::Result<Option<(File, u64, u64)>> {
    topotap_topology::blocking::section("netns file check");
    let file = File::open(path)?;
    Ok(nsfs_identity(&file).map(|(ino, dev)| (file, ino, dev)))
}

fn basename(path: &Path) -> String {
    path.file_name()
        .unwrap_or_else(|| OsStr::new(""))
        .to_string_lossy()
        .into_owned()
}

impl NetnsWatcher {
    pub(crate) fn new(ctx: Arc<Ctx>, dirs: Vec<PathBuf>, root: NsKey, scan: Duration) -> Self {
        NetnsWatcher {
            ctx,
            dirs,
            root,
            scan_interval: scan,
            paths: HashMap::new(),
            namespaces: HashMap::new(),
            dir_watches: HashMap::new(),
            pending: BTreeSet::new(),
        }
    }

    pub(crate) async fn run(mut self) -> anyhow::Result<()> {
        let inotify = Inotify::init()?;
        let mut events = inotify.into_event_stream(vec![0u8; 16 * 1024])?;
        let mut checks: JoinSet<Option<Found>> = JoinSet::new();
        let mut tick = tokio::time::interval(self.scan_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        self.ctx
            .status
            .set_state(STATUS, crate::status::ProbeState::Running);
        loop {
            tokio::select! {
                ev = events.next() => {
                    let Some(ev) = ev else { anyhow::bail!("inotify stream ended") };
                    let ev = match ev {
                        Ok(ev) => ev,
                        Err(e) => {
                            self.ctx.status.error(STATUS, format!("inotify: {e}"));
                            continue;
                        }
                    };
                    if ev.mask.contains(EventMask::Q_OVERFLOW) {
                        self.reconcile_dirs(&events, &mut checks).await;
                        continue;
                    }
                    let Some(dir) = self.dir_watches.get(&ev.wd).cloned() else { continue };
                    if ev.mask.intersects(EventMask::DELETE_SELF | EventMask::IGNORED) {
                        self.dir_watches.remove(&ev.wd);
                        continue;
                    }
                    let Some(name) = ev.name else { continue };
                    let path = dir.join(name);
                    if ev.mask.intersects(EventMask::CREATE | EventMask::MOVED_TO) {
                        checks.spawn(check_path(path, MOUNT_RETRIES_MS));
                    } else if ev.mask.intersects(EventMask::DELETE | EventMask::MOVED_FROM) {
                        self.remove_path(&path);
                    }
                }
                Some(found) = checks.join_next() => {
                    if let Ok(Some(found)) = found {
                        self.pending.remove(&found.0);
                        let path = found.0.clone();
                        let now = tokio::task::spawn_blocking(move || inode_of(&path))
                            .await
                            .ok()
                            .flatten();
                        self.add_path(found, now);
                    }
                    if checks.is_empty() {
                        self.pending.clear();
                    }
                }
                () = self.ctx.rescan_namespaces.notified() => {
                    self.scan_proc().await;
                }
                _ = tick.tick() => {
                    self.reconcile_dirs(&events, &mut checks).await;
                    self.scan_proc().await;
                    self.ctx.status.set_counter(STATUS, "Namespaces", self.namespaces.len() as u64);
                }
            }
        }
    }

    /// Watches directories that appeared, and makes the known paths match the listing.
    /// The directories are read on a blocking thread.
    async fn reconcile_dirs(
        &mut self,
        events: &inotify::EventStream<Vec<u8>>,
        checks: &mut JoinSet<Option<Found>>,
    ) {
        let dirs: Vec<(PathBuf, bool)> = self
            .dirs
            .iter()
            .map(|d| (d.clone(), self.dir_watches.values().any(|w| w == d)))
            .collect();
        let known: Vec<(PathBuf, NsKey)> =
            self.paths.iter().map(|(p, k)| (p.clone(), *k)).collect();
        let watches = events.watches();
        let Ok(listings) =
            tokio::task::spawn_blocking(move || list_dirs(&dirs, &known, watches)).await
        else {
            return;
        };
        for l in listings {
            match l.watch {
                None => {}
                Some(Ok(wd)) => {
                    self.dir_watches.insert(wd, l.dir.clone());
                }
                Some(Err(e)) => {
                    self.ctx
                        .status
                        .error(STATUS, format!("watching {}: {e}", l.dir.display()));
                    continue;
                }
            }
            for p in &l.stale {
                self.remove_path(p);
            }
            for p in l.listed {
                if !self.paths.contains_key(&p) && self.pending.insert(p.clone()) {
                    // Not a namespace yet (or not at all): checked once, without waiting.
                    checks.spawn(check_path(p, &[0]));
                }
            }
        }
    }

    /// Adds a namespace file found by a check; `now` is the file's inode as it is
    /// now (`None`: gone).
    fn add_path(&mut self, (path, file, ino, dev): Found, now: Option<u64>) {
        // The file may have been removed or replaced since it was checked: every later
        // removal has its own event, processed after this.
        if now != Some(ino) {
            return;
        }
        if ino == self.root {
            return;
        }
        if let Some(old) = self.paths.get(&path) {
            if *old == ino {
                return;
            }
            self.remove_path(&path.clone());
        }
        self.paths.insert(path.clone(), ino);
        if let Some(w) = self.namespaces.get_mut(&ino) {
            w.paths.insert(path.clone());
            if w.source == Source::Process {
                // Found by the /proc scan while `ip netns add` was setting it up: it is
                // the mounted namespace after all.
                w.source = Source::Paths;
                let node = w.node.clone();
                self.name_after(ino, &node, &path);
            }
            return;
        }
        let name = basename(&path);
        self.register(ino, dev, name, &path, file, Source::Paths);
    }

    fn remove_path(&mut self, path: &Path) {
        let Some(ino) = self.paths.remove(path) else {
            return;
        };
        let (empty, rename) = match self.namespaces.get_mut(&ino) {
            Some(w) => {
                w.paths.remove(path);
                // The node is named after its first path: when that one goes while another
                // remains, the namespace takes the name of the one that remains.
                let next = w.paths.iter().next().cloned();
                (w.paths.is_empty(), next.map(|p| (w.node.clone(), p)))
            }
            None => (false, None),
        };
        if empty {
            self.unregister(ino);
        } else if let Some((node, next)) = rename {
            let named_here = {
                let g = self.ctx.graph.read();
                g.find_node(&node).is_some_and(|ix| {
                    g.node(ix).metadata().get("Path").and_then(Value::as_str)
                        == Some(&*path.to_string_lossy())
                })
            };
            if named_here {
                self.name_after(ino, &node, &next);
            }
        }
    }

    /// Names the namespace's node after one of its paths, unless it is named after a
    /// container.
    fn name_after(&mut self, ino: NsKey, node: &Identifier, path: &Path) {
        let container = self.ctx.container_names.lock().get(&ino).cloned();
        let name = container.unwrap_or_else(|| basename(path));
        let tid = tid::netns(&self.ctx.host_tid, &path.to_string_lossy());
        let mut reg = self.ctx.registry.lock();
        let mut g = self.ctx.graph.write();
        let _ = g.update_node(node, |m| {
            m.insert("Name".into(), Value::from(name.clone()));
            m.insert(
                "Path".into(),
                Value::from(path.to_string_lossy().into_owned()),
            );
            m.insert("TID".into(), Value::from(tid.to_string()));
        });
        reg.rename_namespace(&mut g, ino, &name, tid);
    }

    fn register(
        &mut self,
        ino: NsKey,
        dev: u64,
        name: String,
        path: &Path,
        file: Arc<File>,
        source: Source,
    ) {
        let path_str = path.to_string_lossy().into_owned();
        let tid = tid::netns(&self.ctx.host_tid, &path_str);
        let id = Identifier::random();
        let mut m = Metadata::new();
        m.insert("Name".into(), Value::from(name.clone()));
        m.insert(key::TYPE.into(), Value::from(node_type::NETNS));
        m.insert("Path".into(), Value::from(path_str));
        m.insert("Inode".into(), Value::from(ino));
        m.insert("Device".into(), Value::from(dev));
        m.insert("TID".into(), Value::from(tid.to_string()));
        {
            let mut reg = self.ctx.registry.lock();
            let mut g = self.ctx.graph.write();
            if let Err(e) = g.add_node(Node::new(
                id.clone(),
                m,
                &self.ctx.host_id,
                &self.ctx.origin,
            )) {
                tracing::warn!(error = %e, "adding netns node");
                return;
            }
            let mut rel = Metadata::new();
            rel.insert(key::RELATION_TYPE.into(), Value::from(relation::OWNERSHIP));
            let _ = g.add_edge(Edge::new(
                self.ctx.host_node.clone(),
                id.clone(),
                rel,
                &self.ctx.host_id,
                &self.ctx.origin,
            ));
            reg.add_namespace(
                ino,
                NsEntry {
                    owner: id.clone(),
                    owner_tid: tid,
                    name: name.clone(),
                    file: Some(file.clone()),
                },
            );
        }
        let probe = tokio::spawn(crate::supervise_netlink(
            self.ctx.clone(),
            ino,
            name,
            Some(file),
        ));
        let mut paths = BTreeSet::new();
        if source == Source::Paths {
            paths.insert(path.to_path_buf());
        }
        self.namespaces.insert(
            ino,
            Watched {
                node: id,
                source,
                paths,
                probe,
            },
        );
        self.ctx.namespaces_changed.notify_one();
    }

    fn unregister(&mut self, ino: NsKey) {
        if let Some(w) = self.namespaces.remove(&ino) {
            w.probe.abort();
            for p in &w.paths {
                self.paths.remove(p);
            }
            let mut reg = self.ctx.registry.lock();
            let mut g = self.ctx.graph.write();
            reg.remove_namespace(&mut g, ino, true);
            if g.find_node(&w.node).is_some() {
                let _ = g.delete_subtree(&w.node);
            }
            drop((reg, g));
            self.ctx.namespaces_changed.notify_one();
        }
    }

    /// Namespaces held by processes only: registered under `<comm>-<pid>`, dropped when
    /// no process holds them any more. The scan of `/proc` runs on a blocking thread.
    async fn scan_proc(&mut self) {
        let root = self.root;
        let known: HashSet<NsKey> = self.namespaces.keys().copied().collect();
        let Ok(scan) = tokio::task::spawn_blocking(move || scan_processes(root, &known)).await
        else {
            return;
        };
        let gone: Vec<NsKey> = self
            .namespaces
            .iter()
            .filter(|(k, w)| w.source == Source::Process && !scan.held.contains(k))
            .map(|(k, _)| *k)
            .collect();
        for k in gone {
            self.unregister(k);
        }
        for found in scan.new {
            if self.namespaces.contains_key(&found.ino) {
                continue;
            }
            self.register(
                found.ino,
                found.dev,
                found.name,
                &found.path,
                Arc::new(found.file),
                Source::Process,
            );
        }
    }
}

/// A watched directory as [`list_dirs`] found it.
struct DirListing {
    dir: PathBuf,
    /// The watch added now that the directory exists, or why it could not be added
    /// (then the directory was not listed).
    watch: Option<std::io::Result<WatchDescriptor>>,
    /// Its entries.
    listed: BTreeSet<PathBuf>,
    /// Known paths in it that vanished or now name another namespace.
    stale: Vec<PathBuf>,
}

/// Lists each directory of `dirs` (`true`: already watched), first adding a watch to
/// those that now exist, so that no file created meanwhile goes unseen. `known` are the
/// namespace paths found so far. Blocking: directory reads and stats.
fn list_dirs(
    dirs: &[(PathBuf, bool)],
    known: &[(PathBuf, NsKey)],
    mut watches: inotify::Watches,
) -> Vec<DirListing> {
    topotap_topology::blocking::section("netns directory listing");
    let mut out = Vec::with_capacity(dirs.len());
    for (dir, watched) in dirs {
        let mut watch = None;
        if !watched && dir.is_dir() {
            let added = watches.add(
                dir,
                WatchMask::CREATE
                    | WatchMask::DELETE
                    | WatchMask::MOVED_FROM
                    | WatchMask::MOVED_TO
                    | WatchMask::DELETE_SELF,
            );
            let failed = added.is_err();
            watch = Some(added);
            if failed {
                out.push(DirListing {
                    dir: dir.clone(),
                    watch,
                    listed: BTreeSet::new(),
                    stale: Vec::new(),
                });
                continue;
            }
        }
        let listed: BTreeSet<PathBuf> = std::fs::read_dir(dir)
            .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect())
            .unwrap_or_default();
        let stale = known
            .iter()
            .filter(|(p, _)| p.parent() == Some(dir.as_path()))
            .filter(|(p, key)| {
                let same = std::fs::metadata(p)
                    .map(|m| m.ino() == *key)
                    .unwrap_or(false);
                !listed.contains(p) || !same
            })
            .map(|(p, _)| p.clone())
            .collect();
        out.push(DirListing {
            dir: dir.clone(),
            watch,
            listed,
            stale,
        });
    }
    out
}

/// What a scan of `/proc` found: every namespace a process holds (but topotap's own),
/// and those not known before, opened.
struct ProcScan {
    held: HashSet<NsKey>,
    new: Vec<ProcNamespace>,
}

struct ProcNamespace {
    ino: NsKey,
    dev: u64,
    /// `<comm>-<pid>` of the lowest pid holding it.
    name: String,
    path: PathBuf,
    file: File,
}

/// Lists `/proc/*/ns/net` and opens the namespaces not in `known`. Blocks.
fn scan_processes(root: NsKey, known: &HashSet<NsKey>) -> ProcScan {
    topotap_topology::blocking::section("/proc scan");
    let mut held: HashMap<NsKey, (u32, u64)> = HashMap::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for entry in rd.filter_map(|e| e.ok()) {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            // Processes exit mid-scan and some are not ours to look at: skip quietly.
            let Ok(m) = std::fs::metadata(format!("/proc/{pid}/ns/net")) else {
                continue;
            };
            let ino = m.ino();
            if ino == root {
                continue;
            }
            let e = held.entry(ino).or_insert((pid, m.dev()));
            if pid < e.0 {
                *e = (pid, m.dev());
            }
        }
    }
    let mut new = Vec::new();
    for (&ino, &(pid, dev)) in &held {
        if known.contains(&ino) {
            continue;
        }
        let path = PathBuf::from(format!("/proc/{pid}/ns/net"));
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) => {
                tracing::debug!(pid, error = %e, "opening process namespace");
                continue;
            }
        };
        match nsfs_identity(&file) {
            Some((i, _)) if i == ino => {}
            _ => continue, // the process exited and its pid was reused
        }
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .map(|c| c.trim().to_owned())
            .unwrap_or_default();
        new.push(ProcNamespace {
            ino,
            dev,
            name: format!("{comm}-{pid}"),
            path,
            file,
        });
    }
    ProcScan {
        held: held.into_keys().collect(),
        new,
    }
}
