//! Which tenant a request is for: resolved from its host by a middleware in front of every
//! tenant route, then read by handlers through the [`Tenant`] extractor.

use std::ops::Deref;
use std::sync::Arc;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::header::HOST;
use axum::http::request::Parts;
use axum::http::uri::Authority;
use axum::http::{HeaderMap, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::app::AppState;
use crate::catalog::{Catalog, TenantRecord, TenantState, normalize_host};
use crate::error::ApiError;

/// The host a request is addressed to, without port and lowercased.
///
/// An absolute request URI (HTTP/2 `:authority`, or an absolute-form HTTP/1.1 target)
/// wins over the Host header, as RFC 9112 section 3.2.2 requires.
pub fn request_host(uri: &Uri, headers: &HeaderMap) -> Result<String, ApiError> {
    if let Some(authority) = uri.authority() {
        return host_of(authority);
    }
    let mut values = headers.get_all(HOST).iter();
    let value = values.next().ok_or(ApiError::MissingHost)?;
    if values.next().is_some() {
        return Err(ApiError::InvalidHost);
    }
    let authority: Authority = value
        .to_str()
        .map_err(|_| ApiError::InvalidHost)?
        .parse()
        .map_err(|_| ApiError::InvalidHost)?;
    host_of(&authority)
}

fn host_of(authority: &Authority) -> Result<String, ApiError> {
    // A Host header carries no user information, and a host is never empty.
    if authority.as_str().contains('@') || authority.host().is_empty() {
        return Err(ApiError::InvalidHost);
    }
    Ok(normalize_host(authority.host()))
}

/// The live, active tenant served at `host`, or why there is none to serve.
pub fn resolve(catalog: &Catalog, host: &str) -> Result<Arc<TenantRecord>, ApiError> {
    let tenant = catalog.get(host).ok_or_else(|| ApiError::UnknownTenant {
        host: host.to_owned(),
    })?;
    match tenant.state {
        TenantState::Active => Ok(tenant),
        TenantState::Suspended => Err(ApiError::TenantSuspended {
            host: host.to_owned(),
        }),
        // The catalog never holds one; should it, it is gone for its clients.
        TenantState::Retired => Err(ApiError::UnknownTenant {
            host: host.to_owned(),
        }),
    }
}

/// Middleware in front of every tenant route: resolves the tenant and counts the request
/// against its rate limit, or answers the error (404/403/429).
pub async fn resolve_tenant(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let host = request_host(request.uri(), request.headers())?;
    let tenant = resolve(&state.catalog, &host)?;
    let name = ResolvedTenant(tenant.name.clone());
    let mut response = admit(&state, tenant, request, next).await;
    // For the request log and metrics, which run outside this middleware.
    response.extensions_mut().insert(name);
    Ok(response)
}

async fn admit(
    state: &AppState,
    tenant: Arc<TenantRecord>,
    mut request: Request,
    next: Next,
) -> Response {
    if let Err(throttled) = state.limits.check(&tenant) {
        state.metrics.rate_limited(&tenant.name);
        return ApiError::RateLimited {
            tenant: tenant.name.clone(),
            per_second: throttled.per_second,
            retry_after_seconds: throttled.retry_after_seconds(),
        }
        .into_response();
    }
    tracing::debug!(tenant = %tenant.name, "tenant resolved");
    request.extensions_mut().insert(Tenant(tenant));
    next.run(request).await
}

/// The name of the tenant a request was resolved to, in its response's extensions: the
/// request log's and the metrics' `tenant` (bounded by the catalog, never a raw host).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedTenant(pub String);

/// The tenant a request is for. Only routes behind [`resolve_tenant`] can extract it.
#[derive(Clone, Debug)]
pub struct Tenant(pub Arc<TenantRecord>);

impl Deref for Tenant {
    type Target = TenantRecord;

    fn deref(&self) -> &TenantRecord {
        &self.0
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Tenant {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<Tenant>()
            .cloned()
            .ok_or(ApiError::Internal(
                "a handler extracts Tenant on a route without the tenant middleware",
            ))
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;
    use crate::catalog::{Isolation, TenantRow};

    fn headers(hosts: &[&'static str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for host in hosts {
            headers.append(HOST, HeaderValue::from_static(host));
        }
        headers
    }

    fn host(hosts: &[&'static str]) -> Result<String, ApiError> {
        request_host(&Uri::from_static("/fhir/metadata"), &headers(hosts))
    }

    #[test]
    fn host_drops_the_port_and_case() {
        assert_eq!(
            host(&["Mercy.Example.org:8443"]).ok(),
            Some("mercy.example.org".into())
        );
        assert_eq!(
            host(&["mercy.example.org."]).ok(),
            Some("mercy.example.org".into())
        );
        assert_eq!(host(&["[::1]:8080"]).ok(), Some("[::1]".into()));
    }

    #[test]
    fn missing_duplicate_and_malformed_hosts_are_refused() {
        assert!(matches!(host(&[]), Err(ApiError::MissingHost)));
        assert!(matches!(
            host(&["a.example.org", "b.example.org"]),
            Err(ApiError::InvalidHost)
        ));
        assert!(matches!(host(&["a b"]), Err(ApiError::InvalidHost)));
        assert!(matches!(
            host(&["user@a.example.org"]),
            Err(ApiError::InvalidHost)
        ));
        assert!(matches!(host(&[":8080"]), Err(ApiError::InvalidHost)));
    }

    #[test]
    fn an_absolute_uri_wins_over_the_host_header() {
        let uri = Uri::from_static("https://A.example.org/fhir/metadata");
        let host = request_host(&uri, &headers(&["b.example.org"])).expect("host");
        assert_eq!(host, "a.example.org");
    }

    #[test]
    fn only_active_tenants_resolve() {
        let record = |name: &str, state| TenantRecord {
            id: 1,
            row: TenantRow {
                uid: name.into(),
                name: name.into(),
                display_name: name.into(),
                hostname: format!("{name}.example.org"),
                home_region: "us-east-1".into(),
                data_residency: vec!["US".into()],
                isolation: Isolation::Shared,
                state,
                requests_per_second: 1,
                max_users: 1,
                generation: 1,
                schema: None,
                database: None,
                database_server: None,
            },
        };
        let catalog = Catalog::with_tenants([
            record("open", TenantState::Active),
            record("closed", TenantState::Suspended),
        ]);
        assert!(resolve(&catalog, "open.example.org").is_ok());
        assert!(matches!(
            resolve(&catalog, "closed.example.org"),
            Err(ApiError::TenantSuspended { .. })
        ));
        assert!(matches!(
            resolve(&catalog, "nowhere.example.org"),
            Err(ApiError::UnknownTenant { .. })
        ));
    }
}
