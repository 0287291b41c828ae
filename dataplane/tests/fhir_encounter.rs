//! `/fhir/Encounter` against a real PostgreSQL, through the whole router with tokens
//! signed by the test key: the lifecycle with versions, the subject that must be a patient
//! of the same tenant, every search parameter with date prefixes, `_sort` with keyset
//! paging across pages (and a restart), `_include` of the patient, tenant isolation and
//! who may read and write. Every body served is checked with `fhir.resources` R4.

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
async fn every_search_parameter_matches_with_date_prefixes_on_the_period() {
    let s = setup().await;
    let ann = create(&s.app, patient("Ann", "1980-01-01", "ann")).await;
    let bob = create(&s.app, patient("Bob", "1980-01-01", "bob")).await;
    // Ann: 1 May (closed, dr-a), 3 May (open, in progress, dr-b). Bob: 30 April to 2 May
    // (dr-a), June (planned, dr-c).
    let may1 = create_at(
        &s.app,
        A,
        PHYSICIAN,
        encounter(
            &ann,
            "2024-05-01T09:00:00Z",
            Some("2024-05-01T09:30:00Z"),
            "finished",
            "dr-a",
        ),
    )
    .await;
    let may3 = create_at(
        &s.app,
        A,
        PHYSICIAN,
        encounter(
            &ann,
            "2024-05-03T22:00:00-04:00",
            None,
            "in-progress",
            "dr-b",
        ),
    )
    .await;
    let across = create_at(
        &s.app,
        A,
        PHYSICIAN,
        encounter(
            &bob,
            "2024-04-30T23:00:00Z",
            Some("2024-05-02T01:00:00Z"),
            "finished",
            "dr-a",
        ),
    )
    .await;
    let june = create_at(
        &s.app,
        A,
        PHYSICIAN,
        encounter(&bob, "2024-06", Some("2024-06"), "planned", "dr-c"),
    )
    .await;
    let expect = |ids: &[&String]| {
        let mut ids: Vec<String> = ids.iter().map(|s| (*s).clone()).collect();
        ids.sort();
        ids
    };
    let cases: Vec<(String, Vec<String>)> = vec![
        (format!("patient={ann}"), expect(&[&may1, &may3])),
        (format!("patient=Patient/{bob}"), expect(&[&across, &june])),
        (
            format!("patient={ann},{bob}&status=finished"),
            expect(&[&may1, &across]),
        ),
        (format!("patient={MISSING}"), vec![]),
        ("patient=not-a-uuid".into(), vec![]),
        ("status=planned,in-progress".into(), expect(&[&may3, &june])),
        (
            "status=http://hl7.org/fhir/encounter-status|planned".into(),
            expect(&[&june]),
        ),
        (
            "practitioner=Practitioner/dr-a".into(),
            expect(&[&may1, &across]),
        ),
        ("practitioner=dr-c".into(), expect(&[&june])),
        // eq: the period lies within the day (the open one never does).
        ("date=2024-05-01".into(), expect(&[&may1])),
        ("date=eq2024-05".into(), expect(&[&may1])),
        ("date=2024-06".into(), expect(&[&june])),
        // ge / gt: reaches into / after the value (an open end always does).
        ("date=ge2024-05-02".into(), expect(&[&may3, &across, &june])),
        ("date=gt2024-05-02".into(), expect(&[&may3, &june])),
        // le / lt: starts within or before / before the value (-04:00 is 4 May in UTC).
        ("date=lt2024-05-01".into(), expect(&[&across])),
        ("date=le2024-05-01".into(), expect(&[&may1, &across])),
        ("date=le2024-05-03".into(), expect(&[&may1, &across])),
        ("date=le2024-05-04".into(), expect(&[&may1, &may3, &across])),
        (
            "date=ge2024-05-01&date=lt2024-06".into(),
            expect(&[&may1, &may3, &across]),
        ),
    ];
    for (query, expected) in cases {
        let bundle = search(&s.app, A, PHYSICIAN, &format!("/fhir/Encounter?{query}")).await;
        let mut found = ids(&bundle, "match");
        found.sort();
        assert_eq!(found, expected, "{query}");
        assert_eq!(bundle["total"], json!(expected.len()), "{query}");
    }
    for bad in [
        "/fhir/Encounter?date=yesterday",
        "/fhir/Encounter?date=ne2024",
        "/fhir/Encounter?patient=Group/1",
        "/fhir/Encounter?_sort=date&_sort=-date",
    ] {
        let (status, _, outcome) = Call::new(Method::GET, bad, A, PHYSICIAN).send(&s.app).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {outcome}");
    }
    let (status, _, outcome) = Call::new(Method::GET, "/fhir/Encounter?_sort=status", A, PHYSICIAN)
        .header("prefer", "handling=strict")
        .send(&s.app)
        .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "an unserved sort, strictly: {outcome}"
    );
}

