//! `GET /analytics/encounters` against a real PostgreSQL, through the whole router with
//! tokens signed by the test key: encounters and notes of two tenants written through the
//! FHIR API, then the exact figures per UTC day, department and provider; the range's
//! edges (`from` inclusive, `to` exclusive); the other tenant never counted; the
//! `MeasureReport` form (checked with `fhir.resources`); precise 400s; who may ask.

mod support;

use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use support::clinical::*;
use support::fhir::*;
use tower::ServiceExt;

const B_PHYSICIAN: Option<(&str, &str)> = Some((B, "physicians"));

/// `GET path` at `host` as `who` with extra `headers`: status, headers and JSON body. The
/// plain JSON answer is not FHIR, so only FHIR bodies are validated, by the caller.
async fn get(
    app: &axum::Router,
    host: &str,
    who: Option<(&str, &str)>,
    path: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, HeaderMap, Value) {
    let mut request = Request::builder()
        .method(Method::GET)
        .uri(path)
        .header(header::HOST, host);
    if let Some((token_host, group)) = who {
        request = request.header(
            header::AUTHORIZATION,
            format!("Bearer {}", token(token_host, group)),
        );
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::empty()).expect("request"))
        .await
        .expect("response");
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.expect("body").to_bytes();
    let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (parts.status, parts.headers, json)
}

/// The analytics of `query` at `host` as `who`, which must be a 200 in plain JSON.
async fn analytics(
    app: &axum::Router,
    host: &str,
    who: Option<(&str, &str)>,
    query: &str,
) -> Value {
    let path = format!("/analytics/encounters?{query}");
    let (status, headers, body) = get(app, host, who, &path, &[]).await;
    assert_eq!(status, StatusCode::OK, "{path}: {body}");
    assert_eq!(headers[header::CONTENT_TYPE], "application/json");
    assert_eq!(headers[header::VARY], "accept");
    body
}

/// An encounter of `patient` from `start` (to `end`) with `status`, in `department` (a
/// serviceType code; `None`: no serviceType) by `provider` (a Practitioner id; `None`: no
/// participant).
fn visit(
    patient: &str,
    start: &str,
    end: Option<&str>,
    status: &str,
    department: Option<&str>,
    provider: Option<&str>,
) -> Value {
    let mut body = encounter(patient, start, end, status, provider.unwrap_or("x"));
    let fields = body.as_object_mut().expect("an object");
    match department {
        Some(code) => {
            fields.insert("serviceType".into(), json!({"coding": [{"code": code}]}));
        }
        None => {
            fields.remove("serviceType");
        }
    }
    if provider.is_none() {
        fields.remove("participant");
    }
    body
}

/// A group as the JSON answers it.
fn group(key: Value, encounters: i64, finished: i64, average: Value, notes: i64) -> Value {
    json!({"key": key, "encounters": encounters, "finishedWithEnd": finished,
        "averageDurationSeconds": average, "notesCompleted": notes})
}

