//! The OpenAPI 3.1 document of the HTTP API, served at `GET /api/openapi.json`.
//!
//! The schemas are derived (`utoipa::ToSchema`) from the types the handlers read and
//! write: [`Node`], [`Edge`], [`Capture`], [`Injection`], [`ApiInfo`],
//! [`LoginReply`]. Each route has one `#[utoipa::path]` below with every status it can
//! answer; [`ApiDoc::document`] adds what the gate in front of every route can answer
//! (401, 403, 429; 415 for bodies of the wrong type; 408 and 413 for bodies too slow or
//! too large), the plain-text error body of every error, and the security schemes.
//! A test sends every method to every documented path, and scans the routing code for
//! path segments, so a route served but not documented fails the build's tests.
//!
//! The document is under the same rules as every `GET /api/...`: the reader role when
//! authentication is on. Unlike Skydive's Swagger file it is not public, since it
//! tells what this server runs (its version) and a client that may not read the API
//! has no use for its description.

#![allow(dead_code)] // The functions below only carry `#[utoipa::path]`.

use std::sync::OnceLock;

use serde::Serialize;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Content, HttpMethod, RefOr, ResponseBuilder};
use utoipa::{OpenApi, ToSchema};

use crate::alert::Alert;
use crate::capture::Capture;
use crate::injection::Injection;
use crate::rules::{EdgeRule, NodeRule};
use topotap_topology::{Edge, Node};

/// `GET /api`: who answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiInfo {
    /// The host ID of this server.
    #[serde(rename = "Host")]
    pub host: String,
    #[serde(rename = "Version")]
    pub version: String,
    /// Always `analyzer`.
    #[serde(rename = "Service")]
    pub service: String,
}

/// `POST /login`: the token to send back (`X-Auth-Token`, `Authorization: Bearer`, or
/// the `authtoken` cookie set with it) and the role's permissions. With authentication
/// off, an empty token and every permission.
#[derive(Debug, Serialize, ToSchema)]
pub struct LoginReply {
    #[serde(rename = "Token")]
    pub token: String,
    #[serde(rename = "Permissions")]
    pub permissions: Vec<String>,
}

/// `POST /login`: the form.
#[derive(ToSchema)]
struct LoginForm {
    username: Option<String>,
    password: Option<String>,
}

/// `POST /api/topology`: the Gremlin query. Empty or blank: 204. A query that starts
/// with `G.At(t)` / `G.Context(t[, d])` runs on the graph and the flows of that time
/// (`G.At('-5m').Flows()`; over a window, `Flows().Metrics()` is each flow's series of
/// snapshots), from the history.
#[derive(ToSchema)]
struct TopologyQuery {
    #[schema(rename = "GremlinQuery", max_length = 65536)]
    gremlin_query: Option<String>,
}

/// `GET /api/topology`: every node and edge.
#[derive(ToSchema)]
struct TopologyGraph {
    #[schema(rename = "Nodes")]
    nodes: Vec<Node>,
    #[schema(rename = "Edges")]
    edges: Vec<Edge>,
}

/// Counts in `GET /api/status`.
#[derive(ToSchema)]
struct StatusTopology {
    #[schema(rename = "Nodes")]
    nodes: u64,
    #[schema(rename = "Edges")]
    edges: u64,
}

/// `GET /api/status`: Skydive's sections, the graph's size and the uptime.
/// Sections other than these may follow (`Probes`...).
#[derive(ToSchema)]
struct Status {
    #[schema(rename = "Agents", value_type = Object)]
    agents: (),
    #[schema(rename = "Peers", value_type = Object)]
    peers: (),
    #[schema(rename = "Publishers", value_type = Object)]
    publishers: (),
    #[schema(rename = "Subscribers", value_type = Object)]
    subscribers: (),
    #[schema(rename = "WebSocket", value_type = Object)]
    websocket: (),
    #[schema(rename = "Alerts", value_type = Object)]
    alerts: (),
    #[schema(rename = "Captures", value_type = Object)]
    captures: (),
    #[schema(rename = "Probes", value_type = Object)]
    probes: (),
    #[schema(rename = "Topology")]
    topology: StatusTopology,
    #[schema(rename = "Version")]
    version: String,
    #[schema(rename = "UptimeSeconds")]
    uptime_seconds: u64,
    /// This server's host ID (`--host-id`).
    #[schema(rename = "Host")]
    host: String,
    #[schema(rename = "QueryBudget")]
    query_budget: StatusBudget,
}

