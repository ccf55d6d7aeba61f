//! Cross-host tunnel edges: a tunnel interface (VXLAN, GENEVE, GRE, an OVS tunnel
//! port) whose `RemoteIP` is an address of an interface on another host gets an edge
//! `RelationType: tunnel` to that interface, so paths (`ShortestPathTo`) cross hosts.
//!
//! Only an analyzer sees several hosts, so the analyzer derives these edges itself:
//! their `Origin` is `analyzer.<its host id>` ([`super::merge::DERIVED_ORIGIN`]), they
//! are never replicated (each analyzer derives its own from the same merged graph) and
//! never replaced by a host's `Sync`. [`follow`] keeps them current from the graph's
//! events through a [`TunnelIndex`]: which interfaces hold which address, which
//! tunnels point at which address, and the edges made. An edge goes when either end
//! goes (the graph deletes a node's edges with it), when the address leaves the
//! interface, or when the tunnel's remote changes.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use topotap_topology::schema::{key, relation};
use topotap_topology::{Edge, Graph, GraphEvent, Identifier, Metadata, Node, SharedGraph};
use tracing::{debug, warn};

use super::merge::DERIVED_ORIGIN;

/// A tunnel end: the host of the tunnel interface and its remote address.
#[derive(Debug, Clone, PartialEq, Eq)]
struct End {
    host: String,
    remote: IpAddr,
}

/// What tunnel edges depend on, kept from the graph's nodes.
#[derive(Debug, Default)]
pub struct TunnelIndex {
    /// Address -> interfaces holding it.
    by_ip: HashMap<IpAddr, HashSet<Identifier>>,
    /// Interface -> its host and addresses (only interfaces with addresses).
    addrs: HashMap<Identifier, (String, Vec<IpAddr>)>,
    /// Tunnel interface -> its end.
    ends: HashMap<Identifier, End>,
    /// Remote address -> tunnels pointing at it.
    by_remote: HashMap<IpAddr, HashSet<Identifier>>,
    /// Tunnel -> the interfaces it has an edge to.
    made: HashMap<Identifier, HashSet<Identifier>>,
    /// Tunnels whose edges may be wrong.
    dirty: HashSet<Identifier>,
}

/// The changes that bring the graph's tunnel edges in line with the index.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    pub add: Vec<Edge>,
    pub delete: Vec<Identifier>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.delete.is_empty()
    }
}

