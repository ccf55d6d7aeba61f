//! Fleet load: simulated agents speaking the agent protocol to one real `topotap
//! analyzer` (with a real etcd), then one real `topotap agent`.
//!
//! For each fleet size: a fresh analyzer; N simulated agents connect to
//! `/ws/agent/topology` (Skydive's headers) and each sends a `Sync` of a host node, I
//! interfaces and their ownership edges (synthetic, with the metadata keys the netlink
//! probe writes), then answers pings. Reported:
//! - time to converge: from the first connection until `G.V().Count()` on the analyzer
//!   counts every node, and the analyzer's CPU time over that span;
//! - the analyzer's resident memory once converged (`VmRSS`, peak `VmHWM`);
//! - change latency: one `/ws/subscriber` (no filter) on the analyzer; C times, one
//!   simulated agent sends a `NodeUpdated` and the time until the subscriber has it;
//! - namespace latency: a real `topotap agent` in a network namespace of its own
//!   (reaching the analyzer over a veth) watching a directory of its own; K times a
//!   namespace is bound there (as `ip netns add` does) and the time until the
//!   subscriber has its node.
//!
//! `cargo bench --bench fleet_load` (root, for the namespace part). Env: `FLEET_AGENTS`
//! (comma-separated sizes, default `10,100,1000`), `FLEET_INTERFACES` (default 200),
//! `FLEET_CHANGES` (default 200), `FLEET_NETNS` (default 20), `FLEET_LOG` (the
//! analyzer's log filter, default `error`; `warn` shows why it closes connections),
//! `TOPOTAP_BIN` (the `topotap` binary to measure, e.g. `target/release/topotap` with a
//! bench harness built in the dev profile).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::{client::IntoClientRequest, Message};

