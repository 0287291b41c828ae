//! `/fhir/DocumentReference` — the SOAP note, its sections as base64 attachments —
//! against a real PostgreSQL through the whole router: the lifecycle with versions, the
//! patient and encounter that must be of the same tenant, malformed notes, every search
//! parameter, `_include` and isolation. Every body served is checked with `fhir.resources`.

mod support;

use axum::http::{Method, StatusCode, header};
use serde_json::{Value, json};
use support::clinical::*;
use support::fhir::*;

const B_PHYSICIAN: Option<(&str, &str)> = Some((B, "physicians"));
const MISSING: &str = "00000000-0000-4000-8000-000000000000";

/// A patient of A with one encounter: their ids.
async fn visit(app: &axum::Router, family: &str, start: &str) -> (String, String) {
    let patient = create(app, patient(family, "1970-01-01", family)).await;
    let encounter = create_at(
        app,
        A,
        PHYSICIAN,
        encounter(&patient, start, None, "finished", "dr"),
    )
    .await;
    (patient, encounter)
}

#[tokio::test]
async fn a_note_is_created_read_amended_with_if_match_and_deleted_keeping_its_versions() {
    let s = setup().await;
    let (patient, encounter) = visit(&s.app, "Chalmers", "2024-05-01T09:00:00Z").await;
    let body = note(&patient, Some(&encounter), "2024-05-01T09:45:00Z");
    let (status, headers, created) =
        Call::new(Method::POST, "/fhir/DocumentReference", A, PHYSICIAN)
            .body(body.clone())
            .send(&s.app)
            .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    assert_eq!(
        headers[header::LOCATION].to_str().expect("location"),
        format!("https://{A}/fhir/DocumentReference/{id}/_history/1")
    );
    assert_eq!(
        created["content"], body["content"],
        "the sections are kept as sent"
    );

    let path = format!("/fhir/DocumentReference/{id}");
    let (status, headers, read) = Call::new(Method::GET, &path, A, PHYSICIAN)
        .send(&s.app)
        .await;
    assert_eq!((status, etag(&headers)), (StatusCode::OK, "W/\"1\""));
    assert_eq!(read, created);

    let mut amended = read.clone();
    amended["docStatus"] = json!("amended");
    let (status, headers, updated) = Call::new(Method::PUT, &path, A, PHYSICIAN)
        .body(amended.clone())
        .header("if-match", "W/\"1\"")
        .send(&s.app)
        .await;
    assert_eq!(
        (status, etag(&headers)),
        (StatusCode::OK, "W/\"2\""),
        "{updated}"
    );
    let (status, _, _) = Call::new(Method::PUT, &path, A, PHYSICIAN)
        .body(amended)
        .header("if-match", "W/\"1\"")
        .send(&s.app)
        .await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED);
    let (_, _, first) = Call::new(Method::GET, &format!("{path}/_history/1"), A, PHYSICIAN)
        .send(&s.app)
        .await;
    assert_eq!(first["docStatus"], "final");

    // The encounter cannot go while the note references it.
    let (status, _, outcome) = Call::new(
        Method::DELETE,
        &format!("/fhir/Encounter/{encounter}"),
        A,
        PHYSICIAN,
    )
    .send(&s.app)
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{outcome}");

    let (status, _, _) = Call::new(Method::DELETE, &path, A, PHYSICIAN)
        .send(&s.app)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _, _) = Call::new(Method::GET, &path, A, PHYSICIAN)
        .send(&s.app)
        .await;
    assert_eq!(status, StatusCode::GONE);
    let (status, _, _) = Call::new(Method::GET, &format!("{path}/_history/3"), A, PHYSICIAN)
        .send(&s.app)
        .await;
    assert_eq!(status, StatusCode::GONE);
    let (status, _, _) = Call::new(
        Method::DELETE,
        &format!("/fhir/Encounter/{encounter}"),
        A,
        PHYSICIAN,
    )
    .send(&s.app)
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn a_patient_or_encounter_of_another_tenant_is_refused_exactly_like_a_missing_one() {
    let s = setup().await;
    let (patient, encounter) = visit(&s.app, "Mine", "2024-05-01").await;
    let their_patient = create_at(
        &s.app,
        B,
        B_PHYSICIAN,
        support::fhir::patient("Theirs", "1970-01-01", "t"),
    )
    .await;
    let their_encounter = create_at(
        &s.app,
        B,
        B_PHYSICIAN,
        support::clinical::encounter(&their_patient, "2024-05-01", None, "finished", "dr"),
    )
    .await;
    let refused = |status: StatusCode, outcome: &Value| {
        (
            status,
            outcome["issue"][0]["code"].clone(),
            outcome["issue"][0]["expression"].clone(),
        )
    };
    for subject in [&their_patient, &MISSING.to_owned()] {
        let (status, _, outcome) = Call::new(Method::POST, "/fhir/DocumentReference", A, PHYSICIAN)
            .body(note(subject, Some(&encounter), "2024-05-01T10:00:00Z"))
            .send(&s.app)
            .await;
        assert_eq!(
            refused(status, &outcome),
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                json!("not-found"),
                json!(["DocumentReference.subject"])
            ),
            "{outcome}"
        );
    }
    for context in [&their_encounter, &MISSING.to_owned()] {
        let (status, _, outcome) = Call::new(Method::POST, "/fhir/DocumentReference", A, PHYSICIAN)
            .body(note(&patient, Some(context), "2024-05-01T10:00:00Z"))
            .send(&s.app)
            .await;
        assert_eq!(
            refused(status, &outcome),
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                json!("not-found"),
                json!(["DocumentReference.context.encounter[0]"])
            ),
            "{outcome}"
        );
    }
    assert_eq!(
        total(
            &s.app,
            A,
            PHYSICIAN,
            "/fhir/DocumentReference?_summary=count"
        )
        .await,
        0
    );

    // And A's note is B's 404, exactly like a missing one.
    let id = create_at(
        &s.app,
        A,
        PHYSICIAN,
        note(&patient, Some(&encounter), "2024-05-01T10:00:00Z"),
    )
    .await;
    for path in [
        format!("/fhir/DocumentReference/{id}"),
        format!("/fhir/DocumentReference/{MISSING}"),
        format!("/fhir/DocumentReference/{id}/_history/1"),
    ] {
        let (status, _, outcome) = Call::new(Method::GET, &path, B, B_PHYSICIAN)
            .send(&s.app)
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(outcome["issue"][0]["code"], "not-found");
    }
    let (status, _, _) = Call::new(
        Method::DELETE,
        &format!("/fhir/DocumentReference/{id}"),
        B,
        B_PHYSICIAN,
    )
    .send(&s.app)
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let by_encounter = format!("/fhir/DocumentReference?encounter={encounter}&_summary=count");
    assert_eq!(total(&s.app, B, B_PHYSICIAN, &by_encounter).await, 0);
    assert_eq!(total(&s.app, A, PHYSICIAN, &by_encounter).await, 1);
}

