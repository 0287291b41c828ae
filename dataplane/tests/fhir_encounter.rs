//! `/fhir/Encounter` against a real PostgreSQL, through the whole router with tokens
//! signed by the test key: the lifecycle with versions, the subject that must be a patient
//! of the same tenant, tenant isolation, malformed input and who may read and write (search
//! is in `fhir_encounter_search.rs`). Every body served is checked with `fhir.resources` R4.

mod support;

use axum::http::{Method, StatusCode, header};
use serde_json::{Value, json};
use support::clinical::*;
use support::fhir::*;

const B_PHYSICIAN: Option<(&str, &str)> = Some((B, "physicians"));
const MISSING: &str = "00000000-0000-4000-8000-000000000000";

#[tokio::test]
async fn an_encounter_is_created_read_updated_with_if_match_and_deleted_keeping_its_versions() {
    let s = setup().await;
    let patient = create(&s.app, patient("Chalmers", "1974-12-25", "1")).await;
    let body = encounter(
        &patient,
        "2024-05-01T09:00:00Z",
        None,
        "in-progress",
        "dr-a",
    );
    let (status, headers, created) = Call::new(Method::POST, "/fhir/Encounter", A, PHYSICIAN)
        .body(body)
        .send(&s.app)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    assert_eq!(
        headers[header::LOCATION].to_str().expect("location"),
        format!("https://{A}/fhir/Encounter/{id}/_history/1")
    );
    assert_eq!(etag(&headers), "W/\"1\"");
    assert_eq!(created["meta"]["versionId"], "1");

    let path = format!("/fhir/Encounter/{id}");
    let (status, _, read) = Call::new(Method::GET, &path, A, PHYSICIAN)
        .send(&s.app)
        .await;
    assert_eq!((status, &read), (StatusCode::OK, &created));

    let mut finished = read.clone();
    finished["status"] = json!("finished");
    finished["period"]["end"] = json!("2024-05-01T09:40:00Z");
    let (status, headers, updated) = Call::new(Method::PUT, &path, A, PHYSICIAN)
        .body(finished.clone())
        .header("if-match", "W/\"1\"")
        .send(&s.app)
        .await;
    assert_eq!(
        (status, etag(&headers)),
        (StatusCode::OK, "W/\"2\""),
        "{updated}"
    );
    assert_eq!(updated["status"], "finished");
    let (status, _, outcome) = Call::new(Method::PUT, &path, A, PHYSICIAN)
        .body(finished.clone())
        .header("if-match", "W/\"1\"")
        .send(&s.app)
        .await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED, "{outcome}");
    assert_eq!(
        total(&s.app, A, PHYSICIAN, "/fhir/Encounter?status=finished").await,
        1,
        "the search columns follow the update"
    );
    assert_eq!(
        total(&s.app, A, PHYSICIAN, "/fhir/Encounter?status=in-progress").await,
        0
    );

    for (version, status_code) in [("1", "in-progress"), ("2", "finished")] {
        let (status, _, old) = Call::new(
            Method::GET,
            &format!("{path}/_history/{version}"),
            A,
            PHYSICIAN,
        )
        .send(&s.app)
        .await;
        assert_eq!(status, StatusCode::OK, "{old}");
        assert_eq!(
            (old["status"].as_str(), old["meta"]["versionId"].as_str()),
            (Some(status_code), Some(version))
        );
    }

    // The patient cannot go while an encounter references it.
    let (status, _, outcome) = Call::new(
        Method::DELETE,
        &format!("/fhir/Patient/{patient}"),
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
    let (status, _, outcome) = Call::new(Method::GET, &path, A, PHYSICIAN)
        .send(&s.app)
        .await;
    assert_eq!(
        (status, &outcome["issue"][0]["code"]),
        (StatusCode::GONE, &json!("deleted"))
    );
    let (status, _, _) = Call::new(Method::GET, &format!("{path}/_history/3"), A, PHYSICIAN)
        .send(&s.app)
        .await;
    assert_eq!(status, StatusCode::GONE, "the deletion is version 3");
    let (status, _, _) = Call::new(Method::GET, &format!("{path}/_history/2"), A, PHYSICIAN)
        .send(&s.app)
        .await;
    assert_eq!(status, StatusCode::OK, "kept versions stay readable");
    let (status, _, _) = Call::new(Method::DELETE, &path, A, PHYSICIAN)
        .send(&s.app)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "deleting again succeeds");
    let (status, _, _) = Call::new(Method::PUT, &path, A, PHYSICIAN)
        .body(finished)
        .send(&s.app)
        .await;
    assert_eq!(status, StatusCode::GONE);
    let (status, _, _) = Call::new(
        Method::DELETE,
        &format!("/fhir/Patient/{patient}"),
        A,
        PHYSICIAN,
    )
    .send(&s.app)
    .await;
    assert_eq!(
        status,
        StatusCode::NO_CONTENT,
        "no encounter references it any more"
    );
}

