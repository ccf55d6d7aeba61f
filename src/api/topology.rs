//! `GET /api/topology` (the whole graph) and `POST /api/topology` (a Gremlin query).
//!
//! The whole graph is copied under the read lock and encoded after it is released,
//! within the byte budget (`--max-result-bytes`): a 413 with a one-line reason beyond.
//!
//! A query is compiled (a 400 with the line and column of an unknown step or bad
//! parameter), evaluated under the graph read lock within the server's query
//! [`Budget`](topotap_topology::gremlin::Budget), snapshotted, and written after the lock
//! is released. Its exact size is known before the status line: a budget that runs out
//! is a 413 (elements, bytes) or a 503 (time) with a one-line reason, never a cut-off
//! answer; an answer that fits is streamed in chunks with its `Content-Length`.

use bytes::Bytes;
use serde::Deserialize;
use topotap_topology::gremlin::{Answer, Compiled, ErrorKind, EvalError, Extensions};
use warp::http::{header, HeaderValue, StatusCode};
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use super::{missing_body, parse_json, respond, with_state, ApiError, ApiResult, AppState};

/// Size of the chunks an answer is written in.
const CHUNK: usize = 64 * 1024;

/// Longest query text accepted; the grammar has its own, lower, limits on nesting.
pub const MAX_QUERY_LEN: usize = 64 * 1024;

#[derive(Deserialize)]
struct TopologyParams {
    #[serde(rename = "GremlinQuery", default)]
    gremlin_query: String,
}

pub fn routes(
    state: AppState,
    body: impl Filter<Extract = (Bytes,), Error = Rejection> + Clone + Send + Sync + 'static,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let index = warp::path!("api" / "topology")
        .and(warp::get())
        .and(with_state(state.clone()))
        .and_then(|s: AppState| async move { respond(index(&s).await) });

    let search = warp::path!("api" / "topology")
        .and(warp::post())
        .and(with_state(state))
        .and(warp::header::optional::<String>("accept"))
        .and(body)
        .and_then(
            |s: AppState, accept: Option<String>, body: Bytes| async move {
                let pcap = accept.is_some_and(|a| a.trim().eq_ignore_ascii_case(PCAP));
                respond(search(s, body, pcap).await)
            },
        );

    index.or(search).unify()
}

