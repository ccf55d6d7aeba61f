//! An agent's answers to its analyzers' requests (Skydive's on-demand server): start
//! and stop a capture on one of its nodes, start and stop a packet injection from one,
//! and hand out its flow tables.
//!
//! Captures run with the agent's own engine and sinks (exports leave from this host);
//! their state reaches the analyzers as `Metadata.Captures` in the agent's graph. A
//! `Start` is idempotent per (capture UUID, node) and an injection's per UUID, so a
//! request sent twice, or by two analyzers, runs once.

use serde::Deserialize;
use serde_json::{json, Value};
use topotap_topology::Identifier;

use super::link::Requests;
use super::protocol::{self, Reply, Request};
use crate::capture::{placer, Capture};
use crate::error::Error;
use crate::injection::forge::Rng;
use crate::injection::Injection;
use crate::services::Services;

/// Most flows one `TableQuery` answer carries; the answer says when it was cut.
pub const MAX_TABLE_FLOWS: usize = 100_000;
/// Most bytes of flows one `TableQuery` answer carries when the query does not say
/// (`MaxBytes`): half an analyzer's default message limit. A larger answer would be
/// refused, and the agent's connection closed with it.
pub const DEFAULT_TABLE_BYTES: usize = 16 << 20;

/// What is left of an answer's room: flows and bytes of JSON.
struct Room {
    flows: usize,
    bytes: usize,
    /// Something did not fit.
    cut: bool,
}

/// Counts the bytes written through it.
struct Counter(usize);

impl std::io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Room {
    fn new(max_bytes: usize) -> Room {
        Room {
            flows: MAX_TABLE_FLOWS,
            bytes: max_bytes,
            cut: false,
        }
    }

    /// Whether `v` fits in what is left (then it is taken from it); once one does
    /// not, nothing more does.
    fn take(&mut self, v: &Value) -> bool {
        if self.cut {
            return false;
        }
        let mut size = Counter(1);
        let _ = serde_json::to_writer(&mut size, v);
        if self.flows == 0 || size.0 > self.bytes {
            self.cut = true;
            return false;
        }
        self.flows -= 1;
        self.bytes -= size.0;
        true
    }
}

/// The agent's request handler.
pub struct OnDemand(pub Services);

#[derive(Deserialize)]
struct OnNode {
    #[serde(rename = "NodeID")]
    node: String,
    #[serde(rename = "Resource")]
    resource: Value,
}

fn failed(req: &Request, e: Error) -> Reply {
    let status = crate::http::ApiError::from(e.clone()).status.as_u16();
    req.reply(status, json!({"Error": e.reason()}))
}

impl Requests for OnDemand {
    fn handle(&self, req: Request) -> Reply {
        topotap_topology::blocking::section("fleet request");
        let result = match (req.namespace.as_str(), req.kind.as_str()) {
            (protocol::NS_CAPTURE, "Start") => self.capture(&req, true),
            (protocol::NS_CAPTURE, "Stop") => self.capture(&req, false),
            (protocol::NS_INJECTION, "Start") => self.injection(&req, true),
            (protocol::NS_INJECTION, "Stop") => self.injection(&req, false),
            (protocol::NS_FLOW, "TableQuery") => self.table_query(&req),
            (ns, kind) => Err(Error::invalid(format!("unknown request {ns} {kind:?}"))),
        };
        match result {
            Ok(obj) => req.reply(200, obj),
            Err(e) => failed(&req, e),
        }
    }
}

fn on_node(req: &Request) -> Result<OnNode, Error> {
    let target: OnNode = serde_json::from_value(req.obj.clone())
        .map_err(|e| Error::invalid(format!("{} {}: invalid Obj: {e}", req.namespace, req.kind)))?;
    if target.node.is_empty() {
        return Err(Error::invalid("NodeID: empty"));
    }
    Ok(target)
}

