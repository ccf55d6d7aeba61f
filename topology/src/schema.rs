//! What the graph's nodes and edges mean: the metadata keys, node types and relation
//! types every crate agrees on (Skydive's names), and the node-kind lists derived from
//! them. Probes write these facts; captures, injections and the API read them. Each
//! list is defined here once.

use std::path::Path;

use serde_json::Value;

use crate::{Graph, Metadata, NodeIx};

/// Metadata keys.
pub mod key {
    /// Node type (see [`super::node_type`]); on edges, a link's kind.
    pub const TYPE: &str = "Type";
    /// Interface, namespace, bridge or host name.
    pub const NAME: &str = "Name";
    /// Kernel interface index: present only on interfaces the kernel knows.
    pub const IF_INDEX: &str = "IfIndex";
    /// Skydive's topology id (stable across restarts).
    pub const TID: &str = "TID";
    /// A namespace's bind-mount path (`/var/run/netns/<name>`).
    pub const PATH: &str = "Path";
    /// The OVS row UUID of an OVS node.
    pub const UUID: &str = "UUID";
    /// Link-layer address.
    pub const MAC: &str = "MAC";
    /// Kernel driver name (ethtool's).
    pub const DRIVER: &str = "Driver";
    /// An edge's relation (see [`super::relation`]).
    pub const RELATION_TYPE: &str = "RelationType";
    /// A tunnel interface's remote endpoint address (netlink and OVS tunnels).
    pub const REMOTE_IP: &str = "RemoteIP";
    /// An interface's IPv4 addresses (`a.b.c.d/len`).
    pub const IPV4: &str = "IPV4";
    /// An interface's IPv6 addresses (`addr/len`).
    pub const IPV6: &str = "IPV6";
    /// Capture states on captured nodes, written by the capture placer only.
    pub const CAPTURES: &str = "Captures";
}

/// Node types (`Metadata.Type`).
pub mod node_type {
    pub const HOST: &str = "host";
    pub const NETNS: &str = "netns";
    /// A container, owned by the netns node of its network namespace.
    pub const CONTAINER: &str = "container";
    pub const OVSBRIDGE: &str = "ovsbridge";
    pub const OVSPORT: &str = "ovsport";
    pub const BRIDGE: &str = "bridge";
    pub const VETH: &str = "veth";
    pub const DEVICE: &str = "device";
    pub const INTERNAL: &str = "internal";
    pub const PATCH: &str = "patch";
}

/// Edge relation types (`Metadata.RelationType`).
pub mod relation {
    /// Structure: host -> netns -> interfaces, ovsbridge -> ovsport, a bridge's ports.
    pub const OWNERSHIP: &str = "ownership";
    /// Links between interfaces (veth peers, bridge members, OVS port -> interface).
    pub const LAYER2: &str = "layer2";
    /// All the relation types the probes write.
    pub const ALL: &[&str] = &[OWNERSHIP, LAYER2];
    /// A tunnel interface (VXLAN, GENEVE, GRE, ...) -> the interface of another host
    /// holding its remote address; derived by fleet analyzers, never by probes.
    pub const TUNNEL: &str = "tunnel";
}

/// Node types that are structure, never a network interface: no packets are captured
/// on or sent from them, whatever their metadata says.
pub const NOT_INTERFACES: &[&str] = &[
    node_type::HOST,
    node_type::NETNS,
    node_type::OVSBRIDGE,
    node_type::OVSPORT,
    node_type::CONTAINER,
];

/// OVS interface types that are tunnels (their rows carry local/remote endpoints).
pub const OVS_TUNNEL_TYPES: &[&str] = &[
    "gre",
    "vxlan",
    "geneve",
    "stt",
    "lisp",
    "erspan",
    "ip6erspan",
    "ip6gre",
    "gtpu",
    "bareudp",
    "srv6",
];

/// OVS interface types, other than tunnels, whose device exists only because OVS made
/// it (Skydive's `isOvsInterfaceType`).
pub const OVS_DEVICE_TYPES: &[&str] = &[
    node_type::INTERNAL,
    node_type::PATCH,
    "dpdk",
    "dpdkvhostuser",
    "dpdkvhostuserclient",
];

/// Netlink kinds of the devices OVS makes for internal ports: a tap (userspace
/// datapath) or an `openvswitch` device (kernel datapath).
pub const OVS_DEVICE_KINDS: &[&str] = &["tuntap", "openvswitch"];

/// The driver of devices the OVS kernel datapath made.
pub const OVS_DRIVER: &str = "openvswitch";

/// Whether `kind` is an OVS tunnel type.
pub fn is_ovs_tunnel(kind: &str) -> bool {
    OVS_TUNNEL_TYPES.contains(&kind)
}

/// Whether a node type can stand for a network interface.
pub fn may_be_interface(kind: Option<&str>) -> bool {
    !kind.is_some_and(|k| NOT_INTERFACES.contains(&k))
}

