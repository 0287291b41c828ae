//! Provisioning a region database as the Region reconciler does, against a real
//! PostgreSQL: migrations, roles, ownership and grants converge and then send no DDL,
//! drift is repaired, passwords travel as SCRAM verifiers, a missing database is created.

mod support;

use phoenix_catalog::migrations;
use phoenix_operator::controller::providers::Database;
use phoenix_operator::controller::region::apply::provision;
use phoenix_operator::db::PgDatabase;
use phoenix_operator::db::roles::DATAPLANE_ROLE;
use support::TestDb;
use tokio_postgres::Client;

/// The verifier PostgreSQL stores for `role`.
async fn stored_verifier(admin: &Client, role: &str) -> String {
    admin
        .query_one(
            "SELECT rolpassword FROM pg_authid WHERE rolname = $1",
            &[&role],
        )
        .await
        .expect("the stored verifier")
        .get(0)
}

#[tokio::test]
async fn provisioning_is_idempotent_and_a_converged_database_gets_no_ddl() {
    let db = TestDb::new("rls_idem").await;
    let region = db.region();
    assert_eq!(region.schema_version().await.expect("version"), 0);
    let latest = migrations::latest_version();
    let first = provision(&*region, None).await.expect("first");
    let m = first.migrated.expect("migrated");
    assert_eq!((m.from, m.to), (0, latest));
    assert_eq!(
        first.rls_drift.len(),
        phoenix_catalog::TENANT_TABLES.len(),
        "a fresh database has every table enforced once"
    );
    assert!(
        first
            .ddl
            .iter()
            .any(|d| d.sql.iter().any(|s| s.starts_with("GRANT")))
    );
    let second = provision(&*region, None).await.expect("second");
    assert_eq!(second.migrated, None);
    assert!(
        second.ddl.is_empty(),
        "a converged database got DDL: the observation disagrees with what was created: {:#?}",
        second.ddl
    );
    let admin = db.admin().await;
    let ledger: i64 = admin
        .query_one("SELECT count(*) FROM phoenix_meta.schema_migrations", &[])
        .await
        .expect("ledger")
        .get(0);
    assert_eq!(
        ledger,
        i64::try_from(migrations::MIGRATIONS.len()).expect("few migrations")
    );
}

#[tokio::test]
async fn lost_grants_a_foreign_owner_and_public_create_are_repaired() {
    let db = TestDb::new("grant_drift").await;
    let region = db.region();
    provision(&*region, None).await.expect("provision");
    let admin = db.admin().await;
    admin
        .batch_execute(&format!(
            "REVOKE INSERT ON clinical.encounters FROM {DATAPLANE_ROLE};
             GRANT CREATE ON SCHEMA clinical TO PUBLIC;
             ALTER TABLE clinical.patients OWNER TO postgres"
        ))
        .await
        .expect("drift");
    let repaired = provision(&*region, None).await.expect("repair");
    let sql: Vec<String> = repaired.ddl.iter().flat_map(|d| d.sql.clone()).collect();
    assert!(
        sql.contains(&"ALTER TABLE clinical.patients OWNER TO phoenix_owner".to_owned())
            && sql.contains(&format!(
                "GRANT INSERT ON TABLE clinical.encounters TO {DATAPLANE_ROLE}"
            ))
            && sql.contains(&"REVOKE CREATE ON SCHEMA clinical FROM PUBLIC".to_owned()),
        "{sql:#?}"
    );
    let can_insert: bool = admin
        .query_one(
            "SELECT has_table_privilege($1, 'clinical.encounters', 'INSERT')",
            &[&DATAPLANE_ROLE],
        )
        .await
        .expect("privilege")
        .get(0);
    assert!(can_insert);
    assert!(
        provision(&*region, None)
            .await
            .expect("again")
            .ddl
            .is_empty()
    );
}

#[tokio::test]
async fn a_verifier_set_by_the_operator_logs_in_and_matches_postgresql_s_own() {
    use phoenix_operator::db::scram;
    let db = TestDb::new("scram").await;
    let admin = db.admin().await;
    let role = format!("scram_{}", support::rand_suffix());
    let password = format!("pw-{}", support::rand_suffix());
    let verifier = scram::verifier(&password);
    admin
        .batch_execute(&format!("CREATE ROLE {role} LOGIN PASSWORD '{verifier}'"))
        .await
        .expect("role with a verifier");
    let stored = stored_verifier(&admin, &role).await;
    assert_eq!(stored, verifier, "PostgreSQL re-hashed our verifier");
    assert!(scram::matches(&stored, &password));
    let mut config = db.config.clone();
    config.user(&role).password(password.as_bytes());
    let (c, conn) = config
        .connect(tokio_postgres::NoTls)
        .await
        .expect("the password logs in");
    drop(c);
    drop(conn);
    // PostgreSQL's own verifier of a password is recognised too.
    admin
        .batch_execute(&format!("ALTER ROLE {role} PASSWORD 'other {password}'"))
        .await
        .expect("clear text set by hand");
    let theirs = stored_verifier(&admin, &role).await;
    assert!(scram::matches(&theirs, &format!("other {password}")));
    assert!(!scram::matches(&theirs, &password));
    drop(db);
    let server = support::connect(
        &support::admin_dsn()
            .parse::<tokio_postgres::Config>()
            .expect("dsn"),
    )
    .await;
    let _ = server
        .batch_execute(&format!("DROP ROLE IF EXISTS {role}"))
        .await;
}

#[tokio::test]
async fn a_missing_region_database_is_created_then_migrated() {
    let admin: tokio_postgres::Config = support::admin_dsn().parse().expect("dsn");
    let name = format!("rls_fresh_{}", support::rand_suffix());
    let mut config = admin.clone();
    config.dbname(&name);
    let region = PgDatabase::new(config, 2, false).expect("pool");
    assert_eq!(
        region.probe().await.expect("probe"),
        None,
        "the database does not exist yet"
    );
    assert!(region.create_database().await.expect("create"));
    assert!(
        !region.create_database().await.expect("create again"),
        "created twice"
    );
    assert_eq!(region.probe().await.expect("probe"), Some(false));
    assert_eq!(
        region.migrate().await.expect("migrate").to,
        migrations::latest_version()
    );
    drop(region);
    support::drop_database(&admin, &name).await;
}
