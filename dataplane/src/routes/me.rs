//! `GET /me`: who the bearer token speaks for, in which tenant.

use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use crate::app::AppState;
use crate::auth::Principal;

/// The `/me` route; the caller adds tenant resolution and authentication.
pub fn router() -> Router<AppState> {
    Router::new().route("/me", get(me))
}

/// The body of `GET /me`.
#[derive(Debug, Serialize)]
pub struct Me {
    /// The tenant's name.
    pub tenant: String,
    /// The token's subject.
    pub subject: String,
    /// The user's email, if the token carries one.
    pub email: Option<String>,
    /// The user's display name, if the token carries one.
    pub name: Option<String>,
    /// The platform roles granted by the user's groups.
    pub roles: Vec<String>,
}

async fn me(principal: Principal) -> Json<Me> {
    let identity = principal.identity;
    Json(Me {
        tenant: principal.tenant.name.clone(),
        subject: identity.subject,
        email: identity.email,
        name: identity.name,
        roles: identity.roles,
    })
}
