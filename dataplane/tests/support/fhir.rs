//! The FHIR test harness: two tenants (A and B, each with its own IdP) on a throwaway
//! database, tokens of their IdPs by group, one-request calls through the router, and the
//! external `fhir.resources` R4 model that checks every body served ($FHIR_VALIDATE).

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use jsonwebtoken::{Algorithm, Header};
use phoenix_catalog::sso::RoleGrant;
use phoenix_dataplane::auth::jwks::JwksCache;
use phoenix_dataplane::catalog::{Catalog, SsoRow, TenantRecord};
use phoenix_dataplane::db::Database;
use phoenix_dataplane::metrics::Metrics;
use phoenix_dataplane::{AppState, app};
use serde_json::{Value, json};
use tower::ServiceExt;

use super::TestDb;
use super::auth::{FixedJwks, key, oidc_sso, tenant_record};

pub const A: &str = "mercy.example.org";
pub const B: &str = "stjude.example.org";

pub fn issuer(host: &str) -> String {
    format!("https://idp.example/realms/{host}")
}

pub fn record(id: i64, host: &str) -> TenantRecord {
    tenant_record(id, host.split('.').next().unwrap_or(host), host)
}

pub fn sso(host: &str) -> SsoRow {
    let grant = |group: &str, role: &str| RoleGrant {
        group: group.into(),
        role: role.into(),
    };
    SsoRow {
        role_mapping: ["physician", "nurse", "readonly", "admin", "auditor"]
            .iter()
            .map(|r| grant(&format!("{r}s"), r))
            .collect(),
        ..oidc_sso(host, &issuer(host))
    }
}

/// A token of `host`'s identity provider for a member of `group` (`physicians`, ...).
pub fn token(host: &str, group: &str) -> String {
    let now = jiff::Timestamp::now().as_second();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("k1".into());
    let claims = json!({"iss": issuer(host), "aud": "phoenix-dataplane", "sub": format!("{group}-1"),
        "exp": now + 300, "email": format!("{group}@{host}"), "groups": [group]});
    jsonwebtoken::encode(&header, &claims, &key()).expect("signed")
}

pub struct Setup {
    /// Keeps the database until the test ends.
    pub _db: TestDb,
    /// The tenants A and B with their SSO rows.
    pub catalog: Catalog,
    /// The data plane role's pools, reporting to `metrics`.
    pub database: phoenix_dataplane::db::Database,
    /// The router over them.
    pub app: axum::Router,
    /// The admin router over the same state: `/metrics` of `metrics`.
    pub admin: axum::Router,
    /// The metrics `admin` serves at `/metrics`.
    pub metrics: Metrics,
    /// Catalog ids of A and B.
    pub ids: (i64, i64),
}

/// Tenants A and B on a new database, read and written on the primary.
pub async fn setup() -> Setup {
    setup_with(|db| db.database(2)).await
}

/// Like [`setup`], with the pools `database` makes of the test database.
pub async fn setup_with(database: impl FnOnce(&TestDb) -> Database) -> Setup {
    let db = TestDb::create().await;
    let a = db.insert_tenant("mercy", A).await;
    let b = db.insert_tenant("stjude", B).await;
    let catalog = Catalog::new();
    catalog.replace_with_sso([record(a, A), record(b, B)], [(a, sso(A)), (b, sso(B))]);
    let metrics = Metrics::new(Some("us-east-1"));
    let database = database(&db).observed_by(metrics.reads());
    let app = app_with(&catalog, &database, &metrics);
    let admin = phoenix_dataplane::admin_app(AppState::new(
        catalog.clone(),
        database.clone(),
        metrics.clone(),
    ));
    Setup {
        _db: db,
        catalog,
        database,
        app,
        admin,
        metrics,
        ids: (a, b),
    }
}

/// Like [`setup`], but A is a `Schema` tenant (its own schema, made by the operator's
/// code) while B stays `Shared`: one router serves both. A's schema is returned too.
pub async fn setup_schema_a() -> (Setup, String) {
    let db = TestDb::create().await;
    let (a, schema) = db.insert_schema_tenant("mercy", A).await;
    let b = db.insert_tenant("stjude", B).await;
    let catalog = Catalog::new();
    let mut ra = record(a, A);
    ra.row.isolation = phoenix_dataplane::Isolation::Schema;
    ra.row.schema = Some(schema.clone());
    catalog.replace_with_sso([ra, record(b, B)], [(a, sso(A)), (b, sso(B))]);
    let metrics = Metrics::new(Some("us-east-1"));
    let database = db.database(2).observed_by(metrics.reads());
    let app = app_with(&catalog, &database, &metrics);
    let admin = phoenix_dataplane::admin_app(AppState::new(
        catalog.clone(),
        database.clone(),
        metrics.clone(),
    ));
    let setup = Setup {
        _db: db,
        catalog,
        database,
        app,
        admin,
        metrics,
        ids: (a, b),
    };
    (setup, schema)
}

