//! The HTTP handlers of the login: `/login`, `/auth/callback`, `/logout`, `/logged-out`
//! (public, behind tenant resolution) and `/whoami` (authenticated).

use axum::Router;
use axum::extract::{OriginalUri, Query, State};
use axum::http::header::{CACHE_CONTROL, LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::flow::{self, Attempt, LoginError, sha256_hex};
use super::session::{self, StoredAttempt};
use super::{SESSION_COOKIE, pages, request_authority};
use crate::app::AppState;
use crate::auth::{Credential, Principal};
use crate::error::{ApiError, Report};
use crate::tenant::Tenant;

/// The public login routes; the caller adds tenant resolution.
pub fn public_router() -> Router<AppState> {
    Router::new()
        .route("/login", get(login))
        .route(flow::CALLBACK_PATH, get(callback))
        .route("/logout", post(logout))
        .route("/logged-out", get(logged_out))
}

/// The authenticated page; the caller adds authentication and its permission.
pub fn whoami_router() -> Router<AppState> {
    Router::new().route("/whoami", get(whoami))
}

impl LoginError {
    /// The status of the page that reports it.
    pub fn status(&self) -> StatusCode {
        match self {
            _ if self.refused() => StatusCode::FORBIDDEN,
            Self::UnknownState | Self::NoCode => StatusCode::BAD_REQUEST,
            Self::Exchange(_) | Self::IdToken(_) => StatusCode::BAD_GATEWAY,
            Self::NoSso | Self::NoEndpoint(_) | Self::Secret => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

fn failed(tenant: &Tenant, error: &LoginError) -> Response {
    tracing::info!(tenant = %tenant.name, reason = %error, "login not completed");
    no_store(pages::login_failed(error.status(), &error.to_string()))
}

fn database_failed(error: crate::db::tenant_tx::TxError) -> Response {
    ApiError::from(error).into_response()
}

fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn see_other(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(LOCATION, value);
    }
    no_store(response)
}

/// Query of `GET /login`.
#[derive(Debug, Deserialize)]
pub struct LoginQuery {
    return_to: Option<String>,
}

async fn login(
    State(state): State<AppState>,
    tenant: Tenant,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    Query(query): Query<LoginQuery>,
) -> Response {
    let Some(sso) = state.catalog.sso(&tenant) else {
        return failed(&tenant, &LoginError::NoSso);
    };
    let Some(authority) = request_authority(&uri, &headers) else {
        return ApiError::MissingHost.into_response();
    };
    let redirect_uri = flow::redirect_uri(&state.login.scheme, &authority);
    let attempt = Attempt::new();
    let url = match flow::authorization_url(&sso, &attempt, &redirect_uri) {
        Ok(url) => url,
        Err(error) => return failed(&tenant, &error),
    };
    let stored = StoredAttempt {
        code_verifier: attempt.code_verifier.clone(),
        nonce: attempt.nonce.clone(),
        redirect_uri,
        return_to: flow::safe_return_to(query.return_to.as_deref()),
    };
    let ttl = state.login.sessions.attempt;
    if let Err(error) = session::store_attempt(
        &state.database,
        tenant.id,
        sha256_hex(&attempt.state),
        stored,
        ttl,
    )
    .await
    {
        return database_failed(error);
    }
    see_other(url.as_str())
}

/// Query of `GET /auth/callback` (the provider's answer).
#[derive(Deserialize)]
pub struct CallbackQuery {
    state: Option<String>,
    code: Option<String>,
    error: Option<String>,
}

// Never print the code or the state.
impl std::fmt::Debug for CallbackQuery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallbackQuery")
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

async fn callback(
    State(state): State<AppState>,
    tenant: Tenant,
    Query(query): Query<CallbackQuery>,
) -> Response {
    let Some(sso) = state.catalog.sso(&tenant) else {
        return failed(&tenant, &LoginError::NoSso);
    };
    // Consume the attempt first, whatever the provider said: a state works once.
    let attempt = match query.state.as_deref().filter(|s| !s.is_empty()) {
        Some(s) => match session::take_attempt(&state.database, tenant.id, sha256_hex(s)).await {
            Ok(found) => found,
            Err(error) => return database_failed(error),
        },
        None => None,
    };
    if let Some(error) = query.error.as_deref() {
        return failed(&tenant, &LoginError::Provider(exchange_code(error)));
    }
    let Some(attempt) = attempt else {
        return failed(&tenant, &LoginError::UnknownState);
    };
    let Some(code) = query.code.as_deref().filter(|c| !c.is_empty()) else {
        return failed(&tenant, &LoginError::NoCode);
    };
    let identity = match super::exchange::finish(
        &state,
        &sso,
        code,
        &attempt.code_verifier,
        &attempt.redirect_uri,
        &attempt.nonce,
    )
    .await
    {
        Ok(identity) => identity,
        Err(error) => return failed(&tenant, &error),
    };
    // No session for an account the IdP has not provisioned (or has deactivated): it could
    // not be used, and the browser would be sent round to log in again and again.
    match crate::auth::access::admit(&state, &tenant, &identity).await {
        Ok(()) => {}
        Err(crate::auth::access::AccessError::NotProvisioned) => {
            return failed(&tenant, &LoginError::NotProvisioned);
        }
        Err(crate::auth::access::AccessError::Unavailable(error)) => {
            return database_failed(error);
        }
    }
    let id = flow::random_token();
    let absolute = state.login.sessions.absolute;
    if let Err(error) = session::create(
        &state.database,
        tenant.id,
        sha256_hex(&id),
        identity,
        absolute,
    )
    .await
    {
        return database_failed(error);
    }
    tracing::info!(tenant = %tenant.name, "login completed; session created");
    let max_age = i64::try_from(absolute.as_secs()).unwrap_or(i64::MAX);
    let mut response = see_other(&attempt.return_to);
    if let Ok(cookie) = HeaderValue::from_str(&flow::session_cookie(SESSION_COOKIE, &id, max_age)) {
        response.headers_mut().insert(SET_COOKIE, cookie);
    }
    response
}

fn exchange_code(error: &str) -> String {
    super::exchange::error_code(Some(error))
}

/// Whether a state-changing request comes from a page of this very origin: its `Origin`
/// (when sent) is `scheme://authority`, and `Sec-Fetch-Site` (when sent) is not
/// cross-site. Together with `SameSite=Lax` this keeps other sites from logging users out.
pub fn same_origin(headers: &HeaderMap, scheme: &str, authority: &str) -> bool {
    let origin_ok = match headers.get("origin").map(HeaderValue::to_str) {
        None => true,
        Some(Ok(origin)) => origin.eq_ignore_ascii_case(&format!("{scheme}://{authority}")),
        Some(Err(_)) => false,
    };
    let site_ok = match headers.get("sec-fetch-site").map(HeaderValue::to_str) {
        None => true,
        Some(Ok(site)) => matches!(site, "same-origin" | "none"),
        Some(Err(_)) => false,
    };
    origin_ok && site_ok
}

async fn logout(
    State(state): State<AppState>,
    tenant: Tenant,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
) -> Response {
    let Some(authority) = request_authority(&uri, &headers) else {
        return ApiError::MissingHost.into_response();
    };
    if !same_origin(&headers, &state.login.scheme, &authority) {
        tracing::info!(tenant = %tenant.name, "logout refused: cross-origin request");
        return no_store(pages::login_failed(
            StatusCode::FORBIDDEN,
            "logging out is only possible from this site's own pages",
        ));
    }
    if let Some(id) = flow::cookie_value(&headers, SESSION_COOKIE) {
        match session::revoke(&state.database, tenant.id, sha256_hex(id)).await {
            Ok(revoked) => tracing::info!(tenant = %tenant.name, revoked, "logout"),
            Err(error) => {
                tracing::warn!(tenant = %tenant.name, error = %Report(&error), "revoking a session failed");
                return database_failed(error);
            }
        }
    }
    let logged_out = format!("{}://{authority}/logged-out", state.login.scheme);
    let sso = state.catalog.sso(&tenant);
    let mut response = see_other(&flow::logout_url(sso.as_deref(), &logged_out));
    if let Ok(cookie) = HeaderValue::from_str(&flow::cleared_cookie(SESSION_COOKIE)) {
        response.headers_mut().insert(SET_COOKIE, cookie);
    }
    response
}

async fn logged_out() -> Response {
    no_store(pages::logged_out())
}

async fn whoami(principal: Principal) -> Response {
    let ends = match principal.credential {
        Credential::Session { expires_at } => pages::Ends::Session(expires_at),
        Credential::Bearer => pages::Ends::Bearer,
    };
    no_store(pages::whoami(&principal, ends))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.insert(*name, HeaderValue::from_static(value));
        }
        headers
    }

    #[test]
    fn logout_is_accepted_only_from_the_same_origin() {
        let host = "mercy.example:8443";
        assert!(same_origin(&headers(&[]), "https", host));
        assert!(same_origin(
            &headers(&[
                ("origin", "https://mercy.example:8443"),
                ("sec-fetch-site", "same-origin")
            ]),
            "https",
            host
        ));
        assert!(!same_origin(
            &headers(&[("origin", "https://evil.example")]),
            "https",
            host
        ));
        assert!(!same_origin(&headers(&[("origin", "null")]), "https", host));
        assert!(!same_origin(
            &headers(&[("sec-fetch-site", "cross-site")]),
            "https",
            host
        ));
    }

    #[test]
    fn refusals_are_403_and_broken_links_400() {
        assert_eq!(LoginError::EmailDomain.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            LoginError::Provider("access_denied".into()).status(),
            StatusCode::FORBIDDEN
        );
        assert_eq!(LoginError::UnknownState.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            LoginError::Exchange("invalid_grant".into()).status(),
            StatusCode::BAD_GATEWAY
        );
    }
}
