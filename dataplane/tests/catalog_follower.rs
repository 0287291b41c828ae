//! The data plane against a real PostgreSQL: the catalog follower picks up what the
//! operator writes to `catalog.tenants` within a second, as a role without BYPASSRLS.
//!
//! Needs the stack: `e2e/stack up && source .stack/env` (sets PG_ADMIN_DSN_US_EAST_1).

mod support;

use std::time::Duration;

use phoenix_dataplane::Dataplane;
use phoenix_dataplane::catalog::follower::FollowerSettings;
use support::{TestDb, eventually, get, http, start_dataplane, start_dataplane_with};

/// How fast a catalog change must reach the data plane.
const PROPAGATION: Duration = Duration::from_secs(1);
/// How long a fresh data plane may take to connect and load the catalog.
const STARTUP: Duration = Duration::from_secs(5);

async fn ready(client: &reqwest::Client, dataplane: &Dataplane) {
    eventually("/readyz answers 200", STARTUP, || async {
        match get(client, dataplane, None, "/readyz").await {
            (200, _) => Ok(()),
            (status, body) => Err(format!("{status} {body}")),
        }
    })
    .await;
}

/// A fresh database with a data plane started on it, ready.
async fn started() -> (TestDb, Dataplane, reqwest::Client) {
    let db = TestDb::create().await;
    let dataplane = start_dataplane(&db).await;
    let client = http();
    ready(&client, &dataplane).await;
    (db, dataplane, client)
}

async fn served_as(
    client: &reqwest::Client,
    dataplane: &Dataplane,
    host: &str,
    expected_status: u16,
    within: Duration,
) -> serde_json::Value {
    eventually(
        &format!("GET /fhir/metadata for {host} answers {expected_status}"),
        within,
        || async move {
            match get(client, dataplane, Some(host), "/fhir/metadata").await {
                (status, body) if status == expected_status => Ok(body),
                (status, body) => Err(format!("{status} {body}")),
            }
        },
    )
    .await
}

#[tokio::test]
async fn readyz_is_200_once_the_catalog_has_loaded() {
    let db = TestDb::create().await;
    let dataplane = start_dataplane(&db).await;
    let client = http();

    ready(&client, &dataplane).await;
    let (status, body) = get(&client, &dataplane, None, "/readyz").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ready");
    assert!(dataplane.catalog().is_loaded());

    dataplane.stop().await.expect("clean stop");
}

#[tokio::test]
async fn an_inserted_tenant_is_served_within_one_second() {
    let (db, dataplane, client) = started().await;
    let (status, _) = get(
        &client,
        &dataplane,
        Some("mercy.example.org"),
        "/fhir/metadata",
    )
    .await;
    assert_eq!(status, 404, "not served before it is in the catalog");

    db.insert_tenant("mercy", "Mercy.Example.org").await;
    let body = served_as(
        &client,
        &dataplane,
        "mercy.example.org:443",
        200,
        PROPAGATION,
    )
    .await;

    assert_eq!(body["resourceType"], "CapabilityStatement");
    assert_eq!(body["implementation"]["description"], "mercy Health System");
    assert_eq!(
        body["implementation"]["url"],
        "https://mercy.example.org/fhir"
    );
    dataplane.stop().await.expect("clean stop");
}

#[tokio::test]
async fn a_deleted_tenant_is_404_within_one_second() {
    let (db, dataplane, client) = started().await;
    db.insert_tenant("mercy", "mercy.example.org").await;
    db.insert_tenant("stjude", "stjude.example.org").await;
    served_as(&client, &dataplane, "mercy.example.org", 200, PROPAGATION).await;

    db.execute("DELETE FROM catalog.tenants WHERE name = 'mercy'")
        .await;
    let body = served_as(&client, &dataplane, "mercy.example.org", 404, PROPAGATION).await;

    assert_eq!(body["resourceType"], "OperationOutcome");
    assert_eq!(body["issue"][0]["code"], "not-found");
    let (status, _) = get(
        &client,
        &dataplane,
        Some("stjude.example.org"),
        "/fhir/metadata",
    )
    .await;
    assert_eq!(status, 200, "the other tenant is still served");
    dataplane.stop().await.expect("clean stop");
}