/// The addresses (without prefix length) of an interface's `IPV4` and `IPV6`.
fn addresses(md: &Metadata) -> Vec<IpAddr> {
    let mut out = Vec::new();
    for k in [key::IPV4, key::IPV6] {
        if let Some(list) = md.get(k).and_then(|v| v.as_array()) {
            for cidr in list.iter().filter_map(|v| v.as_str()) {
                let ip = cidr.split_once('/').map_or(cidr, |(ip, _)| ip);
                if let Ok(ip) = ip.parse::<IpAddr>() {
                    if !ip.is_loopback() && !ip.is_unspecified() {
                        out.push(ip);
                    }
                }
            }
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

fn remote(md: &Metadata) -> Option<IpAddr> {
    md.get(key::REMOTE_IP)?
        .as_str()?
        .parse::<IpAddr>()
        .ok()
        .filter(|ip| !ip.is_unspecified() && !ip.is_multicast())
}

/// The edge from `tunnel` (on `host`) to `target`.
fn tunnel_edge(tunnel: &Identifier, target: &Identifier, host: &str, origin: &str) -> Edge {
    let mut md = Metadata::new();
    md.insert(key::RELATION_TYPE.into(), relation::TUNNEL.into());
    Edge::new(tunnel.clone(), target.clone(), md, host, origin)
}

fn is_tunnel_edge(md: &Metadata) -> bool {
    topotap_topology::schema::str_of(md, key::RELATION_TYPE) == Some(relation::TUNNEL)
}

impl TunnelIndex {
    /// A node was added or changed.
    pub fn node_changed(&mut self, n: &Node) {
        self.see(&n.id, &n.host, &n.metadata);
    }

    fn see(&mut self, id: &Identifier, host: &str, md: &Metadata) {
        let ips = addresses(md);
        let old = self.addrs.remove(id);
        if !ips.is_empty() {
            self.addrs
                .insert(id.clone(), (host.to_owned(), ips.clone()));
        }
        let same = match &old {
            Some((h, o)) => *o == ips && h == host,
            None => ips.is_empty(),
        };
        if !same {
            let old_ips = old.map(|(_, o)| o).unwrap_or_default();
            for ip in &old_ips {
                self.unindex_ip(ip, id);
            }
            for ip in &ips {
                self.by_ip.entry(*ip).or_default().insert(id.clone());
            }
            self.touch(&old_ips);
            self.touch(&ips);
        }
        let end = remote(md).map(|remote| End {
            host: host.to_owned(),
            remote,
        });
        if self.ends.get(id) != end.as_ref() {
            self.drop_end(id);
            if let Some(end) = end {
                self.by_remote
                    .entry(end.remote)
                    .or_default()
                    .insert(id.clone());
                self.ends.insert(id.clone(), end);
            }
            self.dirty.insert(id.clone());
        }
    }

    /// A node was deleted (its edges went with it).
    pub fn node_deleted(&mut self, id: &Identifier) {
        if let Some((_, ips)) = self.addrs.remove(id) {
            for ip in &ips {
                self.unindex_ip(ip, id);
            }
            self.touch(&ips);
            for targets in self.made.values_mut() {
                targets.remove(id);
            }
        }
        self.drop_end(id);
        self.made.remove(id);
        self.dirty.remove(id);
    }

    /// Forgets everything and indexes `g` again, taking the tunnel edges it has whose
    /// origin is `origin` as made.
    pub fn rebuild(&mut self, g: &Graph, origin: &str) {
        *self = TunnelIndex::default();
        for n in g.nodes() {
            let n = g.node(n);
            self.see(n.id(), n.host(), n.metadata());
        }
        for e in g.edges() {
            let e = g.edge(e);
            if e.origin() == origin && is_tunnel_edge(e.metadata()) {
                self.made
                    .entry(e.parent().id().clone())
                    .or_default()
                    .insert(e.child().id().clone());
            }
        }
        self.dirty = self.ends.keys().chain(self.made.keys()).cloned().collect();
    }

    /// The edges to add and delete for the tunnels changed since the last plan; taken
    /// as done.
    pub fn plan(&mut self, origin: &str) -> Plan {
        let mut plan = Plan::default();
        for t in std::mem::take(&mut self.dirty) {
            let want: HashSet<Identifier> = match self.ends.get(&t) {
                Some(end) => self
                    .by_ip
                    .get(&end.remote)
                    .into_iter()
                    .flatten()
                    .filter(|id| **id != t)
                    .filter(|id| self.addrs.get(*id).is_some_and(|(h, _)| *h != end.host))
                    .cloned()
                    .collect(),
                None => HashSet::new(),
            };
            let had = self.made.remove(&t).unwrap_or_default();
            for gone in had.difference(&want) {
                plan.delete
                    .push(Identifier::for_edge(&t, gone, relation::TUNNEL));
            }
            if let Some(end) = self.ends.get(&t) {
                for new in want.difference(&had) {
                    plan.add.push(tunnel_edge(&t, new, &end.host, origin));
                }
            }
            if !want.is_empty() {
                self.made.insert(t, want);
            }
        }
        plan
    }

    fn unindex_ip(&mut self, ip: &IpAddr, id: &Identifier) {
        if let Some(s) = self.by_ip.get_mut(ip) {
            s.remove(id);
            if s.is_empty() {
                self.by_ip.remove(ip);
            }
        }
    }

    fn drop_end(&mut self, id: &Identifier) {
        if let Some(old) = self.ends.remove(id) {
            if let Some(s) = self.by_remote.get_mut(&old.remote) {
                s.remove(id);
                if s.is_empty() {
                    self.by_remote.remove(&old.remote);
                }
            }
            self.dirty.insert(id.clone());
        }
    }

    /// Marks the tunnels pointing at any of `ips` for a new plan.
    fn touch(&mut self, ips: &[IpAddr]) {
        for ip in ips {
            if let Some(ts) = self.by_remote.get(ip) {
                self.dirty.extend(ts.iter().cloned());
            }
        }
    }
}

/// Applies a plan to the graph. An edge whose end went meanwhile is skipped (the next
/// events bring the index up to date).
pub fn apply(g: &mut Graph, plan: Plan) {
    for id in &plan.delete {
        let _ = g.delete_edge(id);
    }
    for e in plan.add {
        let (p, c) = (e.parent.clone(), e.child.clone());
        if g.find_edge(&e.id).is_some() {
            continue;
        }
        if let Err(err) = g.add_edge(e) {
            debug!(tunnel = %p, target = %c, %err, "tunnel edge not added");
        }
    }
}

/// Keeps the tunnel edges of `graph` current for the life of the process, on a thread
/// of its own (graph locks are blocking). `own_host` is the analyzer's host id.
pub fn follow(graph: SharedGraph, own_host: &str) {
    let origin = format!("{DERIVED_ORIGIN}{own_host}");
    let mut rx = graph.subscribe();
    let spawned = std::thread::Builder::new()
        .name("fleet-tunnels".into())
        .spawn(move || {
            use tokio::sync::broadcast::error::{RecvError, TryRecvError};
            let mut index = TunnelIndex::default();
            index.rebuild(&graph.read(), &origin);
            loop {
                let mut lagged = false;
                let see = |ev: &GraphEvent, index: &mut TunnelIndex| match ev {
                    GraphEvent::NodeAdded(n) | GraphEvent::NodeUpdated(n) => index.node_changed(n),
                    GraphEvent::NodeDeleted(n) => index.node_deleted(&n.id),
                    _ => {}
                };
                match rx.blocking_recv() {
                    Ok(ev) => see(&ev, &mut index),
                    Err(RecvError::Lagged(_)) => lagged = true,
                    Err(RecvError::Closed) => return,
                }
                // Take what is queued already, then act once.
                loop {
                    match rx.try_recv() {
                        Ok(ev) => see(&ev, &mut index),
                        Err(TryRecvError::Lagged(_)) => lagged = true,
                        Err(TryRecvError::Empty) => break,
                        Err(TryRecvError::Closed) => return,
                    }
                }
                if lagged {
                    index.rebuild(&graph.read(), &origin);
                }
                let plan = index.plan(&origin);
                if !plan.is_empty() {
                    apply(&mut graph.write(), plan);
                }
            }
        });
    if let Err(e) = spawned {
        warn!(%e, "cannot start the tunnel edge thread: no cross-host tunnel edges");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ORIGIN: &str = "analyzer.an1";

    fn iface(id: &str, host: &str, md: serde_json::Value) -> Node {
        let mut m: Metadata = serde_json::from_value(md).unwrap();
        m.insert("Name".into(), id.into());
        Node::new(Identifier::from(id), m, host, &format!("agent.{host}"))
    }

    /// Feeds every node of `g` through the index as events would, plans and applies.
    fn settle(index: &mut TunnelIndex, g: &mut Graph, events: &[GraphEvent]) {
        for ev in events {
            match ev {
                GraphEvent::NodeAdded(n) | GraphEvent::NodeUpdated(n) => index.node_changed(n),
                GraphEvent::NodeDeleted(n) => index.node_deleted(&n.id),
                _ => {}
            }
        }
        let plan = index.plan(ORIGIN);
        apply(g, plan);
    }

    fn tunnel_edges(g: &Graph) -> Vec<(String, String, String)> {
        let mut v: Vec<_> = g
            .edges()
            .map(|e| g.edge(e))
            .filter(|e| is_tunnel_edge(e.metadata()))
            .map(|e| {
                (
                    e.parent().id().to_string(),
                    e.child().id().to_string(),
                    e.origin().to_owned(),
                )
            })
            .collect();
        v.sort();
        v
    }

    /// Adds or replaces a node, returning the event the graph published.
    fn put(g: &mut Graph, n: Node) -> GraphEvent {
        let mut rx = g.subscribe();
        if g.find_node(&n.id).is_some() {
            let md = n.metadata.clone();
            g.update_node(&n.id, move |m| *m = md).unwrap();
        } else {
            g.add_node(n).unwrap();
        }
        (*rx.try_recv().unwrap()).clone()
    }

    fn del(g: &mut Graph, id: &str) -> GraphEvent {
        let n = g.delete_node(&id.into()).unwrap();
        GraphEvent::NodeDeleted(n)
    }

    #[test]
    fn a_tunnel_gets_an_edge_to_the_other_hosts_interface_holding_its_remote() {
        let mut g = Graph::new();
        let mut ix = TunnelIndex::default();
        let evs = vec![
            put(
                &mut g,
                iface(
                    "vx1",
                    "h1",
                    json!({"Type":"vxlan","RemoteIP":"10.0.0.2","LocalIP":"10.0.0.1"}),
                ),
            ),
            put(
                &mut g,
                iface("eth0-h1", "h1", json!({"IPV4":["10.0.0.1/24"]})),
            ),
            // The same address on the tunnel's own host is not the remote end.
            put(
                &mut g,
                iface("dup-h1", "h1", json!({"IPV4":["10.0.0.2/32"]})),
            ),
        ];
        settle(&mut ix, &mut g, &evs);
        assert!(tunnel_edges(&g).is_empty());

        // The remote host's interface comes later: the edge appears, one only.
        let ev = put(
            &mut g,
            iface("eth0-h2", "h2", json!({"IPV4":["10.0.0.2/24"]})),
        );
        settle(&mut ix, &mut g, &[ev]);
        assert_eq!(
            tunnel_edges(&g),
            vec![("vx1".into(), "eth0-h2".into(), ORIGIN.into())]
        );
        let e = g
            .edge_by_id(&Identifier::for_edge(
                &"vx1".into(),
                &"eth0-h2".into(),
                relation::TUNNEL,
            ))
            .unwrap();
        assert_eq!(e.host(), "h1");
        let ev = put(
            &mut g,
            iface("eth0-h2", "h2", json!({"IPV4":["10.0.0.2/24"],"MTU":1400})),
        );
        settle(&mut ix, &mut g, &[ev]);
        assert_eq!(tunnel_edges(&g).len(), 1);

        // The address leaves the interface: the edge goes; it comes back: so does the edge.
        let ev = put(&mut g, iface("eth0-h2", "h2", json!({})));
        settle(&mut ix, &mut g, &[ev]);
        assert!(tunnel_edges(&g).is_empty());
        let ev = put(
            &mut g,
            iface(
                "eth0-h2",
                "h2",
                json!({"IPV6":["fd00::2/64"], "IPV4":["10.0.0.2/24"]}),
            ),
        );
        settle(&mut ix, &mut g, &[ev]);
        assert_eq!(tunnel_edges(&g).len(), 1);

        // The remote interface goes (its host went): the edge went with it, and the
        // index forgets it.
        let ev = del(&mut g, "eth0-h2");
        settle(&mut ix, &mut g, &[ev]);
        assert!(tunnel_edges(&g).is_empty());
        assert!(ix.made.is_empty());
    }

    #[test]
    fn the_edge_follows_the_tunnels_remote_and_goes_with_the_tunnel() {
        let mut g = Graph::new();
        let mut ix = TunnelIndex::default();
        let evs = vec![
            put(&mut g, iface("a", "h2", json!({"IPV4":["192.0.2.2/24"]}))),
            put(&mut g, iface("b", "h3", json!({"IPV6":["2001:db8::3/64"]}))),
            put(
                &mut g,
                iface(
                    "gre1",
                    "h1",
                    json!({"Type":"gretap","RemoteIP":"192.0.2.2"}),
                ),
            ),
            // Multicast VXLANs and tunnels without a remote get nothing.
            put(
                &mut g,
                iface("mc", "h1", json!({"Type":"vxlan","Group":"239.1.1.1"})),
            ),
        ];
        settle(&mut ix, &mut g, &evs);
        assert_eq!(
            tunnel_edges(&g),
            vec![("gre1".into(), "a".into(), ORIGIN.into())]
        );
        let ev = put(
            &mut g,
            iface(
                "gre1",
                "h1",
                json!({"Type":"ip6gretap","RemoteIP":"2001:db8::3"}),
            ),
        );
        settle(&mut ix, &mut g, &[ev]);
        assert_eq!(
            tunnel_edges(&g),
            vec![("gre1".into(), "b".into(), ORIGIN.into())]
        );
        let ev = del(&mut g, "gre1");
        settle(&mut ix, &mut g, &[ev]);
        assert!(tunnel_edges(&g).is_empty());
        assert!(ix.ends.is_empty() && ix.by_remote.is_empty() && ix.made.is_empty());
    }

    #[test]
    fn a_rebuild_finds_the_edges_made_and_drops_stale_ones() {
        let mut g = Graph::new();
        g.add_node(iface("t", "h1", json!({"RemoteIP":"10.1.0.2"})))
            .unwrap();
        g.add_node(iface("x", "h2", json!({"IPV4":["10.1.0.2/16"]})))
            .unwrap();
        g.add_node(iface("y", "h3", json!({"IPV4":["10.1.0.9/16"]})))
            .unwrap();
        // A stale edge (to an interface no longer holding the address) from before.
        g.add_edge(tunnel_edge(&"t".into(), &"y".into(), "h1", ORIGIN))
            .unwrap();
        // Another analyzer's derived edge is not this one's to manage.
        g.add_edge(tunnel_edge(
            &"x".into(),
            &"y".into(),
            "h2",
            "analyzer.other",
        ))
        .unwrap();
        let mut ix = TunnelIndex::default();
        ix.rebuild(&g, ORIGIN);
        let plan = ix.plan(ORIGIN);
        apply(&mut g, plan);
        assert_eq!(
            tunnel_edges(&g),
            vec![
                ("t".into(), "x".into(), ORIGIN.into()),
                ("x".into(), "y".into(), "analyzer.other".into())
            ]
        );
        // Nothing changed: nothing to do.
        ix.rebuild(&g, ORIGIN);
        assert!(ix.plan(ORIGIN).is_empty());
    }

    #[test]
    fn the_follower_keeps_the_shared_graph_current() {
        let graph = SharedGraph::new(Graph::new(), "an1");
        follow(graph.clone(), "an1");
        graph
            .write()
            .add_node(iface("eth0", "h2", json!({"IPV4":["10.9.0.2/24"]})))
            .unwrap();
        graph
            .write()
            .add_node(iface("vx", "h1", json!({"RemoteIP":"10.9.0.2"})))
            .unwrap();
        let count = || tunnel_edges(&graph.read()).len();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while count() != 1 {
            assert!(std::time::Instant::now() < deadline, "no tunnel edge");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        graph.write().delete_node(&"eth0".into()).unwrap();
        graph
            .write()
            .add_node(iface("eth0b", "h3", json!({"IPV4":["10.9.0.2/24"]})))
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while tunnel_edges(&graph.read())
            != vec![(
                "vx".to_owned(),
                "eth0b".to_owned(),
                "analyzer.an1".to_owned(),
            )]
        {
            assert!(std::time::Instant::now() < deadline, "edge did not move");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}
