//! `/api/node` and `/api/edge`: graph elements over REST (§1.8).
//!
//! Lists are JSON objects keyed by ID; create answers 201 with the stored element;
//! PATCH takes an RFC 6902 patch against the element and applies only its `Metadata`
//! (a node's `TID`, `Name` and `Type` cannot change), answering 304 when nothing changed.

use bytes::Bytes;
use serde_json::{Map, Value};
use topotap_topology::{now_ms, Edge, GraphError, Identifier, Metadata, Node};
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection};

use super::{
    parse_json, reply_deleted, reply_json, respond_now, with_state, ApiError, ApiResult, AppState,
};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Node,
    Edge,
}

impl Kind {
    fn title(self) -> &'static str {
        match self {
            Kind::Node => "Node",
            Kind::Edge => "Edge",
        }
    }
}

pub fn routes(
    state: AppState,
    body: impl Filter<Extract = (Bytes,), Error = Rejection> + Clone + Send + Sync + 'static,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let node = kind_routes(state.clone(), body.clone(), "node", Kind::Node);
    let edge = kind_routes(state, body, "edge", Kind::Edge);
    node.or(edge).unify()
}

fn kind_routes(
    state: AppState,
    body: impl Filter<Extract = (Bytes,), Error = Rejection> + Clone + Send + Sync + 'static,
    segment: &'static str,
    kind: Kind,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let base = warp::path("api").and(warp::path(segment));
    let s = move || with_state_kind(state.clone(), kind);

    let index = base
        .and(warp::path::end())
        .and(warp::get())
        .and(s())
        .map(|(s, k): (AppState, Kind)| respond_now(index(&s, k)));
    let create = base
        .and(warp::path::end())
        .and(warp::post())
        .and(s())
        .and(body.clone())
        .map(|(s, k): (AppState, Kind), b: Bytes| respond_now(create(&s, k, &b)));
    let show = base
        .and(warp::path::param::<String>())
        .and(warp::path::end())
        .and(warp::get())
        .and(s())
        .map(|id: String, (s, k): (AppState, Kind)| respond_now(show(&s, k, &id)));
    let patch = base
        .and(warp::path::param::<String>())
        .and(warp::path::end())
        .and(warp::patch())
        .and(s())
        .and(body)
        .map(|id: String, (s, k): (AppState, Kind), b: Bytes| respond_now(patch(&s, k, &id, &b)));
    let delete = base
        .and(warp::path::param::<String>())
        .and(warp::path::end())
        .and(warp::delete())
        .and(s())
        .map(|id: String, (s, k): (AppState, Kind)| respond_now(delete(&s, k, &id)));

    index
        .or(create)
        .unify()
        .or(show)
        .unify()
        .or(patch)
        .unify()
        .or(delete)
        .unify()
}

fn with_state_kind(
    state: AppState,
    kind: Kind,
) -> impl Filter<Extract = ((AppState, Kind),), Error = std::convert::Infallible> + Clone {
    with_state(state).map(move |s| (s, kind))
}

fn not_found(kind: Kind, id: &str) -> ApiError {
    ApiError::not_found(format!("{} '{id}' not found", kind.title()))
}

fn index(s: &AppState, kind: Kind) -> ApiResult {
    let g = s.graph.read();
    let mut out = Map::new();
    match kind {
        Kind::Node => {
            for n in g.nodes() {
                let n = g.node(n);
                out.insert(n.id().to_string(), to_value(&n)?);
            }
        }
        Kind::Edge => {
            for e in g.edges() {
                let e = g.edge(e);
                out.insert(e.id().to_string(), to_value(&e)?);
            }
        }
    }
    Ok(reply_json(StatusCode::OK, &out))
}

