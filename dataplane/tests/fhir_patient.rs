//! `/fhir/Patient` against a real PostgreSQL, through the whole router with tokens signed
//! by the test key: the lifecycle with versions, search with keyset paging across pages
//! (and across a restart), tenant isolation, and who may read and write. Every body
//! served is checked with the external `fhir.resources` R4 model ($FHIR_VALIDATE).

mod support;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use support::fhir::*;
use tower::ServiceExt;

#[tokio::test]
async fn a_patient_is_created_read_updated_with_if_match_and_deleted_keeping_its_versions() {
    let s = setup().await;
    let (status, headers, created) = Call::new(Method::POST, "/fhir/Patient", A, PHYSICIAN)
        .body(patient("Chalmers", "1974-12-25", "12345"))
        .send(&s.app)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    let location = headers[header::LOCATION].to_str().expect("location");
    assert_eq!(
        location,
        format!("https://{A}/fhir/Patient/{id}/_history/1")
    );
    assert_eq!(etag(&headers), "W/\"1\"");
    assert_eq!(created["meta"]["versionId"], "1");
    assert!(created["meta"]["lastUpdated"].is_string());
    assert_eq!(headers[header::CONTENT_TYPE], "application/fhir+json");

    let path = format!("/fhir/Patient/{id}");
    let (status, headers, read) = Call::new(Method::GET, &path, A, PHYSICIAN)
        .send(&s.app)
        .await;
    assert_eq!((status, etag(&headers)), (StatusCode::OK, "W/\"1\""));
    assert_eq!(read, created);

    let mut changed = read.clone();
    changed["name"][0]["family"] = json!("Chalmers-Smith");
    let (status, headers, updated) = Call::new(Method::PUT, &path, A, PHYSICIAN)
        .body(changed.clone())
        .header("if-match", "W/\"1\"")
        .send(&s.app)
        .await;
    assert_eq!(
        (status, etag(&headers)),
        (StatusCode::OK, "W/\"2\""),
        "{updated}"
    );
    assert_eq!(updated["meta"]["versionId"], "2");

    // A stale version: 412, nothing written.
    let (status, _, outcome) = Call::new(Method::PUT, &path, A, PHYSICIAN)
        .body(changed.clone())
        .header("if-match", "W/\"1\"")
        .send(&s.app)
        .await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(outcome["issue"][0]["code"], "conflict");

    let mut wrong_id = changed.clone();
    wrong_id["id"] = json!("someone-else");
    let (status, _, outcome) = Call::new(Method::PUT, &path, A, PHYSICIAN)
        .body(wrong_id)
        .send(&s.app)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(outcome["issue"][0]["expression"][0], "Patient.id");

    for (version, family) in [("1", "Chalmers"), ("2", "Chalmers-Smith")] {
        let history = format!("{path}/_history/{version}");
        let (status, _, old) = Call::new(Method::GET, &history, A, PHYSICIAN)
            .send(&s.app)
            .await;
        assert_eq!(status, StatusCode::OK, "{old}");
        assert_eq!(old["name"][0]["family"], family);
        assert_eq!(old["meta"]["versionId"], version);
    }

    let (status, _, _) = Call::new(Method::DELETE, &path, A, PHYSICIAN)
        .send(&s.app)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _, outcome) = Call::new(Method::GET, &path, A, PHYSICIAN)
        .send(&s.app)
        .await;
    assert_eq!(status, StatusCode::GONE);
    assert_eq!(outcome["issue"][0]["code"], "deleted");
    let (status, _, _) = Call::new(Method::GET, &format!("{path}/_history/1"), A, PHYSICIAN)
        .send(&s.app)
        .await;
    assert_eq!(status, StatusCode::OK, "kept versions stay readable");
    let (status, _, _) = Call::new(Method::GET, &format!("{path}/_history/3"), A, PHYSICIAN)
        .send(&s.app)
        .await;
    assert_eq!(status, StatusCode::GONE, "the deletion is version 3");
    let (status, _, _) = Call::new(Method::DELETE, &path, A, PHYSICIAN)
        .send(&s.app)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "deleting again succeeds");
    let (status, _, _) = Call::new(Method::PUT, &path, A, PHYSICIAN)
        .body(changed)
        .send(&s.app)
        .await;
    assert_eq!(status, StatusCode::GONE);
}

