//! Merging subgraphs into the analyzer's graph: who may write which element, and how a
//! `Sync` replaces what a source had.
//!
//! Every element of the merged graph belongs to one host (`Host`). A host's elements
//! come from one source at a time: the agent connected to this analyzer with that host
//! id (a *local* host), or a peer analyzer replicating it. A local agent wins over a
//! peer: while it is connected, peers' copies of its host are ignored.

use std::collections::{HashMap, HashSet};

use topotap_topology::{Edge, Graph, GraphError, Identifier, Metadata, Node};

use super::protocol::{GraphMessage, MetadataOp, Refused};
use tracing::debug;

/// Origin prefix of elements this analyzer derives itself (cross-host tunnel edges):
/// never replicated, never replaced by a source's `Sync`.
pub const DERIVED_ORIGIN: &str = "analyzer.";

/// Who writes a host's elements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// The agent of this connection.
    Agent(u64),
    /// The peer analyzer with this host id.
    Peer(String),
}

fn derived(origin: &str) -> bool {
    origin.starts_with(DERIVED_ORIGIN)
}

/// Puts `Host` and `Origin` of the connection on an element, and fills timestamps a
/// sender left out.
fn stamp_node(n: &mut Node, host: &str, origin: &str) {
    n.host = host.to_owned();
    n.origin = origin.to_owned();
    fix_times(&mut n.created_at, &mut n.updated_at, &mut n.revision);
    n.deleted_at = None;
}

fn stamp_edge(e: &mut Edge, host: &str, origin: &str) {
    e.host = host.to_owned();
    e.origin = origin.to_owned();
    fix_times(&mut e.created_at, &mut e.updated_at, &mut e.revision);
    e.deleted_at = None;
}

fn fix_times(created: &mut i64, updated: &mut i64, revision: &mut i64) {
    let now = topotap_topology::now_ms();
    if *created <= 0 {
        *created = now;
    }
    if *updated <= 0 {
        *updated = *created;
    }
    if *revision <= 0 {
        *revision = 1;
    }
}

fn other_host(kind: &str, id: &Identifier, owner: &str, host: &str) -> Refused {
    Refused::new(format!(
        "{kind} {id} belongs to host {owner:?}, not {host:?}: a host may only write its own elements"
    ))
}

/// The nodes and edges of `host` in `g` (derived elements excluded), in insertion
/// order. Found through the graph's host index: the cost is the host's elements, so
/// a thousand agents leaving do not visit the merged graph a thousand times.
pub fn host_elements(g: &Graph, host: &str) -> (Vec<Identifier>, Vec<Identifier>) {
    let (nodes, edges) = g.host_elements(host);
    let nodes = nodes
        .into_iter()
        .map(|n| g.node(n))
        .filter(|n| !derived(n.origin()))
        .map(|n| n.id().clone())
        .collect();
    let edges = edges
        .into_iter()
        .map(|e| g.edge(e))
        .filter(|e| !derived(e.origin()))
        .map(|e| e.id().clone())
        .collect();
    (nodes, edges)
}

/// Removes every element of `host` (derived edges touching its nodes go with them).
/// Returns how many nodes and edges were removed.
pub fn remove_host(g: &mut Graph, host: &str) -> (usize, usize) {
    let (nodes, edges) = host_elements(g, host);
    let mut removed_edges = 0;
    for e in &edges {
        if g.delete_edge(e).is_ok() {
            removed_edges += 1;
        }
    }
    for n in nodes.iter().rev() {
        let _ = g.delete_node(n);
    }
    (nodes.len(), removed_edges)
}

/// Adds `node`, or replaces the metadata of the node with its ID.
fn upsert_node(g: &mut Graph, node: Node) -> Result<(), GraphError> {
    if g.find_node(&node.id).is_some() {
        let md = node.metadata;
        g.update_node(&node.id, move |m| *m = md)?;
    } else {
        g.add_node(node)?;
    }
    Ok(())
}

/// Adds `edge`, or replaces the metadata of the edge with its ID (re-added when its
/// endpoints changed).
fn upsert_edge(g: &mut Graph, edge: Edge) -> Result<(), GraphError> {
    if let Some(existing) = g.edge_by_id(&edge.id) {
        if existing.parent().id() == &edge.parent && existing.child().id() == &edge.child {
            let md: Metadata = edge.metadata;
            g.update_edge(&edge.id, move |m| *m = md)?;
            return Ok(());
        }
        g.delete_edge(&edge.id)?;
    }
    g.add_edge(edge)?;
    Ok(())
}

