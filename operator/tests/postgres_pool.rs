//! The operator's region pool against real PostgreSQL: bounded however many reconciles
//! use it at once, back in service after its connections are cut (as by a server restart),
//! and every foreign key of a provisioned database backed by an index, so that deleting a
//! tenant never scans another tenant's rows.

mod support;

use std::collections::HashSet;
use std::sync::Arc;

use phoenix_operator::controller::region::apply::provision;
use phoenix_operator::db::PgDatabase;
use support::TestDb;

/// Backend pids of the operator's sessions on `db`, as PostgreSQL lists them.
async fn operator_backends(db: &TestDb) -> Vec<i32> {
    db.admin()
        .await
        .query(
            "SELECT pid FROM pg_stat_activity
             WHERE datname = $1 AND application_name = 'phoenix-operator'",
            &[&db.name],
        )
        .await
        .expect("pg_stat_activity")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test]
async fn fifty_concurrent_users_of_a_pool_of_three_share_three_connections() {
    let db = TestDb::new("pool_bound").await;
    let pool = Arc::new(PgDatabase::new(db.target.clone(), 3, false).expect("pool"));
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move {
                let client = pool.client().await.expect("a pooled connection");
                // Held long enough that the users overlap and the pool is exhausted.
                let row = client
                    .query_one("SELECT pg_backend_pid(), pg_sleep(0.02)::text", &[])
                    .await
                    .expect("query");
                row.get::<_, i32>(0)
            })
        })
        .collect();
    let mut pids = HashSet::new();
    for t in tasks {
        pids.insert(t.await.expect("task"));
    }
    assert_eq!(
        pids.len(),
        3,
        "50 overlapping users opened {} connections: {pids:?}",
        pids.len()
    );
    let listed = operator_backends(&db).await;
    assert!(listed.len() <= 3, "{listed:?}");
}

#[tokio::test]
async fn the_pool_serves_again_after_its_connections_are_terminated() {
    let db = TestDb::new("pool_reconnect").await;
    let pool = PgDatabase::new(db.target.clone(), 2, false).expect("pool");
    let before: i32 = pool
        .client()
        .await
        .expect("connect")
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .expect("query")
        .get(0);
    // What a restart (or failover) does to every open session: FATAL, then the socket closes.
    let admin = db.admin().await;
    let killed = admin
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = $1 AND application_name = 'phoenix-operator'",
            &[&db.name],
        )
        .await
        .expect("terminate");
    assert_eq!(killed.len(), 1, "the pooled session was the only one");
    // The connection's driver sees the socket close; the pool drops the dead connection on
    // its next checkout and opens a new one (deadpool's recycling checks `is_closed`).
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let after: i32 = pool
        .client()
        .await
        .expect("reconnect")
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .expect("a query on the new connection")
        .get(0);
    assert_ne!(before, after, "a new session replaced the terminated one");
    assert_eq!(operator_backends(&db).await, vec![after]);
}

#[tokio::test]
async fn every_foreign_key_of_a_provisioned_database_has_an_index_leading_with_it() {
    let db = TestDb::new("fk_index").await;
    let region = db.region();
    provision(&*region, None).await.expect("provision");
    let uncovered: Vec<String> = db
        .admin()
        .await
        .query(
            "SELECT c.conrelid::regclass::text || ' ' || c.conname
             FROM pg_constraint c
             WHERE c.contype = 'f'
               AND NOT EXISTS (
                 SELECT 1 FROM pg_index i
                 WHERE i.indrelid = c.conrelid
                   AND (i.indkey::int2[])[0:cardinality(c.conkey) - 1] @> c.conkey
                   AND (i.indkey::int2[])[0:cardinality(c.conkey) - 1] <@ c.conkey)
             ORDER BY 1",
            &[],
        )
        .await
        .expect("foreign keys")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        uncovered.is_empty(),
        "a tenant deletion scans the whole referencing table of {uncovered:?}"
    );
}
