//! A `Schema` tenant (A, its rows in a schema of its own) and a `Shared` tenant (B, its
//! rows in `clinical`) served by one router with the same FHIR code: create, read and
//! search work for both, each row lands in its tenant's schema, and neither tenant reaches
//! the other's ids.

mod support;

use axum::http::{Method, StatusCode};
use support::fhir::*;

async fn count(setup: &Setup, sql: &str, id: i64) -> i64 {
    setup
        ._db
        .admin()
        .query_one(sql, &[&id])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .get(0)
}

async fn create_at(app: &axum::Router, host: &str, family: &str) -> String {
    let (status, _, created) = Call::new(
        Method::POST,
        "/fhir/Patient",
        host,
        Some((host, "physicians")),
    )
    .body(patient(family, "1970-01-01", family))
    .send(app)
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    created["id"].as_str().expect("an id").to_owned()
}

#[tokio::test]
async fn a_schema_tenant_and_a_shared_tenant_are_served_by_the_same_code_apart() {
    let (setup, schema) = setup_schema_a().await;
    let (a, b) = setup.ids;
    let app = &setup.app;
    let pa = create_at(app, A, "Schemafamily").await;
    let pb = create_at(app, B, "Sharedfamily").await;

    // Rows land where the catalog says (checked as superuser).
    let in_schema = format!("SELECT count(*) FROM \"{schema}\".patients WHERE tenant_id = $1");
    let in_shared = "SELECT count(*) FROM clinical.patients WHERE tenant_id = $1";
    assert_eq!(count(&setup, &in_schema, a).await, 1);
    assert_eq!(
        count(&setup, in_shared, a).await,
        0,
        "A's row leaked into clinical"
    );
    assert_eq!(count(&setup, in_shared, b).await, 1);
    assert_eq!(count(&setup, &in_schema, b).await, 0);
    // The history and the audit trail follow the same path.
    assert!(
        count(
            &setup,
            &format!("SELECT count(*) FROM \"{schema}\".fhir_history WHERE tenant_id = $1"),
            a
        )
        .await
            >= 1
    );
    assert!(
        count(
            &setup,
            &format!("SELECT count(*) FROM \"{schema}\".audit_events WHERE tenant_id = $1"),
            a
        )
        .await
            >= 1
    );
    assert_eq!(
        count(
            &setup,
            "SELECT count(*) FROM clinical.audit_events WHERE tenant_id = $1",
            a
        )
        .await,
        0
    );

    // Read and search, each tenant with its own token.
    for (host, id, family) in [(A, &pa, "Schemafamily"), (B, &pb, "Sharedfamily")] {
        let who = Some((host, "physicians"));
        let (status, _, read) = Call::new(Method::GET, &format!("/fhir/Patient/{id}"), host, who)
            .send(app)
            .await;
        assert_eq!(status, StatusCode::OK, "{host}: {read}");
        assert_eq!(read["name"][0]["family"], family);
        let (status, _, bundle) =
            Call::new(Method::GET, "/fhir/Patient?family=Schemafamily", host, who)
                .send(app)
                .await;
        assert_eq!(status, StatusCode::OK, "{bundle}");
        let found = bundle["total"]
            .as_u64()
            .unwrap_or_else(|| bundle["entry"].as_array().map_or(0, |e| e.len() as u64));
        assert_eq!(
            found,
            u64::from(host == A),
            "{host} searching A's family: {bundle}"
        );
    }

    // Each tenant's token on the other's ids: not found, at its own host and at the other's.
    for (host, who, other) in [
        (B, Some((B, "physicians")), &pa),
        (A, Some((A, "physicians")), &pb),
    ] {
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
        assert!(
            matches!(
                status,
                StatusCode::NOT_FOUND
                    | StatusCode::NO_CONTENT
                    | StatusCode::OK
                    | StatusCode::FORBIDDEN
            ),
            "{status} {body}"
        );
    }
    let other_host = Call::new(
        Method::GET,
        &format!("/fhir/Patient/{pa}"),
        A,
        Some((B, "physicians")),
    )
    .send(app)
    .await
    .0;
    assert_ne!(other_host, StatusCode::OK, "B's token at A's host");
    // Nothing of either was removed by the other's DELETE attempts.
    assert_eq!(count(&setup, &in_schema, a).await, 1);
    assert_eq!(count(&setup, in_shared, b).await, 1);

    // The tenant's search path is its schema alone: with its table gone, a write fails
    // rather than landing in the shared table.
    setup
        ._db
        .execute(&format!("DROP TABLE \"{schema}\".patients CASCADE"))
        .await;
    let (status, _, body) = Call::new(Method::POST, "/fhir/Patient", A, Some((A, "physicians")))
        .body(patient("Nowhere", "1970-01-01", "n-1"))
        .send(app)
        .await;
    assert!(status.is_server_error(), "{status} {body}");
    assert_eq!(
        count(&setup, in_shared, a).await,
        0,
        "fell back to clinical"
    );
}
