//! Malformed input at every FHIR resource type, through the whole router against a real
//! PostgreSQL: invalid JSON, bodies that are not resources or of another type, oversized
//! bodies, bad ids, bad search syntax, bad cursors, bad version headers. Each answer is a
//! 4xx with an `OperationOutcome` that says what is wrong (validated by `fhir.resources`
//! like every body) — never a 500 and never a panic (a panic would fail the request
//! with no response at all).

mod support;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use support::fhir::*;
use tower::ServiceExt;

const TYPES: [&str; 4] = [
    "Patient",
    "Encounter",
    "DocumentReference",
    "MedicationRequest",
];
const MISSING: &str = "00000000-0000-4000-8000-000000000000";

/// Sends a raw body (not necessarily JSON) as a physician of A.
async fn raw(
    app: &axum::Router,
    method: Method,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (StatusCode, Value) {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, A)
        .header(
            header::AUTHORIZATION,
            format!("Bearer {}", token(A, "physicians")),
        )
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from(body))
        .expect("request");
    let response = app.clone().oneshot(request).await.expect("a response");
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let json: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    if !json.is_null() {
        assert_valid_fhir(&json);
    }
    (status, json)
}

/// Asserts a client error with an OperationOutcome whose first issue says something.
fn refused(what: &str, status: StatusCode, outcome: &Value) -> String {
    assert!(
        status.is_client_error(),
        "{what}: answered {status}: {outcome}"
    );
    assert_eq!(
        outcome["resourceType"], "OperationOutcome",
        "{what}: {outcome}"
    );
    let text = outcome["issue"][0]["diagnostics"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(!text.is_empty(), "{what}: no diagnostics: {outcome}");
    text
}

#[tokio::test]
async fn bodies_that_are_not_valid_resources_are_4xx_outcomes_at_every_type() {
    let s = setup().await;
    let fhir = "application/fhir+json";
    for kind in TYPES {
        let path = format!("/fhir/{kind}");
        let cases: Vec<(&str, &str, Vec<u8>)> = vec![
            ("truncated JSON", fhir, br#"{"resourceType": "#.to_vec()),
            ("not JSON", fhir, b"resourceType=Patient".to_vec()),
            ("a JSON array", fhir, b"[]".to_vec()),
            ("a JSON string", fhir, br#""Patient""#.to_vec()),
            ("an empty body", fhir, Vec::new()),
            ("no resourceType", fhir, br#"{"id": "x"}"#.to_vec()),
            (
                "another resourceType",
                fhir,
                json!({"resourceType": "Observation", "status": "final"})
                    .to_string()
                    .into_bytes(),
            ),
            (
                "a resourceType not a string",
                fhir,
                br#"{"resourceType": 7}"#.to_vec(),
            ),
            (
                "nested garbage",
                fhir,
                format!(r#"{{"resourceType": "{kind}", "meta": [[[["#).into_bytes(),
            ),
        ];
        for (what, content_type, body) in cases {
            let (status, outcome) = raw(&s.app, Method::POST, &path, content_type, body).await;
            refused(&format!("POST {kind}: {what}"), status, &outcome);
        }
        // Another type in the body is named as such.
        let (status, outcome) = raw(
            &s.app,
            Method::POST,
            &path,
            fhir,
            json!({"resourceType": "Observation"})
                .to_string()
                .into_bytes(),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{outcome}");
        let text = refused(&format!("POST {kind}: Observation"), status, &outcome);
        assert!(text.contains("Observation"), "{kind}: {text}");

        // A body far over the limit is refused before it is read whole.
        let huge = format!(
            r#"{{"resourceType": "{kind}", "text": {{"div": "{}"}}}}"#,
            "x".repeat(8 * 1024 * 1024)
        );
        let (status, outcome) = raw(&s.app, Method::POST, &path, fhir, huge.into_bytes()).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{kind}: {outcome}");
        refused(&format!("POST {kind}: 8 MiB"), status, &outcome);

        // An update whose body names another id, and a malformed If-Match.
        let target = format!("/fhir/{kind}/{MISSING}");
        let body = json!({"resourceType": kind, "id": "11111111-1111-4111-8111-111111111111"});
        let (status, _, outcome) = Call::new(Method::PUT, &target, A, PHYSICIAN)
            .body(body)
            .send(&s.app)
            .await;
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "PUT {kind} id mismatch: {outcome}"
        );
        refused(&format!("PUT {kind}: id mismatch"), status, &outcome);
        let (status, _, outcome) = Call::new(Method::PUT, &target, A, PHYSICIAN)
            .body(json!({"resourceType": kind, "id": MISSING}))
            .header("if-match", "W/\"one\"")
            .send(&s.app)
            .await;
        refused(&format!("PUT {kind}: bad If-Match"), status, &outcome);
    }
}

#[tokio::test]
async fn bad_ids_and_bad_searches_are_4xx_outcomes_at_every_type() {
    let s = setup().await;
    for kind in TYPES {
        for id in [
            "not-a-uuid",
            "1",
            "%00",
            "00000000-0000-4000-8000-00000000000g",
        ] {
            for method in [Method::GET, Method::DELETE] {
                let path = format!("/fhir/{kind}/{id}");
                let (status, _, outcome) = Call::new(method.clone(), &path, A, PHYSICIAN)
                    .send(&s.app)
                    .await;
                assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {outcome}");
                refused(&format!("{method} {path}"), status, &outcome);
            }
            let path = format!("/fhir/{kind}/{MISSING}/_history/{id}");
            let (status, _, outcome) = Call::new(Method::GET, &path, A, PHYSICIAN)
                .send(&s.app)
                .await;
            refused(&format!("GET {path}"), status, &outcome);
        }
        let searches = [
            "_count=abc",
            "_count=-1",
            "_cursor=not-a-cursor",
            "_cursor=",
        ];
        for query in searches {
            let path = format!("/fhir/{kind}?{query}");
            let (status, _, outcome) = Call::new(Method::GET, &path, A, PHYSICIAN)
                .send(&s.app)
                .await;
            refused(&format!("GET {path}"), status, &outcome);
        }
        // Under strict handling, an unknown parameter or value is refused by name.
        for (query, named) in [
            ("no-such-param=1", "no-such-param"),
            ("_summary=everything-please", "_summary"),
            ("_sort=no-such-sort", "_sort"),
        ] {
            let path = format!("/fhir/{kind}?{query}");
            let (status, _, outcome) = Call::new(Method::GET, &path, A, PHYSICIAN)
                .header("prefer", "handling=strict")
                .send(&s.app)
                .await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {outcome}");
            let text = refused(&format!("GET {path} strict"), status, &outcome);
            assert!(text.contains(named), "{text}");
        }
    }
    // Values of each type's own parameters that cannot be parsed. (A reference to an id
    // that cannot exist matches nothing, as a missing one does: not an error.)
    let typed = [
        "Patient?birthdate=yesterday",
        "Patient?birthdate=xx2024-01-01",
        "Encounter?date=2024-13-45",
        "Encounter?date=ge",
        "DocumentReference?date=notadate",
        "MedicationRequest?status=active&status=",
    ];
    for query in typed {
        let path = format!("/fhir/{query}");
        let (status, _, outcome) = Call::new(Method::GET, &path, A, PHYSICIAN)
            .send(&s.app)
            .await;
        refused(&format!("GET {path}"), status, &outcome);
    }
}
