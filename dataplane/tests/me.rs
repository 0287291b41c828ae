//! `GET /me` driven through `app()` with an in-memory catalog and JWKS, before any socket.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use phoenix_catalog::sso::RoleGrant;
use phoenix_dataplane::auth::jwks::JwksCache;
use phoenix_dataplane::catalog::{Catalog, SsoRow, TenantRecord};
use phoenix_dataplane::db::Database;
use phoenix_dataplane::metrics::Metrics;
use phoenix_dataplane::{AppState, Config, app};
use serde_json::{Value, json};
use tower::ServiceExt;

#[path = "support/auth.rs"]
mod auth_support;
use auth_support::{FixedJwks, key, oidc_sso, tenant_record};

const ISSUER: &str = "https://idp.example/realms/mercy";

fn tenant(id: i64, name: &str) -> TenantRecord {
    tenant_record(id, name, &format!("{name}.example.org"))
}

fn sso() -> SsoRow {
    SsoRow {
        role_mapping: vec![RoleGrant {
            group: "physicians".into(),
            role: "physician".into(),
        }],
        allowed_email_domains: vec!["mercy.example".into()],
        ..oidc_sso("mercy", ISSUER)
    }
}

fn test_app() -> axum::Router {
    let catalog = Catalog::new();
    catalog.replace_with_sso([tenant(1, "mercy"), tenant(2, "plain")], [(1, sso())]);
    let database =
        Database::new(&Config::new("postgres://nobody@127.0.0.1:9/none")).expect("lazy pools");
    let jwks = JwksCache::new(Arc::new(FixedJwks), Duration::from_secs(30));
    app(AppState::new(catalog, database, Metrics::new(Some("us-east-1"))).with_jwks(jwks))
}

fn token() -> String {
    signed(&key())
}

fn signed(key: &EncodingKey) -> String {
    let now = jiff::Timestamp::now().as_second();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("k1".into());
    let claims = json!({
        "iss": ISSUER, "aud": "phoenix-dataplane", "sub": "alice-id", "exp": now + 300,
        "email": "alice@mercy.example", "name": "Alice", "groups": ["physicians", "other"],
    });
    jsonwebtoken::encode(&header, &claims, key).expect("signed")
}

async fn get(path: &str, host: &str, token: Option<&str>) -> (StatusCode, Option<String>, Value) {
    let mut request = Request::get(path).header(header::HOST, host);
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let response = test_app()
        .oneshot(request.body(Body::empty()).expect("request"))
        .await
        .expect("response");
    let status = response.status();
    let challenge = response
        .headers()
        .get(header::WWW_AUTHENTICATE)
        .map(|v| v.to_str().expect("ascii").to_owned());
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (
        status,
        challenge,
        serde_json::from_slice(&body).expect("JSON"),
    )
}

#[tokio::test]
async fn me_answers_the_user_of_a_valid_token() {
    let (status, challenge, body) = get("/me", "mercy.example.org", Some(&token())).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(challenge, None);
    assert_eq!(
        body,
        json!({"tenant": "mercy", "subject": "alice-id", "email": "alice@mercy.example",
               "name": "Alice", "roles": ["physician"]})
    );
}

#[tokio::test]
async fn no_token_is_a_challenge_without_an_error() {
    let (status, challenge, body) = get("/me", "mercy.example.org", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        challenge.as_deref(),
        Some("Bearer realm=\"mercy.example.org\"")
    );
    assert_eq!(body["error"], "unauthenticated", "{body}");
}

#[tokio::test]
async fn an_invalid_token_is_described_but_never_echoed() {
    // Signed by another key under the issuer's kid.
    let other = EncodingKey::from_rsa_pem(include_bytes!("../src/auth/test_rsa_other.pem"))
        .expect("test key");
    let forged = signed(&other);
    let (status, challenge, body) = get("/me", "mercy.example.org", Some(&forged)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        challenge.as_deref(),
        Some(
            "Bearer realm=\"mercy.example.org\", error=\"invalid_token\", \
             error_description=\"the token's signature is invalid\""
        )
    );
    assert_eq!(
        body,
        json!({"error": "invalid_token", "message": "the token's signature is invalid"})
    );
    assert!(!body.to_string().contains(&forged));
}

#[tokio::test]
async fn a_tenant_without_sso_accepts_no_token_and_an_unknown_host_is_404_first() {
    let (status, _, body) = get("/me", "plain.example.org", Some(&token())).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["message"], "this tenant accepts no bearer tokens");
    let (status, _, body) = get("/me", "nowhere.example.org", Some(&token())).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
}
