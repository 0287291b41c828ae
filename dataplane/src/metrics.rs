//! Prometheus metrics of the data plane and the `/metrics` route that exposes them on the
//! admin listener (`ADMIN_LISTEN_ADDR`), never on the public one.

pub mod reads;

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Router, http::HeaderValue};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use self::reads::ReadMetrics;
use crate::app::AppState;
use crate::error::ApiError;

/// Label of requests that matched no route, so that scanners cannot grow the label set.
pub const UNMATCHED_ROUTE: &str = "unmatched";

const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: Cow<'static, str>,
    route: String,
    status: u16,
    tenant: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TenantLabels {
    tenant: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: Cow<'static, str>,
    route: String,
}

fn duration_histogram() -> Histogram {
    // 0.25 ms .. ~8 s: the latency goal is single-digit milliseconds.
    Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
}

/// The data plane's metrics; clones share the same registry (and are one reference count:
/// requests clone them).
#[derive(Clone)]
pub struct Metrics(Arc<Series>);

impl std::ops::Deref for Metrics {
    type Target = Series;

    fn deref(&self) -> &Series {
        &self.0
    }
}

/// The series of [`Metrics`].
pub struct Series {
    registry: Registry,
    http_requests: Family<RequestLabels, Counter>,
    http_request_duration: Family<RouteLabels, Histogram, fn() -> Histogram>,
    catalog_tenants: Gauge,
    catalog_reloads: Counter,
    catalog_reload_failures: Counter,
    rate_limited: Family<TenantLabels, Counter>,
    bearer_tokens: [Counter; 2],
    reads: ReadMetrics,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// A fresh registry; every series carries `region` when one is given.
    pub fn new(region: Option<&str>) -> Self {
        let labels = region.map(|region| (Cow::Borrowed("region"), Cow::Owned(region.to_owned())));
        let mut registry = Registry::with_labels(labels.into_iter());

        let http_requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests served, by method, route, status and tenant (none: no tenant \
             resolved)",
            http_requests.clone(),
        );
        let http_request_duration =
            Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                duration_histogram,
            );
        registry.register_with_unit(
            "http_request_duration",
            "Time from receiving a request to producing its response headers",
            Unit::Seconds,
            http_request_duration.clone(),
        );
        let catalog_tenants = Gauge::default();
        registry.register(
            "dataplane_catalog_tenants",
            "Live tenants (active and suspended) in the in-memory catalog",
            catalog_tenants.clone(),
        );
        let catalog_reloads = Counter::default();
        registry.register(
            "dataplane_catalog_reloads",
            "Successful reloads of the catalog from catalog.tenants",
            catalog_reloads.clone(),
        );
        let catalog_reload_failures = Counter::default();
        registry.register(
            "dataplane_catalog_reload_failures",
            "Failed reloads of the catalog (the previous catalog stays in use)",
            catalog_reload_failures.clone(),
        );
        // Labelled by tenant name: bounded by the catalog, never by what a client sends
        // (only resolved tenants are counted).
        let rate_limited = Family::<TenantLabels, Counter>::default();
        registry.register(
            "dataplane_rate_limited_requests",
            "Requests answered 429 because their tenant was over its requestsPerSecond",
            rate_limited.clone(),
        );
        let bearer_family = Family::<TokenLabels, Counter>::default();
        registry.register(
            "dataplane_bearer_tokens",
            "Bearer tokens presented, by how they were checked: found among the tokens \
             verified before (cached) or checked in full, signature included (verified)",
            bearer_family.clone(),
        );
        // Resolved once: the hot path increments without hashing labels.
        let bearer_tokens = ["cached", "verified"]
            .map(|result| bearer_family.get_or_create(&TokenLabels { result }).clone());
        let reads = ReadMetrics::register(&mut registry);

        Self(Arc::new(Series {
            registry,
            http_requests,
            http_request_duration,
            catalog_tenants,
            catalog_reloads,
            catalog_reload_failures,
            rate_limited,
            bearer_tokens,
            reads,
        }))
    }

    /// The read/write split's series (given to the `Database`).
    pub fn reads(&self) -> ReadMetrics {
        self.reads.clone()
    }

    /// Counts one served request and its duration; `tenant` is the name of the tenant it
    /// was resolved to, or [`crate::request::NO_TENANT`].
    pub fn observe_request(
        &self,
        method: &Method,
        route: Option<&str>,
        status: StatusCode,
        elapsed: Duration,
        tenant: &str,
    ) {
        let method = method_label(method);
        let route = route.unwrap_or(UNMATCHED_ROUTE).to_owned();
        self.http_request_duration
            .get_or_create(&RouteLabels {
                method: method.clone(),
                route: route.clone(),
            })
            .observe(elapsed.as_secs_f64());
        self.http_requests
            .get_or_create(&RequestLabels {
                method,
                route,
                status: status.as_u16(),
                tenant: tenant.to_owned(),
            })
            .inc();
    }

    /// Counts a bearer token presented: `cached` when it was found among the tokens
    /// verified before, else it is checked in full (and accepted or refused).
    pub fn token_checked(&self, cached: bool) {
        self.bearer_tokens[usize::from(!cached)].inc();
    }

    /// Records a successful catalog reload that left `tenants` live tenants.
    pub fn catalog_reloaded(&self, tenants: usize) {
        self.catalog_reloads.inc();
        self.set_catalog_tenants(tenants);
    }

    /// Counts a request of `tenant` refused for its rate limit.
    pub fn rate_limited(&self, tenant: &str) {
        self.rate_limited
            .get_or_create(&TenantLabels {
                tenant: tenant.to_owned(),
            })
            .inc();
    }

    /// Records a failed catalog reload.
    pub fn catalog_reload_failed(&self) {
        self.catalog_reload_failures.inc();
    }

    /// Sets the live tenant gauge.
    pub fn set_catalog_tenants(&self, tenants: usize) {
        self.catalog_tenants
            .set(i64::try_from(tenants).unwrap_or(i64::MAX));
    }

    /// The registry in the OpenMetrics text format.
    pub fn encode(&self) -> Result<String, fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

