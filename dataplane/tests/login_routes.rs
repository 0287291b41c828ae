//! Browser login through `app()` against a real PostgreSQL: a session cookie authenticating
//! like a bearer token, 401 vs 403 by permission, the admin routes, logout from the same
//! origin only, and `/login` with PKCE and a single-use state (the whole callback with a
//! token endpoint is in `login_callback.rs`).
//!
//! Needs the stack: `e2e/stack up && source .stack/env` (sets PG_ADMIN_DSN_US_EAST_1).

mod support;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use phoenix_catalog::sso::RoleGrant;
use phoenix_dataplane::auth::Identity;
use phoenix_dataplane::catalog::{Catalog, SsoRow, TenantRecord};
use phoenix_dataplane::db::Database;
use phoenix_dataplane::login::flow::{pkce_challenge, sha256_hex};
use phoenix_dataplane::login::session;
use phoenix_dataplane::login::{LoginSettings, SESSION_COOKIE};
use phoenix_dataplane::metrics::Metrics;
use phoenix_dataplane::{AppState, app};
use serde_json::Value;
use support::TestDb;
use support::auth::{oidc_sso, tenant_record};
use tower::ServiceExt;

const A_HOST: &str = "mercy.example.org";
const B_HOST: &str = "stjude.example.org";
const HOUR: Duration = Duration::from_secs(3600);

fn identity(subject: &str, roles: &[&str]) -> Identity {
    Identity {
        subject: subject.to_owned(),
        email: Some(format!("{subject}@mercy.example")),
        name: Some(format!("<b>{subject}</b>")),
        roles: roles.iter().map(|r| (*r).to_owned()).collect(),
    }
}

fn record(id: i64, name: &str, host: &str) -> TenantRecord {
    let mut record = tenant_record(id, name, host);
    record.row.display_name = format!("{name} Health System");
    record
}

fn sso(token_endpoint: &str) -> SsoRow {
    let issuer = "https://idp.example/realms/mercy";
    SsoRow {
        audiences: vec![],
        role_mapping: vec![RoleGrant {
            group: "physicians".into(),
            role: "physician".into(),
        }],
        allowed_email_domains: vec!["mercy.example".into()],
        authorization_endpoint: Some(format!("{issuer}/auth")),
        token_endpoint: Some(token_endpoint.into()),
        end_session_endpoint: Some(format!("{issuer}/logout")),
        ..oidc_sso("mercy", issuer)
    }
}

struct Setup {
    db: TestDb,
    state: AppState,
    a: i64,
}

async fn setup(
    token_endpoint: &str,
    jwks: Option<phoenix_dataplane::auth::jwks::JwksCache>,
) -> Setup {
    let db = TestDb::create().await;
    let a = db.insert_tenant("mercy", A_HOST).await;
    let b = db.insert_tenant("stjude", B_HOST).await;
    let catalog = Catalog::new();
    catalog.replace_with_sso(
        [record(a, "mercy", A_HOST), record(b, "stjude", B_HOST)],
        [(a, sso(token_endpoint)), (b, sso(token_endpoint))],
    );
    let mut state = AppState::new(catalog, db.database(2), Metrics::new(Some("us-east-1")))
        .with_login(LoginSettings::default());
    if let Some(jwks) = jwks {
        state = state.with_jwks(jwks);
    }
    Setup { db, state, a }
}

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
    fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap_or_default().to_owned())
            .unwrap_or_default()
    }
}

async fn call(state: &AppState, request: Request<Body>) -> Answer {
    let response = app(state.clone()).oneshot(request).await.expect("response");
    let status = response.status();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

fn with_cookie(
    method: &str,
    path: &str,
    host: &str,
    cookie: Option<&str>,
) -> axum::http::request::Builder {
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, host);
    if let Some(id) = cookie {
        request = request.header(header::COOKIE, format!("other=1; {SESSION_COOKIE}={id}"));
    }
    request
}

