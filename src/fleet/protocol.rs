//! The agent <-> analyzer and analyzer <-> analyzer protocol: Skydive's WebSocket
//! handshake headers and its JSON `Graph` envelopes (§8.1-8.3, §8.6).
//!
//! Every message is a text frame `{"Namespace":"Graph","Type":T,"UUID":U,"Obj":O}`:
//! - `Sync`: O = `{"Nodes":[...],"Edges":[...]}`, the sender's whole subgraph, which
//!   replaces what the receiver had from it;
//! - `NodeAdded`, `NodeUpdated`, `NodeDeleted`, `EdgeAdded`, `EdgeUpdated`,
//!   `EdgeDeleted`: O = the element (for deletions only `ID` is read);
//! - `NodePartiallyUpdated`, `EdgePartiallyUpdated` (what Skydive's agents send for a
//!   metadata change): O = `{"ID", "UpdatedAt", "Revision", "Ops": [{"Type": 1, "Key",
//!   "Value"}, {"Type": 2, "Key"}]}`, 1 setting and 2 removing a (dotted) metadata key;
//! - `SyncRequest` (analyzer -> peer on a replication link): asks for a new `Sync`.
//!
//! On an agent's connection the analyzer also sends requests, which the agent answers
//! with the same `UUID` and namespace, `Type` + `Reply`, a `Status` (HTTP code) and an
//! `Obj` ([`Request`], [`Reply`]):
//! - `OnDemandCapture` `Start`/`Stop`, O = `{"NodeID", "Resource": capture}`;
//! - `OnDemandPacketInjection` `Start`/`Stop`, O = `{"NodeID", "Resource": injection}`;
//! - `Flow` `TableQuery`: the agent's flow tables, reply O = `{"Tables": [{"CaptureID",
//!   "NodeID", "Flows": [...]}]}`.
//!
//! On a replication link, the analyzer that received it sends requests back to the
//! peer that opened it, for an agent connected to that peer only:
//! - `Relay` `Forward`, O = `{"Host", "TimeoutMs", "Request": request}`: the peer sends
//!   the request to its agent `Host` and answers 200 with O = `{"Reply": the agent's
//!   reply}`, or a failure status with O = `{"Error"}`.

use serde::Deserialize;
use serde_json::value::RawValue;
use topotap_topology::{Edge, GraphEvent, Identifier, Node};

/// Header naming the sender's host.
pub const HOST_ID: &str = "X-Host-ID";
/// Header naming the kind of client (`skydive-agent`, `analyzer`, ...).
pub const CLIENT_TYPE: &str = "X-Client-Type";
/// Header saying what happens to the sender's subgraph when it disconnects.
pub const PERSISTENCE_POLICY: &str = "X-Persistence-Policy";
/// Answer header naming the server's host.
pub const SERVICE_TYPE: &str = "X-Service-Type";

/// The client type agents send.
pub const AGENT_CLIENT_TYPE: &str = "skydive-agent";
/// The client type analyzers send on replication links.
pub const ANALYZER_CLIENT_TYPE: &str = "analyzer";
/// The persistence policy agents ask for.
pub const DELETE_ON_DISCONNECT: &str = "DeleteOnDisconnect";

/// Namespaces of the analyzer -> agent requests.
pub const NS_CAPTURE: &str = "OnDemandCapture";
pub const NS_INJECTION: &str = "OnDemandPacketInjection";
pub const NS_FLOW: &str = "Flow";
/// Namespace of the requests an analyzer forwards to a peer's agent.
pub const NS_RELAY: &str = "Relay";

/// Path agents connect to.
pub const AGENT_PATH: &str = "/ws/agent/topology";
/// Path peers connect to.
pub const REPLICATION_PATH: &str = "/ws/replication";

/// A `Graph` message, parsed and checked.
#[derive(Debug, Clone, PartialEq)]
pub enum GraphMessage {
    Sync { nodes: Vec<Node>, edges: Vec<Edge> },
    SyncRequest,
    NodeAdded(Node),
    NodeUpdated(Node),
    NodeDeleted(Identifier),
    EdgeAdded(Edge),
    EdgeUpdated(Edge),
    EdgeDeleted(Identifier),
    NodePartiallyUpdated(Identifier, Vec<MetadataOp>),
    EdgePartiallyUpdated(Identifier, Vec<MetadataOp>),
}

/// One change of a partial update, on a dotted metadata key.
#[derive(Debug, Clone, PartialEq)]
pub enum MetadataOp {
    Set(String, serde_json::Value),
    Remove(String),
}

