//! `/api/noderule`, `/api/edgerule`: Skydive's generic resource routes
//! ([`super::resources`]), with a create that checks the rule's queries with the
//! server's Gremlin extensions before storing.

use futures_util::future::BoxFuture;

use super::resources::Checked;
use super::{ApiError, AppState};
use crate::rules::{EdgeRule, NodeRule};

impl Checked for NodeRule {
    fn check(s: AppState, item: Self) -> BoxFuture<'static, Result<Self, ApiError>> {
        let checked = item.validate(&s.extensions).map(|()| item);
        Box::pin(std::future::ready(checked.map_err(ApiError::from)))
    }
}

impl Checked for EdgeRule {
    fn check(s: AppState, item: Self) -> BoxFuture<'static, Result<Self, ApiError>> {
        let checked = item.validate(&s.extensions).map(|()| item);
        Box::pin(std::future::ready(checked.map_err(ApiError::from)))
    }
}
