//! The operator's roles against a real PostgreSQL: a data plane role per Region (two
//! Regions on one server keep their own passwords), roles marked as owned, memberships
//! and grants of owned roles converged while foreign roles are untouched, and a login
//! that has CREATEROLE but is not a superuser (a managed service's) provisions a Region
//! and refuses a data plane role with BYPASSRLS. A released Region's role loses its login;
//! a foreign role never does.

mod support;

use phoenix_operator::controller::error::{ApplyError, Error, PlanError};
use phoenix_operator::controller::providers::Database;
use phoenix_operator::controller::region::apply::execute;
use phoenix_operator::controller::region::apply::provision_for;
use phoenix_operator::controller::region::plan::RegionPlan;
use phoenix_operator::controller::region::status::change_events;
use phoenix_operator::db::PgDatabase;
use phoenix_operator::db::owned::{OWNED_MARKER, dataplane_role};
use phoenix_operator::db::roles::OWNER_ROLE;
use phoenix_operator::reason::Reason;
use std::sync::Arc;
use support::{TestDb, connect, rand_suffix};
use tokio_postgres::Client;

/// Connects to `db` as `user` with `password`.
async fn login(
    db: &TestDb,
    user: &str,
    password: &str,
) -> Result<Client, phoenix_catalog::connect::ConnectError> {
    let mut target = db.target.clone();
    target.config.user(user).password(password);
    target.connect().await
}

/// Drops roles the test made (their databases must be gone first).
async fn drop_roles(roles: &[&str]) {
    let admin = phoenix_catalog::connect::parse(&support::admin_dsn()).expect("admin DSN");
    let client = connect(&admin).await;
    for r in roles {
        client
            .batch_execute(&format!("DROP ROLE IF EXISTS {r}"))
            .await
            .expect("drop role");
    }
}

async fn is_member(c: &Client, role: &str, of: &str) -> bool {
    c.query_one("SELECT pg_has_role($1, $2, 'MEMBER')", &[&role, &of])
        .await
        .expect("membership")
        .get(0)
}

#[tokio::test]
async fn two_regions_on_one_server_each_keep_their_own_password() {
    let suffix = rand_suffix();
    let (a, b) = (
        TestDb::new("roles_two_a").await,
        TestDb::new("roles_two_b").await,
    );
    let role_a = dataplane_role(&format!("it-a-{suffix}"));
    let role_b = dataplane_role(&format!("it-b-{suffix}"));
    for _ in 0..2 {
        provision_for(&*a.region(), &role_a, Some("password-a"))
            .await
            .expect("region a");
        provision_for(&*b.region(), &role_b, Some("password-b"))
            .await
            .expect("region b");
    }
    let again = provision_for(&*a.region(), &role_a, Some("password-a"))
        .await
        .expect("converged");
    assert_eq!(again.password_set, None, "nobody reset region a's password");
    let ca = login(&a, &role_a, "password-a").await.expect("a logs in");
    let cb = login(&b, &role_b, "password-b").await.expect("b logs in");
    assert!(login(&a, &role_a, "password-b").await.is_err());
    for c in [&ca, &cb] {
        c.query_one("SELECT count(*) FROM catalog.tenants", &[])
            .await
            .expect("the data plane role reads the catalog");
    }
    let bypass: bool = ca
        .query_one(
            "SELECT rolbypassrls FROM pg_roles WHERE rolname = current_user",
            &[],
        )
        .await
        .expect("attributes")
        .get(0);
    assert!(!bypass);
    drop((ca, cb, a, b));
    drop_roles(&[&role_a, &role_b]).await;
}