#[tokio::test]
async fn a_retired_tenant_is_404_and_a_suspended_one_403_within_one_second() {
    let (db, dataplane, client) = started().await;
    db.insert_tenant("mercy", "mercy.example.org").await;
    db.insert_tenant("stjude", "stjude.example.org").await;
    served_as(&client, &dataplane, "mercy.example.org", 200, PROPAGATION).await;
    served_as(&client, &dataplane, "stjude.example.org", 200, PROPAGATION).await;

    db.execute(
        "UPDATE catalog.tenants SET state = 'retired', retired_at = now() WHERE name = 'mercy'; \
         UPDATE catalog.tenants SET state = 'suspended' WHERE name = 'stjude';",
    )
    .await;

    let retired = served_as(&client, &dataplane, "mercy.example.org", 404, PROPAGATION).await;
    assert_eq!(retired["issue"][0]["code"], "not-found");
    let suspended = served_as(&client, &dataplane, "stjude.example.org", 403, PROPAGATION).await;
    assert_eq!(suspended["issue"][0]["code"], "suspended");
    dataplane.stop().await.expect("clean stop");
}

#[tokio::test]
async fn changes_made_while_the_follower_is_disconnected_are_healed_on_reconnect() {
    let (db, dataplane, client) = started().await;

    // Kill the follower's LISTEN connection and change the catalog before it is back.
    let killed = db
        .admin()
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE datname = current_database() AND application_name = 'phoenix-dataplane-catalog'",
            &[],
        )
        .await
        .expect("terminate the follower's connection");
    assert_eq!(killed.get::<_, i64>(0), 1, "one follower connection");
    db.insert_tenant("mercy", "mercy.example.org").await;

    // First reconnect waits 50-100 ms, then connects, LISTENs and reloads.
    served_as(
        &client,
        &dataplane,
        "mercy.example.org",
        200,
        Duration::from_secs(2),
    )
    .await;
    let metrics = metrics_text(&client, &dataplane).await;
    assert!(
        metrics.contains(r#"dataplane_catalog_tenants{region="us-east-1"} 1"#),
        "{metrics}"
    );
    dataplane.stop().await.expect("clean stop");
}

#[tokio::test]
async fn a_change_that_sent_no_notification_is_picked_up_by_the_periodic_resync() {
    let db = TestDb::create().await;
    let resync_every = Duration::from_millis(500);
    let dataplane = start_dataplane_with(
        &db,
        FollowerSettings {
            resync_every,
            ..FollowerSettings::default()
        },
    )
    .await;
    let client = http();
    ready(&client, &dataplane).await;

    // Without its trigger, the insert notifies nobody: only the resync can find it.
    db.execute(
        "ALTER TABLE catalog.tenants DISABLE TRIGGER tenants_notify; \
         INSERT INTO catalog.tenants (uid, name, display_name, hostname, home_region, \
             data_residency, isolation, state, requests_per_second, max_users, generation) \
         VALUES ('uid-quiet', 'quiet', 'Quiet Clinic', 'quiet.example.org', 'us-east-1', \
             ARRAY['US'], 'Shared', 'active', 10, 10, 1);",
    )
    .await;

    served_as(
        &client,
        &dataplane,
        "quiet.example.org",
        200,
        resync_every + PROPAGATION,
    )
    .await;
    dataplane.stop().await.expect("clean stop");
}

async fn metrics_text(client: &reqwest::Client, dataplane: &Dataplane) -> String {
    client
        .get(format!("http://{}/metrics", dataplane.local_addr()))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics body")
}

#[tokio::test]
async fn a_tls_only_database_is_followed_over_verified_tls() {
    // The stack's eu-west-1 primary refuses plain TCP; the data plane gets the CA as
    // DATABASE_CA_FILE and a verify-full URL.
    let db = TestDb::create_on(support::TLS_ADMIN_DSN_VAR).await;
    assert!(db.dataplane_url().contains("sslmode=verify-full"));
    assert!(db.ca_file().is_some());
    let dataplane = start_dataplane(&db).await;
    let client = http();
    ready(&client, &dataplane).await;
    db.insert_tenant("tls", "tls.example.org").await;
    served_as(&client, &dataplane, "tls.example.org", 200, PROPAGATION).await;
    dataplane.stop().await.expect("clean stop");
}
