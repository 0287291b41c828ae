//! The access rule (`auth::access::admit`) on the bearer path against a real PostgreSQL:
//! with SCIM on, a valid token opens `/me` only while its user is an active SCIM user of
//! the tenant, read on every request (no cache); with SCIM off every valid token does. A
//! browser session of a user the IdP deactivates stops at once and is revoked.

mod support;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use jsonwebtoken::{Algorithm, Header};
use phoenix_dataplane::auth::jwks::JwksCache;
use phoenix_dataplane::catalog::{Catalog, SsoRow, TenantRecord};
use phoenix_dataplane::metrics::Metrics;
use phoenix_dataplane::{AppState, app};
use serde_json::{Value, json};
use support::TestDb;
use support::auth::{FixedJwks, key, oidc_sso, tenant_record};
use tower::ServiceExt;

const ISSUER: &str = "https://idp.example/realms/mercy";

fn record(id: i64, name: &str) -> TenantRecord {
    tenant_record(id, name, &format!("{name}.example.org"))
}

fn sso(scim_enabled: bool) -> SsoRow {
    SsoRow {
        scim_enabled,
        ..oidc_sso("mercy", ISSUER)
    }
}

fn token() -> String {
    let now = jiff::Timestamp::now().as_second();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("k1".into());
    let claims = json!({"iss": ISSUER, "aud": "phoenix-dataplane", "sub": "alice-id",
        "exp": now + 300, "email": "alice@mercy.example"});
    jsonwebtoken::encode(&header, &claims, &key()).expect("signed")
}

struct Setup {
    db: TestDb,
    mercy: i64,
    other: i64,
    catalog: Catalog,
    app: axum::Router,
}

async fn setup() -> Setup {
    let db = TestDb::create().await;
    let mercy = db.insert_tenant("mercy", "mercy.example.org").await;
    let other = db.insert_tenant("other", "other.example.org").await;
    let catalog = Catalog::new();
    catalog.replace_with_sso(
        [record(mercy, "mercy"), record(other, "other")],
        [(mercy, sso(true))],
    );
    let jwks = JwksCache::new(Arc::new(FixedJwks), Duration::from_secs(30));
    let state = AppState::new(
        catalog.clone(),
        db.database(2),
        Metrics::new(Some("us-east-1")),
    )
    .with_jwks(jwks);
    Setup {
        db,
        mercy,
        other,
        catalog,
        app: app(state),
    }
}

async fn me(app: &axum::Router) -> (StatusCode, Value) {
    let request = Request::get("/me")
        .header(header::HOST, "mercy.example.org")
        .header(header::AUTHORIZATION, format!("Bearer {}", token()))
        .body(Body::empty())
        .expect("request");
    let response = app.clone().oneshot(request).await.expect("response");
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

async fn add_user(
    db: &TestDb,
    tenant: i64,
    user_name: &str,
    external_id: Option<&str>,
    active: bool,
) {
    let external = external_id.map_or("NULL".to_owned(), |e| format!("'{e}'"));
    db.execute(&format!(
        "INSERT INTO clinical.scim_users (tenant_id, user_name, external_id, active, resource) \
         VALUES ({tenant}, '{user_name}', {external}, {active}, '{{}}')"
    ))
    .await;
}

#[tokio::test]
async fn only_active_scim_users_of_the_tenant_are_admitted_checked_on_every_request() {
    let s = setup().await;
    let (status, body) = me(&s.app).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "not provisioned: {body}");
    assert_eq!(body["error"], "invalid_token");
    assert_eq!(
        body["message"],
        "the token's user has no active account in this tenant"
    );

    // Another tenant's user with the same subject admits nothing here.
    add_user(
        &s.db,
        s.other,
        "alice@mercy.example",
        Some("alice-id"),
        true,
    )
    .await;
    assert_eq!(me(&s.app).await.0, StatusCode::UNAUTHORIZED);

    add_user(&s.db, s.mercy, "alice", Some("alice-id"), true).await;
    assert_eq!(me(&s.app).await.0, StatusCode::OK);
    s.db.execute("UPDATE clinical.scim_users SET active = false WHERE external_id = 'alice-id'")
        .await;
    assert_eq!(
        me(&s.app).await.0,
        StatusCode::UNAUTHORIZED,
        "deactivated: refused at once"
    );
    s.db.execute("DELETE FROM clinical.scim_users").await;
    // Matched by email as userName, whatever its case.
    add_user(&s.db, s.mercy, "ALICE@Mercy.Example", None, true).await;
    assert_eq!(me(&s.app).await.0, StatusCode::OK);

    // SCIM off: a valid token is enough.
    s.db.execute("DELETE FROM clinical.scim_users").await;
    s.catalog
        .replace_with_sso([record(s.mercy, "mercy")], [(s.mercy, sso(false))]);
    assert_eq!(me(&s.app).await.0, StatusCode::OK);
}

/// `GET /me` at mercy's host with the session cookie `id`: status and `Set-Cookie`.
async fn me_by_session(app: &axum::Router, id: &str) -> (StatusCode, Option<String>) {
    let request = Request::get("/me")
        .header(header::HOST, "mercy.example.org")
        .header(
            header::COOKIE,
            format!("{}={id}", phoenix_dataplane::login::SESSION_COOKIE),
        )
        .body(Body::empty())
        .expect("request");
    let response = app.clone().oneshot(request).await.expect("response");
    let cookie = response
        .headers()
        .get(header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (response.status(), cookie)
}

#[tokio::test]
async fn a_deprovisioned_users_sessions_stop_at_once_and_stay_ended() {
    let s = setup().await;
    add_user(&s.db, s.mercy, "alice", Some("alice-id"), true).await;
    let id = phoenix_dataplane::login::flow::random_token();
    let identity = phoenix_dataplane::auth::Identity {
        subject: "alice-id".into(),
        email: Some("alice@mercy.example".into()),
        name: None,
        roles: vec!["physician".into()],
    };
    phoenix_dataplane::login::session::create(
        &s.db.database(1),
        s.mercy,
        phoenix_dataplane::login::flow::sha256_hex(&id),
        identity,
        Duration::from_secs(3600),
    )
    .await
    .expect("session created");
    assert_eq!(me_by_session(&s.app, &id).await.0, StatusCode::OK);

    s.db.execute("UPDATE clinical.scim_users SET active = false WHERE external_id = 'alice-id'")
        .await;
    let (status, cookie) = me_by_session(&s.app, &id).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "deactivated: refused at once"
    );
    let cookie = cookie.expect("the refused cookie is cleared");
    assert!(
        cookie.starts_with(phoenix_dataplane::login::SESSION_COOKIE)
            && cookie.contains("Max-Age=0"),
        "{cookie}"
    );
    let revoked: i64 = s
        .db
        .admin()
        .query_one(
            "SELECT count(*) FROM clinical.sessions WHERE subject = 'alice-id' AND revoked_at IS NOT NULL",
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(
        revoked, 1,
        "the user's session is revoked, not only refused"
    );

    // Reactivating the account does not revive the old session: a new login is needed.
    s.db.execute("UPDATE clinical.scim_users SET active = true WHERE external_id = 'alice-id'")
        .await;
    assert_eq!(me_by_session(&s.app, &id).await.0, StatusCode::UNAUTHORIZED);
}
