//! `/api/alert`: Skydive's generic resource routes ([`super::resources`]), with a
//! create that checks the expression with the server's Gremlin extensions, the
//! trigger, and the action (a webhook's host against `--allow-target`, a script inside
//! `--alert-script-dir`) before storing.

use futures_util::future::BoxFuture;
use warp::http::StatusCode;

use super::resources::Checked;
use super::{ApiError, AppState};
use crate::alert::Alert;

impl Checked for Alert {
    fn check(s: AppState, alert: Self) -> BoxFuture<'static, Result<Self, ApiError>> {
        Box::pin(async move {
            // Resolving a webhook's host blocks: not on an async worker.
            let (ext, actions) = (s.extensions.clone(), s.alert_actions.clone());
            tokio::task::spawn_blocking(move || alert.validate(&ext, &actions).map(|()| alert))
                .await
                .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
                .map_err(ApiError::from)
        })
    }
}