#[tokio::test]
async fn sorting_by_date_pages_every_match_once_in_order_both_ways_across_a_restart() {
    let s = setup().await;
    let patient = create(&s.app, patient("Sorted", "1980-01-01", "s")).await;
    // Seven encounters on five distinct starts: ties must be broken by id, across pages.
    let starts = [
        "2024-03-01T08:00:00Z",
        "2024-01-15T08:00:00Z",
        "2024-03-01T08:00:00Z",
        "2024-02-01T08:00:00.250Z",
        "2024-02-01T08:00:00.250Z",
        "2023-12-31T23:59:59.999Z",
        "2024-03-01T08:00:00Z",
    ];
    let mut created = Vec::new();
    for start in starts {
        let id = create_at(
            &s.app,
            A,
            PHYSICIAN,
            encounter(&patient, start, None, "finished", "dr"),
        )
        .await;
        created.push((start.parse::<jiff::Timestamp>().expect("instant"), id));
    }
    let other = create(&s.app, support::fhir::patient("Other", "1980-01-01", "o")).await;
    create_at(
        &s.app,
        A,
        PHYSICIAN,
        encounter(&other, "2024-02-01", None, "finished", "dr"),
    )
    .await;
    created.sort();
    let ascending: Vec<String> = created.iter().map(|(_, id)| id.clone()).collect();
    let mut descending = ascending.clone();
    descending.reverse();

    let (seen, pages) = every_page(
        &s,
        A,
        PHYSICIAN,
        &format!("/fhir/Encounter?patient={patient}&_sort=date&_count=3"),
    )
    .await;
    assert_eq!((seen, pages), (ascending, 3));
    let (seen, pages) = every_page(
        &s,
        A,
        PHYSICIAN,
        &format!("/fhir/Encounter?_sort=-date&patient={patient}&_count=2"),
    )
    .await;
    assert_eq!((seen, pages), (descending, 4));

    // A cursor belongs to its search: not to the other direction, nor to an unsorted one.
    let first = search(
        &s.app,
        A,
        PHYSICIAN,
        &format!("/fhir/Encounter?patient={patient}&_sort=date&_count=3"),
    )
    .await;
    let next_page = next(&first, A).expect("a next page");
    let cursor = next_page.split("_cursor=").nth(1).expect("a cursor");
    for query in [
        format!("patient={patient}&_sort=-date&_count=3&_cursor={cursor}"),
        format!("patient={patient}&_count=3&_cursor={cursor}"),
    ] {
        let (status, _, outcome) = Call::new(
            Method::GET,
            &format!("/fhir/Encounter?{query}"),
            A,
            PHYSICIAN,
        )
        .send(&s.app)
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {outcome}");
    }
}

#[tokio::test]
async fn include_adds_each_referenced_patient_once() {
    let s = setup().await;
    let ann = create(&s.app, patient("Ann", "1980-01-01", "ann")).await;
    let bob = create(&s.app, patient("Bob", "1980-01-01", "bob")).await;
    create(&s.app, patient("Unrelated", "1980-01-01", "u")).await;
    for (who, start) in [
        (&ann, "2024-05-01"),
        (&ann, "2024-05-02"),
        (&bob, "2024-05-03"),
    ] {
        create_at(
            &s.app,
            A,
            PHYSICIAN,
            encounter(who, start, None, "finished", "dr"),
        )
        .await;
    }
    let bundle = search(
        &s.app,
        A,
        PHYSICIAN,
        "/fhir/Encounter?_include=Encounter:patient&_include=Encounter:subject",
    )
    .await;
    assert_eq!(ids(&bundle, "match").len(), 3);
    let mut included = ids(&bundle, "include");
    included.sort();
    let mut expected = vec![ann.clone(), bob.clone()];
    expected.sort();
    assert_eq!(included, expected, "each patient once, none unreferenced");
    assert_eq!(bundle["total"], 3, "included resources are not counted");
    let entry = bundle["entry"]
        .as_array()
        .expect("entries")
        .iter()
        .find(|e| e["search"]["mode"] == "include")
        .expect("an include");
    assert_eq!(entry["resource"]["resourceType"], "Patient");
    assert_eq!(
        entry["fullUrl"],
        format!(
            "https://{A}/fhir/Patient/{}",
            entry["resource"]["id"].as_str().expect("id")
        )
    );

    // Only the page's patients; and none without _include.
    let page = search(
        &s.app,
        A,
        PHYSICIAN,
        "/fhir/Encounter?_sort=date&_count=1&_include=Encounter:patient",
    )
    .await;
    assert_eq!(ids(&page, "include"), [ann.as_str()]);
    let last = search(
        &s.app,
        A,
        PHYSICIAN,
        "/fhir/Encounter?_sort=-date&_count=1&_include=Encounter:subject",
    )
    .await;
    assert_eq!(ids(&last, "include"), [bob]);
    let plain = search(&s.app, A, PHYSICIAN, "/fhir/Encounter").await;
    assert!(ids(&plain, "include").is_empty());
    // Tenant B includes nothing of A's.
    let theirs = search(
        &s.app,
        B,
        B_PHYSICIAN,
        "/fhir/Encounter?_include=Encounter:patient",
    )
    .await;
    assert!(theirs.get("entry").is_none(), "{theirs}");
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
