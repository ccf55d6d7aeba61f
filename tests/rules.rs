//! Node rules and edge rules on a real topotap with its probes, over interfaces of a
//! namespace made for the test (a veth pair): a rule creates a node, another adds a key to an
//! interface, an edge rule links two interfaces; they come back after a restart, and
//! deleting them undoes what they did.

mod common;

use std::time::Duration;

use common::net::{sh, Cleanup};
use common::{rand_tag, Topotap};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(10);

fn one(v: &Value) -> bool {
    v.as_array().is_some_and(|a| a.len() == 1)
}

fn none(v: &Value) -> bool {
    v.as_array().is_some_and(|a| a.is_empty())
}

async fn post(t: &Topotap, path: &str, body: Value) -> (u16, Value) {
    t.request("POST", path, Some(&body.to_string())).await
}

/// Waits for the three things the rules make: the node, the key, the edge between
/// the two interfaces. Returns the edge.
async fn wait_applied(t: &Topotap, p: &str) -> Value {
    let (v, ok) = t
        .wait_for(
            &format!("G.V().Has('Name', '{p}svc', 'Type', 'service')"),
            WAIT,
            one,
        )
        .await;
    assert!(ok, "node rule made no node: {v}");
    let (v, ok) = t
        .wait_for(
            &format!("G.V().Has('Name', '{p}d1', 'Team', 'blue')"),
            WAIT,
            one,
        )
        .await;
    assert!(ok, "update rule set no key: {v}\n{}", t.dump_named(p).await);
    let (v, ok) = t
        .wait_for(&format!("G.E().Has('RelationType', '{p}link')"), WAIT, one)
        .await;
    assert!(ok, "edge rule made no edge: {v}\n{}", t.dump_named(p).await);
    v[0].clone()
}

