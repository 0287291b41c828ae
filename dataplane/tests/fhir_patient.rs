//! `/fhir/Patient` against a real PostgreSQL, through the whole router with tokens signed
//! by the test key: the lifecycle with versions, search with keyset paging across pages
//! (and across a restart), tenant isolation, and who may read and write. Every body
//! served is checked with the external `fhir.resources` R4 model ($FHIR_VALIDATE).

mod support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use phoenix_catalog::sso::{Protocol, RoleGrant};
use phoenix_dataplane::auth::jwks::{FetchError, JwksCache, JwksSource};
use phoenix_dataplane::catalog::{
    Catalog, Isolation, SsoRow, TenantRecord, TenantRow, TenantState,
};
use phoenix_dataplane::metrics::Metrics;
use phoenix_dataplane::{AppState, app};
use serde_json::{Value, json};
use support::TestDb;
use tower::ServiceExt;

const A: &str = "mercy.example.org";
const B: &str = "stjude.example.org";

fn key() -> EncodingKey {
    EncodingKey::from_rsa_pem(include_bytes!("../src/auth/test_rsa.pem")).expect("test key")
}

struct FixedJwks;

#[async_trait::async_trait]
impl JwksSource for FixedJwks {
    async fn fetch(&self, _uri: &str) -> Result<Vec<u8>, FetchError> {
        let mut jwk = Jwk::from_encoding_key(&key(), Algorithm::RS256).expect("jwk");
        jwk.common.key_id = Some("k1".into());
        Ok(json!({ "keys": [jwk] }).to_string().into_bytes())
    }
}

fn issuer(host: &str) -> String {
    format!("https://idp.example/realms/{host}")
}

fn record(id: i64, host: &str) -> TenantRecord {
    let name = host.split('.').next().unwrap_or(host);
    TenantRecord {
        id,
        row: TenantRow {
            uid: format!("uid-{name}"),
            name: name.into(),
            display_name: name.into(),
            hostname: host.into(),
            home_region: "us-east-1".into(),
            data_residency: vec!["US".into()],
            isolation: Isolation::Shared,
            state: TenantState::Active,
            requests_per_second: 100,
            max_users: 100,
            generation: 1,
        },
    }
}

fn sso(host: &str) -> SsoRow {
    let grant = |group: &str, role: &str| RoleGrant {
        group: group.into(),
        role: role.into(),
    };
    SsoRow {
        idp_uid: format!("uid-{host}"),
        idp_name: host.into(),
        protocol: Protocol::Oidc,
        issuer: issuer(host),
        jwks_uri: format!("{}/certs", issuer(host)),
        client_id: "phoenix-dataplane".into(),
        audiences: vec!["phoenix-dataplane".into()],
        claim_subject: "sub".into(),
        claim_email: "email".into(),
        claim_groups: "groups".into(),
        claim_name: "name".into(),
        role_mapping: ["physician", "nurse", "readonly", "admin"]
            .iter()
            .map(|r| grant(&format!("{r}s"), r))
            .collect(),
        allowed_email_domains: vec![],
        scim_enabled: false,
        generation: 1,
        authorization_endpoint: None,
        token_endpoint: None,
        end_session_endpoint: None,
    }
}

/// A token of `host`'s identity provider for a member of `group` (`physicians`, ...).
fn token(host: &str, group: &str) -> String {
    let now = jiff::Timestamp::now().as_second();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("k1".into());
    let claims = json!({"iss": issuer(host), "aud": "phoenix-dataplane", "sub": format!("{group}-1"),
        "exp": now + 300, "email": format!("{group}@{host}"), "groups": [group]});
    jsonwebtoken::encode(&header, &claims, &key()).expect("signed")
}

struct Setup {
    _db: TestDb,
    catalog: Catalog,
    database: phoenix_dataplane::db::Database,
    app: axum::Router,
}

async fn setup() -> Setup {
    let db = TestDb::create().await;
    let a = db.insert_tenant("mercy", A).await;
    let b = db.insert_tenant("stjude", B).await;
    let catalog = Catalog::new();
    catalog.replace_with_sso([record(a, A), record(b, B)], [(a, sso(A)), (b, sso(B))]);
    let database = db.database(2);
    let app = fresh_app(&catalog, &database);
    Setup {
        _db: db,
        catalog,
        database,
        app,
    }
}

