//! One node per network interface: the contract between the OVS and netlink probes.
//!
//! Both probes describe the same kernel interfaces (an OVS internal port is a tap device
//! netlink sees; a veth added to a bridge is a netlink veth). Whichever reports first
//! creates the node; the other merges its keys into it. Under the graph's write lock:
//!
//! - A **netlink** interface node has `Name` and `IfIndex` and is owned (an `ownership`
//!   edge) by the `host` node or by a `netns` node.
//! - The **OVS probe**, for an `Interface` row, calls [`find_interface_node`] and merges
//!   its keys (`UUID`, `OfPort`, `ExtID`, `Ovs`, `Type` when the OVS type is not empty,
//!   plus `MAC`/`IfIndex`/`Driver` only where netlink has none) into the node found,
//!   never removing netlink keys. When nothing is found it creates a node
//!   `{Name, UUID, Type?, Driver, MAC?, IfIndex?, ...}` owned by the bridge.
//! - The **netlink probe**, before creating a node for a new link, calls
//!   [`find_adoptable_interface_node`]; when it returns a node, netlink adopts it: adds
//!   its keys and its own ownership edge instead of creating a second node. It may
//!   remove the bridge's ownership edge itself; if it does not, the OVS probe removes
//!   it as soon as it sees the new owner (a bridge owns an interface only while nobody
//!   else does — Skydive's `TestOVSOwnershipLink`).
//! - On link deletion netlink only unlinks a node that has a `UUID` and is
//!   [`is_ovs_driven`]: it removes its ownership edge, its `layer2` edges to other links
//!   and the keys only it knows (`IfIndex`, `State`, addresses, ...; `Name`, `Type`,
//!   `MAC` and `Driver`, which OVS also provides, stay); the OVS probe then owns it
//!   again. Any other node goes with its link. A device moved to another namespace so
//!   keeps its node: the new namespace adopts it, or, when it reported first and made
//!   a node of its own (same `Name` and `MAC`, no `UUID`), the unlinked node takes that
//!   node's place.
//!   On Interface row deletion the OVS probe removes its keys from a node someone else
//!   owns and deletes a node nobody else owns.
//!
//! The OVS probe also de-duplicates: if netlink created its own node for an interface
//! the OVS probe had already created, the OVS node is deleted and its facts moved to
//! the netlink node.

use serde_json::Value;
use topotap_topology::schema::{self, node_type};
use topotap_topology::{Graph, NodeIx};

pub use topotap_topology::schema::{is_ovs_driven, OVS_DEVICE_KINDS};

/// Who owns a node through `ownership` edges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// Owned by a `host` node (root namespace netlink).
    Host,
    /// Owned by a `netns` node.
    Netns,
    /// Owned only by `ovsbridge` nodes, or by nothing: a node the OVS probe made.
    OvsSide,
}

/// Classifies a node by its ownership parents' `Type`.
pub fn owner(graph: &Graph, ix: NodeIx) -> Owner {
    let mut out = Owner::OvsSide;
    for e in graph.in_edges(ix) {
        let edge = graph.edge(e);
        if !schema::is_ownership(edge.metadata()) {
            continue;
        }
        match schema::type_of(edge.parent().metadata()) {
            Some(node_type::HOST) => return Owner::Host,
            Some(node_type::NETNS) => out = Owner::Netns,
            _ => {}
        }
    }
    out
}

/// Finds the node an OVS `Interface` row (`name`, `ifindex` when OVS reports one > 0,
/// `mac` = `mac_in_use` or `external_ids:attached-mac`) must be merged into. First match
/// in graph insertion order, by preference:
///
/// 1. owned by the host, same `Name`, and the same `IfIndex` when both are known
///    (ovs-vswitchd runs in the root namespace, so the name designates the device;
///    the MAC is not compared because internal ports change theirs);
/// 2. owned by a `netns`, same `Name` and the same `MAC` (an internal port moved into a
///    namespace); when OVS knows neither index nor MAC (vswitchd reports `ifindex 0`
///    and no `mac_in_use` for a device moved out of its namespace), the only
///    netns-owned node of that name that is a device OVS makes ([`OVS_DEVICE_KINDS`])
///    and has no `UUID` yet;
/// 3. a node made by OVS (see [`find_adoptable_interface_node`]).
pub fn find_interface_node(
    graph: &Graph,
    name: &str,
    ifindex: Option<i64>,
    mac: Option<&str>,
) -> Option<NodeIx> {
    let candidates: Vec<(NodeIx, Owner)> = named_interfaces(graph, name)
        .map(|ix| (ix, owner(graph, ix)))
        .collect();
    let host = candidates.iter().find(|(ix, o)| {
        *o == Owner::Host && {
            let known = graph
                .node(*ix)
                .metadata()
                .get("IfIndex")
                .and_then(Value::as_i64);
            match (ifindex, known) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
        }
    });
    if let Some((ix, _)) = host {
        return Some(*ix);
    }
    let netns = candidates.iter().find(|(ix, o)| {
        *o == Owner::Netns && {
            let known = graph
                .node(*ix)
                .metadata()
                .get("MAC")
                .and_then(Value::as_str);
            matches!((mac, known), (Some(a), Some(b)) if a.eq_ignore_ascii_case(b))
        }
    });
    if let Some((ix, _)) = netns {
        return Some(*ix);
    }
    if ifindex.is_none() && mac.is_none() {
        let mut made = candidates.iter().filter(|(ix, o)| {
            let md = graph.node(*ix).metadata();
            *o == Owner::Netns
                && !md.contains_key("UUID")
                && md
                    .get("Type")
                    .and_then(Value::as_str)
                    .is_some_and(|t| OVS_DEVICE_KINDS.contains(&t))
        });
        if let (Some((ix, _)), None) = (made.next(), made.next()) {
            return Some(*ix);
        }
    }
    candidates
        .iter()
        .find(|(ix, o)| *o == Owner::OvsSide && adoptable(graph, *ix, ifindex, mac))
        .map(|(ix, _)| *ix)
}