/// The budget of every Gremlin evaluation in `GET /api/status`.
#[derive(ToSchema)]
struct StatusBudget {
    /// `--max-result-elements`.
    #[schema(rename = "MaxResultElements")]
    max_result_elements: u64,
    /// `--max-result-bytes`.
    #[schema(rename = "MaxResultBytes")]
    max_result_bytes: u64,
    /// `--query-timeout`, in milliseconds.
    #[schema(rename = "QueryTimeoutMs")]
    query_timeout_ms: u64,
}

/// `POST /api/pcap`: what was read from the file.
#[derive(ToSchema)]
struct PcapSummary {
    #[schema(rename = "CaptureID")]
    capture_id: String,
    #[schema(rename = "Packets")]
    packets: u64,
    #[schema(rename = "Bytes")]
    bytes: u64,
    /// Flows in the local flow table (local target only).
    #[schema(rename = "Flows")]
    flows: Option<u64>,
    /// What the exporter sent (export targets only).
    #[schema(rename = "Export", value_type = Option<Object>)]
    export: (),
    /// Why the file could only be read part-way.
    #[schema(rename = "Error")]
    error: Option<String>,
}

/// A pcap or pcapng file.
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
struct PcapFile(Vec<u8>);

/// One operation of an RFC 6902 JSON Patch.
#[derive(ToSchema)]
struct PatchOperation {
    #[schema(inline)]
    op: PatchOp,
    path: String,
    from: Option<String>,
    #[schema(value_type = Object)]
    value: (),
}

#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
enum PatchOp {
    Add,
    Remove,
    Replace,
    Move,
    Copy,
    Test,
}

/// An error: one line saying what is wrong, then a newline (`text/plain`).
#[derive(ToSchema)]
#[schema(value_type = String, example = "Node 'n1' not found\n")]
struct ErrorReason(String);

#[utoipa::path(get, path = "/api", tag = "service",
    responses((status = 200, description = "This server.", body = ApiInfo)))]
fn api_root() {}

#[utoipa::path(get, path = "/api/status", tag = "service",
    responses((status = 200, description = "Status.", body = Status)))]
fn status() {}

#[utoipa::path(get, path = "/api/openapi.json", tag = "service",
    responses((status = 200, description = "This document.", body = serde_json::Value)))]
fn openapi_json() {}

#[utoipa::path(get, path = "/api/topology", tag = "topology",
    responses(
        (status = 200, description = "The whole graph.", body = TopologyGraph),
        (status = 413, description = "The graph is larger than --max-result-bytes or --max-result-elements."),
    ))]
fn topology_get() {}

#[utoipa::path(post, path = "/api/topology", tag = "topology",
    request_body = TopologyQuery,
    responses(
        (status = 200, description = "The query's answer: a list of graphs, nodes, edges, paths or values, or a value. \
            With `Accept: application/vnd.tcpdump.pcap`, the packets of a `...RawPackets()` query as a pcap file.",
            content((serde_json::Value = "application/json"), (PcapFile = "application/vnd.tcpdump.pcap"))),
        (status = 204, description = "The query is empty."),
        (status = 400, description = "A query that does not parse or apply, a body that is not the object, \
            a malformed time in G.At/G.Context (the answer lists the accepted forms), or G.At on a server without history."),
        (status = 406, description = "A pcap file was asked for a query that does not end in RawPackets()."),
        (status = 413, description = "The answer is larger than the server's budget."),
        (status = 503, description = "The query ran out of its time budget."),
    ))]
fn topology_query() {}

