//! HTTP routes of a stored resource kind (`/api/capture`, `/api/injectpacket`,
//! `/api/noderule`, `/api/edgerule`, `/api/alert`): Skydive's generic CRUD, built once
//! for every kind; what differs between kinds at create is their [`Checked::check`].

use bytes::Bytes;
use futures_util::future::BoxFuture;
use serde_json::{Map, Value};
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection};

use super::{
    parse_json_accepting, reply_deleted, reply_json, respond_now, with_state, ApiError, ApiResult,
    AppState,
};
use crate::error::Error;
use crate::resources::{parse_go_duration, DefinitionStore, Definitions, Resource, StoreError};

/// What a resource kind checks at create, beyond its JSON and `Resource::prepare`:
/// against the server (its Gremlin extensions, egress policy, graph). It may complete
/// the resource (an injection's addresses); an error is the answer.
pub trait Checked: Resource {
    fn check(_s: AppState, item: Self) -> BoxFuture<'static, Result<Self, ApiError>> {
        Box::pin(std::future::ready(Ok(item)))
    }
}

/// A capture's checks are its `export_target` (here, for every kind) and `prepare`.
impl Checked for crate::capture::Capture {}

/// `GET /api/<kind>`, `POST` (create, `X-Resource-TTL`), `GET /api/<kind>/<id>`,
/// `PATCH` (refused) and `DELETE` over `store`.
pub fn routes<T: Checked>(
    state: AppState,
    store: Definitions<T>,
    body: impl Filter<Extract = (Bytes,), Error = Rejection> + Clone + Send + Sync + 'static,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let base = warp::path("api").and(warp::path(T::NAME));
    let st = move || with_state(state.clone()).and(with_store(store.clone()));

    let index = base
        .and(warp::path::end())
        .and(warp::get())
        .and(st())
        .map(|s: AppState, store: Definitions<T>| respond_now(index(&s, &*store)));
    let create = base
        .and(warp::path::end())
        .and(warp::post())
        .and(st())
        .and(warp::header::optional::<String>("X-Resource-TTL"))
        .and(body.clone())
        .then(
            |s: AppState, store: Definitions<T>, ttl: Option<String>, b: Bytes| async move {
                respond_now(create(&s, &*store, ttl, &b).await)
            },
        );
    let show = base
        .and(warp::path::param::<String>())
        .and(warp::path::end())
        .and(warp::get())
        .and(st())
        .map(|id: String, s: AppState, store: Definitions<T>| respond_now(show(&s, &*store, &id)));
    let patch = base
        .and(warp::path::param::<String>())
        .and(warp::path::end())
        .and(warp::patch())
        .and(st())
        .and(body)
        .map(
            |id: String, _s: AppState, store: Definitions<T>, _b: Bytes| {
                respond_now(match store.get(&id) {
                    None => Err(not_found::<T>(&id)),
                    Some(_) => Err(ApiError::bad_request(
                        "updating resource with patched version: resource not updatable",
                    )),
                })
            },
        );
    let delete = base
        .and(warp::path::param::<String>())
        .and(warp::path::end())
        .and(warp::delete())
        .and(st())
        .then(
            |id: String, _s: AppState, store: Definitions<T>| async move {
                // A deletion that could not be made durable is 507 or 503 and did not happen.
                respond_now(match store.delete(&id).await {
                    Ok(_) => Ok(reply_deleted()),
                    Err(StoreError::NotFound) => Err(not_found::<T>(&id)),
                    Err(e) => Err(Error::from(e).into()),
                })
            },
        );

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

fn with_store<T: Resource>(
    store: Definitions<T>,
) -> impl Filter<Extract = (Definitions<T>,), Error = std::convert::Infallible> + Clone {
    warp::any().map(move || store.clone())
}

fn not_found<T: Resource>(id: &str) -> ApiError {
    Error::not_found(format!("{} '{id}' not found", T::TITLE)).into()
}

fn index<T: Resource>(s: &AppState, store: &dyn DefinitionStore<T>) -> ApiResult {
    let mut items = store.list();
    let g = s.graph.read();
    let mut out = Map::new();
    for item in &mut items {
        item.decorate(&g);
        let v = serde_json::to_value(&*item).map_err(ApiError::bad_request)?;
        out.insert(item.uuid().to_owned(), v);
    }
    Ok(reply_json(StatusCode::OK, &Value::Object(out)))
}

fn show<T: Resource>(s: &AppState, store: &dyn DefinitionStore<T>, id: &str) -> ApiResult {
    let mut item = store.get(id).ok_or_else(|| not_found::<T>(id))?;
    item.decorate(&s.graph.read());
    Ok(reply_json(StatusCode::OK, &item))
}

async fn create<T: Checked>(
    s: &AppState,
    store: &dyn DefinitionStore<T>,
    ttl: Option<String>,
    body: &[u8],
) -> ApiResult {
    let item: T = parse_json_accepting(body, T::OUTPUT_ONLY)?;
    let ttl = match ttl {
        Some(t) => Some(parse_go_duration(&t).map_err(Error::from)?),
        None => None,
    };
    if let Some(target) = item.export_target() {
        s.sinks
            .targets
            .check_target(target)
            .map_err(Error::forbidden)?;
    }
    let item = T::check(s.clone(), item).await?;
    let mut created = store.create(item, ttl).await.map_err(Error::from)?;
    let services = s.services.clone();
    let created = tokio::task::spawn_blocking(move || {
        created.annotate_created(&services);
        created
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(reply_json(StatusCode::CREATED, &created))
}
