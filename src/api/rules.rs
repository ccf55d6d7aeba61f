//! `/api/noderule`, `/api/edgerule`: Skydive's generic resource routes, with a create
//! that checks the rule's queries with the server's Gremlin extensions before storing.

use bytes::Bytes;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection};

use super::{parse_json_accepting, reply_json, respond_now, with_state, ApiResult, AppState};
use crate::error::Error;
use crate::resources::{parse_go_duration, Definitions, Resource};
use crate::rules::{EdgeRule, NodeRule};

pub fn routes(
    state: AppState,
    body: impl Filter<Extract = (Bytes,), Error = Rejection> + Clone + Send + Sync + 'static,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let node_create = warp::path!("api" / "noderule")
        .and(warp::post())
        .and(with_state(state.clone()))
        .and(warp::header::optional::<String>("X-Resource-TTL"))
        .and(body.clone())
        .then(|s: AppState, ttl: Option<String>, b: Bytes| async move {
            let store = s.node_rules.clone();
            respond_now(
                create(&s, &store, ttl, &b, |r: &NodeRule, s| {
                    r.validate(&s.extensions)
                })
                .await,
            )
        });
    let edge_create = warp::path!("api" / "edgerule")
        .and(warp::post())
        .and(with_state(state.clone()))
        .and(warp::header::optional::<String>("X-Resource-TTL"))
        .and(body.clone())
        .then(|s: AppState, ttl: Option<String>, b: Bytes| async move {
            let store = s.edge_rules.clone();
            respond_now(
                create(&s, &store, ttl, &b, |r: &EdgeRule, s| {
                    r.validate(&s.extensions)
                })
                .await,
            )
        });
    let nodes = super::resources::routes(state.clone(), state.node_rules.clone(), body.clone());
    let edges = super::resources::routes(state.clone(), state.edge_rules.clone(), body);
    node_create
        .or(edge_create)
        .unify()
        .or(nodes)
        .unify()
        .or(edges)
        .unify()
}

/// Parses, checks with `validate`, and stores; 201 with the rule as stored.
pub(super) async fn create<T: Resource>(
    s: &AppState,
    store: &Definitions<T>,
    ttl: Option<String>,
    body: &[u8],
    validate: impl FnOnce(&T, &AppState) -> Result<(), Error>,
) -> ApiResult {
    let item: T = parse_json_accepting(body, T::OUTPUT_ONLY)?;
    let ttl = match ttl {
        Some(t) => Some(parse_go_duration(&t).map_err(Error::from)?),
        None => None,
    };
    validate(&item, s)?;
    let created = store.create(item, ttl).await.map_err(Error::from)?;
    Ok(reply_json(StatusCode::CREATED, &created))
}