macro_rules! element_paths {
    ($tag:literal, $base:literal, $one:literal, $ty:ty,
     $list:ident, $create:ident, $get:ident, $patch:ident, $delete:ident) => {
        #[utoipa::path(get, path = $base, tag = $tag,
            responses((status = 200, description = "Every one, by ID.", body = BTreeMap<String, $ty>)))]
        fn $list() {}

        #[utoipa::path(post, path = $base, tag = $tag,
            request_body = $ty,
            responses(
                (status = 201, description = "Created: as stored.", body = $ty),
                (status = 400, description = "Not a valid element, an unknown field, or a duplicate ID."),
                (status = 413, description = "Its Metadata is larger than --max-metadata-bytes."),
            ))]
        fn $create() {}

        #[utoipa::path(get, path = $one, tag = $tag, params(("id" = String, Path, description = "The element's ID or the resource's UUID.")),
            responses(
                (status = 200, description = "The element.", body = $ty),
                (status = 404, description = "No such element."),
            ))]
        fn $get() {}

        #[utoipa::path(patch, path = $one, tag = $tag, params(("id" = String, Path, description = "The element's ID or the resource's UUID.")),
            request_body(description = "An RFC 6902 JSON Patch of the element; only Metadata changes.",
                content((Vec<PatchOperation> = "application/json"), (Vec<PatchOperation> = "application/json-patch+json"))),
            responses(
                (status = 200, description = "Patched.", body = $ty),
                (status = 304, description = "The patch changed nothing."),
                (status = 400, description = "Not a JSON Patch, or one that does not apply."),
                (status = 404, description = "No such element."),
                (status = 413, description = "Too many operations, or Metadata that would grow past --max-metadata-bytes."),
            ))]
        fn $patch() {}

        #[utoipa::path(delete, path = $one, tag = $tag, params(("id" = String, Path, description = "The element's ID or the resource's UUID.")),
            responses(
                (status = 200, description = "Deleted (an empty body).", body = String, content_type = "text/plain"),
                (status = 404, description = "No such element."),
            ))]
        fn $delete() {}
    };
}

element_paths!(
    "topology",
    "/api/node",
    "/api/node/{id}",
    Node,
    node_list,
    node_create,
    node_get,
    node_patch,
    node_delete
);
element_paths!(
    "topology",
    "/api/edge",
    "/api/edge/{id}",
    Edge,
    edge_list,
    edge_create,
    edge_get,
    edge_patch,
    edge_delete
);

macro_rules! resource_paths {
    ($tag:literal, $base:literal, $one:literal, $ty:ty, $what:literal,
     $list:ident, $create:ident, $get:ident, $patch:ident, $delete:ident) => {
        #[utoipa::path(get, path = $base, tag = $tag,
            responses((status = 200, description = "Every one, by UUID.", body = BTreeMap<String, $ty>)))]
        fn $list() {}

        #[utoipa::path(post, path = $base, tag = $tag,
            request_body = $ty,
            params(("X-Resource-TTL" = Option<String>, Header, description = "Delete it after this long (a Go duration: 30s, 5m, 1h30m).")),
            responses(
                (status = 201, description = "Created: as stored.", body = $ty),
                (status = 400, description = concat!("Not a valid ", $what, ", or an unknown field.")),
                (status = 403, description = "A destination outside --allow-target, or a namespace the probes did not find."),
                (status = 409, description = "A duplicate."),
                (status = 503, description = "It could not be stored (the state directory failed)."),
                (status = 507, description = "It could not be stored: the disk is full."),
            ))]
        fn $create() {}

        #[utoipa::path(get, path = $one, tag = $tag, params(("id" = String, Path, description = "The element's ID or the resource's UUID.")),
            responses(
                (status = 200, description = "It.", body = $ty),
                (status = 404, description = "No such resource."),
            ))]
        fn $get() {}

        #[utoipa::path(patch, path = $one, tag = $tag, params(("id" = String, Path, description = "The element's ID or the resource's UUID.")),
            request_body(description = "Resources cannot be updated: any patch is refused.",
                content((Vec<PatchOperation> = "application/json"), (Vec<PatchOperation> = "application/json-patch+json"))),
            responses(
                (status = 400, description = "Resources are not updatable."),
                (status = 404, description = "No such resource."),
            ))]
        fn $patch() {}

        #[utoipa::path(delete, path = $one, tag = $tag, params(("id" = String, Path, description = "The element's ID or the resource's UUID.")),
            responses(
                (status = 200, description = "Deleted (an empty body).", body = String, content_type = "text/plain"),
                (status = 404, description = "No such resource."),
                (status = 503, description = "The deletion could not be stored; it did not happen."),
                (status = 507, description = "The disk is full; it did not happen."),
            ))]
        fn $delete() {}
    };
}

