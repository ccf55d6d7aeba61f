//! A synthetic topology shared by the benchmarks: 1,000 groups of 100 nodes (one netns,
//! one bridge, 49 veths, 49 devices) and 200 edges each — 100,000 nodes, 200,000 edges.
//!
//! Per group: the netns owns the 99 others (ownership), the bridge has every veth as a
//! member (layer2), veth j is paired with device j (layer2, Type veth), and devices 0..3
//! link to veths 0..3 of the next group (layer2), so traversals cross groups.

use serde_json::{json, Value};
use topotap_topology::{Edge, Identifier, Metadata, Node};

pub const GROUPS: usize = 1_000;
pub const PER_GROUP: usize = 100;
const VETHS: usize = 49;
const CROSS: usize = 3;

fn md(v: Value) -> Metadata {
    match v {
        Value::Object(m) => m,
        _ => Metadata::new(),
    }
}

fn id(i: usize) -> Identifier {
    Identifier::v5(&format!("bench-node-{i}"))
}

/// Index of member `k` of group `g` (0 netns, 1 bridge, 2.. veths, then devices).
fn ix(g: usize, k: usize) -> usize {
    g * PER_GROUP + k
}

fn veth(j: usize) -> usize {
    2 + j
}

fn device(j: usize) -> usize {
    2 + VETHS + j
}

/// Node `i`'s metadata.
pub fn node_metadata(i: usize) -> Metadata {
    let (g, k) = (i / PER_GROUP, i % PER_GROUP);
    let mac = format!(
        "02:00:{:02x}:{:02x}:{:02x}:{:02x}",
        (i >> 24) & 255,
        (i >> 16) & 255,
        (i >> 8) & 255,
        i & 255
    );
    match k {
        0 => md(
            json!({"Name": format!("ns{g}"), "Type": "netns", "Path": format!("/var/run/netns/ns{g}")}),
        ),
        1 => md(
            json!({"Name": format!("br{g}"), "Type": "bridge", "MTU": 1500, "IfIndex": 1, "MAC": mac, "State": "UP"}),
        ),
        k if k < device(0) => md(json!({
            "Name": format!("veth{}", k - veth(0)), "Type": "veth", "MTU": 1500, "IfIndex": k,
            "MAC": mac, "State": "UP", "Driver": "veth"
        })),
        k => md(json!({
            "Name": format!("eth{}", k - device(0)), "Type": "device", "MTU": 1500, "IfIndex": k,
            "MAC": mac, "State": "UP", "IPV4": [format!("10.{}.{}.1/24", g / 256, g % 256)]
        })),
    }
}

/// Every edge as (parent index, child index, metadata), in insertion order.
pub fn edges() -> Vec<(usize, usize, Metadata)> {
    let own = || md(json!({"RelationType": "ownership"}));
    let l2 = || md(json!({"RelationType": "layer2"}));
    let mut out = Vec::with_capacity(GROUPS * 200);
    for g in 0..GROUPS {
        for k in 1..PER_GROUP {
            out.push((ix(g, 0), ix(g, k), own()));
        }
        for j in 0..VETHS {
            out.push((ix(g, 1), ix(g, veth(j)), l2()));
        }
        for j in 0..VETHS {
            out.push((
                ix(g, veth(j)),
                ix(g, device(j)),
                md(json!({"RelationType": "layer2", "Type": "veth"})),
            ));
        }
        let next = (g + 1) % GROUPS;
        for j in 0..CROSS {
            out.push((ix(g, device(j)), ix(next, veth(j)), l2()));
        }
    }
    out
}

/// The same data as topotap elements with fixed timestamps.
pub fn elements() -> (Vec<Node>, Vec<Edge>) {
    let nodes: Vec<Node> = (0..GROUPS * PER_GROUP)
        .map(|i| {
            let mut n = Node::new(id(i), node_metadata(i), "bench-host", "agent.bench-host");
            n.created_at = 1_700_000_000_000 + i as i64;
            n.updated_at = n.created_at;
            n
        })
        .collect();
    let edges = edges()
        .into_iter()
        .map(|(p, c, m)| {
            let mut e = Edge::new(id(p), id(c), m, "bench-host", "agent.bench-host");
            e.created_at = 1_700_000_000_000;
            e.updated_at = e.created_at;
            e
        })
        .collect();
    (nodes, edges)
}
