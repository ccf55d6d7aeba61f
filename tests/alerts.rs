//! Alerts on a real topotap: a webhook POSTed to a real HTTP receiver on loopback when
//! a node matching the expression appears, a script run from the script directory, an
//! erroring expression that shows its error while another alert still fires, the
//! WebSocket `Alert` message, alerts kept across a restart, and bad input refused.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use common::webhook::receiver;
use common::{rand_tag, Topotap};
use futures_util::StreamExt;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(10);

async fn post(t: &Topotap, path: &str, body: Value) -> (u16, Value) {
    t.request("POST", path, Some(&body.to_string())).await
}

/// Polls `GET /api/alert/ID` until `check` accepts it.
async fn wait_alert(t: &Topotap, id: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let (s, v) = t.request("GET", &format!("/api/alert/{id}"), None).await;
        assert_eq!(s, 200, "{v}");
        if check(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "alert {id} never matched: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn webhook_script_errors_websocket_and_restart() {
    let p = format!("al{}", rand_tag());
    let (hook_addr, mut hooks) = receiver().await;
    let state = tempfile::tempdir().unwrap();
    let scripts = tempfile::tempdir().unwrap();
    let out = scripts.path().join("out.json");
    let script = scripts.path().join("record.sh");
    // The script writes what it read on stdin: no shell between topotap and it, but it
    // is itself a shell script.
    std::fs::write(
        &script,
        format!("#!/bin/sh\ncat > {}.tmp && mv {0}.tmp {0}\n", out.display()),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let dir = state.path().to_str().unwrap();
    let script_dir = scripts.path().to_str().unwrap();
    let args = [
        "--no-probes",
        "--state-dir",
        dir,
        "--allow-target",
        "127.0.0.1/32",
        "--alert-script-dir",
        script_dir,
    ];
    let t = Topotap::start(&args);

    // Bad input: 400 (403 for a webhook outside --allow-target), one line each.
    for (body, status, needle) in [
        (
            json!({"Expression": ""}),
            400,
            "Expression: a Gremlin expression is required",
        ),
        (
            json!({"Expression": "G.V().Has("}),
            400,
            "Expression: Not a valid Gremlin expression",
        ),
        (
            json!({"Expression": "G.V()", "Trigger": "sometimes"}),
            400,
            "Trigger: ",
        ),
        (
            json!({"Expression": "G.V()", "Trigger": "duration:1ms"}),
            400,
            "Trigger: the period",
        ),
        (
            json!({"Expression": "G.V()", "Action": "ftp://x/y"}),
            400,
            "Action: ",
        ),
        (
            json!({"Expression": "G.V()", "Action": "file://../x.sh"}),
            400,
            "is not allowed",
        ),
        (
            json!({"Expression": "G.V()", "Action": "file:///bin/sh"}),
            400,
            "outside --alert-script-dir",
        ),
        (
            json!({"Expression": "G.V()", "Action": "file://missing.sh"}),
            400,
            "Action: file://missing.sh",
        ),
        (
            json!({"Expression": "G.V()", "Action": "http://192.0.2.7/hook"}),
            403,
            "outside --allow-target",
        ),
        (json!({"Expression": "G.V()", "Bogus": 1}), 400, "Bogus"),
    ] {
        let (s, v) = post(&t, "/api/alert", body.clone()).await;
        assert_eq!(s, status, "{body} -> {v}");
        let text = v.as_str().unwrap_or_default();
        assert!(text.contains(needle), "{body} -> {v}");
        assert_eq!(text.trim_end().lines().count(), 1, "{v}");
    }

    // A WebSocket subscriber receives the Alert messages.
    let ws_url = format!("ws://{}/ws/subscriber", t.addr);
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url).await.unwrap();

    let (s, hook) = post(
        &t,
        "/api/alert",
        json!({"Name": format!("{p}-hook"), "Description": "a node appears",
               "Expression": format!("G.V().Has('Name', '{p}n1')"),
               "Action": format!("http://{hook_addr}/hook"), "Trigger": "graph"}),
    )
    .await;
    assert_eq!(s, 201, "{hook}");
    assert!(
        hook["CreateTime"].as_str().is_some_and(|c| c.len() >= 20),
        "{hook}"
    );
    let hook_id = hook["UUID"].as_str().unwrap().to_owned();
    let (s, dup) = post(
        &t,
        "/api/alert",
        json!({"Name": format!("{p}-hook"), "Expression": format!("G.V().Has('Name', '{p}n1')"),
               "Action": format!("http://{hook_addr}/hook"), "Trigger": "graph"}),
    )
    .await;
    assert_eq!(s, 409, "{dup}");
    // Fails until the node it names exists; the other alerts go on meanwhile.
    let (s, broken) = post(
        &t,
        "/api/alert",
        json!({"Name": "broken", "Expression": format!("G.V('{p}-missing')")}),
    )
    .await;
    assert_eq!(s, 201, "{broken}");
    let broken_id = broken["UUID"].as_str().unwrap().to_owned();
    let (s, timed) = post(
        &t,
        "/api/alert",
        json!({"Name": "timed", "Expression": format!("G.V().Has('Name', '{p}n1')"),
               "Action": "file://record.sh", "Trigger": "duration:+1s"}),
    )
    .await;
    assert_eq!(s, 201, "{timed}");
    let timed_id = timed["UUID"].as_str().unwrap().to_owned();

    let v = wait_alert(&t, &broken_id, |v| v["State"] == "error").await;
    assert!(
        v["Error"]
            .as_str()
            .unwrap_or_default()
            .contains("does not exist"),
        "{v}"
    );
    let v = wait_alert(&t, &hook_id, |v| v["State"] == "ok").await;
    assert!(v.get("LastFired").is_none(), "{v}");

    // The node appears: the webhook receives the alert, once.
    let (s, v) = post(
        &t,
        "/api/node",
        json!({"ID": format!("{p}-id1"), "Metadata": {"Name": format!("{p}n1"), "Type": "device"}}),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let (line, body) = tokio::time::timeout(WAIT, hooks.recv())
        .await
        .expect("no webhook POST")
        .unwrap();
    assert_eq!(line, "POST /hook HTTP/1.1");
    assert_eq!(body["UUID"], hook_id.as_str(), "{body}");
    assert_eq!(body["Name"], format!("{p}-hook"), "{body}");
    assert_eq!(body["ReasonData"][0]["ID"], format!("{p}-id1"), "{body}");
    assert!(body["Timestamp"].is_string(), "{body}");

    // The WebSocket got it too.
    let deadline = Instant::now() + WAIT;
    let alert_msg = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let msg = tokio::time::timeout(left, ws.next())
            .await
            .expect("no Alert message on the WebSocket")
            .unwrap()
            .unwrap();
        let Ok(text) = msg.to_text() else { continue };
        let Ok(v) = serde_json::from_str::<Value>(text) else {
            continue;
        };
        if v["Namespace"] == "Alert" && v["Obj"]["UUID"] == hook_id.as_str() {
            break v;
        }
    };
    assert_eq!(alert_msg["Type"], "Alert", "{alert_msg}");

    // The periodic alert ran its script with the alert on stdin.
    let deadline = Instant::now() + WAIT;
    let written = loop {
        if let Ok(text) = std::fs::read_to_string(&out) {
            if let Ok(v) = serde_json::from_str::<Value>(&text) {
                break v;
            }
        }
        assert!(Instant::now() < deadline, "the script wrote nothing");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(written["UUID"], timed_id.as_str(), "{written}");

    let v = wait_alert(&t, &hook_id, |v| v["State"] == "firing").await;
    assert_eq!(v["FireCount"], 1, "{v}");
    assert!(v["LastFired"].as_i64().is_some_and(|ms| ms > 0), "{v}");
    assert!(v.get("ActionError").is_none(), "{v}");
    // Still erroring: its node never appeared.
    let v = wait_alert(&t, &broken_id, |v| v["State"] == "error").await;
    assert!(v["Error"].as_str().is_some(), "{v}");

    // A change to the matched node does not fire again; another matching node does.
    let patch = json!([{"op": "add", "path": "/Metadata/MTU", "value": 9000}]);
    let (s, v) = t
        .request(
            "PATCH",
            &format!("/api/node/{p}-id1"),
            Some(&patch.to_string()),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = post(
        &t,
        "/api/node",
        json!({"ID": format!("{p}-id2"), "Metadata": {"Name": format!("{p}n1"), "Type": "device"}}),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let (_, body) = tokio::time::timeout(WAIT, hooks.recv())
        .await
        .expect("no second webhook POST")
        .unwrap();
    assert_eq!(
        body["ReasonData"].as_array().map(Vec::len),
        Some(2),
        "{body}"
    );
    let v = wait_alert(&t, &hook_id, |v| v["FireCount"] == 2).await;
    assert_eq!(v["State"], "firing", "{v}");

    // Listed with their state.
    let (s, list) = t.request("GET", "/api/alert", None).await;
    assert_eq!(s, 200);
    assert_eq!(list.as_object().unwrap().len(), 3, "{list}");

    // A restart keeps them, and they fire again on the new graph.
    drop(ws);
    drop(t);
    let t = Topotap::start(&args);
    let (s, list) = t.request("GET", "/api/alert", None).await;
    assert_eq!(s, 200);
    assert_eq!(list.as_object().unwrap().len(), 3, "{list}");
    assert_eq!(list[&hook_id]["Expression"], hook["Expression"], "{list}");
    assert_eq!(list[&hook_id]["CreateTime"], hook["CreateTime"], "{list}");
    let (s, v) = post(
        &t,
        "/api/node",
        json!({"ID": format!("{p}-id1"), "Metadata": {"Name": format!("{p}n1"), "Type": "device"}}),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let (_, body) = tokio::time::timeout(WAIT, hooks.recv())
        .await
        .expect("no webhook POST after the restart")
        .unwrap();
    assert_eq!(body["UUID"], hook_id.as_str(), "{body}");

    // Deleted: gone from the list.
    let (s, _) = t
        .request("DELETE", &format!("/api/alert/{broken_id}"), None)
        .await;
    assert_eq!(s, 200);
    let (s, _) = t
        .request("GET", &format!("/api/alert/{broken_id}"), None)
        .await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn a_webhook_cannot_reach_beyond_allow_target_and_scripts_need_a_directory() {
    let (hook_addr, _hooks) = receiver().await;
    // Loopback is not allowed here: the receiver cannot be the target.
    let t = Topotap::start(&["--no-probes", "--allow-target", "10.0.0.0/8"]);
    let (s, v) = post(
        &t,
        "/api/alert",
        json!({"Expression": "G.V()", "Action": format!("http://{hook_addr}/hook")}),
    )
    .await;
    assert_eq!(s, 403, "{v}");
    assert!(
        v.as_str()
            .unwrap()
            .contains("outside --allow-target 10.0.0.0/8"),
        "{v}"
    );
    let (s, v) = post(
        &t,
        "/api/alert",
        json!({"Expression": "G.V()", "Action": "file://x.sh"}),
    )
    .await;
    assert_eq!(s, 400, "{v}");
    assert!(v.as_str().unwrap().contains("--alert-script-dir"), "{v}");
}