/// Checks that an agent of `host` may write `id`: it is new, or already `host`'s.
fn check_node(g: &Graph, host: &str, id: &Identifier) -> Result<(), Refused> {
    match g.node_by_id(id) {
        Some(n) if n.host() != host => Err(other_host("node", id, n.host(), host)),
        _ => Ok(()),
    }
}

fn check_edge(
    g: &Graph,
    host: &str,
    edge: &Edge,
    incoming: Option<&HashSet<&Identifier>>,
) -> Result<(), Refused> {
    if let Some(e) = g.edge_by_id(&edge.id) {
        if e.host() != host {
            return Err(other_host("edge", &edge.id, e.host(), host));
        }
    }
    for (end, id) in [("parent", &edge.parent), ("child", &edge.child)] {
        let in_message = incoming.is_some_and(|s| s.contains(id));
        match g.node_by_id(id) {
            Some(n) if n.host() != host && !in_message => {
                return Err(Refused::new(format!(
                    "edge {}: its {end} {id} belongs to host {:?}, not {host:?}",
                    edge.id,
                    n.host()
                )))
            }
            None if !in_message => {
                return Err(Refused::new(format!(
                    "edge {}: {end} node {id} does not exist",
                    edge.id
                )))
            }
            _ => {}
        }
    }
    Ok(())
}

/// Replaces what `host` has in `g` with `nodes` and `edges` (already stamped): adds
/// what is new, updates what changed, removes what is gone. The whole message is
/// checked first; a refused message changes nothing.
fn replace_host(
    g: &mut Graph,
    host: &str,
    nodes: Vec<Node>,
    edges: Vec<Edge>,
    strict: bool,
) -> Result<(), Refused> {
    let incoming: HashSet<&Identifier> = nodes.iter().map(|n| &n.id).collect();
    if strict {
        for n in &nodes {
            check_node(g, host, &n.id)?;
        }
        for e in &edges {
            check_edge(g, host, e, Some(&incoming))?;
        }
    }
    let keep_nodes: HashSet<Identifier> = nodes.iter().map(|n| n.id.clone()).collect();
    let keep_edges: HashSet<Identifier> = edges.iter().map(|e| e.id.clone()).collect();
    let (old_nodes, old_edges) = host_elements(g, host);
    for id in old_edges.iter().filter(|id| !keep_edges.contains(id)) {
        let _ = g.delete_edge(id);
    }
    for id in old_nodes.iter().filter(|id| !keep_nodes.contains(id)) {
        let _ = g.delete_node(id);
    }
    for n in nodes {
        if !strict && g.node_by_id(&n.id).is_some_and(|x| x.host() != host) {
            continue;
        }
        let _ = upsert_node(g, n);
    }
    for e in edges {
        if !strict && g.edge_by_id(&e.id).is_some_and(|x| x.host() != host) {
            continue;
        }
        // Endpoints were checked (strict) or may be missing (a peer's view): an edge
        // whose endpoint is not here is left out.
        let _ = upsert_edge(g, e);
    }
    Ok(())
}

/// Applies one message of the agent of `host` to the graph. Elements get the
/// connection's `Host` and `Origin` whatever the message says; an element of another
/// host is refused.
pub fn apply_agent(g: &mut Graph, host: &str, msg: GraphMessage) -> Result<(), Refused> {
    let origin = format!("agent.{host}");
    match msg {
        GraphMessage::Sync {
            mut nodes,
            mut edges,
        } => {
            for n in &mut nodes {
                stamp_node(n, host, &origin);
            }
            for e in &mut edges {
                stamp_edge(e, host, &origin);
            }
            replace_host(g, host, nodes, edges, true)
        }
        GraphMessage::SyncRequest => Ok(()),
        GraphMessage::NodeAdded(mut n) | GraphMessage::NodeUpdated(mut n) => {
            check_node(g, host, &n.id)?;
            stamp_node(&mut n, host, &origin);
            upsert_node(g, n).map_err(|e| Refused::new(e.to_string()))
        }
        GraphMessage::NodeDeleted(id) => {
            check_node(g, host, &id)?;
            let _ = g.delete_node(&id);
            Ok(())
        }
        GraphMessage::EdgeAdded(mut e) | GraphMessage::EdgeUpdated(mut e) => {
            check_edge(g, host, &e, None)?;
            stamp_edge(&mut e, host, &origin);
            upsert_edge(g, e).map_err(|e| Refused::new(e.to_string()))
        }
        GraphMessage::EdgeDeleted(id) => {
            if let Some(e) = g.edge_by_id(&id) {
                if e.host() != host {
                    return Err(other_host("edge", &id, e.host(), host));
                }
            }
            let _ = g.delete_edge(&id);
            Ok(())
        }
        // A change of an element this analyzer does not have (it missed its addition)
        // is skipped, as Skydive does; the agent's next `Sync` brings it.
        GraphMessage::NodePartiallyUpdated(id, ops) => {
            match g.node_by_id(&id) {
                Some(n) if n.host() != host => return Err(other_host("node", &id, n.host(), host)),
                Some(_) => {
                    let _ = g.update_node(&id, |m| MetadataOp::apply_all(ops, m));
                }
                None => debug!(host, %id, "partial update of an unknown node skipped"),
            }
            Ok(())
        }
        GraphMessage::EdgePartiallyUpdated(id, ops) => {
            match g.edge_by_id(&id) {
                Some(e) if e.host() != host => return Err(other_host("edge", &id, e.host(), host)),
                Some(_) => {
                    let _ = g.update_edge(&id, |m| MetadataOp::apply_all(ops, m));
                }
                None => debug!(host, %id, "partial update of an unknown edge skipped"),
            }
            Ok(())
        }
    }
}

