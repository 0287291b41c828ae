//! The data plane against a real PostgreSQL: the catalog follower picks up what the
//! operator writes to `catalog.tenants`, as a role without BYPASSRLS, connected to the
//! primary (LISTEN) or to its hot-standby replica (polling replay).
//!
//! These tests assert behaviour only, with generous deadlines: how fast a change
//! propagates is measured by `examples/catalog_propagation.rs` (docs/benchmarks.md).
//!
//! Needs the stack: `e2e/stack up && source .stack/env` (sets PG_ADMIN_DSN_US_EAST_1 and
//! PG_REPLICA_DSN_US_EAST_1).

mod support;

use std::time::Duration;

use phoenix_dataplane::Dataplane;
use phoenix_dataplane::catalog::follower::FollowerSettings;
use support::{
    TestDb, eventually, get, http, start_dataplane, start_dataplane_at, start_dataplane_with,
};

/// Longest wait for a change to show, or a data plane to start: a deadline for a hung
/// follower on a loaded machine, not a latency target.
const EVENTUALLY: Duration = Duration::from_secs(30);

async fn ready(client: &reqwest::Client, dataplane: &Dataplane) {
    eventually("/readyz answers 200", EVENTUALLY, || async {
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
) -> serde_json::Value {
    eventually(
        &format!("GET /fhir/metadata for {host} answers {expected_status}"),
        EVENTUALLY,
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
async fn an_inserted_tenant_is_served() {
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
    let body = served_as(&client, &dataplane, "mercy.example.org:443", 200).await;

    assert_eq!(body["resourceType"], "CapabilityStatement");
    assert_eq!(body["implementation"]["description"], "mercy Health System");
    assert_eq!(
        body["implementation"]["url"],
        "https://mercy.example.org/fhir"
    );
    dataplane.stop().await.expect("clean stop");
}

#[tokio::test]
async fn a_deleted_tenant_is_404() {
    let (db, dataplane, client) = started().await;
    db.insert_tenant("mercy", "mercy.example.org").await;
    db.insert_tenant("stjude", "stjude.example.org").await;
    served_as(&client, &dataplane, "mercy.example.org", 200).await;

    db.execute("DELETE FROM catalog.tenants WHERE name = 'mercy'")
        .await;
    let body = served_as(&client, &dataplane, "mercy.example.org", 404).await;

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
async fn a_retired_tenant_is_404_and_a_suspended_one_403() {
    let (db, dataplane, client) = started().await;
    db.insert_tenant("mercy", "mercy.example.org").await;
    db.insert_tenant("stjude", "stjude.example.org").await;
    served_as(&client, &dataplane, "mercy.example.org", 200).await;
    served_as(&client, &dataplane, "stjude.example.org", 200).await;

    db.execute(
        "UPDATE catalog.tenants SET state = 'retired', retired_at = now() WHERE name = 'mercy'; \
         UPDATE catalog.tenants SET state = 'suspended' WHERE name = 'stjude';",
    )
    .await;

    let retired = served_as(&client, &dataplane, "mercy.example.org", 404).await;
    assert_eq!(retired["issue"][0]["code"], "not-found");
    let suspended = served_as(&client, &dataplane, "stjude.example.org", 403).await;
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

    // The follower reconnects after its backoff, LISTENs again and reloads.
    served_as(&client, &dataplane, "mercy.example.org", 200).await;
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

    served_as(&client, &dataplane, "quiet.example.org", 200).await;
    dataplane.stop().await.expect("clean stop");
}

#[tokio::test]
async fn a_row_this_version_does_not_understand_is_left_out_and_the_others_served() {
    let (db, dataplane, client) = started().await;

    // A newer operator's isolation mode, which this schema's CHECK would refuse.
    db.execute(
        "ALTER TABLE catalog.tenants DROP CONSTRAINT tenants_isolation_check; \
         INSERT INTO catalog.tenants (uid, name, display_name, hostname, home_region, \
             data_residency, isolation, state, requests_per_second, max_users, generation) \
         VALUES ('uid-future', 'future', 'Future Clinic', 'future.example.org', 'us-east-1', \
             ARRAY['US'], 'Partitioned', 'active', 10, 10, 1);",
    )
    .await;
    db.insert_tenant("mercy", "mercy.example.org").await;

    served_as(&client, &dataplane, "mercy.example.org", 200).await;
    let (status, body) = get(
        &client,
        &dataplane,
        Some("future.example.org"),
        "/fhir/metadata",
    )
    .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(dataplane.catalog().len(), 1);
    dataplane.stop().await.expect("clean stop");
}

#[tokio::test]
async fn a_dataplane_on_the_replica_serves_a_tenant_written_on_the_primary() {
    // The database and its login role reach the standby by streaming replication.
    let db = TestDb::create().await;
    // No resync within the test: only the replay poll can pick the change up.
    let settings = FollowerSettings {
        resync_every: Duration::from_secs(3600),
        ..FollowerSettings::default()
    };
    let dataplane = start_dataplane_at(db.replica_url(), None, settings).await;
    let client = http();
    ready(&client, &dataplane).await;
    let (status, _) = get(
        &client,
        &dataplane,
        Some("mercy.example.org"),
        "/fhir/metadata",
    )
    .await;
    assert_eq!(status, 404, "not served before it is in the catalog");

    // The standby refuses LISTEN and replays NOTIFY to nobody: only polling replay finds it.
    db.insert_tenant("mercy", "mercy.example.org").await;
    let body = served_as(&client, &dataplane, "mercy.example.org", 200).await;

    assert_eq!(body["implementation"]["description"], "mercy Health System");
    let replica = db.replica_admin().await;
    let in_recovery: bool = replica
        .query_one("SELECT pg_is_in_recovery()", &[])
        .await
        .expect("ask the replica")
        .get(0);
    assert!(in_recovery, "the data plane really followed a hot standby");
    dataplane.stop().await.expect("clean stop");
}

async fn metrics_text(client: &reqwest::Client, dataplane: &Dataplane) -> String {
    client
        .get(format!("http://{}/metrics", dataplane.admin_addr()))
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
    served_as(&client, &dataplane, "tls.example.org", 200).await;
    dataplane.stop().await.expect("clean stop");
}

#[tokio::test]
async fn a_catalog_without_catalog_sso_still_serves_its_tenants() {
    let (db, dataplane, client) = started().await;
    // A catalog not migrated to catalog.sso yet (older operator).
    db.execute("DROP TABLE catalog.sso CASCADE").await;
    db.insert_tenant("mercy", "mercy.example.org").await;
    served_as(&client, &dataplane, "mercy.example.org", 200).await;
    dataplane.stop().await.expect("clean stop");
}