/// Tenant A's encounters of 2024-05-01 .. 2024-05-03 (and around), with notes; tenant B's
/// on the same days, same department and same provider id, which A must never count.
async fn seed(s: &Setup) {
    let a = Some((A, "physicians"));
    let p = create(&s.app, patient("Chalmers", "1974-12-25", "1")).await;
    let at = |body| create_at(&s.app, A, a, body);

    // 2024-05-01 (UTC): 10 min at the range's first instant, and 30 min.
    at(visit(
        &p,
        "2024-05-01T00:00:00Z",
        Some("2024-05-01T00:10:00Z"),
        "finished",
        Some("cardiology"),
        Some("dr-a"),
    ))
    .await;
    let e1 = at(visit(
        &p,
        "2024-05-01T08:00:00Z",
        Some("2024-05-01T08:30:00Z"),
        "finished",
        Some("cardiology"),
        Some("dr-a"),
    ))
    .await;
    // 2024-05-02 in UTC although 2024-05-01 at its own offset: 60 min.
    let e2 = at(visit(
        &p,
        "2024-05-01T23:30:00-02:00",
        Some("2024-05-02T02:30:00Z"),
        "finished",
        Some("cardiology"),
        Some("dr-b"),
    ))
    .await;
    // Ongoing (no end, not averaged, its note counts), and cancelled with an end (not
    // averaged), without department or provider.
    let e3 = at(visit(
        &p,
        "2024-05-02T10:00:00Z",
        None,
        "in-progress",
        Some("neurology"),
        Some("dr-a"),
    ))
    .await;
    at(visit(
        &p,
        "2024-05-02T11:00:00Z",
        Some("2024-05-02T11:20:00Z"),
        "cancelled",
        None,
        None,
    ))
    .await;
    // 2024-05-03: 45 min, the department given as text only.
    let mut e5 = visit(
        &p,
        "2024-05-03T09:00:00Z",
        Some("2024-05-03T09:45:00Z"),
        "finished",
        None,
        Some("dr-b"),
    );
    e5["serviceType"] = json!({"text": "oncology"});
    at(e5).await;
    // Never counted: entered in error (with a note), and just outside the range on either
    // side (with a note).
    let wrong = at(visit(
        &p,
        "2024-05-03T10:00:00Z",
        Some("2024-05-03T10:10:00Z"),
        "entered-in-error",
        Some("cardiology"),
        Some("dr-a"),
    ))
    .await;
    let after = at(visit(
        &p,
        "2024-05-04T00:00:00Z",
        Some("2024-05-04T00:05:00Z"),
        "finished",
        Some("cardiology"),
        Some("dr-a"),
    ))
    .await;
    at(visit(
        &p,
        "2024-04-30T23:59:59Z",
        Some("2024-05-01T00:20:00Z"),
        "finished",
        Some("cardiology"),
        Some("dr-a"),
    ))
    .await;

    // Notes: two current and one superseded on e1, one on e2 and e3; others that must not
    // count (no encounter, an entered-in-error or out-of-range encounter).
    let note_of = |encounter: Option<&str>, status: &str| {
        let mut body = note(&p, encounter, "2024-05-01T09:00:00Z");
        body["status"] = json!(status);
        body
    };
    for (encounter, status) in [
        (Some(e1.as_str()), "current"),
        (Some(e1.as_str()), "current"),
        (Some(e1.as_str()), "superseded"),
        (Some(e2.as_str()), "current"),
        (Some(e3.as_str()), "current"),
        (None, "current"),
        (Some(wrong.as_str()), "current"),
        (Some(after.as_str()), "current"),
    ] {
        at(note_of(encounter, status)).await;
    }

    // Tenant B, the same days, department and provider id.
    let b = Some((B, "physicians"));
    let (_, _, pb) = Call::new(Method::POST, "/fhir/Patient", B, b)
        .body(patient("Other", "1980-01-01", "9"))
        .send(&s.app)
        .await;
    let pb = pb["id"].as_str().expect("id").to_owned();
    for day in ["2024-05-01", "2024-05-02", "2024-05-03"] {
        let id = create_at(
            &s.app,
            B,
            b,
            visit(
                &pb,
                &format!("{day}T09:00:00Z"),
                Some(&format!("{day}T17:00:00Z")),
                "finished",
                Some("cardiology"),
                Some("dr-a"),
            ),
        )
        .await;
        create_at(&s.app, B, b, note(&pb, Some(&id), "2024-05-01T09:00:00Z")).await;
    }
}

#[tokio::test]
async fn encounters_are_counted_per_utc_day_department_and_provider_with_durations_and_notes() {
    let s = setup().await;
    seed(&s).await;
    let range = "from=2024-05-01&to=2024-05-04";

    let by_day = analytics(&s.app, A, PHYSICIAN, range).await;
    assert_eq!(
        by_day,
        json!({
            "tenant": "mercy", "groupBy": "day", "timeZone": "UTC",
            "from": "2024-05-01T00:00:00Z", "to": "2024-05-04T00:00:00Z",
            "groups": [
                group(json!("2024-05-01"), 2, 2, json!(1200.0), 2),
                group(json!("2024-05-02"), 3, 1, json!(3600.0), 2),
                group(json!("2024-05-03"), 1, 1, json!(2700.0), 0),
            ],
            "total": {"encounters": 6, "finishedWithEnd": 4, "averageDurationSeconds": 2175.0,
                      "notesCompleted": 4},
        })
    );

    let by_department =
        analytics(&s.app, A, PHYSICIAN, &format!("{range}&groupBy=department")).await;
    assert_eq!(by_department["groupBy"], "department");
    assert_eq!(
        by_department["groups"],
        json!([
            group(json!("cardiology"), 3, 3, json!(2000.0), 3),
            group(json!("neurology"), 1, 0, Value::Null, 1),
            group(json!("oncology"), 1, 1, json!(2700.0), 0),
            group(Value::Null, 1, 0, Value::Null, 0),
        ])
    );

    let by_provider = analytics(&s.app, A, PHYSICIAN, &format!("{range}&groupBy=provider")).await;
    assert_eq!(
        by_provider["groups"],
        json!([
            group(json!("Practitioner/dr-a"), 3, 2, json!(1200.0), 3),
            group(json!("Practitioner/dr-b"), 2, 2, json!(3150.0), 1),
            group(Value::Null, 1, 0, Value::Null, 0),
        ])
    );
    assert_eq!(by_provider["total"], by_day["total"]);

    // Tenant B sees its own three days only, whatever the grouping.
    let b = analytics(&s.app, B, B_PHYSICIAN, &format!("{range}&groupBy=provider")).await;
    assert_eq!(b["tenant"], "stjude");
    assert_eq!(
        b["groups"],
        json!([group(json!("Practitioner/dr-a"), 3, 3, json!(28800.0), 3)])
    );
}