async fn get(state: &AppState, path: &str, host: &str, cookie: Option<&str>) -> Answer {
    call(
        state,
        with_cookie("GET", path, host, cookie)
            .body(Body::empty())
            .expect("request"),
    )
    .await
}

#[tokio::test]
async fn a_session_cookie_authenticates_and_permissions_decide_401_or_403() {
    let s = setup("https://idp.example/token", None).await;
    let database: &Database = &s.state.database;
    session::create(
        database,
        s.a,
        sha256_hex("nurse-id"),
        identity("bob", &["nurse"]),
        HOUR,
    )
    .await
    .expect("session");
    session::create(
        database,
        s.a,
        sha256_hex("admin-id"),
        identity("ada", &["admin"]),
        HOUR,
    )
    .await
    .expect("session");

    let anonymous = get(&s.state, "/me", A_HOST, None).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        anonymous.header("www-authenticate"),
        format!("Bearer realm=\"{A_HOST}\"")
    );

    let browser = call(
        &s.state,
        with_cookie("GET", "/whoami", A_HOST, None)
            .header(header::ACCEPT, "text/html,application/xhtml+xml")
            .body(Body::empty())
            .expect("request"),
    )
    .await;
    assert_eq!(browser.status, StatusCode::SEE_OTHER);
    assert_eq!(browser.header("location"), "/login?return_to=%2Fwhoami");

    let me = get(&s.state, "/me", A_HOST, Some("nurse-id")).await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.body);
    assert_eq!(me.json()["roles"], serde_json::json!(["nurse"]));

    let page = get(&s.state, "/whoami", A_HOST, Some("nurse-id")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("bob@mercy.example"), "{}", page.body);
    assert!(
        page.body.contains("&lt;b&gt;bob&lt;/b&gt;"),
        "names are escaped: {}",
        page.body
    );
    assert!(!page.body.contains("<b>bob"), "{}", page.body);

    let forbidden = get(&s.state, "/admin/sessions", A_HOST, Some("nurse-id")).await;
    assert_eq!(
        forbidden.status,
        StatusCode::FORBIDDEN,
        "{}",
        forbidden.body
    );
    assert_eq!(forbidden.json()["missing_permission"], "administer");
    assert!(!forbidden.body.contains("nurse-id"));

    let listed = get(&s.state, "/admin/sessions", A_HOST, Some("admin-id")).await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.body);
    let subjects: Vec<&str> = listed.json()["sessions"]
        .as_array()
        .expect("sessions")
        .iter()
        .filter_map(|s| s["subject"].as_str().map(|_| ""))
        .collect();
    assert_eq!(subjects.len(), 2);
    assert!(!listed.body.contains(&sha256_hex("nurse-id")) && !listed.body.contains("nurse-id"));

    // Another tenant's host does not know the cookie.
    let elsewhere = get(&s.state, "/me", B_HOST, Some("nurse-id")).await;
    assert_eq!(elsewhere.status, StatusCode::UNAUTHORIZED);
    assert_eq!(elsewhere.json()["error"], "invalid_session");

    let revoked = call(
        &s.state,
        with_cookie("DELETE", "/admin/sessions/bob", A_HOST, Some("admin-id"))
            .body(Body::empty())
            .expect("request"),
    )
    .await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.body);
    assert_eq!(revoked.json()["revoked"], 1);
    let after = get(&s.state, "/me", A_HOST, Some("nurse-id")).await;
    assert_eq!(after.status, StatusCode::UNAUTHORIZED);
    assert!(
        after.header("set-cookie").contains("Max-Age=0"),
        "the dead cookie is cleared"
    );
}