impl MetadataOp {
    /// Applies the changes to `md` in order.
    pub fn apply_all(ops: Vec<MetadataOp>, md: &mut topotap_topology::Metadata) {
        for op in ops {
            match op {
                MetadataOp::Set(k, v) => {
                    topotap_topology::element::set_field(md, &k, v);
                }
                MetadataOp::Remove(k) => {
                    topotap_topology::element::remove_field(md, &k);
                }
            }
        }
    }
}

/// Why a message is refused: a one-line reason, sent back in the close frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

impl Refused {
    pub fn new(reason: impl Into<String>) -> Self {
        Refused(reason.into())
    }
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "Namespace", default)]
    namespace: String,
    #[serde(rename = "Type", default)]
    kind: String,
    #[serde(rename = "Obj", borrow, default)]
    obj: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct SyncObj {
    #[serde(rename = "Nodes", default)]
    nodes: Option<Vec<Node>>,
    #[serde(rename = "Edges", default)]
    edges: Option<Vec<Edge>>,
}

#[derive(Deserialize)]
struct PartialObj {
    #[serde(rename = "ID")]
    id: Identifier,
    #[serde(rename = "Ops", default)]
    ops: Vec<PartialOp>,
}

#[derive(Deserialize)]
struct PartialOp {
    #[serde(rename = "Type")]
    kind: u8,
    #[serde(rename = "Key")]
    key: String,
    #[serde(rename = "Value", default)]
    value: serde_json::Value,
}

/// The element ID and the changes of a partial update; an op of another `Type` than 1
/// (set) or 2 (remove), or without `Key`, is refused.
fn partial(kind: &str, raw: Option<&RawValue>) -> Result<(Identifier, Vec<MetadataOp>), Refused> {
    let p: PartialObj = obj(kind, raw)?;
    let ops = p
        .ops
        .into_iter()
        .enumerate()
        .map(|(i, op)| {
            if op.key.is_empty() || op.key.split('.').any(str::is_empty) {
                return Err(Refused::new(format!(
                    "{kind}: Ops[{i}]: invalid Key {:?}",
                    op.key
                )));
            }
            match op.kind {
                1 => Ok(MetadataOp::Set(op.key, op.value)),
                2 => Ok(MetadataOp::Remove(op.key)),
                t => Err(Refused::new(format!(
                    "{kind}: Ops[{i}]: unknown Type {t} (1 sets a key, 2 removes it)"
                ))),
            }
        })
        .collect::<Result<_, _>>()?;
    Ok((p.id, ops))
}

#[derive(Deserialize)]
struct IdOnly {
    #[serde(rename = "ID")]
    id: Identifier,
}

fn obj<'a, T: Deserialize<'a>>(kind: &str, raw: Option<&'a RawValue>) -> Result<T, Refused> {
    let raw = raw.ok_or_else(|| Refused::new(format!("{kind}: no Obj")))?;
    serde_json::from_str(raw.get()).map_err(|e| Refused::new(format!("{kind}: invalid Obj: {e}")))
}

/// Parses one text frame. Messages of other namespaces are `Ok(None)` (ignored, as
/// Skydive's dispatcher does); a malformed envelope, an unknown `Graph` type or an
/// element without `ID` (edges: `Parent`, `Child`) is refused.
pub fn parse(text: &str) -> Result<Option<GraphMessage>, Refused> {
    let env: Envelope<'_> =
        serde_json::from_str(text).map_err(|e| Refused::new(format!("malformed message: {e}")))?;
    if env.namespace != "Graph" {
        return Ok(None);
    }
    let kind = env.kind.as_str();
    let msg = match kind {
        "Sync" => {
            let s: SyncObj = obj(kind, env.obj)?;
            GraphMessage::Sync {
                nodes: s.nodes.unwrap_or_default(),
                edges: s.edges.unwrap_or_default(),
            }
        }
        "SyncRequest" => GraphMessage::SyncRequest,
        "NodeAdded" => GraphMessage::NodeAdded(obj(kind, env.obj)?),
        "NodeUpdated" => GraphMessage::NodeUpdated(obj(kind, env.obj)?),
        "NodeDeleted" => GraphMessage::NodeDeleted(obj::<IdOnly>(kind, env.obj)?.id),
        "EdgeAdded" => GraphMessage::EdgeAdded(obj(kind, env.obj)?),
        "EdgeUpdated" => GraphMessage::EdgeUpdated(obj(kind, env.obj)?),
        "EdgeDeleted" => GraphMessage::EdgeDeleted(obj::<IdOnly>(kind, env.obj)?.id),
        "NodePartiallyUpdated" => {
            let (id, ops) = partial(kind, env.obj)?;
            GraphMessage::NodePartiallyUpdated(id, ops)
        }
        "EdgePartiallyUpdated" => {
            let (id, ops) = partial(kind, env.obj)?;
            GraphMessage::EdgePartiallyUpdated(id, ops)
        }
        "" => return Err(Refused::new("message without Type")),
        other => {
            return Err(Refused::new(format!(
                "unknown Graph message type {other:?}"
            )))
        }
    };
    Ok(Some(msg))
}

