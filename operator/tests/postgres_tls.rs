//! A region database behind TLS: the stack's eu-west-1 primary accepts TLS only, and its
//! admin DSN says verify-full with the stack's CA (`e2e/stack up && source .stack/env`).

mod support;

use phoenix_catalog::connect::parse;
use phoenix_catalog::migrations;
use phoenix_operator::controller::providers::Database;
use phoenix_operator::db::PgDatabase;

#[tokio::test]
async fn a_region_database_behind_verified_tls_is_created_and_migrated() {
    let admin = parse(&support::stack_dsn(support::TLS_ADMIN_DSN_VAR)).expect("valid DSN");
    assert!(
        admin.tls.has_ca(),
        "the stack's eu-west-1 DSN carries its CA"
    );
    let name = format!("tls_fresh_{}", support::rand_suffix());
    let mut target = admin.clone();
    target.config.dbname(&name);
    let region = PgDatabase::new(target, 2, false).expect("pool");
    // The maintenance connection and the pool both go over TLS: the server has no
    // plain TCP entry in pg_hba.
    assert!(region.create_database().await.expect("create"));
    assert_eq!(
        region.migrate().await.expect("migrate").to,
        migrations::latest_version()
    );
    drop(region);
    support::drop_database(&admin, &name).await;
}

#[tokio::test]
async fn a_region_database_with_an_unrelated_ca_is_unreachable() {
    let target = parse(&support::stack_dsn(support::TLS_ADMIN_DSN_VAR))
        .expect("valid DSN")
        .with_ca_pem(
            include_bytes!("../../catalog/tests/fixtures/unrelated-ca.crt"),
            "fixture",
        )
        .expect("a CA");
    let region = PgDatabase::new(target, 1, false).expect("pool");
    let error = region
        .probe()
        .await
        .expect_err("the certificate is not trusted");
    assert!(error.to_string().contains("certificate"), "{error}");
}
