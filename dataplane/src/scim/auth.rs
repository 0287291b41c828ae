//! SCIM token authentication: `/scim/v2` opens only with `Authorization: Bearer <token>`
//! whose SHA-256 is a live SCIM token of the request host's tenant (a rotated-out token
//! until its `expires_at`, checked per request), and only while the tenant's SSO settings
//! have SCIM enabled. Any refusal is the same 401 with a `WWW-Authenticate: Bearer`
//! challenge: an unknown token, another tenant's token and an expired one look alike.

use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::http::StatusCode;
use axum::http::header::WWW_AUTHENTICATE;
use axum::middleware::Next;
use axum::response::Response;

use super::error::error_response;
use crate::app::AppState;
use crate::auth::{TokenError, bearer};
use crate::tenant::Tenant;

/// Middleware after tenant resolution: admits only requests with a SCIM token of the
/// tenant. The token never reaches a log.
pub async fn require_scim_token(
    State(state): State<AppState>,
    tenant: Tenant,
    request: Request,
    next: Next,
) -> Response {
    let now_ms = jiff::Timestamp::now().as_millisecond();
    let scim_enabled = state
        .catalog
        .sso(&tenant)
        .is_some_and(|sso| sso.scim_enabled);
    let checked = match bearer(request.headers()) {
        Ok(token) if scim_enabled && state.catalog.scim_token_valid(&tenant, token, now_ms) => {
            Ok(())
        }
        Ok(_) => Err(TokenError::Malformed),
        Err(error) => Err(error),
    };
    match checked {
        Ok(()) => next.run(request).await,
        Err(error) => {
            tracing::info!(tenant = %tenant.name, "SCIM request not authenticated");
            unauthorized(&tenant.hostname, &error)
        }
    }
}

fn unauthorized(realm: &str, error: &TokenError) -> Response {
    let realm: String = realm
        .chars()
        .filter(|c| *c != '"' && *c != '\\' && !c.is_control())
        .collect();
    let (challenge, detail) = match error {
        TokenError::Missing => (
            format!("Bearer realm=\"{realm}\""),
            "send the tenant's SCIM token as Authorization: Bearer",
        ),
        _ => (
            format!("Bearer realm=\"{realm}\", error=\"invalid_token\""),
            "the SCIM token is not valid for this tenant",
        ),
    };
    let mut response = error_response(StatusCode::UNAUTHORIZED, None, detail);
    if let Ok(value) = HeaderValue::from_str(&challenge) {
        response.headers_mut().insert(WWW_AUTHENTICATE, value);
    }
    response
}
