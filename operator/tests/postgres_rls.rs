//! Tenant isolation against a real PostgreSQL: the migrations, roles and policies the
//! operator applies must keep every tenant's rows invisible and unwritable to the others,
//! for the data plane role and for the table owner alike; drift of RLS is repaired.

mod support;

use std::sync::Arc;

use phoenix_operator::controller::providers::Database;
use phoenix_operator::controller::region::apply::provision;
use phoenix_operator::db::rls::{Drift, POLICY_NAME};
use phoenix_operator::db::roles::{DATAPLANE_ROLE, OWNER_ROLE};
use phoenix_operator::db::{DbError, NameConflict};
use support::TestDb;
use support::tenants::tenant;
use tokio_postgres::Client;

/// A migrated database with two tenants, each with `rows` patients.
async fn two_tenants(db: &TestDb, rows: i64) -> (Arc<dyn Database>, i64, i64) {
    let region = db.region();
    provision(&*region, None).await.expect("provision");
    let a = region
        .upsert_tenant(&tenant("alpha"))
        .await
        .expect("tenant a");
    let b = region
        .upsert_tenant(&tenant("beta"))
        .await
        .expect("tenant b");
    let admin = db.admin().await;
    for (t, n) in [(a, rows), (b, rows)] {
        admin
            .execute(
                "INSERT INTO clinical.patients (tenant_id, family_name, resource) SELECT $1, 'fam' || g, '{}'::jsonb FROM generate_series(1, $2::bigint) g",
                &[&t, &n],
            )
            .await
            .expect("seed patients");
    }
    (region, a, b)
}

/// A session acting as the data plane role (no BYPASSRLS, owns nothing).
async fn as_dataplane(db: &TestDb) -> Client {
    let c = db.admin().await;
    c.batch_execute(&format!("SET ROLE {DATAPLANE_ROLE}"))
        .await
        .expect("set role");
    c
}

async fn visible(c: &Client) -> i64 {
    c.query_one("SELECT count(*) FROM clinical.patients", &[])
        .await
        .expect("count")
        .get(0)
}

async fn in_tenant_tx(
    c: &mut Client,
    tenant: i64,
    sql: &str,
) -> Result<u64, tokio_postgres::Error> {
    let tx = c.transaction().await?;
    tx.execute(
        "SELECT set_config('app.tenant_id', $1, true)",
        &[&tenant.to_string()],
    )
    .await?;
    let n = tx.execute(sql, &[]).await?;
    tx.commit().await?;
    Ok(n)
}

