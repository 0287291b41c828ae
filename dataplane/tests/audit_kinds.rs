//! The audit trail of every resource kind (Patient, Encounter, DocumentReference,
//! MedicationRequest, `_include`d resources among a search's ids) and of refusals: each
//! interaction appends its entry with the ids it disclosed, and a refused request is
//! audited with who was refused.
//!
//! Needs the stack: `e2e/stack up && source .stack/env`.

mod support;

use axum::http::{Method, StatusCode};
use phoenix_dataplane::audit::cli::verify;
use support::audit::{entries, intact, interactions, tenant_id};
use support::clinical::{create_at, encounter, ids, medication, note, search};
use support::fhir::{A, B, Call, PHYSICIAN, create, patient, setup};

const ADMIN: Option<(&str, &str)> = Some((A, "admins"));
const FAMILY: &str = "Quixotewren";

#[tokio::test]
async fn refused_requests_are_audited_with_who_was_refused() {
    let s = setup().await;
    let admin = s._db.admin();
    let a = tenant_id(admin, "mercy").await;
    let id = create(&s.app, patient("Refused", "1980-01-01", "MRN-R")).await;
    let path = format!("/fhir/Patient/{id}");

    // No credential: 401, anonymous; from the connection's peer address.
    let peer: std::net::SocketAddr = "10.1.2.3:4444".parse().expect("address");
    let behind_peer = s
        .app
        .clone()
        .layer(axum::extract::connect_info::MockConnectInfo(peer));
    let (status, _, _) = Call::new(Method::GET, &path, A, None)
        .send(&behind_peer)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // A token of B's IdP on A's host: 401, anonymous (it proves nothing here).
    let (status, _, _) = Call::new(Method::DELETE, &path, A, Some((B, "physicians")))
        .send(&s.app)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // Authenticated without the permission: 403, with the subject.
    let (status, _, _) = Call::new(Method::PUT, &path, A, Some((A, "readonlys")))
        .body(patient("Refused", "1980-01-01", "MRN-R"))
        .send(&s.app)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, _) = Call::new(Method::GET, "/fhir/AuditEvent", A, PHYSICIAN)
        .header("x-request-id", "req-403")
        .send(&s.app)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let p = |s: &str| s.to_owned();
    let rows = entries(admin, a).await;
    assert_eq!(
        rows[1..],
        [
            (
                2,
                p("read"),
                p("Patient"),
                Some(id.clone()),
                None,
                401,
                p("anonymous")
            ),
            (
                3,
                p("delete"),
                p("Patient"),
                Some(id.clone()),
                None,
                401,
                p("anonymous")
            ),
            (
                4,
                p("update"),
                p("Patient"),
                Some(id.clone()),
                None,
                403,
                p("readonlys-1")
            ),
            (
                5,
                p("export"),
                p("AuditEvent"),
                None,
                None,
                403,
                p("physicians-1")
            ),
        ]
    );
    let request_id: String = admin
        .query_one(
            "SELECT request_id FROM clinical.audit_events WHERE tenant_id = $1 AND seq = 5",
            &[&a],
        )
        .await
        .expect("entry 5")
        .get(0);
    assert_eq!(request_id, "req-403");
    let sources: Vec<Option<String>> = admin
        .query(
            "SELECT source FROM clinical.audit_events WHERE tenant_id = $1 ORDER BY seq",
            &[&a],
        )
        .await
        .expect("sources")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        sources,
        [None, Some("10.1.2.3".to_owned()), None, None, None]
    );
    intact(&verify(&s.database, a).await.expect("verify"), 5);
}

