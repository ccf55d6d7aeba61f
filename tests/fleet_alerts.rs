//! Alerts in a fleet: two analyzers sharing a real etcd and an agent in a namespace of
//! its own. An alert created on one analyzer is listed on both and fires its webhook
//! once per change of what its expression finds: only the elected dispatcher
//! evaluates. It survives an analyzer's restart and the leader's death; the new
//! leader fires it, once, on the next change.

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
    let mut a = analyzer(&net, &etcd, &format!("a-{tag}"), free_port(), &flags);
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

    // The interface goes (the alert re-arms), then A dies: B leads, and fires once
    // when the interface comes back.
    sh(&format!("ip -n {ns} link del {dummy}"));
    wait_until(WAIT, "the alert re-armed on A", || async {
        alert(&api_a, &id).await["State"] == "ok"
    })
    .await;
    a.kill();
    wait_until(Duration::from_secs(30), "B leads", || api_b.is_master()).await;
    wait_until(WAIT, "the host back on B", || async {
        api_b.hosts().await == vec![host.clone()]
    })
    .await;
    wait_until(WAIT, "the alert evaluated on B", || async {
        alert(&api_b, &id).await["State"] == "ok"
    })
    .await;
    no_hook(&mut hooks, "nothing holds when B takes over").await;
    sh(&format!(
        "ip -n {ns} link add {dummy} type veth peer name {dummy}p"
    ));
    let body = next_hook(&mut hooks).await;
    assert_eq!(body["UUID"], id.as_str(), "{body}");
    no_hook(&mut hooks, "one change, one POST from the new leader").await;
    let shown = alert(&api_b, &id).await;
    assert_eq!(shown["State"], "firing", "{shown}");
    assert_eq!(shown["FireCount"], 1, "{shown}");
    sh(&format!("ip -n {ns} link del {dummy}"));
}