#[tokio::test]
async fn from_is_inclusive_and_to_exclusive_at_the_microsecond() {
    let s = setup().await;
    seed(&s).await;
    let total = |query: &'static str| {
        let app = s.app.clone();
        async move { analytics(&app, A, PHYSICIAN, query).await["total"]["encounters"].clone() }
    };
    // The encounter at 2024-05-04T00:00:00Z is in the day it starts, not the one before.
    assert_eq!(total("from=2024-05-03&to=2024-05-04").await, 1);
    assert_eq!(total("from=2024-05-04&to=2024-05-05").await, 1);
    assert_eq!(
        total("from=2024-05-03T23:59:59.999999Z&to=2024-05-04T00:00:00Z").await,
        0
    );
    assert_eq!(
        total("from=2024-05-04T00:00:00Z&to=2024-05-04T00:00:00.000001Z").await,
        1
    );
    // The one at 2024-04-30T23:59:59Z, with an offset on the bounds.
    assert_eq!(
        total("from=2024-05-01T01:59:59%2B02:00&to=2024-05-01T02:00:00%2B02:00").await,
        1
    );
    assert_eq!(
        total("from=2024-05-01T02:00:00%2B02:00&to=2024-05-01T02:00:01%2B02:00").await,
        1
    );
    // A range without encounters answers no group.
    let empty = analytics(&s.app, A, PHYSICIAN, "from=2023-01-01&to=2024-01-01").await;
    assert_eq!(empty["groups"], json!([]));
    assert_eq!(
        empty["total"],
        json!({"encounters": 0, "finishedWithEnd": 0,
        "averageDurationSeconds": null, "notesCompleted": 0})
    );
}

#[tokio::test]
async fn the_measure_report_has_a_group_per_bucket_and_is_valid_fhir() {
    let s = setup().await;
    seed(&s).await;
    for (how, headers, query) in [
        (
            "Accept",
            &[("accept", "application/fhir+json")][..],
            "groupBy=department",
        ),
        (
            "_format",
            &[][..],
            "groupBy=department&_format=application/fhir%2Bjson",
        ),
    ] {
        let path = format!("/analytics/encounters?from=2024-05-01&to=2024-05-04&{query}");
        let (status, response_headers, report) = get(&s.app, A, PHYSICIAN, &path, headers).await;
        assert_eq!(status, StatusCode::OK, "{how}: {report}");
        assert_eq!(
            response_headers[header::CONTENT_TYPE],
            "application/fhir+json"
        );
        assert_valid_fhir(&report);
        assert_eq!(report["resourceType"], "MeasureReport");
        assert_eq!(
            (&report["status"], &report["type"]),
            (&json!("complete"), &json!("summary"))
        );
        assert_eq!(
            report["period"],
            json!({"start": "2024-05-01T00:00:00Z", "end": "2024-05-03T23:59:59.999999Z"})
        );
        let groups = report["group"].as_array().expect("groups");
        let keys: Vec<&Value> = groups.iter().map(|g| &g["code"]["text"]).collect();
        assert_eq!(
            keys,
            ["cardiology", "neurology", "oncology", "no department"]
        );
        let counts = |g: &Value| -> Vec<i64> {
            g["population"]
                .as_array()
                .expect("populations")
                .iter()
                .map(|p| p["count"].as_i64().expect("count"))
                .collect()
        };
        assert_eq!(counts(&groups[0]), [3, 3, 3]);
        assert_eq!(
            groups[0]["population"][0]["code"]["coding"][0]["code"],
            "initial-population"
        );
        assert_eq!(groups[0]["measureScore"]["value"], 2000.0);
        assert_eq!(groups[0]["measureScore"]["code"], "s");
        assert_eq!(counts(&groups[1]), [1, 0, 1]);
        assert!(groups[1].get("measureScore").is_none(), "{}", groups[1]);
    }
}