/// A new application over the same catalog and database: a restarted server.
fn fresh_app(catalog: &Catalog, database: &phoenix_dataplane::db::Database) -> axum::Router {
    let jwks = JwksCache::new(Arc::new(FixedJwks), Duration::from_secs(30));
    let state = AppState::new(
        catalog.clone(),
        database.clone(),
        Metrics::new(Some("us-east-1")),
    )
    .with_jwks(jwks);
    app(state)
}

/// One request; `who` is `(token host, group)`.
struct Call<'a> {
    method: Method,
    path: &'a str,
    host: &'a str,
    who: Option<(&'a str, &'a str)>,
    body: Option<Value>,
    headers: Vec<(&'a str, &'a str)>,
}

impl<'a> Call<'a> {
    fn new(method: Method, path: &'a str, host: &'a str, who: Option<(&'a str, &'a str)>) -> Self {
        Self {
            method,
            path,
            host,
            who,
            body: None,
            headers: Vec::new(),
        }
    }

    fn body(mut self, body: Value) -> Self {
        self.body = Some(body);
        self
    }

    fn header(mut self, name: &'a str, value: &'a str) -> Self {
        self.headers.push((name, value));
        self
    }

    async fn send(self, app: &axum::Router) -> (StatusCode, HeaderMap, Value) {
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
fn assert_valid_fhir(resource: &Value) {
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

const PHYSICIAN: Option<(&str, &str)> = Some((A, "physicians"));

fn patient(family: &str, birth_date: &str, mrn: &str) -> Value {
    json!({
        "resourceType": "Patient",
        "identifier": [{"system": "urn:oid:1.2.36.146.595.217.0.1", "value": mrn}],
        "name": [{"family": family, "given": ["Test"]}],
        "gender": "unknown",
        "birthDate": birth_date,
    })
}

async fn create(app: &axum::Router, body: Value) -> String {
    let (status, _, created) = Call::new(Method::POST, "/fhir/Patient", A, PHYSICIAN)
        .body(body)
        .send(app)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    created["id"].as_str().expect("an id").to_owned()
}

fn etag(headers: &HeaderMap) -> &str {
    headers
        .get(header::ETAG)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

#[tokio::test]
async fn a_patient_is_created_read_updated_with_if_match_and_deleted_keeping_its_versions() {
    let s = setup().await;
    let (status, headers, created) = Call::new(Method::POST, "/fhir/Patient", A, PHYSICIAN)
        .body(patient("Chalmers", "1974-12-25", "12345"))
        .send(&s.app)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    let location = headers[header::LOCATION].to_str().expect("location");
    assert_eq!(
        location,
        format!("https://{A}/fhir/Patient/{id}/_history/1")
    );
    assert_eq!(etag(&headers), "W/\"1\"");
    assert_eq!(created["meta"]["versionId"], "1");
    assert!(created["meta"]["lastUpdated"].is_string());
    assert_eq!(headers[header::CONTENT_TYPE], "application/fhir+json");

    let path = format!("/fhir/Patient/{id}");
    let (status, headers, read) = Call::new(Method::GET, &path, A, PHYSICIAN)
        .send(&s.app)
        .await;
    assert_eq!((status, etag(&headers)), (StatusCode::OK, "W/\"1\""));
    assert_eq!(read, created);

    let mut changed = read.clone();
    changed["name"][0]["family"] = json!("Chalmers-Smith");
    let (status, headers, updated) = Call::new(Method::PUT, &path, A, PHYSICIAN)
        .body(changed.clone())
        .header("if-match", "W/\"1\"")
        .send(&s.app)
        .await;
    assert_eq!(
        (status, etag(&headers)),
        (StatusCode::OK, "W/\"2\""),
        "{updated}"
    );
    assert_eq!(updated["meta"]["versionId"], "2");

    // A stale version: 412, nothing written.
    let (status, _, outcome) = Call::new(Method::PUT, &path, A, PHYSICIAN)
        .body(changed.clone())
        .header("if-match", "W/\"1\"")
        .send(&s.app)
        .await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(outcome["issue"][0]["code"], "conflict");

    let mut wrong_id = changed.clone();
    wrong_id["id"] = json!("someone-else");
    let (status, _, outcome) = Call::new(Method::PUT, &path, A, PHYSICIAN)
        .body(wrong_id)
        .send(&s.app)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(outcome["issue"][0]["expression"][0], "Patient.id");

    for (version, family) in [("1", "Chalmers"), ("2", "Chalmers-Smith")] {
        let history = format!("{path}/_history/{version}");
        let (status, _, old) = Call::new(Method::GET, &history, A, PHYSICIAN)
            .send(&s.app)
            .await;
        assert_eq!(status, StatusCode::OK, "{old}");
        assert_eq!(old["name"][0]["family"], family);
        assert_eq!(old["meta"]["versionId"], version);
    }

    let (status, _, _) = Call::new(Method::DELETE, &path, A, PHYSICIAN)
        .send(&s.app)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _, outcome) = Call::new(Method::GET, &path, A, PHYSICIAN)
        .send(&s.app)
        .await;
    assert_eq!(status, StatusCode::GONE);
    assert_eq!(outcome["issue"][0]["code"], "deleted");
    let (status, _, _) = Call::new(Method::GET, &format!("{path}/_history/1"), A, PHYSICIAN)
        .send(&s.app)
        .await;
    assert_eq!(status, StatusCode::OK, "kept versions stay readable");
    let (status, _, _) = Call::new(Method::GET, &format!("{path}/_history/3"), A, PHYSICIAN)
        .send(&s.app)
        .await;
    assert_eq!(status, StatusCode::GONE, "the deletion is version 3");
    let (status, _, _) = Call::new(Method::DELETE, &path, A, PHYSICIAN)
        .send(&s.app)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "deleting again succeeds");
    let (status, _, _) = Call::new(Method::PUT, &path, A, PHYSICIAN)
        .body(changed)
        .send(&s.app)
        .await;
    assert_eq!(status, StatusCode::GONE);
}

#[tokio::test]
async fn invalid_input_is_a_4xx_operation_outcome_naming_the_element() {
    let s = setup().await;
    let (status, _, outcome) = Call::new(Method::POST, "/fhir/Patient", A, PHYSICIAN)
        .body(patient("Chalmers", "1974-02-30", "1"))
        .send(&s.app)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(outcome["issue"][0]["expression"][0], "Patient.birthDate");
    let (status, _, outcome) = Call::new(Method::POST, "/fhir/Patient", A, PHYSICIAN)
        .body(json!({"resourceType": "Observation"}))
        .send(&s.app)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(outcome["issue"][0]["expression"][0], "Patient.resourceType");

    let request = |content_type: &str, body: &'static str| {
        Request::post("/fhir/Patient")
            .header(header::HOST, A)
            .header(
                header::AUTHORIZATION,
                format!("Bearer {}", token(A, "nurses")),
            )
            .header(header::CONTENT_TYPE, content_type)
            .body(Body::from(body))
            .expect("request")
    };
    for (content_type, body, expected) in [
        (
            "application/fhir+json",
            "{not json",
            StatusCode::BAD_REQUEST,
        ),
        ("application/json", "[1,2]", StatusCode::BAD_REQUEST),
        ("text/plain", "{}", StatusCode::UNSUPPORTED_MEDIA_TYPE),
    ] {
        let response = s
            .app
            .clone()
            .oneshot(request(content_type, body))
            .await
            .expect("response");
        assert_eq!(response.status(), expected, "{content_type} {body}");
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let outcome: Value = serde_json::from_slice(&bytes).expect("an OperationOutcome");
        assert_eq!(outcome["resourceType"], "OperationOutcome");
        assert_valid_fhir(&outcome);
    }
    for path in [
        "/fhir/Patient/not-a-uuid",
        "/fhir/Patient/00000000-0000-4000-8000-000000000000",
        "/fhir/Patient/00000000-0000-4000-8000-000000000000/_history/x",
        "/fhir/Patient/%00",
        "/fhir/Patient/%FF%FE",
        "/fhir/Patient/%FF/_history/1",
    ] {
        let (status, _, outcome) = Call::new(Method::GET, path, A, PHYSICIAN)
            .send(&s.app)
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {outcome}");
    }
}

#[tokio::test]
async fn search_pages_through_every_match_once_even_across_a_restart() {
    let s = setup().await;
    let mut expected = Vec::new();
    for i in 0..7 {
        expected.push(
            create(
                &s.app,
                patient("Pager", &format!("19{}0-06-15", 3 + i), &format!("mrn-{i}")),
            )
            .await,
        );
    }
    create(&s.app, patient("Elsewhere", "2001-01-01", "other")).await;
    expected.sort();

    let mut seen = Vec::new();
    let mut next = Some("/fhir/Patient?family=pAGE&_count=3".to_owned());
    let mut pages = 0;
    while let Some(url) = next.take() {
        // Every page after the first is served by a new application: no server state.
        let app = if pages == 0 {
            s.app.clone()
        } else {
            fresh_app(&s.catalog, &s.database)
        };
        let path = url.trim_start_matches(&format!("https://{A}"));
        let (status, _, bundle) = Call::new(Method::GET, path, A, Some((A, "readonlys")))
            .send(&app)
            .await;
        assert_eq!(status, StatusCode::OK, "{bundle}");
        assert_eq!(bundle["type"], "searchset");
        if pages == 0 {
            assert!(
                bundle.get("total").is_none(),
                "more than one page: no cheap total"
            );
        }
        for entry in bundle["entry"].as_array().into_iter().flatten() {
            seen.push(entry["resource"]["id"].as_str().expect("id").to_owned());
        }
        next = bundle["link"]
            .as_array()
            .expect("links")
            .iter()
            .find(|l| l["relation"] == "next")
            .and_then(|l| l["url"].as_str())
            .map(str::to_owned);
        pages += 1;
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, expected, "every match once, in id order");

    assert_eq!(total(&s.app, "family=pager&_summary=count").await, 7);
    assert_eq!(
        total(&s.app, "birthdate=ge1950&birthdate=lt1970&family=Pager").await,
        2
    );
    assert_eq!(total(&s.app, "birthdate=1990-06").await, 1);
    assert_eq!(total(&s.app, "birthdate=gt1990-06-15").await, 1);
    assert_eq!(total(&s.app, "birthdate=le1930").await, 1);
    assert_eq!(total(&s.app, "birthdate=lt1930-06-15").await, 0);
    assert_eq!(
        total(&s.app, "identifier=urn:oid:1.2.36.146.595.217.0.1|mrn-3").await,
        1
    );
    assert_eq!(total(&s.app, "identifier=mrn-3,mrn-4").await, 2);
    assert_eq!(total(&s.app, "identifier=|mrn-3").await, 0);
    assert_eq!(total(&s.app, "name=test&_summary=count").await, 8);
    assert_eq!(total(&s.app, "name=else").await, 1);
    assert_eq!(
        total(&s.app, "family=%25").await,
        0,
        "LIKE wildcards are literal"
    );

    // Unknown parameters: ignored (and left out of the self link) unless strict.
    let (status, _, bundle) = Call::new(
        Method::GET,
        "/fhir/Patient?family=else&colour=red",
        A,
        PHYSICIAN,
    )
    .send(&s.app)
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        bundle["link"][0]["url"],
        format!("https://{A}/fhir/Patient?family=else")
    );
    let (status, _, outcome) = Call::new(
        Method::GET,
        "/fhir/Patient?family=else&colour=red",
        A,
        PHYSICIAN,
    )
    .header("prefer", "handling=strict")
    .send(&s.app)
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{outcome}");
    for bad in [
        "/fhir/Patient?birthdate=yesterday",
        "/fhir/Patient?_count=many",
        "/fhir/Patient?family=pager&_count=3&_cursor=bm9wZQ",
    ] {
        let (status, _, outcome) = Call::new(Method::GET, bad, A, PHYSICIAN).send(&s.app).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {outcome}");
    }
}