/// Finds a node made by the OVS probe that a netlink link (`name`, `ifindex`, `mac`)
/// must adopt instead of creating its own: same `Name`, has a `UUID`, is owned by no
/// host/netns node (only by an `ovsbridge`, or by nothing), and is the same device —
/// same `IfIndex` when both are known, else the same `MAC` when both are known
/// (a device moved into a namespace may change index), else the name alone.
pub fn find_adoptable_interface_node(
    graph: &Graph,
    name: &str,
    ifindex: Option<i64>,
    mac: Option<&str>,
) -> Option<NodeIx> {
    named_interfaces(graph, name)
        .find(|ix| owner(graph, *ix) == Owner::OvsSide && adoptable(graph, *ix, ifindex, mac))
}

fn adoptable(graph: &Graph, ix: NodeIx, ifindex: Option<i64>, mac: Option<&str>) -> bool {
    let md = graph.node(ix).metadata();
    if !md.contains_key("UUID") {
        return false;
    }
    let known_index = md.get("IfIndex").and_then(Value::as_i64).filter(|i| *i > 0);
    if let (Some(a), Some(b)) = (ifindex.filter(|i| *i > 0), known_index) {
        if a == b {
            return true;
        }
    }
    let known_mac = md.get("MAC").and_then(Value::as_str);
    match (mac, known_mac) {
        (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
        _ => true,
    }
}

/// Nodes named `name` that can be interfaces (not bridges, ports, hosts or namespaces).
fn named_interfaces<'g>(graph: &'g Graph, name: &'g str) -> impl Iterator<Item = NodeIx> + 'g {
    graph.nodes().filter(move |ix| {
        let md = graph.node(*ix).metadata();
        schema::str_of(md, schema::key::NAME) == Some(name)
            && schema::may_be_interface(schema::type_of(md))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use topotap_topology::{Edge, Identifier, Metadata, Node};

    fn md(v: Value) -> Metadata {
        v.as_object().cloned().unwrap()
    }

    fn add(g: &mut Graph, id: &str, v: Value) -> Identifier {
        let id = Identifier::from(id);
        g.add_node(Node::new(id.clone(), md(v), "h", "agent.h"))
            .unwrap();
        id
    }

    fn own(g: &mut Graph, parent: &Identifier, child: &Identifier) {
        let e = Edge::new(
            parent.clone(),
            child.clone(),
            md(json!({"RelationType": "ownership"})),
            "h",
            "agent.h",
        );
        g.add_edge(e).unwrap();
    }

    fn fixture() -> (Graph, Identifier, Identifier) {
        let mut g = Graph::new();
        let host = add(&mut g, "host", json!({"Name": "h", "Type": "host"}));
        let ns = add(&mut g, "ns", json!({"Name": "ns1", "Type": "netns"}));
        own(&mut g, &host, &ns);
        (g, host, ns)
    }

    #[test]
    fn host_owned_interface_is_found_by_name_and_ifindex() {
        let (mut g, host, ns) = fixture();
        let in_ns = add(
            &mut g,
            "eth0-ns",
            json!({"Name": "eth0", "IfIndex": 2, "MAC": "aa:aa:aa:aa:aa:aa"}),
        );
        own(&mut g, &ns, &in_ns);
        let root = add(
            &mut g,
            "eth0-root",
            json!({"Name": "eth0", "IfIndex": 5, "MAC": "bb:bb:bb:bb:bb:bb"}),
        );
        own(&mut g, &host, &root);
        let root_ix = g.find_node(&root);
        assert_eq!(find_interface_node(&g, "eth0", Some(5), None), root_ix);
        // MAC of a host-owned node is not compared (internal ports change theirs).
        assert_eq!(
            find_interface_node(&g, "eth0", Some(5), Some("cc:cc:cc:cc:cc:cc")),
            root_ix
        );
        assert_eq!(find_interface_node(&g, "eth0", None, None), root_ix);
        // Stale ifindex: not the host one; the netns one only by MAC.
        assert_eq!(find_interface_node(&g, "eth0", Some(9), None), None);
        assert_eq!(
            find_interface_node(&g, "eth0", Some(9), Some("AA:AA:AA:AA:AA:AA")),
            g.find_node(&in_ns)
        );
        assert_eq!(find_interface_node(&g, "eth1", Some(5), None), None);
    }

    #[test]
    fn ports_and_bridges_are_never_interfaces() {
        let (mut g, host, _) = fixture();
        let br = add(
            &mut g,
            "br",
            json!({"Name": "br0", "Type": "ovsbridge", "UUID": "u1"}),
        );
        own(&mut g, &host, &br);
        add(
            &mut g,
            "port",
            json!({"Name": "br0", "Type": "ovsport", "UUID": "u2"}),
        );
        assert_eq!(find_interface_node(&g, "br0", None, None), None);
        assert_eq!(find_adoptable_interface_node(&g, "br0", None, None), None);
    }

    #[test]
    fn ovs_made_nodes_are_adoptable_by_index_or_mac() {
        let (mut g, host, ns) = fixture();
        let br = add(&mut g, "br", json!({"Name": "br0", "Type": "ovsbridge"}));
        own(&mut g, &host, &br);
        let p1 = add(
            &mut g,
            "p1",
            json!({"Name": "p1", "UUID": "u", "Type": "internal", "IfIndex": 7, "MAC": "aa:00:00:00:00:01"}),
        );
        own(&mut g, &br, &p1);
        let p1_ix = g.find_node(&p1);
        assert_eq!(
            find_adoptable_interface_node(&g, "p1", Some(7), None),
            p1_ix
        );
        // Moved to a namespace: new index, same MAC.
        assert_eq!(
            find_adoptable_interface_node(&g, "p1", Some(3), Some("aa:00:00:00:00:01")),
            p1_ix
        );
        assert_eq!(
            find_adoptable_interface_node(&g, "p1", Some(3), Some("aa:00:00:00:00:02")),
            None
        );
        // Once a namespace owns it, it is a netlink node: not adoptable any more, but
        // the OVS side finds it by name + MAC.
        own(&mut g, &ns, &p1);
        assert_eq!(find_adoptable_interface_node(&g, "p1", Some(7), None), None);
        assert_eq!(
            find_interface_node(&g, "p1", Some(7), Some("aa:00:00:00:00:01")),
            p1_ix
        );
        // A node without UUID that nobody owns is not an OVS node.
        add(&mut g, "stray", json!({"Name": "p2"}));
        assert_eq!(find_adoptable_interface_node(&g, "p2", None, None), None);
    }

    #[test]
    fn device_moved_out_of_vswitchd_sight_is_found_by_name_when_unique() {
        let (mut g, _, ns) = fixture();
        let tap = add(
            &mut g,
            "tap",
            json!({"Name": "p1", "Type": "tuntap", "IfIndex": 4, "MAC": "aa:00:00:00:00:01"}),
        );
        own(&mut g, &ns, &tap);
        // vswitchd reports ifindex 0 and no mac_in_use: the tap is the only candidate.
        assert_eq!(find_interface_node(&g, "p1", None, None), g.find_node(&tap));
        // A MAC or an index that OVS knows must match, as before.
        assert_eq!(
            find_interface_node(&g, "p1", None, Some("aa:00:00:00:00:02")),
            None
        );
        // Not a device OVS makes: not taken by name alone.
        let veth = add(&mut g, "veth", json!({"Name": "v1", "Type": "veth"}));
        own(&mut g, &ns, &veth);
        assert_eq!(find_interface_node(&g, "v1", None, None), None);
        // Ambiguous: two namespaces hold a tap of that name.
        let ns2 = add(&mut g, "ns2", json!({"Name": "ns2", "Type": "netns"}));
        let tap2 = add(&mut g, "tap2", json!({"Name": "p1", "Type": "tuntap"}));
        own(&mut g, &ns2, &tap2);
        assert_eq!(find_interface_node(&g, "p1", None, None), None);
    }

    #[test]
    fn ovs_driven_interfaces() {
        assert!(is_ovs_driven(&md(json!({"Driver": "openvswitch"}))));
        assert!(is_ovs_driven(&md(
            json!({"Type": "patch", "Driver": "tun"})
        )));
        assert!(is_ovs_driven(&md(json!({"Type": "internal"}))));
        assert!(!is_ovs_driven(&md(
            json!({"Type": "veth", "Driver": "veth"})
        )));
        assert!(!is_ovs_driven(&md(json!({}))));
    }
}
