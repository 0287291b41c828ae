//! Reads follow the Region's readers as the operator publishes them in `catalog.readers`,
//! when no `DATABASE_READER_URL` is configured: against the stack's real streaming replica,
//! through a data plane started as in production.

mod support;

use std::time::Duration;

use phoenix_dataplane::db::tenant_tx::{Access, TxError};
use phoenix_dataplane::server::Dataplane;
use support::{TestDb, eventually, start_dataplane};
use tokio_postgres::config::Host;

const WITHIN: Duration = Duration::from_secs(15);

/// The stack's replica of us-east-1: host and port.
fn replica() -> (String, u16) {
    let dsn = std::env::var("PG_REPLICA_DSN_US_EAST_1")
        .expect("PG_REPLICA_DSN_US_EAST_1 is not set: source the stack's env file");
    let target = phoenix_catalog::connect::parse(&dsn).expect("the replica's DSN");
    let host = match target.config.get_hosts().first() {
        Some(Host::Tcp(host)) => host.clone(),
        other => panic!("the replica's DSN names no TCP host: {other:?}"),
    };
    let port = *target.config.get_ports().first().expect("a port");
    (host, port)
}

/// Whether a read of `tenant` ran on a server in recovery (the replica).
async fn read_on_replica(dataplane: &Dataplane, tenant: i64) -> Result<bool, String> {
    dataplane
        .database()
        .tenant_tx(Access::Read, tenant, |tx| {
            Box::pin(async move {
                let row = tx.query_one("SELECT pg_is_in_recovery()", &[]).await?;
                Ok::<_, TxError>(row.get::<_, bool>(0))
            })
        })
        .await
        .map_err(|error| error.to_string())
}

async fn reads_land(dataplane: &Dataplane, tenant: i64, on_replica: bool, what: &str) {
    eventually(what, WITHIN, || async move {
        match read_on_replica(dataplane, tenant).await? {
            found if found == on_replica => Ok(()),
            found => Err(format!("read on the replica: {found}")),
        }
    })
    .await;
}

#[tokio::test]
async fn reads_follow_the_published_readers_and_their_health() {
    let db = TestDb::create().await;
    let tenant = db.insert_tenant("mercy", "mercy.example.org").await;
    // The test database and its roles exist on the replica before anything reads there.
    db.replica_caught_up().await;
    let dataplane = start_dataplane(&db).await;
    let (host, port) = replica();

    // Nothing published: reads on the writer.
    assert!(
        !read_on_replica(&dataplane, tenant).await.expect("read"),
        "no reader is published, yet a read ran on the replica"
    );

    // The operator publishes the replica (as the Region reconciler does).
    db.execute(&format!(
        "INSERT INTO catalog.readers (ordinal, host, port, dbname, sslmode, healthy) \
         VALUES (0, '{host}', {port}, '{}', 'disable', true)",
        db.name
    ))
    .await;
    reads_land(
        &dataplane,
        tenant,
        true,
        "reads move to the published reader",
    )
    .await;
    let (_, published) = dataplane.catalog().readers().current();
    assert_eq!(published.len(), 1);
    assert_eq!(published[0].port, i32::from(port));

    // Found unhealthy by the operator: out of rotation, reads on the writer.
    db.execute("UPDATE catalog.readers SET healthy = false")
        .await;
    reads_land(&dataplane, tenant, false, "an unhealthy reader is left out").await;

    // Healthy again, then no longer declared.
    db.execute("UPDATE catalog.readers SET healthy = true")
        .await;
    reads_land(&dataplane, tenant, true, "a healthy reader is used again").await;
    db.execute("DELETE FROM catalog.readers").await;
    reads_land(
        &dataplane,
        tenant,
        false,
        "an unpublished reader is dropped",
    )
    .await;

    // A published reader nobody answers on: reads still succeed, on the writer.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    db.execute(&format!(
        "INSERT INTO catalog.readers (ordinal, host, port, dbname, sslmode, healthy) \
         VALUES (0, '127.0.0.1', {closed}, '{}', 'disable', true)",
        db.name
    ))
    .await;
    eventually("the dead reader is published", WITHIN, || async {
        let (_, published) = dataplane.catalog().readers().current();
        match published.first() {
            Some(r) if r.port == i32::from(closed) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert!(
        !read_on_replica(&dataplane, tenant)
            .await
            .expect("a read with a dead reader falls back to the writer"),
    );
    dataplane.stop().await.expect("stop");
}