#[tokio::test]
async fn logout_revokes_the_session_only_from_the_same_origin_and_goes_to_the_idp() {
    let s = setup("https://idp.example/token", None).await;
    session::create(
        &s.state.database,
        s.a,
        sha256_hex("alice-id"),
        identity("alice", &["physician"]),
        HOUR,
    )
    .await
    .expect("session");
    let cross = call(
        &s.state,
        with_cookie("POST", "/logout", A_HOST, Some("alice-id"))
            .header(header::ORIGIN, "https://evil.example")
            .body(Body::empty())
            .expect("request"),
    )
    .await;
    assert_eq!(cross.status, StatusCode::FORBIDDEN);
    assert_eq!(
        get(&s.state, "/me", A_HOST, Some("alice-id")).await.status,
        StatusCode::OK
    );

    let out = call(
        &s.state,
        with_cookie("POST", "/logout", A_HOST, Some("alice-id"))
            .header(header::ORIGIN, format!("https://{A_HOST}"))
            .body(Body::empty())
            .expect("request"),
    )
    .await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    let location = out.header("location");
    assert!(
        location.starts_with("https://idp.example/realms/mercy/logout?client_id=phoenix-dataplane&post_logout_redirect_uri=https%3A%2F%2Fmercy.example.org%2Flogged-out"),
        "{location}"
    );
    assert!(
        out.header("set-cookie")
            .starts_with(&format!("{SESSION_COOKIE}=;"))
    );
    assert_eq!(
        get(&s.state, "/me", A_HOST, Some("alice-id")).await.status,
        StatusCode::UNAUTHORIZED
    );
    let revoked: i64 =
        s.db.admin()
            .query_one(
                "SELECT count(*) FROM clinical.sessions WHERE revoked_at IS NOT NULL",
                &[],
            )
            .await
            .expect("count")
            .get(0);
    assert_eq!(revoked, 1);
}

/// The query parameters of a URL.
fn params(location: &str) -> std::collections::HashMap<String, String> {
    reqwest::Url::parse(location)
        .expect("absolute URL")
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

#[tokio::test]
async fn login_redirects_with_pkce_and_a_state_that_the_callback_accepts_once() {
    let s = setup("https://idp.example/token", None).await;
    let login = get(
        &s.state,
        "/login?return_to=https://evil.example/",
        A_HOST,
        None,
    )
    .await;
    assert_eq!(login.status, StatusCode::SEE_OTHER, "{}", login.body);
    let location = login.header("location");
    assert!(
        location.starts_with("https://idp.example/realms/mercy/auth?"),
        "{location}"
    );
    let p = params(&location);
    assert_eq!(p["response_type"], "code");
    assert_eq!(p["client_id"], "phoenix-dataplane");
    assert_eq!(p["redirect_uri"], format!("https://{A_HOST}/auth/callback"));
    assert_eq!(p["scope"], "openid email profile");
    assert_eq!(p["code_challenge_method"], "S256");
    assert_eq!(p["state"].len(), 43);
    let (return_to, verifier): (String, String) = {
        let row =
            s.db.admin()
                .query_one(
                    "SELECT return_to, code_verifier, state_sha256 FROM clinical.login_attempts",
                    &[],
                )
                .await
                .expect("one attempt");
        assert_eq!(
            row.get::<_, String>(2),
            sha256_hex(&p["state"]),
            "only the hash is stored"
        );
        (row.get(0), row.get(1))
    };
    assert_eq!(return_to, "/whoami", "no open redirect");
    assert_eq!(pkce_challenge(&verifier), p["code_challenge"]);

    let tampered = get(
        &s.state,
        "/auth/callback?state=tampered&code=c",
        A_HOST,
        None,
    )
    .await;
    assert_eq!(tampered.status, StatusCode::BAD_REQUEST);
    assert!(
        tampered.body.contains("start the login again"),
        "{}",
        tampered.body
    );

    // The provider refused: a clear page, and the state is used up.
    let denied = get(
        &s.state,
        &format!("/auth/callback?state={}&error=access_denied", p["state"]),
        A_HOST,
        None,
    )
    .await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    assert!(denied.body.contains("access_denied"), "{}", denied.body);
    let replay = get(
        &s.state,
        &format!("/auth/callback?state={}&code=c", p["state"]),
        A_HOST,
        None,
    )
    .await;
    assert_eq!(replay.status, StatusCode::BAD_REQUEST, "a state works once");
    for answer in [&login, &tampered, &denied, &replay] {
        assert!(!answer.body.contains(&p["state"]));
    }
}
