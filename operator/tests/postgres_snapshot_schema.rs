//! `deletionPolicy: Snapshot` of a `Schema` tenant against a real PostgreSQL and moto's S3:
//! the rows are read from the tenant's own schema, the object is written and checked
//! before the schema and role are dropped, and it restores (through the runbook's
//! command) into a new `Schema` tenant and into a new `Shared` one with the same rows and
//! an audit chain that verifies. A `Shared` snapshot restores into a `Schema` tenant; a
//! row written into the schema after the snapshot keeps the schema and its role.

mod snapshot_support;
mod support;

use std::sync::Arc;

use phoenix_catalog::TenantRow;
use phoenix_catalog::schemas::{tenant_role, tenant_schema};
use phoenix_operator::controller::providers::Database;
use phoenix_operator::controller::region::apply::provision;
use phoenix_operator::controller::tenant::apply::converge_schema;
use phoenix_operator::db::tenant_schema_observe::Dropped;
use phoenix_operator::snapshot::store::SnapshotStore;
use phoenix_operator::snapshot::{Snapshot, snapshot_then_delete};
use snapshot_support::{
    Watching, appends_and_verifies, assert_nothing_deleted, broken_links, bucket, catalog_rows,
    catalog_state, content, counts, destination, expected_after_restore, manifest_counts,
    restore_ok, restore_refused_again, seed, seed_other, sorted, total,
};
use support::TestDb;
use support::tenants::{Roles, schema_tenant, tenant};
use tokio_postgres::Client;

/// Converges `row`'s schema with the operator's code, then writes its catalog row; its id.
async fn schema_tenant_in(region: &dyn Database, roles: &Roles, row: &TenantRow) -> i64 {
    roles.of_tenant(row);
    let work = converge_schema(region, &row.uid)
        .await
        .expect("converge the tenant's schema");
    assert!(work.creates, "a first pass creates the schema");
    region.upsert_tenant(row).await.expect("catalog row")
}

/// Whether the schema and the role of tenant `uid` exist.
async fn schema_and_role(admin: &Client, uid: &str) -> (bool, bool) {
    let row = admin
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1),
                    EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $2)",
            &[&tenant_schema(uid), &tenant_role(uid)],
        )
        .await
        .expect("look for the schema and role");
    (row.get(0), row.get(1))
}

#[tokio::test]
async fn a_schema_tenant_is_snapshotted_before_its_schema_goes_and_restores_into_schema_and_shared_tenants()
 {
    let roles = Roles::new();
    let db = TestDb::new("snap_schema").await;
    let region: Arc<dyn Database> = db.region();
    provision(&*region, None).await.expect("provision");
    let admin = db.admin().await;
    let source = schema_tenant("source");
    let id = schema_tenant_in(&*region, &roles, &source).await;
    let schema = tenant_schema(&source.uid);
    seed(&admin, id, Some(&schema)).await;
    let other = region.upsert_tenant(&tenant("other")).await.expect("other");
    seed_other(&admin, other).await;
    let other_before = counts(&admin, other, None).await;
    let before = counts(&admin, id, Some(&schema)).await;
    assert!(
        before.iter().all(|(_, n)| *n > 0),
        "seed every table of the schema: {before:?}"
    );
    assert!(
        counts(&admin, id, None).await.iter().all(|(_, n)| *n == 0),
        "the rows are in the schema, not the clinical tables"
    );
    let before_content = content(&admin, id, Some(&schema)).await;
    let bucket = bucket().await;
    let store = Watching::new(&db, id, Some(&schema)).await;

    let taken = snapshot_then_delete(
        &*region,
        &store,
        &destination(&bucket),
        &source.uid,
        "source",
        "2026-11-24T07:01:02Z",
    )
    .await
    .expect("snapshot then delete")
    .expect("the tenant had a catalog row");

    // The object was written while the schema held every row.
    assert_eq!(
        store.seen_at_put.lock().expect("lock").clone(),
        vec![before.clone()],
        "the schema must stay until the object exists"
    );
    let bytes = store.get(&taken.at).await.expect("the object exists in S3");
    assert_eq!(bytes.len() as u64, taken.bytes);
    let snap = Snapshot::decode(&bytes).expect("a valid snapshot");
    assert_eq!(snap.tenant.uid, source.uid);
    assert_eq!(snap.tenant.catalog_id, id);
    assert_eq!(snap.tenant.isolation, "Schema", "the source isolation");
    assert_eq!(
        manifest_counts(&snap),
        sorted(&before),
        "same tables as a Shared snapshot"
    );

    // Schema, role and catalog row are gone; the other tenant's rows are not.
    assert_eq!(schema_and_role(&admin, &source.uid).await, (false, false));
    assert_eq!(
        taken.deleted.dropped,
        Some(Dropped {
            schema: true,
            role: true
        })
    );
    assert_eq!(
        taken.deleted.rows,
        before.iter().map(|(_, n)| *n as u64).sum::<u64>()
    );
    assert_eq!(catalog_rows(&admin, &source.uid).await, 0);
    assert_eq!(counts(&admin, other, None).await, other_before);

    // Into a new Schema tenant: rows into its schema under its id.
    let target = schema_tenant("restored");
    let new_id = schema_tenant_in(&*region, &roles, &target).await;
    let new_schema = tenant_schema(&target.uid);
    let stdout = restore_ok(&bucket, &taken.at.key, "restored", &db);
    assert!(
        stdout.contains("audit trail: 3 entries verified"),
        "{stdout}"
    );
    assert_eq!(
        counts(&admin, new_id, Some(&new_schema)).await,
        expected_after_restore(&before)
    );
    assert!(
        counts(&admin, new_id, None)
            .await
            .iter()
            .all(|(_, n)| *n == 0),
        "nothing of a Schema tenant goes to the clinical tables"
    );
    assert_eq!(
        content(&admin, new_id, Some(&new_schema)).await,
        before_content
    );
    assert_eq!(broken_links(&admin, new_id, Some(&new_schema)).await, 0);
    appends_and_verifies(&admin, new_id, Some(&new_schema)).await;

    // Into a new Shared tenant: the same snapshot, rows into the clinical tables.
    let shared = tenant("restored-shared");
    let shared_id = region.upsert_tenant(&shared).await.expect("shared target");
    restore_ok(&bucket, &taken.at.key, "restored-shared", &db);
    assert_eq!(
        counts(&admin, shared_id, None).await,
        expected_after_restore(&before)
    );
    assert_eq!(content(&admin, shared_id, None).await, before_content);
    assert_eq!(broken_links(&admin, shared_id, None).await, 0);
    appends_and_verifies(&admin, shared_id, None).await;
    assert_eq!(counts(&admin, other, None).await, other_before);

    // A second restore into the Schema tenant is refused and changes nothing.
    restore_refused_again(&bucket, &taken.at.key, "restored", &db);
    assert_eq!(
        total(&counts(&admin, new_id, Some(&new_schema)).await),
        total(&expected_after_restore(&before)) + 1
    );
}

