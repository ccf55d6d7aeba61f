//! The HTTP and WebSocket API, path for path and field for field Skydive's (§1, §8).
//!
//! Routing lives here; handlers are thin functions in the submodules; errors become
//! `text/plain` bodies with a one-line reason in [`reply_error`], the one place that maps
//! failures to HTTP statuses.

mod alert;
mod elements;
pub(crate) mod injection;
pub mod openapi;
mod pcap;
mod resources;
mod rules;
mod topology;
pub mod ws;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::{json, Value};
use warp::http::{header, HeaderValue, StatusCode};
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use crate::auth::Trust;
use crate::error::Error;
pub use crate::http::{reply_deleted, reply_error, reply_json, reply_json_bytes, ApiError};
use crate::metrics::{self, Metrics};
use crate::services::Services;

/// Largest request body accepted by JSON endpoints.
pub const MAX_JSON_BODY: u64 = 4 * 1024 * 1024;

/// Limits on what one request may ask of the server.
#[derive(Clone, Copy, Debug)]
pub struct RequestLimits {
    /// A JSON body must arrive within this; a pcap upload may not pause longer than it.
    pub body_read_timeout: Duration,
    /// Largest metadata of one node or edge, in bytes of JSON.
    pub max_metadata_bytes: usize,
}

impl Default for RequestLimits {
    fn default() -> Self {
        RequestLimits {
            body_read_timeout: Duration::from_secs(30),
            max_metadata_bytes: 1024 * 1024,
        }
    }
}

/// What the handlers share: the services, of which the HTTP layer is a client, and
/// the WebSocket subscribers (an HTTP-side concern, listed in `/api/status`).
#[derive(Clone)]
pub struct AppState {
    pub services: Services,
    pub limits: RequestLimits,
    pub subscribers: Arc<Mutex<ws::Subscribers>>,
    /// What `/metrics` shows; the HTTP layer records its requests there.
    pub metrics: Arc<Metrics>,
    /// Whether the API serves `/metrics` (not when it has a listener of its own).
    pub metrics_on_api: bool,
    /// The trust boundary in front of the routes (see [`secured`]).
    pub trust: Arc<Trust>,
}

impl AppState {
    pub fn new(services: Services) -> Self {
        let subscribers: Arc<Mutex<ws::Subscribers>> = Arc::default();
        let subs = subscribers.clone();
        let metrics = Arc::new(Metrics::new(metrics::Sources {
            graph: services.graph.clone(),
            host_id: services.host_id.clone(),
            captures: services.capture_board.clone(),
            etcd: services.etcd_durations.clone(),
            history: services.history.as_ref().map(|h| {
                let stats = h.stats.clone();
                Arc::new(move || stats.gauges()) as Arc<dyn Fn() -> _ + Send + Sync>
            }),
            websocket_clients: {
                let fleet = services.fleet_connections.clone();
                Arc::new(move || {
                    let mut kinds = vec![("subscriber", subs.lock().count())];
                    kinds.extend(fleet());
                    kinds
                })
            },
        }));
        AppState {
            services,
            limits: RequestLimits::default(),
            subscribers,
            trust: Arc::new(Trust::open_loopback()),
            metrics,
            metrics_on_api: true,
        }
    }
}

/// Handlers reach the graph, stores and flow tables through the services.
impl std::ops::Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.services
    }
}

pub type ApiResult = Result<Response, ApiError>;

/// Collapses a handler result into a response.
pub fn respond(result: ApiResult) -> Result<Response, Infallible> {
    Ok(respond_now(result))
}

/// Collapses a handler result into a response, for synchronous handlers.
pub fn respond_now(result: ApiResult) -> Response {
    result.unwrap_or_else(reply_error)
}

fn with_state(state: AppState) -> impl Filter<Extract = (AppState,), Error = Infallible> + Clone {
    warp::any().map(move || state.clone())
}

/// Parses a JSON body into `T`; the 400 reason names the offending field
/// (`SamplingRate: invalid type: string "x", expected u32 at line 1 column 42`). An
/// empty body, a body that is not a JSON object, and a top-level key `T` does not know,
/// are 400s too.
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    parse_json_accepting(body, &[])
}

