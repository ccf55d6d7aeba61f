//! The history in a real PostgreSQL that the test starts (initdb and pg_ctl in a
//! temp dir, listening only on a unix socket there; Debian's postgresql-15), through a
//! real `topotap allinone --history <url>` (run as root) and a real interface.

mod common;
#[path = "common/fleet.rs"]
mod fleet;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::net::{sh, Cleanup};
use common::postgres::Postgres;
use common::{rand_tag, Topotap};
use serde_json::{json, Value};

const DEADLINE: Duration = Duration::from_secs(10);

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
    // A window that holds the deletion: the last revision carries DeletedAt.
    let window = format!("G.Context('NOW', '10m').V().Has('Name','{a}').Values('@DeletedAt')");
    let (got, ok) = t
        .wait_for(&window, DEADLINE, |v| {
            v.as_array()
                .is_some_and(|d| d.iter().filter(|d| d.as_i64() >= Some(seen)).count() == 1)
        })
        .await;
    assert!(ok, "{window}: {got}");

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

/// Revisions of one element that are the same document twice: two writers.
const DUPLICATES: &str = "SELECT count(*) FROM (SELECT kind, id, doc FROM topotap_revisions \
     GROUP BY kind, id, doc HAVING count(*) > 1) d";

/// The `History` section of an analyzer's status.
async fn history_status(api: &fleet::Api) -> Value {
    api.json("/api/status").await["History"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leading_analyzer_writes_and_the_next_leader_goes_on() {
    let pg = Postgres::start();
    let url = pg.url();
    let etcd = fleet::Etcd::start().await;
    let mut net = fleet::Net::new();
    let tag = net.tag.clone();
    let mut a = fleet::analyzer(
        &net,
        &etcd,
        &format!("hist-a{tag}"),
        0,
        &["--insecure-no-auth", "--history", &url],
    );
    let api_a = fleet::Api::new(&a);
    fleet::wait_until(DEADLINE * 2, "the first analyzer leads", || {
        api_a.is_master()
    })
    .await;
    let mut b = fleet::analyzer(
        &net,
        &etcd,
        &format!("hist-b{tag}"),
        0,
        &["--insecure-no-auth", "--history", &url],
    );
    let api_b = fleet::Api::new(&b);
    let (ns, dir) = net.host(1);
    let host = format!("hist-h{tag}");
    let _agent = fleet::agent(&ns, &dir, &host, &[&a, &b], &[]);
    for api in [&api_a, &api_b] {
        fleet::wait_until(
            DEADLINE * 2,
            "the agent's host on both analyzers",
            || async { api.hosts().await.contains(&host) },
        )
        .await;
    }

    let (x, y) = (format!("x{tag}"), format!("y{tag}"));
    sh(&format!("ip -n {ns} link add {x} type veth peer name {y}"));
    sh(&format!("ip -n {ns} link set {x} up"));
    sh(&format!("ip -n {ns} link set {y} up"));
    let state = format!("G.V().Has('Name','{x}').Values('State')");
    let past_state = format!("G.At('NOW').V().Has('Name','{x}').Values('State')");
    for api in [&api_a, &api_b] {
        fleet::wait_until(DEADLINE, "the interface up on both analyzers", || async {
            api.try_query(&state).await == Some(json!(["UP"]))
        })
        .await;
    }
    // Written once, by the leader; the other reads the same history.
    for api in [&api_a, &api_b] {
        fleet::wait_until(DEADLINE, "the interface up in the history", || async {
            api.try_query(&past_state).await == Some(json!(["UP"]))
        })
        .await;
    }
    // The past of a few moments ago is answered from memory; the store is written in
    // batches, soon after.
    fleet::wait_until(DEADLINE, "the leader writes the history", || async {
        history_status(&api_a).await["Written"].as_u64() > Some(0)
    })
    .await;
    let (ha, hb) = (history_status(&api_a).await, history_status(&api_b).await);
    assert_eq!(ha["Writing"], json!(true), "{ha}");
    assert_eq!(hb["Writing"], json!(false), "{hb}");
    assert!(ha["Written"].as_u64() > Some(0), "{ha}");
    assert_eq!(hb["Written"], json!(0), "{hb}");
    assert_eq!(pg.sql(DUPLICATES), "0");

    // The leader goes; the other takes over and goes on from the graph it holds.
    a.kill();
    fleet::wait_until(DEADLINE * 3, "the second analyzer leads", || {
        api_b.is_master()
    })
    .await;
    fleet::wait_until(DEADLINE, "the second analyzer writes", || async {
        history_status(&api_b).await["Writing"] == json!(true)
    })
    .await;
    let id = api_b.query(&format!("G.V().Has('Name','{x}')")).await[0]["ID"]
        .as_str()
        .unwrap()
        .to_owned();
    sh(&format!("ip -n {ns} link set {x} down"));
    fleet::wait_until(DEADLINE, "the interface down in the history", || async {
        api_b.try_query(&past_state).await == Some(json!(["DOWN"]))
    })
    .await;
    assert_eq!(pg.sql(DUPLICATES), "0");
    // One revision after the other, no gap, the last one open.
    let rows = pg.sql(&format!(
        "SELECT lower(valid), coalesce(upper(valid)::text, 'open') FROM topotap_revisions \
         WHERE kind = 'n' AND id = '{id}' AND NOT isempty(valid) ORDER BY lower(valid), seq"
    ));
    let intervals: Vec<(&str, &str)> = rows.lines().map(|l| l.split_once('|').unwrap()).collect();
    assert!(intervals.len() >= 2, "{rows}");
    for pair in intervals.windows(2) {
        assert_eq!(pair[0].1, pair[1].0, "a gap or an overlap: {rows}");
    }
    assert_eq!(intervals.last().unwrap().1, "open", "{rows}");
    let open = pg.sql(&format!(
        "SELECT count(*) FROM topotap_revisions WHERE id = '{id}' AND upper_inf(valid)"
    ));
    assert_eq!(open, "1");
    b.kill();
}
