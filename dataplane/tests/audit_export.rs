//! The `AuditEvent` export (valid FHIR R4, paged, needs the audit permission), reads the
//! replica served audited on the primary, and a request whose entry cannot be written is
//! not answered and writes nothing.
//!
//! Needs the stack: `e2e/stack up && source .stack/env`.

mod support;

use axum::http::{Method, StatusCode};
use phoenix_dataplane::audit::cli::verify;
use serde_json::Value;
use support::audit::{Row, entries, intact, tenant_id};
use support::fhir::{A, Call, PHYSICIAN, create, patient, setup};

const ADMIN: Option<(&str, &str)> = Some((A, "admins"));

#[tokio::test]
async fn the_audit_event_export_is_valid_fhir_pages_and_needs_the_audit_permission() {
    let s = setup().await;
    let admin = s._db.admin();
    let a = tenant_id(admin, "mercy").await;
    let id = create(&s.app, patient("Export", "1980-01-01", "MRN-E")).await;
    let (status, _, _) = Call::new(Method::GET, &format!("/fhir/Patient/{id}"), A, PHYSICIAN)
        .send(&s.app)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = Call::new(Method::GET, "/fhir/Patient?family=Exp", A, PHYSICIAN)
        .send(&s.app)
        .await;
    assert_eq!(status, StatusCode::OK);

    // A physician reads PHI but not the audit trail.
    let (status, _, outcome) = Call::new(Method::GET, "/fhir/AuditEvent", A, PHYSICIAN)
        .send(&s.app)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{outcome}");
    assert_eq!(outcome["resourceType"], "OperationOutcome");

    // Every body is validated by fhir.resources in `send`; two per page.
    let mut events: Vec<Value> = Vec::new();
    let mut next = Some("/fhir/AuditEvent?_count=2".to_owned());
    let mut pages = 0;
    while let Some(path) = next {
        let (status, _, bundle) = Call::new(Method::GET, &path, A, ADMIN).send(&s.app).await;
        assert_eq!(status, StatusCode::OK, "{bundle}");
        pages += 1;
        for entry in bundle["entry"].as_array().into_iter().flatten() {
            events.push(entry["resource"].clone());
        }
        next = bundle["link"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|l| l["relation"] == "next")
            .and_then(|l| l["url"].as_str())
            .map(|url| url.trim_start_matches(&format!("https://{A}")).to_owned());
        assert!(pages < 10, "paging does not end");
    }
    // create, read, search, then each export page is audited as it is served: the first
    // page sees 3 entries, the second 4 (the first export added one)...
    let subtypes: Vec<&str> = events
        .iter()
        .filter_map(|e| e["subtype"][0]["code"].as_str())
        .collect();
    assert_eq!(
        &subtypes[..3],
        ["create", "read", "search-type"],
        "{events:#?}"
    );
    assert_eq!(
        events[0]["entity"][0]["what"]["reference"],
        format!("Patient/{id}")
    );
    assert_eq!(
        events[2]["entity"][1]["what"]["reference"],
        format!("Patient/{id}")
    );
    assert_eq!(
        events[0]["agent"][0]["who"]["identifier"]["value"],
        "physicians-1"
    );
    assert_eq!(events[0]["outcome"], "0");
    let ids: Vec<&str> = events.iter().filter_map(|e| e["id"].as_str()).collect();
    let mut unique = ids.clone();
    unique.dedup();
    assert_eq!(ids, unique, "a page repeated an event");

    // The exports were audited too, with what they returned (and the physician's refusal).
    let rows = entries(admin, a).await;
    let exports: Vec<&Row> = rows
        .iter()
        .filter(|r| r.1 == "export" && r.5 == 200)
        .collect();
    assert_eq!(exports.len(), pages);
    assert_eq!(exports[0].4, Some(vec!["1".to_owned(), "2".to_owned()]));

    // `date` bounds what is exported.
    let (status, _, bundle) =
        Call::new(Method::GET, "/fhir/AuditEvent?date=lt2000-01-01", A, ADMIN)
            .send(&s.app)
            .await;
    assert_eq!(status, StatusCode::OK, "{bundle}");
    assert!(bundle.get("entry").is_none(), "{bundle}");
    let today = jiff::Timestamp::now().strftime("%Y-%m-%d").to_string();
    let (status, _, bundle) = Call::new(
        Method::GET,
        &format!("/fhir/AuditEvent?date=ge{today}&_count=100"),
        A,
        ADMIN,
    )
    .send(&s.app)
    .await;
    assert_eq!(status, StatusCode::OK, "{bundle}");
    assert!(
        bundle["entry"].as_array().is_some_and(|e| e.len() >= 3),
        "{bundle}"
    );
    let (status, _, outcome) = Call::new(Method::GET, "/fhir/AuditEvent?date=yesterday", A, ADMIN)
        .send(&s.app)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{outcome}");

    // The CapabilityStatement lists the export.
    let (_, _, statement) = Call::new(Method::GET, "/fhir/metadata", A, None)
        .send(&s.app)
        .await;
    let types: Vec<&str> = statement["rest"][0]["resource"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["type"].as_str())
        .collect();
    assert!(types.contains(&"AuditEvent"), "{statement}");
    intact(
        &verify(&s.database, a).await.expect("verify"),
        rows.len() as u64 + 2,
    );
}