#[tokio::test]
async fn rules_write_the_graph_survive_a_restart_and_are_undone_when_deleted() {
    let p = format!("ru{}", rand_tag());
    let mut cleanup = Cleanup::new();
    cleanup.netns(&p);
    sh(&format!(
        "ip -n {p} link add {p}d1 type veth peer name {p}d2 && \
         ip -n {p} link set {p}d1 up && ip -n {p} link set {p}d2 up"
    ));
    let state = tempfile::tempdir().unwrap();
    let dir = state.path().to_str().unwrap();
    let t = Topotap::start(&["--state-dir", dir]);
    for name in ["d1", "d2"] {
        let (v, ok) = t
            .wait_for(&format!("G.V().Has('Name', '{p}{name}')"), WAIT, one)
            .await;
        assert!(ok, "{p}{name} not in the graph: {v}");
    }

    // Bad rules: 400 with one line saying what is wrong.
    for (path, body, needle) in [
        (
            "/api/noderule",
            json!({"Action": "update", "Query": format!("G.V().Has('Name', '{p}d1')"),
                   "Metadata": {"Type": "x"}}),
            "Name and Type fields can not be changed",
        ),
        (
            "/api/noderule",
            json!({"Action": "create", "Metadata": {"Name": "x"}}),
            "Metadata: a create rule needs",
        ),
        (
            "/api/noderule",
            json!({"Action": "update", "Query": "G.V().Has(", "Metadata": {"a": 1}}),
            "Query: Not a valid Gremlin expression",
        ),
        (
            "/api/noderule",
            json!({"Action": "explode", "Metadata": {"Name": "x", "Type": "y"}}),
            "Action",
        ),
        (
            "/api/edgerule",
            json!({"Src": "G.V()", "Dst": "G.V()", "Metadata": {}}),
            "RelationType",
        ),
        (
            "/api/edgerule",
            json!({"Src": "G.V().Nope()", "Dst": "G.V()", "Metadata": {"RelationType": "x"}}),
            "Src: Not a valid Gremlin expression",
        ),
    ] {
        let (s, v) = post(&t, path, body.clone()).await;
        assert_eq!(s, 400, "{body} -> {v}");
        let text = v.as_str().unwrap_or_default();
        assert!(text.contains(needle), "{body} -> {v}");
        assert_eq!(text.trim_end().lines().count(), 1, "{v}");
    }

    let (s, create) = post(
        &t,
        "/api/noderule",
        json!({"Name": "svc", "Action": "create",
               "Metadata": {"Name": format!("{p}svc"), "Type": "service", "Owner": "ops"}}),
    )
    .await;
    assert_eq!(s, 201, "{create}");
    let (s, dup) = post(
        &t,
        "/api/noderule",
        json!({"Action": "create", "Metadata": {"Name": format!("{p}svc"), "Type": "service"}}),
    )
    .await;
    assert_eq!(s, 409, "{dup}");
    let (s, update) = post(
        &t,
        "/api/noderule",
        json!({"Action": "update", "Query": format!("G.V().Has('Name', '{p}d1')"),
               "Metadata": {"Team": "blue"}}),
    )
    .await;
    assert_eq!(s, 201, "{update}");
    let (s, edge) = post(
        &t,
        "/api/edgerule",
        json!({"Src": format!("G.V().Has('Name', '{p}d1')"),
               "Dst": format!("G.V().Has('Name', '{p}d2')"),
               "Metadata": {"RelationType": format!("{p}link")}}),
    )
    .await;
    assert_eq!(s, 201, "{edge}");

    let linked = wait_applied(&t, &p).await;
    let d1 = t.query(&format!("G.V().Has('Name', '{p}d1')")).await;
    let d2 = t.query(&format!("G.V().Has('Name', '{p}d2')")).await;
    assert_eq!(linked["Parent"], d1[0]["ID"], "{linked}");
    assert_eq!(linked["Child"], d2[0]["ID"], "{linked}");
    let svc = t.query(&format!("G.V().Has('Name', '{p}svc')")).await;
    assert_eq!(svc[0]["Metadata"]["Owner"], "ops");

    // The rules are listed, and a rule whose query matches nothing says so.
    let (s, list) = t.request("GET", "/api/noderule", None).await;
    assert_eq!(s, 200);
    assert_eq!(list.as_object().unwrap().len(), 2, "{list}");
    let (s, lonely) = post(
        &t,
        "/api/edgerule",
        json!({"Src": format!("G.V().Has('Name', '{p}nothing')"), "Dst": "G.V()",
               "Metadata": {"RelationType": "x"}}),
    )
    .await;
    assert_eq!(s, 201, "{lonely}");
    let lonely = lonely["UUID"].as_str().unwrap().to_owned();
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let (_, v) = t
            .request("GET", &format!("/api/edgerule/{lonely}"), None)
            .await;
        if v["Error"] == "Src: no node matches" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A restart starts with an empty graph: the stored rules write it again.
    drop(t);
    let t = Topotap::start(&["--state-dir", dir]);
    let again = wait_applied(&t, &p).await;
    let d1 = t.query(&format!("G.V().Has('Name', '{p}d1')")).await;
    assert_eq!(again["Parent"], d1[0]["ID"], "{again}");

    // Deleting the rules undoes them.
    for (kind, r) in [
        ("noderule", &create),
        ("noderule", &update),
        ("edgerule", &edge),
    ] {
        let (s, v) = t
            .request(
                "DELETE",
                &format!("/api/{kind}/{}", r["UUID"].as_str().unwrap()),
                None,
            )
            .await;
        assert_eq!(s, 200, "{v}");
    }
    let (v, ok) = t
        .wait_for(&format!("G.V().Has('Name', '{p}svc')"), WAIT, none)
        .await;
    assert!(ok, "node stayed: {v}");
    let (v, ok) = t
        .wait_for(
            &format!("G.V().Has('Name', '{p}d1').Has('Team')"),
            WAIT,
            none,
        )
        .await;
    assert!(ok, "key stayed: {v}");
    let (v, ok) = t
        .wait_for(&format!("G.E().Has('RelationType', '{p}link')"), WAIT, none)
        .await;
    assert!(ok, "edge stayed: {v}");
    let (v, ok) = t
        .wait_for(&format!("G.V().Has('Name', '{p}d1')"), WAIT, one)
        .await;
    assert!(ok, "the interface itself must stay: {v}");
}
