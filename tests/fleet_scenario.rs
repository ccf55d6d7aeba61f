//! The fleet end to end, as a deployment runs it: a real etcd on loopback, two
//! analyzers replicating to each other on the address of a test bridge, and three
//! agents, each in a network namespace (and PID namespace) of its own joined to the
//! bridge, each reporting to both analyzers and seeing only its namespace and those
//! under its own --netns-path.
//!
//! Latencies are printed (`cargo test --test fleet_scenario -- --nocapture`), not
//! asserted: BENCHMARKS.md measures them.

mod common;
#[path = "common/fleet.rs"]
mod fleet;
#[path = "common/skydive_venv.rs"]
mod skydive_venv;

use std::process::Command;
use std::time::{Duration, Instant};

use fleet::{agent, analyzer, free_port, sorted, wait_until, Api, Etcd, Net, Proc};
use serde_json::{json, Value};

/// Runs tests/python/skydive_fleet_check.py against the analyzer at `addr`.
fn skydive_client(addr: &str, gremlin: &str) -> Value {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/python/skydive_fleet_check.py"
    );
    let out = Command::new(skydive_venv::venv())
        .arg(script)
        .arg(addr)
        .arg(gremlin)
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

/// The agent keys etcd holds for `host` (one per analyzer holding its connection).
fn lease_keys(etcd: &Etcd, host: &str) -> usize {
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", &etcd.url(), "get", "--prefix", "--keys-only"])
        .arg(format!("/topotap/agents/{host}/"))
        .output()
        .expect("etcdctl (Debian etcd-client, scripts/deps.sh)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_analyzers_three_agents() {
    let mut etcd = Etcd::start().await;
    let mut net = Net::new();
    let tag = net.tag.clone();
    let (port_a, port_b) = (free_port(), free_port());
    let ip = net.analyzer_ip();
    let (peer_a, peer_b) = (format!("{ip}:{port_a}"), format!("{ip}:{port_b}"));
    let open = "--insecure-no-auth";
    let mut a = analyzer(
        &net,
        &etcd,
        &format!("a-{tag}"),
        port_a,
        &[open, "--peer", &peer_b],
    );
    let b = analyzer(
        &net,
        &etcd,
        &format!("b-{tag}"),
        port_b,
        &[open, "--peer", &peer_a],
    );
    let (api_a, api_b) = (Api::new(&a), Api::new(&b));
    let ids: Vec<String> = (1..=3).map(|i| format!("s{i}-{tag}")).collect();
    let all: Vec<&str> = ids.iter().map(String::as_str).collect();
    let started = Instant::now();
    let mut hosts = Vec::new();
    let mut agents: Vec<Proc> = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let (ns, dir) = net.host(i as u8 + 1);
        agents.push(agent(&ns, &dir, id, &[&a, &b], &[]));
        hosts.push((ns, dir));
    }

    // Both analyzers show the three hosts, each host's eth0 once.
    for api in [&api_a, &api_b] {
        wait_until(Duration::from_secs(20), "all hosts on both", || async {
            api.hosts().await == sorted(&all)
        })
        .await;
        assert_eq!(api.count("G.V().Has('Name','eth0').Count()").await, 3);
    }
    println!(
        "fleet converged: 3 hosts on 2 analyzers {:?} after the agents started",
        started.elapsed()
    );

    // A namespace made on host 2 shows on both analyzers.
    let name = format!("s{tag}n2");
    let q = format!("G.V().Has('Type','netns','Name','{name}').Values('@Host')");
    let made = Instant::now();
    net.netns_in(&hosts[1].1, &name);
    let mut seen = Vec::new();
    for api in [&api_a, &api_b] {
        wait_until(Duration::from_secs(10), "host 2's namespace", || async {
            api.try_query(&q).await == Some(json!([ids[1].clone()]))
        })
        .await;
        seen.push(made.elapsed());
    }
    println!(
        "namespace on host 2 -> visible on A {:?}, on B {:?}",
        seen[0], seen[1]
    );

    // Skydive's Python client against analyzer A: the merged hosts, and a capture on
    // host 3's eth0 (kept for the etcd restart below).
    let gremlin = format!("G.V().Has('@Host','{}','Name','eth0')", ids[2]);
    let v = tokio::task::spawn_blocking({
        let (addr, gremlin) = (a.addr.clone(), gremlin.clone());
        move || skydive_client(&addr, &gremlin)
    })
    .await
    .unwrap();
    assert!(v.get("error").is_none(), "{v}");
    assert_eq!(v["hosts"], json!(sorted(&all)), "{v}");
    assert_eq!(v["found"], json!([ids[2].clone()]), "{v}");
    let capture = v["created"].as_str().expect("a capture UUID").to_owned();
    assert_eq!(v["listed"], json!([capture.clone()]), "{v}");
    wait_until(Duration::from_secs(10), "B lists the capture", || async {
        api_b.captures().await == [capture.clone()]
    })
    .await;

    // etcd restarts: no capture is lost, and writes work again.
    etcd.kill();
    etcd.resume().await;
    for api in [&api_a, &api_b] {
        assert_eq!(
            api.captures().await,
            std::slice::from_ref(&capture),
            "{}",
            api.base
        );
    }
    let query = format!("G.V().Has('@Host','{}','Name','eth0')", ids[0]);
    let body = json!({"GremlinQuery": query, "Name": "after restart"}).to_string();
    let deadline = Instant::now() + Duration::from_secs(20);
    let second = loop {
        let (status, text) = api_b.request("POST", "/api/capture", Some(&body)).await;
        if status == 201 {
            break serde_json::from_str::<Value>(&text).unwrap()["UUID"]
                .as_str()
                .unwrap()
                .to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "etcd is back, yet {status} {text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut both = vec![capture.clone(), second.clone()];
    both.sort();
    for api in [&api_a, &api_b] {
        wait_until(Duration::from_secs(10), "both captures listed", || async {
            api.captures().await == both
        })
        .await;
    }
    // The graph is untouched by the restart.
    for api in [&api_a, &api_b] {
        assert_eq!(api.hosts().await, sorted(&all), "{}", api.base);
    }

    // A killed agent: its subgraph goes from both analyzers and its leases from etcd.
    assert_eq!(lease_keys(&etcd, &ids[2]), 2, "one lease per analyzer");
    let killed = Instant::now();
    agents[2].kill();
    for api in [&api_a, &api_b] {
        wait_until(
            Duration::from_secs(30),
            "host 3's subgraph goes",
            || async {
                api.count(&format!("G.V().Has('@Host','{}').Count()", ids[2]))
                    .await
                    == 0
            },
        )
        .await;
    }
    let graph_gone = killed.elapsed();
    wait_until(Duration::from_secs(30), "host 3's leases go", || async {
        lease_keys(&etcd, &ids[2]) == 0
    })
    .await;
    println!(
        "killed agent: subgraph gone after {graph_gone:?}, leases after {:?}",
        killed.elapsed()
    );
    assert_eq!(api_b.hosts().await, sorted(&all[..2]));

    // Analyzer A dies: its agents resync to B, which keeps hosts 1 and 2 and gets what
    // they do next.
    a.kill();
    let name = format!("s{tag}n1");
    let died = Instant::now();
    net.netns_in(&hosts[0].1, &name);
    wait_until(
        Duration::from_secs(20),
        "host 1's new namespace on B",
        || async {
            api_b
                .try_query(&format!(
                    "G.V().Has('Type','netns','Name','{name}').Values('@Host')"
                ))
                .await
                == Some(json!([ids[0].clone()]))
        },
    )
    .await;
    println!(
        "A killed: a namespace of host 1 reached B after {:?}",
        died.elapsed()
    );
    assert_eq!(api_b.hosts().await, sorted(&all[..2]));
    assert_eq!(api_b.count("G.V().Has('Name','eth0').Count()").await, 2);
    // B leads alone now.
    wait_until(Duration::from_secs(30), "B is the dispatcher", || async {
        api_b.is_master().await
    })
    .await;
}