#[tokio::test]
async fn memberships_granted_by_hand_are_revoked_and_a_foreign_role_is_untouched() {
    let suffix = rand_suffix();
    let db = TestDb::new("roles_drift").await;
    let role = dataplane_role(&format!("it-drift-{suffix}"));
    let foreign = format!("foreign_{suffix}");
    provision_for(&*db.region(), &role, Some("pw"))
        .await
        .expect("provision");
    let admin = db.admin().await;
    admin
        .batch_execute(&format!(
            "GRANT pg_write_all_data TO {role};
             GRANT {OWNER_ROLE} TO {role};
             GRANT UPDATE ON catalog.tenants TO {role};
             CREATE ROLE {foreign};
             GRANT pg_read_all_data TO {foreign};
             GRANT {OWNER_ROLE} TO {foreign};
             GRANT SELECT, UPDATE ON catalog.tenants TO {foreign};"
        ))
        .await
        .expect("drift by hand");
    let repaired = provision_for(&*db.region(), &role, Some("pw"))
        .await
        .expect("repair");
    let summaries: Vec<&str> = repaired.ddl.iter().map(|d| d.summary.as_str()).collect();
    assert_eq!(repaired.ddl.len(), 3, "{summaries:#?}");
    assert!(!is_member(&admin, &role, "pg_write_all_data").await);
    assert!(!is_member(&admin, &role, OWNER_ROLE).await);
    let update: bool = admin
        .query_one(
            "SELECT has_table_privilege($1, 'catalog.tenants', 'UPDATE')",
            &[&role],
        )
        .await
        .expect("privilege")
        .get(0);
    assert!(!update, "the extra grant is revoked");
    // The foreign role keeps everything it was given, and is not marked.
    assert!(is_member(&admin, &foreign, "pg_read_all_data").await);
    assert!(is_member(&admin, &foreign, OWNER_ROLE).await);
    let row = admin
        .query_one(
            "SELECT has_table_privilege($1, 'catalog.tenants', 'UPDATE'),
                    shobj_description((SELECT oid FROM pg_roles WHERE rolname = $1), 'pg_authid'),
                    shobj_description((SELECT oid FROM pg_roles WHERE rolname = $2), 'pg_authid')",
            &[&foreign, &role],
        )
        .await
        .expect("foreign role");
    assert!(row.get::<_, bool>(0));
    assert_eq!(row.get::<_, Option<String>>(1), None);
    assert_eq!(
        row.get::<_, Option<String>>(2).as_deref(),
        Some(OWNED_MARKER)
    );
    // The Region announces it as a Warning naming what was found.
    let events = change_events("r", "ns", "db", &repaired);
    let drift = events
        .iter()
        .find(|e| e.reason == Reason::DatabaseDriftRepaired)
        .expect("a DatabaseDriftRepaired Event");
    assert!(drift.warning);
    assert!(
        drift.note.contains("pg_write_all_data") && drift.note.contains(OWNER_ROLE),
        "{}",
        drift.note
    );
    assert!(
        provision_for(&*db.region(), &role, Some("pw"))
            .await
            .expect("again")
            .ddl
            .is_empty()
    );
    admin
        .batch_execute(&format!(
            "REVOKE ALL ON catalog.tenants FROM {foreign}; REVOKE {OWNER_ROLE} FROM {foreign}"
        ))
        .await
        .expect("tidy");
    drop((admin, db));
    drop_roles(&[&role, &foreign]).await;
}