#[tokio::test]
async fn every_resource_kind_is_audited_with_the_ids_it_discloses() {
    let s = setup().await;
    let admin = s._db.admin();
    let a = tenant_id(admin, "mercy").await;
    admin
        .batch_execute("CREATE EXTENSION IF NOT EXISTS pg_walinspect")
        .await
        .expect("pg_walinspect (contrib of the server package)");
    let pid = create(&s.app, patient(FAMILY, "1970-01-01", "MRN-K")).await;
    let before: String = admin
        .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
        .await
        .expect("position")
        .get(0);

    // An Encounter create: its entry commits in the same transaction, and the write's
    // consistency token covers that commit record.
    let (status, headers, created) = Call::new(Method::POST, "/fhir/Encounter", A, PHYSICIAN)
        .body(encounter(
            &pid,
            "2024-05-01T09:00:00Z",
            None,
            "in-progress",
            "dr-k",
        ))
        .send(&s.app)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let eid = created["id"].as_str().expect("id").to_owned();
    let token = headers
        .get("x-consistency-token")
        .and_then(|v| v.to_str().ok())
        .expect("a write answers a token")
        .to_owned();
    let xids: Vec<String> = admin
        .query(
            "SELECT xmin::text FROM clinical.encounters WHERE id = $1::text::uuid \
             UNION ALL SELECT xmin::text FROM clinical.audit_events \
             WHERE tenant_id = $2 AND action = 'create' AND resource_id = $1",
            &[&eid, &a],
        )
        .await
        .expect("xmins")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(xids.len(), 2, "{xids:?}");
    assert_eq!(xids[0], xids[1], "the entry left in another transaction");
    for sql in [
        "CREATE TABLE IF NOT EXISTS public.flush_marker (x int)",
        "SET synchronous_commit = on",
        "INSERT INTO public.flush_marker VALUES (1)",
        "RESET synchronous_commit",
    ] {
        admin.batch_execute(sql).await.expect("flush");
    }
    let row = admin
        .query_one(
            "SELECT end_lsn::text, $3::text::pg_lsn >= end_lsn \
             FROM pg_get_wal_records_info($1::text::pg_lsn, pg_current_wal_flush_lsn()) \
             WHERE resource_manager = 'Transaction' AND record_type = 'COMMIT' \
               AND xid::text = $2",
            &[&before, &xids[0], &token],
        )
        .await
        .expect("the create's commit record");
    let (end, covered): (String, bool) = (row.get(0), row.get(1));
    assert!(
        covered,
        "token {token} is before the commit record's end {end}"
    );

    // A search that includes the patient: both ids are in its entry, the patient's
    // qualified by its type.
    let bundle = search(
        &s.app,
        A,
        PHYSICIAN,
        &format!("/fhir/Encounter?patient={pid}&_include=Encounter:patient"),
    )
    .await;
    assert_eq!(ids(&bundle, "match"), [eid.as_str()]);
    assert_eq!(ids(&bundle, "include"), [pid.as_str()]);

    // Every interaction of the other two kinds.
    let did = create_at(
        &s.app,
        A,
        PHYSICIAN,
        note(&pid, Some(&eid), "2024-05-01T10:00:00Z"),
    )
    .await;
    let mid = create_at(&s.app, A, PHYSICIAN, medication(&pid, Some(&eid), "active")).await;
    for (kind, id) in [("DocumentReference", &did), ("MedicationRequest", &mid)] {
        let path = format!("/fhir/{kind}/{id}");
        let (status, _, current) = Call::new(Method::GET, &path, A, PHYSICIAN)
            .send(&s.app)
            .await;
        assert_eq!(status, StatusCode::OK, "{current}");
        let (status, _, _) = Call::new(Method::GET, &format!("{path}/_history/1"), A, PHYSICIAN)
            .send(&s.app)
            .await;
        assert_eq!(status, StatusCode::OK);
        let (status, _, updated) = Call::new(Method::PUT, &path, A, PHYSICIAN)
            .body(current)
            .send(&s.app)
            .await;
        assert_eq!(status, StatusCode::OK, "{updated}");
        search(
            &s.app,
            A,
            PHYSICIAN,
            &format!("/fhir/{kind}?patient={pid}&_include={kind}:patient"),
        )
        .await;
        let (status, _, _) = Call::new(Method::DELETE, &path, A, PHYSICIAN)
            .send(&s.app)
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (status, _, _) = Call::new(Method::GET, &path, A, PHYSICIAN)
            .send(&s.app)
            .await;
        assert_eq!(status, StatusCode::GONE);
    }

    let p = |s: &str| s.to_owned();
    let qualified = format!("Patient/{pid}");
    let mut expected = vec![
        (p("create"), p("Encounter"), Some(eid.clone()), None, 201),
        (
            p("search"),
            p("Encounter"),
            None,
            Some(vec![eid.clone(), qualified.clone()]),
            200,
        ),
        (
            p("create"),
            p("DocumentReference"),
            Some(did.clone()),
            None,
            201,
        ),
        (
            p("create"),
            p("MedicationRequest"),
            Some(mid.clone()),
            None,
            201,
        ),
    ];
    for (kind, id) in [("DocumentReference", &did), ("MedicationRequest", &mid)] {
        expected.extend([
            (p("read"), p(kind), Some(id.clone()), None, 200),
            (
                p("vread"),
                p(kind),
                Some(format!("{id}/_history/1")),
                None,
                200,
            ),
            (p("update"), p(kind), Some(id.clone()), None, 200),
            (
                p("search"),
                p(kind),
                None,
                Some(vec![id.clone(), qualified.clone()]),
                200,
            ),
            (p("delete"), p(kind), Some(id.clone()), None, 204),
            (p("read"), p(kind), Some(id.clone()), None, 410),
        ]);
    }
    assert_eq!(interactions(admin, a, 1).await, expected);
    let query: Option<String> = admin
        .query_one(
            "SELECT query FROM clinical.audit_events WHERE tenant_id = $1 AND seq = 3",
            &[&a],
        )
        .await
        .expect("search entry")
        .get(0);
    assert_eq!(query.as_deref(), Some("_include,patient"));
    intact(
        &verify(&s.database, a).await.expect("verify"),
        1 + expected.len() as u64,
    );

    // The export shows the included patient as a Patient, the match as an Encounter.
    let (status, _, bundle) = Call::new(Method::GET, "/fhir/AuditEvent", A, ADMIN)
        .send(&s.app)
        .await;
    assert_eq!(status, StatusCode::OK, "{bundle}");
    let search_event = &bundle["entry"][2]["resource"];
    let references: Vec<&str> = search_event["entity"]
        .as_array()
        .expect("entities")
        .iter()
        .filter_map(|e| e["what"]["reference"].as_str())
        .collect();
    assert_eq!(references, [format!("Encounter/{eid}"), qualified.clone()]);
}