/// A request from an analyzer to an agent (any namespace but `Graph`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, Deserialize)]
pub struct Request {
    #[serde(rename = "Namespace")]
    pub namespace: String,
    #[serde(rename = "Type")]
    pub kind: String,
    #[serde(rename = "UUID", default)]
    pub uuid: String,
    #[serde(rename = "Obj", default)]
    pub obj: serde_json::Value,
}

/// An agent's answer to a [`Request`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, Deserialize)]
pub struct Reply {
    #[serde(rename = "Namespace")]
    pub namespace: String,
    #[serde(rename = "Type")]
    pub kind: String,
    #[serde(rename = "UUID", default)]
    pub uuid: String,
    #[serde(rename = "Status", default)]
    pub status: u16,
    #[serde(rename = "Obj", default)]
    pub obj: serde_json::Value,
}

impl Request {
    /// A request with a fresh UUID.
    pub fn new(namespace: &str, kind: &str, obj: serde_json::Value) -> Self {
        Request {
            namespace: namespace.to_owned(),
            kind: kind.to_owned(),
            uuid: Identifier::random().to_string(),
            obj,
        }
    }

    pub fn to_text(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The answer to this request.
    pub fn reply(&self, status: u16, obj: serde_json::Value) -> Reply {
        Reply {
            namespace: self.namespace.clone(),
            kind: format!("{}Reply", self.kind),
            uuid: self.uuid.clone(),
            status,
            obj,
        }
    }
}

impl Reply {
    pub fn to_text(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The `Error` of a failed reply's `Obj`, or its status.
    pub fn reason(&self) -> String {
        self.obj
            .get("Error")
            .and_then(|e| e.as_str())
            .map_or_else(|| format!("status {}", self.status), str::to_owned)
    }
}

/// A message of another namespace than `Graph`: a request (to an agent) or a reply
/// (to an analyzer). `None` for `Graph` messages.
pub fn parse_other<T: serde::de::DeserializeOwned>(text: &str) -> Result<Option<T>, Refused> {
    let env: Envelope<'_> =
        serde_json::from_str(text).map_err(|e| Refused::new(format!("malformed message: {e}")))?;
    if env.namespace == "Graph" {
        return Ok(None);
    }
    serde_json::from_str(text)
        .map(Some)
        .map_err(|e| Refused::new(format!("malformed {} message: {e}", env.namespace)))
}

/// A `Graph` envelope around `obj` (JSON text).
pub fn envelope(kind: &str, obj: &str) -> String {
    format!(
        r#"{{"Namespace":"Graph","Type":"{kind}","UUID":"{}","Obj":{obj}}}"#,
        Identifier::random()
    )
}

/// The `Sync` message of a subgraph.
pub fn sync_message(nodes: &[Node], edges: &[Edge]) -> String {
    #[derive(serde::Serialize)]
    struct S<'a> {
        #[serde(rename = "Nodes")]
        nodes: &'a [Node],
        #[serde(rename = "Edges")]
        edges: &'a [Edge],
    }
    let obj = serde_json::to_string(&S { nodes, edges }).unwrap_or_else(|_| "null".into());
    envelope("Sync", &obj)
}

/// The `SyncRequest` message.
pub fn sync_request() -> String {
    envelope("SyncRequest", "{}")
}

/// The message forwarding one graph change.
pub fn event_message(event: &GraphEvent) -> String {
    let obj = match event {
        GraphEvent::NodeAdded(n) | GraphEvent::NodeUpdated(n) | GraphEvent::NodeDeleted(n) => {
            serde_json::to_string(n)
        }
        GraphEvent::EdgeAdded(e) | GraphEvent::EdgeUpdated(e) | GraphEvent::EdgeDeleted(e) => {
            serde_json::to_string(e)
        }
    };
    envelope(event.name(), &obj.unwrap_or_else(|_| "null".into()))
}

/// The host and origin of an event's element.
pub fn event_source(event: &GraphEvent) -> (&str, &str) {
    match event {
        GraphEvent::NodeAdded(n) | GraphEvent::NodeUpdated(n) | GraphEvent::NodeDeleted(n) => {
            (&n.host, &n.origin)
        }
        GraphEvent::EdgeAdded(e) | GraphEvent::EdgeUpdated(e) | GraphEvent::EdgeDeleted(e) => {
            (&e.host, &e.origin)
        }
    }
}

/// The time a `Flow` `TableQuery` asks about: the instant `at`, or the window
/// `[from, at]` (ms since the epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowTime {
    pub from: i64,
    pub at: i64,
}

