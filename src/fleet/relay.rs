//! Orders and flow queries for an agent connected to another analyzer only. Agents
//! normally connect to every analyzer, but when an agent's connection to the leading
//! analyzer is down, the leader still reaches it through the peer analyzer that holds
//! its connection: the peer's replication link to the leader (which brings that
//! agent's host to it) carries the leader's `Relay` `Forward` requests the other way,
//! and [`Relay`], the link's request handler, sends each to the agent and returns its
//! reply. Any analyzer asks the flow tables of such agents the same way.
//!
//! Nothing is dispatched twice: an analyzer that leads refuses to relay orders (409;
//! it sends its own), a relayed request goes to a local agent only (never to another
//! peer), and agents run a capture once per (UUID, node), an injection once per UUID,
//! however many orders reach them. `Flow` `TableQuery`s (`G.Flows()` on any analyzer)
//! are relayed whoever leads: they change nothing.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::json;

use super::analyzer::{Fleet, RequestError};
use super::dispatch::REPLY_TIMEOUT;
use super::link::Requests;
use super::protocol::{self, Reply, Request};

/// Whether this analyzer leads the dispatch now.
pub type Leads = Arc<dyn Fn() -> bool + Send + Sync>;

/// The request handler of an analyzer's replication links.
pub struct Relay {
    pub fleet: Arc<Fleet>,
    pub leads: Leads,
}

#[derive(Deserialize)]
struct Forward {
    #[serde(rename = "Host")]
    host: String,
    #[serde(rename = "TimeoutMs")]
    timeout_ms: u64,
    #[serde(rename = "Request")]
    request: Request,
}

fn refuse(req: &Request, status: u16, reason: impl Into<String>) -> Reply {
    req.reply(status, json!({"Error": reason.into()}))
}

impl Requests for Relay {
    fn handle(&self, req: Request) -> Reply {
        topotap_topology::blocking::section("fleet relay");
        if (req.namespace.as_str(), req.kind.as_str()) != (protocol::NS_RELAY, "Forward") {
            return refuse(
                &req,
                400,
                format!("unknown request {} {:?}", req.namespace, req.kind),
            );
        }
        let fwd: Forward = match serde_json::from_value(req.obj.clone()) {
            Ok(f) => f,
            Err(e) => return refuse(&req, 400, format!("Relay Forward: invalid Obj: {e}")),
        };
        if !protocol::valid_host_id(&fwd.host) {
            return refuse(&req, 400, format!("Host: invalid host id {:?}", fwd.host));
        }
        let known = [
            protocol::NS_CAPTURE,
            protocol::NS_INJECTION,
            protocol::NS_FLOW,
        ];
        if !known.contains(&fwd.request.namespace.as_str()) {
            return refuse(
                &req,
                400,
                format!(
                    "Request: namespace {:?} is not relayed",
                    fwd.request.namespace
                ),
            );
        }
        // Flow queries are reads, asked by any analyzer; only orders come from the
        // leader.
        let order = fwd.request.namespace != protocol::NS_FLOW;
        if order && (self.leads)() {
            return refuse(
                &req,
                409,
                format!(
                    "analyzer {} leads the dispatch: it sends its own orders",
                    self.fleet.host_id
                ),
            );
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return refuse(&req, 503, "no runtime to relay on");
        };
        let timeout = Duration::from_millis(fwd.timeout_ms).min(REPLY_TIMEOUT);
        let mut request = fwd.request;
        if !order {
            // The agent's answer comes through here too: it must fit this analyzer's
            // message limit as well as the asker's.
            let own = super::dispatch::answer_bytes(&self.fleet);
            let asked = protocol::table_query_max_bytes(&request.obj).ok().flatten();
            if let Some(obj) = request.obj.as_object_mut() {
                obj.insert("MaxBytes".into(), asked.unwrap_or(own).min(own).into());
            }
        }
        let answer = runtime.block_on(self.fleet.request_local(&fwd.host, request, timeout));
        match answer {
            Ok(reply) => req.reply(200, json!({"Reply": reply})),
            Err(e @ RequestError::Timeout { .. }) => refuse(&req, 504, e.to_string()),
            Err(e) => refuse(&req, 502, e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use topotap_topology::{Graph, SharedGraph};

    fn relay(leads: bool) -> Relay {
        let graph = SharedGraph::new(Graph::new(), "a1");
        Relay {
            fleet: Fleet::new(graph, "a1", 1 << 20),
            leads: Arc::new(move || leads),
        }
    }

    fn forward(obj: serde_json::Value) -> Request {
        Request::new(protocol::NS_RELAY, "Forward", obj)
    }

    fn inner() -> serde_json::Value {
        serde_json::to_value(Request::new(protocol::NS_CAPTURE, "Start", json!({}))).unwrap()
    }

    #[test]
    fn bad_relay_requests_get_a_status_and_a_reason() {
        let r = relay(false);
        let reply = r.handle(Request::new("Graph", "Sync", json!({})));
        assert_eq!(reply.status, 400, "{reply:?}");
        let reply = r.handle(forward(json!([1])));
        assert_eq!(reply.status, 400, "{reply:?}");
        assert!(
            reply.reason().starts_with("Relay Forward: invalid Obj"),
            "{reply:?}"
        );
        let reply = r.handle(forward(
            json!({"Host": "a b", "TimeoutMs": 10, "Request": inner()}),
        ));
        assert_eq!(reply.status, 400, "{reply:?}");
        let mut other = inner();
        other["Namespace"] = "Relay".into();
        let reply = r.handle(forward(
            json!({"Host": "h1", "TimeoutMs": 10, "Request": other}),
        ));
        assert_eq!(
            reply.reason(),
            "Request: namespace \"Relay\" is not relayed",
            "{reply:?}"
        );
    }

    #[test]
    fn a_leading_analyzer_relays_nothing() {
        let reply = relay(true).handle(forward(
            json!({"Host": "h1", "TimeoutMs": 10, "Request": inner()}),
        ));
        assert_eq!(reply.status, 409, "{reply:?}");
        assert_eq!(
            reply.reason(),
            "analyzer a1 leads the dispatch: it sends its own orders"
        );
    }

    #[test]
    fn a_leading_analyzer_relays_flow_queries() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let r = relay(true);
        let query = serde_json::to_value(protocol::table_query(None, 1000)).unwrap();
        let req = forward(json!({"Host": "h1", "TimeoutMs": 10, "Request": query}));
        let reply = rt
            .block_on(async move { tokio::task::spawn_blocking(move || r.handle(req)).await })
            .unwrap();
        // Past the leadership check: refused only because h1 is not connected here.
        assert_eq!(reply.status, 502, "{reply:?}");
        assert_eq!(reply.reason(), "agent h1 is not connected to this analyzer");
    }

    #[test]
    fn an_agent_not_connected_here_is_a_502() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let r = relay(false);
        let req = forward(json!({"Host": "h1", "TimeoutMs": 10, "Request": inner()}));
        let reply = rt
            .block_on(async move { tokio::task::spawn_blocking(move || r.handle(req)).await })
            .unwrap();
        assert_eq!(reply.status, 502, "{reply:?}");
        assert_eq!(reply.reason(), "agent h1 is not connected to this analyzer");
    }
}
