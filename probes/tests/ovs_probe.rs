//! The OVSDB probe against a real, private Open vSwitch (userspace datapath): one
//! ovsdb-server + ovs-vswitchd per test in its own run directory, unique bridge, port
//! and veth names per test, everything stopped and removed on drop.
//!
//! ovs-vswitchd runs in a network namespace of its own: the userspace datapath creates
//! a tap device named `ovs-netdev`, so a second vswitchd in the same namespace (another
//! test, or another OVS on the machine) fails with "failed to open datapath".
//!
//! Requires `ovsdb-server`, `ovs-vswitchd`, `ovs-vsctl` (package openvswitch-switch),
//! `ip` and root. Missing tools make the tests fail, never pass silently.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use topotap_probes::ovsdb;
use topotap_topology::{tid, Edge, Graph, Identifier, Metadata, Node, NodeIx, SharedGraph};

const HOST: &str = "ovs-test-host";
const DEADLINE: Duration = Duration::from_secs(5);

// ----- harness ------------------------------------------------------------------------

/// A short random tag for names (interface names are limited to 15 characters).
fn tag() -> String {
    let r = RandomState::new().build_hasher().finish();
    format!("{:05x}", r & 0xf_ffff)
}

fn require_tools() {
    for tool in [
        "ovsdb-server",
        "ovs-vswitchd",
        "ovs-vsctl",
        "ovsdb-tool",
        "ovs-appctl",
    ] {
        let found = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
            .unwrap_or(false)
            || Path::new("/usr/sbin").join(tool).is_file();
        assert!(
            found,
            "`{tool}` not found: install Open vSwitch (apt-get install openvswitch-switch \
             openvswitch-common) to run the OVS probe tests"
        );
    }
}

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A private Open vSwitch: database and daemons in a temporary run directory,
/// ovs-vswitchd (and the devices it makes) in network namespace `netns`.
struct Ovs {
    dir: PathBuf,
    netns: String,
}

impl Ovs {
    /// Creates the database and starts ovsdb-server and ovs-vswitchd.
    fn start() -> Ovs {
        require_tools();
        let t = tag();
        let dir = std::env::temp_dir().join(format!("topotap-ovs-{t}"));
        std::fs::create_dir_all(&dir).unwrap();
        let netns = format!("topotap-ovs-{t}");
        run(Command::new("ip").args(["netns", "add", &netns]));
        let ovs = Ovs { dir, netns };
        let schema = "/usr/share/openvswitch/vswitch.ovsschema";
        run(ovs
            .cmd("ovsdb-tool")
            .arg("create")
            .arg(ovs.path("conf.db"))
            .arg(schema));
        ovs.start_server(&["punix:db.sock"]);
        run(&mut ovs.vsctl_cmd(&["--no-wait", "init"]));
        run(ovs
            .cmd("ip")
            .args(["netns", "exec", &ovs.netns, "ovs-vswitchd"])
            .arg(format!("unix:{}", ovs.path("db.sock").display()))
            .arg(format!(
                "--pidfile={}",
                ovs.path("ovs-vswitchd.pid").display()
            ))
            .arg("--detach")
            .arg(format!(
                "--log-file={}",
                ovs.path("ovs-vswitchd.log").display()
            ))
            .arg(format!(
                "--unixctl={}",
                ovs.path("ovs-vswitchd.ctl").display()
            ))
            .arg("-vconsole:off"));
        ovs
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn address(&self) -> String {
        format!("unix:{}", self.path("db.sock").display())
    }

    /// A command with the OVS environment of this instance.
    fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        for var in ["OVS_RUNDIR", "OVS_LOGDIR", "OVS_DBDIR", "OVS_SYSCONFDIR"] {
            c.env(var, &self.dir);
        }
        c
    }

    /// Starts ovsdb-server on the existing database with the given remotes
    /// (`punix:NAME`, relative to the run directory).
    fn start_server(&self, remotes: &[&str]) {
        let mut c = self.cmd("ovsdb-server");
        c.arg(self.path("conf.db"));
        for r in remotes {
            let name = r.strip_prefix("punix:").expect("punix remote");
            c.arg(format!("--remote=punix:{}", self.path(name).display()));
        }
        run(c
            .arg(format!(
                "--pidfile={}",
                self.path("ovsdb-server.pid").display()
            ))
            .arg("--detach")
            .arg(format!(
                "--log-file={}",
                self.path("ovsdb-server.log").display()
            ))
            .arg(format!(
                "--unixctl={}",
                self.path("ovsdb-server.ctl").display()
            ))
            .arg("-vconsole:off"));
    }

