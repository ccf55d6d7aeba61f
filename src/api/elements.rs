//! `/api/node` and `/api/edge`: graph elements over REST (§1.8).
//!
//! Lists are JSON objects keyed by ID; create answers 201 with the stored element;
//! PATCH takes an RFC 6902 patch against the element and applies only its `Metadata`
//! (a node's `TID`, `Name` and `Type` cannot change), answering 304 when nothing changed.
//!
//! An element's metadata is at most `--max-metadata-bytes` of JSON. A patch is applied
//! one operation at a time, and an operation that would take the element past the limit
//! is refused before it is applied, so a patch that copies the metadata into itself
//! over and over stops at the limit instead of doubling until memory runs out.

use bytes::Bytes;
use serde_json::{Map, Value};
use topotap_topology::schema::node_type;
use topotap_topology::{now_ms, Edge, GraphError, Identifier, Metadata, Node};
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection};

use super::{
    missing_body, parse_json, reply_deleted, reply_json, respond_now, unknown_field, with_state,
    ApiError, ApiResult, AppState,
};

/// Top-level fields of a node: every field of Skydive's `graph.Node`, all of which its Go
/// client sends (unset timestamps as `null`); the Python client sends a subset.
const NODE_FIELDS: &[&str] = &[
    "ID",
    "Metadata",
    "Host",
    "Origin",
    "CreatedAt",
    "UpdatedAt",
    "DeletedAt",
    "Revision",
];

/// Top-level fields of an edge: a node's and `Parent`, `Child`.
const EDGE_FIELDS: &[&str] = &[
    "ID",
    "Metadata",
    "Host",
    "Origin",
    "CreatedAt",
    "UpdatedAt",
    "DeletedAt",
    "Revision",
    "Parent",
    "Child",
];

