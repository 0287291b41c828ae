//! Encounter search against a real PostgreSQL through the HTTP API: every search parameter
//! (with the date prefixes over the period), `_sort=date` paging that survives a restart in
//! both directions, and `_include` of the referenced patient. Every body served is checked
//! with `fhir.resources` R4.
//!
//! Needs the stack: `e2e/stack up && source .stack/env`.

mod support;

use axum::http::{Method, StatusCode};
use serde_json::json;
use support::clinical::*;
use support::fhir::*;

const B_PHYSICIAN: Option<(&str, &str)> = Some((B, "physicians"));
const MISSING: &str = "00000000-0000-4000-8000-000000000000";

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