/// [`parse_json`], also accepting the top-level keys in `accepted` (output-only fields a
/// client may send back) and ignoring them.
pub fn parse_json_accepting<T: serde::de::DeserializeOwned>(
    body: &[u8],
    accepted: &[&str],
) -> Result<T, ApiError> {
    let Some(first) = body.iter().find(|b| !b.is_ascii_whitespace()) else {
        return Err(missing_body("a JSON object"));
    };
    // Serde reads a struct from a JSON array too (`[]` is a capture with every field
    // left out): every body of this API is an object.
    if *first != b'{' {
        return Err(ApiError::bad_request("request body must be a JSON object"));
    }
    let mut unknown: Option<String> = None;
    let de = &mut serde_json::Deserializer::from_slice(body);
    let mut note = |path: serde_ignored::Path| {
        if let serde_ignored::Path::Map {
            parent: serde_ignored::Path::Root,
            key,
        } = path
        {
            if unknown.is_none() && !accepted.contains(&key.as_str()) {
                unknown = Some(key);
            }
        }
    };
    let de = serde_ignored::Deserializer::new(de, &mut note);
    let value: T = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        if path.is_empty() || path == "." {
            ApiError::bad_request(e.into_inner())
        } else {
            ApiError::bad_request(format!("{path}: {}", e.into_inner()))
        }
    })?;
    match unknown {
        Some(key) => Err(unknown_field(&key)),
        None => Ok(value),
    }
}

/// The 400 for a POST or PATCH without a body: `what` names what was expected.
pub fn missing_body(what: &str) -> ApiError {
    ApiError::bad_request(format!("request body is empty: expected {what}"))
}

/// The 400 for a top-level key the resource does not have.
pub fn unknown_field(key: &str) -> ApiError {
    ApiError::bad_request(format!(
        "unknown field {key:?} (field names are case-sensitive)"
    ))
}

/// Every route of the API, with error recovery (no access control: see [`secured`]).
pub fn routes(state: AppState) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone {
    let api_root = warp::path!("api")
        .and(warp::get())
        .and(with_state(state.clone()))
        .map(|s: AppState| {
            let info = openapi::ApiInfo {
                host: s.host_id.clone(),
                version: env!("CARGO_PKG_VERSION").to_owned(),
                service: "analyzer".to_owned(),
            };
            reply_json(StatusCode::OK, &info)
        });

    let document = warp::path!("api" / "openapi.json")
        .and(warp::get())
        .map(|| reply_json_bytes(StatusCode::OK, openapi::ApiDoc::json().to_vec()));

    let status = warp::path!("api" / "status")
        .and(warp::get())
        .and(with_state(state.clone()))
        .then(|s: AppState| async move {
            // Locks the graph and the probes' registry: off the async workers.
            match tokio::task::spawn_blocking(move || status(&s)).await {
                Ok(status) => reply_json(StatusCode::OK, &status),
                Err(e) => reply_error(ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    e.to_string(),
                )),
            }
        });

    let body = limited_body(
        MAX_JSON_BODY,
        BodyDeadline::Whole(state.limits.body_read_timeout),
    );

    // Each group boxed: its request future lives on the heap, so the whole tree's
    // future stays small enough for a 2 MiB stack in a debug build.
    let topology = topology::routes(state.clone(), body.clone()).boxed();
    let elements = elements::routes(state.clone(), body.clone()).boxed();
    let injections = resources::routes(state.clone(), state.injections.clone(), body.clone());
    let node_rules = resources::routes(state.clone(), state.node_rules.clone(), body.clone());
    let edge_rules = resources::routes(state.clone(), state.edge_rules.clone(), body.clone());
    let alerts = resources::routes(state.clone(), state.alerts.clone(), body.clone()).boxed();
    let captures = resources::routes(state.clone(), state.captures.clone(), body).boxed();
    let rules = node_rules.or(edge_rules).unify().boxed();
    let injections = injections.boxed();
    let pcap = pcap::routes(state.clone()).boxed();
    let ws = ws::routes(state.clone()).boxed();
    let metrics_route = metrics_route(state.metrics.clone(), state.metrics_on_api);
    let recorder = state.metrics.clone();
    let record = warp::log::custom(move |info: warp::log::Info<'_>| {
        recorder.observe_http(
            info.method().as_str(),
            info.path(),
            info.status().as_u16(),
            info.elapsed(),
        )
    });

    api_root
        .or(status)
        .unify()
        .or(document)
        .unify()
        .or(topology)
        .unify()
        .or(elements)
        .unify()
        .or(captures)
        .unify()
        .or(injections)
        .unify()
        .or(rules)
        .unify()
        .or(alerts)
        .unify()
        .or(pcap)
        .unify()
        .or(ws)
        .unify()
        .or(crate::ui::routes())
        .unify()
        .or(metrics_route)
        .unify()
        .map(Reply::into_response)
        .recover(recover)
        .unify()
        .with(record)
        .map(Reply::into_response)
}

