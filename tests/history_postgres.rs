//! The history in a real PostgreSQL that the test starts (initdb and pg_ctl in a
//! temp dir, listening only on a unix socket there; Debian's postgresql-15), through a
//! real `topotap allinone --history <url>` (run as root) and a real interface.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::net::{sh, Cleanup};
use common::{rand_tag, Topotap};
use serde_json::{json, Value};

const DEADLINE: Duration = Duration::from_secs(10);

fn pg_bin(tool: &str) -> PathBuf {
    let dir = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL server binaries (scripts/deps.sh installs postgresql-15)")
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("bin"))
        .find(|p| p.join("initdb").exists())
        .expect("initdb under /usr/lib/postgresql/*/bin");
    dir.join(tool)
}

/// A PostgreSQL server of its own, stopped and removed on drop.
struct Postgres {
    dir: tempfile::TempDir,
    port: u16,
}

fn as_postgres(cmd: &mut Command) {
    let out = cmd.output().expect("run a PostgreSQL tool");
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Postgres {
    fn start() -> Postgres {
        let dir = tempfile::Builder::new()
            .prefix("topotap-pg-")
            .tempdir()
            .unwrap();
        // The server refuses to run as root: the directory belongs to `postgres`.
        sh(&format!(
            "chown postgres: {0} && chmod 700 {0}",
            dir.path().display()
        ));
        let data = dir.path().join("data");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        as_postgres(
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(pg_bin("initdb"))
                .args(["-A", "trust", "-U", "topotap", "-D"])
                .arg(&data),
        );
        as_postgres(
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(pg_bin("pg_ctl"))
                .arg("-D")
                .arg(&data)
                .arg("-l")
                .arg(dir.path().join("log"))
                .arg("-o")
                .arg(format!(
                    "-c listen_addresses='' -k {} -p {port}",
                    dir.path().display()
                ))
                .args(["-w", "start"]),
        );
        Postgres { dir, port }
    }

    fn url(&self) -> String {
        format!(
            "host={} port={} user=topotap dbname=postgres",
            self.dir.path().display(),
            self.port
        )
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(pg_bin("pg_ctl"))
            .arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "-w", "stop"])
            .output();
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn start(state: &Path, url: &str) -> Topotap {
    Topotap::start(&[
        "--ovsdb",
        "none",
        "--state-dir",
        state.to_str().unwrap(),
        "--history",
        url,
    ])
}

async fn expect(t: &Topotap, q: &str, want: Value) {
    let (got, ok) = t.wait_for(q, DEADLINE, |v| v == &want).await;
    assert!(ok, "{q}: got {got}, want {want}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_keeps_a_deleted_interface_across_a_restart() {
    let pg = Postgres::start();
    let tag = rand_tag();
    let (ns, a, b) = (format!("p{tag}"), format!("a{tag}"), format!("b{tag}"));
    let state = tempfile::tempdir().unwrap();
    let mut c = Cleanup::new();
    c.netns(&ns);
    let t = start(state.path(), &pg.url());
    let (_, status) = t.request("GET", "/api/status", None).await;
    assert_eq!(status["History"]["Backend"], json!("postgres"), "{status}");

    sh(&format!("ip -n {ns} link add {a} type veth peer name {b}"));
    sh(&format!("ip -n {ns} link set {a} up"));
    sh(&format!("ip -n {ns} link set {b} up"));
    let state_of = format!("G.V().Has('Name','{a}').Values('State')");
    expect(&t, &state_of, json!(["UP"])).await;
    let begin = now_ms();
    sh(&format!("ip -n {ns} link set {a} down"));
    expect(&t, &state_of, json!(["DOWN"])).await;
    sh(&format!("ip -n {ns} link set {a} up"));
    expect(&t, &state_of, json!(["UP"])).await;
    let seen = now_ms();
    sh(&format!("ip -n {ns} link del {a}"));
    let live = format!("G.V().Has('Name','{a}').Count()");
    expect(&t, &live, json!(0)).await;

    let past = format!("G.At({seen}).V().Has('Name','{a}')");
    expect(&t, &format!("{past}.Values('State')"), json!(["UP"])).await;
    expect(
        &t,
        &format!("{past}.In().Has('Type','netns').Values('Name')"),
        json!([ns]),
    )
    .await;
    // The window from just before DOWN sees UP, DOWN, UP.
    let q = format!(
        "G.Context({seen}, '{}ms').V().Has('Name','{a}').Values('State')",
        seen - begin + 1000
    );
    let (got, ok) = t
        .wait_for(&q, DEADLINE, |v| {
            let s: Vec<&str> = v
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            // The window also holds how it came up just before (DOWN,
            // LOWERLAYERDOWN, UP): some DOWN has an UP before and after it.
            (0..s.len()).any(|i| s[i] == "DOWN" && s[..i].contains(&"UP") && s[i..].contains(&"UP"))
        })
        .await;
    assert!(ok, "{q}: {got}");

    drop(t);
    let t = start(state.path(), &pg.url());
    expect(&t, &format!("{past}.Count()"), json!(1)).await;
    assert_eq!(t.query(&live).await, json!(0));
}

#[test]
fn an_analyzer_with_an_unreachable_history_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "host={} port=1 user=topotap dbname=postgres",
        dir.path().display()
    );
    let out = Command::new(env!("CARGO_BIN_EXE_topotap"))
        .args([
            "analyzer",
            "--listen",
            "127.0.0.1:0",
            "--etcd",
            "http://127.0.0.1:1",
            "--history",
            &url,
        ])
        .env("TOPOTAP_LOG", "warn")
        .output()
        .expect("run topotap analyzer");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("history store"), "{stderr}");
}
