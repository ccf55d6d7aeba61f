//! The patch bomb on the real binary, under an address-space cap: a 1,240-byte JSON
//! Patch that copies `/Metadata` into a list inside itself 20 times (each copy doubles
//! the element) is a quick 413 with a one-line reason, leaves the element as it was,
//! and the server stays up and keeps taking writes.

mod common;

use std::time::{Duration, Instant};

use common::{rand_tag, Topotap};
use serde_json::{json, Value};

/// The server's address-space cap: an unbounded allocation fails instead of taking the machine.
const AS_CAP: u64 = 3_000_000_000;

/// A field of `/proc/PID/status` in kB (`VmHWM`: the peak resident set).
fn proc_status_kb(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// The reproducer: seed a list inside the metadata, then copy the metadata into it 20
/// times. Compact JSON, 1,240 bytes.
fn bomb() -> String {
    let mut ops = vec![json!({"op": "add", "path": "/Metadata/Bomb", "value": ["seed-list"]})];
    for _ in 0..20 {
        ops.push(json!({"op": "copy", "from": "/Metadata", "path": "/Metadata/Bomb/-"}));
    }
    let text = Value::Array(ops).to_string();
    assert_eq!(text.len(), 1240, "{text}");
    text
}

async fn assert_refused(t: &Topotap, path: &str) {
    let before = t.request("GET", path, None).await;
    assert_eq!(before.0, 200, "{}", before.1);

    let start = Instant::now();
    let (status, reason) = t.request("PATCH", path, Some(&bomb())).await;
    let took = start.elapsed();
    assert_eq!(status, 413, "{reason}");
    let reason = reason.as_str().unwrap_or_default().to_owned();
    assert!(
        !reason.is_empty() && !reason.trim_end().contains('\n'),
        "not a one-line reason: {reason:?}"
    );
    assert!(
        reason.contains("larger than 1048576 bytes"),
        "reason does not name the limit: {reason:?}"
    );
    assert!(took < Duration::from_secs(2), "the 413 took {took:?}");

    // Nothing of the patch was applied, not even its first (small) operation.
    let after = t.request("GET", path, None).await;
    assert_eq!(after, before);
}

#[tokio::test]
async fn the_patch_bomb_is_a_quick_413_and_changes_nothing() {
    let t = Topotap::start_api_only();
    common::cap_address_space(t.pid(), AS_CAP);
    let tag = rand_tag();
    let (node, peer, edge) = (
        format!("bomb-{tag}"),
        format!("peer-{tag}"),
        format!("link-{tag}"),
    );
    for id in [&node, &peer] {
        let body = json!({"ID": id, "Metadata": {"Name": id, "Type": "veth", "MTU": 1500}});
        let (s, v) = t
            .request("POST", "/api/node", Some(&body.to_string()))
            .await;
        assert_eq!(s, 201, "{v}");
    }
    let body = json!({"ID": edge, "Parent": node, "Child": peer,
                      "Metadata": {"RelationType": "layer2"}});
    let (s, v) = t
        .request("POST", "/api/edge", Some(&body.to_string()))
        .await;
    assert_eq!(s, 201, "{v}");

    assert_refused(&t, &format!("/api/node/{node}")).await;
    assert_refused(&t, &format!("/api/edge/{edge}")).await;
    // Again, concurrently with itself: each is refused on its own.
    let (node_path, peer_path) = (format!("/api/node/{node}"), format!("/api/node/{peer}"));
    tokio::join!(
        assert_refused(&t, &node_path),
        assert_refused(&t, &peer_path)
    );

    // The process is alive and never came near the cap: its peak resident set stayed
    // small (a single doubling past the limit would be 2 MiB; unbounded, gigabytes).
    let peak_kb = proc_status_kb(t.pid(), "VmHWM");
    assert!(peak_kb < 200 * 1024, "peak RSS {peak_kb} kB");

    // Writes still go through: a patch within the limit, a new node, and a delete.
    let ok = json!([{"op": "replace", "path": "/Metadata/MTU", "value": 9000}]).to_string();
    let (s, v) = t
        .request("PATCH", &format!("/api/node/{node}"), Some(&ok))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["Metadata"]["MTU"], json!(9000), "{v}");
    let late = format!("late-{tag}");
    let body = json!({"ID": late, "Metadata": {"Name": late, "Type": "veth"}});
    let (s, v) = t
        .request("POST", "/api/node", Some(&body.to_string()))
        .await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = t
        .request("DELETE", &format!("/api/edge/{edge}"), None)
        .await;
    assert!(s == 200 || s == 204, "{s} {v}");
    assert_eq!(
        t.query(&format!("G.V().Has('Name', Regex('.*-{tag}')).Count()"))
            .await,
        json!(3)
    );
}