#[tokio::test]
async fn tenant_sees_and_writes_only_its_own_rows() {
    let db = TestDb::new("rls_own").await;
    let (_region, a, b) = two_tenants(&db, 5).await;
    let mut c = as_dataplane(&db).await;

    let tx = c.transaction().await.expect("tx");
    tx.execute(
        "SELECT set_config('app.tenant_id', $1, true)",
        &[&a.to_string()],
    )
    .await
    .expect("set tenant");
    let rows = tx
        .query("SELECT DISTINCT tenant_id FROM clinical.patients", &[])
        .await
        .expect("select");
    assert_eq!(
        rows.iter().map(|r| r.get::<_, i64>(0)).collect::<Vec<_>>(),
        vec![a]
    );
    let count: i64 = tx
        .query_one("SELECT count(*) FROM clinical.patients", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(count, 5);
    tx.commit().await.expect("commit");

    // Writing into B's rows while being A: invisible to UPDATE/DELETE, refused on INSERT.
    let updated = in_tenant_tx(
        &mut c,
        a,
        &format!("UPDATE clinical.patients SET family_name = 'x' WHERE tenant_id = {b}"),
    )
    .await
    .expect("update runs");
    assert_eq!(updated, 0, "A updated B's rows");
    let deleted = in_tenant_tx(
        &mut c,
        a,
        &format!("DELETE FROM clinical.patients WHERE tenant_id = {b}"),
    )
    .await
    .expect("delete runs");
    assert_eq!(deleted, 0, "A deleted B's rows");
    let insert = in_tenant_tx(
        &mut c,
        a,
        &format!("INSERT INTO clinical.patients (tenant_id, resource) VALUES ({b}, '{{}}')"),
    )
    .await;
    let err = insert.expect_err("A inserted a row as B");
    assert!(
        err.as_db_error()
            .is_some_and(|e| e.message().contains("row-level security")),
        "{err:?}"
    );
    let moved = in_tenant_tx(
        &mut c,
        a,
        &format!("UPDATE clinical.patients SET tenant_id = {b}"),
    )
    .await;
    assert!(moved.is_err(), "A moved its rows to B");

    let admin = db.admin().await;
    let b_rows: i64 = admin
        .query_one(
            "SELECT count(*) FROM clinical.patients WHERE tenant_id = $1 AND family_name <> 'x'",
            &[&b],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(b_rows, 5, "B's rows were changed");
}

#[tokio::test]
async fn without_a_tenant_nothing_is_visible_also_on_a_pooled_connection() {
    let db = TestDb::new("rls_unset").await;
    let (_region, a, _b) = two_tenants(&db, 3).await;
    let mut c = as_dataplane(&db).await;
    // Fresh session: the setting was never set, current_setting(.., true) is NULL.
    assert_eq!(visible(&c).await, 0);
    // After a transaction that set it locally, the session sees '' (TESTBED.md); the policy
    // must treat it as unset rather than fail on ''::bigint.
    in_tenant_tx(&mut c, a, "SELECT 1")
        .await
        .expect("tenant transaction");
    let raw: Option<String> = c
        .query_one("SELECT current_setting('app.tenant_id', true)", &[])
        .await
        .expect("setting")
        .get(0);
    assert_eq!(
        raw.as_deref(),
        Some(""),
        "precondition: the pooled connection holds the empty string"
    );
    assert_eq!(visible(&c).await, 0);
    let insert = c
        .execute(
            "INSERT INTO clinical.patients (tenant_id, resource) VALUES ($1, '{}')",
            &[&a],
        )
        .await;
    assert!(insert.is_err(), "insert without a tenant succeeded");
}

#[tokio::test]
async fn dataplane_role_cannot_turn_row_security_off_and_has_no_bypass() {
    let db = TestDb::new("rls_off").await;
    let (_region, _a, _b) = two_tenants(&db, 2).await;
    let c = as_dataplane(&db).await;
    c.batch_execute("SET row_security = off")
        .await
        .expect("the setting itself is allowed");
    let err = c
        .query_one("SELECT count(*) FROM clinical.patients", &[])
        .await
        .expect_err("query with row_security off must fail");
    assert!(
        err.as_db_error()
            .is_some_and(|e| e.message().contains("row-level security")),
        "{err:?}"
    );

    let admin = db.admin().await;
    let row = admin
        .query_one("SELECT rolbypassrls, rolsuper, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = $1", &[&DATAPLANE_ROLE])
        .await
        .expect("role");
    assert_eq!(
        (
            row.get::<_, bool>(0),
            row.get::<_, bool>(1),
            row.get::<_, bool>(2),
            row.get::<_, bool>(3)
        ),
        (false, false, false, false)
    );
    let owned: i64 = admin
        .query_one("SELECT count(*) FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner WHERE r.rolname = $1", &[&DATAPLANE_ROLE])
        .await
        .expect("owned")
        .get(0);
    assert_eq!(owned, 0, "the data plane role owns relations");
}

#[tokio::test]
async fn a_login_without_bypassrls_is_isolated_too() {
    let db = TestDb::new("rls_login").await;
    let (_region, a, _b) = two_tenants(&db, 4).await;
    let admin = db.admin().await;
    let login = format!("dp_login_{}", support::rand_suffix());
    let password = support::rand_suffix();
    admin
        .batch_execute(&format!(
            "CREATE ROLE {login} LOGIN NOBYPASSRLS PASSWORD '{password}' IN ROLE {DATAPLANE_ROLE}"
        ))
        .await
        .expect("login role");
    let mut config = db.config.clone();
    config.user(&login).password(password.as_bytes());
    let mut c = support::connect(&config).await;
    assert_eq!(visible(&c).await, 0);
    let tx = c.transaction().await.expect("tx");
    tx.execute(
        "SELECT set_config('app.tenant_id', $1, true)",
        &[&a.to_string()],
    )
    .await
    .expect("set");
    let n: i64 = tx
        .query_one("SELECT count(*) FROM clinical.patients", &[])
        .await
        .expect("count")
        .get(0);
    tx.commit().await.expect("commit");
    assert_eq!(n, 4);
    drop(c);
    drop(db);
    let admin_cfg: tokio_postgres::Config = support::admin_dsn().parse().expect("dsn");
    let server = support::connect(&admin_cfg).await;
    let _ = server
        .batch_execute(&format!("DROP ROLE IF EXISTS {login}"))
        .await;
}

#[tokio::test]
async fn table_owner_is_subject_to_forced_rls() {
    let db = TestDb::new("rls_owner").await;
    let (_region, a, _b) = two_tenants(&db, 3).await;
    let mut c = db.admin().await;
    c.batch_execute(&format!("SET ROLE {OWNER_ROLE}"))
        .await
        .expect("set role owner");
    let owner: String = c.query_one("SELECT tableowner::text FROM pg_tables WHERE schemaname = 'clinical' AND tablename = 'patients'", &[]).await.expect("owner").get(0);
    assert_eq!(owner, OWNER_ROLE);
    assert_eq!(visible(&c).await, 0, "the owner bypassed RLS");
    let tx = c.transaction().await.expect("tx");
    tx.execute(
        "SELECT set_config('app.tenant_id', $1, true)",
        &[&a.to_string()],
    )
    .await
    .expect("set");
    let n: i64 = tx
        .query_one("SELECT count(*) FROM clinical.patients", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(n, 3);
}

#[tokio::test]
async fn disabled_rls_or_a_dropped_policy_or_an_open_policy_is_repaired() {
    let db = TestDb::new("rls_drift").await;
    let (region, _a, _b) = two_tenants(&db, 1).await;
    let admin = db.admin().await;
    admin
        .batch_execute("ALTER TABLE clinical.patients DISABLE ROW LEVEL SECURITY")
        .await
        .expect("disable");
    admin
        .batch_execute("ALTER TABLE clinical.encounters NO FORCE ROW LEVEL SECURITY")
        .await
        .expect("no force");
    admin
        .batch_execute(&format!(
            "DROP POLICY {POLICY_NAME} ON clinical.document_references"
        ))
        .await
        .expect("drop");
    admin
        .batch_execute("CREATE POLICY open_door ON clinical.medication_requests USING (true)")
        .await
        .expect("open");
    let c = as_dataplane(&db).await;
    assert_eq!(
        visible(&c).await,
        2,
        "precondition: disabling RLS exposes every tenant"
    );

    let repairs = provision(&*region, None).await.expect("repair");
    let by_table: std::collections::HashMap<String, Vec<Drift>> =
        repairs.rls_drift.into_iter().collect();
    assert_eq!(by_table["clinical.patients"], vec![Drift::Disabled]);
    assert_eq!(by_table["clinical.encounters"], vec![Drift::NotForced]);
    assert_eq!(
        by_table["clinical.document_references"],
        vec![Drift::PolicyMissing]
    );
    assert_eq!(
        by_table["clinical.medication_requests"],
        vec![Drift::ForeignPermissivePolicy("open_door".to_owned())]
    );
    assert_eq!(visible(&c).await, 0, "still exposed after repair");
    assert!(
        provision(&*region, None)
            .await
            .expect("again")
            .ddl
            .is_empty()
    );
}

#[tokio::test]
async fn delete_policy_removes_rows_and_retain_keeps_them_retired() {
    let db = TestDb::new("rls_delete").await;
    let region = db.region();
    provision(&*region, None).await.expect("provision");
    let keep = tenant("keep");
    let gone = tenant("gone");
    let keep_id = region.upsert_tenant(&keep).await.expect("keep");
    let gone_id = region.upsert_tenant(&gone).await.expect("gone");
    let admin = db.admin().await;
    for id in [keep_id, gone_id] {
        admin
            .execute(
                "INSERT INTO clinical.patients (tenant_id, resource) VALUES ($1, '{}'), ($1, '{}')",
                &[&id],
            )
            .await
            .expect("seed");
    }
    assert!(region.retire_tenant(&keep.uid).await.expect("retire"));
    assert!(
        !region.retire_tenant(&keep.uid).await.expect("retire twice"),
        "retiring twice changed something"
    );
    admin
        .execute(
            "INSERT INTO clinical.audit_events (tenant_id, actor, action, resource_type, status, request_id) \
             VALUES ($1, 'a', 'create', 'Patient', 201, 'r1')",
            &[&gone_id],
        )
        .await
        .expect("seed an audit entry");
    let deleted = region.delete_tenant(&gone.uid).await.expect("delete");
    assert_eq!(deleted.rows, 3, "two patients and the audit entry");
    assert!(deleted.existed);
    assert!(
        !region
            .delete_tenant(&gone.uid)
            .await
            .expect("delete twice")
            .existed
    );

    let state: String = admin
        .query_one(
            "SELECT state FROM catalog.tenants WHERE id = $1",
            &[&keep_id],
        )
        .await
        .expect("state")
        .get(0);
    assert_eq!(state, "retired");
    let kept: i64 = admin
        .query_one(
            "SELECT count(*) FROM clinical.patients WHERE tenant_id = $1",
            &[&keep_id],
        )
        .await
        .expect("kept")
        .get(0);
    assert_eq!(kept, 2);
    let left: i64 = admin
        .query_one(
            "SELECT count(*) FROM clinical.patients WHERE tenant_id = $1",
            &[&gone_id],
        )
        .await
        .expect("left")
        .get(0);
    assert_eq!(left, 0);
    // A retired tenant frees its host name for a new tenant.
    let mut again = tenant("keep");
    again.hostname = keep.hostname.clone();
    assert!(region.upsert_tenant(&again).await.is_ok());
}

#[tokio::test]
async fn a_live_hostname_cannot_be_taken_twice() {
    let db = TestDb::new("rls_host").await;
    let region = db.region();
    provision(&*region, None).await.expect("provision");
    let first = tenant("first");
    region.upsert_tenant(&first).await.expect("first");
    let mut second = tenant("second");
    second.hostname = first.hostname.clone();
    let err = region
        .upsert_tenant(&second)
        .await
        .expect_err("duplicate host name accepted");
    assert!(
        matches!(err, DbError::Conflict(NameConflict::Hostname { .. })),
        "{err}"
    );
    assert!(
        err.to_string().contains("already used by tenant first"),
        "{err}"
    );
}
