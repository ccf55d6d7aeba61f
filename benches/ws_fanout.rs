//! WebSocket fan-out: N subscribers with a `SubGraph()` filter against N subscribers
//! without one, on the real `topotap` binary, while graph changes are made through the
//! API (`POST /api/node`, `PATCH /api/node/ID`).
//!
//! For each mode a fresh server gets a starting graph, the subscribers connect and
//! synchronise, then one writer makes the changes one after another. A last change
//! (a veth node every filter matches) marks the end; the time is from the first change
//! until the last subscriber has received that marker. Also reported: messages per
//! subscriber and the server's peak RSS (`VmHWM`).
//!
//! `cargo bench --bench ws_fanout` (env: `WS_SUBSCRIBERS`, default 200; `WS_CHANGES`,
//! default 900; `WS_START_NODES`, default 200; `WS_BASELINE_BIN`: another `topotap`
//! binary, e.g. a build of an earlier commit, measured the same way in the same run).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

const FILTER: &str = "G.V().Has('Type','veth').SubGraph()";

struct Server {
    child: Child,
    addr: String,
    _state: tempfile::TempDir,
}

impl Server {
    fn start(bin: &str) -> Server {
        let state = tempfile::tempdir().expect("temp dir");
        let mut child = Command::new(bin)
            .args(["allinone", "--listen", "127.0.0.1:0", "--no-probes"])
            .args(["--host-id", "bench", "--state-dir"])
            .arg(state.path())
            .env("TOPOTAP_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn topotap");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("first line");
        let addr = line
            .trim()
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        Server {
            child,
            addr,
            _state: state,
        }
    }

    fn peak_rss_mb(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn send(http: &reqwest::Client, method: reqwest::Method, url: String, body: Value) {
    let resp = http
        .request(method, url)
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("request");
    assert!(resp.status().is_success(), "{}", resp.status());
}

/// Creates a node with `POST /api/node`.
async fn post_node(http: &reqwest::Client, api: &str, id: &str, kind: &str) {
    let mut body = json!({"ID": id, "Metadata": {"Name": id, "Type": kind, "MTU": 1500}});
    if kind == "netns" {
        // Skydive's schema (and earlier builds) require a namespace's path.
        body["Metadata"]["Path"] = json!(format!("/var/run/netns/{id}"));
    }
    send(http, reqwest::Method::POST, format!("{api}/api/node"), body).await;
}

struct Outcome {
    seconds: f64,
    messages: f64,
    rss_mb: f64,
}

async fn run(
    bin: &str,
    filtered: bool,
    subscribers: usize,
    changes: usize,
    start_nodes: usize,
) -> Outcome {
    let server = Server::start(bin);
    let http = reqwest::Client::new();
    let api = format!("http://{}", server.addr);
    for i in 0..start_nodes {
        let kind = if i % 2 == 0 { "veth" } else { "netns" };
        post_node(&http, &api, &format!("start-{i}"), kind).await;
    }

    let filter = if filtered { FILTER } else { "" };
    let mut clients = Vec::new();
    for i in 0..subscribers {
        let url = format!(
            "ws://{}/ws/subscriber?x-client-type=bench&x-host-id=sub{i}",
            server.addr
        );
        let (mut ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("connect");
        let req = json!({"Namespace": "Graph", "Type": "SyncRequest", "UUID": format!("s{i}"),
            "Obj": {"GremlinFilter": filter}});
        ws.send(Message::Text(req.to_string().into()))
            .await
            .expect("send");
        loop {
            match ws.next().await.expect("open").expect("message") {
                Message::Text(t) if t.contains("SyncReply") => break,
                _ => {}
            }
        }
        clients.push(ws);
    }

    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
    for mut ws in clients {
        let done = done_tx.clone();
        tokio::spawn(async move {
            let mut count = 0usize;
            while let Some(Ok(msg)) = ws.next().await {
                if let Message::Text(t) = msg {
                    count += 1;
                    if t.contains("\"ID\":\"end-marker\"") {
                        let _ = done.send((Instant::now(), count));
                        break;
                    }
                }
            }
        });
    }
    drop(done_tx);

    let t0 = Instant::now();
    for i in 0..changes.saturating_sub(1) {
        match i % 3 {
            0 => post_node(&http, &api, &format!("veth-{i}"), "veth").await,
            1 => post_node(&http, &api, &format!("bridge-{i}"), "bridge").await,
            _ => {
                let patch = json!([{"op": "replace", "path": "/Metadata/MTU", "value": 1400 + i}]);
                let url = format!("{api}/api/node/veth-{}", i - 2);
                send(&http, reqwest::Method::PATCH, url, patch).await
            }
        }
    }
    post_node(&http, &api, "end-marker", "veth").await;

    let mut last = t0;
    let mut total = 0usize;
    let mut finished = 0usize;
    let deadline = tokio::time::sleep(Duration::from_secs(600));
    tokio::pin!(deadline);
    while finished < subscribers {
        tokio::select! {
            got = done_rx.recv() => match got {
                Some((at, count)) => {
                    last = last.max(at);
                    total += count;
                    finished += 1;
                }
                None => break,
            },
            _ = &mut deadline => break,
        }
    }
    assert_eq!(
        finished, subscribers,
        "some subscribers never got the last change"
    );
    Outcome {
        seconds: (last - t0).as_secs_f64(),
        messages: total as f64 / subscribers as f64,
        rss_mb: server.peak_rss_mb(),
    }
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not and only builds.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let subscribers = env_or("WS_SUBSCRIBERS", 200);
    let changes = env_or("WS_CHANGES", 900);
    let start_nodes = env_or("WS_START_NODES", 200);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "ws fan-out: {subscribers} subscribers, {changes} changes, {start_nodes} nodes at start"
    );
    let mut bins = vec![("this build", env!("CARGO_BIN_EXE_topotap").to_owned())];
    if let Ok(b) = std::env::var("WS_BASELINE_BIN") {
        bins.insert(0, ("baseline", b));
    }
    for (label, bin) in bins {
        println!("{label} ({bin}):");
        let mut results = Vec::new();
        for (name, filtered) in [("unfiltered", false), ("filtered", true)] {
            let o = rt.block_on(run(&bin, filtered, subscribers, changes, start_nodes));
            println!(
                "  {name:>10}: {:7.2} s until every subscriber got the last change, \
                 {:6.1} messages each, server peak RSS {:6.1} MB",
                o.seconds, o.messages, o.rss_mb
            );
            results.push(o.seconds);
        }
        println!("  filtered / unfiltered: {:.2}x", results[1] / results[0]);
    }
}