#[tokio::test]
async fn malformed_notes_are_4xx_outcomes_naming_the_element() {
    let s = setup().await;
    let (patient, encounter) = visit(&s.app, "Valid", "2024-05-01").await;
    let valid = note(&patient, Some(&encounter), "2024-05-01T10:00:00Z");
    let mut cases: Vec<(Value, &str)> = Vec::new();
    let mut bad = valid.clone();
    bad["content"][1]["attachment"]["data"] = json!("T2JqZWN0aXZl*not base64*");
    cases.push((bad, "DocumentReference.content[1].attachment.data"));
    let mut bad = valid.clone();
    bad["content"][2]["attachment"]["data"] = json!("QUJD=");
    cases.push((bad, "DocumentReference.content[2].attachment.data"));
    let mut bad = valid.clone();
    bad["content"][0]["attachment"]["size"] = json!(3);
    cases.push((bad, "DocumentReference.content[0].attachment.size"));
    let mut bad = valid.clone();
    bad["content"][3]["attachment"]
        .as_object_mut()
        .expect("object")
        .remove("contentType");
    cases.push((bad, "DocumentReference.content[3].attachment.contentType"));
    let mut bad = valid.clone();
    bad["resourceType"] = json!("Composition");
    cases.push((bad, "DocumentReference.resourceType"));
    let mut bad = valid.clone();
    bad["date"] = json!("2024-05-01T25:00:00Z");
    cases.push((bad, "DocumentReference.date"));
    let mut bad = valid.clone();
    bad["status"] = json!("final");
    cases.push((bad, "DocumentReference.status"));
    let mut bad = valid.clone();
    bad["section"] = json!([{"title": "Subjective"}]);
    cases.push((bad, "DocumentReference.section"));
    for (body, expression) in cases {
        let (status, _, outcome) = Call::new(Method::POST, "/fhir/DocumentReference", A, PHYSICIAN)
            .body(body)
            .send(&s.app)
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{expression}: {outcome}");
        assert_eq!(
            outcome["issue"][0]["expression"][0], expression,
            "{outcome}"
        );
    }
    assert_eq!(
        total(
            &s.app,
            A,
            PHYSICIAN,
            "/fhir/DocumentReference?_summary=count"
        )
        .await,
        0
    );
}