/// The host a peer's element belongs to, when this analyzer takes it from that peer:
/// not this analyzer's own, not a host owned by a local agent or another peer.
fn accept_from_peer(
    owners: &mut HashMap<String, Owner>,
    own_host: &str,
    peer: &str,
    host: &str,
) -> bool {
    if host == own_host || host.is_empty() {
        return false;
    }
    match owners.get(host) {
        None => {
            owners.insert(host.to_owned(), Owner::Peer(peer.to_owned()));
            true
        }
        Some(Owner::Peer(p)) => p == peer,
        Some(Owner::Agent(_)) => false,
    }
}

/// Applies one message of the peer analyzer `peer`. Its elements keep their `Host`
/// and `Origin`; those of hosts this analyzer has from elsewhere are ignored. Returns
/// the hosts the peer no longer has (after a `Sync`), already removed.
pub fn apply_peer(
    g: &mut Graph,
    owners: &mut HashMap<String, Owner>,
    own_host: &str,
    peer: &str,
    msg: GraphMessage,
) -> Vec<String> {
    match msg {
        GraphMessage::Sync { nodes, edges } => {
            let mut by_host: HashMap<String, (Vec<Node>, Vec<Edge>)> = HashMap::new();
            for n in nodes {
                by_host.entry(n.host.clone()).or_default().0.push(n);
            }
            for e in edges {
                by_host.entry(e.host.clone()).or_default().1.push(e);
            }
            let before: Vec<String> = owners
                .iter()
                .filter(|(_, o)| **o == Owner::Peer(peer.to_owned()))
                .map(|(h, _)| h.clone())
                .collect();
            for (host, (mut nodes, mut edges)) in by_host
                .iter_mut()
                .map(|(h, v)| (h.clone(), std::mem::take(v)))
            {
                if !accept_from_peer(owners, own_host, peer, &host) {
                    continue;
                }
                nodes.retain(|n| !derived(&n.origin));
                edges.retain(|e| !derived(&e.origin));
                let _ = replace_host(g, &host, nodes, edges, false);
            }
            let mut gone = Vec::new();
            for host in before {
                if !by_host.contains_key(&host) {
                    remove_host(g, &host);
                    owners.remove(&host);
                    gone.push(host);
                }
            }
            gone
        }
        GraphMessage::SyncRequest => Vec::new(),
        GraphMessage::NodeAdded(n) | GraphMessage::NodeUpdated(n) => {
            if !derived(&n.origin) && accept_from_peer(owners, own_host, peer, &n.host) {
                let host = n.host.clone();
                if g.node_by_id(&n.id).is_none_or(|x| x.host() == host) {
                    let _ = upsert_node(g, n);
                }
            }
            Vec::new()
        }
        GraphMessage::EdgeAdded(e) | GraphMessage::EdgeUpdated(e) => {
            if !derived(&e.origin) && accept_from_peer(owners, own_host, peer, &e.host) {
                let host = e.host.clone();
                if g.edge_by_id(&e.id).is_none_or(|x| x.host() == host) {
                    let _ = upsert_edge(g, e);
                }
            }
            Vec::new()
        }
        GraphMessage::NodeDeleted(id) => {
            let host = g.node_by_id(&id).map(|n| n.host().to_owned());
            if let Some(h) = host {
                if owners.get(&h) == Some(&Owner::Peer(peer.to_owned())) {
                    let _ = g.delete_node(&id);
                }
            }
            Vec::new()
        }
        GraphMessage::NodePartiallyUpdated(id, ops) => {
            let host = g.node_by_id(&id).map(|n| n.host().to_owned());
            if host.is_some_and(|h| owners.get(&h) == Some(&Owner::Peer(peer.to_owned()))) {
                let _ = g.update_node(&id, |m| MetadataOp::apply_all(ops, m));
            }
            Vec::new()
        }
        GraphMessage::EdgePartiallyUpdated(id, ops) => {
            let host = g.edge_by_id(&id).map(|e| e.host().to_owned());
            if host.is_some_and(|h| owners.get(&h) == Some(&Owner::Peer(peer.to_owned()))) {
                let _ = g.update_edge(&id, |m| MetadataOp::apply_all(ops, m));
            }
            Vec::new()
        }
        GraphMessage::EdgeDeleted(id) => {
            let host = g.edge_by_id(&id).map(|e| e.host().to_owned());
            if let Some(h) = host {
                if owners.get(&h) == Some(&Owner::Peer(peer.to_owned())) {
                    let _ = g.delete_edge(&id);
                }
            }
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, host: &str) -> Node {
        let mut md = Metadata::new();
        md.insert("Name".into(), id.into());
        md.insert("Type".into(), "veth".into());
        Node::new(Identifier::from(id), md, host, "whatever")
    }

    fn edge(p: &str, c: &str) -> Edge {
        let mut md = Metadata::new();
        md.insert("RelationType".into(), "ownership".into());
        Edge::new(Identifier::from(p), Identifier::from(c), md, "", "")
    }

    fn sync(nodes: Vec<Node>, edges: Vec<Edge>) -> GraphMessage {
        GraphMessage::Sync { nodes, edges }
    }

    #[test]
    fn sync_replaces_the_hosts_subgraph_and_stamps_the_connection() {
        let mut g = Graph::new();
        apply_agent(
            &mut g,
            "h1",
            sync(
                vec![node("a", "forged"), node("b", "")],
                vec![edge("a", "b")],
            ),
        )
        .unwrap();
        let a = g.node_by_id(&"a".into()).unwrap();
        assert_eq!((a.host(), a.origin()), ("h1", "agent.h1"));
        assert_eq!(g.edge_count(), 1);
        apply_agent(
            &mut g,
            "h1",
            sync(vec![node("a", "h1"), node("c", "h1")], vec![]),
        )
        .unwrap();
        assert!(g.find_node(&"b".into()).is_none());
        assert!(g.find_node(&"c".into()).is_some());
        assert_eq!(g.edge_count(), 0);
        assert_eq!(remove_host(&mut g, "h1"), (2, 0));
        assert_eq!(g.node_count(), 0);
    }

    #[test]
    fn partial_updates_change_the_keys_they_name() {
        let mut g = Graph::new();
        let mut a = node("a", "h1");
        a.metadata
            .insert("Captures".into(), serde_json::json!([{"ID": "c0"}]));
        a.metadata.insert("MTU".into(), 1500.into());
        apply_agent(
            &mut g,
            "h1",
            sync(vec![a, node("b", "h1")], vec![edge("a", "b")]),
        )
        .unwrap();
        let edge_id = g.edge(g.edges().next().unwrap()).id().clone();
        let ops = vec![
            MetadataOp::Set(
                "Captures".into(),
                serde_json::json!([{"ID": "c1", "State": "active"}]),
            ),
            MetadataOp::Set("Neighbors.Count".into(), 2.into()),
            MetadataOp::Remove("MTU".into()),
        ];
        let rev = g.node_by_id(&"a".into()).unwrap().revision();
        apply_agent(
            &mut g,
            "h1",
            GraphMessage::NodePartiallyUpdated("a".into(), ops),
        )
        .unwrap();
        let a = g.node_by_id(&"a".into()).unwrap();
        let md = a.metadata();
        assert_eq!(md["Captures"][0]["ID"], "c1");
        assert_eq!(md["Neighbors"]["Count"], 2);
        assert!(!md.contains_key("MTU"));
        assert_eq!(md["Name"], "a", "keys not named stay");
        assert_eq!(a.revision(), rev + 1);
        apply_agent(
            &mut g,
            "h1",
            GraphMessage::EdgePartiallyUpdated(
                edge_id.clone(),
                vec![MetadataOp::Set("Weight".into(), 3.into())],
            ),
        )
        .unwrap();
        assert_eq!(g.edge_by_id(&edge_id).unwrap().metadata()["Weight"], 3);
        // Of an element not here: skipped (the next Sync brings it).
        let before = g.snapshot();
        apply_agent(
            &mut g,
            "h1",
            GraphMessage::NodePartiallyUpdated(
                "nope".into(),
                vec![MetadataOp::Remove("Name".into())],
            ),
        )
        .unwrap();
        assert_eq!(g.snapshot(), before);
        // Of another host's: refused, nothing changed.
        for msg in [
            GraphMessage::NodePartiallyUpdated("a".into(), vec![MetadataOp::Remove("Name".into())]),
            GraphMessage::EdgePartiallyUpdated(
                edge_id,
                vec![MetadataOp::Remove("RelationType".into())],
            ),
        ] {
            let e = apply_agent(&mut g, "h2", msg).unwrap_err();
            assert!(e.0.contains("belongs to host \"h1\""), "{e}");
        }
        assert_eq!(g.snapshot(), before);
        // A peer changes only the hosts this analyzer has from it.
        let mut owners = HashMap::from([("h1".to_owned(), Owner::Agent(1))]);
        let op = || vec![MetadataOp::Set("X".into(), 1.into())];
        apply_peer(
            &mut g,
            &mut owners,
            "me",
            "p",
            GraphMessage::NodePartiallyUpdated("a".into(), op()),
        );
        assert_eq!(g.snapshot(), before);
        owners.insert("h1".into(), Owner::Peer("p".into()));
        apply_peer(
            &mut g,
            &mut owners,
            "me",
            "p",
            GraphMessage::NodePartiallyUpdated("a".into(), op()),
        );
        assert_eq!(g.node_by_id(&"a".into()).unwrap().metadata()["X"], 1);
    }

    #[test]
    fn an_agent_cannot_touch_another_hosts_elements() {
        let mut g = Graph::new();
        apply_agent(&mut g, "h1", sync(vec![node("a", "h1")], vec![])).unwrap();
        let before = g.snapshot();
        for msg in [
            GraphMessage::NodeAdded(node("a", "h2")),
            GraphMessage::NodeUpdated(node("a", "h1")),
            GraphMessage::NodeDeleted("a".into()),
            sync(vec![node("a", "h2")], vec![]),
        ] {
            let e = apply_agent(&mut g, "h2", msg).unwrap_err();
            assert!(e.0.contains("belongs to host \"h1\""), "{e}");
        }
        apply_agent(&mut g, "h2", GraphMessage::NodeAdded(node("x", "h2"))).unwrap();
        let e = apply_agent(&mut g, "h2", GraphMessage::EdgeAdded(edge("x", "a"))).unwrap_err();
        assert!(e.0.contains("belongs to host \"h1\""), "{e}");
        let e = apply_agent(&mut g, "h2", GraphMessage::EdgeAdded(edge("x", "nope"))).unwrap_err();
        assert!(e.0.contains("does not exist"), "{e}");
        assert_eq!(g.node_by_id(&"a".into()).unwrap().to_owned(), before.0[0]);
    }

    #[test]
    fn peers_never_override_local_agents_and_syncs_drop_gone_hosts() {
        let mut g = Graph::new();
        let mut owners = HashMap::new();
        apply_agent(&mut g, "h1", sync(vec![node("a", "h1")], vec![])).unwrap();
        owners.insert("h1".to_owned(), Owner::Agent(1));
        let mut forged = node("a", "h1");
        forged.metadata.insert("Evil".into(), true.into());
        let gone = apply_peer(
            &mut g,
            &mut owners,
            "an1",
            "an2",
            sync(vec![forged, node("b", "h2"), node("own", "an1")], vec![]),
        );
        assert!(gone.is_empty());
        assert!(!g
            .node_by_id(&"a".into())
            .unwrap()
            .metadata()
            .contains_key("Evil"));
        assert_eq!(g.node_by_id(&"b".into()).unwrap().host(), "h2");
        assert!(g.find_node(&"own".into()).is_none());
        assert_eq!(owners["h2"], Owner::Peer("an2".into()));
        let gone = apply_peer(&mut g, &mut owners, "an1", "an2", sync(vec![], vec![]));
        assert_eq!(gone, vec!["h2".to_owned()]);
        assert!(g.find_node(&"b".into()).is_none());
        assert!(g.find_node(&"a".into()).is_some());
    }
}
