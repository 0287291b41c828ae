//! The tenant transaction against a real PostgreSQL provisioned by the operator (forced
//! row-level security, a login role without BYPASSRLS): each request sees exactly its
//! tenant's rows, and nothing of one request survives into the next on the same connection.
//!
//! Needs the stack: `e2e/stack up && source .stack/env` (sets PG_ADMIN_DSN_US_EAST_1).

mod support;

use std::sync::{Arc, Mutex};

use phoenix_dataplane::db::Database;
use phoenix_dataplane::db::tenant_tx::{Access, TxError};
use support::TestDb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

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

/// A TCP proxy in front of PostgreSQL that counts flights: runs of client bytes with no
/// server byte in between. Requests that are pipelined leave in one flight; a request
/// that waits for the answer to the previous one starts a new flight.
#[derive(Clone, Default)]
struct FlightCounter(Arc<Mutex<(usize, bool)>>);

impl FlightCounter {
    async fn start(upstream: String) -> (Self, std::net::SocketAddr) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let counter = Self::default();
        let flights = counter.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let server = TcpStream::connect(&upstream).await.expect("proxy upstream");
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                tokio::spawn(flights.clone().pump(client_read, server_write, true));
                tokio::spawn(flights.clone().pump(server_read, client_write, false));
            }
        });
        (counter, addr)
    }

    async fn pump(
        self,
        mut from: tokio::net::tcp::OwnedReadHalf,
        mut to: tokio::net::tcp::OwnedWriteHalf,
        from_client: bool,
    ) {
        let mut buf = vec![0; 64 * 1024];
        loop {
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            {
                let mut state = self.0.lock().expect("counter lock");
                let (flights, last_from_client) = &mut *state;
                if from_client && !*last_from_client {
                    *flights += 1;
                }
                *last_from_client = from_client;
            }
            if to.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    }

    fn flights(&self) -> usize {
        self.0.lock().expect("counter lock").0
    }
}

async fn count_patients(database: &Database, tenant: i64) -> i64 {
    database
        .tenant_tx(Access::Read, tenant, |tx| {
            Box::pin(async move {
                let row = tx
                    .query_one("SELECT count(*) FROM clinical.patients", &[])
                    .await?;
                Ok::<_, TxError>(row.get(0))
            })
        })
        .await
        .expect("tenant transaction")
}

#[tokio::test]
async fn the_tenant_setting_travels_with_the_first_statement() {
    let (db, a, _) = two_tenants().await;
    let (proxy, addr) = FlightCounter::start(db.primary_addr()).await;
    let database = db.database_through(addr, 1);
    // Connects and fills the connection's statement cache.
    assert_eq!(count_patients(&database, a).await, 2);

    let before = proxy.flights();
    assert_eq!(count_patients(&database, a).await, 2);
    let flights = proxy.flights() - before;

    // BEGIN + set_config + SELECT in one flight (no Parse: cached), COMMIT in the next;
    // one round trip each would be four.
    assert_eq!(flights, 2, "flights of a one-statement tenant transaction");
}
