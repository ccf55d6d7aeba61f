//! The history of the graph through a real `topotap allinone` (run as root) and its
//! embedded store: interfaces this test creates and deletes in its own namespaces, and
//! `G.At`/`G.Context` queries over the HTTP API, polled until a deadline.

mod common;

use std::time::Duration;

use common::net::{sh, Cleanup};
use common::{rand_tag, Topotap};
use serde_json::{json, Value};

const DEADLINE: Duration = Duration::from_secs(10);

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn start(state: &std::path::Path, extra: &[&str]) -> Topotap {
    let mut args = vec![
        "--ovsdb",
        "none",
        "--state-dir",
        state.to_str().expect("a UTF-8 path"),
    ];
    args.extend_from_slice(extra);
    Topotap::start(&args)
}

async fn expect(t: &Topotap, q: &str, want: Value) {
    let (got, ok) = t.wait_for(q, DEADLINE, |v| v == &want).await;
    assert!(ok, "{q}: got {got}, want {want}");
}

/// POST /api/topology: status, the history header, the body.
async fn query_raw(t: &Topotap, q: &str) -> (u16, Option<String>, String) {
    let resp = reqwest::Client::new()
        .post(t.url("/api/topology"))
        .header("Content-Type", "application/json")
        .body(json!({ "GremlinQuery": q }).to_string())
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    let header = resp
        .headers()
        .get("x-topotap-history")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, header, resp.text().await.unwrap())
}

