//! Alerts in a fleet: two analyzers sharing a real etcd and an agent in a namespace of
//! its own. An alert created on one analyzer is listed on both and fires its webhook
//! once per change of what its expression finds: only the elected dispatcher
//! evaluates, and writes the alert's state to etcd, which the follower shows. It
//! survives an analyzer's restart and the leader's death: the new leader carries on
//! from the state in etcd (no second POST for a condition that already fired) and fires
//! it, once, on the next change.

mod common;
#[path = "common/fleet.rs"]
mod fleet;

use std::time::Duration;

use common::net::sh;
use common::webhook::receiver;
use fleet::{agent, analyzer, free_port, wait_until, Api, Etcd, Net};
use serde_json::{json, Value};
use tokio::sync::mpsc::UnboundedReceiver;

const WAIT: Duration = Duration::from_secs(20);
/// How long a second POST for the same change would take to show.
const QUIET: Duration = Duration::from_secs(3);

/// The next webhook POST's body.
async fn next_hook(hooks: &mut UnboundedReceiver<(String, Value)>) -> Value {
    tokio::time::timeout(WAIT, hooks.recv())
        .await
        .expect("no webhook POST")
        .expect("receiver gone")
        .1
}

/// No webhook POST for a while.
async fn no_hook(hooks: &mut UnboundedReceiver<(String, Value)>, why: &str) {
    if let Ok(Some((_, body))) = tokio::time::timeout(QUIET, hooks.recv()).await {
        panic!("{why}: unexpected webhook POST {body}");
    }
}