/// The `topotap` binary the analyzer and the real agent run: `TOPOTAP_BIN`, or the one
/// cargo built with this bench (`target/debug/topotap` unless built with `--release`).
fn bin() -> String {
    std::env::var("TOPOTAP_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_topotap").to_owned())
}

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn sh(cmd: &str) {
    let out = Command::new("sh").args(["-c", cmd]).output().expect("sh");
    assert!(
        out.status.success(),
        "`{cmd}`: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn sh_quiet(cmd: &str) {
    let _ = Command::new("sh").args(["-c", cmd]).output();
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process killed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The first line a topotap process prints: `listening on http://ADDR`.
fn listening(child: &mut Child) -> String {
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    out.read_line(&mut line).expect("first line");
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    line.trim()
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned()
}

/// Clock ticks of CPU time (user + system) the process used so far.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 (utime, stime), counted from 1; `after` starts at field 3.
    f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
}

fn status_mb(pid: u32, key: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// The network the real agent reaches the analyzer over: a namespace with a veth to
/// the root namespace, and a netns directory the agent watches.
struct Net {
    ns: String,
    root_ip: String,
    dir: tempfile::TempDir,
}

impl Net {
    fn new() -> Net {
        let id = std::process::id() % 100_000;
        let ns = format!("flb{id}");
        let subnet = 100 + id % 150;
        sh(&format!("ip netns add {ns}"));
        sh(&format!(
            "ip link add flb{id}r type veth peer name eth0 netns {ns} && \
             ip addr add 10.214.{subnet}.1/24 dev flb{id}r && ip link set flb{id}r up && \
             ip -n {ns} addr add 10.214.{subnet}.2/24 dev eth0 && \
             ip -n {ns} link set eth0 up && ip -n {ns} link set lo up"
        ));
        let dir = tempfile::Builder::new()
            .prefix("fleet-load-netns-")
            .tempdir()
            .unwrap();
        sh(&format!(
            "mount --bind {0} {0} && mount --make-private {0} && mount --make-shared {0}",
            dir.path().display()
        ));
        Net {
            ns,
            root_ip: format!("10.214.{subnet}.1"),
            dir,
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        let d = self.dir.path().display();
        sh_quiet(&format!(
            "for f in {d}/*; do umount $f 2>/dev/null; rm -f $f; done; umount -l {d}"
        ));
        sh_quiet(&format!("ip netns del {}", self.ns));
        let id = self.ns.trim_start_matches("flb");
        sh_quiet(&format!("ip link del flb{id}r"));
    }
}

fn start_etcd(dir: &Path) -> (Proc, String) {
    let (client, peer) = (free_port(), free_port());
    let url = format!("http://127.0.0.1:{client}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    let child = Command::new("etcd")
        .args(["--name", "b", "--data-dir"])
        .arg(dir)
        .args([
            "--listen-client-urls",
            &url,
            "--advertise-client-urls",
            &url,
        ])
        .args(["--listen-peer-urls", &peer_url])
        .args(["--initial-advertise-peer-urls", &peer_url])
        .args(["--initial-cluster", &format!("b={peer_url}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("etcd (Debian etcd-server)");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", client)).is_err() {
        assert!(Instant::now() < deadline, "etcd did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    (Proc(child), url)
}

/// A simulated host: its `Sync` (host node, interfaces, ownership edges).
fn sync_message(host: &str, interfaces: usize) -> String {
    let host_id = format!("{host}-node");
    let mut nodes = vec![json!({"ID": host_id, "Metadata": {"Name": host, "Type": "host"}})];
    let mut edges = Vec::new();
    for j in 0..interfaces {
        let id = format!("{host}-if{j}");
        nodes.push(json!({"ID": id, "Metadata": {
            "Name": format!("veth{j}"), "Type": "veth", "IfIndex": j + 2,
            "MAC": format!("02:00:00:00:{:02x}:{:02x}", j / 256, j % 256),
            "MTU": 1500, "State": "UP", "LinkFlags": ["UP", "BROADCAST", "MULTICAST"],
            "Driver": "veth", "EncapType": "ether",
            "IPV4": [format!("10.{}.{}.1/24", j / 256, j % 256)],
        }}));
        edges.push(
            json!({"ID": format!("{host}-e{j}"), "Parent": host_id, "Child": id,
            "Metadata": {"RelationType": "ownership"}}),
        );
    }
    json!({"Namespace": "Graph", "Type": "Sync", "Obj": {"Nodes": nodes, "Edges": edges}})
        .to_string()
}

/// One simulated agent: connects, syncs, answers pings, and sends what it is told.
async fn sim_agent(
    addr: String,
    host: String,
    interfaces: usize,
    gate: Arc<tokio::sync::Semaphore>,
    mut rx: mpsc::Receiver<String>,
    closed: Arc<AtomicUsize>,
) {
    // A bounded number of connections being opened at once.
    let permit = gate.acquire_owned().await.unwrap();
    let mut req = format!("ws://{addr}/ws/agent/topology")
        .into_client_request()
        .unwrap();
    let h = req.headers_mut();
    h.insert("X-Host-ID", host.parse().unwrap());
    h.insert("X-Client-Type", "skydive-agent".parse().unwrap());
    h.insert(
        "X-Persistence-Policy",
        "DeleteOnDisconnect".parse().unwrap(),
    );
    let (ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .unwrap_or_else(|e| panic!("{host}: {e}"));
    let (mut tx, mut read) = ws.split();
    tx.send(Message::text(sync_message(&host, interfaces)))
        .await
        .expect("send Sync");
    drop(permit);
    loop {
        tokio::select! {
            m = read.next() => match m {
                Some(Ok(Message::Ping(p))) => { let _ = tx.send(Message::Pong(p)).await; }
                Some(Ok(_)) => {}
                _ => {
                    // The analyzer closed the connection (it logs why with FLEET_LOG=warn).
                    closed.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            },
            out = rx.recv() => match out {
                Some(text) => { let _ = tx.send(Message::text(text)).await; }
                None => return,
            },
        }
    }
}

async fn count(http: &reqwest::Client, api: &str) -> i64 {
    let Ok(r) = http
        .post(format!("{api}/api/topology"))
        .header("Content-Type", "application/json")
        .body(r#"{"GremlinQuery":"G.V().Count()"}"#)
        .send()
        .await
    else {
        return -1;
    };
    r.json::<Value>()
        .await
        .ok()
        .and_then(|v| v.as_i64())
        .unwrap_or(-1)
}

type Subscriber =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Reads the subscriber until a message holds `needle`; false after `limit`.
async fn wait_for(sub: &mut Subscriber, needle: &str, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, sub.next()).await {
            Ok(Some(Ok(Message::Text(t)))) if t.contains(needle) => return true,
            Ok(Some(Ok(_))) => {}
            _ => return false,
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

async fn run(
    agents: usize,
    interfaces: usize,
    changes: usize,
    netns: usize,
    etcd: &str,
    net: &Net,
) {
    let tag = format!("n{agents}-{}", std::process::id());
    let state = tempfile::tempdir().unwrap();
    let mut child = Command::new(bin())
        .args(["analyzer", "--listen", &format!("{}:0", net.root_ip)])
        .args(["--etcd", etcd, "--host-id", &format!("an-{tag}")])
        .args(["--insecure-no-auth", "--max-connections", "10000"])
        .arg("--state-dir")
        .arg(state.path())
        .env(
            "TOPOTAP_LOG",
            std::env::var("FLEET_LOG").unwrap_or_else(|_| "error".into()),
        )
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn analyzer");
    let addr = listening(&mut child);
    let analyzer = Proc(child);
    let pid = analyzer.0.id();
    let api = format!("http://{addr}");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let rss_idle = status_mb(pid, "VmRSS:");

    // Converge.
    let want = (agents * (interfaces + 1)) as i64;
    let ticks0 = cpu_ticks(pid);
    let started = Instant::now();
    let mut senders = Vec::with_capacity(agents);
    let gate = Arc::new(tokio::sync::Semaphore::new(64));
    let closed = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..agents {
        let (tx, rx) = mpsc::channel(4);
        senders.push(tx);
        let (addr, host, gate) = (addr.clone(), format!("sim{i}-{tag}"), gate.clone());
        let closed = closed.clone();
        tasks.push(tokio::spawn(sim_agent(
            addr, host, interfaces, gate, rx, closed,
        )));
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    while count(&http, &api).await != want {
        let lost = closed.load(Ordering::Relaxed);
        assert!(
            Instant::now() < deadline && lost == 0,
            "{agents} agents did not converge: {lost} connections closed by the analyzer"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let converge = started.elapsed();
    let cpu = (cpu_ticks(pid) - ticks0) as f64 / 100.0;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (rss, hwm) = (status_mb(pid, "VmRSS:"), status_mb(pid, "VmHWM:"));
    let ticks_idle = cpu_ticks(pid);
    tokio::time::sleep(Duration::from_secs(10)).await;
    let idle_cpu = (cpu_ticks(pid) - ticks_idle) as f64 / 100.0 / 10.0 * 100.0;

    // Change -> subscriber.
    let (mut sub, _) = tokio_tungstenite::connect_async(format!(
        "ws://{addr}/ws/subscriber?x-client-type=bench&x-host-id=bench-sub"
    ))
    .await
    .expect("subscriber");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut lat = Vec::with_capacity(changes);
    for k in 0..changes {
        let i = (k * 7919) % agents;
        let j = k % interfaces;
        let host = format!("sim{i}-{tag}");
        let marker = format!("bench-{k}-{tag}");
        let msg = json!({"Namespace": "Graph", "Type": "NodeUpdated", "Obj": {
            "ID": format!("{host}-if{j}"), "Metadata": {"Name": format!("veth{j}"),
            "Type": "veth", "MTU": 1500, "Alias": marker}}});
        let t0 = Instant::now();
        senders[i].send(msg.to_string()).await.expect("agent alive");
        assert!(
            wait_for(&mut sub, &marker, Duration::from_secs(30)).await,
            "change {k} never reached the subscriber"
        );
        lat.push(t0.elapsed());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    lat.sort();

    // Namespace on a real agent -> subscriber.
    let agent_state = tempfile::tempdir().unwrap();
    let mut child = Command::new("ip")
        .args(["netns", "exec", &net.ns])
        .args(["unshare", "--pid", "--fork", "--kill-child", "--mount-proc"])
        .args(["--propagation", "slave"])
        .arg(bin())
        .args([
            "agent",
            "--analyzer",
            &addr,
            "--host-id",
            &format!("real-{tag}"),
        ])
        .args(["--listen", "127.0.0.1:0", "--ovsdb", "none", "--netns-path"])
        .arg(net.dir.path())
        .arg("--state-dir")
        .arg(agent_state.path())
        .env("TOPOTAP_LOG", "error")
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn agent");
    listening(&mut child);
    let _agent = Proc(child);
    let q = format!("{api}/api/topology");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let body = json!({"GremlinQuery": format!("G.V().Has('Type','host','Name','real-{tag}').Count()")});
        let n = http
            .post(&q)
            .header("Content-Type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .ok();
        let n = match n {
            Some(r) => r.json::<Value>().await.ok().and_then(|v| v.as_i64()),
            None => None,
        };
        if n == Some(1) {
            break;
        }
        assert!(Instant::now() < deadline, "the real agent never showed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut ns_lat = Vec::with_capacity(netns);
    for k in 0..netns {
        let name = format!("b{k}x{}", tag.replace('-', ""));
        let file: PathBuf = net.dir.path().join(&name);
        std::fs::write(&file, b"").unwrap();
        let t0 = Instant::now();
        sh(&format!("unshare --net={} true", file.display()));
        assert!(
            wait_for(
                &mut sub,
                &format!("\"Name\":\"{name}\""),
                Duration::from_secs(30)
            )
            .await,
            "namespace {name} never reached the subscriber"
        );
        ns_lat.push(t0.elapsed());
    }
    ns_lat.sort();
    println!(
        "| {agents} | {} | {:.2} s | {:.1} s | {:.0} % | {:.0} / {:.0} MB (idle {:.0}) | {} / {} ms | {} / {} / {} ms | {} |",
        agents * (interfaces + 1),
        converge.as_secs_f64(),
        cpu,
        idle_cpu,
        rss,
        hwm,
        rss_idle,
        ms(percentile(&lat, 0.5)),
        ms(percentile(&lat, 0.99)),
        ms(percentile(&ns_lat, 0.5)),
        ms(percentile(&ns_lat, 0.99)),
        ms(*ns_lat.last().unwrap_or(&Duration::ZERO)),
        closed.load(Ordering::Relaxed),
    );
    drop(senders);
    for t in tasks {
        t.abort();
    }
    let d = net.dir.path().display();
    sh_quiet(&format!(
        "for f in {d}/*; do umount $f 2>/dev/null; rm -f $f; done"
    ));
}

fn main() {
    let sizes: Vec<usize> = std::env::var("FLEET_AGENTS")
        .unwrap_or_else(|_| "10,100,1000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let interfaces = env_or("FLEET_INTERFACES", 200usize);
    let changes = env_or("FLEET_CHANGES", 200usize);
    let netns = env_or("FLEET_NETNS", 20usize);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let etcd_dir = tempfile::tempdir().unwrap();
    let (_etcd, etcd) = start_etcd(etcd_dir.path());
    let net = Net::new();
    println!(
        "| agents | nodes | converge | analyzer CPU while converging | idle CPU | RSS / peak | change -> subscriber p50 / p99 | namespace -> subscriber p50 / p99 / max | agent connections closed |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for n in sizes {
        rt.block_on(run(n, interfaces, changes, netns, &etcd, &net));
    }
}