fn to_value(v: &impl serde::Serialize) -> Result<Value, ApiError> {
    serde_json::to_value(v)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

fn show(s: &AppState, kind: Kind, id: &str) -> ApiResult {
    let g = s.graph.read();
    let ident = Identifier::from(id);
    match kind {
        Kind::Node => match g.node_by_id(&ident) {
            Some(n) => Ok(reply_json(StatusCode::OK, &n)),
            None => Err(not_found(kind, id)),
        },
        Kind::Edge => match g.edge_by_id(&ident) {
            Some(e) => Ok(reply_json(StatusCode::OK, &e)),
            None => Err(not_found(kind, id)),
        },
    }
}

fn create(s: &AppState, kind: Kind, body: &[u8]) -> ApiResult {
    let raw: Value = parse_json(body)?;
    match kind {
        Kind::Node => {
            validate_node(&raw)?;
            let mut node: Node = serde_json::from_value(raw).map_err(ApiError::bad_request)?;
            fill_defaults(
                s,
                &mut node.host,
                &mut node.origin,
                &mut node.created_at,
                &mut node.updated_at,
            );
            node.deleted_at = None;
            s.graph
                .write()
                .add_node(node.clone())
                .map_err(ApiError::bad_request)?;
            Ok(reply_json(StatusCode::CREATED, &node))
        }
        Kind::Edge => {
            validate_edge(&raw)?;
            let mut edge: Edge = serde_json::from_value(raw).map_err(ApiError::bad_request)?;
            fill_defaults(
                s,
                &mut edge.host,
                &mut edge.origin,
                &mut edge.created_at,
                &mut edge.updated_at,
            );
            edge.deleted_at = None;
            s.graph
                .write()
                .add_edge(edge.clone())
                .map_err(ApiError::bad_request)?;
            Ok(reply_json(StatusCode::CREATED, &edge))
        }
    }
}

fn fill_defaults(
    s: &AppState,
    host: &mut String,
    origin: &mut String,
    created: &mut i64,
    updated: &mut i64,
) {
    if host.is_empty() {
        host.clone_from(&s.host_id);
    }
    if origin.is_empty() {
        *origin = s.api_origin();
    }
    let now = now_ms();
    if *created == 0 {
        *created = now;
    }
    if *updated == 0 {
        *updated = *created;
    }
}

fn non_empty_str<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// Skydive's node schema: `ID`, and `Metadata` with non-empty `Type` and `Name`; `netns`
/// nodes need a `Path`, `ovsport` nodes a `UUID`.
fn validate_node(raw: &Value) -> Result<(), ApiError> {
    if !raw.is_object() {
        return Err(ApiError::bad_request(
            "invalid schema: node must be a JSON object",
        ));
    }
    if non_empty_str(raw, "ID").is_none() {
        return Err(ApiError::bad_request("invalid schema: ID is required"));
    }
    validate_metadata(raw.get("Metadata"))
}

fn validate_metadata(md: Option<&Value>) -> Result<(), ApiError> {
    let md = match md {
        Some(v @ Value::Object(_)) => v,
        _ => {
            return Err(ApiError::bad_request(
                "invalid schema: Metadata is required",
            ))
        }
    };
    let Some(kind) = non_empty_str(md, "Type") else {
        return Err(ApiError::bad_request(
            "invalid schema: Metadata: Type is required",
        ));
    };
    if non_empty_str(md, "Name").is_none() {
        return Err(ApiError::bad_request(
            "invalid schema: Metadata: Name is required",
        ));
    }
    if kind == "netns" && non_empty_str(md, "Path").is_none() {
        return Err(ApiError::bad_request(
            "invalid schema: Metadata: Path is required",
        ));
    }
    if kind == "ovsport" && non_empty_str(md, "UUID").is_none() {
        return Err(ApiError::bad_request(
            "invalid schema: Metadata: UUID is required",
        ));
    }
    Ok(())
}

/// Skydive's edge schema: `ID`, `Parent`, `Child` and a non-empty `Metadata.RelationType`.
fn validate_edge(raw: &Value) -> Result<(), ApiError> {
    if !raw.is_object() {
        return Err(ApiError::bad_request(
            "invalid schema: edge must be a JSON object",
        ));
    }
    for key in ["ID", "Parent", "Child"] {
        if non_empty_str(raw, key).is_none() {
            return Err(ApiError::bad_request(format!(
                "invalid schema: {key} is required"
            )));
        }
    }
    match raw.get("Metadata") {
        Some(md) if non_empty_str(md, "RelationType").is_some() => Ok(()),
        _ => Err(ApiError::bad_request(
            "invalid schema: Metadata: RelationType is required",
        )),
    }
}

fn patch(s: &AppState, kind: Kind, id: &str, body: &[u8]) -> ApiResult {
    let ops: json_patch::Patch = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("incorrect JSON patch: {e}")))?;
    let ident = Identifier::from(id);
    let mut g = s.graph.write();
    let mut doc = match kind {
        Kind::Node => g.node_by_id(&ident).map(|n| to_value(&n)),
        Kind::Edge => g.edge_by_id(&ident).map(|e| to_value(&e)),
    }
    .ok_or_else(|| not_found(kind, id))??;
    json_patch::patch(&mut doc, &ops)
        .map_err(|e| ApiError::bad_request(format!("incorrect JSON patch: {e}")))?;
    let new_md: Metadata = match doc.get("Metadata") {
        Some(Value::Object(m)) => m.clone(),
        _ => {
            return Err(ApiError::bad_request(
                "validating patched resource: invalid schema: Metadata is required",
            ))
        }
    };
    let changed = match kind {
        Kind::Node => {
            let current = g.node_by_id(&ident).map(|n| n.metadata().clone()).unwrap_or_default();
            let mut new_md = new_md;
            // TID, Name and Type are the node's identity: patches cannot change them.
            for key in ["TID", "Name", "Type"] {
                match current.get(key) {
                    Some(v) => new_md.insert(key.to_owned(), v.clone()),
                    None => new_md.remove(key),
                };
            }
            validate_metadata(Some(&Value::Object(new_md.clone()))).map_err(|e| {
                ApiError::bad_request(format!("validating patched resource: {}", e.message))
            })?;
            g.update_node(&ident, |m| *m = new_md)
        }
        Kind::Edge => {
            if non_empty_str(&Value::Object(new_md.clone()), "RelationType").is_none() {
                return Err(ApiError::bad_request(
                    "validating patched resource: invalid schema: Metadata: RelationType is required",
                ));
            }
            g.update_edge(&ident, |m| *m = new_md)
        }
    }
    .map_err(|e| graph_error(kind, id, e))?;
    if !changed {
        let mut resp = Response::default();
        *resp.status_mut() = StatusCode::NOT_MODIFIED;
        return Ok(resp);
    }
    match kind {
        Kind::Node => Ok(reply_json(
            StatusCode::OK,
            &g.node_by_id(&ident).map(|n| n.to_owned()),
        )),
        Kind::Edge => Ok(reply_json(
            StatusCode::OK,
            &g.edge_by_id(&ident).map(|e| e.to_owned()),
        )),
    }
}

fn graph_error(kind: Kind, id: &str, e: GraphError) -> ApiError {
    match e {
        GraphError::NoSuchNode(_) | GraphError::NoSuchEdge(_) => not_found(kind, id),
        other => ApiError::bad_request(other),
    }
}

fn delete(s: &AppState, kind: Kind, id: &str) -> ApiResult {
    let ident = Identifier::from(id);
    let mut g = s.graph.write();
    match kind {
        Kind::Node => g.delete_node(&ident).map(|_| ()),
        Kind::Edge => g.delete_edge(&ident).map(|_| ()),
    }
    .map_err(|e| graph_error(kind, id, e))?;
    Ok(reply_deleted())
}
