//! `/fhir/MedicationRequest` against a real PostgreSQL through the whole router: the
//! lifecycle with versions, the patient and encounter that must be of the same tenant,
//! malformed requests, every search parameter, `_include` and isolation. Every body served
//! is checked with `fhir.resources`.

mod support;

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};
use support::clinical::*;
use support::fhir::*;

const B_PHYSICIAN: Option<(&str, &str)> = Some((B, "physicians"));
const MISSING: &str = "00000000-0000-4000-8000-000000000000";

#[tokio::test]
async fn a_request_is_created_read_updated_with_if_match_and_deleted_keeping_its_versions() {
    let s = setup().await;
    let patient = create(&s.app, patient("Chalmers", "1974-12-25", "1")).await;
    let visit = create_at(
        &s.app,
        A,
        PHYSICIAN,
        encounter(&patient, "2024-05-01", None, "finished", "dr"),
    )
    .await;
    let id = create_at(
        &s.app,
        A,
        PHYSICIAN,
        medication(&patient, Some(&visit), "active"),
    )
    .await;
    let path = format!("/fhir/MedicationRequest/{id}");
    let (status, headers, read) = Call::new(Method::GET, &path, A, PHYSICIAN)
        .send(&s.app)
        .await;
    assert_eq!(
        (status, etag(&headers)),
        (StatusCode::OK, "W/\"1\""),
        "{read}"
    );
    let mut stopped = read.clone();
    stopped["status"] = json!("stopped");
    let (status, headers, _) = Call::new(Method::PUT, &path, A, PHYSICIAN)
        .body(stopped.clone())
        .header("if-match", "W/\"1\"")
        .send(&s.app)
        .await;
    assert_eq!((status, etag(&headers)), (StatusCode::OK, "W/\"2\""));
    let (status, _, _) = Call::new(Method::PUT, &path, A, PHYSICIAN)
        .body(stopped)
        .header("if-match", "W/\"1\"")
        .send(&s.app)
        .await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED);
    let (_, _, first) = Call::new(Method::GET, &format!("{path}/_history/1"), A, PHYSICIAN)
        .send(&s.app)
        .await;
    assert_eq!(first["status"], "active");
    let (status, _, _) = Call::new(Method::DELETE, &path, A, PHYSICIAN)
        .send(&s.app)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _, _) = Call::new(Method::GET, &path, A, PHYSICIAN)
        .send(&s.app)
        .await;
    assert_eq!(status, StatusCode::GONE);
    let (status, _, _) = Call::new(Method::GET, &format!("{path}/_history/2"), A, PHYSICIAN)
        .send(&s.app)
        .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn references_across_tenants_are_refused_like_missing_ones_and_ids_are_404() {
    let s = setup().await;
    let patient = create(&s.app, patient("Mine", "1970-01-01", "m")).await;
    let theirs = create_at(
        &s.app,
        B,
        B_PHYSICIAN,
        support::fhir::patient("Theirs", "1970-01-01", "t"),
    )
    .await;
    let their_visit = create_at(
        &s.app,
        B,
        B_PHYSICIAN,
        encounter(&theirs, "2024-05-01", None, "finished", "dr"),
    )
    .await;
    let cases = [
        (
            medication(&theirs, None, "active"),
            "MedicationRequest.subject",
        ),
        (
            medication(MISSING, None, "active"),
            "MedicationRequest.subject",
        ),
        (
            medication(&patient, Some(&their_visit), "active"),
            "MedicationRequest.encounter",
        ),
        (
            medication(&patient, Some(MISSING), "active"),
            "MedicationRequest.encounter",
        ),
    ];
    for (body, expression) in cases {
        let (status, _, outcome) = Call::new(Method::POST, "/fhir/MedicationRequest", A, PHYSICIAN)
            .body(body)
            .send(&s.app)
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{outcome}");
        assert_eq!(outcome["issue"][0]["code"], "not-found");
        assert_eq!(outcome["issue"][0]["expression"], json!([expression]));
    }
    let id = create_at(&s.app, A, PHYSICIAN, medication(&patient, None, "active")).await;
    for path in [
        format!("/fhir/MedicationRequest/{id}"),
        format!("/fhir/MedicationRequest/{MISSING}"),
    ] {
        let (status, _, _) = Call::new(Method::GET, &path, B, B_PHYSICIAN)
            .send(&s.app)
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }
    assert_eq!(
        total(
            &s.app,
            B,
            B_PHYSICIAN,
            "/fhir/MedicationRequest?status=active"
        )
        .await,
        0
    );
}

