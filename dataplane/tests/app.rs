//! The HTTP API driven through `app()` with a fixed in-memory catalog, before any socket.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, Response, StatusCode, header};
use futures::future::BoxFuture;
use http_body_util::BodyExt;
use phoenix_dataplane::catalog::{Catalog, Isolation, TenantRecord, TenantRow, TenantState};
use phoenix_dataplane::db::{Database, DatabaseProbe, DbError};
use phoenix_dataplane::metrics::Metrics;
use phoenix_dataplane::{AppState, Config, Tenant, admin_app, app};
use serde_json::Value;
use tower::ServiceExt;

/// Stands in for the database in readiness: always answers.
struct DatabaseUp;

impl DatabaseProbe for DatabaseUp {
    fn ping(&self) -> BoxFuture<'_, Result<(), DbError>> {
        Box::pin(async { Ok(()) })
    }
}

/// Stands in for a database that never answers.
struct DatabaseHangs;

impl DatabaseProbe for DatabaseHangs {
    fn ping(&self) -> BoxFuture<'_, Result<(), DbError>> {
        Box::pin(futures::future::pending())
    }
}

fn tenant(id: i64, name: &str, hostname: &str, state: TenantState) -> TenantRecord {
    TenantRecord {
        id,
        row: TenantRow {
            uid: format!("uid-{name}"),
            name: name.to_owned(),
            display_name: format!("{name} Health System"),
            hostname: hostname.to_owned(),
            home_region: "us-east-1".to_owned(),
            data_residency: vec!["US".to_owned()],
            isolation: Isolation::Shared,
            state,
            requests_per_second: 100,
            max_users: 1000,
            generation: 1,
            schema: None,
            database: None,
            database_server: None,
        },
    }
}

fn catalog() -> Catalog {
    Catalog::with_tenants([
        tenant(1, "mercy", "mercy.example.org", TenantState::Active),
        tenant(2, "stjude", "StJude.Example.org", TenantState::Suspended),
    ])
}

fn state_with(catalog: Catalog, probe: Arc<dyn DatabaseProbe>) -> AppState {
    // Pools connect lazily: these tests never reach a database.
    let database =
        Database::new(&Config::new("postgres://nobody@127.0.0.1:9/none")).expect("lazy pools");
    AppState::new(catalog, database, Metrics::new(Some("us-east-1"))).with_probe(probe)
}

fn app_with(catalog: Catalog, probe: Arc<dyn DatabaseProbe>) -> Router {
    app(state_with(catalog, probe))
}

fn test_app() -> Router {
    app_with(catalog(), Arc::new(DatabaseUp))
}

fn get(path: &str, host: Option<&str>) -> Request<Body> {
    let mut request = Request::get(path);
    if let Some(host) = host {
        request = request.header(header::HOST, host);
    }
    request.body(Body::empty()).expect("valid request")
}

async fn send(app: Router, request: Request<Body>) -> (StatusCode, String, Value) {
    let response: Response<Body> = app.oneshot(request).await.expect("infallible");
    let status = response.status();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let body = if content_type.contains("json") {
        serde_json::from_slice(&bytes).expect("JSON body")
    } else {
        Value::String(String::from_utf8(bytes.to_vec()).expect("UTF-8 body"))
    };
    (status, content_type, body)
}

fn assert_outcome(body: &Value, code: &str, diagnostics_contains: &str) {
    assert_eq!(body["resourceType"], "OperationOutcome", "{body}");
    assert_eq!(body["issue"][0]["severity"], "error", "{body}");
    assert_eq!(body["issue"][0]["code"], code, "{body}");
    let diagnostics = body["issue"][0]["diagnostics"].as_str().unwrap_or_default();
    assert!(diagnostics.contains(diagnostics_contains), "{body}");
}