/// A `Flow` `TableQuery`: every flow table as it is now (Skydive's query), or, with a
/// time, the flows of that time from the agent's history; `MaxBytes`, the most bytes
/// of flows the answer may carry (the asker's message limit, less room for the
/// envelope). `At`, `From` and `MaxBytes` are fields a Skydive agent ignores.
pub fn table_query(time: Option<FlowTime>, max_bytes: usize) -> Request {
    let obj = match time {
        None => serde_json::json!({"MaxBytes": max_bytes}),
        Some(t) => serde_json::json!({"At": t.at, "From": t.from, "MaxBytes": max_bytes}),
    };
    Request::new(NS_FLOW, "TableQuery", obj)
}

/// The `MaxBytes` of a `TableQuery`'s `Obj`, `None` when absent; refused when not a
/// positive integer.
pub fn table_query_max_bytes(obj: &serde_json::Value) -> Result<Option<usize>, Refused> {
    match obj.get("MaxBytes") {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .filter(|n| *n > 0)
            .map(|n| Some(usize::try_from(n).unwrap_or(usize::MAX)))
            .ok_or_else(|| Refused::new(format!("MaxBytes: not a positive integer: {v}"))),
    }
}

/// The time a `TableQuery`'s `Obj` asks about: `None` for the live tables; `From`
/// defaults to `At`. Refused: a time that is not an integer, `From` without `At`, or
/// `From` after `At`.
pub fn table_query_time(obj: &serde_json::Value) -> Result<Option<FlowTime>, Refused> {
    let ms = |key: &str| match obj.get(key) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(v) => v
            .as_i64()
            .map(Some)
            .ok_or_else(|| Refused::new(format!("{key}: not a time in ms since the epoch: {v}"))),
    };
    match (ms("From")?, ms("At")?) {
        (None, None) => Ok(None),
        (Some(_), None) => Err(Refused::new("From without At")),
        (from, Some(at)) => {
            let from = from.unwrap_or(at);
            if from > at {
                return Err(Refused::new(format!("From {from} is after At {at}")));
            }
            Ok(Some(FlowTime { from, at }))
        }
    }
}

