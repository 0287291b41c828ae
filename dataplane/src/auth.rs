//! Authentication of tenant requests: bearer JWTs from the tenant's identity provider, or
//! the session cookie of a browser login ([`crate::login`]).
//!
//! A middleware behind tenant resolution reads `Authorization: Bearer`, checks the header
//! ([`token::inspect_header`]), takes the key by `kid` from the tenant's issuer's JWKS only
//! ([`jwks::JwksCache`]), verifies signature and claims against the tenant's `catalog.sso`
//! row ([`token::verify`]). Without an `Authorization` header it looks the session cookie up
//! by its hash in the tenant's sessions. Either way [`principal`] turns the identity into
//! the [`Principal`] handlers see, and each route's [`permission::require`] decides what it
//! may do. A refused request answers 401 with a `WWW-Authenticate: Bearer` challenge (RFC
//! 6750) — or, for a browser asking for a page, a redirect to `/login`. No token or cookie
//! value ever reaches a log.

pub mod access;
pub mod crypto;
pub mod jwks;
pub mod permission;
pub mod token;
pub mod verified;

use std::sync::Arc;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::header::{ACCEPT, AUTHORIZATION, LOCATION, SET_COOKIE, WWW_AUTHENTICATE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::app::AppState;
use crate::catalog::{SsoRow, TenantRecord};
use crate::error::{ApiError, Report};
use crate::login::{self, SESSION_COOKIE, flow};
use crate::tenant::Tenant;
pub use permission::Permission;
pub use token::{Identity, TokenError};

/// How a request proved who it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Credential {
    /// A bearer token of the tenant's identity provider.
    Bearer,
    /// A session cookie of a browser login.
    Session {
        /// When the session ends at the latest (Unix seconds).
        expires_at: i64,
    },
}