#[tokio::test]
async fn refusals_on_every_resource_kind_are_audited() {
    let s = setup().await;
    let admin = s._db.admin();
    let a = tenant_id(admin, "mercy").await;
    let pid = create(&s.app, patient("Refusal", "1980-01-01", "MRN-RK")).await;
    let eid = create_at(
        &s.app,
        A,
        PHYSICIAN,
        encounter(&pid, "2024-05-01T09:00:00Z", None, "finished", "dr-r"),
    )
    .await;
    let readonly = Some((A, "readonlys"));

    // A read-only user writes a SOAP note: 403, nothing stored, the refusal audited.
    let (status, _, outcome) = Call::new(Method::POST, "/fhir/DocumentReference", A, readonly)
        .body(note(&pid, Some(&eid), "2024-05-01T10:00:00Z"))
        .send(&s.app)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{outcome}");
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    let notes: i64 = admin
        .query_one(
            "SELECT count(*) FROM clinical.document_references WHERE tenant_id = $1",
            &[&a],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(notes, 0);
    // ... deletes an Encounter: 403; nobody searches MedicationRequests: 401.
    let (status, _, _) = Call::new(
        Method::DELETE,
        &format!("/fhir/Encounter/{eid}"),
        A,
        readonly,
    )
    .send(&s.app)
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, _) = Call::new(
        Method::GET,
        &format!("/fhir/MedicationRequest?patient={pid}"),
        A,
        None,
    )
    .send(&s.app)
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // HEAD asks what GET does: an anonymous one is a refused read.
    let (status, _, _) = Call::new(Method::HEAD, &format!("/fhir/Encounter/{eid}"), A, None)
        .send(&s.app)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let p = |s: &str| s.to_owned();
    let rows = entries(admin, a).await;
    let refusals: Vec<(String, String, Option<String>, i16, String)> = rows[2..]
        .iter()
        .map(|r| (r.1.clone(), r.2.clone(), r.3.clone(), r.5, r.6.clone()))
        .collect();
    assert_eq!(
        refusals,
        [
            (
                p("create"),
                p("DocumentReference"),
                None,
                403,
                p("readonlys-1")
            ),
            (
                p("delete"),
                p("Encounter"),
                Some(eid.clone()),
                403,
                p("readonlys-1")
            ),
            (
                p("search"),
                p("MedicationRequest"),
                None,
                401,
                p("anonymous")
            ),
            (
                p("read"),
                p("Encounter"),
                Some(eid.clone()),
                401,
                p("anonymous")
            ),
        ]
    );
    intact(&verify(&s.database, a).await.expect("verify"), 6);
}
