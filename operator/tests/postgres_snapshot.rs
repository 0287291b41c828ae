//! `deletionPolicy: Snapshot` of a `Shared` tenant against a real PostgreSQL and moto's S3
//! (the stack's `AWS_ENDPOINT_URL`): the object is written and checked before any row goes,
//! it restores (through the `phoenix-operator snapshot restore` command) into a new tenant
//! with the same rows and an audit chain that verifies, and a missing bucket or a row
//! written after the snapshot leaves every row in place.

mod snapshot_support;
mod support;

use std::sync::Arc;

use phoenix_catalog::TenantRow;
use phoenix_operator::controller::providers::Database;
use phoenix_operator::controller::region::apply::provision;
use phoenix_operator::snapshot::store::{S3Store, SnapshotStore, StoreError};
use phoenix_operator::snapshot::{Snapshot, SnapshotError, snapshot_then_delete};
use snapshot_support::{
    Watching, appends_and_verifies, assert_nothing_deleted, broken_links, bucket, catalog_rows,
    catalog_state, content, destination, expected_after_restore, manifest_counts, restore_ok,
    restore_refused_again, seed, seed_other, sorted, total,
};
use support::TestDb;
use support::tenants::tenant;
use tokio_postgres::Client;

/// A provisioned region database with `Shared` tenant `source` holding rows in every
/// tenant table and tenant `other` holding a few; their ids.
async fn seeded(db: &TestDb) -> (Arc<dyn Database>, TenantRow, i64, i64) {
    let region = db.region();
    provision(&*region, None).await.expect("provision");
    let source = tenant("source");
    let id = region.upsert_tenant(&source).await.expect("source");
    let other = region.upsert_tenant(&tenant("other")).await.expect("other");
    let admin = db.admin().await;
    seed(&admin, id, None).await;
    seed_other(&admin, other).await;
    (region, source, id, other)
}

/// Rows of `Shared` tenant `id` in each tenant table.
async fn counts(admin: &Client, id: i64) -> Vec<(String, i64)> {
    snapshot_support::counts(admin, id, None).await
}

#[tokio::test]
async fn a_shared_tenant_is_snapshotted_before_its_rows_go_and_restores_into_a_new_tenant() {
    let db = TestDb::new("snap_round").await;
    let (region, source, id, other) = seeded(&db).await;
    let admin = db.admin().await;
    let before = counts(&admin, id).await;
    assert!(
        before.iter().all(|(_, n)| *n > 0),
        "seed every table: {before:?}"
    );
    let before_content = content(&admin, id, None).await;
    let other_before = counts(&admin, other).await;
    let bucket = bucket().await;
    let store = Watching::new(&db, id, None).await;

    let taken_at = "2026-11-24T05:38:29.5Z";
    let taken = snapshot_then_delete(
        &*region,
        &store,
        &destination(&bucket),
        &source.uid,
        "source",
        taken_at,
    )
    .await
    .expect("snapshot then delete")
    .expect("the tenant had a catalog row");

    // The object was written while every row was still there.
    assert_eq!(
        store.seen_at_put.lock().expect("lock").clone(),
        vec![before.clone()],
        "rows must stay until the object exists"
    );
    assert_eq!(
        taken.at.key,
        format!(
            "tenants/us-east-1/source/{}/20261124T053829Z.snapshot",
            source.uid
        )
    );
    // The object in S3 is the snapshot, with the counts and the tenant in its manifest.
    let bytes = store.get(&taken.at).await.expect("the object exists in S3");
    assert_eq!(bytes.len() as u64, taken.bytes);
    let snap = Snapshot::decode(&bytes).expect("a valid snapshot");
    assert_eq!(snap.tenant.uid, source.uid);
    assert_eq!(snap.tenant.catalog_id, id);
    assert_eq!(
        snap.schema_version,
        phoenix_catalog::migrations::latest_version()
    );
    assert_eq!(manifest_counts(&snap), sorted(&before));
    assert!(
        snap.tables
            .iter()
            .all(|t| !t.columns.contains(&"tenant_id".to_owned())),
        "tenant_id is never in the rows"
    );

    // The tenant's rows and catalog row are gone; the other tenant's are not.
    assert!(counts(&admin, id).await.iter().all(|(_, n)| *n == 0));
    assert_eq!(
        taken.deleted.rows,
        before.iter().map(|(_, n)| *n as u64).sum::<u64>()
    );
    assert_eq!(catalog_rows(&admin, &source.uid).await, 0);
    assert_eq!(counts(&admin, other).await, other_before);

    // Restore into a new tenant through the command of the runbook.
    let target = tenant("restored");
    let new_id = region.upsert_tenant(&target).await.expect("target tenant");
    assert_ne!(new_id, id);
    let stdout = restore_ok(&bucket, &taken.at.key, "restored", &db);
    assert!(
        stdout.contains("audit trail: 3 entries verified"),
        "{stdout}"
    );
    let after = counts(&admin, new_id).await;
    assert_eq!(after, expected_after_restore(&before));
    // Same rows: ids, versions, text with tabs and newlines, times to the microsecond.
    assert_eq!(content(&admin, new_id, None).await, before_content);
    // The restored trail verifies under the new id, and new entries chain on from it.
    assert_eq!(broken_links(&admin, new_id, None).await, 0);
    appends_and_verifies(&admin, new_id, None).await;
    assert_eq!(counts(&admin, other).await, other_before);

    // A second restore into the same tenant is refused and changes nothing.
    restore_refused_again(&bucket, &taken.at.key, "restored", &db);
    assert_eq!(total(&counts(&admin, new_id).await), total(&after) + 1);
}

#[tokio::test]
async fn a_missing_bucket_fails_the_cleanup_and_keeps_every_row() {
    let db = TestDb::new("snap_nobucket").await;
    let (region, source, id, _) = seeded(&db).await;
    let admin = db.admin().await;
    let before = counts(&admin, id).await;
    let missing = format!("phoenix-snap-missing-{}", support::rand_suffix());
    let store = S3Store::from_env().await;
    let err = snapshot_then_delete(
        &*region,
        &store,
        &destination(&missing),
        &source.uid,
        "source",
        "2026-11-24T05:38:29Z",
    )
    .await
    .expect_err("no bucket, no deletion");
    let message = err.to_string();
    assert!(
        matches!(err, SnapshotError::Store(StoreError::NoSuchBucket { .. })),
        "{err:?}"
    );
    assert!(message.contains(&missing), "{message}");
    assert!(message.contains("data is kept"), "{message}");
    assert_eq!(counts(&admin, id).await, before);
    assert_eq!(
        catalog_state(&admin, &source.uid).await,
        "retired",
        "the data plane stops serving it, nothing is dropped"
    );
}

#[tokio::test]
async fn a_row_written_after_the_snapshot_stops_the_deletion() {
    let db = TestDb::new("snap_race").await;
    let (region, source, id, _) = seeded(&db).await;
    let admin = db.admin().await;
    let bucket = bucket().await;
    let mut store = Watching::new(&db, id, None).await;
    store.meanwhile = Some(format!(
        "INSERT INTO clinical.fhir_history (tenant_id, resource_type, id, version, resource) VALUES ({id}, 'Patient', gen_random_uuid(), 1, '{{}}')"
    ));
    let err = snapshot_then_delete(
        &*region,
        &store,
        &destination(&bucket),
        &source.uid,
        "source",
        "2026-11-24T05:38:29Z",
    )
    .await
    .expect_err("the snapshot misses a row");
    assert!(
        err.to_string().contains("rows changed after the snapshot"),
        "{err}"
    );
    assert_nothing_deleted(&counts(&admin, id).await);
}
