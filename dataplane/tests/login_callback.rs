//! The whole callback of a browser login through `app()` against a real PostgreSQL, with a
//! local token endpoint standing in for the IdP's back channel: it accepts the code only
//! with the verifier whose S256 challenge the login sent and with the client secret from
//! `OIDC_CLIENT_SECRETS_DIR`, and answers an ID token signed with the test key. A good
//! login ends in a session; a wrong nonce or a foreign email domain ends in none.
//!
//! Needs the stack: `e2e/stack up && source .stack/env` (sets PG_ADMIN_DSN_US_EAST_1).

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Form, State};
use axum::http::{Request, StatusCode, header};
use axum::routing::post;
use axum::{Json, Router};
use http_body_util::BodyExt;
use jsonwebtoken::{Algorithm, Header};
use phoenix_catalog::sso::RoleGrant;
use phoenix_dataplane::auth::jwks::JwksCache;
use phoenix_dataplane::catalog::{Catalog, SsoRow};
use phoenix_dataplane::login::LoginSettings;
use phoenix_dataplane::login::flow::pkce_challenge;
use phoenix_dataplane::metrics::Metrics;
use phoenix_dataplane::{AppState, app};
use serde_json::{Value, json};
use support::TestDb;
use support::auth::{FixedJwks, key, oidc_sso, tenant_record};
use tower::ServiceExt;

const HOST: &str = "mercy.example.org";
const ISSUER: &str = "https://idp.example/realms/mercy";
const SECRET: &str = "s3cret-of-the-client";

/// What the fake IdP knows of the login in flight, and what it puts in the ID token.
#[derive(Default)]
struct Idp {
    challenge: String,
    nonce: String,
    email: String,
}

type Shared = Arc<Mutex<Idp>>;

async fn token(
    State(idp): State<Shared>,
    Form(form): Form<HashMap<String, String>>,
) -> (StatusCode, Json<Value>) {
    let idp = idp.lock().expect("lock");
    let verifier = form.get("code_verifier").cloned().unwrap_or_default();
    let good = form.get("grant_type").map(String::as_str) == Some("authorization_code")
        && form.get("code").map(String::as_str) == Some("good-code")
        && form.get("client_secret").map(String::as_str) == Some(SECRET)
        && form.get("redirect_uri").map(String::as_str)
            == Some(&format!("https://{HOST}/auth/callback"))
        && pkce_challenge(&verifier) == idp.challenge;
    if !good {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_grant"})),
        );
    }
    let now = jiff::Timestamp::now().as_second();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("k1".into());
    let claims = json!({
        "iss": ISSUER, "aud": "phoenix-dataplane", "azp": "phoenix-dataplane", "typ": "ID",
        "sub": "alice-id", "email": idp.email, "name": "Alice", "groups": ["physicians"],
        "nonce": idp.nonce, "exp": now + 300, "iat": now,
    });
    let id_token = jsonwebtoken::encode(&header, &claims, &key()).expect("signed");
    (
        StatusCode::OK,
        Json(json!({"id_token": id_token, "access_token": "unused", "token_type": "Bearer"})),
    )
}

/// Serves the fake token endpoint; its URL.
async fn serve_idp(idp: Shared) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let router = Router::new().route("/token", post(token)).with_state(idp);
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    format!("http://{addr}/token")
}

struct Answer {
    status: StatusCode,
    location: String,
    cookie: String,
    body: String,
}