// Only the standard methods become label values: anything else is "other".
fn method_label(method: &Method) -> Cow<'static, str> {
    Cow::Borrowed(match method.as_str() {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "OPTIONS" => "OPTIONS",
        "CONNECT" => "CONNECT",
        "TRACE" => "TRACE",
        _ => "other",
    })
}

/// The `/metrics` route (of the admin listener).
pub fn router() -> Router<AppState> {
    Router::new().route("/metrics", get(metrics))
}

async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    // Read at scrape time so the gauge is right even for a catalog no follower fills.
    state.metrics.set_catalog_tenants(state.catalog.len());
    state.database.report_pools();
    let text = state
        .metrics
        .encode()
        .map_err(|_| ApiError::Internal("encoding metrics failed"))?;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(OPENMETRICS_CONTENT_TYPE),
        )],
        text,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_carry_the_region_and_conventional_names() {
        let metrics = Metrics::new(Some("eu-west-1"));
        metrics.observe_request(
            &Method::GET,
            Some("/fhir/metadata"),
            StatusCode::OK,
            Duration::from_millis(2),
            "mercy",
        );
        metrics.catalog_reloaded(3);
        let text = metrics.encode().expect("encodes");
        assert!(text.contains(
            r#"http_requests_total{region="eu-west-1",method="GET",route="/fhir/metadata",status="200",tenant="mercy"} 1"#
        ), "{text}");
        assert!(
            text.contains("http_request_duration_seconds_bucket"),
            "{text}"
        );
        assert!(
            text.contains(r#"dataplane_catalog_tenants{region="eu-west-1"} 3"#),
            "{text}"
        );
        assert!(
            text.contains(r#"dataplane_catalog_reloads_total{region="eu-west-1"} 1"#),
            "{text}"
        );
    }

    #[test]
    fn unknown_methods_and_routes_share_one_label_value() {
        let method = Method::from_bytes(b"PROPFIND").expect("valid method");
        assert_eq!(method_label(&method), "other");
        let metrics = Metrics::new(None);
        metrics.observe_request(&method, None, StatusCode::NOT_FOUND, Duration::ZERO, "none");
        let text = metrics.encode().expect("encodes");
        assert!(
            text.contains(
                r#"http_requests_total{method="other",route="unmatched",status="404",tenant="none"} 1"#
            ),
            "{text}"
        );
    }
}