#[tokio::test]
async fn notes_are_found_by_patient_encounter_and_date_and_include_their_patient() {
    let s = setup().await;
    let (ann, ann_visit) = visit(&s.app, "Ann", "2024-05-01").await;
    let (bob, bob_visit) = visit(&s.app, "Bob", "2024-05-02").await;
    let first = create_at(
        &s.app,
        A,
        PHYSICIAN,
        note(&ann, Some(&ann_visit), "2024-05-01T23:30:00Z"),
    )
    .await;
    let late = create_at(
        &s.app,
        A,
        PHYSICIAN,
        note(&ann, None, "2024-05-02T00:30:00+02:00"),
    )
    .await;
    let bobs = create_at(
        &s.app,
        A,
        PHYSICIAN,
        note(&bob, Some(&bob_visit), "2024-05-02T12:00:00Z"),
    )
    .await;
    let sorted = |ids: &[&String]| {
        let mut ids: Vec<String> = ids.iter().map(|s| (*s).clone()).collect();
        ids.sort();
        ids
    };
    let cases: Vec<(String, Vec<String>)> = vec![
        (format!("patient={ann}"), sorted(&[&first, &late])),
        (format!("patient=Patient/{bob}"), sorted(&[&bobs])),
        (format!("encounter={ann_visit}"), sorted(&[&first])),
        (
            format!("encounter=Encounter/{bob_visit},{ann_visit}"),
            sorted(&[&first, &bobs]),
        ),
        (format!("encounter={MISSING}"), vec![]),
        // 00:30 at +02:00 is 1 May 22:30 UTC: days are UTC days.
        ("date=2024-05-01".into(), sorted(&[&first, &late])),
        ("date=gt2024-05-01".into(), sorted(&[&bobs])),
        ("date=ge2024-05-02".into(), sorted(&[&bobs])),
        ("date=lt2024-05-02".into(), sorted(&[&first, &late])),
        ("date=le2024-04-30".into(), vec![]),
        (
            format!("date=2024-05&patient={ann}"),
            sorted(&[&first, &late]),
        ),
    ];
    for (query, expected) in cases {
        let bundle = search(
            &s.app,
            A,
            PHYSICIAN,
            &format!("/fhir/DocumentReference?{query}"),
        )
        .await;
        let mut found = ids(&bundle, "match");
        found.sort();
        assert_eq!(found, expected, "{query}");
    }
    for include in ["DocumentReference:subject", "DocumentReference:patient"] {
        let bundle = search(
            &s.app,
            A,
            PHYSICIAN,
            &format!("/fhir/DocumentReference?patient={ann}&_include={include}"),
        )
        .await;
        assert_eq!(ids(&bundle, "match").len(), 2);
        assert_eq!(ids(&bundle, "include"), [ann.as_str()], "{include}: once");
    }
    let (status, _, outcome) = Call::new(
        Method::GET,
        "/fhir/DocumentReference?encounter=Patient/x",
        A,
        PHYSICIAN,
    )
    .send(&s.app)
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{outcome}");
    assert_eq!(outcome["issue"][0]["expression"][0], "encounter");
}