#[tokio::test]
async fn invalid_input_is_a_4xx_operation_outcome_naming_the_element() {
    let s = setup().await;
    let (status, _, outcome) = Call::new(Method::POST, "/fhir/Patient", A, PHYSICIAN)
        .body(patient("Chalmers", "1974-02-30", "1"))
        .send(&s.app)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(outcome["issue"][0]["expression"][0], "Patient.birthDate");
    let (status, _, outcome) = Call::new(Method::POST, "/fhir/Patient", A, PHYSICIAN)
        .body(json!({"resourceType": "Observation"}))
        .send(&s.app)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(outcome["issue"][0]["expression"][0], "Patient.resourceType");

    let request = |content_type: &str, body: &'static str| {
        Request::post("/fhir/Patient")
            .header(header::HOST, A)
            .header(
                header::AUTHORIZATION,
                format!("Bearer {}", token(A, "nurses")),
            )
            .header(header::CONTENT_TYPE, content_type)
            .body(Body::from(body))
            .expect("request")
    };
    for (content_type, body, expected) in [
        (
            "application/fhir+json",
            "{not json",
            StatusCode::BAD_REQUEST,
        ),
        ("application/json", "[1,2]", StatusCode::BAD_REQUEST),
        ("text/plain", "{}", StatusCode::UNSUPPORTED_MEDIA_TYPE),
    ] {
        let response = s
            .app
            .clone()
            .oneshot(request(content_type, body))
            .await
            .expect("response");
        assert_eq!(response.status(), expected, "{content_type} {body}");
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let outcome: Value = serde_json::from_slice(&bytes).expect("an OperationOutcome");
        assert_eq!(outcome["resourceType"], "OperationOutcome");
        assert_valid_fhir(&outcome);
    }
    for path in [
        "/fhir/Patient/not-a-uuid",
        "/fhir/Patient/00000000-0000-4000-8000-000000000000",
        "/fhir/Patient/00000000-0000-4000-8000-000000000000/_history/x",
        "/fhir/Patient/%00",
        "/fhir/Patient/%FF%FE",
        "/fhir/Patient/%FF/_history/1",
    ] {
        let (status, _, outcome) = Call::new(Method::GET, path, A, PHYSICIAN)
            .send(&s.app)
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {outcome}");
    }
}

#[tokio::test]
async fn search_pages_through_every_match_once_even_across_a_restart() {
    let s = setup().await;
    let mut expected = Vec::new();
    for i in 0..7 {
        expected.push(
            create(
                &s.app,
                patient("Pager", &format!("19{}0-06-15", 3 + i), &format!("mrn-{i}")),
            )
            .await,
        );
    }
    create(&s.app, patient("Elsewhere", "2001-01-01", "other")).await;
    expected.sort();

    let mut seen = Vec::new();
    let mut next = Some("/fhir/Patient?family=pAGE&_count=3".to_owned());
    let mut pages = 0;
    while let Some(url) = next.take() {
        // Every page after the first is served by a new application: no server state.
        let app = if pages == 0 {
            s.app.clone()
        } else {
            fresh_app(&s.catalog, &s.database)
        };
        let path = url.trim_start_matches(&format!("https://{A}"));
        let (status, _, bundle) = Call::new(Method::GET, path, A, Some((A, "readonlys")))
            .send(&app)
            .await;
        assert_eq!(status, StatusCode::OK, "{bundle}");
        assert_eq!(bundle["type"], "searchset");
        if pages == 0 {
            assert!(
                bundle.get("total").is_none(),
                "more than one page: no cheap total"
            );
        }
        for entry in bundle["entry"].as_array().into_iter().flatten() {
            seen.push(entry["resource"]["id"].as_str().expect("id").to_owned());
        }
        next = bundle["link"]
            .as_array()
            .expect("links")
            .iter()
            .find(|l| l["relation"] == "next")
            .and_then(|l| l["url"].as_str())
            .map(str::to_owned);
        pages += 1;
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, expected, "every match once, in id order");

    assert_eq!(total(&s.app, "family=pager&_summary=count").await, 7);
    assert_eq!(
        total(&s.app, "birthdate=ge1950&birthdate=lt1970&family=Pager").await,
        2
    );
    assert_eq!(total(&s.app, "birthdate=1990-06").await, 1);
    assert_eq!(total(&s.app, "birthdate=gt1990-06-15").await, 1);
    assert_eq!(total(&s.app, "birthdate=le1930").await, 1);
    assert_eq!(total(&s.app, "birthdate=lt1930-06-15").await, 0);
    assert_eq!(
        total(&s.app, "identifier=urn:oid:1.2.36.146.595.217.0.1|mrn-3").await,
        1
    );
    assert_eq!(total(&s.app, "identifier=mrn-3,mrn-4").await, 2);
    assert_eq!(total(&s.app, "identifier=|mrn-3").await, 0);
    assert_eq!(total(&s.app, "name=test&_summary=count").await, 8);
    assert_eq!(total(&s.app, "name=else").await, 1);
    assert_eq!(
        total(&s.app, "family=%25").await,
        0,
        "LIKE wildcards are literal"
    );

    // Unknown parameters: ignored (and left out of the self link) unless strict.
    let (status, _, bundle) = Call::new(
        Method::GET,
        "/fhir/Patient?family=else&colour=red",
        A,
        PHYSICIAN,
    )
    .send(&s.app)
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        bundle["link"][0]["url"],
        format!("https://{A}/fhir/Patient?family=else")
    );
    let (status, _, outcome) = Call::new(
        Method::GET,
        "/fhir/Patient?family=else&colour=red",
        A,
        PHYSICIAN,
    )
    .header("prefer", "handling=strict")
    .send(&s.app)
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{outcome}");
    for bad in [
        "/fhir/Patient?birthdate=yesterday",
        "/fhir/Patient?_count=many",
        "/fhir/Patient?family=pager&_count=3&_cursor=bm9wZQ",
    ] {
        let (status, _, outcome) = Call::new(Method::GET, bad, A, PHYSICIAN).send(&s.app).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {outcome}");
    }
}