/// Like [`setup_schema_a`], tenant A `Dedicated` (its rows in a database of its own, on
/// the same server) and B `Shared`; the database of A too. The data plane's database is
/// `database` (e.g. a split one with a reader) made from the test database.
pub async fn setup_dedicated_a_with(database: impl FnOnce(&TestDb) -> Database) -> (Setup, String) {
    let db = TestDb::create().await;
    let (a, name) = db.insert_dedicated_tenant("mercy", A).await;
    let b = db.insert_tenant("stjude", B).await;
    let catalog = Catalog::new();
    let mut ra = record(a, A);
    ra.row.isolation = phoenix_dataplane::Isolation::Dedicated;
    ra.row.database = Some(name.clone());
    catalog.replace_with_sso([ra, record(b, B)], [(a, sso(A)), (b, sso(B))]);
    let metrics = Metrics::new(Some("us-east-1"));
    let database = database(&db).observed_by(metrics.reads());
    let app = app_with(&catalog, &database, &metrics);
    let admin = phoenix_dataplane::admin_app(AppState::new(
        catalog.clone(),
        database.clone(),
        metrics.clone(),
    ));
    let setup = Setup {
        _db: db,
        catalog,
        database,
        app,
        admin,
        metrics,
        ids: (a, b),
    };
    (setup, name)
}

/// A new application over the same catalog and database: a restarted server.
pub fn fresh_app(catalog: &Catalog, database: &Database) -> axum::Router {
    app_with(catalog, database, &Metrics::new(Some("us-east-1")))
}

/// The application over `catalog` and `database`, serving `metrics`.
pub fn app_with(catalog: &Catalog, database: &Database, metrics: &Metrics) -> axum::Router {
    app(state_with(catalog, database, metrics))
}

/// The state `app_with` serves: tokens signed by the test key are valid.
pub fn state_with(catalog: &Catalog, database: &Database, metrics: &Metrics) -> AppState {
    let jwks = JwksCache::new(Arc::new(FixedJwks), Duration::from_secs(30));
    AppState::new(catalog.clone(), database.clone(), metrics.clone()).with_jwks(jwks)
}

/// One request; `who` is `(token host, group)`.
pub struct Call<'a> {
    method: Method,
    path: &'a str,
    host: &'a str,
    who: Option<(&'a str, &'a str)>,
    body: Option<Value>,
    headers: Vec<(&'a str, &'a str)>,
}

impl<'a> Call<'a> {
    pub fn new(
        method: Method,
        path: &'a str,
        host: &'a str,
        who: Option<(&'a str, &'a str)>,
    ) -> Self {
        Self {
            method,
            path,
            host,
            who,
            body: None,
            headers: Vec::new(),
        }
    }

    pub fn body(mut self, body: Value) -> Self {
        self.body = Some(body);
        self
    }

    pub fn header(mut self, name: &'a str, value: &'a str) -> Self {
        self.headers.push((name, value));
        self
    }

    pub async fn send(self, app: &axum::Router) -> (StatusCode, HeaderMap, Value) {
        let mut request = Request::builder()
            .method(self.method)
            .uri(self.path)
            .header(header::HOST, self.host);
        if let Some((host, group)) = self.who {
            request = request.header(
                header::AUTHORIZATION,
                format!("Bearer {}", token(host, group)),
            );
        }
        if self.body.is_some() {
            request = request.header(header::CONTENT_TYPE, "application/fhir+json");
        }
        for (name, value) in self.headers {
            request = request.header(name, value);
        }
        let body = self
            .body
            .map_or_else(Body::empty, |b| Body::from(b.to_string()));
        let response = app
            .clone()
            .oneshot(request.body(body).expect("request"))
            .await
            .expect("response");
        let (parts, body) = response.into_parts();
        let bytes = body.collect().await.expect("body").to_bytes();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if !json.is_null() {
            assert_valid_fhir(&json);
        }
        (parts.status, parts.headers, json)
    }
}

/// Fails unless `fhir.resources` accepts `resource` as FHIR R4.
pub fn assert_valid_fhir(resource: &Value) {
    let command = std::env::var("FHIR_VALIDATE").unwrap_or_else(|_| {
        panic!(
            "FHIR_VALIDATE is not set: these tests validate what they receive with fhir.resources. \
             Run `e2e/stack up && source .stack/env` (it installs fhir.resources), then rerun."
        )
    });
    let mut child = Command::new("sh")
        .args(["-c", &command])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run $FHIR_VALIDATE");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(resource.to_string().as_bytes())
        .expect("write the resource");
    let output = child.wait_with_output().expect("validator finishes");
    assert!(
        output.status.success(),
        "fhir.resources refuses {resource}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

pub const PHYSICIAN: Option<(&str, &str)> = Some((A, "physicians"));

pub fn patient(family: &str, birth_date: &str, mrn: &str) -> Value {
    json!({
        "resourceType": "Patient",
        "identifier": [{"system": "urn:oid:1.2.36.146.595.217.0.1", "value": mrn}],
        "name": [{"family": family, "given": ["Test"]}],
        "gender": "unknown",
        "birthDate": birth_date,
    })
}

pub async fn create(app: &axum::Router, body: Value) -> String {
    let (status, _, created) = Call::new(Method::POST, "/fhir/Patient", A, PHYSICIAN)
        .body(body)
        .send(app)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    created["id"].as_str().expect("an id").to_owned()
}

pub fn etag(headers: &HeaderMap) -> &str {
    headers
        .get(header::ETAG)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}