/// The authenticated user of a request, in its tenant.
#[derive(Clone, Debug)]
pub struct Principal {
    /// The tenant the credential was accepted for.
    pub tenant: Arc<TenantRecord>,
    /// Who the credential speaks for.
    pub identity: Identity,
    /// What the credential was.
    pub credential: Credential,
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

/// Validates `token` for `tenant`: header, key from the tenant's JWKS, signature, claims —
/// or finds it among the tokens already verified for the tenant's current SSO settings
/// ([`verified`]).
pub async fn authenticate_token(
    state: &AppState,
    tenant: &TenantRecord,
    token: &str,
) -> Result<Identity, TokenError> {
    let Some(sso) = state.catalog.sso(tenant) else {
        // A malformed token is told so first, whatever the tenant.
        token::inspect_header(token)?;
        return Err(TokenError::NoSso);
    };
    let cache = &state.verified_tokens;
    if !cache.enabled() {
        state.metrics.token_checked(false);
        return verify_in_full(state, &sso, token).await.map(|(id, _)| id);
    }
    let key = verified::TokenKey::new(tenant.id, token);
    let now = jiff::Timestamp::now().as_second();
    if let Some(identity) = cache.get(&key, &sso, now) {
        state.metrics.token_checked(true);
        return Ok(identity);
    }
    state.metrics.token_checked(false);
    let (identity, expires_at) = verify_in_full(state, &sso, token).await?;
    cache.insert(key, sso, identity.clone(), expires_at, now);
    Ok(identity)
}

// Every check of a bearer token: header, key from the tenant's JWKS, signature, claims.
async fn verify_in_full(
    state: &AppState,
    sso: &SsoRow,
    token: &str,
) -> Result<(Identity, i64), TokenError> {
    let (alg, kid) = token::inspect_header(token)?;
    token::precheck_issuer(token, &sso.issuer)?;
    let jwk = state
        .jwks
        .key(&sso.jwks_uri, &kid)
        .await
        .ok_or(TokenError::UnknownKey)?;
    let key = token::key_for(alg, &jwk)?;
    token::verify_expiring(token, alg, &key, sso)
}

/// Why a request is not authenticated.
enum Refusal {
    /// No valid credential (the text says why).
    Token(TokenError),
    /// The sessions could not be read.
    Database(crate::db::tenant_tx::TxError),
}

/// The identity and credential of a request: its bearer token when it sends an
/// `Authorization` header (then never its cookie), else its session cookie.
async fn credential(
    state: &AppState,
    tenant: &TenantRecord,
    headers: &HeaderMap,
) -> Result<(Identity, Credential), Refusal> {
    if headers.contains_key(AUTHORIZATION) {
        let token = bearer(headers).map_err(Refusal::Token)?;
        let identity = authenticate_token(state, tenant, token)
            .await
            .map_err(Refusal::Token)?;
        return Ok((identity, Credential::Bearer));
    }
    let Some(id) = flow::cookie_value(headers, SESSION_COOKIE) else {
        return Err(Refusal::Token(TokenError::Missing));
    };
    let found = login::session::lookup(
        &state.database,
        tenant.id,
        flow::sha256_hex(id),
        state.login.sessions.idle,
    )
    .await
    .map_err(Refusal::Database)?;
    match found {
        Some(session) => Ok((
            session.identity,
            Credential::Session {
                expires_at: session.expires_at,
            },
        )),
        None => Err(Refusal::Token(TokenError::Session)),
    }
}

/// Where an authenticated identity becomes the request's [`Principal`]: the one place every
/// credential passes, for the checks that hold whatever the credential — today
/// [`access::admit`] (on a SCIM-provisioned tenant, only active provisioned users).
async fn principal(
    state: &AppState,
    tenant: &Tenant,
    identity: Identity,
    credential: Credential,
) -> Result<Principal, Refusal> {
    match access::admit(state, tenant, &identity).await {
        Ok(()) => Ok(Principal {
            tenant: Arc::clone(&tenant.0),
            identity,
            credential,
        }),
        Err(access::AccessError::NotProvisioned) => {
            // The IdP took the account away: its browser sessions end with it, so that
            // reactivating the account later does not bring an old session back.
            if matches!(credential, Credential::Session { .. }) {
                let ended = login::session::revoke_subject(
                    &state.database,
                    tenant.id,
                    identity.subject.clone(),
                )
                .await;
                if let Err(error) = ended {
                    tracing::warn!(tenant = %tenant.name, error = %Report(&error), "ending the sessions of a deprovisioned user failed");
                }
            }
            Err(Refusal::Token(TokenError::NotProvisioned))
        }
        Err(access::AccessError::Unavailable(error)) => Err(Refusal::Database(error)),
    }
}

/// Middleware after [`crate::tenant::resolve_tenant`]: admits only requests with a valid
/// bearer token of the tenant's identity provider or a live session of the tenant.
pub async fn authenticate(
    State(state): State<AppState>,
    tenant: Tenant,
    mut request: Request,
    next: Next,
) -> Response {
    let checked = match credential(&state, &tenant, request.headers()).await {
        Ok((identity, credential)) => principal(&state, &tenant, identity, credential).await,
        Err(refusal) => Err(refusal),
    };
    match checked {
        Ok(principal) => {
            request.extensions_mut().insert(principal);
            next.run(request).await
        }
        Err(Refusal::Database(error)) => {
            tracing::warn!(tenant = %tenant.name, error = %Report(&error), "checking the request's credential failed");
            ApiError::from(error).into_response()
        }
        Err(Refusal::Token(error)) => {
            tracing::info!(tenant = %tenant.name, reason = %error, "request not authenticated");
            let mut response = if wants_page(&request) {
                to_login(&request)
            } else {
                unauthorized(&tenant.hostname, error.clone())
            };
            if matches!(error, TokenError::Session | TokenError::NotProvisioned)
                && request.headers().contains_key(axum::http::header::COOKIE)
                && let Ok(cookie) = HeaderValue::from_str(&flow::cleared_cookie(SESSION_COOKIE))
            {
                response.headers_mut().insert(SET_COOKIE, cookie);
            }
            response
        }
    }
}

/// Whether a refused request is a browser asking for a page (a GET that accepts HTML and
/// sends no `Authorization`): it is sent to log in rather than given a 401.
pub fn wants_page(request: &Request) -> bool {
    request.method() == Method::GET
        && !request.headers().contains_key(AUTHORIZATION)
        && request
            .headers()
            .get_all(ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|accept| accept.contains("text/html"))
}

// 303 to /login, returning to the requested path afterwards.
fn to_login(request: &Request) -> Response {
    let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
    let mut location = reqwest::Url::parse("http://login.invalid/login").ok();
    if let Some(url) = location.as_mut() {
        url.query_pairs_mut()
            .append_pair("return_to", &flow::safe_return_to(Some(path)));
    }
    let target = location.map_or_else(
        || "/login".to_owned(),
        |url| format!("/login?{}", url.query().unwrap_or_default()),
    );
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(&target) {
        response.headers_mut().insert(LOCATION, value);
    }
    response
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