resource_paths!(
    "capture",
    "/api/capture",
    "/api/capture/{id}",
    Capture,
    "capture",
    capture_list,
    capture_create,
    capture_get,
    capture_patch,
    capture_delete
);
resource_paths!(
    "injection",
    "/api/injectpacket",
    "/api/injectpacket/{id}",
    Injection,
    "packet injection",
    injection_list,
    injection_create,
    injection_get,
    injection_patch,
    injection_delete
);

resource_paths!(
    "rules",
    "/api/noderule",
    "/api/noderule/{id}",
    NodeRule,
    "node rule",
    noderule_list,
    noderule_create,
    noderule_get,
    noderule_patch,
    noderule_delete
);
resource_paths!(
    "rules",
    "/api/edgerule",
    "/api/edgerule/{id}",
    EdgeRule,
    "edge rule",
    edgerule_list,
    edgerule_create,
    edgerule_get,
    edgerule_patch,
    edgerule_delete
);

resource_paths!(
    "alert",
    "/api/alert",
    "/api/alert/{id}",
    Alert,
    "alert (an expression that does not compile, a bad Trigger or Action, a script outside --alert-script-dir)",
    alert_list,
    alert_create,
    alert_get,
    alert_patch,
    alert_delete
);

#[utoipa::path(post, path = "/api/pcap", tag = "capture",
    request_body(description = "A pcap or pcapng file (Skydive's client sends it as application/json).",
        content((PcapFile = "application/octet-stream"), (PcapFile = "application/vnd.tcpdump.pcap"))),
    params(
        ("TargetType" = Option<String>, Query, description = "Where the flows go: local (default), netflowv5, netflowv9, ipfix, sflow, erspanv1."),
        ("Target" = Option<String>, Query, description = "The collector, host:port."),
        ("LayerKeyMode" = Option<String>, Query, description = "L2 or L3."),
        ("SamplingRate" = Option<u32>, Query),
        ("PollingInterval" = Option<u32>, Query),
        ("HeaderSize" = Option<u32>, Query),
        ("RawPacketLimit" = Option<u32>, Query, description = "Local target: frames of each flow kept for RawPackets() (0 to 10)."),
        ("Name" = Option<String>, Query),
    ),
    responses(
        (status = 202, description = "Read; the flows went to the target.", body = PcapSummary),
        (status = 400, description = "Not a capture file, or invalid capture parameters."),
        (status = 403, description = "A target outside --allow-target."),
        (status = 503, description = "The collector cannot be resolved or reached."),
    ))]
fn pcap_upload() {}

#[utoipa::path(get, path = "/ws/subscriber", tag = "topology",
    params(
        ("X-Client-Type" = Option<String>, Header),
        ("X-Host-ID" = Option<String>, Header),
        ("X-Gremlin-Filter" = Option<String>, Header, description = "Only the subgraph this query selects."),
    ),
    responses(
        (status = 101, description = "A WebSocket of graph messages (Skydive's subscriber protocol)."),
        (status = 400, description = "Not a WebSocket upgrade."),
    ))]
fn ws_subscriber() {}

