//! `deletionPolicy: Snapshot` of a `Dedicated` tenant against a real PostgreSQL and moto's
//! S3: the rows are read from the tenant's own database, the object is written and checked
//! while the database still holds every row, then the database and role are dropped; the
//! snapshot restores (through the runbook's command) into a new `Shared` tenant with the
//! same rows. A row written after the snapshot keeps the database.

mod snapshot_support;
mod support;

use std::sync::Arc;

use phoenix_catalog::TenantRow;
use phoenix_catalog::schemas::{tenant_database, tenant_role};
use phoenix_operator::controller::providers::Database;
use phoenix_operator::controller::region::apply::provision;
use phoenix_operator::controller::tenant::apply::converge_dedicated;
use phoenix_operator::db::PgDatabase;
use phoenix_operator::db::tenant_schema_observe::Dropped;
use phoenix_operator::snapshot::store::SnapshotStore;
use phoenix_operator::snapshot::{Snapshot, snapshot_then_delete};
use snapshot_support::{
    Watching, bucket, catalog_rows, counts, destination, expected_after_restore, manifest_counts,
    restore_ok, seed, sorted,
};
use support::TestDb;
use support::tenants::{Roles, dedicated_tenant, tenant};
use tokio_postgres::Client;

/// Drops a tenant's database (before the roles guard drops its role).
struct DropDatabase(String);

impl Drop for DropDatabase {
    fn drop(&mut self) {
        support::cleanup_as_admin(vec![format!(
            "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
            self.0
        )]);
    }
}

/// Converges `row`'s database with the operator's code, then writes its catalog row; its
/// id and an admin client on its database.
async fn dedicated_in(db: &TestDb, region: &dyn Database, row: &TenantRow) -> (i64, Client) {
    let database = row.database.clone().expect("dedicated");
    let mut target = db.target.clone();
    target.config.dbname(&database);
    let tdb = PgDatabase::new(target.clone(), 2, false).expect("pool");
    converge_dedicated(region, &tdb, &row.uid)
        .await
        .expect("converge the tenant's database");
    let id = region.upsert_tenant(row).await.expect("catalog row");
    (id, support::connect(&target).await)
}

async fn database_and_role(admin: &Client, uid: &str) -> (bool, bool) {
    let r = admin
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1),
                    EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $2)",
            &[&tenant_database(uid), &tenant_role(uid)],
        )
        .await
        .expect("exists");
    (r.get(0), r.get(1))
}

#[tokio::test]
async fn a_dedicated_tenant_is_snapshotted_before_its_database_goes_and_restores_into_a_shared_tenant()
 {
    let roles = Roles::new();
    let db = TestDb::new("snap_dedicated").await;
    let region: Arc<dyn Database> = db.region();
    provision(&*region, None).await.expect("provision");
    let admin = db.admin().await;
    let source = dedicated_tenant("source");
    roles.of_tenant(&source);
    let _drop = DropDatabase(tenant_database(&source.uid));
    let (id, inside) = dedicated_in(&db, &*region, &source).await;
    seed(&inside, id, None).await;
    let before = counts(&inside, id, None).await;
    assert!(
        before.iter().all(|(_, n)| *n > 0),
        "seed every table of the database: {before:?}"
    );
    assert!(
        counts(&admin, id, None).await.iter().all(|(_, n)| *n == 0),
        "the rows are in the tenant's database, not the region's"
    );
    let bucket = bucket().await;
    let store = Watching::through(inside, id, None).await;

    let taken = snapshot_then_delete(
        &*region,
        &store,
        &destination(&bucket),
        &source.uid,
        "source",
        "2026-11-24T08:01:02Z",
    )
    .await
    .expect("snapshot then delete")
    .expect("the tenant had a catalog row");

    // The object was written while the database held every row.
    assert_eq!(
        store.seen_at_put.lock().expect("lock").clone(),
        vec![before.clone()],
        "the database must stay until the object exists"
    );
    let bytes = store.get(&taken.at).await.expect("the object exists in S3");
    let snap = Snapshot::decode(&bytes).expect("a valid snapshot");
    assert_eq!(snap.tenant.catalog_id, id);
    assert_eq!(snap.tenant.isolation, "Dedicated", "the source isolation");
    assert_eq!(snap.schema_version, phoenix_catalog::latest_version());
    assert_eq!(manifest_counts(&snap), sorted(&before));

    // Database, role and catalog row are gone.
    assert_eq!(database_and_role(&admin, &source.uid).await, (false, false));
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

    // Into a new Shared tenant, through the runbook's command: the same rows, counted.
    let target = tenant("restored");
    let new_id = region.upsert_tenant(&target).await.expect("target");
    let stdout = restore_ok(&bucket, &taken.at.key, "restored", &db);
    assert_eq!(
        sorted(&counts(&admin, new_id, None).await),
        sorted(&expected_after_restore(&before)),
        "restored rows: {stdout}"
    );
}

#[tokio::test]
async fn a_row_written_after_the_snapshot_keeps_the_dedicated_database() {
    let roles = Roles::new();
    let db = TestDb::new("snap_dedicated_keep").await;
    let region: Arc<dyn Database> = db.region();
    provision(&*region, None).await.expect("provision");
    let admin = db.admin().await;
    let source = dedicated_tenant("busy");
    roles.of_tenant(&source);
    let _drop = DropDatabase(tenant_database(&source.uid));
    let (id, inside) = dedicated_in(&db, &*region, &source).await;
    seed(&inside, id, None).await;
    let bucket = bucket().await;
    let mut store = Watching::through(inside, id, None).await;
    store.meanwhile = Some(format!(
        "INSERT INTO clinical.medication_requests (tenant_id, patient_id, status, resource)
         SELECT tenant_id, id, 'active', '{{}}' FROM clinical.patients WHERE tenant_id = {id} LIMIT 1"
    ));
    let err = snapshot_then_delete(
        &*region,
        &store,
        &destination(&bucket),
        &source.uid,
        "busy",
        "2026-11-24T08:02:03Z",
    )
    .await
    .expect_err("rows changed after the snapshot");
    assert!(
        err.to_string().contains("rows changed after the snapshot"),
        "{err}"
    );
    assert_eq!(database_and_role(&admin, &source.uid).await, (true, true));
    // Open to sessions again, with every row.
    let mut target = db.target.clone();
    target.config.dbname(tenant_database(&source.uid));
    let again = support::connect(&target).await;
    let n: i64 = again
        .query_one(
            "SELECT count(*) FROM clinical.medication_requests WHERE tenant_id = $1",
            &[&id],
        )
        .await
        .expect("count")
        .get(0);
    assert!(n >= 2, "{n}");
}