/// The `total` of the search `query`, which must be cheap to count (one page or a count).
async fn total(app: &axum::Router, query: &str) -> u64 {
    let path = format!("/fhir/Patient?{query}");
    let (status, _, bundle) = Call::new(Method::GET, &path, A, PHYSICIAN).send(app).await;
    assert_eq!(status, StatusCode::OK, "{query}: {bundle}");
    bundle["total"].as_u64().unwrap_or(u64::MAX)
}

#[tokio::test]
async fn another_tenants_patient_is_a_404_like_a_missing_one_and_a_foreign_token_a_401() {
    let s = setup().await;
    let id = create(&s.app, patient("Isolated", "1980-01-01", "iso")).await;
    let theirs = format!("/fhir/Patient/{id}");
    let missing = "/fhir/Patient/00000000-0000-4000-8000-000000000000";
    let b_reader = Some((B, "physicians"));
    let (status, _, body) = Call::new(Method::GET, &theirs, B, b_reader)
        .send(&s.app)
        .await;
    let (missing_status, _, missing_body) = Call::new(Method::GET, missing, B, b_reader)
        .send(&s.app)
        .await;
    assert_eq!(
        (status, missing_status),
        (StatusCode::NOT_FOUND, StatusCode::NOT_FOUND)
    );
    assert_eq!(body["issue"][0]["code"], missing_body["issue"][0]["code"]);
    for method in [Method::DELETE, Method::PUT] {
        let mut call = Call::new(method.clone(), &theirs, B, b_reader);
        if method == Method::PUT {
            let mut body = patient("Hijack", "1980-01-01", "x");
            body["id"] = json!(id);
            call = call.body(body);
        }
        assert_eq!(call.send(&s.app).await.0, StatusCode::NOT_FOUND, "{method}");
    }
    let (_, _, bundle) = Call::new(Method::GET, "/fhir/Patient?_summary=count", B, b_reader)
        .send(&s.app)
        .await;
    assert_eq!(bundle["total"], 0);
    let (status, _, outcome) = Call::new(Method::GET, &theirs, B, PHYSICIAN)
        .send(&s.app)
        .await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "A's token at B's host: {outcome}"
    );
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    let (status, _, _) = Call::new(Method::GET, &theirs, A, PHYSICIAN)
        .send(&s.app)
        .await;
    assert_eq!(status, StatusCode::OK, "still there for A");
}

