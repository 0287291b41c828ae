//! Tenant administration (permission `administer`): the tenant's live sessions, and
//! revoking a user's sessions (for instance after a device was lost).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::Serialize;

use crate::app::AppState;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::login::session::{self, SessionSummary};

/// The admin routes; the caller adds tenant resolution, authentication and `administer`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/sessions", get(list))
        .route("/admin/sessions/{subject}", delete(revoke))
}

/// The body of `GET /admin/sessions`.
#[derive(Debug, Serialize)]
pub struct Sessions {
    /// The tenant.
    pub tenant: String,
    /// Its live sessions, newest first; never ids or hashes.
    pub sessions: Vec<SessionSummary>,
}

async fn list(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Sessions>, ApiError> {
    let sessions = session::list_active(
        &state.database,
        principal.tenant.id,
        state.login.sessions.idle,
    )
    .await?;
    Ok(Json(Sessions {
        tenant: principal.tenant.name.clone(),
        sessions,
    }))
}

/// The body of `DELETE /admin/sessions/{subject}`.
#[derive(Debug, Serialize)]
pub struct Revoked {
    /// Whose sessions.
    pub subject: String,
    /// How many live sessions were revoked.
    pub revoked: u64,
}

async fn revoke(
    State(state): State<AppState>,
    principal: Principal,
    Path(subject): Path<String>,
) -> Result<(StatusCode, Json<Revoked>), ApiError> {
    let revoked =
        session::revoke_subject(&state.database, principal.tenant.id, subject.clone()).await?;
    tracing::info!(tenant = %principal.tenant.name, revoked, "an administrator revoked a user's sessions");
    Ok((StatusCode::OK, Json(Revoked { subject, revoked })))
}