async fn get(state: &AppState, path: &str, cookie: Option<&str>) -> Answer {
    let mut request = Request::get(path).header(header::HOST, HOST);
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    let response = app(state.clone())
        .oneshot(request.body(Body::empty()).expect("request"))
        .await
        .expect("response");
    let header = |name| {
        response
            .headers()
            .get(name)
            .map(|v: &axum::http::HeaderValue| v.to_str().unwrap_or_default().to_owned())
            .unwrap_or_default()
    };
    let (status, location, cookie) = (
        response.status(),
        header(header::LOCATION),
        header(header::SET_COOKIE),
    );
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    Answer {
        status,
        location,
        cookie,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

async fn setup(token_endpoint: &str, scim_enabled: bool) -> (TestDb, AppState) {
    let db = TestDb::create().await;
    let id = db.insert_tenant("mercy", HOST).await;
    let mut tenant = tenant_record(id, "mercy", HOST);
    tenant.row.display_name = "Mercy".into();
    let sso = SsoRow {
        audiences: vec![],
        role_mapping: vec![RoleGrant {
            group: "physicians".into(),
            role: "physician".into(),
        }],
        allowed_email_domains: vec!["mercy.example".into()],
        scim_enabled,
        authorization_endpoint: Some(format!("{ISSUER}/auth")),
        token_endpoint: Some(token_endpoint.into()),
        ..oidc_sso("mercy-idp", ISSUER)
    };
    let catalog = Catalog::new();
    catalog.replace_with_sso([tenant], [(id, sso)]);
    let secrets = std::env::temp_dir().join(format!("phoenix-login-test-{}", db.name));
    std::fs::create_dir_all(&secrets).expect("secrets dir");
    std::fs::write(secrets.join("mercy-idp"), format!("{SECRET}\n")).expect("secret");
    let login = LoginSettings {
        client_secrets_dir: Some(secrets),
        ..LoginSettings::default()
    };
    let state = AppState::new(catalog, db.database(2), Metrics::new(Some("us-east-1")))
        .with_jwks(JwksCache::new(Arc::new(FixedJwks), Duration::from_secs(30)))
        .with_login(login);
    (db, state)
}

/// Starts a login; tells the fake IdP its challenge and nonce (and the email to assert);
/// returns the state.
async fn start(
    state: &AppState,
    idp: &Shared,
    email: &str,
    nonce_override: Option<&str>,
) -> String {
    let login = get(state, "/login?return_to=/me", None).await;
    assert_eq!(login.status, StatusCode::SEE_OTHER, "{}", login.body);
    let params: HashMap<String, String> = reqwest::Url::parse(&login.location)
        .expect("URL")
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let mut idp = idp.lock().expect("lock");
    idp.challenge = params["code_challenge"].clone();
    idp.nonce = nonce_override.map_or_else(|| params["nonce"].clone(), str::to_owned);
    idp.email = email.to_owned();
    params["state"].clone()
}

async fn sessions(db: &TestDb) -> i64 {
    db.admin()
        .query_one("SELECT count(*) FROM clinical.sessions", &[])
        .await
        .expect("count")
        .get(0)
}

#[tokio::test]
async fn a_code_with_the_right_verifier_and_nonce_ends_in_a_session() {
    let idp: Shared = Arc::default();
    let (db, state) = setup(&serve_idp(idp.clone()).await, false).await;

    let s = start(&state, &idp, "alice@mercy.example", None).await;
    let bad_code = get(
        &state,
        &format!("/auth/callback?state={s}&code=stolen-code"),
        None,
    )
    .await;
    assert_eq!(
        bad_code.status,
        StatusCode::BAD_GATEWAY,
        "{}",
        bad_code.body
    );
    assert!(bad_code.body.contains("invalid_grant"), "{}", bad_code.body);
    assert!(bad_code.cookie.is_empty());

    let s = start(&state, &idp, "alice@mercy.example", None).await;
    let done = get(
        &state,
        &format!("/auth/callback?state={s}&code=good-code"),
        None,
    )
    .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert_eq!(done.location, "/me");
    assert!(
        done.cookie.starts_with("__Host-phoenix_session="),
        "{}",
        done.cookie
    );
    for attribute in ["HttpOnly", "Secure", "SameSite=Lax", "Path=/"] {
        assert!(done.cookie.contains(attribute), "{}", done.cookie);
    }
    let cookie = done
        .cookie
        .split(';')
        .next()
        .expect("name=value")
        .to_owned();
    let me = get(&state, "/me", Some(&cookie)).await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.body);
    let me: Value = serde_json::from_str(&me.body).expect("JSON");
    assert_eq!(me["roles"], json!(["physician"]));
    assert_eq!(me["email"], "alice@mercy.example");
    assert_eq!(sessions(&db).await, 1);

    let replay = get(
        &state,
        &format!("/auth/callback?state={s}&code=good-code"),
        None,
    )
    .await;
    assert_eq!(replay.status, StatusCode::BAD_REQUEST, "a state works once");
}

#[tokio::test]
async fn a_wrong_nonce_or_a_foreign_email_domain_ends_in_no_session() {
    let idp: Shared = Arc::default();
    let (db, state) = setup(&serve_idp(idp.clone()).await, false).await;

    let s = start(
        &state,
        &idp,
        "alice@mercy.example",
        Some("another-login's-nonce"),
    )
    .await;
    let replayed = get(
        &state,
        &format!("/auth/callback?state={s}&code=good-code"),
        None,
    )
    .await;
    assert_eq!(
        replayed.status,
        StatusCode::BAD_GATEWAY,
        "{}",
        replayed.body
    );
    assert!(replayed.body.contains("nonce"), "{}", replayed.body);

    let s = start(&state, &idp, "eve@elsewhere.example", None).await;
    let refused = get(
        &state,
        &format!("/auth/callback?state={s}&code=good-code"),
        None,
    )
    .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    assert!(refused.body.contains("email domain"), "{}", refused.body);
    assert!(refused.cookie.is_empty());
    assert_eq!(sessions(&db).await, 0);
}

#[tokio::test]
async fn with_scim_only_a_provisioned_active_user_gets_a_session() {
    let idp: Shared = Arc::default();
    let (db, state) = setup(&serve_idp(idp.clone()).await, true).await;

    let s = start(&state, &idp, "alice@mercy.example", None).await;
    let refused = get(
        &state,
        &format!("/auth/callback?state={s}&code=good-code"),
        None,
    )
    .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    assert!(
        refused.body.contains("not (or no longer) active"),
        "{}",
        refused.body
    );
    assert!(refused.cookie.is_empty());
    assert_eq!(sessions(&db).await, 0);

    let tenant: i64 = db
        .admin()
        .query_one("SELECT id FROM catalog.tenants WHERE name = 'mercy'", &[])
        .await
        .expect("tenant")
        .get(0);
    db.execute(&format!(
        "INSERT INTO clinical.scim_users (tenant_id, user_name, active, resource) \
         VALUES ({tenant}, 'Alice@Mercy.Example', true, '{{}}')"
    ))
    .await;
    let s = start(&state, &idp, "alice@mercy.example", None).await;
    let done = get(
        &state,
        &format!("/auth/callback?state={s}&code=good-code"),
        None,
    )
    .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert!(done.cookie.starts_with("__Host-phoenix_session="));
    assert_eq!(sessions(&db).await, 1);
}