impl OnDemand {
    fn capture(&self, req: &Request, start: bool) -> Result<Value, Error> {
        let target = on_node(req)?;
        let node = Identifier::from(target.node.as_str());
        let capture: Capture = serde_json::from_value(target.resource.clone())
            .map_err(|e| Error::invalid(format!("Resource: not a capture: {e}")))?;
        if capture.uuid.is_empty() {
            return Err(Error::invalid("Resource: capture without UUID"));
        }
        let echo = json!({"NodeID": target.node, "Resource": target.resource});
        if !start {
            return if self.0.assigned.stop(&capture.uuid, &node) {
                Ok(echo)
            } else {
                Err(Error::not_found(format!(
                    "capture {} does not run on node {node}",
                    capture.uuid
                )))
            };
        }
        capture.validate()?;
        {
            let g = self.0.graph.read();
            if g.find_node(&node).is_none() {
                return Err(Error::not_found(format!("no node {node} on this host")));
            }
            if !placer::capturable(&g, &node, &capture) {
                return Err(Error::invalid(format!(
                    "node {node} is not a node this capture can run on"
                )));
            }
        }
        self.0.assigned.start(capture, node);
        Ok(echo)
    }

    fn injection(&self, req: &Request, start: bool) -> Result<Value, Error> {
        let target = on_node(req)?;
        let node = Identifier::from(target.node.as_str());
        let mut inj: Injection = serde_json::from_value(target.resource.clone())
            .map_err(|e| Error::invalid(format!("Resource: not an injection: {e}")))?;
        if inj.uuid.is_empty() {
            return Err(Error::invalid("Resource: injection without UUID"));
        }
        let echo = json!({"NodeID": target.node, "Resource": target.resource});
        let store = &self.0.dispatched_injections;
        if !start {
            return if store.forget(&inj.uuid) {
                Ok(echo)
            } else {
                Err(Error::not_found(format!(
                    "injection {} does not run here",
                    inj.uuid
                )))
            };
        }
        if store.get(&inj.uuid).is_some() {
            return Ok(echo);
        }
        // The analyzer resolved the addresses; here the source is the node it named.
        inj.src = format!("G.V('{}')", target.node.replace(['\'', '\\'], ""));
        inj.dst.clear();
        inj.validate()?;
        {
            let g = self.0.graph.read();
            if g.find_node(&node).is_none() {
                return Err(Error::not_found(format!("no node {node} on this host")));
            }
            inj.resolve(
                &g,
                &self.0.extensions,
                &self.0.query_budget,
                &mut Rng::from_entropy(),
            )?;
        }
        crate::api::injection::allowed(&self.0.sinks, &inj)?;
        store.adopt(inj);
        Ok(echo)
    }

    /// The flow tables as they are now, or the flows of the time the query asks about
    /// from this agent's history.
    fn table_query(&self, req: &Request) -> Result<Value, Error> {
        let invalid = |e: protocol::Refused| Error::invalid(format!("TableQuery: {e}"));
        let max_bytes = protocol::table_query_max_bytes(&req.obj).map_err(invalid)?;
        let room = Room::new(max_bytes.unwrap_or(DEFAULT_TABLE_BYTES));
        match protocol::table_query_time(&req.obj).map_err(invalid)? {
            None => Ok(self.tables(room)),
            Some(time) => self.past_flows(time, room),
        }
    }

    /// The flows of `time` this agent recorded in its history (a store shared with
    /// other agents holds theirs too), as many as `room` holds:
    /// `{"Past": true, "Complete": <the history reaches back to From>, "Flows":
    /// [{"NodeID", "Flow", "Samples"}], "Truncated"}`. Blocking (a store read).
    fn past_flows(&self, time: protocol::FlowTime, mut room: Room) -> Result<Value, Error> {
        let Some(history) = &self.0.history else {
            return Err(Error::invalid(
                "Backend does not support history: this agent runs with --history off",
            ));
        };
        let (flows, complete) = history
            .host_flows_between(&self.0.host_id, time.from, time.at)
            .map_err(|e| Error::unavailable(format!("flow history: {e}")))?;
        let flows: Vec<Value> = flows
            .into_iter()
            .map(|f| json!({"NodeID": f.node.to_string(), "Flow": f.doc, "Samples": f.samples}))
            .take_while(|f| room.take(f))
            .collect();
        Ok(json!({"Past": true, "Complete": complete, "Flows": flows, "Truncated": room.cut}))
    }