#[utoipa::path(get, path = "/ws/agent/topology", tag = "fleet",
    params(
        ("X-Host-ID" = String, Header, description = "The agent's host id; its elements' Host and Origin come from it."),
        ("X-Client-Type" = String, Header, description = "skydive-agent"),
        ("X-Persistence-Policy" = Option<String>, Header, description = "DeleteOnDisconnect (default) or Persistent."),
        ("X-Client-Protocol" = Option<String>, Header, description = "json (the only one accepted)."),
    ),
    responses(
        (status = 101, description = "Analyzers only: a WebSocket on which the agent sends its subgraph (Skydive's Graph messages: Sync, then changes)."),
        (status = 400, description = "Not a WebSocket upgrade, or a missing or invalid header."),
        (status = 404, description = "Not an analyzer (allinone and agents do not serve it)."),
        (status = 409, description = "An agent with this host id is already connected, or it is the analyzer's own."),
    ))]
fn ws_agent() {}

#[utoipa::path(get, path = "/ws/replication", tag = "fleet",
    params(
        ("X-Host-ID" = String, Header, description = "The peer analyzer's host id."),
        ("X-Client-Type" = String, Header, description = "analyzer"),
    ),
    responses(
        (status = 101, description = "Analyzers only: a WebSocket on which a peer analyzer sends the hosts of its own agents."),
        (status = 400, description = "Not a WebSocket upgrade, or a missing or invalid header."),
        (status = 404, description = "Not an analyzer (allinone and agents do not serve it)."),
        (status = 409, description = "This peer is already connected."),
    ))]
fn ws_replication() {}

#[utoipa::path(get, path = "/metrics", tag = "service",
    responses(
        (status = 200, description = "Prometheus text, or OpenMetrics when Accept asks for it.",
            content((String = "text/plain"), (String = "application/openmetrics-text"))),
        (status = 404, description = "Served on --metrics-listen instead."),
    ))]
fn metrics() {}

#[utoipa::path(post, path = "/login", tag = "auth", security(()),
    request_body(content = LoginForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Logged in; the authtoken cookie is set.", body = LoginReply),
        (status = 400, description = "Not a form."),
        (status = 401, description = "Wrong user name or password, or none."),
        (status = 411, description = "A form without Content-Length."),
        (status = 413, description = "A form larger than 16 KiB."),
    ))]
fn login_post() {}

#[utoipa::path(post, path = "/logout", tag = "auth", security(()),
    responses((status = 204, description = "The authtoken cookie is expired.")))]
fn logout() {}

#[utoipa::path(get, path = "/login", tag = "auth", security(()),
    responses((status = 302, description = "To the web UI.")))]
fn login_get() {}

#[utoipa::path(get, path = "/", tag = "ui", security(()),
    responses((status = 200, description = "The web UI.", body = String, content_type = "text/html")))]
fn ui_root() {}

#[utoipa::path(get, path = "/topology", tag = "ui", security(()),
    responses((status = 200, description = "The web UI.", body = String, content_type = "text/html")))]
fn ui_topology() {}

#[utoipa::path(get, path = "/ui/{file}", tag = "ui", security(()),
    params(("file" = String, Path, description = "A file of the web UI.")),
    responses(
        (status = 200, description = "The file.", body = String, content_type = "*/*"),
        (status = 404, description = "No such file."),
    ))]
fn ui_file() {}

