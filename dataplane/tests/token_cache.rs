//! Verified bearer tokens kept for their tenant (ADR 0015), driven through `app()`: what
//! a kept token still has to pass, and what makes it be checked in full again.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use phoenix_catalog::sso::RoleGrant;
use phoenix_dataplane::auth::jwks::JwksCache;
use phoenix_dataplane::auth::verified::VerifiedTokens;
use phoenix_dataplane::catalog::{Catalog, SsoRow};
use phoenix_dataplane::db::Database;
use phoenix_dataplane::metrics::Metrics;
use phoenix_dataplane::{AppState, Config, app};
use serde_json::{Value, json};
use tower::ServiceExt;

#[path = "support/auth.rs"]
mod auth_support;
use auth_support::{FixedJwks, key, oidc_sso, tenant_record};

const ISSUER: &str = "https://idp.example/realms/shared";

fn sso(role: &str) -> SsoRow {
    SsoRow {
        role_mapping: vec![RoleGrant {
            group: "physicians".into(),
            role: role.into(),
        }],
        ..oidc_sso("shared", ISSUER)
    }
}

struct Fixture {
    app: axum::Router,
    catalog: Catalog,
    metrics: Metrics,
}

// Two tenants trusting the same issuer, so one token is valid at both.
fn fixture(tokens: VerifiedTokens) -> Fixture {
    let catalog = Catalog::new();
    catalog.replace_with_sso(
        [
            tenant_record(1, "mercy", "mercy.example.org"),
            tenant_record(2, "lukes", "lukes.example.org"),
        ],
        [(1, sso("physician")), (2, sso("physician"))],
    );
    let database =
        Database::new(&Config::new("postgres://nobody@127.0.0.1:9/none")).expect("lazy pools");
    let jwks = JwksCache::new(Arc::new(FixedJwks), Duration::from_secs(30));
    let metrics = Metrics::new(None);
    let state = AppState::new(catalog.clone(), database, metrics.clone())
        .with_jwks(jwks)
        .with_verified_tokens(tokens);
    Fixture {
        app: app(state),
        catalog,
        metrics,
    }
}

fn signed(key: &EncodingKey) -> String {
    let now = jiff::Timestamp::now().as_second();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("k1".into());
    let claims = json!({
        "iss": ISSUER, "aud": "phoenix-dataplane", "sub": "alice-id", "exp": now + 300,
        "email": "alice@mercy.example", "groups": ["physicians"],
    });
    jsonwebtoken::encode(&header, &claims, key).expect("signed")
}

impl Fixture {
    async fn me(&self, host: &str, token: &str) -> (StatusCode, Value) {
        let request = Request::get("/me")
            .header(header::HOST, host)
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::empty())
            .expect("request");
        let response = self.app.clone().oneshot(request).await.expect("response");
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        (status, serde_json::from_slice(&body).expect("JSON"))
    }

    // (cached, verified) from `dataplane_bearer_tokens_total`.
    fn counts(&self) -> (u64, u64) {
        let text = self.metrics.encode().expect("metrics");
        let count = |result: &str| {
            let prefix = format!("dataplane_bearer_tokens_total{{result=\"{result}\"}} ");
            text.lines()
                .find_map(|line| line.strip_prefix(&prefix))
                .map_or(0, |n| n.parse().expect("a count"))
        };
        (count("cached"), count("verified"))
    }
}

#[tokio::test]
async fn a_token_is_verified_once_per_tenant_then_taken_from_the_cache() {
    let fixture = fixture(VerifiedTokens::default());
    let token = signed(&key());
    let (status, first) = fixture.me("mercy.example.org", &token).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(fixture.counts(), (0, 1));
    let (status, again) = fixture.me("mercy.example.org", &token).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again, first, "the cached identity is the verified one");
    assert_eq!(fixture.counts(), (1, 1));
    // The same token at another tenant (same issuer) is verified for that tenant.
    let (status, lukes) = fixture.me("lukes.example.org", &token).await;
    assert_eq!(status, StatusCode::OK, "{lukes}");
    assert_eq!(lukes["tenant"], "lukes");
    assert_eq!(fixture.counts(), (1, 2));
}

