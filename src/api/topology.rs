//! `GET /api/topology` (the whole graph) and `POST /api/topology` (a Gremlin query).

use bytes::Bytes;
use serde::Deserialize;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection};

use super::{parse_json, reply_json_bytes, respond, with_state, ApiError, ApiResult, AppState};

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
        .and(body)
        .and_then(|s: AppState, body: Bytes| async move { respond(search(s, body).await) });

    index.or(search).unify()
}

async fn index(s: &AppState) -> ApiResult {
    let graph = s.graph.clone();
    let bytes = tokio::task::spawn_blocking(move || {
        let g = graph.read();
        let nodes: Vec<_> = g.nodes().map(|n| g.node(n)).collect();
        let edges: Vec<_> = g.edges().map(|e| g.edge(e)).collect();
        #[derive(serde::Serialize)]
        struct Whole<N, E> {
            #[serde(rename = "Nodes")]
            nodes: N,
            #[serde(rename = "Edges")]
            edges: E,
        }
        serde_json::to_vec(&Whole { nodes, edges })
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(reply_json_bytes(StatusCode::OK, bytes))
}

async fn search(s: AppState, body: Bytes) -> ApiResult {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(no_content());
    }
    let params: TopologyParams = parse_json(&body)?;
    if params.gremlin_query.trim().is_empty() {
        return Ok(no_content());
    }
    let bytes = run_query(&s, params.gremlin_query).await?;
    Ok(reply_json_bytes(StatusCode::OK, bytes))
}

/// Parses and evaluates a query off the async workers and returns its JSON; parse and
/// evaluation errors become 400s with their one-line reason.
pub async fn run_query(s: &AppState, query: String) -> Result<Vec<u8>, ApiError> {
    if query.len() > MAX_QUERY_LEN {
        return Err(ApiError::bad_request(format!(
            "query longer than {MAX_QUERY_LEN} bytes"
        )));
    }
    let graph = s.graph.clone();
    let extensions = s.extensions.clone();
    tokio::task::spawn_blocking(move || {
        let ast = topotap_grammar::parse(&query).map_err(ApiError::bad_request)?;
        let g = graph.read();
        let out = topotap_topology::gremlin::evaluate(&ast, &g, &extensions)
            .map_err(ApiError::bad_request)?;
        serde_json::to_vec(&out.json(&g)).map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("Error while encoding response: {e}"),
            )
        })
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
}

fn no_content() -> Response {
    let mut resp = Response::default();
    *resp.status_mut() = StatusCode::NO_CONTENT;
    resp
}