/// The outcome of refusing a reference, without the id it names.
fn refusal(status: StatusCode, outcome: &Value) -> (StatusCode, Value, Value) {
    (
        status,
        outcome["issue"][0]["code"].clone(),
        outcome["issue"][0]["expression"].clone(),
    )
}

#[tokio::test]
async fn a_subject_of_another_tenant_is_refused_exactly_like_a_missing_one() {
    let s = setup().await;
    let mine = create(&s.app, patient("Mine", "1980-01-01", "m")).await;
    let theirs = create_at(&s.app, B, B_PHYSICIAN, patient("Theirs", "1980-01-01", "t")).await;
    let deleted = create(&s.app, patient("Gone", "1980-01-01", "g")).await;
    let (status, _, _) = Call::new(
        Method::DELETE,
        &format!("/fhir/Patient/{deleted}"),
        A,
        PHYSICIAN,
    )
    .send(&s.app)
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    let mut refusals = Vec::new();
    for subject in [theirs.as_str(), MISSING, deleted.as_str(), "not-a-uuid"] {
        let (status, _, outcome) = Call::new(Method::POST, "/fhir/Encounter", A, PHYSICIAN)
            .body(encounter(subject, "2024-05-01", None, "planned", "dr"))
            .send(&s.app)
            .await;
        assert_eq!(outcome["resourceType"], "OperationOutcome");
        refusals.push(refusal(status, &outcome));
    }
    let expected = (
        StatusCode::UNPROCESSABLE_ENTITY,
        json!("not-found"),
        json!(["Encounter.subject"]),
    );
    assert!(refusals.iter().all(|r| *r == expected), "{refusals:?}");
    assert_eq!(
        total(&s.app, A, PHYSICIAN, "/fhir/Encounter?_summary=count").await,
        0,
        "nothing was written"
    );

    // Moving an encounter to another tenant's patient is refused the same way.
    let id = create_at(
        &s.app,
        A,
        PHYSICIAN,
        encounter(&mine, "2024-05-01", None, "planned", "dr"),
    )
    .await;
    let mut moved = encounter(&theirs, "2024-05-01", None, "planned", "dr");
    moved["id"] = json!(id);
    let (status, _, outcome) =
        Call::new(Method::PUT, &format!("/fhir/Encounter/{id}"), A, PHYSICIAN)
            .body(moved)
            .send(&s.app)
            .await;
    assert_eq!(refusal(status, &outcome), expected);
    let (_, _, still) = Call::new(Method::GET, &format!("/fhir/Encounter/{id}"), A, PHYSICIAN)
        .send(&s.app)
        .await;
    assert_eq!(still["subject"]["reference"], format!("Patient/{mine}"));
    assert_eq!(still["meta"]["versionId"], "1");
}

#[tokio::test]
async fn another_tenants_encounter_is_a_404_like_a_missing_one() {
    let s = setup().await;
    let patient = create(&s.app, patient("Isolated", "1980-01-01", "iso")).await;
    let id = create_at(
        &s.app,
        A,
        PHYSICIAN,
        encounter(&patient, "2024-05-01", None, "planned", "dr"),
    )
    .await;
    for (method, path) in [
        (Method::GET, format!("/fhir/Encounter/{id}")),
        (Method::GET, format!("/fhir/Encounter/{id}/_history/1")),
        (Method::DELETE, format!("/fhir/Encounter/{id}")),
        (Method::PUT, format!("/fhir/Encounter/{id}")),
    ] {
        let missing = path.replace(&id, MISSING);
        let mut results = Vec::new();
        for path in [&path, &missing] {
            let mut call = Call::new(method.clone(), path, B, B_PHYSICIAN);
            if method == Method::PUT {
                let theirs = create_at(
                    &s.app,
                    B,
                    B_PHYSICIAN,
                    support::fhir::patient("B", "1990-01-01", "b"),
                )
                .await;
                let mut body = encounter(&theirs, "2024-05-01", None, "planned", "dr");
                body["id"] = json!(path.rsplit('/').next());
                call = call.body(body);
            }
            let (status, _, outcome) = call.send(&s.app).await;
            results.push((status, outcome["issue"][0]["code"].clone()));
        }
        assert_eq!(results[0], results[1], "{method} {path}");
        assert_eq!(results[0].0, StatusCode::NOT_FOUND, "{method} {path}");
    }
    let count = format!("/fhir/Encounter?patient={patient}&_summary=count");
    assert_eq!(total(&s.app, B, B_PHYSICIAN, &count).await, 0);
    assert_eq!(
        total(&s.app, B, B_PHYSICIAN, "/fhir/Encounter?_summary=count").await,
        0
    );
    let (status, _, _) = Call::new(Method::GET, &format!("/fhir/Encounter/{id}"), A, PHYSICIAN)
        .send(&s.app)
        .await;
    assert_eq!(status, StatusCode::OK, "still there for A");
}