/// Most operations in one JSON Patch.
pub const MAX_PATCH_OPS: usize = 1024;

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

    fn lower(self) -> &'static str {
        match self {
            Kind::Node => "node",
            Kind::Edge => "edge",
        }
    }

    fn fields(self) -> &'static [&'static str] {
        match self {
            Kind::Node => NODE_FIELDS,
            Kind::Edge => EDGE_FIELDS,
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
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(missing_body(match kind {
            Kind::Node => "a node: a JSON object with ID and Metadata",
            Kind::Edge => "an edge: a JSON object with ID, Parent, Child and Metadata",
        }));
    }
    let mut raw: Value = parse_json(body)?;
    let Some(obj) = raw.as_object_mut() else {
        return Err(ApiError::bad_request(format!(
            "invalid schema: {} must be a JSON object",
            kind.lower()
        )));
    };
    if let Some(key) = obj.keys().find(|k| !kind.fields().contains(&k.as_str())) {
        return Err(unknown_field(key));
    }
    // Skydive's Go client sends unset timestamps as null: the same as absent.
    for key in ["CreatedAt", "UpdatedAt", "DeletedAt"] {
        if obj.get(key).is_some_and(Value::is_null) {
            obj.remove(key);
        }
    }
    if let Some(md) = obj.get("Metadata") {
        let limit = s.limits.max_metadata_bytes;
        if json_size(md, limit).is_none() {
            let id = obj.get("ID").and_then(Value::as_str).unwrap_or_default();
            return Err(metadata_too_large(kind, id, limit));
        }
    }
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
    if kind == node_type::NETNS && non_empty_str(md, "Path").is_none() {
        return Err(ApiError::bad_request(
            "invalid schema: Metadata: Path is required",
        ));
    }
    if kind == node_type::OVSPORT && non_empty_str(md, "UUID").is_none() {
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
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(missing_body("a JSON Patch: a list of operations"));
    }
    let ops: json_patch::Patch = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("incorrect JSON patch: {e}")))?;
    if ops.0.len() > MAX_PATCH_OPS {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "JSON patch has {} operations, more than {MAX_PATCH_OPS}",
                ops.0.len()
            ),
        ));
    }
    let limit = s.limits.max_metadata_bytes;
    let ident = Identifier::from(id);
    let mut g = s.graph.write();
    let mut doc = match kind {
        Kind::Node => g.node_by_id(&ident).map(|n| to_value(&n)),
        Kind::Edge => g.edge_by_id(&ident).map(|e| to_value(&e)),
    }
    .ok_or_else(|| not_found(kind, id))??;
    // The element around its metadata (ID, Host, ...) may take what it takes now.
    let whole = json_size(&doc, usize::MAX).unwrap_or(usize::MAX);
    let envelope = whole.saturating_sub(
        doc.get("Metadata")
            .map_or(0, |m| json_size(m, usize::MAX).unwrap_or(0)),
    );
    apply_bounded(&mut doc, &ops.0, limit.saturating_add(envelope).max(whole)).map_err(
        |e| match e {
            PatchError::Invalid(reason) => {
                ApiError::bad_request(format!("incorrect JSON patch: {reason}"))
            }
            PatchError::TooLarge => metadata_too_large(kind, id, limit),
            PatchError::TooMuchWork(n) => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("JSON patch copies more than {n} bytes"),
            ),
        },
    )?;
    let new_md: Metadata = match doc.get_mut("Metadata").map(Value::take) {
        Some(Value::Object(m)) => m,
        _ => {
            return Err(ApiError::bad_request(
                "validating patched resource: invalid schema: Metadata is required",
            ))
        }
    };
    if json_size_of_map(&new_md, limit).is_none() {
        return Err(metadata_too_large(kind, id, limit));
    }
    let changed = match kind {
        Kind::Node => {
            let current = g.node_by_id(&ident).map(|n| n.metadata().clone()).unwrap_or_default();
            let mut new_md = new_md;
            // Name and Type cannot be removed (or emptied)...
            for key in ["Name", "Type"] {
                if non_empty_str(&Value::Object(new_md.clone()), key).is_none() {
                    return Err(ApiError::bad_request(format!(
                        "validating patched resource: invalid schema: Metadata: {key} is required"
                    )));
                }
            }
            // ...and, with TID, they are the node's identity: patches cannot change them.
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

fn metadata_too_large(kind: Kind, id: &str, limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!(
            "Metadata of {} '{id}' would be larger than {limit} bytes (--max-metadata-bytes)",
            kind.lower()
        ),
    )
}

/// Counts the bytes written to it, and fails once they pass `cap`.
struct SizeCounter {
    written: usize,
    cap: usize,
}

impl std::io::Write for SizeCounter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.written = self.written.saturating_add(buf.len());
        if self.written > self.cap {
            return Err(std::io::Error::other("over the size cap"));
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Size of `v` as compact JSON, or `None` when it is larger than `cap` (counting stops
/// there: measuring costs at most `cap` bytes of work).
fn json_size(v: &(impl serde::Serialize + ?Sized), cap: usize) -> Option<usize> {
    let mut counter = SizeCounter { written: 0, cap };
    serde_json::to_writer(&mut counter, v).ok()?;
    Some(counter.written)
}

fn json_size_of_map(m: &Metadata, cap: usize) -> Option<usize> {
    json_size(m, cap)
}

#[derive(Debug)]
enum PatchError {
    /// An operation that cannot be applied (its reason).
    Invalid(String),
    /// The document would grow past its cap.
    TooLarge,
    /// The patch copies more than this many bytes in all.
    TooMuchWork(usize),
}

/// Applies `ops` to `doc` one at a time, keeping `doc` at most `cap` bytes of JSON. The
/// size an operation adds is measured before it is applied (a copy's source, an add's
/// value), so no operation allocates past the cap. `doc` is a scratch copy: on error it
/// is left part-way and must be dropped.
fn apply_bounded(
    doc: &mut Value,
    ops: &[json_patch::PatchOperation],
    cap: usize,
) -> Result<(), PatchError> {
    use json_patch::PatchOperation as Op;

    // Measuring is the work a patch makes us do; bound it too.
    let work_cap = cap.saturating_mul(16).max(16 << 20);
    let mut work = 0usize;
    // An upper bound of doc's size, re-measured only when it says doc may not fit.
    let mut size = json_size(doc, cap).ok_or(PatchError::TooLarge)?;
    for op in ops {
        let (path, added) = match op {
            Op::Add(a) => (a.path.as_str(), Some(&a.value)),
            Op::Replace(r) => (r.path.as_str(), Some(&r.value)),
            Op::Copy(c) => (
                c.path.as_str(),
                Some(doc.pointer(c.from.as_str()).ok_or_else(|| {
                    PatchError::Invalid(format!("\"from\" path is invalid: {}", c.from))
                })?),
            ),
            Op::Move(m) => (m.path.as_str(), None),
            Op::Remove(_) | Op::Test(_) => ("", None),
        };
        // What the operation adds: its value, and the member name it may create.
        let room = cap.saturating_sub(size);
        let growth = match added {
            Some(v) => json_size(v, room.max(1)).map(|n| n + path.len() + 4),
            None => Some(path.len() + 4),
        };
        let growth = match growth {
            Some(n) if n <= room => n,
            _ => {
                // The bound says it may not fit: measure doc and what the operation
                // replaces (an add or replace of an existing member frees the old value).
                work = work.saturating_add(size);
                let exact = json_size(doc, cap).ok_or(PatchError::TooLarge)?;
                let freed = match op {
                    Op::Add(_) | Op::Replace(_) | Op::Copy(_) | Op::Move(_) => {
                        replaced_member(doc, path)
                            .and_then(|old| json_size(old, cap))
                            .unwrap_or(0)
                    }
                    _ => 0,
                };
                let room = cap.saturating_sub(exact.saturating_sub(freed));
                let growth = match added {
                    Some(v) => json_size(v, room).ok_or(PatchError::TooLarge)? + path.len() + 4,
                    None => path.len() + 4,
                };
                if growth > room {
                    return Err(PatchError::TooLarge);
                }
                size = exact.saturating_sub(freed);
                growth
            }
        };
        work = work.saturating_add(growth);
        if work > work_cap {
            return Err(PatchError::TooMuchWork(work_cap));
        }
        json_patch::patch(doc, std::slice::from_ref(op))
            .map_err(|e| PatchError::Invalid(e.to_string()))?;
        size += growth;
    }
    Ok(())
}

/// The value an add, replace, copy or move to `path` overwrites: an existing member of
/// an object, or an element of an array for replace (inserting into an array overwrites
/// nothing, and freeing it is then not counted, which only makes the bound stricter).
fn replaced_member<'a>(doc: &'a Value, path: &str) -> Option<&'a Value> {
    let (parent, _) = path.rsplit_once('/')?;
    match doc.pointer(parent)? {
        Value::Object(_) => doc.pointer(path),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use warp::http::StatusCode;

    use crate::api::routes;
    use crate::api::test_support::{call, state};

    #[tokio::test]
    async fn a_patch_that_doubles_the_metadata_stops_at_the_limit_and_changes_nothing() {
        let mut s = state();
        s.limits.max_metadata_bytes = 64 * 1024;
        let api = routes(s.clone());
        let node = json!({"ID": "n1", "Metadata": {"Name": "n1", "Type": "device", "L": [], "Pad": "x".repeat(1000)}});
        let (st, _) = call(&api, "POST", "/api/node", &node.to_string()).await;
        assert_eq!(st, StatusCode::CREATED);
        // The reproducer: copy /Metadata into a list inside itself, 20 times.
        let ops: Vec<_> = (0..20)
            .map(|_| json!({"op": "copy", "from": "/Metadata", "path": "/Metadata/L/-"}))
            .collect();
        let (st, reason) = call(&api, "PATCH", "/api/node/n1", &json!(ops).to_string()).await;
        assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE, "{reason}");
        assert!(reason.contains("larger than 65536 bytes"), "{reason}");
        assert_eq!(reason.lines().count(), 1);
        let (_, body) = call(&api, "GET", "/api/node/n1", "").await;
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            v["Metadata"]["L"],
            json!([]),
            "the refused patch changed the node"
        );
        assert_eq!(
            v["Revision"],
            node.get("Revision").cloned().unwrap_or(json!(0))
        );
        // A patch within the limit still applies.
        let ok = json!([{"op": "copy", "from": "/Metadata/Pad", "path": "/Metadata/L/-"}]);
        let (st, _) = call(&api, "PATCH", "/api/node/n1", &ok.to_string()).await;
        assert_eq!(st, StatusCode::OK);
        // Replacing a large value by one as large fits even near the limit.
        let big = "y".repeat(40 * 1024);
        let add = json!([{"op": "add", "path": "/Metadata/Big", "value": big}]);
        assert_eq!(
            call(&api, "PATCH", "/api/node/n1", &add.to_string())
                .await
                .0,
            StatusCode::OK
        );
        let big2 = "z".repeat(40 * 1024);
        let rep = json!([{"op": "replace", "path": "/Metadata/Big", "value": big2}]);
        assert_eq!(
            call(&api, "PATCH", "/api/node/n1", &rep.to_string())
                .await
                .0,
            StatusCode::OK
        );
        // Metadata over the limit at creation is refused too.
        let huge = json!({"ID": "n2", "Metadata": {"Name": "n2", "Type": "device", "Pad": "x".repeat(70_000)}});
        let (st, reason) = call(&api, "POST", "/api/node", &huge.to_string()).await;
        assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE, "{reason}");
        assert_eq!(
            call(&api, "GET", "/api/node/n2", "").await.0,
            StatusCode::NOT_FOUND
        );
    }

    #[tokio::test]
    async fn removing_name_or_type_is_a_400_naming_the_field() {
        let api = routes(state());
        let node = json!({"ID": "n1", "Metadata": {"Name": "n1", "Type": "device"}});
        call(&api, "POST", "/api/node", &node.to_string()).await;
        for key in ["Name", "Type"] {
            let ops = json!([{"op": "remove", "path": format!("/Metadata/{key}")}]);
            let (st, reason) = call(&api, "PATCH", "/api/node/n1", &ops.to_string()).await;
            assert_eq!(st, StatusCode::BAD_REQUEST, "{key}");
            assert!(reason.contains(&format!("{key} is required")), "{reason}");
        }
        // Changing them is still ignored (Skydive's 304).
        let ops = json!([{"op": "replace", "path": "/Metadata/Name", "value": "other"}]);
        assert_eq!(
            call(&api, "PATCH", "/api/node/n1", &ops.to_string())
                .await
                .0,
            StatusCode::NOT_MODIFIED
        );
    }

    #[tokio::test]
    async fn bodies_are_checked_at_the_edge() {
        let api = routes(state());
        // What Skydive's Go client sends: every field, unset timestamps as null.
        let go = json!({"ID": "g1", "Metadata": {"Name": "g1", "Type": "device"}, "Host": "",
            "Origin": "", "CreatedAt": null, "UpdatedAt": null, "DeletedAt": null, "Revision": 0});
        let (st, body) = call(&api, "POST", "/api/node", &go.to_string()).await;
        assert_eq!(st, StatusCode::CREATED, "{body}");
        // What its Python client sends.
        let py = json!({"ID": "p1", "Host": "h", "CreatedAt": 1, "UpdatedAt": 1, "Revision": 1,
            "Metadata": {"Name": "p1", "Type": "device"}});
        assert_eq!(
            call(&api, "POST", "/api/node", &py.to_string()).await.0,
            StatusCode::CREATED
        );
        let bad = json!({"ID": "b1", "Metadata": {"Name": "b1", "Type": "device"}, "Metdata": {}});
        let (st, reason) = call(&api, "POST", "/api/node", &bad.to_string()).await;
        assert_eq!(
            (st, reason.as_str()),
            (
                StatusCode::BAD_REQUEST,
                "unknown field \"Metdata\" (field names are case-sensitive)\n"
            )
        );
        for (method, path) in [
            ("POST", "/api/node"),
            ("POST", "/api/edge"),
            ("PATCH", "/api/node/p1"),
            ("POST", "/api/capture"),
            ("POST", "/api/injectpacket"),
        ] {
            let (st, reason) = call(&api, method, path, "").await;
            assert_eq!(st, StatusCode::BAD_REQUEST, "{method} {path}");
            assert!(
                reason.starts_with("request body is empty: expected "),
                "{reason}"
            );
        }
        let (st, reason) = call(
            &api,
            "POST",
            "/api/capture",
            r#"{"GremlinQuery":"G.V()","Gremlin":"x"}"#,
        )
        .await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{reason}");
        // The Python client's injection keys, and output fields sent back, are accepted.
        let (st, reason) = call(&api, "POST", "/api/injectpacket",
            r#"{"Src":"G.V().Has('Name','nope')","Increment":false,"State":"","PacketCount":0,"Interval":1000,"TTL":64}"#).await;
        assert!(!reason.contains("unknown field"), "{st} {reason}");
    }
}
