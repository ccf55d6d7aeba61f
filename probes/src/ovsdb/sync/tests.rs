use serde_json::json;
use topotap_topology::{Edge, Graph, GraphEvent, Identifier, Metadata, Node, NodeIx};

use super::Reconciler;
use crate::ovsdb::merge;
use crate::ovsdb::rows::tests::db_after;
use crate::ovsdb::rows::Database;

const HOST: &str = "h1";

fn md(v: serde_json::Value) -> Metadata {
    v.as_object().cloned().unwrap()
}

fn graph_with_host() -> (Graph, Identifier) {
    let mut g = Graph::new();
    let host = Identifier::from("host-node");
    let meta = md(json!({"Name": HOST, "Type": "host",
                         "TID": topotap_topology::tid::host(HOST).to_string()}));
    g.add_node(Node::new(host.clone(), meta, HOST, "agent.h1"))
        .unwrap();
    (g, host)
}

/// A node as the netlink probe makes it, owned by `owner`.
fn netlink_node(g: &mut Graph, owner: &Identifier, meta: serde_json::Value) -> Identifier {
    let id = Identifier::random();
    g.add_node(Node::new(id.clone(), md(meta), HOST, "agent.h1"))
        .unwrap();
    own(g, owner, &id);
    id
}

fn own(g: &mut Graph, parent: &Identifier, child: &Identifier) {
    g.add_edge(Edge::new(
        parent.clone(),
        child.clone(),
        md(json!({"RelationType": "ownership"})),
        HOST,
        "agent.h1",
    ))
    .unwrap();
}

fn named(g: &Graph, name: &str) -> Vec<NodeIx> {
    g.nodes()
        .filter(|n| g.node(*n).metadata().get("Name") == Some(&json!(name)))
        .collect()
}

fn typed(g: &Graph, name: &str, ty: &str) -> NodeIx {
    let found: Vec<_> = named(g, name)
        .into_iter()
        .filter(|n| g.node(*n).metadata().get("Type") == Some(&json!(ty)))
        .collect();
    assert_eq!(found.len(), 1, "{name} {ty}: {found:?}");
    found[0]
}

/// `(relation, Type)` of the edges parent -> child.
fn links(g: &Graph, parent: NodeIx, child: NodeIx) -> Vec<(String, Option<String>)> {
    let mut out: Vec<_> = g
        .out_edges(parent)
        .filter(|e| g.endpoints(*e).1 == child)
        .map(|e| {
            let m = g.edge(e).metadata();
            (
                m["RelationType"].as_str().unwrap().to_owned(),
                m.get("Type").and_then(|t| t.as_str()).map(str::to_owned),
            )
        })
        .collect();
    out.sort();
    out
}

fn rel(r: &str) -> (String, Option<String>) {
    (r.to_owned(), None)
}