async fn alert(api: &Api, id: &str) -> Value {
    api.json(&format!("/api/alert/{id}")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_fires_once_for_the_fleet_and_outlives_its_analyzers() {
    let (hook, mut hooks) = receiver().await;
    let etcd = Etcd::start().await;
    let mut net = Net::new();
    let tag = net.tag.clone();
    let flags = ["--insecure-no-auth", "--allow-target", "127.0.0.0/8"];
    let port_a = free_port();
    let mut a = analyzer(&net, &etcd, &format!("a-{tag}"), port_a, &flags);
    let api_a = Api::new(&a);
    wait_until(Duration::from_secs(15), "analyzer A leads", || {
        api_a.is_master()
    })
    .await;
    let port_b = free_port();
    let mut b = analyzer(&net, &etcd, &format!("b-{tag}"), port_b, &flags);
    let host = format!("d1-{tag}");
    let (ns, dir) = net.host(1);
    let _agent = agent(&ns, &dir, &host, &[&a, &b], &[]);
    let mut api_b = Api::new(&b);
    for api in [&api_a, &api_b] {
        wait_until(WAIT, "the host on both analyzers", || async {
            api.hosts().await == vec![host.clone()]
        })
        .await;
    }
    assert!(!api_b.is_master().await, "B leads too");

    // Created on A, listed on B.
    let dummy = format!("ft{tag}al");
    let (s, body) = api_a
        .request(
            "POST",
            "/api/alert",
            Some(
                &json!({"Name": format!("{tag}-fleet"),
                        "Expression": format!("G.V().Has('Name', '{dummy}')"),
                        "Action": format!("http://{hook}/fleet")})
                .to_string(),
            ),
        )
        .await;
    assert_eq!(s, 201, "{body}");
    let id = serde_json::from_str::<Value>(&body).unwrap()["UUID"]
        .as_str()
        .unwrap()
        .to_owned();
    wait_until(WAIT, "the alert listed on B", || async {
        api_b.json("/api/alert").await.get(&id).is_some()
    })
    .await;
    wait_until(WAIT, "the alert evaluated on A", || async {
        alert(&api_a, &id).await["State"] == "ok"
    })
    .await;

    // The interface appears on the agent: both analyzers see it, one POST.
    sh(&format!(
        "ip -n {ns} link add {dummy} type veth peer name {dummy}p"
    ));
    let body = next_hook(&mut hooks).await;
    assert_eq!(body["UUID"], id.as_str(), "{body}");
    assert_eq!(body["ReasonData"][0]["Metadata"]["Name"], dummy.as_str());
    for api in [&api_a, &api_b] {
        wait_until(WAIT, "the interface on both analyzers", || async {
            api.count(&format!("G.V().Has('Name', '{dummy}').Count()"))
                .await
                == 1
        })
        .await;
    }
    no_hook(&mut hooks, "one change, one POST").await;
    let shown = alert(&api_a, &id).await;
    assert_eq!(shown["State"], "firing", "{shown}");
    assert_eq!(shown["FireCount"], 1, "{shown}");
    let fired = shown["LastFired"].as_i64().expect("LastFired");
    // The follower shows the leader's state.
    wait_until(WAIT, "the leader's state on B", || async {
        let b = alert(&api_b, &id).await;
        b["State"] == "firing" && b["LastFired"] == fired && b["FireCount"] == 1
    })
    .await;

    // B restarts: the alert is still there, nothing fires again.
    b.kill();
    b = analyzer(&net, &etcd, &format!("b-{tag}"), port_b, &flags);
    api_b = Api::new(&b);
    wait_until(WAIT, "the alert listed on the restarted B", || async {
        api_b.try_query("G.V().Count()").await.is_some()
            && api_b.json("/api/alert").await.get(&id).is_some()
    })
    .await;
    no_hook(&mut hooks, "a restarted follower does not fire").await;
    wait_until(WAIT, "the leader's state on the restarted B", || async {
        alert(&api_b, &id).await["LastFired"] == fired
    })
    .await;

    // A dies while the interface is still there: B leads and carries on from A's
    // state, without a second POST for the same condition.
    a.kill();
    wait_until(Duration::from_secs(30), "B leads", || api_b.is_master()).await;
    wait_until(WAIT, "the host on B", || async {
        api_b.hosts().await == vec![host.clone()]
    })
    .await;
    no_hook(&mut hooks, "the new leader does not fire again").await;
    let shown = alert(&api_b, &id).await;
    assert_eq!(shown["State"], "firing", "{shown}");
    assert_eq!(shown["FireCount"], 1, "{shown}");
    assert_eq!(shown["LastFired"], fired, "{shown}");
    // A comes back as a follower and shows B's state.
    a = analyzer(&net, &etcd, &format!("a-{tag}"), port_a, &flags);
    let api_a = Api::new(&a);
    wait_until(WAIT, "B's state on the restarted A", || async {
        api_a.try_query("G.V().Count()").await.is_some()
            && alert(&api_a, &id).await["LastFired"] == fired
    })
    .await;

    // The interface goes (the alert re-arms), B fires once when it comes back.
    sh(&format!("ip -n {ns} link del {dummy}"));
    wait_until(WAIT, "the alert re-armed on B", || async {
        alert(&api_b, &id).await["State"] == "ok"
    })
    .await;
    wait_until(WAIT, "the re-armed state on A", || async {
        alert(&api_a, &id).await["State"] == "ok"
    })
    .await;
    sh(&format!(
        "ip -n {ns} link add {dummy} type veth peer name {dummy}p"
    ));
    let body = next_hook(&mut hooks).await;
    assert_eq!(body["UUID"], id.as_str(), "{body}");
    no_hook(&mut hooks, "one change, one POST from the new leader").await;
    let shown = alert(&api_b, &id).await;
    assert_eq!(shown["State"], "firing", "{shown}");
    assert_eq!(shown["FireCount"], 2, "{shown}");
    assert!(shown["LastFired"].as_i64() > Some(fired), "{shown}");
    wait_until(WAIT, "B's new state on A", || async {
        alert(&api_a, &id).await["FireCount"] == 2
    })
    .await;
    sh(&format!("ip -n {ns} link del {dummy}"));
}