/// The `total` of the search `query`, which must be cheap to count (one page or a count).
async fn total(app: &axum::Router, query: &str) -> u64 {
    let path = format!("/fhir/Patient?{query}");
    let (status, _, bundle) = Call::new(Method::GET, &path, A, PHYSICIAN).send(app).await;
    assert_eq!(status, StatusCode::OK, "{query}: {bundle}");
    bundle["total"].as_u64().unwrap_or(u64::MAX)
}

#[tokio::test]
async fn another_tenants_patient_is_a_404_like_a_missing_one_and_a_foreign_token_a_401() {
    let s = setup().await;
    let id = create(&s.app, patient("Isolated", "1980-01-01", "iso")).await;
    let theirs = format!("/fhir/Patient/{id}");
    let missing = "/fhir/Patient/00000000-0000-4000-8000-000000000000";
    let b_reader = Some((B, "physicians"));
    let (status, _, body) = Call::new(Method::GET, &theirs, B, b_reader)
        .send(&s.app)
        .await;
    let (missing_status, _, missing_body) = Call::new(Method::GET, missing, B, b_reader)
        .send(&s.app)
        .await;
    assert_eq!(
        (status, missing_status),
        (StatusCode::NOT_FOUND, StatusCode::NOT_FOUND)
    );
    assert_eq!(body["issue"][0]["code"], missing_body["issue"][0]["code"]);
    for method in [Method::DELETE, Method::PUT] {
        let mut call = Call::new(method.clone(), &theirs, B, b_reader);
        if method == Method::PUT {
            let mut body = patient("Hijack", "1980-01-01", "x");
            body["id"] = json!(id);
            call = call.body(body);
        }
        assert_eq!(call.send(&s.app).await.0, StatusCode::NOT_FOUND, "{method}");
    }
    let (_, _, bundle) = Call::new(Method::GET, "/fhir/Patient?_summary=count", B, b_reader)
        .send(&s.app)
        .await;
    assert_eq!(bundle["total"], 0);
    let (status, _, outcome) = Call::new(Method::GET, &theirs, B, PHYSICIAN)
        .send(&s.app)
        .await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "A's token at B's host: {outcome}"
    );
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    let (status, _, _) = Call::new(Method::GET, &theirs, A, PHYSICIAN)
        .send(&s.app)
        .await;
    assert_eq!(status, StatusCode::OK, "still there for A");
}

#[tokio::test]
async fn clinicians_write_readonly_reads_and_nobody_else_gets_in() {
    let s = setup().await;
    for group in ["physicians", "nurses"] {
        let (status, _, body) = Call::new(Method::POST, "/fhir/Patient", A, Some((A, group)))
            .body(patient("Written", "1990-01-01", group))
            .send(&s.app)
            .await;
        assert_eq!(status, StatusCode::CREATED, "{group}: {body}");
    }
    let id = create(&s.app, patient("Readable", "1990-01-01", "r")).await;
    let path = format!("/fhir/Patient/{id}");
    let readonly = Some((A, "readonlys"));
    assert_eq!(
        Call::new(Method::GET, &path, A, readonly)
            .send(&s.app)
            .await
            .0,
        StatusCode::OK
    );
    let (status, _, outcome) = Call::new(Method::POST, "/fhir/Patient", A, readonly)
        .body(patient("Refused", "1990-01-01", "no"))
        .send(&s.app)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(outcome["issue"][0]["code"], "forbidden");
    assert_eq!(
        Call::new(Method::DELETE, &path, A, readonly)
            .send(&s.app)
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    let admin = Some((A, "admins"));
    assert_eq!(
        Call::new(Method::GET, &path, A, admin).send(&s.app).await.0,
        StatusCode::FORBIDDEN
    );
    let (status, _, outcome) = Call::new(Method::GET, &path, A, None).send(&s.app).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(outcome["issue"][0]["code"], "login");
    assert_eq!(
        Call::new(Method::GET, "/fhir/Patient", A, None)
            .send(&s.app)
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    // The CapabilityStatement stays public, and lists Patient.
    let (status, _, statement) = Call::new(Method::GET, "/fhir/metadata", A, None)
        .send(&s.app)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(statement["rest"][0]["resource"][0]["type"], "Patient");
}