/// The document. Build it with [`ApiDoc::document`].
#[derive(OpenApi)]
#[openapi(
    info(
        title = "topotap",
        description = "Skydive's topology, capture and packet injection API. Errors are \
            text/plain: one line saying what is wrong. With authentication on, every \
            route under /api, /ws and /metrics needs a user: HTTP Basic, a token from \
            POST /login (X-Auth-Token, Authorization: Bearer, or the authtoken cookie), \
            or a TLS client certificate."
    ),
    paths(
        api_root, status, openapi_json, topology_get, topology_query,
        node_list, node_create, node_get, node_patch, node_delete,
        edge_list, edge_create, edge_get, edge_patch, edge_delete,
        capture_list, capture_create, capture_get, capture_patch, capture_delete,
        injection_list, injection_create, injection_get, injection_patch, injection_delete,
        noderule_list, noderule_create, noderule_get, noderule_patch, noderule_delete,
        edgerule_list, edgerule_create, edgerule_get, edgerule_patch, edgerule_delete,
        alert_list, alert_create, alert_get, alert_patch, alert_delete,
        pcap_upload, ws_subscriber, ws_agent, ws_replication, metrics, login_post, login_get, logout,
        ui_root, ui_topology, ui_file,
    ),
    components(schemas(ErrorReason)),
    security((), ("basic" = []), ("bearer" = []), ("token" = []), ("cookie" = [])),
    tags(
        (name = "service", description = "The server itself."),
        (name = "topology", description = "The graph: Gremlin queries, nodes, edges, live updates."),
        (name = "capture", description = "Packet captures and pcap uploads."),
        (name = "injection", description = "Packet injection."),
        (name = "rules", description = "Node and edge rules: nodes and edges made or changed by Gremlin queries."),
        (name = "alert", description = "Alerts: Gremlin expressions watched on graph changes or on a period, firing a webhook, a script and a WebSocket message."),
        (name = "auth", description = "Logging in."),
        (name = "ui", description = "The web UI."),
        (name = "fleet", description = "Analyzers only: agents and peer analyzers connect here."),
    ),
)]
pub struct ApiDoc;

impl ApiDoc {
    /// The document with what every route can answer added, and the security schemes.
    pub fn document() -> utoipa::openapi::OpenApi {
        let mut doc = ApiDoc::openapi();
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "basic",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Basic).build()),
        );
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "token",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-Auth-Token"))),
        );
        components.add_security_scheme(
            "cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new("authtoken"))),
        );
        for (path, item) in doc.paths.paths.iter_mut() {
            let open = !(path.starts_with("/api") || path.starts_with("/ws") || path == "/metrics");
            let ops = [
                (HttpMethod::Get, &mut item.get),
                (HttpMethod::Post, &mut item.post),
                (HttpMethod::Patch, &mut item.patch),
                (HttpMethod::Delete, &mut item.delete),
                (HttpMethod::Put, &mut item.put),
            ];
            for (method, op) in ops {
                if let Some(op) = op {
                    gate_responses(op, &method, open);
                }
            }
        }
        doc
    }

    /// The document as served.
    pub fn json() -> &'static [u8] {
        static JSON: OnceLock<Vec<u8>> = OnceLock::new();
        JSON.get_or_init(|| serde_json::to_vec(&Self::document()).unwrap_or_default())
    }
}

/// Adds the answers of the gate and of the body reader, and the error body to every
/// error.
fn gate_responses(op: &mut Operation, method: &HttpMethod, open: bool) {
    let mut add = |code: u16, description: &str| {
        op.responses
            .responses
            .entry(code.to_string())
            .or_insert_with(|| {
                ResponseBuilder::new()
                    .description(description)
                    .build()
                    .into()
            });
    };
    add(
        403,
        "Refused: a Host that is not this server's name, an Origin not given with --cors-origin, or a user whose role may not do this.",
    );
    if !open {
        add(
            401,
            "Authentication is on and the request has no valid credentials.",
        );
        add(
            429,
            "Too many failed logins from this address: wait the Retry-After seconds.",
        );
    }
    if op.request_body.is_some() {
        add(415, "A body whose Content-Type this route does not take.");
        add(408, "The body did not arrive within --body-read-timeout.");
        add(413, "The body is larger than allowed.");
        add(400, "A body that cannot be read.");
    }
    if matches!(method, HttpMethod::Post | HttpMethod::Patch) {
        add(400, "A body that cannot be read.");
    }
    let error = Content::new(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
        "ErrorReason",
    ))));
    for (code, response) in op.responses.responses.iter_mut() {
        let is_error = code.starts_with('4') || code.starts_with('5');
        if let RefOr::T(r) = response {
            if is_error && r.content.is_empty() {
                r.content.insert("text/plain".to_owned(), error.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests;
