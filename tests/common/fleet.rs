//! Fleet fixtures: a real etcd on loopback, `topotap analyzer` and `topotap agent`
//! processes, and the test network (a bridge in the root namespace for the analyzers,
//! one network namespace per agent host joined to it by a veth).
//!
//! A test file takes it beside `common` (it uses `crate::common`):
//! `mod common; #[path = "common/fleet.rs"] mod fleet;`
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::SinkExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest, Message};

use crate::common::net::{sh, sh_quiet, Cleanup};

pub const BIN: &str = env!("CARGO_BIN_EXE_topotap");

/// A free TCP port on loopback (free when asked; the caller binds it soon after).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A process killed on drop, with the address it printed (`listening on URL`, without
/// the scheme).
pub struct Proc {
    pub child: Child,
    pub addr: String,
    /// `http` or `https`.
    pub scheme: String,
    /// Its state directory, removed once it is stopped.
    pub state: Option<tempfile::TempDir>,
}

impl Proc {
    pub fn spawn(cmd: &mut Command) -> Proc {
        let mut child = cmd
            .env("TOPOTAP_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn");
        let mut out = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        out.read_line(&mut line).expect("first line");
        std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
        let (scheme, addr) = url
            .split_once("://")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
        Proc {
            child,
            addr: addr.to_owned(),
            scheme: scheme.to_owned(),
            state: None,
        }
    }

    /// `scheme://addr`.
    pub fn base(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
        drop(self.state.take());
    }
}

/// One etcd member on loopback with a temporary data directory; killed on drop,
/// restartable on the same data.
pub struct Etcd {
    dir: tempfile::TempDir,
    client: u16,
    peer: u16,
    child: Option<Child>,
}