#[tokio::test]
async fn clinicians_write_readonly_reads_and_nobody_else_gets_in() {
    let s = setup().await;
    for group in ["physicians", "nurses"] {
        let (status, _, body) = Call::new(Method::POST, "/fhir/Patient", A, Some((A, group)))
            .body(patient("Written", "1990-01-01", group))
            .send(&s.app)
            .await;
        assert_eq!(status, StatusCode::CREATED, "{group}: {body}");
    }
    let id = create(&s.app, patient("Readable", "1990-01-01", "r")).await;
    let path = format!("/fhir/Patient/{id}");
    let readonly = Some((A, "readonlys"));
    assert_eq!(
        Call::new(Method::GET, &path, A, readonly)
            .send(&s.app)
            .await
            .0,
        StatusCode::OK
    );
    let (status, _, outcome) = Call::new(Method::POST, "/fhir/Patient", A, readonly)
        .body(patient("Refused", "1990-01-01", "no"))
        .send(&s.app)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(outcome["issue"][0]["code"], "forbidden");
    assert_eq!(
        Call::new(Method::DELETE, &path, A, readonly)
            .send(&s.app)
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    let admin = Some((A, "admins"));
    assert_eq!(
        Call::new(Method::GET, &path, A, admin).send(&s.app).await.0,
        StatusCode::FORBIDDEN
    );
    let (status, _, outcome) = Call::new(Method::GET, &path, A, None).send(&s.app).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(outcome["issue"][0]["code"], "login");
    assert_eq!(
        Call::new(Method::GET, "/fhir/Patient", A, None)
            .send(&s.app)
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    // The CapabilityStatement stays public, and lists Patient.
    let (status, _, statement) = Call::new(Method::GET, "/fhir/metadata", A, None)
        .send(&s.app)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(statement["rest"][0]["resource"][0]["type"], "Patient");
}