#[tokio::test]
async fn changed_sso_settings_check_the_token_again_and_apply_at_once() {
    let fixture = fixture(VerifiedTokens::default());
    let token = signed(&key());
    let (_, before) = fixture.me("mercy.example.org", &token).await;
    assert_eq!(before["roles"], json!(["physician"]), "{before}");
    // The IdPConnection now grants the group another role.
    fixture.catalog.replace_with_sso(
        [
            tenant_record(1, "mercy", "mercy.example.org"),
            tenant_record(2, "lukes", "lukes.example.org"),
        ],
        [(1, sso("nurse")), (2, sso("physician"))],
    );
    let (status, after) = fixture.me("mercy.example.org", &token).await;
    assert_eq!(status, StatusCode::OK, "{after}");
    assert_eq!(after["roles"], json!(["nurse"]), "{after}");
    assert_eq!(fixture.counts(), (0, 2));
    // A catalog reload that changes nothing keeps the entry (equal, not the same, row).
    fixture.catalog.replace_with_sso(
        [
            tenant_record(1, "mercy", "mercy.example.org"),
            tenant_record(2, "lukes", "lukes.example.org"),
        ],
        [(1, sso("nurse")), (2, sso("physician"))],
    );
    let (status, _) = fixture.me("mercy.example.org", &token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(fixture.counts(), (1, 2));
}

#[tokio::test]
async fn a_refused_token_is_checked_in_full_every_time() {
    let fixture = fixture(VerifiedTokens::default());
    let other = EncodingKey::from_rsa_pem(include_bytes!("../src/auth/test_rsa_other.pem"))
        .expect("test key");
    let forged = signed(&other);
    for _ in 0..3 {
        let (status, body) = fixture.me("mercy.example.org", &forged).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert_eq!(body["message"], "the token's signature is invalid");
    }
    assert_eq!(fixture.counts(), (0, 3));
}

#[tokio::test]
async fn a_tenant_that_stops_trusting_the_issuer_refuses_a_kept_token() {
    let fixture = fixture(VerifiedTokens::default());
    let token = signed(&key());
    let (status, _) = fixture.me("mercy.example.org", &token).await;
    assert_eq!(status, StatusCode::OK);
    // The tenant's IdPConnection is gone: no SSO row, no bearer tokens.
    fixture.catalog.replace_with_sso(
        [
            tenant_record(1, "mercy", "mercy.example.org"),
            tenant_record(2, "lukes", "lukes.example.org"),
        ],
        [(2, sso("physician"))],
    );
    let (status, body) = fixture.me("mercy.example.org", &token).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["message"], "this tenant accepts no bearer tokens");
    // And one now trusting another issuer refuses it as not its IdP's.
    fixture.catalog.replace_with_sso(
        [
            tenant_record(1, "mercy", "mercy.example.org"),
            tenant_record(2, "lukes", "lukes.example.org"),
        ],
        [
            (1, oidc_sso("other", "https://idp.example/realms/other")),
            (2, sso("physician")),
        ],
    );
    let (status, body) = fixture.me("mercy.example.org", &token).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(
        body["message"],
        "the token was not issued by this tenant's identity provider"
    );
}

#[tokio::test]
async fn a_disabled_cache_verifies_every_request() {
    let fixture = fixture(VerifiedTokens::new(Duration::ZERO, 1_000));
    let token = signed(&key());
    for _ in 0..3 {
        let (status, body) = fixture.me("mercy.example.org", &token).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    assert_eq!(fixture.counts(), (0, 3));
}

#[tokio::test]
async fn a_kept_token_is_checked_again_after_the_time_to_live() {
    let fixture = fixture(VerifiedTokens::new(Duration::from_secs(1), 1_000));
    let token = signed(&key());
    fixture.me("mercy.example.org", &token).await;
    fixture.me("mercy.example.org", &token).await;
    assert_eq!(fixture.counts(), (1, 1));
    // Entries end on whole seconds: two of them are surely past a 1 s time to live.
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let (status, _) = fixture.me("mercy.example.org", &token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(fixture.counts(), (1, 2));
}