    /// SIGKILLs ovsdb-server (a crash, not a clean exit).
    fn kill_server(&self) {
        if let Some(pid) = self.pid("ovsdb-server.pid") {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            for _ in 0..100 {
                if !Path::new(&format!("/proc/{pid}")).exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = std::fs::remove_file(self.path("ovsdb-server.pid"));
        let _ = std::fs::remove_file(self.path("db.sock"));
    }

    fn pid(&self, file: &str) -> Option<u32> {
        std::fs::read_to_string(self.path(file))
            .ok()
            .and_then(|s| s.trim().parse().ok())
    }

    fn vsctl_cmd(&self, args: &[&str]) -> Command {
        self.vsctl_cmd_on("db.sock", args)
    }

    fn vsctl_cmd_on(&self, socket: &str, args: &[&str]) -> Command {
        let mut c = self.cmd("ovs-vsctl");
        c.arg(format!("--db=unix:{}", self.path(socket).display()))
            .arg("--timeout=20")
            .args(args);
        c
    }

    /// `ovs-vsctl ARGS...` (shell-split on spaces).
    fn vsctl(&self, args: &str) -> String {
        let args: Vec<&str> = args.split_whitespace().collect();
        run(&mut self.vsctl_cmd(&args))
    }

    fn add_bridge(&self, name: &str) {
        self.vsctl(&format!(
            "add-br {name} -- set bridge {name} datapath_type=netdev"
        ));
    }
}

impl Drop for Ovs {
    fn drop(&mut self) {
        let _ = self
            .cmd("ovs-appctl")
            .arg("-t")
            .arg(self.path("ovs-vswitchd.ctl"))
            .args(["exit", "--cleanup"])
            .output();
        let _ = self
            .cmd("ovs-appctl")
            .arg("-t")
            .arg(self.path("ovsdb-server.ctl"))
            .arg("exit")
            .output();
        for file in ["ovs-vswitchd.pid", "ovsdb-server.pid"] {
            if let Some(pid) = self.pid(file) {
                if Path::new(&format!("/proc/{pid}")).exists() {
                    let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
                }
            }
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.netns])
            .output();
        if std::thread::panicking() {
            // Keep the logs of a failed test.
            let _ = std::fs::remove_file(self.path("conf.db"));
            eprintln!("OVS logs kept in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A veth pair in the namespace of an [`Ovs`]'s vswitchd, deleted on drop.
struct Veth {
    name: String,
    netns: String,
    ifindex: i64,
    mac: String,
}

impl Veth {
    fn new(ovs: &Ovs, name: &str, peer: &str) -> Veth {
        let ip = |args: &[&str]| run(Command::new("ip").args(["-n", &ovs.netns]).args(args));
        ip(&["link", "add", name, "type", "veth", "peer", "name", peer]);
        ip(&["link", "set", name, "up"]);
        let shown: Value = serde_json::from_str(&ip(&["-j", "link", "show", "dev", name])).unwrap();
        Veth {
            name: name.to_owned(),
            netns: ovs.netns.clone(),
            ifindex: shown[0]["ifindex"].as_i64().unwrap(),
            mac: shown[0]["address"].as_str().unwrap().to_owned(),
        }
    }

    fn ifindex(&self) -> i64 {
        self.ifindex
    }

    fn mac(&self) -> String {
        self.mac.clone()
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["-n", &self.netns, "link", "del", &self.name])
            .output();
    }
}

/// A graph with a host node, as the host probe makes it.
fn graph_with_host() -> (SharedGraph, Identifier) {
    let graph = SharedGraph::new(Graph::new(), HOST);
    let host = Identifier::random();
    let md = json!({"Name": HOST, "Type": "host", "TID": tid::host(HOST).to_string()});
    graph
        .write()
        .add_node(Node::new(
            host.clone(),
            md.as_object().cloned().unwrap(),
            HOST,
            "agent.ovs-test-host",
        ))
        .unwrap();
    (graph, host)
}

fn md(v: Value) -> Metadata {
    v.as_object().cloned().unwrap()
}

/// What the netlink probe does for a link: adopt an OVS-made node if there is one
/// (`find_adoptable_interface_node`), else create its own; then own it from the host.
fn netlink_sees(graph: &SharedGraph, host: &Identifier, veth: &Veth) -> Identifier {
    let mut g = graph.write();
    let keys = json!({"Name": veth.name, "Type": "veth", "Driver": "veth",
                      "IfIndex": veth.ifindex(), "MAC": veth.mac(), "MTU": 1500});
    let id = match ovsdb::find_adoptable_interface_node(
        &g,
        &veth.name,
        Some(veth.ifindex()),
        Some(&veth.mac()),
    ) {
        Some(ix) => {
            let id = g.node(ix).id().clone();
            g.update_node(&id, |m| {
                for (k, v) in md(keys.clone()) {
                    m.insert(k, v);
                }
            })
            .unwrap();
            id
        }
        None => {
            let id = Identifier::random();
            g.add_node(Node::new(id.clone(), md(keys), HOST, "agent.ovs-test-host"))
                .unwrap();
            id
        }
    };
    g.add_edge(Edge::new(
        host.clone(),
        id.clone(),
        md(json!({"RelationType": "ownership"})),
        HOST,
        "agent.ovs-test-host",
    ))
    .unwrap();
    id
}

// ----- graph queries ----------------------------------------------------------------------

fn s<'a>(m: &'a Metadata, k: &str) -> Option<&'a str> {
    m.get(k).and_then(Value::as_str)
}

fn nodes_named(g: &Graph, name: &str) -> Vec<NodeIx> {
    g.nodes()
        .filter(|n| s(g.node(*n).metadata(), "Name") == Some(name))
        .collect()
}

/// Interface nodes (not bridges/ports) named `name`.
fn interfaces_named(g: &Graph, name: &str) -> Vec<NodeIx> {
    nodes_named(g, name)
        .into_iter()
        .filter(|n| {
            !matches!(
                s(g.node(*n).metadata(), "Type"),
                Some("ovsbridge" | "ovsport")
            )
        })
        .collect()
}

fn one_typed(g: &Graph, name: &str, ty: &str) -> Option<NodeIx> {
    let found: Vec<_> = nodes_named(g, name)
        .into_iter()
        .filter(|n| s(g.node(*n).metadata(), "Type") == Some(ty))
        .collect();
    assert!(found.len() <= 1, "several {ty} nodes named {name}");
    found.first().copied()
}

/// Sorted `RelationType[/Type]` of the edges parent -> child.
fn links(g: &Graph, parent: NodeIx, child: NodeIx) -> Vec<String> {
    let mut out: Vec<String> = g
        .out_edges(parent)
        .filter(|e| g.endpoints(*e).1 == child)
        .map(|e| {
            let m = g.edge(e).metadata();
            match s(m, "Type") {
                Some(t) => format!("{}/{t}", s(m, "RelationType").unwrap_or("")),
                None => s(m, "RelationType").unwrap_or("").to_owned(),
            }
        })
        .collect();
    out.sort();
    out
}

fn owner_types(g: &Graph, ix: NodeIx) -> Vec<String> {
    g.in_edges(ix)
        .filter(|e| s(g.edge(*e).metadata(), "RelationType") == Some("ownership"))
        .map(|e| {
            s(g.edge(e).parent().metadata(), "Type")
                .unwrap_or("")
                .to_owned()
        })
        .collect()
}

fn dump(g: &Graph) -> String {
    let (nodes, edges) = g.snapshot();
    let mut out = String::new();
    for n in nodes {
        out += &format!("node {} {}\n", n.id, Value::Object(n.metadata));
    }
    for e in edges {
        out += &format!(
            "edge {} -> {} {}\n",
            e.parent,
            e.child,
            Value::Object(e.metadata)
        );
    }
    out
}

/// Polls the graph until `check` returns `Ok`, failing with its last complaint and a
/// dump of the graph after [`DEADLINE`].
async fn eventually<T>(
    graph: &SharedGraph,
    what: &str,
    check: impl Fn(&Graph) -> Result<T, String>,
) -> T {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let res = check(&graph.read());
        match res {
            Ok(v) => return v,
            Err(why) if tokio::time::Instant::now() >= deadline => {
                panic!("{what}: {why}\n{}", dump(&graph.read()))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// Checks bridge -> port -> interface for `port` on `bridge`; returns the interface.
fn chain(g: &Graph, bridge: &str, port: &str) -> Result<NodeIx, String> {
    let br = one_typed(g, bridge, "ovsbridge").ok_or("no bridge node")?;
    let p = one_typed(g, port, "ovsport").ok_or("no port node")?;
    if links(g, br, p) != ["layer2", "ownership"] {
        return Err(format!("bridge->port edges {:?}", links(g, br, p)));
    }
    let intfs = interfaces_named(g, port);
    let [intf] = intfs.as_slice() else {
        return Err(format!("{} interface nodes named {port}", intfs.len()));
    };
    if links(g, p, *intf) != ["layer2"] {
        return Err(format!("port->interface edges {:?}", links(g, p, *intf)));
    }
    Ok(*intf)
}

// ----- tests -------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_port_gives_bridge_port_interface_chain() {
    init_logs();
    let t = tag();
    let (br, port) = (format!("tb{t}"), format!("ti{t}"));
    let ovs = Ovs::start();
    ovs.add_bridge(&br);
    ovs.vsctl(&format!(
        "add-port {br} {port} -- set interface {port} type=internal"
    ));

    let (graph, host) = graph_with_host();
    let (task, status) = ovsdb::spawn_with_status(graph.clone(), host.clone(), ovs.address());

    eventually(&graph, "internal port chain", |g| {
        let host_ix = g.find_node(&host).unwrap();
        let b = one_typed(g, &br, "ovsbridge").ok_or("no bridge")?;
        if links(g, host_ix, b) != ["ownership"] {
            return Err("host does not own the bridge".into());
        }
        let m = g.node(b).metadata();
        if m["TID"]
            != tid::ovs(&tid::host(HOST), s(m, "UUID").unwrap_or(""), "ovsbridge").to_string()
        {
            return Err("bridge TID".into());
        }
        if m["Ovs"]["DatapathType"] != "netdev" {
            return Err("datapath type".into());
        }
        let intf = chain(g, &br, &port)?;
        let im = g.node(intf).metadata();
        if s(im, "Type") != Some("internal") || !im.contains_key("UUID") {
            return Err(format!("interface metadata {im:?}"));
        }
        if im.get("OfPort").and_then(Value::as_i64).unwrap_or(0) <= 0 {
            return Err("no OfPort yet".into());
        }
        if owner_types(g, intf) != ["ovsbridge"] {
            return Err(format!("owners {:?}", owner_types(g, intf)));
        }
        // The bridge's own internal port.
        chain(g, &br, &br)?;
        if !g.node(host_ix).metadata().contains_key("Ovs") {
            return Err("no Ovs facts on the host".into());
        }
        Ok(())
    })
    .await;
    let st = status.lock().clone();
    assert!(st.connected && st.sessions == 1, "{st:?}");
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn veth_port_is_one_node_whichever_probe_reports_first() {
    init_logs();
    let t = tag();
    let br = format!("tb{t}");
    // a: netlink reports first; b: OVS reports first, netlink adopts later.
    let ovs = Ovs::start();
    let va = Veth::new(&ovs, &format!("tva{t}"), &format!("tvA{t}"));
    let vb = Veth::new(&ovs, &format!("tvb{t}"), &format!("tvB{t}"));
    ovs.add_bridge(&br);

    let (graph, host) = graph_with_host();
    let a_node = netlink_sees(&graph, &host, &va);
    let task = ovsdb::spawn(graph.clone(), host.clone(), ovs.address());
    ovs.vsctl(&format!("add-port {br} {}", va.name));
    ovs.vsctl(&format!("add-port {br} {}", vb.name));

    let a_ix = eventually(&graph, "netlink-first veth merged", |g| {
        let intf = chain(g, &br, &va.name)?;
        let m = g.node(intf).metadata();
        if g.node(intf).id() != &a_node {
            return Err("not the netlink node".into());
        }
        if m.get("OfPort").is_none() || m.get("UUID").is_none() {
            return Err(format!("no OVS keys yet: {m:?}"));
        }
        Ok(intf)
    })
    .await;
    {
        let g = graph.read();
        let m = g.node(a_ix).metadata();
        assert_eq!(s(m, "Type"), Some("veth"));
        assert_eq!(m["IfIndex"], va.ifindex());
        assert_eq!(m["MTU"], 1500);
        assert_eq!(owner_types(&g, a_ix), ["host"]);
    }

    let b_ovs = eventually(&graph, "OVS-first veth node", |g| {
        let intf = chain(g, &br, &vb.name)?;
        let m = g.node(intf).metadata();
        if m.get("IfIndex") != Some(&json!(vb.ifindex())) {
            return Err("no ifindex from OVS yet".into());
        }
        if owner_types(g, intf) != ["ovsbridge"] {
            return Err(format!("owners {:?}", owner_types(g, intf)));
        }
        Ok(g.node(intf).id().clone())
    })
    .await;
    let b_node = netlink_sees(&graph, &host, &vb);
    assert_eq!(b_node, b_ovs, "netlink must adopt the OVS node");
    eventually(&graph, "bridge gives up ownership to the host", |g| {
        let intf = chain(g, &br, &vb.name)?;
        match owner_types(g, intf).as_slice() {
            [h] if h == "host" => Ok(()),
            other => Err(format!("owners {other:?}")),
        }
    })
    .await;
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patch_ports_give_one_patch_edge() {
    init_logs();
    let t = tag();
    let (b1, b2, pa, pb) = (
        format!("tb{t}"),
        format!("tc{t}"),
        format!("tpa{t}"),
        format!("tpb{t}"),
    );
    let ovs = Ovs::start();
    ovs.add_bridge(&b1);
    ovs.add_bridge(&b2);
    ovs.vsctl(&format!(
        "add-port {b1} {pa} -- set interface {pa} type=patch options:peer={pb} \
         -- add-port {b2} {pb} -- set interface {pb} type=patch options:peer={pa}"
    ));
    let (graph, host) = graph_with_host();
    let task = ovsdb::spawn(graph.clone(), host, ovs.address());
    eventually(&graph, "patch edge", |g| {
        let a = chain(g, &b1, &pa)?;
        let b = chain(g, &b2, &pb)?;
        let patch: Vec<String> = [links(g, a, b), links(g, b, a)].concat();
        if patch != ["layer2/patch"] {
            return Err(format!("patch edges {patch:?}"));
        }
        for (ix, bridge) in [(a, &b1), (b, &b2)] {
            let owner = g
                .in_edges(ix)
                .find(|e| s(g.edge(*e).metadata(), "RelationType") == Some("ownership"));
            let owner = owner.map(|e| {
                s(g.edge(e).parent().metadata(), "Name")
                    .unwrap_or("")
                    .to_owned()
            });
            if owner.as_deref() != Some(bridge.as_str()) {
                return Err(format!("patch interface owned by {owner:?}"));
            }
            if s(g.node(ix).metadata(), "Type") != Some("patch") {
                return Err("type".into());
            }
        }
        Ok(())
    })
    .await;
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_port_removes_its_nodes_and_edges() {
    init_logs();
    let t = tag();
    let (br, port) = (format!("tb{t}"), format!("td{t}"));
    let ovs = Ovs::start();
    ovs.add_bridge(&br);
    let (graph, host) = graph_with_host();
    let task = ovsdb::spawn(graph.clone(), host, ovs.address());
    let counts = eventually(&graph, "bridge alone", |g| {
        chain(g, &br, &br)?;
        Ok((g.node_count(), g.edge_count()))
    })
    .await;
    ovs.vsctl(&format!(
        "add-port {br} {port} -- set interface {port} type=internal"
    ));
    eventually(&graph, "port added", |g| chain(g, &br, &port).map(|_| ())).await;
    ovs.vsctl(&format!("del-port {br} {port}"));
    eventually(&graph, "port removed", |g| {
        if !nodes_named(g, &port).is_empty() {
            return Err("nodes left".into());
        }
        if (g.node_count(), g.edge_count()) != counts {
            return Err(format!(
                "{:?} elements, expected {counts:?}",
                (g.node_count(), g.edge_count())
            ));
        }
        Ok(())
    })
    .await;
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_restart_reconnects_and_reconciles() {
    init_logs();
    let t = tag();
    let (br, keep, gone, new) = (
        format!("tb{t}"),
        format!("tk{t}"),
        format!("tg{t}"),
        format!("tn{t}"),
    );
    let ovs = Ovs::start();
    ovs.add_bridge(&br);
    for p in [&keep, &gone] {
        ovs.vsctl(&format!(
            "add-port {br} {p} -- set interface {p} type=internal"
        ));
    }
    let (graph, host) = graph_with_host();
    let (task, status) = ovsdb::spawn_with_status(graph.clone(), host, ovs.address());
    let (br_id, keep_id) = eventually(&graph, "initial state", |g| {
        chain(g, &br, &gone)?;
        let k = chain(g, &br, &keep)?;
        let b = one_typed(g, &br, "ovsbridge").ok_or("bridge")?;
        Ok((g.node(b).id().clone(), g.node(k).id().clone()))
    })
    .await;

    // Crash the server; change the database through a socket the probe does not know,
    // then let the server listen on the usual socket again.
    ovs.kill_server();
    eventually(&graph, "probe notices", |_| {
        if status.lock().connected {
            Err("still connected".into())
        } else {
            Ok(())
        }
    })
    .await;
    ovs.start_server(&["punix:side.sock"]);
    run(&mut ovs.vsctl_cmd_on(
        "side.sock",
        &[
            "--no-wait",
            "del-port",
            &br,
            &gone,
            "--",
            "add-port",
            &br,
            &new,
            "--",
            "set",
            "interface",
            &new,
            "type=internal",
        ],
    ));
    run(ovs
        .cmd("ovs-appctl")
        .arg("-t")
        .arg(ovs.path("ovsdb-server.ctl"))
        .arg("ovsdb-server/add-remote")
        .arg(format!("punix:{}", ovs.path("db.sock").display())));

    eventually(&graph, "reconciled after restart", |g| {
        chain(g, &br, &new)?;
        if !nodes_named(g, &gone).is_empty() {
            return Err("deleted port still present".into());
        }
        let k = chain(g, &br, &keep)?;
        let b = one_typed(g, &br, "ovsbridge").ok_or("bridge")?;
        if g.node(b).id() != &br_id || g.node(k).id() != &keep_id {
            return Err("nodes were re-created".into());
        }
        Ok(())
    })
    .await;
    let st = status.lock().clone();
    assert!(st.connected && st.sessions >= 2, "{st:?}");
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_waits_for_a_server_that_is_not_there_yet() {
    init_logs();
    require_tools();
    let t = tag();
    let dir = std::env::temp_dir().join(format!("topotap-ovs-absent-{t}"));
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("db.sock");
    let (graph, host) = graph_with_host();
    let (task, status) =
        ovsdb::spawn_with_status(graph.clone(), host, format!("unix:{}", sock.display()));
    tokio::time::sleep(Duration::from_millis(700)).await;
    {
        let st = status.lock().clone();
        assert!(!st.connected, "{st:?}");
        assert!(
            st.last_error.as_deref().unwrap_or("").contains("connect"),
            "{st:?}"
        );
    }
    assert!(!task.is_finished());
    let _ = std::fs::remove_dir_all(&dir);
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_the_socket_drops_the_connection_and_retries() {
    init_logs();
    let dir = std::env::temp_dir().join(format!("topotap-ovs-garbage-{}", tag()));
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("db.sock");
    let listener = tokio::net::UnixListener::bind(&sock).unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    let server = tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            let n = counter.fetch_add(1, Ordering::SeqCst);
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf).await;
            // Alternate a truncated value and a value that can never parse.
            let garbage: [&[u8]; 2] = [b"{\"bad", b"{\"id\":1,}}"];
            let garbage = garbage[n % 2];
            let _ = conn.write_all(garbage).await;
            drop(conn);
        }
    });
    let (graph, host) = graph_with_host();
    let nodes = graph.read().node_count();
    let (task, status) =
        ovsdb::spawn_with_status(graph.clone(), host, format!("unix:{}", sock.display()));
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while accepted.load(Ordering::SeqCst) < 4 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "probe stopped retrying after {} connections",
            accepted.load(Ordering::SeqCst)
        );
        assert!(!task.is_finished(), "probe task ended");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!task.is_finished(), "probe task ended");
    let st = status.lock().clone();
    assert!(!st.connected && st.last_error.is_some(), "{st:?}");
    assert_eq!(graph.read().node_count(), nodes);
    task.abort();
    server.abort();
    let _ = std::fs::remove_dir_all(&dir);
}

/// With the real netlink probe (`topotap_probes::start` watching the namespace where
/// vswitchd runs): every OVS interface is one node, owned by that namespace, carrying
/// both netlink and OVS keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_netlink_probe_each_interface_is_one_node() {
    init_logs();
    let t = tag();
    let (br, internal) = (format!("tb{t}"), format!("ti{t}"));
    let ovs = Ovs::start();
    let veth = Veth::new(&ovs, &format!("tv{t}"), &format!("tw{t}"));
    let graph = SharedGraph::new(Graph::new(), HOST);
    let config = topotap_probes::ProbesConfig {
        host_id: HOST.to_owned(),
        netns_paths: vec![PathBuf::from("/var/run/netns")],
        proc_scan_interval: Duration::from_millis(500),
        ovsdb: Some(ovs.address()),
        ..topotap_probes::ProbesConfig::default()
    };
    let probes = topotap_probes::start(graph.clone(), config).await.unwrap();
    ovs.add_bridge(&br);
    ovs.vsctl(&format!("add-port {br} {}", veth.name));
    ovs.vsctl(&format!(
        "add-port {br} {internal} -- set interface {internal} type=internal"
    ));
    let ns_name = ovs.netns.clone();
    eventually(&graph, "merged interface nodes", |g| {
        for (name, ty) in [
            (veth.name.as_str(), "veth"),
            (internal.as_str(), "internal"),
        ] {
            let intf = chain(g, &br, name)?;
            let m = g.node(intf).metadata();
            if s(m, "Type") != Some(ty) || !m.contains_key("UUID") || !m.contains_key("IfIndex") {
                return Err(format!("{name}: {m:?}"));
            }
            if !m.contains_key("State") {
                return Err(format!("{name}: no netlink keys yet"));
            }
            if name == veth.name && m.get("IfIndex") != Some(&json!(veth.ifindex())) {
                return Err(format!("{name}: IfIndex {:?}", m.get("IfIndex")));
            }
            let owners: Vec<String> = g
                .in_edges(intf)
                .filter(|e| s(g.edge(*e).metadata(), "RelationType") == Some("ownership"))
                .map(|e| {
                    s(g.edge(e).parent().metadata(), "Name")
                        .unwrap_or("")
                        .to_owned()
                })
                .collect();
            if owners != [ns_name.clone()] {
                return Err(format!("{name} owned by {owners:?}"));
            }
        }
        Ok(())
    })
    .await;
    probes.shutdown().await;
}

// ----- internal ports moved between namespaces ----------------------------------------

/// A network namespace of the test's own, deleted on drop.
struct Netns(String);

impl Netns {
    fn new(name: String) -> Netns {
        run(Command::new("ip").args(["netns", "add", &name]));
        Netns(name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

/// `ip -n NS link set DEV netns TO` then `ip -n TO link set DEV up`.
fn move_link(from: &str, dev: &str, to: &str) {
    run(Command::new("ip").args(["-n", from, "link", "set", dev, "netns", to]));
    run(Command::new("ip").args(["-n", to, "link", "set", dev, "up"]));
}

/// The ifindex of `dev` in namespace `ns`.
fn ifindex_in(ns: &str, dev: &str) -> i64 {
    let shown: Value = serde_json::from_str(&run(
        Command::new("ip").args(["-n", ns, "-j", "link", "show", "dev", dev])
    ))
    .unwrap();
    shown[0]["ifindex"].as_i64().unwrap()
}

/// Names of the `ownership` parents of a node.
fn owner_names(g: &Graph, ix: NodeIx) -> Vec<String> {
    g.in_edges(ix)
        .filter(|e| s(g.edge(*e).metadata(), "RelationType") == Some("ownership"))
        .map(|e| {
            s(g.edge(e).parent().metadata(), "Name")
                .unwrap_or("")
                .to_owned()
        })
        .collect()
}

/// The internal port `port` of `bridge` is one node, owned by namespace `ns` only, with
/// the OVS keys and the netlink keys of its current link there; returns its ID.
fn internal_port_in(g: &Graph, bridge: &str, port: &str, ns: &str) -> Result<Identifier, String> {
    let intf = chain(g, bridge, port)?;
    let m = g.node(intf).metadata();
    if owner_names(g, intf) != [ns] {
        return Err(format!("owned by {:?}, want [{ns}]", owner_names(g, intf)));
    }
    if s(m, "Type") != Some("internal") || !m.contains_key("UUID") || !m.contains_key("OfPort") {
        return Err(format!("OVS keys: {m:?}"));
    }
    if m.get("IfIndex") != Some(&json!(ifindex_in(ns, port))) || !m.contains_key("State") {
        return Err(format!("netlink keys of the link in {ns}: {m:?}"));
    }
    Ok(g.node(intf).id().clone())
}

fn probes_config(ovs: Option<&Ovs>) -> topotap_probes::ProbesConfig {
    topotap_probes::ProbesConfig {
        host_id: HOST.to_owned(),
        netns_paths: vec![PathBuf::from("/var/run/netns")],
        proc_scan_interval: Duration::from_millis(500),
        ovsdb: ovs.map(Ovs::address),
        ..topotap_probes::ProbesConfig::default()
    }
}

/// Skydive's `TestNameSpaceOVSInterface`, repeated: an internal port (a tap of the
/// userspace datapath) moved into a namespace and back stays one node with one ID,
/// owned by the namespace it is in. The first rounds wait for the graph between moves;
/// the next ones move while the graph is held locked (so that both namespaces' probes
/// and the OVS probe race for it) or back and forth without waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn internal_port_moved_between_namespaces_keeps_one_node() {
    init_logs();
    let t = tag();
    let (br, port) = (format!("tb{t}"), format!("ti{t}"));
    let ovs = Ovs::start();
    let ns = Netns::new(format!("topotap-mv-{t}"));
    let graph = SharedGraph::new(Graph::new(), HOST);
    let probes = topotap_probes::start(graph.clone(), probes_config(Some(&ovs)))
        .await
        .unwrap();
    ovs.add_bridge(&br);
    ovs.vsctl(&format!(
        "add-port {br} {port} -- set interface {port} type=internal"
    ));
    let home = ovs.netns.clone();
    let id = eventually(&graph, "internal port in vswitchd's namespace", |g| {
        internal_port_in(g, &br, &port, &home)
    })
    .await;

    for round in 0..3 {
        move_link(&home, &port, &ns.0);
        let got = eventually(&graph, &format!("round {round}: moved in"), |g| {
            internal_port_in(g, &br, &port, &ns.0)
        })
        .await;
        assert_eq!(got, id, "round {round}: node re-created on the move in");
        move_link(&ns.0, &port, &home);
        let got = eventually(&graph, &format!("round {round}: moved back"), |g| {
            internal_port_in(g, &br, &port, &home)
        })
        .await;
        assert_eq!(got, id, "round {round}: node re-created on the move back");
    }

    for round in 0..3 {
        {
            let _held = graph.write();
            move_link(&home, &port, &ns.0);
            std::thread::sleep(Duration::from_millis(200));
        }
        let got = eventually(&graph, &format!("locked round {round}: moved in"), |g| {
            internal_port_in(g, &br, &port, &ns.0)
        })
        .await;
        assert_eq!(got, id, "locked round {round}: moved in");
        {
            let _held = graph.write();
            move_link(&ns.0, &port, &home);
            std::thread::sleep(Duration::from_millis(200));
        }
        let got = eventually(&graph, &format!("locked round {round}: moved back"), |g| {
            internal_port_in(g, &br, &port, &home)
        })
        .await;
        assert_eq!(got, id, "locked round {round}: moved back");
    }

    for _ in 0..5 {
        move_link(&home, &port, &ns.0);
        move_link(&ns.0, &port, &home);
    }
    move_link(&home, &port, &ns.0);
    let got = eventually(&graph, "after quick moves", |g| {
        internal_port_in(g, &br, &port, &ns.0)
    })
    .await;
    assert_eq!(got, id, "after quick moves");
    probes.shutdown().await;
}

/// The OVS probe starts only once the internal port is in another namespace, where the
/// netlink probe already made its node and vswitchd reports no ifindex or MAC for it:
/// the OVS probe merges into that node, which then keeps its ID across moves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ovs_probe_started_after_the_move_merges_into_the_netlink_node() {
    init_logs();
    let t = tag();
    let (br, port) = (format!("tb{t}"), format!("ti{t}"));
    let ovs = Ovs::start();
    let ns = Netns::new(format!("topotap-mv-{t}"));
    ovs.add_bridge(&br);
    ovs.vsctl(&format!(
        "add-port {br} {port} -- set interface {port} type=internal"
    ));
    let graph = SharedGraph::new(Graph::new(), HOST);
    let probes = topotap_probes::start(graph.clone(), probes_config(None))
        .await
        .unwrap();
    let home = ovs.netns.clone();
    move_link(&home, &port, &ns.0);
    let netlink_id = eventually(&graph, "netlink node in the namespace", |g| {
        let found = interfaces_named(g, &port);
        let [ix] = found.as_slice() else {
            return Err(format!("{} nodes", found.len()));
        };
        if owner_names(g, *ix) != [ns.0.clone()]
            || s(g.node(*ix).metadata(), "Type") != Some("tuntap")
        {
            return Err(format!("{:?}", g.node(*ix).metadata()));
        }
        Ok(g.node(*ix).id().clone())
    })
    .await;

    let task = ovsdb::spawn(graph.clone(), probes.host_node_id().clone(), ovs.address());
    let id = eventually(&graph, "OVS facts merged into the netlink node", |g| {
        internal_port_in(g, &br, &port, &ns.0)
    })
    .await;
    assert_eq!(id, netlink_id);
    for round in 0..2 {
        move_link(&ns.0, &port, &home);
        let got = eventually(&graph, &format!("round {round}: moved back"), |g| {
            internal_port_in(g, &br, &port, &home)
        })
        .await;
        assert_eq!(got, id, "round {round}: moved back");
        move_link(&home, &port, &ns.0);
        let got = eventually(&graph, &format!("round {round}: moved in"), |g| {
            internal_port_in(g, &br, &port, &ns.0)
        })
        .await;
        assert_eq!(got, id, "round {round}: moved in");
    }
    task.abort();
    probes.shutdown().await;
}