/// Whether a host id is acceptable: 1..=253 bytes of letters, digits and `.-_:`.
pub fn valid_host_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 253
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use topotap_topology::Metadata;

    fn node(id: &str) -> Node {
        let mut md = Metadata::new();
        md.insert("Name".into(), "eth0".into());
        md.insert("Type".into(), "veth".into());
        Node::new(Identifier::from(id), md, "h1", "agent.h1")
    }

    #[test]
    fn messages_round_trip() {
        let n = node("n1");
        let text = event_message(&GraphEvent::NodeAdded(n.clone()));
        assert_eq!(
            parse(&text).unwrap(),
            Some(GraphMessage::NodeAdded(n.clone()))
        );
        let text = event_message(&GraphEvent::NodeDeleted(n.clone()));
        assert_eq!(
            parse(&text).unwrap(),
            Some(GraphMessage::NodeDeleted(Identifier::from("n1")))
        );
        let text = sync_message(std::slice::from_ref(&n), &[]);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["Namespace"], "Graph");
        assert_eq!(v["Type"], "Sync");
        assert_eq!(v["Obj"]["Nodes"][0]["ID"], "n1");
        assert_eq!(
            parse(&text).unwrap(),
            Some(GraphMessage::Sync {
                nodes: vec![n],
                edges: vec![]
            })
        );
        assert_eq!(
            parse(&sync_request()).unwrap(),
            Some(GraphMessage::SyncRequest)
        );
    }

    #[test]
    fn bad_messages_are_refused_with_a_reason() {
        let refused = |t: &str| parse(t).unwrap_err().0;
        assert!(refused("{").starts_with("malformed message"));
        assert!(refused("[1]").starts_with("malformed message"));
        assert_eq!(
            refused(r#"{"Namespace":"Graph","Type":"Explode","Obj":{}}"#),
            "unknown Graph message type \"Explode\""
        );
        assert!(
            refused(r#"{"Namespace":"Graph","Type":"NodeAdded","Obj":{"Metadata":{}}}"#)
                .contains("missing field `ID`")
        );
        assert!(
            refused(r#"{"Namespace":"Graph","Type":"EdgeAdded","Obj":{"ID":"e"}}"#)
                .contains("missing field")
        );
        assert!(refused(r#"{"Namespace":"Graph","Type":"Sync"}"#).contains("no Obj"));
        let other = json!({"Namespace":"OnDemandCapture","Type":"StartReply","Obj":{}});
        assert_eq!(parse(&other.to_string()).unwrap(), None);
    }

    #[test]
    fn partial_updates_parse_and_bad_ops_are_refused() {
        let msg = |ops: &str| {
            format!(
                r#"{{"Namespace":"Graph","Type":"NodePartiallyUpdated","Obj":{{"ID":"n1","UpdatedAt":5,"Revision":3,"Ops":{ops}}}}}"#
            )
        };
        assert_eq!(
            parse(&msg(
                r#"[{"Type":1,"Key":"Captures","Value":[{"ID":"c"}]},{"Type":2,"Key":"A.B"}]"#
            ))
            .unwrap(),
            Some(GraphMessage::NodePartiallyUpdated(
                Identifier::from("n1"),
                vec![
                    MetadataOp::Set("Captures".into(), serde_json::json!([{"ID": "c"}])),
                    MetadataOp::Remove("A.B".into()),
                ]
            ))
        );
        let refused = |t: &str| parse(t).unwrap_err().0;
        assert!(refused(&msg(r#"[{"Type":3,"Key":"X"}]"#)).contains("Ops[0]: unknown Type 3"));
        assert!(refused(&msg(r#"[{"Type":1,"Key":""}]"#)).contains("invalid Key"));
        assert!(refused(&msg(r#"[{"Type":1,"Key":"a..b"}]"#)).contains("invalid Key"));
        assert!(refused(&msg(r#"[{"Type":1}]"#)).contains("invalid Obj"));
        assert!(
            refused(r#"{"Namespace":"Graph","Type":"EdgePartiallyUpdated","Obj":{"Ops":[]}}"#)
                .contains("invalid Obj")
        );
    }

    #[test]
    fn requests_and_replies_round_trip() {
        let req = Request::new(NS_CAPTURE, "Start", json!({"NodeID": "n1"}));
        let parsed: Request = parse_other(&req.to_text()).unwrap().unwrap();
        assert_eq!(parsed, req);
        let reply = req.reply(404, json!({"Error": "no node n1"}));
        let parsed: Reply = parse_other(&reply.to_text()).unwrap().unwrap();
        assert_eq!(parsed.kind, "StartReply");
        assert_eq!(parsed.uuid, req.uuid);
        assert_eq!(parsed.reason(), "no node n1");
        assert_eq!(
            parse_other::<Request>(&sync_request()).unwrap(),
            None,
            "Graph messages are not requests"
        );
        assert!(parse_other::<Request>(r#"{"Namespace":"Flow"}"#).is_err());
        assert!(parse_other::<Request>("[").is_err());
    }

    #[test]
    fn table_queries_carry_an_optional_time() {
        let live = table_query(None, 1000);
        assert_eq!(
            (live.namespace.as_str(), live.kind.as_str()),
            (NS_FLOW, "TableQuery")
        );
        assert_eq!(live.obj, json!({"MaxBytes": 1000}));
        assert_eq!(table_query_time(&live.obj), Ok(None));
        assert_eq!(table_query_max_bytes(&live.obj), Ok(Some(1000)));
        assert_eq!(table_query_max_bytes(&json!({})), Ok(None));
        assert!(table_query_max_bytes(&json!({"MaxBytes": 0})).is_err());
        assert!(table_query_max_bytes(&json!({"MaxBytes": "1k"})).is_err());
        let t = FlowTime { from: 5, at: 9 };
        assert_eq!(table_query_time(&table_query(Some(t), 1).obj), Ok(Some(t)));
        assert_eq!(
            table_query_time(&json!({"At": 7})),
            Ok(Some(FlowTime { from: 7, at: 7 }))
        );
        assert_eq!(table_query_time(&json!({"Type": "SearchQuery"})), Ok(None));
        for bad in [
            json!({"At": "now"}),
            json!({"At": 1.5}),
            json!({"From": 3}),
            json!({"From": 9, "At": 5}),
        ] {
            assert!(table_query_time(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn host_ids() {
        assert!(valid_host_id("node-1.example_a:2"));
        assert!(!valid_host_id(""));
        assert!(!valid_host_id("a b"));
        assert!(!valid_host_id(&"x".repeat(254)));
    }
}