#[tokio::test]
async fn a_createrole_login_that_is_not_a_superuser_provisions_and_refuses_bypassrls() {
    let suffix = rand_suffix();
    let db = TestDb::new("roles_managed").await;
    let login_role = format!("managed_admin_{suffix}");
    let role = dataplane_role(&format!("it-managed-{suffix}"));
    let admin = db.admin().await;
    // What a managed service's master user has: CREATEROLE and its own database.
    admin
        .batch_execute(&format!(
            "CREATE ROLE {login_role} LOGIN CREATEROLE NOSUPERUSER PASSWORD 'master-pw';
             ALTER DATABASE {} OWNER TO {login_role}",
            db.name
        ))
        .await
        .expect("a CREATEROLE login");
    let mut target = db.target.clone();
    target.config.user(&login_role).password("master-pw");
    let region = Arc::new(PgDatabase::new(target, 2, false).expect("pool"));
    let first = provision_for(&*region, &role, Some("dp-pw"))
        .await
        .expect("a non-superuser login provisions");
    assert!(
        first
            .ddl
            .iter()
            .flat_map(|d| &d.sql)
            .all(|s| !s.contains("BYPASSRLS") && !s.contains("SUPERUSER")),
        "{:#?}",
        first.ddl
    );
    let second = provision_for(&*region, &role, Some("dp-pw"))
        .await
        .expect("again");
    assert!(second.ddl.is_empty(), "{:#?}", second.ddl);
    let dp = login(&db, &role, "dp-pw")
        .await
        .expect("the data plane logs in");
    dp.query_one("SELECT count(*) FROM clinical.patients", &[])
        .await
        .expect("reads under RLS");
    let owner: String = admin
        .query_one(
            "SELECT relowner::regrole::text FROM pg_class WHERE oid = 'clinical.patients'::regclass",
            &[],
        )
        .await
        .expect("owner")
        .get(0);
    assert_eq!(owner, OWNER_ROLE);

    // Tenant deletion under forced RLS works without superuser too.
    let row = support::tenants::tenant("managed");
    let id = region.upsert_tenant(&row).await.expect("catalog row");
    admin
        .execute(
            "INSERT INTO clinical.patients (tenant_id, resource) VALUES ($1, '{}'), ($1, '{}')",
            &[&id],
        )
        .await
        .expect("seed");
    // Its audit trail goes with it: the append-only trigger lets the owner role's
    // members (this login) erase a deleted tenant, and nobody else.
    admin
        .execute(
            "INSERT INTO clinical.audit_events (tenant_id, actor, action, resource_type, status, request_id) \
             VALUES ($1, 'a', 'read', 'Patient', 200, 'r1'), ($1, 'a', 'read', 'Patient', 200, 'r2')",
            &[&id],
        )
        .await
        .expect("seed audit entries");
    let deleted = region.delete_tenant(&row.uid).await.expect("delete");
    assert_eq!((deleted.rows, deleted.existed), (4, true));

    admin
        .batch_execute(&format!("ALTER ROLE {role} BYPASSRLS"))
        .await
        .expect("a superuser grants BYPASSRLS by hand");
    let err = provision_for(&*region, &role, Some("dp-pw"))
        .await
        .expect_err("refused");
    assert!(
        matches!(
            &err,
            Error::Plan(PlanError::UnsafeRole {
                attribute: "BYPASSRLS",
                ..
            })
        ),
        "{err:?}"
    );
    assert_eq!(err.reason(), Reason::UnsafeDataplaneRole);
    assert!(
        err.to_string()
            .contains(&format!("ALTER ROLE {role} NOBYPASSRLS")),
        "{err}"
    );
    // The same on a database this pass creates and migrates: the Region's plan was made
    // before its state could be read, so apply checks again and stops before any DDL.
    let fresh = TestDb::new("roles_managed_fresh").await;
    fresh
        .admin()
        .await
        .batch_execute(&format!(
            "ALTER DATABASE {} OWNER TO {login_role}",
            fresh.name
        ))
        .await
        .expect("its database");
    let mut target = fresh.target.clone();
    target.config.user(&login_role).password("master-pw");
    let fresh_region = PgDatabase::new(target, 2, false).expect("pool");
    let plan = RegionPlan {
        migrations: vec![(1, "initial")],
        ..RegionPlan::default()
    };
    let err = execute(&fresh_region, &plan, Some("dp-pw"), &role)
        .await
        .expect_err("refused after migrating");
    assert!(matches!(err, ApplyError::Refused(_)), "{err:?}");
    assert_eq!(Error::from(err).reason(), Reason::UnsafeDataplaneRole);
    drop((dp, region, fresh_region, fresh));
    admin
        .batch_execute(&format!("REVOKE {OWNER_ROLE} FROM {login_role}"))
        .await
        .expect("tidy");
    drop((admin, db));
    drop_roles(&[&role, &login_role]).await;
}

#[tokio::test]
async fn a_released_regions_role_loses_its_login_and_a_foreign_role_keeps_its_own() {
    let suffix = rand_suffix();
    let db = TestDb::new("roles_retire").await;
    let role = dataplane_role(&format!("it-retire-{suffix}"));
    let foreign = format!("foreign_login_{suffix}");
    provision_for(&*db.region(), &role, Some("dp-pw"))
        .await
        .expect("provisioned");
    let admin = connect(&db.target).await;
    admin
        .batch_execute(&format!("CREATE ROLE {foreign} LOGIN PASSWORD 'f-pw'"))
        .await
        .expect("foreign role");
    let live = login(&db, &role, "dp-pw").await.expect("logs in before");

    let region = db.region();
    assert!(region.retire_login(&role).await.expect("retired"));
    assert!(
        !region.retire_login(&role).await.expect("again"),
        "a retired role is not retired twice"
    );
    assert!(
        !region.retire_login(&foreign).await.expect("foreign"),
        "a role without the operator's mark is never touched"
    );
    let can_login = |name: String| {
        let admin = &admin;
        async move {
            admin
                .query_one(
                    "SELECT rolcanlogin, rolpassword IS NULL FROM pg_authid WHERE rolname = $1",
                    &[&name],
                )
                .await
                .map(|r| (r.get::<_, bool>(0), r.get::<_, bool>(1)))
                .expect("role")
        }
    };
    assert_eq!(
        can_login(role.clone()).await,
        (false, true),
        "NOLOGIN, no password"
    );
    assert_eq!(can_login(foreign.clone()).await, (true, false));
    assert!(
        login(&db, &role, "dp-pw").await.is_err(),
        "the retired role still logs in"
    );
    // A session opened before is left to end by itself.
    live.query_one("SELECT 1", &[])
        .await
        .expect("the open session still works");
    drop((live, admin, region, db));
    drop_roles(&[&role, &foreign]).await;
}