#[tokio::test]
async fn a_shared_snapshot_restores_into_a_schema_tenant() {
    let roles = Roles::new();
    let db = TestDb::new("snap_to_schema").await;
    let region: Arc<dyn Database> = db.region();
    provision(&*region, None).await.expect("provision");
    let admin = db.admin().await;
    let source = tenant("source");
    let id = region.upsert_tenant(&source).await.expect("source");
    seed(&admin, id, None).await;
    let before = counts(&admin, id, None).await;
    let before_content = content(&admin, id, None).await;
    let bucket = bucket().await;
    let store = Watching::new(&db, id, None).await;
    let taken = snapshot_then_delete(
        &*region,
        &store,
        &destination(&bucket),
        &source.uid,
        "source",
        "2026-11-24T07:01:02Z",
    )
    .await
    .expect("snapshot then delete")
    .expect("the tenant had a catalog row");
    assert_eq!(taken.deleted.dropped, None, "a Shared tenant has no schema");

    let target = schema_tenant("restored");
    let new_id = schema_tenant_in(&*region, &roles, &target).await;
    let new_schema = tenant_schema(&target.uid);
    restore_ok(&bucket, &taken.at.key, "restored", &db);
    assert_eq!(
        counts(&admin, new_id, Some(&new_schema)).await,
        expected_after_restore(&before)
    );
    assert_eq!(
        content(&admin, new_id, Some(&new_schema)).await,
        before_content
    );
    appends_and_verifies(&admin, new_id, Some(&new_schema)).await;
}

#[tokio::test]
async fn a_row_written_into_the_schema_after_the_snapshot_keeps_the_schema_and_role() {
    let roles = Roles::new();
    let db = TestDb::new("snap_schema_race").await;
    let region: Arc<dyn Database> = db.region();
    provision(&*region, None).await.expect("provision");
    let admin = db.admin().await;
    let source = schema_tenant("source");
    let id = schema_tenant_in(&*region, &roles, &source).await;
    let schema = tenant_schema(&source.uid);
    seed(&admin, id, Some(&schema)).await;
    let bucket = bucket().await;
    let mut store = Watching::new(&db, id, Some(&schema)).await;
    store.meanwhile = Some(format!(
        "INSERT INTO \"{schema}\".fhir_history (tenant_id, resource_type, id, version, resource) VALUES ({id}, 'Patient', gen_random_uuid(), 1, '{{}}')"
    ));
    let err = snapshot_then_delete(
        &*region,
        &store,
        &destination(&bucket),
        &source.uid,
        "source",
        "2026-11-24T07:01:02Z",
    )
    .await
    .expect_err("the snapshot misses a row");
    assert!(
        err.to_string().contains("rows changed after the snapshot"),
        "{err}"
    );
    assert_eq!(schema_and_role(&admin, &source.uid).await, (true, true));
    assert_nothing_deleted(&counts(&admin, id, Some(&schema)).await);
    assert_eq!(catalog_state(&admin, &source.uid).await, "retired");
}
