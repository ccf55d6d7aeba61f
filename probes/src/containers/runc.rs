//! runc state directories: `<root>/<id>/state.json` (runc itself, Docker's
//! `runtime-runc/moby`) or `<root>/<namespace>/<id>/state.json` (containerd's
//! `/run/containerd/runc/<namespace>`). Reading them is blocking work.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use super::{Container, Manager, NsId};

/// Largest `state.json` or bundle `config.json` read.
const MAX_FILE_BYTES: u64 = 4 << 20;
/// Most containers read from one root in one scan.
pub(crate) const MAX_CONTAINERS: usize = 4096;

#[derive(Debug, Deserialize)]
struct State {
    id: String,
    init_process_pid: u32,
    /// A number (runc >= 1.0) or a string (older runc).
    #[serde(default)]
    init_process_start: Value,
    #[serde(default)]
    config: StateConfig,
    /// `{"NEWNET": "/proc/<pid>/ns/net", ...}`
    #[serde(default)]
    namespace_paths: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
struct StateConfig {
    /// `key=value`; runc adds `bundle=<dir>`.
    #[serde(default)]
    labels: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
struct BundleConfig {
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

/// Who manages the containers of a runc root, from its path: containerd's and Docker's
/// roots have their names in them; anything else is runc used directly.
pub(crate) fn manager_of(root: &Path) -> Manager {
    let s = root.to_string_lossy();
    if s.contains("containerd") {
        Manager::Containerd
    } else if s.contains("docker") || s.contains("moby") {
        Manager::Docker
    } else {
        Manager::Runc
    }
}

/// What one scan of the roots found: containers, the directories to watch, and the
/// errors met (one line each).
#[derive(Debug, Default)]
pub(crate) struct Scan {
    pub containers: Vec<Container>,
    pub dirs: Vec<PathBuf>,
    pub errors: Vec<String>,
}

/// Reads every container state under `roots`. Blocking.
pub(crate) fn scan(roots: &[PathBuf]) -> Scan {
    topotap_topology::blocking::section("runc state scan");
    let mut out = Scan::default();
    for root in roots {
        let Ok(rd) = std::fs::read_dir(root) else {
            continue;
        };
        out.dirs.push(root.clone());
        let manager = manager_of(root);
        let mut found = 0usize;
        for entry in rd.filter_map(|e| e.ok()) {
            let dir = entry.path();
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            out.dirs.push(dir.clone());
            let state = dir.join("state.json");
            if state.exists() {
                if found < MAX_CONTAINERS {
                    found += 1;
                    read_one(&state, manager, &mut out);
                }
                continue;
            }
            // containerd: one more level, the namespace.
            let Ok(sub) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in sub.filter_map(|e| e.ok()) {
                if !e.file_type().is_ok_and(|t| t.is_dir()) {
                    continue;
                }
                out.dirs.push(e.path());
                let state = e.path().join("state.json");
                if found < MAX_CONTAINERS && state.exists() {
                    found += 1;
                    read_one(&state, manager, &mut out);
                }
            }
        }
        if found >= MAX_CONTAINERS {
            out.errors.push(format!(
                "{}: more than {MAX_CONTAINERS} containers, the rest ignored",
                root.display()
            ));
        }
    }
    out
}

fn read_one(path: &Path, manager: Manager, out: &mut Scan) {
    match read_state(path, manager) {
        Ok(c) => out.containers.push(c),
        // Deleted between the listing and the read: not an error.
        Err(e)
            if e.downcast_ref::<std::io::Error>().map(|e| e.kind())
                == Some(std::io::ErrorKind::NotFound) => {}
        Err(e) => out.errors.push(format!("{}: {e:#}", path.display())),
    }
}

fn read_limited(path: &Path) -> anyhow::Result<Vec<u8>> {
    let f = File::open(path)?;
    let mut buf = Vec::new();
    f.take(MAX_FILE_BYTES + 1).read_to_end(&mut buf)?;
    anyhow::ensure!(
        buf.len() as u64 <= MAX_FILE_BYTES,
        "larger than {MAX_FILE_BYTES} bytes"
    );
    Ok(buf)
}

/// One container from its `state.json`. Blocking.
pub(crate) fn read_state(path: &Path, manager: Manager) -> anyhow::Result<Container> {
    let bytes = read_limited(path)?;
    let dir = path.parent().unwrap_or(Path::new("/"));
    let state: State =
        serde_json::from_slice(&bytes).map_err(|e| anyhow::anyhow!("not a runc state: {e}"))?;
    let labels = parse_labels(&state.config.labels);
    let annotations = labels
        .get("bundle")
        .and_then(|b| read_limited(&Path::new(b).join("config.json")).ok())
        .and_then(|b| serde_json::from_slice::<BundleConfig>(&b).ok())
        .map(|c| c.annotations)
        .unwrap_or_default();
    let alive = process_matches(state.init_process_pid, &state.init_process_start);
    let status = if !alive {
        "stopped"
    } else if dir.join("exec.fifo").exists() {
        "created"
    } else {
        "running"
    };
    let netns = if alive {
        let p = state
            .namespace_paths
            .get("NEWNET")
            .cloned()
            .unwrap_or_else(|| format!("/proc/{}/ns/net", state.init_process_pid));
        ns_identity(Path::new(&p))
    } else {
        None
    };
    let mut all = annotations;
    all.extend(labels);
    all.remove("bundle");
    Ok(Container::new(
        state.id,
        manager,
        state.init_process_pid,
        status,
        netns,
        all,
    ))
}

/// `["a=b", "c"]` -> `{a: b, c: ""}`.
fn parse_labels(raw: &[String]) -> BTreeMap<String, String> {
    raw.iter()
        .map(|l| match l.split_once('=') {
            Some((k, v)) => (k.to_owned(), v.to_owned()),
            None => (l.clone(), String::new()),
        })
        .collect()
}

/// Whether `pid` is still the process runc started: its start time (field 22 of
/// `/proc/<pid>/stat`) is the one recorded, so a reused pid is not taken for it.
fn process_matches(pid: u32, start: &Value) -> bool {
    if pid == 0 {
        return false;
    }
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return false;
    };
    // After the command: state (field 3) ... starttime (field 22).
    let fields: Vec<&str> = rest.split_whitespace().collect();
    if fields.first().is_some_and(|s| *s == "Z" || *s == "X") {
        return false;
    }
    let Some(now) = fields.get(19).and_then(|s| s.parse::<u64>().ok()) else {
        return false;
    };
    let recorded = match start {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    };
    // No start recorded: the pid alone says it.
    recorded.is_none_or(|r| r == now)
}

/// The namespace a file names (`/proc/<pid>/ns/net`, a bind mount). Blocking.
pub(crate) fn ns_identity(path: &Path) -> Option<NsId> {
    let m = std::fs::metadata(path).ok()?;
    Some(NsId {
        ino: m.ino(),
        dev: m.dev(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn managers_follow_the_root() {
        assert_eq!(
            manager_of(Path::new("/run/containerd/runc")),
            Manager::Containerd
        );
        assert_eq!(
            manager_of(Path::new("/run/docker/runtime-runc")),
            Manager::Docker
        );
        assert_eq!(manager_of(Path::new("/run/runc")), Manager::Runc);
    }

    #[test]
    fn labels_split_on_the_first_equal_sign() {
        let l = parse_labels(&["bundle=/a=b".into(), "bare".into()]);
        assert_eq!(l["bundle"], "/a=b");
        assert_eq!(l["bare"], "");
    }

    #[test]
    fn own_process_matches_only_its_start_time() {
        let pid = std::process::id();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let start: u64 = stat
            .rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .nth(19)
            .unwrap()
            .parse()
            .unwrap();
        assert!(process_matches(pid, &Value::from(start)));
        assert!(process_matches(pid, &Value::from(start.to_string())));
        assert!(!process_matches(pid, &Value::from(start + 1)));
        assert!(!process_matches(0, &Value::Null));
    }

    #[test]
    fn a_state_file_gives_the_container_and_its_namespace() {
        let dir = std::env::temp_dir().join(format!("topotap-runc-{}", uuid::Uuid::new_v4()));
        let bundle = dir.join("bundle");
        let cdir = dir.join("root").join("c1");
        std::fs::create_dir_all(&bundle).unwrap();
        std::fs::create_dir_all(&cdir).unwrap();
        std::fs::write(
            bundle.join("config.json"),
            r#"{"annotations": {"io.kubernetes.cri.sandbox-name": "web-0", "k": "from-bundle"}}"#,
        )
        .unwrap();
        let pid = std::process::id();
        let state = serde_json::json!({
            "id": "c1",
            "init_process_pid": pid,
            "config": {"labels": [format!("bundle={}", bundle.display()), "k=from-state"]},
            "namespace_paths": {"NEWNET": format!("/proc/{pid}/ns/net")},
        });
        std::fs::write(cdir.join("state.json"), state.to_string()).unwrap();
        std::fs::write(dir.join("root").join("junk"), "x").unwrap();
        let bad = dir.join("root").join("bad");
        std::fs::create_dir_all(&bad).unwrap();
        std::fs::write(bad.join("state.json"), "{").unwrap();

        let scan = scan(&[dir.join("root"), dir.join("missing")]);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(scan.containers.len(), 1, "{scan:?}");
        let c = &scan.containers[0];
        assert_eq!(c.id, "c1");
        assert_eq!(c.status, "running");
        assert_eq!(c.labels["k"], "from-state");
        assert!(!c.labels.contains_key("bundle"));
        assert_eq!(c.pod_name.as_deref(), Some("web-0"));
        assert_eq!(c.netns, ns_identity(Path::new("/proc/self/ns/net")));
        assert_eq!(scan.errors.len(), 1, "{:?}", scan.errors);
        assert!(
            scan.errors[0].contains("not a runc state"),
            "{:?}",
            scan.errors
        );
    }
}