/// A veth pair `a`/`b` in namespace `ns`, both up; returns when topotap sees `a` UP.
async fn veth_up(t: &Topotap, ns: &str, a: &str, b: &str) {
    sh(&format!("ip -n {ns} link add {a} type veth peer name {b}"));
    sh(&format!("ip -n {ns} link set {a} up"));
    sh(&format!("ip -n {ns} link set {b} up"));
    expect(
        t,
        &format!("G.V().Has('Name','{a}').Values('State')"),
        json!(["UP"]),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_interface_is_in_the_past_and_survives_a_restart() {
    let tag = rand_tag();
    let (ns, a, b) = (format!("h{tag}"), format!("a{tag}"), format!("b{tag}"));
    let state = tempfile::tempdir().unwrap();
    let mut c = Cleanup::new();
    c.netns(&ns);
    let t = start(state.path(), &[]);
    veth_up(&t, &ns, &a, &b).await;
    let seen = now_ms();
    sh(&format!("ip -n {ns} link del {a}"));
    let live = format!("G.V().Has('Name','{a}').Count()");
    expect(&t, &live, json!(0)).await;
    let gone = now_ms();

    // At a time it existed, it is there, with its edges (the namespace owns it).
    let past = format!("G.At({seen}).V().Has('Name','{a}')");
    expect(&t, &format!("{past}.Count()"), json!(1)).await;
    expect(
        &t,
        &format!("{past}.In().Has('Type','netns').Values('Name')"),
        json!([ns]),
    )
    .await;
    assert_eq!(t.query(&live).await, json!(0));
    // The same in the other accepted forms of a time: in unix seconds, the next second
    // after the live graph lost it.
    // The history writer batches, so the deletion reaches the store a moment after the
    // live graph lost it: wait for it rather than race the writer.
    let secs = gone / 1000 + 1;
    expect(
        &t,
        &format!("G.At({secs}).V().Has('Name','{a}').Count()"),
        json!(0),
    )
    .await;
    // A window holds every revision of it.
    let (got, ok) = t
        .wait_for(
            &format!("G.Context('NOW', '10m').V().Has('Name','{a}').Count()"),
            DEADLINE,
            |v| v.as_u64() >= Some(1),
        )
        .await;
    assert!(ok, "{got}");
    // Its last revision in the window says when it was deleted, as in Skydive; each
    // revision keeps its CreatedAt, UpdatedAt and Revision.
    let window = format!("G.Context('NOW', '10m').V().Has('Name','{a}')");
    let (got, ok) = t
        .wait_for(&window, DEADLINE, |v| {
            v.as_array()
                .is_some_and(|r| r.iter().any(|n| n["DeletedAt"].is_i64()))
        })
        .await;
    assert!(ok, "{window}: {got}");
    let revisions = got.as_array().unwrap();
    let deleted: Vec<i64> = revisions
        .iter()
        .filter_map(|n| n["DeletedAt"].as_i64())
        .collect();
    assert_eq!(deleted.len(), 1, "{got}");
    assert!(seen <= deleted[0] && deleted[0] <= now_ms(), "{got}");
    for n in revisions {
        let created = n["CreatedAt"].as_i64().unwrap_or_default();
        assert!(created > 0, "{n}");
        assert!(n["UpdatedAt"].as_i64() >= Some(created), "{n}");
        assert!(n["Revision"].as_i64() >= Some(1), "{n}");
    }
    // A window that ends before the deletion does not know of it, nor an instant.
    let before = format!("G.Context({seen}, '10m').V().Has('Name','{a}')");
    let got = t.query(&before).await;
    let revisions = got.as_array().expect("an array");
    assert!(!revisions.is_empty(), "{before}: {got}");
    assert!(revisions.iter().all(|n| n["DeletedAt"].is_null()), "{got}");
    let got = t.query(&past).await;
    assert!(got[0]["DeletedAt"].is_null(), "{past}: {got}");
    expect(
        &t,
        &format!("G.At('-0s').V().Has('Name','{a}').Count()"),
        json!(0),
    )
    .await;

    // Restarted on the same state dir: the history is still there.
    drop(t);
    let t = start(state.path(), &[]);
    expect(&t, &format!("{past}.Count()"), json!(1)).await;
    assert_eq!(t.query(&live).await, json!(0));
    let (_, status) = t.request("GET", "/api/status", None).await;
    assert_eq!(status["History"]["Backend"], json!("redb"), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_context_window_sees_an_interface_go_up_down_up() {
    let tag = rand_tag();
    let (ns, a, b) = (format!("w{tag}"), format!("a{tag}"), format!("b{tag}"));
    let state = tempfile::tempdir().unwrap();
    let mut c = Cleanup::new();
    c.netns(&ns);
    let t = start(state.path(), &[]);
    let begin = now_ms();
    veth_up(&t, &ns, &a, &b).await;
    let state_of = format!("G.V().Has('Name','{a}').Values('State')");
    sh(&format!("ip -n {ns} link set {a} down"));
    expect(&t, &state_of, json!(["DOWN"])).await;
    sh(&format!("ip -n {ns} link set {a} up"));
    expect(&t, &state_of, json!(["UP"])).await;
    let end = now_ms() + 1;

    // Every revision in the window, oldest first: UP, then DOWN, then UP again (other
    // changes, such as addresses or the peer's state, add revisions in between).
    let q = format!(
        "G.Context({end}, '{}ms').V().Has('Name','{a}').Values('State')",
        end - begin + 1
    );
    let ok = |v: &Value| {
        let states: Vec<&str> = v
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let up = states.iter().position(|s| *s == "UP");
        let down = up.and_then(|i| states[i..].iter().position(|s| *s == "DOWN").map(|j| i + j));
        down.is_some_and(|i| states[i..].contains(&"UP"))
    };
    let (got, seen) = t.wait_for(&q, DEADLINE, ok).await;
    assert!(seen, "{q}: {got}");
    // At one instant there is one revision.
    let (got, one) = t
        .wait_for(
            &format!("G.At({end}).V().Has('Name','{a}').Values('State')"),
            DEADLINE,
            |v| v == &json!(["UP"]),
        )
        .await;
    assert!(one, "{got}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_removes_old_revisions_and_says_so() {
    let tag = rand_tag();
    let (ns, a, b) = (format!("r{tag}"), format!("a{tag}"), format!("b{tag}"));
    let state = tempfile::tempdir().unwrap();
    let mut c = Cleanup::new();
    c.netns(&ns);
    let t = start(state.path(), &["--history-retention", "2s"]);
    veth_up(&t, &ns, &a, &b).await;
    let seen = now_ms();
    sh(&format!("ip -n {ns} link del {a}"));
    let past = format!("G.At({seen}).V().Has('Name','{a}').Count()");
    // Found while kept...
    expect(&t, &past, json!(1)).await;
    // ...then removed by retention (it runs every 10 s), and the answer says why it
    // is empty.
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    loop {
        let (status, header, body) = query_raw(&t, &past).await;
        assert_eq!(status, 200, "{body}");
        if body == "0" {
            let header = header.expect("a history header on an answer before the horizon");
            assert!(header.starts_with("before-retention; horizon="), "{header}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "still {body}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let (_, status) = t.request("GET", "/api/status", None).await;
    assert!(status["History"]["Purged"].as_u64() > Some(0), "{status}");
    // The live graph and recent history are untouched.
    expect(
        &t,
        &format!("G.At('NOW').V().Has('Name','{b}').Count()"),
        json!(0),
    )
    .await;
    assert_eq!(
        t.query(&format!("G.V().Has('Type','netns','Name','{ns}').Count()"))
            .await,
        json!(1)
    );
    expect(
        &t,
        &format!("G.At('NOW').V().Has('Type','netns','Name','{ns}').Count()"),
        json!(1),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_times_are_refused_with_the_accepted_forms() {
    let state = tempfile::tempdir().unwrap();
    let t = start(state.path(), &["--no-probes"]);
    for q in [
        "G.At('yesterday').V()",
        "G.Context('-1x').V()",
        "G.At('2026-13-01T00:00:00Z').V()",
        "G.At(true).V()",
    ] {
        let (status, _, body) = query_raw(&t, q).await;
        assert_eq!(status, 400, "{q}: {body}");
        assert!(body.contains("RFC 3339"), "{q}: {body}");
        assert!(!body.trim_end().contains('\n'), "{q}: {body}");
    }
    let (status, _, body) = query_raw(&t, "G.Context('NOW', 'soon').V()").await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("FOREVER"), "{body}");
    let (status, _, body) = query_raw(&t, "G.V().At('NOW')").await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("first step"), "{body}");
    // A time the history does not reach: empty, with a header saying so.
    let (status, header, body) = query_raw(&t, "G.At('2001-01-01T00:00:00Z').V()").await;
    assert_eq!((status, body.as_str()), (200, "[]"));
    assert!(header.is_some_and(|h| h.starts_with("before-retention")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unavailable_store_leaves_allinone_live_only() {
    // The first server holds the store's file; the second cannot open it.
    let state = tempfile::tempdir().unwrap();
    let first = start(state.path(), &["--no-probes"]);
    let second = start(state.path(), &["--no-probes"]);
    let (status, _, body) = query_raw(&second, "G.At('NOW').V().Count()").await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("does not support history"), "{body}");
    assert_eq!(second.query("G.V().Count()").await, json!(0));
    let (_, st) = second.request("GET", "/api/status", None).await;
    assert!(st.get("History").is_none(), "{st}");
    let (status, _, _) = query_raw(&first, "G.At('NOW').V().Count()").await;
    assert_eq!(status, 200);
}

/// A `SyncRequest` on `/ws/subscriber`, and its `SyncReply`.
async fn ws_sync(t: &Topotap, obj: Value) -> Value {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let url = format!("ws://{}/ws/subscriber", t.addr);
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("connect");
    let req = json!({"Namespace": "Graph", "Type": "SyncRequest", "UUID": "u1", "Obj": obj});
    ws.send(Message::Text(req.to_string().into()))
        .await
        .unwrap();
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a reply within 10 s")
            .expect("stream open")
            .expect("no error");
        if let Message::Text(text) = msg {
            let v: Value = serde_json::from_str(&text).unwrap();
            if v["Type"] == "SyncReply" && v["UUID"] == "u1" {
                return v;
            }
        }
    }
}

fn names(reply: &Value) -> Vec<String> {
    let mut v: Vec<String> = reply["Obj"]["Nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n["Metadata"]["Name"].as_str().map(str::to_owned))
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_syncs_to_a_past_time() {
    let tag = rand_tag();
    let (ns, a, b) = (format!("w{tag}"), format!("a{tag}"), format!("b{tag}"));
    let state = tempfile::tempdir().unwrap();
    let mut c = Cleanup::new();
    c.netns(&ns);
    let t = start(state.path(), &[]);
    veth_up(&t, &ns, &a, &b).await;
    expect(
        &t,
        &format!("G.At('NOW').V().Has('Name','{a}').Count()"),
        json!(1),
    )
    .await;
    // A whole second after both ends appeared, so that the second it falls in finds them.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let seen = now_ms();
    sh(&format!("ip -n {ns} link del {a}"));
    expect(&t, &format!("G.V().Has('Name','{a}').Count()"), json!(0)).await;

    // The same filter, live and at the time both ends existed (ms, as Skydive sends it).
    let filter = format!("G.V().Has('Name', Within('{a}','{b}')).SubGraph()");
    let live = ws_sync(&t, json!({"GremlinFilter": filter})).await;
    assert_eq!(live["Status"], json!(200), "{live}");
    assert!(names(&live).is_empty(), "{live}");
    let past = ws_sync(&t, json!({"GremlinFilter": filter, "Time": seen})).await;
    assert_eq!(past["Status"], json!(200), "{past}");
    assert_eq!(names(&past), vec![a.clone(), b.clone()], "{past}");
    // The other forms of a time, and the whole graph without a filter.
    let secs = ws_sync(
        &t,
        json!({"GremlinFilter": filter, "Time": format!("{}", seen / 1000)}),
    )
    .await;
    assert_eq!(names(&secs), vec![a.clone(), b.clone()], "{secs}");
    let whole = ws_sync(&t, json!({"GremlinFilter": "", "Time": seen})).await;
    assert_eq!(whole["Status"], json!(200), "{whole}");
    assert!(names(&whole).contains(&a), "{whole}");
    assert!(names(&whole).contains(&ns), "{whole}");
    // Zero is the live graph, as in Skydive.
    let zero = ws_sync(&t, json!({"GremlinFilter": filter, "Time": 0})).await;
    assert!(names(&zero).is_empty(), "{zero}");
    // Before the history began: empty.
    let early = ws_sync(
        &t,
        json!({"GremlinFilter": filter, "Time": "2001-01-01T00:00:00Z"}),
    )
    .await;
    assert_eq!(early["Status"], json!(200), "{early}");
    assert!(names(&early).is_empty(), "{early}");
    // ...and said so, as the REST answer's header does.
    let note = early["History"].as_str().unwrap_or_default();
    assert!(note.starts_with("before-retention; horizon="), "{early}");
    assert!(past.get("History").is_none(), "{past}");
    // A malformed time: 400 with the accepted forms.
    for bad in [json!("yesterday"), json!(true), json!(-5), json!(1.5)] {
        let reply = ws_sync(&t, json!({"GremlinFilter": filter, "Time": bad})).await;
        assert_eq!(reply["Status"], json!(400), "{bad}: {reply}");
        let reason = reply["Obj"].as_str().unwrap_or_default();
        assert!(reason.contains("RFC 3339"), "{bad}: {reply}");
    }
}
