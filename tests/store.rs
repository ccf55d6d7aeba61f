//! The capture store under failure: a state dir on a genuinely full filesystem, and a
//! kill -9 under load. Every acknowledged change survives a restart, and a change that
//! could not be made durable is refused (507) and leaves nothing behind.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::{rand_tag, Topotap};
use parking_lot::Mutex;
use serde_json::{json, Value};

/// A small tmpfs mounted for one test, unmounted and removed on drop.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = std::env::temp_dir().join(format!(
            "topotap-full-{}-{}",
            std::process::id(),
            rand_tag()
        ));
        std::fs::create_dir(&dir).unwrap();
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(&dir)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            let _ = std::fs::remove_dir(&dir);
            panic!("cannot mount a tmpfs on {}", dir.display());
        }
        Tmpfs { dir }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let unmounted = Command::new("umount")
            .arg(&self.dir)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !unmounted {
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// Fills the filesystem of `dir` completely with `file`, then frees `leave` bytes.
fn fill(file: &Path, leave: u64) {
    use std::io::Write;
    let mut f = std::fs::File::create(file).unwrap();
    let chunk = vec![0xaau8; 4096];
    let mut written = 0u64;
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(28), "expected ENOSPC: {e}");
                break;
            }
        }
    }
    f.set_len(written.saturating_sub(leave)).unwrap();
    f.sync_all().unwrap();
}

async fn create(t: &Topotap, query: &str) -> (u16, Value) {
    let body = json!({ "GremlinQuery": query }).to_string();
    t.request("POST", "/api/capture", Some(&body)).await
}

async fn uuids(t: &Topotap) -> BTreeSet<String> {
    let (status, list) = t.request("GET", "/api/capture", None).await;
    assert_eq!(status, 200, "{list}");
    list.as_object().unwrap().keys().cloned().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_with_507_and_loses_nothing_acknowledged() {
    let fs = Tmpfs::mount("256k");
    let state = fs.dir.join("state");
    let state_arg = state.to_str().unwrap().to_owned();
    // The history store would take the little room left: this is about the capture log.
    let t = Topotap::start(&["--no-probes", "--history", "off", "--state-dir", &state_arg]);
    // The store made its (empty) log at startup; now leave room for a few records.
    let filler = fs.dir.join("filler");
    fill(&filler, 8192);

    let t = Arc::new(t);
    let mut acked = BTreeSet::new();
    let mut refused = 0;
    for round in 0..10 {
        let answers = futures_util::future::join_all((0..20).map(|i| {
            let t = t.clone();
            async move { create(&t, &format!("G.V().Has('Name','none-{round}-{i}')")).await }
        }))
        .await;
        for (status, v) in answers {
            match status {
                201 => {
                    acked.insert(v["UUID"].as_str().unwrap().to_owned());
                }
                507 => {
                    let reason = v.as_str().expect("a text reason");
                    assert!(reason.contains("No space left on device"), "{reason:?}");
                    assert_eq!(reason.trim_end().lines().count(), 1, "{reason:?}");
                    refused += 1;
                }
                other => panic!("create answered {other}: {v}"),
            }
        }
    }
    eprintln!("full disk: {} acknowledged, {refused} refused", acked.len());
    assert!(!acked.is_empty(), "some creations fit");
    assert!(refused > 0, "the disk never filled ({} acked)", acked.len());
    assert_eq!(acked.len() + refused, 200);
    // What is listed is exactly what was acknowledged.
    assert_eq!(uuids(&t).await, acked);
    let (_, status) = t.request("GET", "/api/status", None).await;
    assert!(
        status["Captures"]["Error"]
            .as_str()
            .is_some_and(|e| e.contains("No space left on device")),
        "{status}"
    );

    // Deletions on the full disk: acknowledged ones are gone, refused ones stay.
    let mut deleted = BTreeSet::new();
    for uuid in acked.iter().take(5) {
        let (status, v) = t
            .request("DELETE", &format!("/api/capture/{uuid}"), None)
            .await;
        match status {
            200 => {
                deleted.insert(uuid.clone());
            }
            507 => assert!(v.as_str().unwrap().contains("No space left"), "{v}"),
            other => panic!("delete answered {other}: {v}"),
        }
    }
    let expected: BTreeSet<String> = acked.difference(&deleted).cloned().collect();
    assert_eq!(uuids(&t).await, expected);

    // After a restart on the same full disk: the same set, nothing lost, nothing phantom.
    let t = Arc::into_inner(t).expect("no other users");
    drop(t);
    let t = Topotap::start(&["--no-probes", "--state-dir", &state_arg]);
    assert_eq!(uuids(&t).await, expected);

    // Room again: writes succeed and the failure is no longer shown.
    std::fs::remove_file(&filler).unwrap();
    let (status, created) = create(&t, "G.V().Has('Name','none-after')").await;
    assert_eq!(status, 201, "{created}");
    let undeleted = expected.iter().next().unwrap().clone();
    let (status, _) = t
        .request("DELETE", &format!("/api/capture/{undeleted}"), None)
        .await;
    assert_eq!(status, 200);
    let (_, status) = t.request("GET", "/api/status", None).await;
    assert!(status["Captures"].get("Error").is_none(), "{status}");
    let mut now = expected.clone();
    now.remove(&undeleted);
    now.insert(created["UUID"].as_str().unwrap().to_owned());
    drop(t);
    let t = Topotap::start(&["--no-probes", "--state-dir", &state_arg]);
    assert_eq!(uuids(&t).await, now);
    drop(t);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_keeps_every_acknowledged_capture() {
    let state = tempfile::tempdir().unwrap();
    let dir = state.path().to_str().unwrap().to_owned();
    let t = Arc::new(Topotap::start(&["--no-probes", "--state-dir", &dir]));
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let writers: Vec<_> = (0..16)
        .map(|w| {
            let (t, acked) = (t.clone(), acked.clone());
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                for i in 0.. {
                    let body =
                        json!({ "GremlinQuery": format!("G.V().Has('Name','none-{w}-{i}')") });
                    let Ok(resp) = client
                        .post(t.url("/api/capture"))
                        .header("Content-Type", "application/json")
                        .body(body.to_string())
                        .send()
                        .await
                    else {
                        return;
                    };
                    if resp.status() != 201 {
                        return;
                    }
                    let Ok(v) = resp.json::<Value>().await else {
                        return;
                    };
                    acked.lock().insert(v["UUID"].as_str().unwrap().to_owned());
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let killed = Command::new("kill")
        .args(["-KILL", &t.pid().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    for w in writers {
        w.await.unwrap();
    }
    let acked = acked.lock().clone();
    eprintln!("kill -9 after {} acknowledged creations", acked.len());
    assert!(
        acked.len() > 50,
        "only {} creations before the kill",
        acked.len()
    );
    drop(Arc::into_inner(t).expect("writers are done"));

    let t = Topotap::start(&["--no-probes", "--state-dir", &dir]);
    let after = uuids(&t).await;
    let lost: Vec<_> = acked.difference(&after).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged captures lost: {lost:?}",
        lost.len()
    );
    // At most the requests in flight at the kill were durable without an answer.
    assert!(
        after.len() <= acked.len() + 16,
        "{} > {} + 16",
        after.len(),
        acked.len()
    );
    // The restarted store goes on appending.
    let (status, _) = create(&t, "G.V().Has('Name','none-after-kill')").await;
    assert_eq!(status, 201);
}