/// The whole graph, copied under the read lock and written after it is released,
/// within the server's byte budget (a 413 with a one-line reason beyond it).
async fn index(s: &AppState) -> ApiResult {
    let graph = s.graph.clone();
    let budget = s.query_budget;
    let answer = tokio::task::spawn_blocking(move || {
        topotap_topology::gremlin::whole_graph(&graph, &budget).map_err(eval_error)
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    Ok(reply_answer(answer))
}

async fn search(s: AppState, body: Bytes, pcap: bool) -> ApiResult {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(missing_body("a JSON object with GremlinQuery"));
    }
    let params: TopologyParams = parse_json(&body)?;
    if params.gremlin_query.trim().is_empty() {
        return Ok(no_content());
    }
    if pcap {
        return pcap_answer(&s, params.gremlin_query).await;
    }
    let (answer, past, incomplete) = run_query(&s, params.gremlin_query).await?;
    let mut resp = reply_answer(answer);
    if let Some(note) = past.and_then(|p| p.note()) {
        if let Ok(v) = HeaderValue::from_str(&note) {
            resp.headers_mut().insert(HISTORY_HEADER, v);
        }
    }
    if !incomplete.is_empty() {
        let line = incomplete.join("; ").replace(['\r', '\n'], " ");
        if let Ok(v) = HeaderValue::from_str(&line) {
            resp.headers_mut().insert(FLOWS_INCOMPLETE, v);
        }
    }
    Ok(resp)
}

/// Set on an answer about a time the history does not fully cover (before the
/// retention horizon): `before-retention; horizon=<ms since the epoch>`.
pub const HISTORY_HEADER: &str = "x-topotap-history";

/// What a query with `G.At`/`G.Context` looked at.
#[derive(Debug, Clone, Copy)]
pub struct PastQuery {
    /// The oldest instant the history covers.
    pub horizon: i64,
    /// Whether the history covers the whole time asked.
    pub complete: bool,
}

impl PastQuery {
    /// The value of [`HISTORY_HEADER`], when the answer is incomplete.
    pub fn note(&self) -> Option<String> {
        (!self.complete).then(|| format!("before-retention; horizon={}", self.horizon))
    }
}

/// Header of an answer whose `Flows()` lacks some agents' flows: one line, the agents
/// and why.
pub const FLOWS_INCOMPLETE: &str = "X-Flows-Incomplete";

/// On an analyzer, fetches the agents' flow tables before a query that uses `Flows()`
/// (never under the graph's lock); returns the agents that did not answer fully.
async fn refresh_remote_flows(s: &AppState, query: &str) -> Vec<String> {
    match &s.remote_flows {
        Some(remote) if query.contains("Flows") => remote.refresh().await,
        _ => Vec::new(),
    }
}

/// The `Accept` value asking for the packets of a `RawPackets()` query as a pcap file.
pub const PCAP: &str = "application/vnd.tcpdump.pcap";

/// A `...RawPackets()` query answered as a pcap file (Skydive §1.5): every raw packet
/// of the result, in time order, within the byte budget. Any other result is a 406. A
/// query of a past time (`G.At`/`G.Context`) answers with the frames the history kept
/// with the flows of that time.
async fn pcap_answer(s: &AppState, query: String) -> ApiResult {
    if query.len() > MAX_QUERY_LEN {
        return Err(ApiError::bad_request(format!(
            "query longer than {MAX_QUERY_LEN} bytes"
        )));
    }
    let compiled =
        topotap_topology::gremlin::compile(&query, &s.extensions).map_err(ApiError::bad_request)?;
    let past = match compiled.time_context() {
        Some(context) => Some((history_of(s)?, context.resolve(topotap_topology::now_ms()))),
        None => None,
    };
    let graph = s.graph.clone();
    let budget = s.query_budget;
    let extensions = s.extensions.clone();
    let file = tokio::task::spawn_blocking(move || {
        let out = match past {
            Some((history, range)) => {
                let (past, compiled) = prepare_past(&history, range, &query, &extensions, None)?;
                past.with_view(|v| compiled.evaluate_view(v, &budget))
                    .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?
            }
            None => compiled.evaluate(&graph.read(), &budget),
        }
        .map_err(eval_error)?;
        let raw = match &out {
            topotap_topology::gremlin::Output::Ext(e) => {
                e.as_any()
                    .downcast_ref::<crate::capture::raw::RawPacketSet>()
            }
            _ => None,
        };
        let Some(raw) = raw else {
            return Err(ApiError::new(
                StatusCode::NOT_ACCEPTABLE,
                "Only RawPackets can be outputted as pcap",
            ));
        };
        let file = raw
            .write_pcap()
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        if file.len() > budget.max_bytes {
            return Err(eval_error(topotap_topology::gremlin::too_many_bytes(
                budget.max_bytes,
            )));
        }
        Ok(file)
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    let mut resp = Response::new(file.into());
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PCAP));
    Ok(resp)
}

/// The history a query of a past time reads: 400 when there is none.
fn history_of(s: &AppState) -> Result<crate::history::History, ApiError> {
    s.history.clone().ok_or_else(|| {
        ApiError::bad_request("Backend does not support history: this server runs with --history off, or its history store could not be opened")
    })
}

/// The graph of a past time and the query compiled to run over it: when it uses
/// `Flows()`, with the flows of that time, `remote` (an analyzer's agents') or read
/// from the history. Blocking.
fn prepare_past(
    history: &crate::history::History,
    range: topotap_topology::gremlin::TimeRange,
    query: &str,
    extensions: &Extensions,
    remote: Option<Vec<crate::history::flows::PastFlow>>,
) -> Result<(crate::history::Past, Compiled), ApiError> {
    let unavailable = |e: crate::history::HistoryError| {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
    };
    let past = history
        .graph_between(range.from, range.at)
        .map_err(unavailable)?;
    let mut ext = extensions.clone();
    if query.to_ascii_lowercase().contains("flows") {
        let flows = match remote {
            Some(f) => f,
            None => {
                history
                    .flows_between(range.from, range.at)
                    .map_err(unavailable)?
                    .0
            }
        };
        ext.register(std::sync::Arc::new(crate::capture::flows::FlowsStep::past(
            flows,
        )));
    }
    let compiled =
        topotap_topology::gremlin::compile(query, &ext).map_err(ApiError::bad_request)?;
    Ok((past, compiled))
}

/// Compiles and evaluates a query off the async workers within the server's budget.
/// A query starting with `G.At(t)`/`G.Context(t[, d])` runs over the graph of that
/// time, built from the history; on an analyzer, its `Flows()` are the agents' flows
/// of that time, from their histories. Also returns the agents whose flows are missing
/// from the answer (one line each; see [`FLOWS_INCOMPLETE`]).
pub async fn run_query(
    s: &AppState,
    query: String,
) -> Result<(Answer, Option<PastQuery>, Vec<String>), ApiError> {
    if query.len() > MAX_QUERY_LEN {
        return Err(ApiError::bad_request(format!(
            "query longer than {MAX_QUERY_LEN} bytes"
        )));
    }
    let compiled =
        topotap_topology::gremlin::compile(&query, &s.extensions).map_err(ApiError::bad_request)?;
    let budget = s.query_budget;
    let Some(context) = compiled.time_context() else {
        let incomplete = refresh_remote_flows(s, &query).await;
        let graph = s.graph.clone();
        return tokio::task::spawn_blocking(move || {
            topotap_topology::gremlin::answer(&graph, &compiled, &budget)
                .map(|a| (a, None, incomplete))
                .map_err(eval_error)
        })
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    };
    let history = history_of(s)?;
    let range = context.resolve(topotap_topology::now_ms());
    // `Flows()` of a past time reads the flow snapshots of that time.
    let flows = query.to_ascii_lowercase().contains("flows");
    // An analyzer's flows are its agents': each answers from its own history.
    let (remote, incomplete) = match &s.remote_flows {
        Some(r) if flows => {
            let (f, incomplete) = r.past(range.from, range.at).await;
            (Some(f), incomplete)
        }
        _ => (None, Vec::new()),
    };
    let extensions = s.extensions.clone();
    tokio::task::spawn_blocking(move || {
        let (past, compiled) = prepare_past(&history, range, &query, &extensions, remote)?;
        let snapshot = past
            .with_view(|v| topotap_topology::gremlin::Snapshot::of_query(v, &compiled, &budget))
            .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?
            .map_err(eval_error)?;
        let answer = snapshot.encode(&budget).map_err(eval_error)?;
        Ok((
            answer,
            Some(PastQuery {
                horizon: past.horizon,
                complete: past.complete,
            }),
            incomplete,
        ))
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
}

/// 400 for a query that does not apply, 413 for an element or byte budget, 503 for the
/// time budget.
pub fn eval_error(e: EvalError) -> ApiError {
    let status = match e.kind {
        ErrorKind::Invalid => StatusCode::BAD_REQUEST,
        ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::Timeout => StatusCode::SERVICE_UNAVAILABLE,
    };
    ApiError::new(status, e.to_string())
}

/// 200 with the answer streamed in chunks; its length is known up front.
fn reply_answer(answer: Answer) -> Response {
    let len = answer.len();
    let chunks = answer
        .into_chunks(CHUNK)
        .map(Ok::<Bytes, std::convert::Infallible>);
    let mut resp = warp::reply::stream(futures_util::stream::iter(chunks)).into_response();
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=UTF-8"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    resp
}

fn no_content() -> Response {
    let mut resp = Response::default();
    *resp.status_mut() = StatusCode::NO_CONTENT;
    resp
}