impl Etcd {
    pub async fn start() -> Etcd {
        let mut e = Etcd {
            dir: tempfile::tempdir().unwrap(),
            client: free_port(),
            peer: free_port(),
            child: None,
        };
        e.resume().await;
        e
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client)
    }

    /// Starts it (again), on the same ports and data, and waits until it is healthy.
    pub async fn resume(&mut self) {
        let peer = format!("http://127.0.0.1:{}", self.peer);
        let child = Command::new("etcd")
            .args(["--name", "t", "--data-dir"])
            .arg(self.dir.path().join("data"))
            .args(["--listen-client-urls", &self.url()])
            .args(["--advertise-client-urls", &self.url()])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("t={peer}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("etcd (Debian etcd-server, scripts/deps.sh)");
        self.child = Some(child);
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = http.get(format!("{}/health", self.url())).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "etcd did not become healthy");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The test network: a bridge in the root namespace (the analyzers' address) and one
/// namespace per agent host.
pub struct Net {
    pub tag: String,
    pub subnet: u8,
    cleanup: Cleanup,
    dirs: Vec<tempfile::TempDir>,
}

impl Net {
    pub fn new() -> Net {
        let tag = crate::common::rand_tag();
        let subnet = 100 + (u8::from_str_radix(&tag[..2], 16).unwrap() % 150);
        let mut cleanup = Cleanup::new();
        let br = format!("ft{tag}br");
        sh(&format!("ip link add {br} type bridge"));
        cleanup.link(&br);
        sh(&format!(
            "ip addr add 10.213.{subnet}.254/24 dev {br} && ip link set {br} up"
        ));
        Net {
            tag,
            subnet,
            cleanup,
            dirs: Vec::new(),
        }
    }

    pub fn analyzer_ip(&self) -> String {
        format!("10.213.{}.254", self.subnet)
    }

    /// Host `i`'s address on the bridge.
    pub fn host_ip(&self, i: u8) -> String {
        format!("10.213.{}.{i}", self.subnet)
    }

    /// Host `i`: a namespace on the bridge at 10.213.<subnet>.<i> (`eth0`), and a
    /// netns directory of its own. Returns the namespace name and that directory.
    pub fn host(&mut self, i: u8) -> (String, PathBuf) {
        let (tag, subnet) = (self.tag.clone(), self.subnet);
        let ns = format!("ft{tag}h{i}");
        self.cleanup.netns(&ns);
        let root_end = format!("ft{tag}v{i}");
        sh(&format!(
            "ip link add {root_end} type veth peer name eth0 netns {ns} && \
             ip link set {root_end} master ft{tag}br up && \
             ip -n {ns} addr add 10.213.{subnet}.{i}/24 dev eth0 && \
             ip -n {ns} link set eth0 up"
        ));
        self.cleanup.link(&root_end);
        let dir = tempfile::Builder::new()
            .prefix("topotap-fleet-netns-")
            .tempdir()
            .unwrap();
        let path = dir.path().to_owned();
        // A shared mount, as `ip netns` makes /var/run/netns: namespaces bound under it
        // later show in the agent's mount namespace too.
        sh(&format!(
            "mount --bind {0} {0} && mount --make-private {0} && mount --make-shared {0}",
            path.display()
        ));
        self.cleanup.defer(format!("umount -l {}", path.display()));
        self.dirs.push(dir);
        (ns, path)
    }

    /// A named namespace `name` in `dir` (a bind mount, as `ip netns add` makes in
    /// /var/run/netns), removed at the end.
    pub fn netns_in(&mut self, dir: &Path, name: &str) {
        let file = dir.join(name);
        std::fs::write(&file, b"").unwrap();
        self.cleanup
            .defer(format!("umount {0}; rm -f {0}", file.display()));
        sh(&format!("unshare --net={} true", file.display()));
    }

    /// Any command to run when the network is torn down (before the namespaces go).
    pub fn defer(&mut self, cmd: impl Into<String>) {
        self.cleanup.defer(cmd);
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        // Namespaces bound under the directories go before the directories.
        let cleanup = std::mem::take(&mut self.cleanup);
        drop(cleanup);
        for d in &self.dirs {
            sh_quiet(&format!(
                "for f in {}/*; do umount $f 2>/dev/null; done",
                d.path().display()
            ));
        }
    }
}

/// A `topotap analyzer` on `listen` (`IP:PORT`, port 0 for any) with a state
/// directory of its own.
pub fn analyzer_on(listen: &str, etcd: &Etcd, host_id: &str, extra: &[&str]) -> Proc {
    let state = tempfile::tempdir().unwrap();
    let mut p = Proc::spawn(
        Command::new(BIN)
            .args(["analyzer", "--listen", listen])
            .args(["--etcd", &etcd.url(), "--host-id", host_id])
            .arg("--state-dir")
            .arg(state.path())
            .args(extra),
    );
    p.state = Some(state);
    p
}

/// A `topotap analyzer` on the test bridge's address.
pub fn analyzer(net: &Net, etcd: &Etcd, host_id: &str, port: u16, extra: &[&str]) -> Proc {
    analyzer_on(
        &format!("{}:{port}", net.analyzer_ip()),
        etcd,
        host_id,
        extra,
    )
}

/// A `topotap agent` in namespace `ns` (and a PID namespace of its own), watching
/// `netns_dir` for named namespaces, reporting to `analyzers`.
pub fn agent(
    ns: &str,
    netns_dir: &Path,
    host_id: &str,
    analyzers: &[&Proc],
    extra: &[&str],
) -> Proc {
    let list: Vec<&str> = analyzers.iter().map(|a| a.addr.as_str()).collect();
    let state = tempfile::tempdir().unwrap();
    let mut p = Proc::spawn(
        Command::new("ip")
            .args(["netns", "exec", ns])
            // A PID namespace of its own: the probes' /proc scan sees only this agent,
            // as on a host of its own. The agent dies with the test's handle on it.
            .args(["unshare", "--pid", "--fork", "--kill-child", "--mount-proc"])
            // Namespaces the test binds later under --netns-path must show inside.
            .args(["--propagation", "slave"])
            .arg(BIN)
            .args(["agent", "--analyzer", &list.join(","), "--host-id", host_id])
            .args(["--listen", "127.0.0.1:0", "--ovsdb", "none", "--netns-path"])
            .arg(netns_dir)
            .arg("--state-dir")
            .arg(state.path())
            .args(extra),
    );
    p.state = Some(state);
    p
}

/// A small client of an analyzer's API.
pub struct Api {
    pub base: String,
    pub http: reqwest::Client,
    pub auth: Option<(String, String)>,
}

impl Api {
    pub fn new(p: &Proc) -> Api {
        Api {
            base: p.base(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap(),
            auth: None,
        }
    }

    /// `method path` with an optional JSON body: the status and the body's text.
    pub async fn request(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req
                .header("Content-Type", "application/json")
                .body(b.to_owned());
        }
        if let Some((u, p)) = &self.auth {
            req = req.basic_auth(u, Some(p));
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        (status, resp.text().await.unwrap())
    }

    /// `GET path`, which must answer 200 with JSON.
    pub async fn json(&self, path: &str) -> Value {
        let (status, body) = self.request("GET", path, None).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    pub async fn try_query(&self, gremlin: &str) -> Option<Value> {
        let mut req = self
            .http
            .post(format!("{}/api/topology", self.base))
            .header("Content-Type", "application/json")
            .body(json!({ "GremlinQuery": gremlin }).to_string());
        if let Some((u, p)) = &self.auth {
            req = req.basic_auth(u, Some(p));
        }
        let resp = req.send().await.ok()?;
        if !resp.status().is_success() {
            return None;
        }
        resp.json().await.ok()
    }

    pub async fn query(&self, gremlin: &str) -> Value {
        self.try_query(gremlin)
            .await
            .unwrap_or_else(|| panic!("query {gremlin} failed on {}", self.base))
    }

    /// Host names of the host nodes, sorted.
    pub async fn hosts(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .try_query("G.V().Has('Type','host').Values('Name')")
            .await
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default();
        v.sort();
        v
    }

    /// The number a `...Count()` query answers, -1 when it fails.
    pub async fn count(&self, gremlin: &str) -> i64 {
        self.try_query(gremlin)
            .await
            .and_then(|v| v.as_i64())
            .unwrap_or(-1)
    }

    /// The capture UUIDs listed, sorted.
    pub async fn captures(&self) -> Vec<String> {
        let list = self.json("/api/capture").await;
        let mut ids: Vec<String> = list.as_object().unwrap().keys().cloned().collect();
        ids.sort();
        ids
    }

    /// `method path` with an optional JSON body: the status and the body as JSON
    /// (as a JSON string when it is not JSON).
    pub async fn send(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req
                .header("Content-Type", "application/json")
                .body(b.to_string());
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Entries of `key` (`Captures`, `PacketInjections`) with `ID` `id`, over all
    /// nodes, as (node name, entry).
    pub async fn entries(&self, key: &str, id: &str) -> Vec<(String, Value)> {
        let nodes = self
            .try_query(&format!("G.V().Has('{key}.ID', '{id}')"))
            .await
            .unwrap_or(json!([]));
        let mut out = Vec::new();
        for n in nodes.as_array().cloned().unwrap_or_default() {
            let name = n["Metadata"]["Name"].as_str().unwrap_or("").to_owned();
            for e in n["Metadata"][key].as_array().cloned().unwrap_or_default() {
                if e["ID"] == id {
                    out.push((name.clone(), e));
                }
            }
        }
        out
    }

    /// Whether this analyzer is the dispatcher.
    pub async fn is_master(&self) -> bool {
        self.json("/api/status").await["Captures"]["IsMaster"] == json!(true)
    }
}

/// Polls `check` every 20 ms until it holds or `timeout` passes; returns whether it
/// held and after how long.
pub async fn eventually<F, Fut>(timeout: Duration, mut check: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if check().await {
            return Some(start.elapsed());
        }
        if start.elapsed() > timeout {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// As `eventually`, panicking with `what` when `check` never holds.
pub async fn wait_until<F, Fut>(limit: Duration, what: &str, check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    eventually(limit, check)
        .await
        .unwrap_or_else(|| panic!("{what}: not within {limit:?}"))
}

/// The `eth0` of host `host` (the interface on the test bridge).
pub fn eth0_of(host: &str) -> String {
    format!("G.V().Has('Type','host','Name','{host}').Out().Has('Name','eth0')")
}

/// Creates a capture through `via` and waits until every analyzer in `on` shows it
/// active on exactly one interface; its UUID.
pub async fn active_capture(via: &Api, on: &[&Api], body: Value, what: &str) -> String {
    let (s, cap) = via.send("POST", "/api/capture", Some(body)).await;
    assert_eq!(s, 201, "{cap}");
    let id = cap["UUID"].as_str().unwrap().to_owned();
    for api in on {
        wait_until(Duration::from_secs(15), what, || async {
            let e = api.entries("Captures", &id).await;
            e.len() == 1 && e[0].1["State"] == "active"
        })
        .await;
    }
    id
}

pub fn sorted(v: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = v.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A raw connection to `/ws/agent/topology` at `addr` (`IP:PORT`) as host `host`, with
/// the persistence policy `persistence` (`DeleteOnDisconnect` or `Persistent`).
pub async fn raw_agent_at(
    addr: &str,
    host: &str,
    persistence: &str,
) -> Result<Ws, tungstenite::Error> {
    let mut req = format!("ws://{addr}/ws/agent/topology")
        .into_client_request()
        .unwrap();
    let h = req.headers_mut();
    h.insert("X-Host-ID", host.parse().unwrap());
    h.insert("X-Client-Type", "skydive-agent".parse().unwrap());
    h.insert("X-Persistence-Policy", persistence.parse().unwrap());
    tokio_tungstenite::connect_async(req).await.map(|(s, _)| s)
}

/// A raw agent connection to `analyzer` as host `host`, deleted on disconnect.
pub async fn raw_agent(analyzer: &Proc, host: &str) -> Result<Ws, tungstenite::Error> {
    raw_agent_at(&analyzer.addr, host, "DeleteOnDisconnect").await
}

/// Sends a `Graph` message of type `kind` with `obj` on a raw agent connection.
pub async fn send_graph(ws: &mut Ws, kind: &str, obj: Value) {
    ws.send(Message::text(
        json!({"Namespace": "Graph", "Type": kind, "Obj": obj}).to_string(),
    ))
    .await
    .expect("send to the analyzer");
}
