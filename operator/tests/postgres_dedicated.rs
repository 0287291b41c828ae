//! `Dedicated` tenants against a real PostgreSQL: the operator creates a database per
//! tenant on the region's server, owned by the tenant's role, with the clinical tables of
//! the catalog's migrations under forced RLS; only the data plane logins may connect; a
//! second pass changes nothing; drift is repaired; `Delete` drops the database (its
//! sessions terminated) and the role.

mod support;

use std::sync::Arc;

use phoenix_catalog::schemas::{tenant_database, tenant_role};
use phoenix_catalog::{POLICY_NAME, TenantRow};
use phoenix_operator::controller::providers::Database;
use phoenix_operator::controller::region::apply::provision;
use phoenix_operator::controller::tenant::apply::converge_dedicated;
use phoenix_operator::db::PgDatabase;
use phoenix_operator::db::roles::DATAPLANE_ROLE;
use phoenix_operator::db::tenant_schema::tables;
use support::TestDb;
use support::tenants::dedicated_tenant;
use tokio_postgres::Client;

/// Drops the tenants' databases, then their roles, when the test ends (passed or failed).
struct Cleanup(std::sync::Mutex<Vec<String>>);

impl Cleanup {
    fn of_tenant(&self, row: &TenantRow) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(row.uid.clone());
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let uids = std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()));
        support::cleanup_as_admin(
            uids.iter()
                .flat_map(|uid| {
                    [
                        format!(
                            "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                            tenant_database(uid)
                        ),
                        format!("DROP ROLE IF EXISTS \"{}\"", tenant_role(uid)),
                    ]
                })
                .collect(),
        );
    }
}

/// The tenant's database, as the operator's provider opens one (2 connections).
fn tenant_db(db: &TestDb, row: &TenantRow) -> Arc<dyn Database> {
    let mut target = db.target.clone();
    target
        .config
        .dbname(row.database.as_deref().expect("dedicated"));
    Arc::new(PgDatabase::new(target, 2, false).expect("pool"))
}

/// An admin client on the tenant's database.
async fn admin_on(db: &TestDb, row: &TenantRow) -> Client {
    let mut target = db.target.clone();
    target
        .config
        .dbname(row.database.as_deref().expect("dedicated"));
    support::connect(&target).await
}

/// What the server said, or the error's text.
fn message(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map(|d| d.message().to_owned())
        .unwrap_or_else(|| e.to_string())
}

async fn count(c: &Client, sql: &str) -> i64 {
    c.query_one(sql, &[]).await.expect(sql).get(0)
}

/// Provisions the region database, converges the tenant's database and writes its row.
async fn provisioned(db: &TestDb, region: &Arc<dyn Database>, row: &TenantRow) -> i64 {
    let work = converge_dedicated(&**region, &*tenant_db(db, row), &row.uid)
        .await
        .expect("converge the tenant's database");
    assert!(work.creates, "a first pass creates the database");
    assert!(
        work.drift.is_empty(),
        "a new database is no drift: {:?}",
        work.drift
    );
    region.upsert_tenant(row).await.expect("catalog row")
}

