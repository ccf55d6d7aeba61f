//! The official Python client, `skydive-client` from PyPI, unchanged against topotap:
//! with credentials (it posts `/login` as a form and sends the `authtoken` cookie back),
//! with wrong or no credentials (the server's 401), and without authentication at all.
//!
//! The client is installed with pip into a virtual environment kept under `target/`
//! (`common/skydive_venv.rs`), so reruns do not download it again.

mod common;
#[path = "common/skydive_venv.rs"]
mod skydive_venv;

use std::process::Command;

use common::Topotap;
use serde_json::Value;
use skydive_venv::venv;

/// Runs tests/python/skydive_client_check.py against `t`: what it printed, as JSON.
fn run_client(t: &Topotap, credentials: &[&str]) -> Value {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/python/skydive_client_check.py"
    );
    let out = Command::new(venv())
        .arg(script)
        .arg(&t.addr)
        .args(credentials)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "skydive-client script failed:\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// What a client that may do everything gets back: the node it made was found, the
/// capture was created, listed and deleted, and the node deleted again.
fn assert_worked(v: &Value) {
    assert!(
        v.get("error").is_none() && v.get("login_error").is_none(),
        "{v}"
    );
    assert_eq!(v["node"], "skydive-client-node", "{v}");
    assert_eq!(
        v["nodes"],
        serde_json::json!(["skydive-client-node"]),
        "{v}"
    );
    let uuid = v["created"].as_str().expect("a capture UUID");
    assert_eq!(v["listed"], serde_json::json!([uuid]), "{v}");
    assert_eq!(v["after_delete"], serde_json::json!([]), "{v}");
    assert!(
        !v["nodes_after_delete"]
            .as_array()
            .unwrap()
            .contains(&"skydive-client-node".into()),
        "{v}"
    );
}

#[test]
fn skydive_client_with_and_without_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    std::fs::write(
        &htpasswd,
        format!("pyuser:{}\n", bcrypt::hash("py-secret", 5).unwrap()),
    )
    .unwrap();
    let state = dir.path().join("state");
    let t = Topotap::start(&[
        "--no-probes",
        "--state-dir",
        state.to_str().unwrap(),
        "--auth-htpasswd",
        htpasswd.to_str().unwrap(),
    ]);

    // username=/password=: POST /login as a form, then the authtoken cookie.
    assert_worked(&run_client(&t, &["pyuser", "py-secret"]));

    // A wrong password: /login answers 401 with the reason.
    let v = run_client(&t, &["pyuser", "wrong"]);
    assert_eq!(v["login_error"]["status"], 401, "{v}");
    assert_eq!(
        v["login_error"]["body"].as_str().unwrap().trim(),
        "wrong user name or password",
        "{v}"
    );
    // No credentials: the first API call is a 401 that says what to do.
    let v = run_client(&t, &[]);
    let err = v["error"].as_str().unwrap_or_else(|| panic!("{v}"));
    assert!(err.starts_with("authentication required"), "{v}");
    drop(t);

    // Authentication off (loopback): the client works without credentials.
    let state = dir.path().join("state-open");
    let t = Topotap::start(&["--no-probes", "--state-dir", state.to_str().unwrap()]);
    assert_worked(&run_client(&t, &[]));
}