/// The routes of `--metrics-listen`: `/metrics` alone.
pub fn metrics_only_routes(
    metrics: Arc<Metrics>,
) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone {
    metrics_route(metrics, true).recover(recover).unify()
}

/// `GET /metrics`: Prometheus text, or OpenMetrics when the `Accept` header prefers it.
/// `enabled` false: not served here (404), as when it has a listener of its own.
pub fn metrics_route(
    metrics: Arc<Metrics>,
    enabled: bool,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("metrics")
        .and(warp::get())
        .and_then(move || async move {
            if enabled {
                Ok(())
            } else {
                Err(warp::reject::not_found())
            }
        })
        .untuple_one()
        .and(warp::header::optional::<String>("accept"))
        .then(move |accept: Option<String>| {
            let metrics = metrics.clone();
            async move {
                // Reads /proc (process metrics): off the async workers.
                tokio::task::spawn_blocking(move || metrics.render(accept.as_deref()))
                    .await
                    .unwrap_or_else(|e| (e.to_string(), "text/plain"))
            }
        })
        .map(|(body, content_type): (String, &'static str)| {
            let mut resp = Response::new(body.into());
            resp.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            resp
        })
}

/// The API as served: [`routes`] behind the trust boundary ([`crate::auth::secure`]).
pub fn secured(state: AppState) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone {
    // Boxed: the request future of the whole route tree is then on the heap, not on
    // the worker thread's stack, which a debug build's query parsing needs.
    let routes = routes(state.clone())
        .boxed()
        // The routes answer every request (their error type is Infallible); this only
        // gives the boxed filter that type back.
        .recover(|r: warp::Rejection| async move {
            Ok::<_, Infallible>(crate::http::reply_error(
                crate::http::ApiError::bad_request(format!("{r:?}")),
            ))
        })
        .unify();
    crate::auth::secure(state.trust.clone(), routes)
}

fn status(s: &AppState) -> Value {
    topotap_topology::blocking::section("/api/status");
    let (nodes, edges) = {
        let g = s.graph.read();
        (g.node_count(), g.edge_count())
    };
    let mut status = json!({
        "Agents": {},
        "Peers": {"Incomers": {}, "Outgoers": {}},
        "Publishers": {},
        "Subscribers": s.subscribers.lock().to_json(),
        "WebSocket": s.subscribers.lock().stats_json(),
        "Alerts": {"IsMaster": true},
        "Captures": {"IsMaster": true},
        "Probes": {},
        "Topology": {"Nodes": nodes, "Edges": edges},
        "Version": env!("CARGO_PKG_VERSION"),
        "UptimeSeconds": s.started.elapsed().as_secs(),
        "Host": s.host_id,
        "QueryBudget": {
            "MaxResultElements": s.query_budget.max_elements,
            "MaxResultBytes": s.query_budget.max_bytes,
            "QueryTimeoutMs": u64::try_from(s.query_budget.timeout.as_millis()).unwrap_or(u64::MAX),
        },
    });
    if let Value::Object(map) = &mut status {
        map.extend(s.services.status_sections());
    }
    status
}

