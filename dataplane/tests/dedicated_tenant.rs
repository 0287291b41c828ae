//! A `Dedicated` tenant (A, its rows in a database of its own on the region's server) and
//! a `Shared` tenant (B) served by one router with the same FHIR code: create, read and
//! search work for both, each row lands in its tenant's database, neither tenant reaches
//! the other's ids, and A's reads follow the reader/writer split onto the streaming
//! replica (which carries A's database too), with read-your-writes.
//!
//! Needs the stack: `e2e/stack up && source .stack/env`.

mod support;

use std::time::Duration;

use axum::http::{Method, StatusCode};
use support::fhir::*;
use tokio_postgres::Client;

async fn count(c: &Client, sql: &str, id: i64) -> i64 {
    c.query_one(sql, &[&id])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .get(0)
}

async fn create_at(app: &axum::Router, host: &str, family: &str) -> (String, String) {
    let (status, headers, created) = Call::new(
        Method::POST,
        "/fhir/Patient",
        host,
        Some((host, "physicians")),
    )
    .body(patient(family, "1970-01-01", family))
    .send(app)
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let token = headers
        .get("x-consistency-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (created["id"].as_str().expect("an id").to_owned(), token)
}

const PATIENTS: &str = "SELECT count(*) FROM clinical.patients WHERE tenant_id = $1";

#[tokio::test]
async fn a_dedicated_tenant_and_a_shared_tenant_are_served_by_the_same_code_apart() {
    let (setup, database) = setup_dedicated_a_with(|db| db.database(2)).await;
    let (a, b) = setup.ids;
    let app = &setup.app;
    let (pa, _) = create_at(app, A, "Dedicatedfamily").await;
    let (pb, _) = create_at(app, B, "Sharedfamily").await;

    // Rows land where the catalog says (checked as superuser).
    let region = setup._db.admin();
    let own = setup._db.admin_of(&database).await;
    assert_eq!(count(&own, PATIENTS, a).await, 1);
    assert_eq!(
        count(region, PATIENTS, a).await,
        0,
        "A's row leaked into the region database"
    );
    assert_eq!(count(region, PATIENTS, b).await, 1);
    assert_eq!(
        count(&own, PATIENTS, b).await,
        0,
        "B's row leaked into A's database"
    );
    // The history and the audit trail follow the same path.
    for table in ["fhir_history", "audit_events"] {
        let sql = format!("SELECT count(*) FROM clinical.{table} WHERE tenant_id = $1");
        assert!(count(&own, &sql, a).await >= 1, "{table} in A's database");
        assert_eq!(
            count(region, &sql, a).await,
            0,
            "{table} of A in the region database"
        );
    }

    // Read and search, each tenant with its own token.
    for (host, id, family) in [(A, &pa, "Dedicatedfamily"), (B, &pb, "Sharedfamily")] {
        let who = Some((host, "physicians"));
        let (status, _, read) = Call::new(Method::GET, &format!("/fhir/Patient/{id}"), host, who)
            .send(app)
            .await;
        assert_eq!(status, StatusCode::OK, "{host}: {read}");
        assert_eq!(read["name"][0]["family"], family);
        let (status, _, bundle) = Call::new(
            Method::GET,
            "/fhir/Patient?family=Dedicatedfamily",
            host,
            who,
        )
        .send(app)
        .await;
        assert_eq!(status, StatusCode::OK, "{bundle}");
        let found = bundle["entry"].as_array().map_or(0, |e| e.len());
        assert_eq!(
            found,
            usize::from(host == A),
            "{host} searching A's family: {bundle}"
        );
    }

    // Each tenant's token on the other's ids: not found; the other's DELETE removes nothing.
    for (host, other) in [(B, &pa), (A, &pb)] {
        let who = Some((host, "physicians"));
        let (status, _, body) =
            Call::new(Method::GET, &format!("/fhir/Patient/{other}"), host, who)
                .send(app)
                .await;
        assert_eq!(
            status,
            StatusCode::NOT_FOUND,
            "{host} read the other's patient: {body}"
        );
        let (status, _, body) =
            Call::new(Method::DELETE, &format!("/fhir/Patient/{other}"), host, who)
                .send(app)
                .await;
        assert_ne!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    }
    let (status, _, _) = Call::new(
        Method::GET,
        &format!("/fhir/Patient/{pa}"),
        A,
        Some((B, "physicians")),
    )
    .send(app)
    .await;
    assert_ne!(status, StatusCode::OK, "B's token at A's host");
    assert_eq!(count(&own, PATIENTS, a).await, 1);
    assert_eq!(count(region, PATIENTS, b).await, 1);
    // One dedicated database, one set of pools.
    assert_eq!(setup.database.dedicated().open_databases(), 1);

    // A's tables are A's database's alone: with its table gone, a write fails rather than
    // landing in the region database.
    own.batch_execute("DROP TABLE clinical.patients CASCADE")
        .await
        .expect("drop");
    let (status, _, body) = Call::new(Method::POST, "/fhir/Patient", A, Some((A, "physicians")))
        .body(patient("Nowhere", "1970-01-01", "n-1"))
        .send(app)
        .await;
    assert!(status.is_server_error(), "{status} {body}");
    assert_eq!(
        count(region, PATIENTS, a).await,
        0,
        "fell back to the region database"
    );
}

#[tokio::test]
async fn a_dedicated_tenant_reads_its_database_on_the_replica_and_reads_its_writes() {
    let (setup, database) =
        setup_dedicated_a_with(|db| db.split_database(2, Duration::from_secs(10))).await;
    setup._db.replica_caught_up().await;
    let (a, _) = setup.ids;
    let (pa, token) = create_at(&setup.app, A, "Replicated").await;
    assert!(!token.is_empty(), "a write answers a consistency token");
    let (status, headers, read) = Call::new(
        Method::GET,
        &format!("/fhir/Patient/{pa}"),
        A,
        Some((A, "physicians")),
    )
    .header("x-consistency-token", &token)
    .send(&setup.app)
    .await;
    assert_eq!(status, StatusCode::OK, "{read}");
    assert_eq!(read["name"][0]["family"], "Replicated");
    assert_eq!(
        headers.get("x-read-pool").and_then(|v| v.to_str().ok()),
        Some("reader"),
        "A's read was served by the replica: {headers:?}"
    );
    // The replica holds A's database and the row, as the primary does.
    let on_replica = setup._db.replica_admin_of(&database).await;
    assert_eq!(count(&on_replica, PATIENTS, a).await, 1);
}

/// Publishes tenant `id`'s database as on a server of its own (ADR 0013), as the operator
/// does for a `Dedicated` tenant with an RDS instance.
async fn publish_server(setup: &Setup, id: i64, host: &str, port: u16) {
    setup
        ._db
        .admin()
        .execute(
            "UPDATE catalog.tenants SET database_host = $2, database_port = $3 WHERE id = $1",
            &[&id, &host, &i32::from(port)],
        )
        .await
        .expect("publish the tenant's server");
}

fn writer_port(setup: &Setup) -> u16 {
    setup
        ._db
        .primary_addr()
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .expect("the test server's port")
}

#[tokio::test]
async fn a_dedicated_tenant_on_a_server_of_its_own_is_reached_where_the_catalog_says() {
    // Where nothing listens: the tenant is not served from the region's server instead.
    let (setup, database) = setup_dedicated_a_with(|db| db.database(2)).await;
    let (a, _) = setup.ids;
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    publish_server(&setup, a, "127.0.0.1", closed).await;
    let (status, _, body) = Call::new(Method::POST, "/fhir/Patient", A, Some((A, "physicians")))
        .body(patient("Elsewhere", "1970-01-01", "Elsewhere"))
        .send(&setup.app)
        .await;
    assert!(status.is_server_error(), "{status}: {body}");
    let own = setup._db.admin_of(&database).await;
    assert_eq!(
        count(&own, PATIENTS, a).await,
        0,
        "written on the wrong server"
    );

    // Published under another name of the server (`localhost`, not the writer's
    // 127.0.0.1): reached there with the data plane's own login, rows in its database.
    let (setup, database) = setup_dedicated_a_with(|db| db.database(2)).await;
    let (a, b) = setup.ids;
    let port = writer_port(&setup);
    publish_server(&setup, a, "localhost", port).await;
    let (pa, _) = create_at(&setup.app, A, "Ownserver").await;
    let (status, _, read) = Call::new(
        Method::GET,
        &format!("/fhir/Patient/{pa}"),
        A,
        Some((A, "physicians")),
    )
    .send(&setup.app)
    .await;
    assert_eq!(status, StatusCode::OK, "{read}");
    let own = setup._db.admin_of(&database).await;
    assert_eq!(count(&own, PATIENTS, a).await, 1);
    assert_eq!(count(setup._db.admin(), PATIENTS, a).await, 0);
    // B (Shared) is unaffected.
    create_at(&setup.app, B, "Sharedfamily").await;
    assert_eq!(count(setup._db.admin(), PATIENTS, b).await, 1);
}