#[tokio::test]
async fn two_dedicated_tenants_get_databases_only_their_roles_own_and_the_data_plane_reaches() {
    let cleanup = Cleanup(Default::default());
    let db = TestDb::new("dedicated_prov").await;
    let region = db.region();
    provision(&*region, None).await.expect("provision");
    let (a, b) = (dedicated_tenant("alpha"), dedicated_tenant("beta"));
    cleanup.of_tenant(&a);
    cleanup.of_tenant(&b);
    let id_a = provisioned(&db, &region, &a).await;
    let id_b = provisioned(&db, &region, &b).await;
    let admin = db.admin().await;

    // The catalog publishes where the rows live.
    let published: Option<String> = admin
        .query_one(
            "SELECT database_name FROM catalog.tenants WHERE id = $1",
            &[&id_a],
        )
        .await
        .expect("row")
        .get(0);
    assert_eq!(published, a.database);

    for row in [&a, &b] {
        let name = row.database.clone().expect("dedicated");
        let role = tenant_role(&row.uid);
        // Owned by the tenant's role; PUBLIC may not connect, the data plane may; the
        // other tenant's role may not.
        let r = admin
            .query_one(
                "SELECT datdba::regrole::text,
                        has_database_privilege('public', datname, 'CONNECT'),
                        has_database_privilege($2, datname, 'CONNECT'),
                        has_database_privilege($3, datname, 'CONNECT')
                 FROM pg_database WHERE datname = $1",
                &[
                    &name,
                    &DATAPLANE_ROLE,
                    &tenant_role(if row.uid == a.uid { &b.uid } else { &a.uid }),
                ],
            )
            .await
            .expect("database exists");
        assert_eq!(r.get::<_, String>(0), role);
        assert!(
            !r.get::<_, bool>(1),
            "PUBLIC's CONNECT is revoked on {name}"
        );
        assert!(r.get::<_, bool>(2), "the data plane may connect to {name}");
        assert!(
            !r.get::<_, bool>(3),
            "the other tenant's role may not connect to {name}"
        );

        // Every clinical table, owned by the role, under forced RLS with the policy.
        let inside = admin_on(&db, row).await;
        for table in tables() {
            let r = inside
                .query_one(
                    "SELECT c.relowner::regrole::text, c.relrowsecurity, c.relforcerowsecurity,
                            (SELECT count(*) FROM pg_policies p WHERE p.schemaname = 'clinical'
                               AND p.tablename = c.relname AND p.policyname = $2)
                     FROM pg_class c WHERE c.oid = ('clinical.' || $1)::regclass",
                    &[&table, &POLICY_NAME],
                )
                .await
                .unwrap_or_else(|e| panic!("table clinical.{table} in {name}: {e}"));
            assert_eq!(r.get::<_, String>(0), role, "owner of clinical.{table}");
            assert!(
                r.get::<_, bool>(1) && r.get::<_, bool>(2),
                "RLS forced on {table}"
            );
            assert_eq!(r.get::<_, i64>(3), 1, "the policy on {table}");
        }
        // Same migrations as the region database: the same schema version.
        let version: i32 = inside
            .query_one(
                "SELECT max(version) FROM phoenix_meta.schema_migrations",
                &[],
            )
            .await
            .expect("ledger")
            .get(0);
        assert_eq!(version, phoenix_catalog::latest_version());
        // A second pass changes nothing.
        let again = converge_dedicated(&*region, &*tenant_db(&db, row), &row.uid)
            .await
            .expect("second pass");
        assert!(!again.creates);
        assert!(again.ddl.is_empty(), "{:?}", again.ddl);
        assert!(again.drift.is_empty(), "{:?}", again.drift);
    }

    // A login that is neither the data plane nor the owner cannot connect at all.
    let outsider = format!("it_outsider_{}", support::rand_suffix());
    admin
        .batch_execute(&format!(
            "CREATE ROLE {outsider} LOGIN PASSWORD 'x-{outsider}'"
        ))
        .await
        .expect("outsider");
    let mut target = db.target.clone();
    target
        .config
        .dbname(a.database.as_deref().expect("dedicated"));
    target.config.user(&outsider);
    target.config.password(format!("x-{outsider}"));
    let refused = target.connect().await;
    admin
        .batch_execute(&format!("DROP ROLE {outsider}"))
        .await
        .expect("drop outsider");
    let err = format!("{:?}", refused.expect_err("an outsider cannot connect"));
    assert!(err.contains("permission denied for database"), "{err}");

    // The tenant role reaches only its own tables: in A's database, B's role sees nothing.
    let in_a = admin_on(&db, &a).await;
    in_a.batch_execute(&format!("SET ROLE {}", tenant_role(&b.uid)))
        .await
        .expect("set role");
    let denied = in_a.query("SELECT 1 FROM clinical.patients", &[]).await;
    assert!(
        message(&denied.expect_err("B's role has no grant in A's database"))
            .contains("permission denied"),
    );
    in_a.batch_execute("RESET ROLE").await.expect("reset");

    // The data plane writes A's row in A's database; B's setting there sees none of it and
    // cannot write a row under another tenant's id.
    in_a.batch_execute(&format!("SET ROLE {DATAPLANE_ROLE}"))
        .await
        .expect("set role");
    let set = |id: i64| {
        format!(
            "SELECT set_config('app.tenant_id', '{id}', false), set_config('search_path', 'clinical', false)"
        )
    };
    in_a.batch_execute(&set(id_a)).await.expect("tenant A");
    in_a.execute(
        "INSERT INTO patients (tenant_id, resource) VALUES ($1, '{}')",
        &[&id_a],
    )
    .await
    .expect("A writes its patient");
    assert_eq!(count(&in_a, "SELECT count(*) FROM patients").await, 1);
    in_a.batch_execute(&set(id_b)).await.expect("tenant B");
    assert_eq!(
        count(&in_a, "SELECT count(*) FROM patients").await,
        0,
        "B's setting shows nothing of A's rows"
    );
    let refused = in_a
        .execute(
            "INSERT INTO patients (tenant_id, resource) VALUES ($1, '{}')",
            &[&id_a],
        )
        .await;
    assert!(message(&refused.expect_err("RLS refuses")).contains("row-level security"),);
    in_a.batch_execute(&set(id_a)).await.expect("tenant A");
    assert_eq!(count(&in_a, "SELECT count(*) FROM patients").await, 1);
    // Nothing of A's landed in the region database or in B's database.
    let shared: i64 = admin
        .query_one("SELECT count(*) FROM clinical.patients", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(shared, 0);
    let in_b: i64 = admin_on(&db, &b)
        .await
        .query_one("SELECT count(*) FROM clinical.patients", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(in_b, 0);
}

#[tokio::test]
async fn drift_in_a_dedicated_database_is_found_and_repaired() {
    let cleanup = Cleanup(Default::default());
    let db = TestDb::new("dedicated_drift").await;
    let region = db.region();
    provision(&*region, None).await.expect("provision");
    let row = dedicated_tenant("gamma");
    cleanup.of_tenant(&row);
    provisioned(&db, &region, &row).await;
    let name = row.database.clone().expect("dedicated");
    let inside = admin_on(&db, &row).await;
    inside
        .batch_execute(&format!(
            "DROP POLICY {POLICY_NAME} ON clinical.patients;
             ALTER TABLE clinical.encounters DISABLE ROW LEVEL SECURITY;
             DROP TABLE clinical.login_attempts;
             DROP INDEX clinical.document_references_patient;
             GRANT UPDATE ON clinical.audit_events TO {DATAPLANE_ROLE};"
        ))
        .await
        .expect("drift");
    db.admin()
        .await
        .batch_execute(&format!(
            "GRANT CONNECT, TEMPORARY ON DATABASE \"{name}\" TO PUBLIC"
        ))
        .await
        .expect("public connect");
    let work = converge_dedicated(&*region, &*tenant_db(&db, &row), &row.uid)
        .await
        .expect("repair");
    assert!(!work.creates);
    assert!(work.rls_drift, "RLS drift is reported as such");
    let text = work.drift.join("; ");
    assert!(
        !text.contains("column clinical.login_attempts"),
        "a recreated table is one finding: {text}"
    );
    for expected in [
        "CONNECT, TEMPORARY on database",
        "for PUBLIC not desired",
        "table clinical.login_attempts missing",
        "clinical.patients: policy",
        "clinical.encounters: row level security was disabled",
        "index document_references_patient on clinical.document_references missing",
        &format!("UPDATE on clinical.audit_events for {DATAPLANE_ROLE} not desired"),
    ] {
        assert!(text.contains(expected), "{expected:?} not in {text}");
    }
    // Repaired: the table is back with RLS forced and its index, the extra grant gone.
    let r = inside
        .query_one(
            "SELECT c.relrowsecurity AND c.relforcerowsecurity,
                    (SELECT count(*) FROM pg_policies WHERE schemaname = 'clinical' AND tablename = 'login_attempts'),
                    has_table_privilege($1, 'clinical.audit_events', 'UPDATE'),
                    (SELECT relrowsecurity FROM pg_class WHERE oid = 'clinical.encounters'::regclass),
                    (SELECT count(*) FROM pg_policies WHERE schemaname = 'clinical' AND tablename = 'patients'),
                    (SELECT count(*) FROM pg_indexes WHERE schemaname = 'clinical' AND tablename = 'document_references'
                       AND indexdef LIKE '%(tenant_id, patient_id)%')
             FROM pg_class c WHERE c.oid = 'clinical.login_attempts'::regclass",
            &[&DATAPLANE_ROLE],
        )
        .await
        .expect("repaired");
    assert!(
        r.get::<_, bool>(0),
        "the recreated table is under forced RLS"
    );
    assert_eq!(r.get::<_, i64>(1), 1);
    assert!(!r.get::<_, bool>(2), "the extra grant is revoked");
    assert!(r.get::<_, bool>(3));
    assert_eq!(r.get::<_, i64>(4), 1);
    assert_eq!(r.get::<_, i64>(5), 1, "the index is back");
    let public: bool = db
        .admin()
        .await
        .query_one(
            "SELECT has_database_privilege('public', $1, 'CONNECT')",
            &[&name],
        )
        .await
        .expect("acl")
        .get(0);
    assert!(!public);
    let again = converge_dedicated(&*region, &*tenant_db(&db, &row), &row.uid)
        .await
        .expect("third pass");
    assert!(
        again.ddl.is_empty() && again.drift.is_empty(),
        "{:?} {:?}",
        again.ddl,
        again.drift
    );
}

#[tokio::test]
async fn delete_terminates_the_sessions_and_drops_the_database_and_the_role() {
    let cleanup = Cleanup(Default::default());
    let db = TestDb::new("dedicated_delete").await;
    let region = db.region();
    provision(&*region, None).await.expect("provision");
    let (row, kept) = (dedicated_tenant("delta"), dedicated_tenant("epsilon"));
    cleanup.of_tenant(&row);
    cleanup.of_tenant(&kept);
    provisioned(&db, &region, &row).await;
    provisioned(&db, &region, &kept).await;
    let name = row.database.clone().expect("dedicated");
    let role = tenant_role(&row.uid);
    // A session stays open on it (a data plane pool's connection).
    let open = admin_on(&db, &row).await;
    open.query_one("SELECT 1", &[]).await.expect("session");
    let dropped = region
        .drop_tenant_database(&name, &role)
        .await
        .expect("drop");
    assert!(dropped.database && dropped.role, "{dropped:?}");
    assert!(
        dropped.sessions >= 1,
        "the open session was terminated: {dropped:?}"
    );
    assert!(
        open.query_one("SELECT 1", &[]).await.is_err(),
        "its session is gone"
    );
    let admin = db.admin().await;
    let left: i64 = admin
        .query_one(
            "SELECT (SELECT count(*) FROM pg_database WHERE datname = $1)
                  + (SELECT count(*) FROM pg_roles WHERE rolname = $2)",
            &[&name, &role],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(left, 0, "database and role are gone");
    // The other tenant's database is untouched; dropping again is a no-op.
    let other: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_database WHERE datname = $1",
            &[&kept.database],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(other, 1);
    let again = region
        .drop_tenant_database(&name, &role)
        .await
        .expect("again");
    assert!(!again.database && !again.role);
    // A role of the tenant role's name the operator did not create is never dropped nor
    // adopted.
    let foreign = dedicated_tenant("zeta");
    cleanup.of_tenant(&foreign);
    admin
        .batch_execute(&format!(
            "CREATE ROLE \"{}\" NOLOGIN",
            tenant_role(&foreign.uid)
        ))
        .await
        .expect("foreign role");
    let refused = converge_dedicated(&*region, &*tenant_db(&db, &foreign), &foreign.uid).await;
    assert!(
        refused
            .expect_err("refused")
            .to_string()
            .contains("not created by the operator"),
    );
    let d = region
        .drop_tenant_database(
            foreign.database.as_deref().expect("name"),
            &tenant_role(&foreign.uid),
        )
        .await
        .expect("drop");
    assert!(!d.role, "a role the operator does not own is never dropped");
}