/// How long a request body may take to arrive.
#[derive(Clone, Copy, Debug)]
pub enum BodyDeadline {
    /// The whole body within this (small bodies: JSON). Streamed uploads (`/api/pcap`)
    /// read their body themselves, with no pause longer than the same timeout.
    Whole(Duration),
}

/// The request body, read up to `limit` bytes: a larger `Content-Length`, or a chunked
/// body that grows past the limit, is refused with 413 without reading the rest. A
/// missing `Content-Length` is fine (an empty or chunked body). A body that does not
/// arrive in time ([`BodyDeadline`]) is a 408, and the connection is closed.
pub fn limited_body(
    limit: u64,
    deadline: BodyDeadline,
) -> impl Filter<Extract = (bytes::Bytes,), Error = Rejection> + Clone + Send + Sync + 'static {
    warp::header::optional::<u64>("content-length")
        .and_then(move |len: Option<u64>| async move {
            match len {
                Some(n) if n > limit => Err(warp::reject::custom(BodyTooLarge(limit))),
                _ => Ok(()),
            }
        })
        .untuple_one()
        .and(warp::body::stream())
        .and_then(move |stream| async move {
            match deadline {
                BodyDeadline::Whole(t) => {
                    tokio::time::timeout(t, collect_limited(stream, limit, None))
                        .await
                        .unwrap_or(Err(warp::reject::custom(BodyTimeout(t))))
                }
            }
        })
}

async fn collect_limited<S, B>(
    stream: S,
    limit: u64,
    idle: Option<Duration>,
) -> Result<bytes::Bytes, Rejection>
where
    S: futures_util::Stream<Item = Result<B, warp::Error>>,
    B: warp::Buf,
{
    use futures_util::TryStreamExt;

    let mut body = bytes::BytesMut::new();
    let mut stream = std::pin::pin!(stream);
    loop {
        let next = match idle {
            Some(t) => tokio::time::timeout(t, stream.try_next())
                .await
                .map_err(|_| warp::reject::custom(BodyTimeout(t)))?,
            None => stream.try_next().await,
        };
        let Some(mut chunk) = next.map_err(|_| warp::reject::custom(BodyUnreadable))? else {
            break;
        };
        if body.len() as u64 + chunk.remaining() as u64 > limit {
            return Err(warp::reject::custom(BodyTooLarge(limit)));
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            let n = part.len();
            body.extend_from_slice(part);
            chunk.advance(n);
        }
    }
    Ok(body.freeze())
}

#[derive(Debug)]
struct BodyTimeout(Duration);
impl warp::reject::Reject for BodyTimeout {}

#[derive(Debug)]
struct BodyTooLarge(u64);
impl warp::reject::Reject for BodyTooLarge {}

#[derive(Debug)]
struct BodyUnreadable;
impl warp::reject::Reject for BodyUnreadable {}

/// Turns warp's rejections into plain-text errors with a one-line reason.
async fn recover(rejection: Rejection) -> Result<Response, Infallible> {
    let err: ApiError = if rejection.is_not_found() {
        Error::not_found("404 page not found").into()
    } else if let Some(BodyTooLarge(limit)) = rejection.find() {
        Error::too_large(format!("request body larger than {limit} bytes")).into()
    } else if rejection.find::<warp::reject::PayloadTooLarge>().is_some() {
        Error::too_large("request body too large").into()
    } else if let Some(BodyTimeout(t)) = rejection.find() {
        ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            format!("request body not received within {} s", t.as_secs()),
        )
    } else if rejection.find::<warp::reject::LengthRequired>().is_some() {
        ApiError::new(StatusCode::LENGTH_REQUIRED, "Content-Length required")
    } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
        ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
    } else if rejection.find::<BodyUnreadable>().is_some() {
        Error::invalid("request body could not be read").into()
    } else if let Some(e) = rejection.find::<warp::reject::InvalidQuery>() {
        Error::invalid(e).into()
    } else if let Some(e) = rejection.find::<warp::reject::MissingHeader>() {
        Error::invalid(e).into()
    } else if let Some(e) = rejection.find::<warp::reject::InvalidHeader>() {
        Error::invalid(e).into()
    } else {
        Error::invalid(format!("{rejection:?}")).into()
    };
    Ok(reply_error(err))
}