#[tokio::test]
async fn reads_served_by_the_replica_are_audited_on_the_primary() {
    let s = setup().await;
    let admin = s._db.admin();
    let a = tenant_id(admin, "mercy").await;
    let mut config = phoenix_dataplane::Config::new(s._db.dataplane_url());
    config.reader_url = Some(s._db.replica_url());
    config.database_ca_file = s._db.ca_file();
    config.pool_size = 2;
    let split = phoenix_dataplane::db::Database::new(&config).expect("pools");
    let app = support::fhir::fresh_app(&s.catalog, &split);

    let id = create(&app, patient("Replica", "1980-01-01", "MRN-P")).await;
    let path = format!("/fhir/Patient/{id}");
    // The replica serves the read once it replayed the create (no read-your-writes yet).
    support::eventually(
        "the replica serves the new patient",
        std::time::Duration::from_secs(10),
        || async {
            let (status, _, _) = Call::new(Method::GET, &path, A, PHYSICIAN).send(&app).await;
            (status == StatusCode::OK)
                .then_some(())
                .ok_or_else(|| status.to_string())
        },
    )
    .await;
    let missing = format!("/fhir/Patient/{}", "00000000-0000-4000-8000-000000000000");
    let (status, _, _) = Call::new(Method::GET, &missing, A, PHYSICIAN)
        .send(&app)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let rows = entries(admin, a).await;
    let last_two: Vec<(String, i16)> = rows[rows.len() - 2..]
        .iter()
        .map(|r| (r.1.clone(), r.5))
        .collect();
    assert_eq!(
        last_two,
        [("read".to_owned(), 200), ("read".to_owned(), 404)]
    );
    assert!(rows.iter().skip(1).all(|r| r.1 == "read"), "{rows:?}");
    intact(
        &verify(&s.database, a).await.expect("verify"),
        rows.len() as u64,
    );
}

#[tokio::test]
async fn a_request_whose_entry_cannot_be_written_is_not_answered_and_writes_nothing() {
    let s = setup().await;
    let admin = s._db.admin();
    let a = tenant_id(admin, "mercy").await;
    let id = create(&s.app, patient("Atomic", "1980-01-01", "MRN-A1")).await;
    // Every new entry now fails (a constraint that refuses all new rows).
    s._db
        .execute(
            "ALTER TABLE clinical.audit_events ADD CONSTRAINT refuse_all CHECK (false) NOT VALID",
        )
        .await;

    let (status, _, outcome) = Call::new(Method::POST, "/fhir/Patient", A, PHYSICIAN)
        .body(patient("Atomic", "1980-01-01", "MRN-A2"))
        .send(&s.app)
        .await;
    assert!(status.is_server_error(), "{status} {outcome}");
    let (status, _, outcome) = Call::new(Method::GET, &format!("/fhir/Patient/{id}"), A, PHYSICIAN)
        .send(&s.app)
        .await;
    assert!(
        status.is_server_error(),
        "a read was answered unaudited: {status} {outcome}"
    );
    let patients: i64 = admin
        .query_one(
            "SELECT count(*) FROM clinical.patients WHERE tenant_id = $1",
            &[&a],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(patients, 1, "the create committed without its audit entry");

    s._db
        .execute("ALTER TABLE clinical.audit_events DROP CONSTRAINT refuse_all")
        .await;
    intact(&verify(&s.database, a).await.expect("verify"), 1);
}
