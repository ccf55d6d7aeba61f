//! Probes against the real kernel (run as root): every test creates its own uniquely
//! named namespaces and links, removes them in a drop guard, and asserts on the graph
//! with Gremlin queries polled until a 5 s deadline.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use topotap_probes::{start, Probes, ProbesConfig};
use topotap_topology::gremlin::{compile, Budget, Extensions};
use topotap_topology::{Graph, GraphEvent, SharedGraph};

const DEADLINE: Duration = Duration::from_secs(5);

/// A short random tag, so parallel tests and leftovers never share names.
fn tag() -> String {
    format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..5])
}

fn ip(args: &str) {
    let out = Command::new("ip")
        .args(args.split_whitespace())
        .output()
        .expect("running ip");
    assert!(
        out.status.success(),
        "ip {args}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Deletes what a test created, even when it panicked.
struct Cleanup(Vec<String>);

impl Cleanup {
    fn netns(&mut self, name: &str) {
        ip(&format!("netns add {name}"));
        self.0.push(format!("netns del {name}"));
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for cmd in self.0.iter().rev() {
            let _ = Command::new("ip")
                .args(cmd.split_whitespace())
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

async fn probes() -> (SharedGraph, Probes) {
    let config = ProbesConfig {
        host_id: "test-host".into(),
        proc_scan_interval: Duration::from_millis(500),
        metrics_interval: Duration::from_secs(1),
        ..ProbesConfig::default()
    };
    let graph = SharedGraph::new(Graph::new(), &config.host_id);
    let probes = start(graph.clone(), config).await.expect("starting probes");
    (graph, probes)
}

fn gremlin(graph: &SharedGraph, query: &str) -> Value {
    let q = compile(query, &Extensions::default()).unwrap_or_else(|e| panic!("{query}: {e}"));
    let g = graph.read();
    let out = q
        .evaluate(&g, &Budget::default())
        .unwrap_or_else(|e| panic!("{query}: {e}"));
    out.to_json(&g)
}

/// Polls `query` until it returns `expected`.
async fn expect(graph: &SharedGraph, query: &str, expected: Value) {
    let start = Instant::now();
    loop {
        let got = gremlin(graph, query);
        if got == expected {
            return;
        }
        if start.elapsed() > DEADLINE {
            let (nodes, edges) = graph.read().snapshot();
            let nodes: Vec<_> = nodes
                .iter()
                .filter(|n| n.metadata.get("Type") != Some(&json!("host")))
                .map(|n| json!({"ID": n.id, "Metadata": n.metadata}))
                .collect();
            let edges: Vec<_> = edges
                .iter()
                .map(|e| json!([e.parent, e.child, e.metadata]))
                .collect();
            panic!("{query}: got {got}, want {expected};\nnodes {nodes:#?}\nedges {edges:#?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Polls until `query` returns something for which `f` gives a value.
async fn wait_for<T>(graph: &SharedGraph, query: &str, f: impl Fn(&Value) -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        let got = gremlin(graph, query);
        if let Some(t) = f(&got) {
            return t;
        }
        assert!(start.elapsed() < DEADLINE, "{query}: last result {got}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn count(graph: &SharedGraph, query: &str) -> i64 {
    gremlin(graph, query).as_i64().unwrap_or(-1)
}

fn one_id(v: &Value) -> Option<String> {
    match v.as_array()?.as_slice() {
        [n] => Some(n["ID"].as_str()?.to_owned()),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_appears_and_disappears_with_its_interfaces() {
    let t = tag();
    let mut c = Cleanup(vec![]);
    let (graph, _p) = probes().await;
    let ns = format!("{t}n");
    c.netns(&ns);
    ip(&format!("-n {ns} link add {t}a type veth peer name {t}b"));
    expect(
        &graph,
        &format!("G.V().Has('Name','{ns}','Type','netns').Count()"),
        json!(1),
    )
    .await;
    expect(
        &graph,
        &format!("G.V().Has('Name','{ns}','Type','netns').Out('Type','veth').Count()"),
        json!(2),
    )
    .await;
    expect(
        &graph,
        &format!("G.V().Has('Type','host').Out('Name','{ns}').Values('Path')"),
        json!([format!("/var/run/netns/{ns}")]),
    )
    .await;
    expect(
        &graph,
        &format!("G.V().Has('Name','{ns}').Out('Name','lo').Count()"),
        json!(1),
    )
    .await;
    ip(&format!("netns del {ns}"));
    expect(
        &graph,
        &format!("G.V().Has('Name','{ns}').Count()"),
        json!(0),
    )
    .await;
    expect(
        &graph,
        &format!("G.V().Has('Name',Regex('{t}.*')).Count()"),
        json!(0),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn veth_pairs_across_namespaces_have_exactly_one_layer2_edge() {
    let t = tag();
    let mut c = Cleanup(vec![]);
    let (graph, _p) = probes().await;
    let (n1, n2) = (format!("{t}x"), format!("{t}y"));
    c.netns(&n1);
    c.netns(&n2);
    // ns1 <-> ns2, created from the root namespace.
    ip(&format!(
        "link add {t}a netns {n1} type veth peer name {t}b netns {n2}"
    ));
    // root <-> ns1.
    c.0.push(format!("link del {t}r"));
    ip(&format!(
        "link add {t}r type veth peer name {t}p netns {n1}"
    ));
    for (ns, name) in [(&n1, "a"), (&n2, "b"), (&n1, "p")] {
        expect(
            &graph,
            &format!("G.V().Has('Name','{ns}','Type','netns').Out('Name','{t}{name}','Type','veth').Count()"),
            json!(1),
        )
        .await;
    }
    expect(
        &graph,
        &format!("G.V().Has('Type','host').Out('Name','{t}r','Type','veth').Count()"),
        json!(1),
    )
    .await;
    for (x, y) in [("a", "b"), ("r", "p")] {
        for (me, other) in [(x, y), (y, x)] {
            expect(
                &graph,
                &format!("G.V().Has('Name','{t}{me}').BothE().Has('RelationType','layer2','Type','veth').Count()"),
                json!(1),
            )
            .await;
            expect(
                &graph,
                &format!("G.V().Has('Name','{t}{me}').Both('Type','veth').Values('Name')"),
                json!([format!("{t}{other}")]),
            )
            .await;
        }
    }
    expect(
        &graph,
        &format!("G.V().Has('Name','{t}a').Values('LinkNetNsName')"),
        json!([n2]),
    )
    .await;
    expect(
        &graph,
        &format!("G.V().Has('Name','{t}b').Values('LinkNetNsName')"),
        json!([n1]),
    )
    .await;
    expect(
        &graph,
        &format!("G.V().Has('Name','{t}r').Values('LinkNetNsName')"),
        json!([n1]),
    )
    .await;
    // Parent is the end with the higher ifindex: the root end, indexes grow there.
    let parent = gremlin(
        &graph,
        &format!("G.V().Has('Name','{t}p').BothE().Has('Type','veth')"),
    );
    let r_id = one_id(&gremlin(&graph, &format!("G.V().Has('Name','{t}r')"))).unwrap();
    let r_index = gremlin(
        &graph,
        &format!("G.V().Has('Name','{t}r').Values('IfIndex')"),
    )[0]
    .as_i64()
    .unwrap();
    let p_index = gremlin(
        &graph,
        &format!("G.V().Has('Name','{t}p').Values('IfIndex')"),
    )[0]
    .as_i64()
    .unwrap();
    let parent_id = parent[0]["Parent"].as_str().unwrap();
    assert_eq!(parent_id == r_id, r_index > p_index, "{parent}");
    // The pair disappears with the namespace.
    ip(&format!("netns del {n2}"));
    expect(
        &graph,
        &format!("G.V().Has('Name','{t}a').BothE().Has('Type','veth').Count()"),
        json!(0),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rename_and_mac_change_keep_the_node() {
    let t = tag();
    let mut c = Cleanup(vec![]);
    let (graph, _p) = probes().await;
    let ns = format!("{t}n");
    c.netns(&ns);
    ip(&format!("-n {ns} link add {t}a type veth peer name {t}b"));
    let id = wait_for(&graph, &format!("G.V().Has('Name','{t}b')"), one_id).await;
    ip(&format!("-n {ns} link set {t}b name {t}c"));
    ip(&format!("-n {ns} link set {t}c address 00:00:00:00:00:aa"));
    let id2 = wait_for(
        &graph,
        &format!("G.V().Has('Name','{t}c','MAC','00:00:00:00:00:aa')"),
        one_id,
    )
    .await;
    assert_eq!(id, id2);
    expect(
        &graph,
        &format!("G.V().Has('Name','{t}b').Count()"),
        json!(0),
    )
    .await;
    // Still one veth edge for the pair.
    expect(
        &graph,
        &format!("G.V().Has('Name','{t}c').BothE().Has('Type','veth').Count()"),
        json!(1),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridge_membership_edge_follows_enslavement() {
    let t = tag();
    let mut c = Cleanup(vec![]);
    let (graph, _p) = probes().await;
    let ns = format!("{t}n");
    c.netns(&ns);
    ip(&format!("-n {ns} link add {t}br type bridge"));
    ip(&format!("-n {ns} link add {t}a type veth peer name {t}b"));
    ip(&format!("-n {ns} link set {t}a master {t}br"));
    let q = format!("G.V().Has('Type','bridge','Name','{t}br').Out('Name','{t}a').Count()");
    expect(&graph, &q, json!(1)).await;
    expect(
        &graph,
        &format!("G.V().Has('Name','{t}br').Values('Driver')"),
        json!(["bridge"]),
    )
    .await;
    ip(&format!("-n {ns} link set {t}a nomaster"));
    expect(&graph, &q, json!(0)).await;
    // The member itself stays, owned by its namespace.
    expect(
        &graph,
        &format!("G.V().Has('Name','{ns}').Out('Name','{t}a').Count()"),
        json!(1),
    )
    .await;
    ip(&format!("-n {ns} link set {t}a master {t}br"));
    expect(&graph, &q, json!(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vlan_on_a_veth_has_a_vlan_edge() {
    let t = tag();
    let mut c = Cleanup(vec![]);
    let (graph, _p) = probes().await;
    let ns = format!("{t}n");
    c.netns(&ns);
    ip(&format!("-n {ns} link add {t}a type veth peer name {t}b"));
    let out = Command::new("ip")
        .args(["-n", &ns, "link", "add", "link", &format!("{t}a")])
        .args(["name", &format!("{t}v"), "type", "vlan", "id", "10"])
        .output()
        .unwrap();
    if !out.status.success() {
        // Some kernels are built without 802.1Q; the registry's unit tests cover the edge.
        eprintln!(
            "vlan not supported here, skipping: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return;
    }
    expect(
        &graph,
        &format!(
            "G.V().Has('Name','{t}a').OutE().Has('RelationType','layer2','Type','vlan').Count()"
        ),
        json!(1),
    )
    .await;
    expect(
        &graph,
        &format!("G.V().Has('Name','{t}a').Out('Name','{t}v').ValueMap('Vlan','Type')"),
        json!([{"Vlan": 10, "Type": "vlan"}]),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn addresses_routes_and_neighbours_follow_the_kernel() {
    let t = tag();
    let mut c = Cleanup(vec![]);
    let (graph, _p) = probes().await;
    let ns = format!("{t}n");
    c.netns(&ns);
    ip(&format!("-n {ns} link add {t}a type veth peer name {t}b"));
    ip(&format!("-n {ns} link set {t}a up"));
    ip(&format!("-n {ns} link set {t}b up"));
    ip(&format!("-n {ns} addr add 124.65.91.42/24 dev {t}a"));
    let q = format!("G.V().Has('Name','{t}a').Values('IPV4')");
    expect(&graph, &q, json!([["124.65.91.42/24"]])).await;
    ip(&format!(
        "-n {ns} route add 124.65.92.0/24 dev {t}a table 2"
    ));
    wait_for(
        &graph,
        &format!("G.V().Has('Name','{t}a').Values('RoutingTables')"),
        |v| {
            v[0].as_array()?
                .iter()
                .any(|t| t["ID"] == json!(2))
                .then_some(())
        },
    )
    .await;
    ip(&format!(
        "-n {ns} neigh add 124.65.91.43 lladdr a6:d1:a0:51:03:49 dev {t}a"
    ));
    wait_for(
        &graph,
        &format!("G.V().Has('Name','{t}a').Values('Neighbors')"),
        |v| {
            v[0].as_array()?
                .iter()
                .any(|n| n["MAC"] == json!("a6:d1:a0:51:03:49"))
                .then_some(())
        },
    )
    .await;
    ip(&format!("-n {ns} addr del 124.65.91.42/24 dev {t}a"));
    expect(&graph, &q, Value::Null).await;
    // Traffic inside our namespace shows up in Metric (refreshed every second).
    ip(&format!("-n {ns} addr add 10.201.0.1/24 dev {t}a"));
    ip(&format!("-n {ns} link set lo up"));
    let _ = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns,
            "ping",
            "-c",
            "3",
            "-i",
            "0.2",
            "-W",
            "1",
            "127.0.0.1",
        ])
        .output();
    wait_for(
        &graph,
        &format!("G.V().Has('Name','{ns}').Out('Name','lo').Values('Metric')"),
        |v| (v[0]["TxPackets"].as_i64()? >= 3).then_some(()),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_deleted_while_being_created_leave_no_node() {
    let t = tag();
    let (graph, _p) = probes().await;
    let mut c = Cleanup(vec![]);
    for i in 0..20 {
        let ns = format!("{t}q{i}");
        c.0.push(format!("netns del {ns}"));
        ip(&format!("netns add {ns}"));
        if i % 2 == 0 {
            ip(&format!("netns del {ns}"));
        }
    }
    for i in (1..20).step_by(2) {
        ip(&format!("netns del {t}q{i}"));
    }
    let q = format!("G.V().Has('Type','netns','Name',Regex('{t}q.*')).Count()");
    expect(&graph, &q, json!(0)).await;
    // And it stays that way once every delayed check and scan has run.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(count(&graph, &q), 0);
    // No namespace held by a leftover process either.
    assert_eq!(
        count(
            &graph,
            "G.V().Has('Type','netns','Path',Regex('/proc/.*')).Has('Name',Regex('ip-.*')).Count()"
        ),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_add_latency() {
    let t = tag();
    let mut c = Cleanup(vec![]);
    let (graph, _p) = probes().await;
    let ns = format!("{t}n");
    c.netns(&ns);
    expect(
        &graph,
        &format!("G.V().Has('Name','{ns}').Out('Name','lo').Count()"),
        json!(1),
    )
    .await;
    let mut samples = Vec::new();
    for i in 0..10 {
        let name = format!("{t}l{i}");
        let mut events = graph.subscribe();
        let started = Instant::now();
        ip(&format!(
            "-n {ns} link add {name} type veth peer name {name}p"
        ));
        let seen = tokio::time::timeout(DEADLINE, async {
            loop {
                match events.recv().await {
                    Ok(ev) => {
                        if let GraphEvent::NodeAdded(n) = ev.as_ref() {
                            if n.metadata.get("Name") == Some(&json!(name)) {
                                return started.elapsed();
                            }
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(e) => panic!("{e}"),
                }
            }
        })
        .await
        .expect("node appeared");
        samples.push(seen);
    }
    samples.sort();
    println!(
        "ip link add -> node in graph (includes ip's own runtime): min {:?} median {:?} max {:?}",
        samples[0],
        samples[samples.len() / 2],
        samples[samples.len() - 1]
    );
    assert!(samples[samples.len() / 2] < Duration::from_secs(1));
}

/// Kills a child process on drop.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_held_only_by_a_process_comes_and_goes_with_it() {
    let (graph, _p) = probes().await;
    let child = Command::new("unshare")
        .args(["--net", "sleep", "30"])
        .spawn()
        .expect("unshare");
    let mut child = Child(child);
    // Named `<comm>-<pid>` when first seen: `unshare` or, once it exec'd, `sleep`.
    let path = format!("/proc/{}/ns/net", child.0.id());
    let q = format!("G.V().Has('Type','netns','Path','{path}').Count()");
    expect(&graph, &q, json!(1)).await;
    let name = gremlin(
        &graph,
        &format!("G.V().Has('Path','{path}').Values('Name')"),
    );
    let name = name[0].as_str().unwrap().to_owned();
    assert!(name.ends_with(&format!("-{}", child.0.id())), "{name}");
    expect(
        &graph,
        &format!("G.V().Has('Path','{path}').Out('Name','lo').Count()"),
        json!(1),
    )
    .await;
    let _ = child.0.kill();
    let _ = child.0.wait();
    expect(&graph, &q, json!(0)).await;
}

/// A bind mount of a namespace file made by a test, unmounted and removed when dropped.
struct Unmount(String);

impl Drop for Unmount {
    fn drop(&mut self) {
        // `ip netns` makes the directory a shared mount: there can be stacked copies.
        for _ in 0..4 {
            let _ = Command::new("umount")
                .arg(&self.0)
                .stderr(std::process::Stdio::null())
                .status();
        }
        let _ = std::fs::remove_file(&self.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_namespace_under_two_paths_is_one_node() {
    let t = tag();
    let mut c = Cleanup(vec![]);
    let (graph, _p) = probes().await;
    let ns = format!("{t}n");
    c.netns(&ns);
    let first = format!("/var/run/netns/{ns}");
    let second = format!("/var/run/netns/{t}m");
    std::fs::File::create(&second).unwrap();
    let alias = Unmount(second.clone());
    let ok = Command::new("mount")
        .args(["--bind", &first, &second])
        .status()
        .unwrap();
    assert!(ok.success());
    use std::os::unix::fs::MetadataExt;
    let inode = std::fs::metadata(&first).unwrap().ino();
    // Whichever path is seen first names the node.
    expect(
        &graph,
        &format!("G.V().Has('Type','netns','Inode',{inode}).Count()"),
        json!(1),
    )
    .await;
    // Give the second path time to be seen, then check there is still one node.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        count(
            &graph,
            &format!("G.V().Has('Type','netns','Inode',{inode}).Count()")
        ),
        1
    );
    // Removing one of the paths keeps the namespace; the probe's handle on it does not
    // keep the mount busy.
    let ok = Command::new("umount").arg(&second).status().unwrap();
    assert!(ok.success(), "umount {second} failed: mount pinned?");
    drop(alias);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        count(
            &graph,
            &format!("G.V().Has('Name','{ns}','Type','netns').Count()")
        ),
        1
    );
    ip(&format!("netns del {ns}"));
    expect(
        &graph,
        &format!("G.V().Has('Type','netns','Inode',{inode}).Count()"),
        json!(0),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_takes_the_name_of_the_path_that_remains() {
    let t = tag();
    let mut c = Cleanup(vec![]);
    let (graph, _p) = probes().await;
    let ns = format!("{t}r");
    c.netns(&ns);
    let first = format!("/var/run/netns/{ns}");
    let alias_name = format!("{t}s");
    let second = format!("/var/run/netns/{alias_name}");
    use std::os::unix::fs::MetadataExt;
    let inode = std::fs::metadata(&first).unwrap().ino();
    expect(
        &graph,
        &format!("G.V().Has('Type','netns','Name','{ns}').Count()"),
        json!(1),
    )
    .await;
    std::fs::File::create(&second).unwrap();
    let alias = Unmount(second.clone());
    let ok = Command::new("mount")
        .args(["--bind", &first, &second])
        .status()
        .unwrap();
    assert!(ok.success());
    tokio::time::sleep(Duration::from_millis(700)).await;
    // The path that named the node goes; the namespace lives on under the other one.
    ip(&format!("netns del {ns}"));
    expect(
        &graph,
        &format!("G.V().Has('Type','netns','Inode',{inode}).Values('Name')"),
        json!([alias_name]),
    )
    .await;
    drop(alias);
    expect(
        &graph,
        &format!("G.V().Has('Type','netns','Inode',{inode}).Count()"),
        json!(0),
    )
    .await;
}
