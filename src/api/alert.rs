//! `/api/alert`: Skydive's generic resource routes, with a create that checks the
//! expression with the server's Gremlin extensions, the trigger, and the action (a
//! webhook's host against `--allow-target`, a script inside `--alert-script-dir`)
//! before storing.

use bytes::Bytes;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection};

use super::{
    parse_json_accepting, reply_json, respond_now, with_state, ApiError, ApiResult, AppState,
};
use crate::alert::Alert;
use crate::error::Error;
use crate::resources::{parse_go_duration, Resource};

pub fn routes(
    state: AppState,
    body: impl Filter<Extract = (Bytes,), Error = Rejection> + Clone + Send + Sync + 'static,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let alert_create = warp::path!("api" / "alert")
        .and(warp::post())
        .and(with_state(state.clone()))
        .and(warp::header::optional::<String>("X-Resource-TTL"))
        .and(body.clone())
        .then(|s: AppState, ttl: Option<String>, b: Bytes| async move {
            respond_now(create(&s, ttl, &b).await)
        });
    let alerts = super::resources::routes(state.clone(), state.alerts.clone(), body);
    alert_create.or(alerts).unify()
}

/// Parses, checks, and stores; 201 with the alert as stored.
async fn create(s: &AppState, ttl: Option<String>, body: &[u8]) -> ApiResult {
    let alert: Alert = parse_json_accepting(body, Alert::OUTPUT_ONLY)?;
    let ttl = match ttl {
        Some(t) => Some(parse_go_duration(&t).map_err(Error::from)?),
        None => None,
    };
    // Resolving a webhook's host blocks: not on an async worker.
    let (checked, ext, actions) = (alert.clone(), s.extensions.clone(), s.alert_actions.clone());
    tokio::task::spawn_blocking(move || checked.validate(&ext, &actions))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    let created = s.alerts.create(alert, ttl).await.map_err(Error::from)?;
    Ok(reply_json(StatusCode::CREATED, &created))
}
