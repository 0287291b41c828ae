//! `spec.database.isolation: Dedicated` through the real operator and kube-apiserver: the
//! Tenant becomes Ready with its own database on the region's server published in the
//! catalog, RLS turned off in it is repaired with an Event, and deletion drops the database
//! and role (`Delete`), keeps them (`Retain`), or writes the rows to the Region's bucket
//! first and then drops them (`Snapshot`).

use phoenix_e2e::events::{Regarding, instant, wait_event};
use phoenix_e2e::guard::ScenarioGuard;
use phoenix_e2e::scenario::*;
use phoenix_e2e::*;
use std::time::Duration;

async fn exists(db: &tokio_postgres::Client, sql: &str, name: &str) -> bool {
    db.query_one(&format!("SELECT EXISTS ({sql})"), &[&name])
        .await
        .expect(sql)
        .get(0)
}

const DATABASE: &str = "SELECT 1 FROM pg_database WHERE datname = $1";
const ROLE: &str = "SELECT 1 FROM pg_roles WHERE rolname = $1";

/// Connects to `database` on the us-east-1 server as its admin.
async fn pg_on(database: &str) -> tokio_postgres::Client {
    let dsn = std::env::var("PG_ADMIN_DSN_US_EAST_1").expect("source the stack's env");
    let mut target = phoenix_catalog::connect::parse(&dsn).expect("admin DSN");
    target.config.dbname(database);
    target
        .connect()
        .await
        .expect("connect to the tenant's database")
}

/// The catalog id of the tenant with `uid`.
async fn condition_id(db: &tokio_postgres::Client, uid: &str) -> i64 {
    db.query_one("SELECT id FROM catalog.tenants WHERE uid = $1", &[&uid])
        .await
        .expect("catalog row")
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dedicated_tenant_gets_its_database_repaired_and_dropped_per_deletion_policy() {
    let _serial = SERIAL.lock().await;
    install_platform();
    let _operator = Process::operator(5).await;
    let scenario = ScenarioGuard::new("dedicated-tenant");
    let applied = instant();
    scenario.apply(
        &(tenant_yaml(
            "e2e-dedicated-del",
            "US",
            "  database: {isolation: Dedicated, deletionPolicy: Delete}\n",
        ) + &tenant_yaml(
            "e2e-dedicated-ret",
            "US",
            "  database: {isolation: Dedicated, deletionPolicy: Retain}\n",
        ) + &tenant_yaml(
            "e2e-dedicated-snap",
            "US",
            "  homeRegion: us-east-1\n  database: {isolation: Dedicated, deletionPolicy: Snapshot}\n",
        )),
    );
    let bucket = "phoenix-snapshots-us-east-1";
    let s3 = phoenix_e2e::s3::client("us-east-1").await;
    phoenix_e2e::s3::ensure_bucket(&s3, bucket).await;
    let db = pg("us-east-1").await;
    let mut names = Vec::new();
    for name in [
        "e2e-dedicated-del",
        "e2e-dedicated-ret",
        "e2e-dedicated-snap",
    ] {
        let t = wait_tenant(name, "Ready", READY_TIMEOUT, is_ready).await;
        let uid = t.metadata.uid.clone().expect("uid");
        let database = phoenix_catalog::schemas::tenant_database(&uid);
        let role = phoenix_catalog::schemas::tenant_role(&uid);
        let (status, _, message) = condition(&t, "DatabaseReady").expect("DatabaseReady");
        assert_eq!(status, "True");
        assert!(
            message.contains(&format!("database {database}")),
            "{message}"
        );
        let published: Option<String> = db
            .query_one(
                "SELECT database_name FROM catalog.tenants WHERE uid = $1",
                &[&uid],
            )
            .await
            .expect("catalog row")
            .get(0);
        assert_eq!(published.as_deref(), Some(database.as_str()));
        assert!(exists(&db, DATABASE, &database).await && exists(&db, ROLE, &role).await);
        wait_event(&Regarding::of(&t), "DatabaseProvisioned", applied).await;
        let id = condition_id(&db, &uid).await;
        names.push((Regarding::of(&t), database, role, uid, id));
    }

    // Drift in the tenant's database: the next pass (resync 5 s) repairs it.
    let (del, del_database, del_role, _, _) = &names[0];
    let inside = pg_on(del_database).await;
    let since = instant();
    inside
        .batch_execute("ALTER TABLE clinical.sessions DISABLE ROW LEVEL SECURITY")
        .await
        .expect("disable RLS");
    let event = wait_event(del, "RLSRepaired", since).await;
    let note = event.note.unwrap_or_default();
    assert!(
        note.contains(&format!("database {del_database}"))
            && note.contains("clinical.sessions: row level security was disabled"),
        "{note}"
    );
    eventually("RLS is back", Duration::from_secs(30), || {
        let inside = &inside;
        async move {
            let back: bool = inside
                .query_one(
                    "SELECT relrowsecurity FROM pg_class WHERE oid = 'clinical.sessions'::regclass",
                    &[],
                )
                .await
                .ok()?
                .get(0);
            back.then_some(())
        }
    })
    .await;
    drop(inside);

    // Rows of the Snapshot tenant, in its own database.
    let (snap, snap_database, snap_role, snap_uid, snap_id) = &names[2];
    let rows = pg_on(snap_database).await;
    rows.execute(
        "INSERT INTO clinical.patients (tenant_id, resource) VALUES ($1, '{}'), ($1, '{}')",
        &[snap_id],
    )
    .await
    .expect("the tenant's rows");
    drop(rows);

    let since = instant();
    kubectl_ok(
        &[
            "delete",
            "tenant",
            "e2e-dedicated-del",
            "e2e-dedicated-ret",
            "e2e-dedicated-snap",
            "--timeout=90s",
        ],
        None,
    );
    let (ret, ret_database, ret_role, _, _) = &names[1];
    assert!(
        !exists(&db, DATABASE, del_database).await,
        "Delete left the database"
    );
    assert!(!exists(&db, ROLE, del_role).await, "Delete left the role");
    assert!(
        exists(&db, DATABASE, ret_database).await,
        "Retain dropped the database"
    );
    assert!(exists(&db, ROLE, ret_role).await, "Retain dropped the role");
    for tenant in [del, ret, snap] {
        wait_event(tenant, "Deleted", since).await;
    }
    // Snapshot: the object holds the rows, then the database and role went.
    let taken = wait_event(snap, "SnapshotTaken", since).await;
    let note = taken.note.unwrap_or_default();
    let prefix = format!("tenants/us-east-1/e2e-dedicated-snap/{snap_uid}/");
    assert!(
        note.contains(&format!("s3://{bucket}/{prefix}")) && note.contains("patients=2"),
        "{note}"
    );
    assert_eq!(phoenix_e2e::s3::keys(&s3, bucket, &prefix).await.len(), 1);
    assert!(
        !exists(&db, DATABASE, snap_database).await && !exists(&db, ROLE, snap_role).await,
        "Snapshot left the database or the role"
    );
    // The retained database is this test's to remove.
    db.batch_execute(&format!("DROP DATABASE \"{ret_database}\" WITH (FORCE)"))
        .await
        .expect("drop the retained database");
    db.batch_execute(&format!("DROP ROLE \"{ret_role}\""))
        .await
        .expect("drop the retained role");
}