fn owners(g: &Graph, ix: NodeIx) -> Vec<String> {
    g.in_edges(ix)
        .filter(|e| g.edge(*e).metadata()["RelationType"] == "ownership")
        .map(|e| {
            g.edge(e).parent().metadata()["Type"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

fn run(g: &mut Graph, r: &mut Reconciler, db: &Database) {
    r.reconcile(g, db);
}

#[test]
fn initial_reply_builds_bridge_port_interface() {
    let (mut g, host) = graph_with_host();
    let mut r = Reconciler::new(host.clone(), HOST);
    run(&mut g, &mut r, &db_after(0));

    let host_ix = g.find_node(&host).unwrap();
    let br = typed(&g, "capbr0", "ovsbridge");
    assert_eq!(links(&g, host_ix, br), vec![rel("ownership")]);
    let port = typed(&g, "capv1h", "ovsport");
    assert_eq!(links(&g, br, port), vec![rel("layer2"), rel("ownership")]);
    assert_eq!(g.node(port).metadata()["Vlans"], 42);

    // No netlink node: the veth is an OVS-made node owned by the bridge.
    let intfs: Vec<_> = named(&g, "capv1h")
        .into_iter()
        .filter(|n| n != &port)
        .collect();
    assert_eq!(intfs.len(), 1);
    let intf = intfs[0];
    let m = g.node(intf).metadata();
    assert_eq!(m["UUID"], "7453cc1a-ac59-40d5-b516-e432a2f019c3");
    assert_eq!(m["Driver"], "veth");
    assert_eq!(m["MAC"], "b6:16:98:2f:34:6a");
    assert_eq!(m["IfIndex"], 8);
    assert_eq!(m["OfPort"], 1);
    assert!(m.get("Type").is_none());
    assert!(m.contains_key("TID"));
    assert_eq!(links(&g, port, intf), vec![rel("layer2")]);
    assert_eq!(links(&g, br, intf), vec![rel("ownership")]);

    let internal = typed(&g, "capbr0", "internal");
    assert_eq!(g.node(internal).metadata()["Driver"], "tun");
    assert_eq!(owners(&g, internal), vec!["ovsbridge"]);

    assert_eq!(
        g.node(host_ix).metadata()["Ovs"],
        json!({"OtherConfig": {}})
    );
    // host(1) + bridge + 2 ports + 2 interfaces
    assert_eq!(g.node_count(), 6);
}

#[test]
fn reconcile_is_idempotent_and_silent_when_nothing_changed() {
    let (mut g, host) = graph_with_host();
    let mut r = Reconciler::new(host, HOST);
    let db = db_after(6);
    run(&mut g, &mut r, &db);
    let (nodes, edges) = (g.node_count(), g.edge_count());
    let mut rx = g.subscribe();
    run(&mut g, &mut r, &db);
    assert_eq!((g.node_count(), g.edge_count()), (nodes, edges));
    assert!(rx.try_recv().is_err(), "second pass must publish nothing");
}

#[test]
fn netlink_node_is_merged_not_duplicated() {
    let (mut g, host) = graph_with_host();
    let veth = netlink_node(
        &mut g,
        &host,
        json!({"Name": "capv1h", "Type": "veth", "Driver": "veth", "IfIndex": 8,
               "MAC": "b6:16:98:2f:34:6a", "MTU": 1500}),
    );
    let tap = netlink_node(
        &mut g,
        &host,
        json!({"Name": "capbr0", "Type": "tuntap", "Driver": "tun", "IfIndex": 6,
               "MAC": "02:00:00:00:00:01"}),
    );
    let mut r = Reconciler::new(host, HOST);
    run(&mut g, &mut r, &db_after(0));

    let veth_ix = g.find_node(&veth).unwrap();
    assert_eq!(named(&g, "capv1h").len(), 2, "the port and one interface");
    let m = g.node(veth_ix).metadata();
    assert_eq!(m["Type"], "veth");
    assert_eq!(m["MTU"], 1500);
    assert_eq!(m["UUID"], "7453cc1a-ac59-40d5-b516-e432a2f019c3");
    assert_eq!(m["OfPort"], 1);
    assert_eq!(owners(&g, veth_ix), vec!["host"]);
    let port = typed(&g, "capv1h", "ovsport");
    assert_eq!(links(&g, port, veth_ix), vec![rel("layer2")]);

    // Internal port: OVS type wins, the netlink MAC stays, no bridge ownership.
    let tap_ix = g.find_node(&tap).unwrap();
    let m = g.node(tap_ix).metadata();
    assert_eq!(m["Type"], "internal");
    assert_eq!(m["MAC"], "02:00:00:00:00:01");
    assert_eq!(m["Driver"], "tun");
    assert_eq!(owners(&g, tap_ix), vec!["host"]);
}

#[test]
fn updates_add_patch_edge_then_deletions_clean_up() {
    let (mut g, host) = graph_with_host();
    let mut r = Reconciler::new(host, HOST);
    for n in 0..=10 {
        run(&mut g, &mut r, &db_after(n));
        match n {
            1 => {
                let int0 = typed(&g, "capint0", "internal");
                assert_eq!(g.node(int0).metadata()["Driver"], "openvswitch");
                assert!(g.node(int0).metadata().get("IfIndex").is_none());
            }
            2 => {
                let int0 = typed(&g, "capint0", "internal");
                assert_eq!(g.node(int0).metadata()["IfIndex"], 9);
            }
            6 => {
                let pa = typed(&g, "cappa", "patch");
                let pb = typed(&g, "cappb", "patch");
                let patch = [links(&g, pa, pb), links(&g, pb, pa)].concat();
                assert_eq!(patch, vec![("layer2".to_owned(), Some("patch".to_owned()))]);
                let br1 = typed(&g, "capbr1", "ovsbridge");
                assert_eq!(owners(&g, pb), vec!["ovsbridge"]);
                let pbp = typed(&g, "cappb", "ovsport");
                assert_eq!(links(&g, br1, pbp), vec![rel("layer2"), rel("ownership")]);
            }
            _ => {}
        }
    }
    // capint0 deleted (update 8), capbr1 with cappb deleted (update 9).
    assert!(named(&g, "capint0").is_empty());
    assert!(named(&g, "capbr1").is_empty());
    assert!(named(&g, "cappb").is_empty());
    let pa = typed(&g, "cappa", "patch");
    assert!(g
        .out_edges(pa)
        .chain(g.in_edges(pa))
        .all(|e| g.edge(e).metadata().get("Type") != Some(&json!("patch"))));
    assert_eq!(
        g.node(pa).metadata()["Ovs"]["Error"],
        "No usable peer 'cappb' exists in 'netdev' datapath."
    );
}

#[test]
fn reconnect_to_changed_database_reconciles_without_duplicates() {
    let (mut g, host) = graph_with_host();
    let mut r = Reconciler::new(host, HOST);
    run(&mut g, &mut r, &db_after(6));
    let br0 = g.node(typed(&g, "capbr0", "ovsbridge")).id().clone();
    let nodes_before = g.node_count();
    // Same state again as a fresh monitor reply: nothing moves.
    let fresh =
        Database::from_monitor_reply(&serde_json::to_value(table_updates(&db_after(6))).unwrap())
            .unwrap();
    run(&mut g, &mut r, &fresh);
    assert_eq!(g.node_count(), nodes_before);
    // Server came back with an older state: capint0, capbr1 and the patch ports go.
    run(&mut g, &mut r, &db_after(0));
    assert_eq!(g.node_count(), 6);
    assert_eq!(g.node(typed(&g, "capbr0", "ovsbridge")).id(), &br0);
    assert!(named(&g, "cappa").is_empty());
}

/// Re-encodes a mirror as a monitor reply.
fn table_updates(db: &Database) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    for (table, rows) in [
        ("Bridge", db.bridges().map(|b| b.uuid).collect::<Vec<_>>()),
        ("Port", db.ports().map(|p| p.uuid).collect()),
        ("Interface", db.interfaces().map(|i| i.uuid).collect()),
    ] {
        let mut t = serde_json::Map::new();
        for uuid in rows {
            t.insert(uuid.clone(), json!({"new": db.raw(table, &uuid).unwrap()}));
        }
        out.insert(table.to_owned(), t.into());
    }
    out.into()
}

#[test]
fn netlink_adopting_an_ovs_node_takes_ownership_from_the_bridge() {
    let (mut g, host) = graph_with_host();
    let mut r = Reconciler::new(host.clone(), HOST);
    run(&mut g, &mut r, &db_after(0));
    // Netlink sees capv1h: it adopts the OVS node instead of creating one.
    let ix = merge::find_adoptable_interface_node(&g, "capv1h", Some(8), Some("b6:16:98:2f:34:6a"))
        .expect("adoptable");
    let id = g.node(ix).id().clone();
    let mut rx = g.subscribe();
    g.update_node(&id, |m| {
        m.insert("Type".into(), "veth".into());
        m.insert("Driver".into(), "veth".into());
    })
    .unwrap();
    own(&mut g, &host, &id);
    let events: Vec<_> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
    assert!(events.iter().any(|e| r.concerns(e)), "{events:?}");
    run(&mut g, &mut r, &db_after(0));
    assert_eq!(owners(&g, ix), vec!["host"]);
    assert_eq!(named(&g, "capv1h").len(), 2);
    assert_eq!(g.node(ix).metadata()["Type"], "veth");
}

#[test]
fn duplicate_made_by_netlink_is_resolved_to_the_netlink_node() {
    let (mut g, host) = graph_with_host();
    let mut r = Reconciler::new(host.clone(), HOST);
    run(&mut g, &mut r, &db_after(0));
    let theirs = netlink_node(
        &mut g,
        &host,
        json!({"Name": "capv1h", "Type": "veth", "IfIndex": 8}),
    );
    let added = GraphEvent::NodeAdded(g.node_by_id(&theirs).unwrap().to_owned());
    assert!(r.concerns(&added));
    run(&mut g, &mut r, &db_after(0));
    assert_eq!(named(&g, "capv1h").len(), 2, "port + the netlink node");
    let ix = g.find_node(&theirs).unwrap();
    assert_eq!(
        g.node(ix).metadata()["UUID"],
        "7453cc1a-ac59-40d5-b516-e432a2f019c3"
    );
    let port = typed(&g, "capv1h", "ovsport");
    assert_eq!(links(&g, port, ix), vec![rel("layer2")]);
}

#[test]
fn deleted_interface_leaves_netlink_node_without_ovs_keys() {
    let (mut g, host) = graph_with_host();
    let tap = netlink_node(
        &mut g,
        &host,
        json!({"Name": "capint0", "Type": "tuntap", "Driver": "tun", "IfIndex": 9}),
    );
    let mut r = Reconciler::new(host, HOST);
    run(&mut g, &mut r, &db_after(2));
    let ix = g.find_node(&tap).unwrap();
    assert_eq!(g.node(ix).metadata()["Type"], "internal");
    assert_eq!(g.node(ix).metadata()["OfPort"], 2);
    run(&mut g, &mut r, &db_after(8));
    let m = g.node(ix).metadata();
    assert_eq!(m["Type"], "tuntap");
    for k in ["UUID", "OfPort", "Ovs", "ExtID"] {
        assert!(!m.contains_key(k), "{k} left on {m:?}");
    }
    assert_eq!(m["IfIndex"], 9);
    assert_eq!(g.in_edges(ix).count(), 1, "only the host ownership");
}

#[test]
fn bridges_wait_for_the_host_node() {
    let mut g = Graph::new();
    let host = Identifier::from("late-host");
    let mut r = Reconciler::new(host.clone(), HOST);
    run(&mut g, &mut r, &db_after(0));
    let br = typed(&g, "capbr0", "ovsbridge");
    assert_eq!(g.in_edges(br).count(), 0);
    let node = Node::new(
        host.clone(),
        md(json!({"Name": HOST, "Type": "host"})),
        HOST,
        "agent.h1",
    );
    assert!(r.concerns(&GraphEvent::NodeAdded(node.clone())));
    g.add_node(node).unwrap();
    run(&mut g, &mut r, &db_after(0));
    assert_eq!(owners(&g, br), vec!["host"]);
}