    /// Every flow table of this agent, as many flows as `room` holds.
    fn tables(&self, mut room: Room) -> Value {
        let (tables, truncated) = self.0.sinks.flows.tables(MAX_TABLE_FLOWS);
        let tables: Vec<Value> = tables
            .into_iter()
            .map(|(capture, node, flows)| {
                let flows: Vec<Value> = flows.into_iter().take_while(|f| room.take(f)).collect();
                json!({"CaptureID": capture, "NodeID": node.to_string(), "Flows": flows})
            })
            .collect();
        json!({"Tables": tables, "Truncated": truncated || room.cut})
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use topotap_topology::{Graph, SharedGraph};

    fn agent() -> OnDemand {
        let graph = SharedGraph::new(Graph::new(), "h1");
        OnDemand(Services::new(graph, "h1", Default::default()))
    }

    fn ask(o: &OnDemand, ns: &str, kind: &str, obj: Value) -> Reply {
        let req = Request::new(ns, kind, obj);
        let reply = o.handle(req.clone());
        assert_eq!(reply.uuid, req.uuid);
        assert_eq!(reply.kind, format!("{kind}Reply"));
        reply
    }

    #[test]
    fn bad_requests_get_a_status_and_a_reason() {
        let o = agent();
        let capture = json!({"UUID": "c1", "GremlinQuery": "G.V()"});
        let r = ask(
            &o,
            protocol::NS_CAPTURE,
            "Start",
            json!({"NodeID": "nope", "Resource": capture}),
        );
        assert_eq!(r.status, 404, "{r:?}");
        assert_eq!(r.reason(), "no node nope on this host");
        let r = ask(&o, protocol::NS_CAPTURE, "Start", json!([1, 2]));
        assert_eq!(r.status, 400, "{r:?}");
        let r = ask(
            &o,
            protocol::NS_CAPTURE,
            "Start",
            json!({"NodeID": "n", "Resource": {"UUID": "c1", "GremlinQuery": "G.V("}}),
        );
        assert_eq!(r.status, 400, "{r:?}");
        let r = ask(
            &o,
            protocol::NS_CAPTURE,
            "Start",
            json!({"NodeID": "n", "Resource": {"GremlinQuery": "G.V()"}}),
        );
        assert_eq!(r.status, 400, "{r:?}");
        let r = ask(
            &o,
            protocol::NS_CAPTURE,
            "Stop",
            json!({"NodeID": "n", "Resource": capture}),
        );
        assert_eq!(r.status, 404, "{r:?}");
        let r = ask(
            &o,
            protocol::NS_INJECTION,
            "Start",
            json!({"NodeID": "nope", "Resource": {"UUID": "i1", "Type": "icmp4", "SrcIP": "10.0.0.1", "DstIP": "10.0.0.2", "SrcMAC": "02:00:00:00:00:01", "DstMAC": "02:00:00:00:00:02"}}),
        );
        assert_eq!(r.status, 404, "{r:?}");
        let r = ask(
            &o,
            protocol::NS_INJECTION,
            "Stop",
            json!({"NodeID": "n", "Resource": {"UUID": "i1"}}),
        );
        assert_eq!(r.status, 404, "{r:?}");
        let r = ask(&o, "Flow", "Explode", json!({}));
        assert_eq!(r.status, 400, "{r:?}");
        assert!(o.0.assigned.list().is_empty());
        assert!(o.0.dispatched_injections.list().is_empty());
    }

    #[test]
    fn flow_tables_answer_even_when_empty() {
        let r = ask(&agent(), protocol::NS_FLOW, "TableQuery", json!({}));
        assert_eq!(r.status, 200);
        assert_eq!(r.obj, json!({"Tables": [], "Truncated": false}));
    }

    #[test]
    fn past_flows_need_a_history_and_a_valid_time() {
        let o = agent();
        let past = protocol::table_query(Some(protocol::FlowTime { from: 1, at: 2 }), 1000);
        let r = o.handle(past);
        assert_eq!(r.status, 400, "{r:?}");
        assert_eq!(
            r.reason(),
            "Backend does not support history: this agent runs with --history off"
        );
        let r = ask(&o, protocol::NS_FLOW, "TableQuery", json!({"At": "x"}));
        assert_eq!(r.status, 400, "{r:?}");
        assert!(r.reason().starts_with("TableQuery: At:"), "{r:?}");
        let r = ask(&o, protocol::NS_FLOW, "TableQuery", json!({"MaxBytes": -1}));
        assert_eq!(r.status, 400, "{r:?}");
    }

    #[test]
    fn past_flows_answer_what_fits_of_this_agents_own() {
        use crate::history::flows::FlowChange;
        use crate::history::{redb_store::RedbStore, History, HistoryStore};
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open(&dir.path().join("h.redb")).unwrap();
        // After the store's horizon (when it was created).
        let t = topotap_topology::now_ms() + 1000;
        let open = |id: &str, at: i64| FlowChange::Open {
            id: id.into(),
            node: "n1".into(),
            at: t + at,
            start: t + at,
            doc: serde_json::to_vec(&json!({"UUID": id, "Pad": "x".repeat(100)})).unwrap(),
            raw: Vec::new(),
        };
        // Two flows of this agent, one of another sharing the store.
        let changes = [
            open("h1/c/n1/1", 100),
            open("h1/c/n1/2", 110),
            open("h9/c/n1/3", 120),
        ];
        store.apply_flows(&changes).unwrap();
        let mut o = agent();
        o.0.history = Some(History::new(Arc::new(store), Default::default()));
        let time = protocol::FlowTime {
            from: t,
            at: t + 200,
        };
        let r = o.handle(protocol::table_query(Some(time), 1 << 20));
        assert_eq!(r.status, 200, "{r:?}");
        let ids = |r: &Reply| -> Vec<Value> {
            r.obj["Flows"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f["Flow"]["UUID"].clone())
                .collect()
        };
        assert_eq!(ids(&r), [json!("h1/c/n1/1"), json!("h1/c/n1/2")], "{r:?}");
        assert_eq!(
            (r.obj["Past"].clone(), r.obj["Truncated"].clone()),
            (json!(true), json!(false))
        );
        assert_eq!(r.obj["Flows"][0]["NodeID"], "n1");
        assert_eq!(r.obj["Complete"], true);
        // Room for one: cut, and says so.
        let r = o.handle(protocol::table_query(Some(time), 250));
        assert_eq!(ids(&r), [json!("h1/c/n1/1")], "{r:?}");
        assert_eq!(r.obj["Truncated"], true);
    }

    #[test]
    fn a_capture_is_assigned_once_per_node() {
        let a = placer::Assigned::default();
        let c: Capture =
            serde_json::from_value(json!({"UUID": "c1", "GremlinQuery": "G.V()"})).unwrap();
        let n = Identifier::from("n1");
        assert!(a.start(c.clone(), n.clone()));
        assert!(
            !a.start(c.clone(), n.clone()),
            "a second Start changes nothing"
        );
        assert!(a.start(c.clone(), Identifier::from("n2")));
        assert_eq!(a.list()[0].1.len(), 2);
        assert!(a.stop("c1", &n));
        assert!(!a.stop("c1", &n));
        assert!(a.stop("c1", &Identifier::from("n2")));
        assert!(a.list().is_empty());
    }
}
