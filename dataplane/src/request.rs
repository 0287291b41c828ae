//! What happens around every request, whatever its route: its request id (`X-Request-Id`
//! in and out), its tracing span, its timeout, its metrics and its one log line.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use crate::app::AppState;
use crate::error::ApiError;
use crate::tenant::ResolvedTenant;

/// The request id header, read from requests and set on every response.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Largest request body any route accepts unless configured (`MAX_BODY_BYTES`): 2 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 2 * 1024 * 1024;
/// Longest time a request may take, its body's upload included, unless configured
/// (`REQUEST_TIMEOUT_MS`).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Label and log value of a request that no tenant was resolved for.
pub const NO_TENANT: &str = "none";

/// Limits every request is held to, and the region its log lines name.
#[derive(Clone, Debug)]
pub struct RequestSettings {
    /// Largest request body, in bytes; a larger one is answered 413.
    pub max_body_bytes: usize,
    /// Longest time from receiving a request to its response headers; a request over it
    /// is answered 503 (an `OperationOutcome` with `timeout` under `/fhir`).
    pub timeout: Duration,
    /// The region, carried on every request's span.
    pub region: Option<Arc<str>>,
    /// Most entries of a transaction or batch Bundle; more are answered 413.
    pub max_bundle_entries: usize,
}

impl Default for RequestSettings {
    fn default() -> Self {
        Self {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            timeout: DEFAULT_REQUEST_TIMEOUT,
            region: None,
            max_bundle_entries: crate::fhir::bundle_request::DEFAULT_MAX_ENTRIES,
        }
    }
}

/// A request's id: its `X-Request-Id` when usable, else a fresh one. In the request's
/// extensions for handlers (the audit's `Requester`), and echoed on its response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestId(pub String);

impl RequestId {
    /// The id of a request with `headers`: the `X-Request-Id` it sent when that is usable
    /// (1 to 128 visible ASCII characters: it lands in logs and audit evidence), else a
    /// fresh random one.
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let sent = headers
            .get(&REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .filter(|v| usable(v));
        Self(sent.map_or_else(|| format!("{:032x}", rand::random::<u128>()), str::to_owned))
    }
}

fn usable(value: &str) -> bool {
    !value.is_empty() && value.len() <= 128 && value.bytes().all(|b| b.is_ascii_graphic())
}

/// Middleware around every route and fallback: gives the request its id and span, holds
/// it to the timeout, counts it, echoes the id and logs one line (method, route template,
/// status, latency, tenant, id; never the path's ids, the query, headers or bodies).
pub async fn observe(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = RequestId::from_headers(request.headers());
    request.extensions_mut().insert(id.clone());
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned());
    let api = Api::of(request.uri().path());
    let settings = &state.request;
    let span = tracing::info_span!(
        "request",
        request_id = %id.0,
        region = settings.region.as_deref(),
    );
    let timeout = settings.timeout;
    let response = tokio::time::timeout(timeout, next.run(request))
        .instrument(span.clone())
        .await;
    let mut response = match response {
        Ok(response) => response,
        Err(_) => {
            let error = ApiError::TimedOut {
                after_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            };
            api.render(error.into_response()).await
        }
    };
    let elapsed = started.elapsed();
    let tenant = response
        .extensions()
        .get::<ResolvedTenant>()
        .map_or(NO_TENANT, |t| t.0.as_str())
        .to_owned();
    let status = response.status();
    state
        .metrics
        .observe_request(&method, route.as_deref(), status, elapsed, &tenant);
    if let Ok(value) = HeaderValue::from_str(&id.0) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    span.in_scope(|| {
        tracing::info!(
            method = %method,
            route = route.as_deref().unwrap_or(crate::metrics::UNMATCHED_ROUTE),
            status = status.as_u16(),
            latency_ms = elapsed.as_secs_f64() * 1000.0,
            tenant = %tenant,
            "request"
        );
    });
    response
}

// Which API's error format an answer made outside its router (the timeout) takes.
enum Api {
    Fhir,
    Scim,
    Plain,
}

impl Api {
    fn of(path: &str) -> Self {
        if path == "/fhir" || path.starts_with("/fhir/") || path.starts_with("/analytics") {
            Self::Fhir
        } else if path.starts_with("/scim/") {
            Self::Scim
        } else {
            Self::Plain
        }
    }

    async fn render(&self, response: Response) -> Response {
        match self {
            Self::Fhir => crate::fhir::render_errors(response).await,
            Self::Scim => crate::scim::error::render_errors(response).await,
            Self::Plain => response,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id_of(value: &'static str) -> String {
        let mut headers = HeaderMap::new();
        headers.insert(REQUEST_ID, HeaderValue::from_static(value));
        RequestId::from_headers(&headers).0
    }

    #[test]
    fn usable_ids_are_kept_and_odd_ones_replaced() {
        assert_eq!(id_of("abc-123"), "abc-123");
        let long: &'static str = Box::leak("x".repeat(128).into_boxed_str());
        assert_eq!(id_of(long), long);
        let too_long: &'static str = Box::leak("x".repeat(129).into_boxed_str());
        for odd in ["", "a b", too_long] {
            let replaced = id_of(odd);
            assert_ne!(replaced, odd);
            assert_eq!(replaced.len(), 32, "{replaced}");
        }
        let fresh = RequestId::from_headers(&HeaderMap::new()).0;
        assert_eq!(fresh.len(), 32);
        assert_ne!(fresh, RequestId::from_headers(&HeaderMap::new()).0);
    }
}
