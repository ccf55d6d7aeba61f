//! Containers through a real `topotap allinone` (run as root): a runc container made
//! from a busybox-static rootfs in a temp dir (its own runc `--root`), and, when
//! `dockerd` runs here, a Docker container on a private daemon (its own data, exec
//! root and socket; no iptables, no bridge). Each names its network namespace and
//! gets a `container` node with `Container` metadata; both go when it is deleted.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{rand_tag, Topotap};
use serde_json::{json, Value};

const DEADLINE: Duration = Duration::from_secs(10);

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A bundle whose rootfs is busybox-static with the applets the tests run.
fn bundle(dir: &Path, annotations: Value) -> PathBuf {
    let busybox = Path::new("/bin/busybox");
    assert!(
        busybox.exists(),
        "needs /bin/busybox: apt-get install busybox-static (scripts/deps.sh)"
    );
    let bundle = dir.join("bundle");
    let bin = bundle.join("rootfs/bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy(busybox, bin.join("busybox")).unwrap();
    for applet in ["sh", "sleep"] {
        std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
    }
    run(Command::new("runc").arg("spec").current_dir(&bundle));
    let path = bundle.join("config.json");
    let mut config: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    config["process"]["terminal"] = json!(false);
    config["process"]["args"] = json!(["/bin/sleep", "1000"]);
    config["annotations"] = annotations;
    let namespaces = config["linux"]["namespaces"].as_array().unwrap();
    assert!(
        namespaces.iter().any(|n| n["type"] == "network"),
        "runc spec makes a network namespace: {namespaces:?}"
    );
    std::fs::write(&path, config.to_string()).unwrap();
    bundle
}

/// A runc container, killed and deleted on drop (its temp dir with it).
struct RuncContainer {
    root: PathBuf,
    id: String,
    _dir: tempfile::TempDir,
}

impl RuncContainer {
    /// A container whose state goes in a runc root of its own.
    fn start(id: &str, annotations: Value) -> Self {
        Self::start_in(None, id, annotations)
    }

    /// A container whose state goes in `root` (default: a new one in its temp dir).
    fn start_in(root: Option<&Path>, id: &str, annotations: Value) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("topotap-runc-")
            .tempdir()
            .unwrap();
        let bundle = bundle(dir.path(), annotations);
        let root = root.map_or_else(|| dir.path().join("state"), Path::to_path_buf);
        let err = dir.path().join("runc.stderr");
        let c = RuncContainer {
            root,
            id: id.to_owned(),
            _dir: dir,
        };
        // The container inherits runc's stdio: none of the test's pipes.
        let status = Command::new("runc")
            .arg("--root")
            .arg(&c.root)
            .args(["run", "-d", "--bundle"])
            .arg(&bundle)
            .arg(id)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&err).unwrap())
            .status()
            .expect("run runc (apt-get install runc: scripts/deps.sh)");
        assert!(
            status.success(),
            "runc run: {status}: {}",
            std::fs::read_to_string(&err).unwrap_or_default()
        );
        c
    }

    fn runc(&self, args: &[&str]) -> Command {
        let mut c = Command::new("runc");
        c.arg("--root").arg(&self.root).args(args);
        c
    }

    fn state(&self) -> Value {
        serde_json::from_str(&run(&mut self.runc(&["state", &self.id]))).unwrap()
    }

    fn stop(&self) {
        let _ = self
            .runc(&["kill", &self.id, "KILL"])
            .stderr(Stdio::null())
            .status();
        let _ = self
            .runc(&["delete", "--force", &self.id])
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for RuncContainer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Polls `q` until `check` accepts its answer; fails with the last answer and a dump.
async fn expect(t: &Topotap, tag: &str, q: &str, check: impl Fn(&Value) -> bool) -> Value {
    let (got, ok) = t.wait_for(q, DEADLINE, check).await;
    if !ok {
        panic!("{q}: got {got}\n{}", t.dump_named(tag).await);
    }
    got
}

/// The netns node named `name` owns one container node, whose metadata is returned.
async fn container_under_netns(t: &Topotap, tag: &str, name: &str) -> Value {
    let q = format!("G.V().Has('Type','netns','Name','{name}').Out().Has('Type','container')");
    let got = expect(t, tag, &q, |v| v.as_array().is_some_and(|a| a.len() == 1)).await;
    got[0]["Metadata"].clone()
}

/// Both the container node and the namespace named after it are gone.
async fn expect_gone(t: &Topotap, tag: &str, id: &str, name: &str) {
    expect(
        t,
        tag,
        &format!("G.V().Has('Container.ID','{id}').Count()"),
        |v| v == &json!(0),
    )
    .await;
    expect(
        t,
        tag,
        &format!("G.V().Has('Type','netns','Name','{name}').Count()"),
        |v| v == &json!(0),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runc_container_names_its_namespace() {
    let tag = rand_tag();
    let id = format!("tt{tag}");
    // Started first: the container appears while the probe watches.
    let probe_root = tempfile::tempdir().unwrap();
    let root = probe_root.path().join("state");
    std::fs::create_dir_all(&root).unwrap();
    let t = Topotap::start(&[
        "--ovsdb",
        "none",
        "--docker-socket",
        "none",
        "--runc-root",
        root.to_str().unwrap(),
    ]);
    let annotations = json!({
        "io.kubernetes.pod.name": format!("pod{tag}"),
        "io.kubernetes.pod.namespace": format!("ns{tag}"),
    });
    let c = RuncContainer::start_in(Some(&root), &id, annotations);
    let pid = c.state()["pid"].as_u64().expect("runc state pid");

    let netns = expect(
        &t,
        &tag,
        &format!("G.V().Has('Type','netns','Name','{id}')"),
        |v| v.as_array().is_some_and(|a| a.len() == 1),
    )
    .await;
    let m = &netns[0]["Metadata"];
    assert_eq!(m["Manager"], "runc", "{m}");
    let ino = std::fs::metadata(format!("/proc/{pid}/ns/net"))
        .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
        .unwrap();
    assert_eq!(m["Inode"], json!(ino), "{m}");
    // Its interfaces are there as in any namespace.
    expect(
        &t,
        &tag,
        &format!("G.V().Has('Type','netns','Name','{id}').Out().Has('Name','lo').Count()"),
        |v| v == &json!(1),
    )
    .await;

    let m = container_under_netns(&t, &tag, &id).await;
    assert_eq!(m["Name"], json!(id), "{m}");
    assert_eq!(m["Manager"], "runc", "{m}");
    let container = &m["Container"];
    assert_eq!(container["ID"], json!(id), "{m}");
    assert_eq!(container["Runtime"], "runc", "{m}");
    assert_eq!(container["Status"], "running", "{m}");
    assert_eq!(container["InitProcessPID"], json!(pid), "{m}");
    assert_eq!(container["PodName"], json!(format!("pod{tag}")), "{m}");
    assert_eq!(container["PodNamespace"], json!(format!("ns{tag}")), "{m}");
    assert_eq!(
        container["Labels"]["io.kubernetes.pod.name"],
        json!(format!("pod{tag}")),
        "{m}"
    );
    assert!(container["Labels"].get("bundle").is_none(), "{m}");
    // The same through the Gremlin a user would write.
    expect(
        &t,
        &tag,
        &format!("G.V().Has('Container.PodName','pod{tag}').In().Values('Name')"),
        |v| v == &json!([id]),
    )
    .await;

    c.stop();
    expect_gone(&t, &tag, &id, &id).await;
    let (status, _) = t.request("GET", "/api/status", None).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_started_before_topotap_is_found_at_start() {
    let tag = rand_tag();
    let id = format!("tb{tag}");
    let c = RuncContainer::start(&id, json!({}));
    let t = Topotap::start(&[
        "--ovsdb",
        "none",
        "--docker-socket",
        "none",
        "--runc-root",
        c.root.to_str().unwrap(),
    ]);
    let m = container_under_netns(&t, &tag, &id).await;
    assert_eq!(m["Container"]["ID"], json!(id), "{m}");
    assert!(m["Container"].get("PodName").is_none(), "{m}");
    // A topotap not watching that root leaves the namespace to its process name.
    drop(t);
    let t = Topotap::start(&["--ovsdb", "none", "--docker-socket", "none"]);
    let pid = c.state()["pid"].as_u64().unwrap();
    expect(
        &t,
        &tag,
        &format!("G.V().Has('Type','netns','Path','/proc/{pid}/ns/net').Values('Name')"),
        |v| v == &json!([format!("sleep-{pid}")]),
    )
    .await;
    drop(c);
}

/// A private dockerd: its own data and exec roots and socket, no iptables rules, no
/// host-wide forwarding and no bridge. Stopped and removed on drop.
struct Dockerd {
    child: Child,
    dir: tempfile::TempDir,
}

impl Dockerd {
    /// `Err(reason)` when dockerd is missing or does not answer here.
    fn start() -> Result<Dockerd, String> {
        if Command::new("dockerd")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_err()
        {
            return Err("dockerd is not installed (Debian docker.io)".into());
        }
        let dir = tempfile::Builder::new()
            .prefix("topotap-docker-")
            .tempdir()
            .unwrap();
        let log = std::fs::File::create(dir.path().join("dockerd.log")).unwrap();
        let child = Command::new("dockerd")
            .arg("--data-root")
            .arg(dir.path().join("data"))
            .arg("--exec-root")
            .arg(dir.path().join("exec"))
            .arg("--pidfile")
            .arg(dir.path().join("dockerd.pid"))
            .arg("-H")
            .arg(format!(
                "unix://{}",
                dir.path().join("docker.sock").display()
            ))
            .args([
                "--iptables=false",
                "--ip6tables=false",
                // Left to its default, dockerd turns IPv4 forwarding on for the whole
                // host, and every namespace created afterwards inherits it.
                "--ip-forward=false",
                "--bridge=none",
                "--storage-driver=vfs",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot run dockerd: {e}"))?;
        let d = Dockerd { child, dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if d.docker(&["version"])
                .output()
                .is_ok_and(|o| o.status.success())
            {
                return Ok(d);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let log = std::fs::read_to_string(d.dir.path().join("dockerd.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(5).collect();
        Err(format!("dockerd did not answer within 30 s: {tail:?}"))
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("docker.sock")
    }

    fn runc_root(&self) -> PathBuf {
        self.dir.path().join("exec/runtime-runc")
    }

    fn docker(&self, args: &[&str]) -> Command {
        let mut c = Command::new("docker");
        c.arg("-H")
            .arg(format!("unix://{}", self.socket().display()))
            .args(args)
            .stdin(Stdio::null());
        c
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "docker -H unix://{0} ps -aq | xargs -r docker -H unix://{0} rm -f",
                self.socket().display()
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Mounts dockerd may have left under its roots go before the files.
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "grep -o ' {0}[^ ]*' /proc/mounts | sort -r | xargs -r -n1 umount -l",
                self.dir.path().display()
            ))
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_docker_container_names_its_namespace() {
    let d = match Dockerd::start() {
        Ok(d) => d,
        Err(reason) => {
            println!("skipped: no Docker daemon answers here: {reason}");
            return;
        }
    };
    let tag = rand_tag();
    let name = format!("td{tag}");
    let image = format!("topotap-test-busybox:{tag}");
    // An image made from the busybox rootfs: no registry needed.
    let dir = tempfile::tempdir().unwrap();
    let bundle = bundle(dir.path(), json!({}));
    let tar = dir.path().join("rootfs.tar");
    run(Command::new("tar")
        .arg("-C")
        .arg(bundle.join("rootfs"))
        .arg("-cf")
        .arg(&tar)
        .arg("."));
    run(&mut d.docker(&["import", tar.to_str().unwrap(), &image]));

    let t = Topotap::start(&[
        "--ovsdb",
        "none",
        "--docker-socket",
        d.socket().to_str().unwrap(),
        "--runc-root",
        d.runc_root().to_str().unwrap(),
    ]);
    let id = run(&mut d.docker(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        &name,
        "--label",
        &format!("io.kubernetes.pod.name=pod{tag}"),
        "--label",
        &format!("io.kubernetes.pod.namespace=ns{tag}"),
        &image,
        "/bin/sleep",
        "1000",
    ]))
    .trim()
    .to_owned();

    let netns = expect(
        &t,
        &tag,
        &format!("G.V().Has('Type','netns','Name','{name}')"),
        |v| v.as_array().is_some_and(|a| a.len() == 1),
    )
    .await;
    assert_eq!(netns[0]["Metadata"]["Manager"], "docker", "{netns}");
    let m = container_under_netns(&t, &tag, &name).await;
    let container = &m["Container"];
    assert_eq!(container["ID"], json!(id), "{m}");
    assert_eq!(container["Name"], json!(name), "{m}");
    assert_eq!(container["Image"], json!(image), "{m}");
    assert_eq!(container["Runtime"], "docker", "{m}");
    assert_eq!(container["PodName"], json!(format!("pod{tag}")), "{m}");
    assert_eq!(container["PodNamespace"], json!(format!("ns{tag}")), "{m}");

    run(&mut d.docker(&["rm", "-f", &name]));
    expect_gone(&t, &tag, &id, &name).await;
    drop(t);
    drop(d);
}
