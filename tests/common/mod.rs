//! Test harness: a real `topotap allinone` process on a free loopback port, and a small
//! HTTP client for its API.
#![allow(dead_code)]

pub mod certs;
pub mod collector;
pub mod net;
pub mod nfdump;
pub mod ovs;
pub mod postgres;
pub mod webhook;

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// A running topotap, killed on drop.
pub struct Topotap {
    child: Child,
    pub addr: String,
    /// `http`, or `https` with `--tls-cert`.
    pub scheme: String,
    pub host_id: String,
    http: reqwest::Client,
    /// The state directory made for this server, removed after it is stopped (none when
    /// the test passes its own `--state-dir`).
    _state: Option<tempfile::TempDir>,
}

impl Topotap {
    /// Starts topotap with the probes off (API-only tests).
    pub fn start_api_only() -> Self {
        Self::start(&["--no-probes"])
    }

    /// Starts topotap with extra `allinone` arguments, waiting until it listens.
    pub fn start(extra: &[&str]) -> Self {
        Self::start_wrapped(&[], extra)
    }

    /// Starts topotap through a wrapper command that execs it (`prlimit --as=N --`).
    pub fn start_wrapped(wrapper: &[&str], extra: &[&str]) -> Self {
        let host_id = format!("test-{}", std::process::id());
        let bin = env!("CARGO_BIN_EXE_topotap");
        let mut command = match wrapper.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        let state = (!extra.contains(&"--state-dir")).then(|| {
            tempfile::Builder::new()
                .prefix("topotap-test-")
                .tempdir()
                .expect("make a state directory")
        });
        let mut child = command
            .args(["allinone", "--listen", "127.0.0.1:0", "--host-id", &host_id])
            .args(
                state
                    .iter()
                    .flat_map(|d| [OsStr::new("--state-dir"), d.path().as_os_str()]),
            )
            .args(extra)
            .env(
                "TOPOTAP_LOG",
                std::env::var("TOPOTAP_TEST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn topotap");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        stdout
            .read_line(&mut line)
            .expect("read topotap's first line");
        if !wrapper.is_empty() {
            // A wrapper may print lines of its own first, and more when it exits.
            while !line.is_empty() && !line.starts_with("listening on ") {
                line.clear();
                stdout
                    .read_line(&mut line)
                    .expect("read the wrapper's output");
            }
            std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        }
        let (scheme, addr) = line
            .trim()
            .strip_prefix("listening on ")
            .and_then(|url| url.split_once("://"))
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
        let (scheme, addr) = (scheme.to_owned(), addr.to_owned());
        Topotap {
            child,
            addr,
            scheme,
            host_id,
            http: reqwest::Client::new(),
            _state: state,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}://{}{}", self.scheme, self.addr, path)
    }

    /// Trusts the CA (PEM file) that signed the server's certificate from now on.
    pub fn trust_ca(mut self, ca_pem: &str) -> Self {
        let pem = std::fs::read(ca_pem).expect("read the CA");
        self.http = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("CA PEM"))
            .build()
            .unwrap();
        self
    }

    /// Sends a request and returns the status and the body as JSON (`Null` when the
    /// body is empty, a JSON string when it is not JSON).
    pub async fn request(&self, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        self.request_with(method, path, body, &[]).await
    }

    /// [`Topotap::request`] with extra headers.
    pub async fn request_with(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        headers: &[(&str, &str)],
    ) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.http.request(method, self.url(path));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req
                .header("Content-Type", "application/json")
                .body(b.to_owned());
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, value)
    }

    /// Runs a Gremlin query; panics on a non-200 answer.
    pub async fn query(&self, gremlin: &str) -> Value {
        let (status, v) = self.try_query(gremlin).await;
        assert_eq!(status, 200, "query {gremlin} answered {status}: {v}");
        v
    }

    pub async fn try_query(&self, gremlin: &str) -> (u16, Value) {
        let body = json!({ "GremlinQuery": gremlin }).to_string();
        self.request("POST", "/api/topology", Some(&body)).await
    }

    /// Polls `gremlin` until `check` accepts its result or `timeout` passes; returns the
    /// last result and whether it was accepted.
    pub async fn wait_for(
        &self,
        gremlin: &str,
        timeout: Duration,
        check: impl Fn(&Value) -> bool,
    ) -> (Value, bool) {
        let deadline = Instant::now() + timeout;
        loop {
            let (status, v) = self.try_query(gremlin).await;
            if status == 200 && check(&v) {
                return (v, true);
            }
            if Instant::now() > deadline {
                return (v, false);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// topotap with the netlink and netns probes, without OVS.
    pub fn start_without_ovs() -> Self {
        Self::start(&["--ovsdb", "none"])
    }

    /// Polls `gremlin` until it returns `want` (for at most `timeout`); fails with the
    /// last answer and [`Topotap::dump_named`] of `tag`.
    pub async fn expect(&self, tag: &str, gremlin: &str, want: Value, timeout: Duration) {
        let (got, ok) = self.wait_for(gremlin, timeout, |v| v == &want).await;
        if !ok {
            panic!(
                "{gremlin}: got {got}, want {want}\n{}",
                self.dump_named(tag).await
            );
        }
    }

    /// Polls `gremlin` until it returns exactly one element (for at most `timeout`);
    /// returns it, or fails like [`Topotap::expect`].
    pub async fn expect_one(&self, tag: &str, gremlin: &str, timeout: Duration) -> Value {
        let (got, ok) = self
            .wait_for(gremlin, timeout, |v| {
                v.as_array().is_some_and(|a| a.len() == 1)
            })
            .await;
        if !ok {
            panic!(
                "{gremlin}: want one element, got {got}\n{}",
                self.dump_named(tag).await
            );
        }
        got[0].clone()
    }

    /// The nodes whose name contains `tag` and the edges around them, one per line,
    /// for failure messages.
    pub async fn dump_named(&self, tag: &str) -> String {
        let nodes = self
            .query(&format!("G.V().Has('Name',Regex('.*{tag}.*'))"))
            .await;
        let edges = self
            .query(&format!(
                "G.V().Has('Name',Regex('.*{tag}.*')).BothE().Dedup()"
            ))
            .await;
        let mut out = String::new();
        for n in nodes.as_array().into_iter().flatten() {
            out += &format!("node {} {}\n", n["ID"], n["Metadata"]);
        }
        for e in edges.as_array().into_iter().flatten() {
            out += &format!("edge {} -> {} {}\n", e["Parent"], e["Child"], e["Metadata"]);
        }
        out
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Topotap {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `signal` (`-INT`, `-TERM`) to a child, waits up to `timeout` for it to exit,
/// then kills it. Used to stop capture tools and collectors so they flush their files.
pub fn stop_child(child: &mut Option<Child>, signal: &str, timeout: Duration) {
    if let Some(mut c) = child.take() {
        let _ = Command::new("kill")
            .args([signal, &c.id().to_string()])
            .status();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = c.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// A short random tag for unique names (interface names are at most 15 bytes).
pub fn rand_tag() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    format!("{:06x}", h.finish() & 0xff_ffff)
}

/// Caps the address space of a running process (the server under test) at `bytes`, so that
/// an unbounded allocation fails in it instead of taking the machine.
pub fn cap_address_space(pid: u32, bytes: u64) {
    let out = Command::new("prlimit")
        .args([format!("--pid={pid}"), format!("--as={bytes}")])
        .output()
        .expect("run prlimit (util-linux)");
    assert!(
        out.status.success(),
        "prlimit: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