#[tokio::test]
async fn bad_parameters_are_400_outcomes_naming_the_parameter() {
    let s = setup().await;
    let cases = [
        ("to=2024-05-02", "from", "parameter from is required"),
        (
            "from=2024-05&to=2024-06-01",
            "from",
            "from must be a date YYYY-MM-DD",
        ),
        (
            "from=2024-05-01T10:00:00&to=2024-06-01",
            "from",
            "with Z or an offset",
        ),
        ("from=2024-05-02&to=2024-05-01", "to", "must be after from"),
        (
            "from=2024-01-01&to=2025-01-02",
            "to",
            "longer than 366 days",
        ),
        (
            "from=2024-05-01&to=2024-05-02&groupBy=week",
            "groupBy",
            "day, department or provider",
        ),
        (
            "from=2024-05-01&to=2024-05-02&_format=xml",
            "_format",
            "not \"xml\"",
        ),
        (
            "from=2024-05-01&to=2024-05-02&department=x",
            "department",
            "unknown parameter",
        ),
        (
            "from=2024-05-01&to=2024-05-02&to=2024-05-03",
            "to",
            "more than once",
        ),
    ];
    for (query, parameter, message) in cases {
        let path = format!("/analytics/encounters?{query}");
        let (status, headers, outcome) = get(&s.app, A, PHYSICIAN, &path, &[]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {outcome}");
        assert_eq!(headers[header::CONTENT_TYPE], "application/fhir+json");
        assert_valid_fhir(&outcome);
        assert_eq!(outcome["resourceType"], "OperationOutcome");
        let issue = &outcome["issue"][0];
        assert_eq!(issue["code"], "invalid", "{query}");
        assert_eq!(issue["expression"], json!([parameter]), "{query}");
        let diagnostics = issue["diagnostics"].as_str().expect("diagnostics");
        assert!(diagnostics.contains(message), "{query}: {diagnostics}");
    }
}

#[tokio::test]
async fn analytics_need_a_token_of_the_tenant_and_the_read_analytics_permission() {
    let s = setup().await;
    let path = "/analytics/encounters?from=2024-05-01&to=2024-05-02";
    for group in ["physicians", "nurses", "readonlys", "admins"] {
        let (status, _, body) = get(&s.app, A, Some((A, group)), path, &[]).await;
        assert_eq!(status, StatusCode::OK, "{group}: {body}");
    }
    for group in ["auditors", "visitors"] {
        let (status, _, outcome) = get(&s.app, A, Some((A, group)), path, &[]).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{group}: {outcome}");
        assert_valid_fhir(&outcome);
        assert_eq!(outcome["issue"][0]["code"], "forbidden");
        let diagnostics = outcome["issue"][0]["diagnostics"].as_str().expect("text");
        assert!(diagnostics.contains("read_analytics"), "{diagnostics}");
    }
    // No token, and a token of B's IdP at A's host.
    for who in [None, B_PHYSICIAN] {
        let (status, headers, outcome) = get(&s.app, A, who, path, &[]).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{who:?}: {outcome}");
        assert!(headers.contains_key(header::WWW_AUTHENTICATE));
        assert_valid_fhir(&outcome);
        assert_eq!(outcome["issue"][0]["code"], "login");
    }
}

#[tokio::test]
async fn analytics_read_on_the_replica_and_see_the_writes_whose_token_they_carry() {
    let s = setup_with(|db| db.split_database(2, Duration::from_secs(5))).await;
    s._db.replica_caught_up().await;
    let p = create(&s.app, patient("Chalmers", "1974-12-25", "1")).await;
    let body = visit(
        &p,
        "2024-05-01T08:00:00Z",
        Some("2024-05-01T08:30:00Z"),
        "finished",
        Some("cardiology"),
        Some("dr-a"),
    );
    let (status, headers, created) = Call::new(Method::POST, "/fhir/Encounter", A, PHYSICIAN)
        .body(body)
        .send(&s.app)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let token = headers["x-consistency-token"]
        .to_str()
        .expect("a token")
        .to_owned();

    let path = "/analytics/encounters?from=2024-05-01&to=2024-05-02";
    let (status, headers, body) = get(
        &s.app,
        A,
        PHYSICIAN,
        path,
        &[("x-consistency-token", &token)],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(headers["x-read-pool"], "reader");
    assert_eq!(body["total"]["encounters"], 1, "{body}");

    let (status, _, outcome) = get(
        &s.app,
        A,
        PHYSICIAN,
        path,
        &[("x-consistency-token", "not-a-position")],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{outcome}");
    assert_valid_fhir(&outcome);
}
