//! Authentication of tenant requests by bearer JWTs from the tenant's identity provider.
//!
//! A middleware behind tenant resolution reads `Authorization: Bearer`, checks the header
//! ([`token::inspect_header`]), takes the key by `kid` from the tenant's issuer's JWKS only
//! ([`jwks::JwksCache`]), verifies signature and claims against the tenant's `catalog.sso`
//! row ([`token::verify`]) and hands the [`Principal`] to handlers. A refused request answers
//! 401 with a `WWW-Authenticate: Bearer` challenge (RFC 6750). No token ever reaches a log.

pub mod access;
pub mod jwks;
pub mod token;

use std::sync::Arc;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::app::AppState;
use crate::catalog::TenantRecord;
use crate::error::ApiError;
use crate::tenant::Tenant;
pub use token::{Identity, TokenError};

/// The authenticated user of a request, in its tenant.
#[derive(Clone, Debug)]
pub struct Principal {
    /// The tenant the token was accepted for.
    pub tenant: Arc<TenantRecord>,
    /// Who the token speaks for.
    pub identity: Identity,
}

/// The bearer token of `headers`: exactly one `Authorization: Bearer <token>`.
pub fn bearer(headers: &HeaderMap) -> Result<&str, TokenError> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let value = values.next().ok_or(TokenError::Missing)?;
    if values.next().is_some() {
        return Err(TokenError::Malformed);
    }
    let value = value.to_str().map_err(|_| TokenError::Malformed)?;
    let (scheme, token) = value.split_once(' ').ok_or(TokenError::Missing)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(TokenError::Missing);
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(TokenError::Malformed);
    }
    Ok(token)
}

/// Validates `token` for `tenant`: header, key from the tenant's JWKS, signature, claims.
pub async fn authenticate_token(
    state: &AppState,
    tenant: &TenantRecord,
    token: &str,
) -> Result<Identity, TokenError> {
    let (alg, kid) = token::inspect_header(token)?;
    let sso = state.catalog.sso(tenant).ok_or(TokenError::NoSso)?;
    token::precheck_issuer(token, &sso.issuer)?;
    let jwk = state
        .jwks
        .key(&sso.jwks_uri, &kid)
        .await
        .ok_or(TokenError::UnknownKey)?;
    let key = token::key_for(alg, &jwk)?;
    token::verify(token, alg, &key, &sso)
}

/// Middleware after [`crate::tenant::resolve_tenant`]: admits only requests with a valid
/// bearer token of the tenant's identity provider.
pub async fn authenticate(
    State(state): State<AppState>,
    tenant: Tenant,
    mut request: Request,
    next: Next,
) -> Response {
    let checked = match bearer(request.headers()) {
        Ok(token) => authenticate_token(&state, &tenant, token).await,
        Err(error) => Err(error),
    };
    let checked = match checked {
        Ok(identity) => match access::admit(&state, &tenant, &identity).await {
            Ok(()) => Ok(identity),
            Err(access::AccessError::NotProvisioned) => Err(TokenError::NotProvisioned),
            // The database failed: refused as the database's failure (503 or 500, logged).
            Err(access::AccessError::Unavailable(error)) => {
                return ApiError::from(error).into_response();
            }
        },
        Err(error) => Err(error),
    };
    match checked {
        Ok(identity) => {
            request.extensions_mut().insert(Principal {
                tenant: Arc::clone(&tenant.0),
                identity,
            });
            next.run(request).await
        }
        Err(error) => {
            tracing::info!(tenant = %tenant.name, reason = %error, "request not authenticated");
            unauthorized(&tenant.hostname, error)
        }
    }
}

/// The 401 answer: the plain JSON error and its `WWW-Authenticate` challenge.
pub fn unauthorized(realm: &str, error: TokenError) -> Response {
    let challenge = match error {
        TokenError::Missing => format!("Bearer realm=\"{}\"", quoted(realm)),
        ref invalid => format!(
            "Bearer realm=\"{}\", error=\"invalid_token\", error_description=\"{}\"",
            quoted(realm),
            quoted(&invalid.to_string())
        ),
    };
    let mut response = ApiError::Unauthenticated(error).into_response();
    if let Ok(value) = HeaderValue::from_str(&challenge) {
        response.headers_mut().insert(WWW_AUTHENTICATE, value);
    }
    response
}

// A quoted-string body: no quotes, backslashes or control characters.
fn quoted(text: &str) -> String {
    text.chars()
        .filter(|c| *c != '"' && *c != '\\' && !c.is_control())
        .collect()
}

impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .ok_or(ApiError::Internal(
                "a handler extracts Principal on a route without authentication",
            ))
    }
}