/// A string metadata value.
pub fn str_of<'m>(md: &'m Metadata, key: &str) -> Option<&'m str> {
    md.get(key).and_then(Value::as_str)
}

/// A node's type, if it has one.
pub fn type_of(md: &Metadata) -> Option<&str> {
    str_of(md, key::TYPE)
}

/// Whether an edge's metadata says it is an `ownership` edge.
pub fn is_ownership(md: &Metadata) -> bool {
    str_of(md, key::RELATION_TYPE) == Some(relation::OWNERSHIP)
}

/// Whether an interface node stands for a device OVS itself drives (`Driver` is
/// `openvswitch`, or its `Type` is an OVS device or tunnel type).
pub fn is_ovs_driven(md: &Metadata) -> bool {
    str_of(md, key::DRIVER) == Some(OVS_DRIVER)
        || type_of(md).is_some_and(|t| OVS_DEVICE_TYPES.contains(&t) || is_ovs_tunnel(t))
}

/// A network interface the kernel knows, as the graph describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelInterface<'g> {
    pub name: &'g str,
    pub if_index: i64,
    /// The bind-mount path of the namespace that owns it; `None` for topotap's own.
    pub netns: Option<&'g Path>,
}

/// The kernel interface behind a node: not a structural node type, with a `Name` and
/// an `IfIndex`, in the namespace of its `netns` owner if it has one.
pub fn kernel_interface(g: &Graph, ix: NodeIx) -> Option<KernelInterface<'_>> {
    let md = g.node(ix).metadata();
    if !may_be_interface(type_of(md)) {
        return None;
    }
    let name = str_of(md, key::NAME)?;
    let if_index = md.get(key::IF_INDEX).and_then(Value::as_i64)?;
    let mut netns = None;
    for e in g.in_edges(ix) {
        let edge = g.edge(e);
        if is_ownership(edge.metadata()) {
            let om = edge.parent().metadata();
            if type_of(om) == Some(node_type::NETNS) {
                netns = str_of(om, key::PATH).map(Path::new);
            }
        }
    }
    Some(KernelInterface {
        name,
        if_index,
        netns,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Edge, Identifier, Node};
    use serde_json::json;

    fn md(v: Value) -> Metadata {
        match v {
            Value::Object(m) => m,
            _ => unreachable!("object literal"),
        }
    }

    fn node(g: &mut Graph, id: &str, v: Value) -> NodeIx {
        g.add_node(Node::new(Identifier::from(id), md(v), "h", "test"))
            .expect("add node")
    }

    #[test]
    fn lists_do_not_overlap() {
        for t in OVS_TUNNEL_TYPES {
            assert!(!OVS_DEVICE_TYPES.contains(t), "{t}");
            assert!(may_be_interface(Some(t)), "{t}");
        }
        for t in NOT_INTERFACES {
            assert!(!may_be_interface(Some(t)));
        }
        assert!(may_be_interface(None));
    }

    #[test]
    fn ovs_driven_by_driver_or_type() {
        assert!(is_ovs_driven(&md(json!({"Type": "vxlan"}))));
        assert!(is_ovs_driven(&md(json!({"Type": "internal"}))));
        assert!(is_ovs_driven(&md(
            json!({"Type": "device", "Driver": "openvswitch"})
        )));
        assert!(!is_ovs_driven(&md(
            json!({"Type": "veth", "Driver": "veth"})
        )));
    }

    #[test]
    fn kernel_interface_in_its_namespace() {
        let mut g = Graph::new();
        let ns = node(
            &mut g,
            "ns",
            json!({"Type": "netns", "Name": "a", "Path": "/var/run/netns/a"}),
        );
        let eth = node(
            &mut g,
            "eth",
            json!({"Type": "veth", "Name": "eth0", "IfIndex": 7}),
        );
        let lo = node(
            &mut g,
            "lo",
            json!({"Type": "device", "Name": "lo", "IfIndex": 1}),
        );
        let port = node(
            &mut g,
            "port",
            json!({"Type": "ovsport", "Name": "p", "IfIndex": 3}),
        );
        let gone = node(&mut g, "gone", json!({"Type": "veth", "Name": "x"}));
        let (a, b) = (g.node(ns).id().clone(), g.node(eth).id().clone());
        g.add_edge(Edge::new(
            a,
            b,
            md(json!({"RelationType": "ownership"})),
            "h",
            "test",
        ))
        .expect("add edge");

        let i = kernel_interface(&g, eth).expect("an interface");
        assert_eq!(
            (i.name, i.if_index, i.netns),
            ("eth0", 7, Some(Path::new("/var/run/netns/a")))
        );
        assert_eq!(kernel_interface(&g, lo).expect("lo").netns, None);
        assert_eq!(kernel_interface(&g, port), None, "structure");
        assert_eq!(kernel_interface(&g, gone), None, "no IfIndex");
        assert_eq!(kernel_interface(&g, ns), None);
    }
}