#[tokio::test]
async fn malformed_requests_are_4xx_outcomes_naming_the_element() {
    let s = setup().await;
    let patient = create(&s.app, patient("Valid", "1970-01-01", "v")).await;
    let valid = medication(&patient, None, "active");
    let mut cases: Vec<(Value, &str)> = Vec::new();
    let mut bad = valid.clone();
    bad["resourceType"] = json!("MedicationStatement");
    cases.push((bad, "MedicationRequest.resourceType"));
    let mut bad = valid.clone();
    bad.as_object_mut()
        .expect("object")
        .remove("medicationCodeableConcept");
    cases.push((bad, "MedicationRequest.medication[x]"));
    let mut bad = valid.clone();
    bad["status"] = json!("ordered");
    cases.push((bad, "MedicationRequest.status"));
    let mut bad = valid.clone();
    bad["authoredOn"] = json!("01/05/2024");
    cases.push((bad, "MedicationRequest.authoredOn"));
    for (body, expression) in cases {
        let (status, _, outcome) = Call::new(Method::POST, "/fhir/MedicationRequest", A, PHYSICIAN)
            .body(body)
            .send(&s.app)
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{expression}: {outcome}");
        assert_eq!(
            outcome["issue"][0]["expression"][0], expression,
            "{outcome}"
        );
    }
}

#[tokio::test]
async fn requests_are_found_by_patient_status_and_encounter_and_include_their_patient() {
    let s = setup().await;
    let ann = create(&s.app, patient("Ann", "1970-01-01", "ann")).await;
    let bob = create(&s.app, patient("Bob", "1970-01-01", "bob")).await;
    let visit = create_at(
        &s.app,
        A,
        PHYSICIAN,
        encounter(&ann, "2024-05-01", None, "finished", "dr"),
    )
    .await;
    let active = create_at(
        &s.app,
        A,
        PHYSICIAN,
        medication(&ann, Some(&visit), "active"),
    )
    .await;
    let done = create_at(&s.app, A, PHYSICIAN, medication(&ann, None, "completed")).await;
    let bobs = create_at(&s.app, A, PHYSICIAN, medication(&bob, None, "active")).await;
    let sorted = |ids: &[&String]| {
        let mut ids: Vec<String> = ids.iter().map(|s| (*s).clone()).collect();
        ids.sort();
        ids
    };
    let cases: Vec<(String, Vec<String>)> = vec![
        (format!("patient={ann}"), sorted(&[&active, &done])),
        (format!("patient=Patient/{bob}"), sorted(&[&bobs])),
        ("status=active".into(), sorted(&[&active, &bobs])),
        ("status=completed,stopped".into(), sorted(&[&done])),
        (format!("status=active&patient={ann}"), sorted(&[&active])),
        (format!("encounter=Encounter/{visit}"), sorted(&[&active])),
        (format!("encounter={MISSING}"), vec![]),
    ];
    for (query, expected) in cases {
        let bundle = search(
            &s.app,
            A,
            PHYSICIAN,
            &format!("/fhir/MedicationRequest?{query}"),
        )
        .await;
        let mut found = ids(&bundle, "match");
        found.sort();
        assert_eq!(found, expected, "{query}");
    }
    let bundle = search(
        &s.app,
        A,
        PHYSICIAN,
        "/fhir/MedicationRequest?status=active&_include=MedicationRequest:patient&_include=MedicationRequest:subject",
    )
    .await;
    let mut included = ids(&bundle, "include");
    included.sort();
    assert_eq!(included, sorted(&[&ann, &bob]), "each patient once");
}
