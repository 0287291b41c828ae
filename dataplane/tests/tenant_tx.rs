//! The tenant transaction against a real PostgreSQL provisioned by the operator (forced
//! row-level security, a login role without BYPASSRLS): each request sees exactly its
//! tenant's rows, and nothing of one request survives into the next on the same connection.
//!
//! Needs the stack: `e2e/stack up && source .stack/env` (sets PG_ADMIN_DSN_US_EAST_1).

mod support;

use phoenix_dataplane::db::Database;
use phoenix_dataplane::db::tenant_tx::{Access, TxError};
use support::TestDb;

/// Two tenants with patients written by the admin (who bypasses RLS): A has two, B one.
async fn two_tenants() -> (TestDb, i64, i64) {
    let db = TestDb::create().await;
    let a = db.insert_tenant("mercy", "mercy.example.org").await;
    let b = db.insert_tenant("stjude", "stjude.example.org").await;
    db.execute(&format!(
        "INSERT INTO clinical.patients (tenant_id, family_name, resource) VALUES \
         ({a}, 'a-one', '{{}}'), ({a}, 'a-two', '{{}}'), ({b}, 'b-one', '{{}}')"
    ))
    .await;
    (db, a, b)
}

/// The family names tenant `tenant` sees, with the backend that answered.
async fn names_seen(database: &Database, tenant: i64) -> (Vec<String>, i32) {
    database
        .tenant_tx(Access::Read, tenant, |tx| {
            Box::pin(async move {
                let rows = tx
                    .query(
                        "SELECT family_name FROM clinical.patients ORDER BY family_name",
                        &[],
                    )
                    .await?;
                let pid: i32 = tx.query_one("SELECT pg_backend_pid()", &[]).await?.get(0);
                Ok::<_, TxError>((rows.iter().map(|row| row.get(0)).collect(), pid))
            })
        })
        .await
        .expect("tenant transaction")
}

/// What a query without any tenant sees on the writer pool: patients, the setting, backend.
async fn seen_without_tenant(database: &Database) -> (i64, Option<String>, i32) {
    let client = database.writer().get().await.expect("pooled connection");
    let row = client
        .query_one(
            "SELECT (SELECT count(*) FROM clinical.patients), \
                    current_setting('app.tenant_id', true), pg_backend_pid()",
            &[],
        )
        .await
        .expect("query without tenant");
    (row.get(0), row.get(1), row.get(2))
}

#[tokio::test]
async fn a_tenant_sees_only_its_own_rows() {
    let (db, a, b) = two_tenants().await;
    let database = db.database(4);

    assert_eq!(names_seen(&database, a).await.0, ["a-one", "a-two"]);
    assert_eq!(names_seen(&database, b).await.0, ["b-one"]);
}

#[tokio::test]
async fn on_one_connection_each_request_sees_exactly_its_rows_and_no_tenant_sees_none() {
    let (db, a, b) = two_tenants().await;
    let database = db.database(1);

    let (seen_a, pid_a) = names_seen(&database, a).await;
    let (seen_b, pid_b) = names_seen(&database, b).await;
    let (count, setting, pid_none) = seen_without_tenant(&database).await;

    assert_eq!(seen_a, ["a-one", "a-two"]);
    assert_eq!(seen_b, ["b-one"]);
    assert_eq!(count, 0, "no tenant set, no rows (setting {setting:?})");
    assert_eq!(
        (pid_a, pid_b),
        (pid_none, pid_none),
        "all three ran on the one pooled connection"
    );
}

#[tokio::test]
async fn a_transaction_cancelled_midway_does_not_leak_into_the_next_request() {
    let (db, a, b) = two_tenants().await;
    let database = db.database(1);

    // A's request writes a row, then its client goes away: the future is dropped while
    // the transaction is open.
    let (inserted, mut inserted_seen) = tokio::sync::oneshot::channel::<i32>();
    let request = database.tenant_tx(Access::Write, a, move |tx| {
        Box::pin(async move {
            tx.execute(
                "INSERT INTO clinical.patients (tenant_id, family_name, resource) \
                 VALUES ($1, 'a-uncommitted', '{}')",
                &[&a],
            )
            .await?;
            let pid: i32 = tx.query_one("SELECT pg_backend_pid()", &[]).await?.get(0);
            let _ = inserted.send(pid);
            std::future::pending::<()>().await;
            Ok::<_, TxError>(())
        })
    });
    let cancelled_pid = tokio::select! {
        _ = request => panic!("the request never finishes on its own"),
        pid = &mut inserted_seen => pid.expect("the request reports its insert"),
    };

    let (seen_b, pid_b) = names_seen(&database, b).await;
    let (count, setting, pid_none) = seen_without_tenant(&database).await;

    assert_eq!(seen_b, ["b-one"], "B sees only B's rows");
    assert_eq!(count, 0, "no tenant, no rows (setting {setting:?})");
    let uncommitted = db
        .admin()
        .query_one(
            "SELECT count(*) FROM clinical.patients WHERE family_name = 'a-uncommitted'",
            &[],
        )
        .await
        .expect("count as admin");
    assert_eq!(
        uncommitted.get::<_, i64>(0),
        0,
        "the cancelled write never committed"
    );
    assert_eq!(names_seen(&database, a).await.0, ["a-one", "a-two"]);
    assert_ne!(
        pid_b, cancelled_pid,
        "the cancelled connection was not reused"
    );
    assert_eq!(pid_b, pid_none);
}

#[tokio::test]
async fn a_failed_request_rolls_back_and_keeps_its_connection() {
    let (db, a, _) = two_tenants().await;
    let database = db.database(1);
    let (_, pid_before) = names_seen(&database, a).await;

    let result = database
        .tenant_tx(Access::Write, a, move |tx| {
            Box::pin(async move {
                tx.execute(
                    "INSERT INTO clinical.patients (tenant_id, family_name, resource) \
                     VALUES ($1, 'a-rolled-back', '{}')",
                    &[&a],
                )
                .await?;
                tx.execute("SELECT 1 / 0", &[]).await?;
                Ok::<_, TxError>(())
            })
        })
        .await;

    assert!(matches!(result, Err(TxError::Query(_))), "{result:?}");
    let (seen, pid_after) = names_seen(&database, a).await;
    assert_eq!(seen, ["a-one", "a-two"], "the insert was rolled back");
    assert_eq!(
        pid_before, pid_after,
        "a rolled-back connection goes back to the pool"
    );
}

#[tokio::test]
async fn inserting_a_row_for_another_tenant_is_refused_by_rls() {
    let (db, a, b) = two_tenants().await;
    let database = db.database(2);

    let result = database
        .tenant_tx(Access::Write, a, move |tx| {
            Box::pin(async move {
                tx.execute(
                    "INSERT INTO clinical.patients (tenant_id, family_name, resource) \
                     VALUES ($1, 'smuggled', '{}')",
                    &[&b],
                )
                .await
            })
        })
        .await;

    assert!(matches!(result, Err(TxError::OtherTenant(_))), "{result:?}");
    assert_eq!(names_seen(&database, b).await.0, ["b-one"]);
}