#[tokio::test]
async fn malformed_encounters_are_4xx_outcomes_naming_the_element() {
    let s = setup().await;
    let patient = create(&s.app, patient("Valid", "1980-01-01", "v")).await;
    let valid = encounter(&patient, "2024-05-01T09:00:00Z", None, "finished", "dr");
    let mut cases: Vec<(Value, &str)> = Vec::new();
    let mut bad = valid.clone();
    bad["resourceType"] = json!("Patient");
    cases.push((bad, "Encounter.resourceType"));
    let mut bad = valid.clone();
    bad["period"]["start"] = json!("2024-05-01T09:00:00");
    cases.push((bad, "Encounter.period.start"));
    let mut bad = valid.clone();
    bad["period"]["end"] = json!("2024-02-30");
    cases.push((bad, "Encounter.period.end"));
    let mut bad = valid.clone();
    bad["status"] = json!("done");
    cases.push((bad, "Encounter.status"));
    let mut bad = valid.clone();
    bad.as_object_mut().expect("object").remove("class");
    cases.push((bad, "Encounter.class"));
    let mut bad = valid.clone();
    bad["subject"] = json!({"reference": format!("Group/{patient}")});
    cases.push((bad, "Encounter.subject.reference"));
    let mut bad = valid.clone();
    bad["reason"] = json!([{"text": "typo of reasonCode"}]);
    cases.push((bad, "Encounter.reason"));
    for (body, expression) in cases {
        let (status, _, outcome) = Call::new(Method::POST, "/fhir/Encounter", A, PHYSICIAN)
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
        total(&s.app, A, PHYSICIAN, "/fhir/Encounter?_summary=count").await,
        0
    );
}

#[tokio::test]
async fn clinicians_write_readonly_reads_admins_get_nothing_and_metadata_lists_what_is_served() {
    let s = setup().await;
    let patient = create(&s.app, patient("Perm", "1980-01-01", "p")).await;
    let body = encounter(&patient, "2024-05-01", None, "planned", "dr");
    let nurse = create_at(&s.app, A, Some((A, "nurses")), body.clone()).await;
    let path = format!("/fhir/Encounter/{nurse}");
    let readonly = Some((A, "readonlys"));
    let admin = Some((A, "admins"));
    assert_eq!(
        Call::new(Method::GET, &path, A, readonly)
            .send(&s.app)
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        Call::new(Method::POST, "/fhir/Encounter", A, readonly)
            .body(body)
            .send(&s.app)
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        Call::new(Method::DELETE, &path, A, readonly)
            .send(&s.app)
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        Call::new(Method::GET, &path, A, admin).send(&s.app).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        Call::new(Method::GET, "/fhir/Encounter", A, None)
            .send(&s.app)
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );

    let (status, _, statement) = Call::new(Method::GET, "/fhir/metadata", A, None)
        .send(&s.app)
        .await;
    assert_eq!(status, StatusCode::OK);
    let resources = statement["rest"][0]["resource"]
        .as_array()
        .expect("resources");
    let served: Vec<(String, Vec<String>, Vec<String>)> = resources
        .iter()
        .map(|r| {
            let strings = |v: &Value, key: &str| -> Vec<String> {
                v.as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|x| {
                        if key.is_empty() {
                            x.as_str()
                        } else {
                            x[key].as_str()
                        }
                    })
                    .map(str::to_owned)
                    .collect()
            };
            (
                r["type"].as_str().unwrap_or_default().to_owned(),
                strings(&r["searchParam"], "name"),
                strings(&r["searchInclude"], ""),
            )
        })
        .collect();
    let owned = |items: &[&str]| items.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    assert_eq!(
        served,
        [
            (
                "Patient".to_owned(),
                owned(&["identifier", "name", "family", "birthdate"]),
                vec![]
            ),
            (
                "Encounter".to_owned(),
                owned(&["patient", "date", "status", "practitioner"]),
                owned(&["Encounter:patient", "Encounter:subject"])
            ),
            (
                "DocumentReference".to_owned(),
                owned(&["patient", "encounter", "date"]),
                owned(&["DocumentReference:patient", "DocumentReference:subject"])
            ),
            (
                "MedicationRequest".to_owned(),
                owned(&["patient", "status", "encounter"]),
                owned(&["MedicationRequest:patient", "MedicationRequest:subject"])
            ),
            // The audit trail's export (`Permission::Audit`).
            ("AuditEvent".to_owned(), owned(&["date"]), vec![]),
        ]
    );
}