#[cfg(test)]
pub(crate) mod test_support {
    use super::*;
    use topotap_topology::{Graph, SharedGraph};

    pub fn state() -> AppState {
        let graph = SharedGraph::new(Graph::new(), "test-host");
        AppState::new(Services::new(graph, "test-host", Default::default()))
    }

    /// One request through the routes, as JSON: the status and the body as text.
    pub async fn call(
        filter: &(impl Filter<Extract = (Response,), Error = Infallible> + Clone + 'static),
        method: &str,
        path: &str,
        body: &str,
    ) -> (StatusCode, String) {
        let resp = warp::test::request()
            .method(method)
            .path(path)
            .header("content-type", "application/json")
            .body(body)
            .reply(filter)
            .await;
        (
            resp.status(),
            String::from_utf8_lossy(resp.body()).into_owned(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::{call, state};
    use super::*;

    #[tokio::test]
    async fn topology_query_shapes_and_errors_without_a_socket() {
        let s = state();
        let api = routes(s.clone());
        let (st, _) = call(
            &api,
            "POST",
            "/api/node",
            r#"{"ID":"n1","Metadata":{"Name":"eth0","Type":"veth","MTU":1500}}"#,
        )
        .await;
        assert_eq!(st, StatusCode::CREATED);
        let q = |g: &str| json!({ "GremlinQuery": g }).to_string();
        let (st, body) = call(&api, "POST", "/api/topology", &q("G.V().Count()")).await;
        assert_eq!((st, body.as_str()), (StatusCode::OK, "1"));
        let (st, body) = call(&api, "POST", "/api/topology", &q("G.V().Values('MTU')")).await;
        assert_eq!((st, body.as_str()), (StatusCode::OK, "[1500]"));
        let (st, body) = call(&api, "POST", "/api/topology", &q("G")).await;
        assert_eq!(st, StatusCode::OK);
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v[0]["Nodes"][0]["ID"], "n1");
        let (st, body) = call(&api, "POST", "/api/topology", &q("G.V().Has('MTU', GT(")).await;
        assert_eq!(st, StatusCode::BAD_REQUEST);
        assert!(
            body.ends_with('\n') && body.lines().count() == 1,
            "{body:?}"
        );
        // An empty GremlinQuery is Skydive's 204; a missing body or an unknown field is
        // the client's mistake.
        let (st, _) = call(&api, "POST", "/api/topology", &q("")).await;
        assert_eq!(st, StatusCode::NO_CONTENT);
        for body in ["", " \n"] {
            let (st, reason) = call(&api, "POST", "/api/topology", body).await;
            assert_eq!(st, StatusCode::BAD_REQUEST, "{body:?}");
            assert_eq!(
                reason,
                "request body is empty: expected a JSON object with GremlinQuery\n"
            );
        }
        for body in ["[]", "[\"G.V()\"]", "\"G.V()\"", "null"] {
            let (st, reason) = call(&api, "POST", "/api/topology", body).await;
            assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");
            assert_eq!(reason, "request body must be a JSON object\n", "{body}");
        }
        let (st, reason) = call(&api, "POST", "/api/topology", r#"{"Gremlin":"G.V()"}"#).await;
        assert_eq!(st, StatusCode::BAD_REQUEST);
        assert!(reason.contains("unknown field \"Gremlin\""), "{reason}");
    }

    #[tokio::test]
    async fn errors_are_plain_text_with_nosniff() {
        let api = routes(state());
        let resp = warp::test::request()
            .method("GET")
            .path("/api/node/missing")
            .reply(&api)
            .await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
        assert_eq!(
            resp.headers()[header::CONTENT_TYPE],
            "text/plain; charset=utf-8"
        );
        assert_eq!(resp.headers()["x-content-type-options"], "nosniff");
        assert_eq!(resp.body().as_ref(), b"Node 'missing' not found\n");
    }
}
