//! The server's services on a current-thread runtime whose one thread refuses blocking
//! work ([`topotap_topology::blocking`]): state-store syncs, Gremlin evaluation (HTTP
//! queries, WebSocket filters, capture placement, injection resolution), `/api/status`,
//! `/metrics`, the probes' `/proc` scans and their reads of the netns directories and
//! files must all run on blocking threads. Were any
//! of them run on the runtime's thread, it would be recorded (and, on a real
//! current-thread runtime, stall every other task meanwhile).

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use topotap_probes::ProbesConfig;
use topotap_topology::{blocking, Graph, SharedGraph};
use warp::http::StatusCode;

use crate::api::test_support::call;
use crate::api::{self, AppState};
use crate::services::{Config, Services};

const HOST: &str = "no-blocking-test";

/// A network namespace made for the test and bind-mounted at `mount`; both undone on
/// drop, whatever happened.
struct MountedNetns {
    name: String,
    mount: std::path::PathBuf,
}

impl MountedNetns {
    fn new(mount: std::path::PathBuf) -> Self {
        let ns = MountedNetns {
            name: format!("tt-noblock-{}", std::process::id()),
            mount,
        };
        run(&["ip", "netns", "add", &ns.name]);
        std::fs::write(&ns.mount, b"").expect("the mount point");
        let source = format!("/run/netns/{}", ns.name);
        run(&["mount", "--bind", &source, &ns.mount.to_string_lossy()]);
        ns
    }
}

impl Drop for MountedNetns {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(&self.mount)
            .status();
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

fn run(argv: &[&str]) {
    let status = std::process::Command::new(argv[0])
        .args(&argv[1..])
        .status()
        .unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    assert!(status.success(), "{argv:?}: {status}");
}

#[test]
fn the_services_never_block_their_runtime() {
    let state_dir = tempfile::tempdir().expect("a temporary state directory");
    // A netns directory with a file that is not a namespace: listed and checked.
    let netns_dir = tempfile::tempdir().expect("a temporary netns directory");
    std::fs::write(netns_dir.path().join("not-a-namespace"), b"").expect("a file");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime");
    // Every task of this runtime runs on this thread.
    blocking::forbid_here();
    runtime.block_on(async {
        let graph = SharedGraph::new(Graph::new(), HOST);
        let probes = topotap_probes::start(
            graph.clone(),
            ProbesConfig {
                host_id: HOST.into(),
                netns_paths: vec![netns_dir.path().to_owned()],
                proc_scan_interval: Duration::from_millis(20),
                metrics_interval: Duration::from_millis(50),
                ovsdb: None,
                host_metadata: Default::default(),
                runc_roots: vec![netns_dir.path().join("runc")],
                docker_socket: Some(netns_dir.path().join("docker.sock")),
            },
        )
        .await
        .expect("the probes start (as root)");
        let (g, dir) = (graph.clone(), state_dir.path().to_owned());
        let mut services = tokio::task::spawn_blocking(move || {
            Services::new(
                g,
                HOST,
                Config {
                    state_dir: Some(dir),
                    ..Config::default()
                },
            )
        })
        .await
        .expect("the stores open");
        let probes = Arc::new(probes);
        let p = probes.clone();
        services.status_sections = Arc::new(move || {
            let mut m = serde_json::Map::new();
            m.insert("Probes".into(), p.status());
            m
        });
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let background = services.start(stopped);
        let api = api::routes(AppState::new(services));

        // A WebSocket subscriber with a filter: evaluated at once and after changes.
        let mut ws = warp::test::ws()
            .path("/ws/subscriber")
            .header("X-Gremlin-Filter", "G.V().Has('Type', 'host').SubGraph()")
            .handshake(api.clone())
            .await
            .expect("the WebSocket handshake");

        // Stored (synced to disk), then placed (its query evaluated) by the placer.
        let (st, body) = call(
            &api,
            "POST",
            "/api/capture",
            &json!({"GremlinQuery": "G.V().Has('Name', 'no-such-interface-here')"}).to_string(),
        )
        .await;
        assert_eq!(st, StatusCode::CREATED, "{body}");
        let uuid = serde_json::from_str::<Value>(&body).expect("JSON")["UUID"]
            .as_str()
            .expect("a UUID")
            .to_owned();
        // A query, a status and a scrape.
        let (st, body) = call(
            &api,
            "POST",
            "/api/topology",
            &json!({"GremlinQuery": "G.V().Has('Type', 'host')"}).to_string(),
        )
        .await;
        assert_eq!(st, StatusCode::OK, "{body}");
        assert!(body.contains(HOST), "{body}");
        let (st, body) = call(&api, "GET", "/api/status", "").await;
        assert_eq!(st, StatusCode::OK, "{body}");
        assert!(body.contains("\"Probes\""), "{body}");
        let (st, body) = call(&api, "GET", "/metrics", "").await;
        assert_eq!(st, StatusCode::OK, "{body}");
        // An injection whose source resolves to no interface: evaluated, then refused.
        let (st, body) = call(
            &api,
            "POST",
            "/api/injectpacket",
            &json!({"Src": "G.V().Has('Name', 'no-such-interface-here')", "Type": "icmp4"})
                .to_string(),
        )
        .await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");

        // A namespace appears in the netns directory (an inotify event, then the file
        // is checked and its node added).
        let mount = netns_dir.path().join("appeared");
        let netns = tokio::task::spawn_blocking({
            let mount = mount.clone();
            move || MountedNetns::new(mount)
        })
        .await
        .expect("the namespace is made");
        let path = json!(mount.to_string_lossy());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let has_node = || {
            let g = graph.read();
            let mut nodes = g.nodes();
            nodes.any(|n| g.node(n).metadata().get("Path") == Some(&path))
        };
        while !has_node() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no netns node for {path}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        // A graph change: the subscriber's filter is evaluated and the change sent.
        // Meanwhile the /proc scan and the interface counters run a few times.
        {
            let mut g = graph.write();
            let host = g
                .nodes()
                .find(|n| g.node(*n).metadata().get("Type") == Some(&json!("host")))
                .map(|n| g.node(n).id().clone())
                .expect("the host node");
            g.update_node(&host, |m| {
                m.insert("NoBlockingTest".into(), json!(1));
            })
            .expect("an update");
        }
        let update = loop {
            let msg = tokio::time::timeout(Duration::from_secs(10), ws.recv())
                .await
                .expect("the update")
                .expect("a message");
            if msg.to_str().is_ok_and(|t| t.contains("NoBlockingTest")) {
                break msg;
            }
        };
        assert!(update.is_text());
        tokio::time::sleep(Duration::from_millis(300)).await;

        let (st, body) = call(&api, "DELETE", &format!("/api/capture/{uuid}"), "").await;
        assert!(st.is_success(), "{st} {body}");
        let _ = stop.send(true);
        background.join().await;
        drop(ws);
        tokio::task::spawn_blocking(move || drop(netns))
            .await
            .expect("the namespace is removed");
    });
    assert_eq!(blocking::violations(), Vec::<String>::new());
}