fn assert_plain(body: &Value, code: &str, message_contains: &str) {
    assert_eq!(body["error"], code, "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(message.contains(message_contains), "{body}");
    assert!(body.get("resourceType").is_none(), "{body}");
}

#[tokio::test]
async fn known_host_gets_its_capability_statement() {
    let (status, content_type, body) =
        send(test_app(), get("/fhir/metadata", Some("mercy.example.org"))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(content_type, "application/fhir+json");
    assert_eq!(body["resourceType"], "CapabilityStatement");
    assert_eq!(body["status"], "active");
    assert_eq!(body["kind"], "instance");
    assert_eq!(body["fhirVersion"], "4.0.1");
    assert_eq!(body["format"], serde_json::json!(["json"]));
    assert_eq!(body["software"]["name"], "Phoenix Guardian data plane");
    assert_eq!(body["software"]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(body["implementation"]["description"], "mercy Health System");
    assert_eq!(
        body["implementation"]["url"],
        "https://mercy.example.org/fhir"
    );
    assert_eq!(body["rest"][0]["mode"], "server");
    let security = body["rest"][0]["security"]["description"]
        .as_str()
        .unwrap_or_default();
    assert!(security.contains("OAuth 2.0 bearer token"), "{body}");
    let date = body["date"].as_str().unwrap_or_default();
    assert!(date.parse::<jiff::Timestamp>().is_ok(), "date {date:?}");
}

#[tokio::test]
async fn host_with_port_and_other_case_resolves_the_same_tenant() {
    let (status, _, body) = send(
        test_app(),
        get("/fhir/metadata", Some("MERCY.example.org:8443")),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["implementation"]["description"], "mercy Health System");
}

#[tokio::test]
async fn unknown_host_is_404_operation_outcome_naming_the_host() {
    let (status, content_type, body) = send(
        test_app(),
        get("/fhir/metadata", Some("nowhere.example.org:443")),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(content_type, "application/fhir+json");
    assert_outcome(&body, "not-found", "nowhere.example.org");
}

#[tokio::test]
async fn suspended_tenant_is_403_suspended() {
    let (status, content_type, body) = send(
        test_app(),
        get("/fhir/metadata", Some("stjude.example.org")),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(content_type, "application/fhir+json");
    assert_outcome(&body, "suspended", "stjude.example.org");
}

#[tokio::test]
async fn missing_host_is_400() {
    let (status, content_type, body) = send(test_app(), get("/fhir/metadata", None)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(content_type, "application/fhir+json");
    assert_outcome(&body, "required", "Host");
}

#[tokio::test]
async fn malformed_host_is_400() {
    let (status, _, body) = send(test_app(), get("/fhir/metadata", Some("a b"))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["issue"][0]["code"], "value", "{body}");
}

#[tokio::test]
async fn healthz_needs_no_tenant() {
    let (status, _, body) = send(test_app(), get("/healthz", None)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "ok");
}

#[tokio::test]
async fn readyz_is_200_once_the_catalog_loaded_and_the_database_answers() {
    let (status, _, body) = send(test_app(), get("/readyz", None)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "ready");
}

#[tokio::test]
async fn readyz_is_503_before_the_catalog_loads() {
    let app = app_with(Catalog::new(), Arc::new(DatabaseUp));
    let (status, _, body) = send(app, get("/readyz", None)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["status"], "unavailable");
    assert!(
        body["reasons"][0]
            .as_str()
            .unwrap_or_default()
            .contains("catalog"),
        "{body}"
    );
}

// Paused time: the readiness timeout elapses as soon as the runtime idles, however loaded
// the machine is; the test asserts the outcome, not a duration.
#[tokio::test(start_paused = true)]
async fn readyz_is_503_when_the_database_does_not_answer_in_time() {
    let app = app_with(catalog(), Arc::new(DatabaseHangs));
    let (status, _, body) = send(app, get("/readyz", None)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        body["reasons"][0]
            .as_str()
            .unwrap_or_default()
            .contains("SELECT 1"),
        "{body}"
    );
}

#[tokio::test]
async fn unknown_path_is_404_operation_outcome() {
    let (status, content_type, body) = send(
        test_app(),
        get("/fhir/Observation/123", Some("mercy.example.org")),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(content_type, "application/fhir+json");
    assert_outcome(&body, "not-found", "/fhir/Observation/123");
}

#[tokio::test]
async fn wrong_method_is_405_operation_outcome() {
    let request = Request::post("/fhir/metadata")
        .header(header::HOST, "mercy.example.org")
        .body(Body::empty())
        .expect("valid request");
    let (status, content_type, body) = send(test_app(), request).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(content_type, "application/fhir+json");
    assert_outcome(
        &body,
        "not-supported",
        "POST is not supported on /fhir/metadata",
    );
}

#[tokio::test]
async fn unknown_path_outside_an_api_is_404_plain_json() {
    let (status, content_type, body) =
        send(test_app(), get("/no/such/path", Some("mercy.example.org"))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(content_type, "application/json");
    assert_plain(&body, "not_found", "/no/such/path");
}

#[tokio::test]
async fn wrong_method_outside_an_api_is_405_plain_json() {
    let request = Request::post("/healthz")
        .body(Body::empty())
        .expect("valid request");
    let (status, content_type, body) = send(test_app(), request).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(content_type, "application/json");
    assert_plain(
        &body,
        "method_not_allowed",
        "POST is not supported on /healthz",
    );
}

#[tokio::test]
async fn the_same_error_is_an_operation_outcome_under_fhir_and_plain_json_elsewhere() {
    // An unknown tenant is refused by tenant resolution inside /fhir ...
    let (fhir_status, _, fhir) = send(
        test_app(),
        get("/fhir/metadata", Some("nowhere.example.org")),
    )
    .await;
    // ... and the same ApiError, answered by a route outside any API, stays plain JSON.
    let plain_app = Router::new().route(
        "/plain",
        axum::routing::get(|| async {
            phoenix_dataplane::ApiError::UnknownTenant {
                host: "nowhere.example.org".to_owned(),
            }
        }),
    );
    let (plain_status, content_type, plain) =
        send(plain_app, get("/plain", Some("nowhere.example.org"))).await;

    assert_eq!(fhir_status, plain_status);
    assert_outcome(&fhir, "not-found", "nowhere.example.org");
    assert_eq!(content_type, "application/json");
    assert_plain(&plain, "unknown_tenant", "nowhere.example.org");
}

#[tokio::test]
async fn a_tenant_handler_mounted_without_tenant_resolution_fails_closed() {
    let misrouted = Router::new().route(
        "/oops",
        axum::routing::get(|tenant: Tenant| async move { tenant.display_name.clone() }),
    );
    let (status, _, body) = send(misrouted, get("/oops", Some("mercy.example.org"))).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_plain(&body, "internal", "internal server error");
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_tenant_on_the_admin_router_only() {
    let state = state_with(catalog(), Arc::new(DatabaseUp));
    let app = app(state.clone());
    let admin = admin_app(state);
    send(
        app.clone(),
        get("/fhir/metadata", Some("mercy.example.org")),
    )
    .await;
    send(
        app.clone(),
        get("/fhir/metadata", Some("nowhere.example.org")),
    )
    .await;
    send(app.clone(), get("/no/such/path", Some("mercy.example.org"))).await;
    // Not on the public router: a 404 like any unknown path (counted as unmatched).
    let (status, _, body) = send(app, get("/metrics", Some("mercy.example.org"))).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_plain(&body, "not_found", "/metrics");
    let (status, content_type, body) = send(admin, get("/metrics", None)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let text = body.as_str().expect("text body");
    for expected in [
        r#"http_requests_total{region="us-east-1",method="GET",route="/fhir/metadata",status="200",tenant="mercy"} 1"#,
        // An unknown host is no tenant: never the raw Host header as a label value.
        r#"http_requests_total{region="us-east-1",method="GET",route="/fhir/metadata",status="404",tenant="none"} 1"#,
        r#"http_requests_total{region="us-east-1",method="GET",route="unmatched",status="404",tenant="none"} 2"#,
        r#"http_request_duration_seconds_count{region="us-east-1",method="GET",route="/fhir/metadata"} 2"#,
        r#"dataplane_catalog_tenants{region="us-east-1"} 2"#,
        "# TYPE dataplane_catalog_reloads counter",
        // Read from the pools at every scrape (no connection made yet).
        r#"dataplane_pool_connections{region="us-east-1",pool="writer"} 0"#,
        r#"dataplane_pool_idle_connections{region="us-east-1",pool="writer"} 0"#,
        r#"dataplane_pool_waiters{region="us-east-1",pool="writer"} 0"#,
    ] {
        assert!(text.contains(expected), "missing {expected} in\n{text}");
    }
    assert!(!text.contains("nowhere.example.org"), "{text}");
}
