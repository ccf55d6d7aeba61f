//! `/metrics` while a real capture runs: traffic between two namespaces, an sFlow capture
//! exporting to a collector namespace, and the scrape checked by `promtool check metrics`
//! (Debian's `prometheus`) and read back value by value.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::collector::{in_netns, require, send_udp, CollectorNet};
use common::net::{bridged_pair, sh};
use common::{rand_tag, Topotap};
use serde_json::json;

/// Samples of a Prometheus text scrape: `name{labels}` -> value.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_owned(), v.parse().ok()?))
        })
        .collect()
}

fn promtool_check(text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let findings = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && findings.trim().is_empty(),
        "promtool check metrics: {findings}\n{text}"
    );
}

async fn scrape(t: &Topotap, accept: Option<&str>) -> (String, String) {
    let mut req = reqwest::Client::new().get(t.url("/metrics"));
    if let Some(a) = accept {
        req = req.header("Accept", a);
    }
    let resp = req.send().await.expect("GET /metrics");
    assert_eq!(resp.status(), 200);
    let ct = resp.headers()["content-type"].to_str().unwrap().to_owned();
    (ct, resp.text().await.unwrap())
}

#[tokio::test]
async fn capture_and_export_counters_while_a_capture_runs() {
    require("promtool", "prometheus");
    require("prometheus", "prometheus");
    let p = format!("m{}", rand_tag());
    let mut net = bridged_pair(&p, 41);
    let collector = CollectorNet::new(&p, 41, &mut net);
    // The collector: a UDP socket inside the collector namespace.
    let sink = in_netns(&collector.ns, {
        let addr = format!("{}:6343", collector.v4);
        move || std::net::UdpSocket::bind(addr).expect("bind collector")
    });
    sh(&format!("ip netns exec {p}a ping -c 1 -W 2 10.77.41.2"));

    let t = Topotap::start(&["--ovsdb", "none"]);
    let (s, cap) = t
        .request(
            "POST",
            "/api/capture",
            Some(
                &json!({
                    "GremlinQuery": format!("G.V().Has('Name', '{p}a').Out().Has('Name', 'eth0')"),
                    "BPFFilter": "udp and dst port 9999",
                    "SamplingRate": 1,
                    "Target": format!("{}:6343", collector.v4),
                    "TargetType": "sflow",
                })
                .to_string(),
            ),
        )
        .await;
    assert_eq!(s, 201, "{cap}");
    let uuid = cap["UUID"].as_str().unwrap().to_owned();
    let q = format!("G.V().Has('Captures.ID', '{uuid}', 'Captures.State', 'active')");
    let (v, ok) = t
        .wait_for(&q, Duration::from_secs(10), |v| {
            v.as_array().is_some_and(|a| a.len() == 1)
        })
        .await;
    assert!(ok, "capture not active: {v}");

    send_udp(
        &format!("{p}a"),
        "10.77.41.2:9999".parse().unwrap(),
        500,
        100,
        50,
    );

    let received = format!(
        "topotap_capture_packets_total{{capture=\"{uuid}\",host=\"{}\",interface=\"eth0\",outcome=\"received\"}}",
        t.host_id
    );
    let dropped = received.replace("\"received\"", "\"dropped\"");
    let sent = "topotap_export_messages_total{target_type=\"sflow\",outcome=\"sent\"}";
    let errors = "topotap_export_messages_total{target_type=\"sflow\",outcome=\"error\"}";
    let bytes = "topotap_export_bytes_total{target_type=\"sflow\"}";
    let deadline = Instant::now() + Duration::from_secs(10);
    let (text, m) = loop {
        let (ct, text) = scrape(&t, None).await;
        assert_eq!(ct, "text/plain; version=0.0.4; charset=utf-8");
        let m = samples(&text);
        let done = m.get(&received).copied().unwrap_or(0.0) >= 500.0
            && m.get(sent).copied().unwrap_or(0.0) > 0.0;
        if done || Instant::now() > deadline {
            break (text, m);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(m.get(&received), Some(&500.0), "{text}");
    assert_eq!(m.get(&dropped), Some(&0.0), "{text}");
    assert!(m[sent] > 0.0, "{text}");
    assert_eq!(m.get(errors), Some(&0.0), "{text}");
    assert!(m[bytes] > 0.0, "{text}");
    assert_eq!(
        m.get("topotap_captures{state=\"active\"}"),
        Some(&1.0),
        "{text}"
    );
    assert!(m["topotap_graph_nodes"] >= 6.0, "{text}");
    assert!(m["topotap_graph_edges"] >= 4.0, "{text}");
    assert_eq!(
        m.get(&format!(
            "topotap_build_info{{version=\"{}\",revision=\"{}\"}}",
            env!("CARGO_PKG_VERSION"),
            version_revision()
        )),
        Some(&1.0),
        "{text}"
    );
    assert!(m["process_resident_memory_bytes"] > 1e6, "{text}");
    assert!(m["process_open_fds"] > 3.0, "{text}");
    assert!(m.contains_key("process_cpu_seconds_total"), "{text}");
    assert!(m.contains_key("process_max_fds"), "{text}");
    assert_eq!(
        m.get("topotap_websocket_clients{kind=\"subscriber\"}"),
        Some(&0.0)
    );
    // Route templates, never raw paths (the capture's UUID is in no HTTP label).
    assert!(
        m.contains_key(
            "topotap_http_requests_total{method=\"POST\",route=\"/api/capture\",code=\"201\"}"
        ),
        "{text}"
    );
    assert!(
        !text
            .lines()
            .any(|l| l.starts_with("topotap_http") && l.contains(&uuid)),
        "{text}"
    );
    promtool_check(&text);

    // The packaged dashboard against a real Prometheus scraping this topotap with the
    // example configuration: every panel's query is valid PromQL, and the capture and
    // export panels have data.
    let prom = Prometheus::start(&t.addr);
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/deploy/grafana/topotap.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let panels: Vec<(String, String)> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| {
            let title = p["title"].as_str().unwrap().to_owned();
            p["targets"]
                .as_array()
                .unwrap()
                .iter()
                .map(move |t| (title.clone(), t["expr"].as_str().unwrap().to_owned()))
        })
        .collect();
    assert!(panels.len() >= 10);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut empty = Vec::new();
        for (title, expr) in &panels {
            let (status, body) = prom.query(expr).await;
            assert_eq!(status, 200, "panel {title:?}: {expr}: {body}");
            assert_eq!(body["status"], "success", "panel {title:?}: {body}");
            let must_have_data = title.starts_with("Capture") || title.starts_with("Export");
            let n = body["data"]["result"].as_array().map_or(0, Vec::len);
            if must_have_data && n == 0 {
                empty.push(title.clone());
            }
        }
        if empty.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "panels without data while the capture runs: {empty:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    drop(prom);

    // The datagrams did reach the collector.
    sink.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut buf = [0u8; 2048];
    assert!(
        sink.recv(&mut buf).is_ok(),
        "no sFlow datagram at the collector"
    );

    // OpenMetrics when asked as Prometheus asks.
    let (ct, om) = scrape(
        &t,
        Some("application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.4,*/*;q=0.1"),
    )
    .await;
    assert_eq!(
        ct,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert!(om.ends_with("# EOF\n"), "{om}");
    assert!(om.contains("# TYPE topotap_build info"), "{om}");

    // Deleting the capture keeps the export counters (they never go back).
    let (s, _) = t
        .request("DELETE", &format!("/api/capture/{uuid}"), None)
        .await;
    assert_eq!(s, 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, text) = scrape(&t, None).await;
        let after = samples(&text);
        if !after.contains_key(&received) {
            assert!(after[sent] >= m[sent], "{text}");
            assert_eq!(after.get("topotap_captures{state=\"active\"}"), Some(&0.0));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "capture point still listed: {text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn version_revision() -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_topotap"))
        .arg("--version")
        .output()
        .unwrap();
    let v = String::from_utf8_lossy(&out.stdout).into_owned();
    v.trim()
        .rsplit_once('(')
        .map(|(_, r)| r.trim_end_matches(')').to_owned())
        .unwrap_or_default()
}

/// The example configuration's `basic_auth` block, uncommented, scrapes a topotap whose
/// API (and so /metrics) needs a user with the `reader` role.
#[tokio::test]
async fn prometheus_scrapes_behind_basic_auth_as_the_example_shows() {
    let dir = tempfile::tempdir().unwrap();
    let path = |f: &str| dir.path().join(f).to_string_lossy().into_owned();
    let hash = bcrypt::hash("scrape-pw", 5).unwrap();
    std::fs::write(path("htpasswd"), format!("prometheus:{hash}\n")).unwrap();
    std::fs::write(path("roles.toml"), "[users]\nprometheus = \"reader\"\n").unwrap();
    std::fs::write(path("topotap.password"), "scrape-pw").unwrap();
    let (h, r) = (path("htpasswd"), path("roles.toml"));
    let t = Topotap::start(&["--no-probes", "--auth-htpasswd", &h, "--auth-roles", &r]);
    let (s, _) = t.request("GET", "/metrics", None).await;
    assert_eq!(s, 401, "an anonymous scrape is refused");

    let password = path("topotap.password");
    let prom = Prometheus::start_with(&t.addr, |example, _| {
        let block = [
            "# basic_auth:",
            "#   username: prometheus",
            "#   password_file: /etc/prometheus/topotap.password",
        ];
        let commented = block.join("\n    ");
        assert!(example.contains(&commented), "{example}");
        let live = block
            .iter()
            .map(|l| l[2..].replace("/etc/prometheus/topotap.password", &password))
            .collect::<Vec<_>>()
            .join("\n    ");
        example.replace(&commented, &live)
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = prom.query("up{job=\"topotap\"}").await;
        assert_eq!(status, 200, "{body}");
        if body["data"]["result"][0]["value"][1] == "1" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus never scraped topotap with the example's basic_auth: {body}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test]
async fn metrics_on_a_listener_of_their_own() {
    let dir = tempfile::tempdir().unwrap();
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = probe.local_addr().unwrap();
    drop(probe);
    let t = Topotap::start(&[
        "--no-probes",
        "--state-dir",
        dir.path().to_str().unwrap(),
        "--metrics-listen",
        &addr.to_string(),
    ]);
    let (s, _) = t.request("GET", "/metrics", None).await;
    assert_eq!(s, 404, "the API no longer serves /metrics");
    let deadline = Instant::now() + Duration::from_secs(5);
    let body = loop {
        match reqwest::get(format!("http://{addr}/metrics")).await {
            Ok(r) if r.status() == 200 => break r.text().await.unwrap(),
            _ if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(100)).await,
            other => panic!("metrics listener: {other:?}"),
        }
    };
    assert!(body.contains("topotap_graph_nodes 0"), "{body}");
    let other = reqwest::get(format!("http://{addr}/api")).await.unwrap();
    assert_eq!(other.status(), 404);
}

/// Debian's `prometheus` on a loopback port, scraping `target` every second with the
/// example configuration in `deploy/prometheus/`; killed on drop.
struct Prometheus {
    child: std::process::Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(target: &str) -> Self {
        Self::start_with(target, |example, _| example.to_owned())
    }

    /// Starts with the example configuration as `edit(example, temp dir)` rewrites it.
    fn start_with(target: &str, edit: impl FnOnce(&str, &std::path::Path) -> String) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let example = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/deploy/prometheus/prometheus.yml"
        ))
        .unwrap();
        assert!(example.contains("127.0.0.1:8082") && example.contains("scrape_interval: 15s"));
        let config = edit(&example, dir.path())
            .replace("127.0.0.1:8082", target)
            .replace("scrape_interval: 15s", "scrape_interval: 1s");
        let path = dir.path().join("prometheus.yml");
        std::fs::write(&path, config).unwrap();
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = probe.local_addr().unwrap().to_string();
        drop(probe);
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run prometheus");
        Prometheus {
            child,
            addr,
            _dir: dir,
        }
    }

    /// An instant query through the HTTP API (retried while Prometheus starts).
    async fn query(&self, expr: &str) -> (u16, serde_json::Value) {
        let url = format!("http://{}/api/v1/query", self.addr);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            match reqwest::Client::new()
                .get(&url)
                .query(&[("query", expr)])
                .send()
                .await
            {
                // 503 while Prometheus starts (its storage not ready yet).
                Ok(r) if r.status() == 503 && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(200)).await
                }
                Ok(r) => {
                    let status = r.status().as_u16();
                    let body = r.json().await.unwrap_or(serde_json::Value::Null);
                    return (status, body);
                }
                Err(e) if Instant::now() > deadline => panic!("prometheus: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
