//! Transaction and batch Bundles at `POST /fhir` against a real PostgreSQL through the
//! router: `urn:uuid:` references resolved within a transaction, all-or-nothing with the
//! failing entry named, batches entry by entry, another tenant's ids refused exactly like
//! missing ones, the entry limit, and one audit event per entry. Every body answered is
//! checked with `fhir.resources` ($FHIR_VALIDATE).

mod support;

use axum::http::{Method, StatusCode};
use phoenix_dataplane::app;
use phoenix_dataplane::metrics::Metrics;
use phoenix_dataplane::request::RequestSettings;
use serde_json::{Value, json};
use support::clinical::{encounter, note};
use support::fhir::*;

fn post(full_url: &str, resource: Value) -> Value {
    let url = resource["resourceType"].clone();
    json!({"fullUrl": full_url, "resource": resource, "request": {"method": "POST", "url": url}})
}

fn bundle(kind: &str, entries: Vec<Value>) -> Value {
    json!({"resourceType": "Bundle", "type": kind, "entry": entries})
}

async fn send(app: &axum::Router, host: &str, body: Value) -> (StatusCode, Value) {
    let (status, _, answer) = Call::new(Method::POST, "/fhir", host, Some((host, "physicians")))
        .body(body)
        .send(app)
        .await;
    (status, answer)
}

/// `(action, resource_type, resource_id, status)` of the tenant's audit events, in order.
async fn audit(s: &Setup, tenant: i64) -> Vec<(String, String, Option<String>, i16)> {
    s._db
        .admin()
        .query(
            "SELECT action, resource_type, resource_id, status FROM clinical.audit_events \
             WHERE tenant_id = $1 ORDER BY seq",
            &[&tenant],
        )
        .await
        .expect("audit rows")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect()
}

async fn count(s: &Setup, table: &str, tenant: i64) -> i64 {
    s._db
        .admin()
        .query_one(
            &format!("SELECT count(*) FROM {table} WHERE tenant_id = $1"),
            &[&tenant],
        )
        .await
        .expect("count")
        .get(0)
}

/// The id in a `location` (`https://host/fhir/Type/{id}/_history/1`).
fn located(entry: &Value) -> String {
    let location = entry["response"]["location"].as_str().expect("a location");
    location.split('/').rev().nth(2).expect("an id").to_owned()
}

#[tokio::test]
async fn a_transaction_creates_entries_that_reference_each_other_by_urn_uuid() {
    let s = setup().await;
    let (a, _) = s.ids;
    // The Encounter and the note come before the Patient they reference: the server
    // orders the creates by kind.
    let transaction = bundle(
        "transaction",
        vec![
            post(
                "urn:uuid:9d2c7c3e-0000-4000-8000-000000000002",
                encounter(
                    "urn-placeholder",
                    "2024-05-01T09:00:00Z",
                    None,
                    "in-progress",
                    "dr-a",
                ),
            ),
            post(
                "urn:uuid:9d2c7c3e-0000-4000-8000-000000000003",
                note("urn-placeholder", Some("urn-e"), "2024-05-01T10:00:00Z"),
            ),
            post(
                "urn:uuid:9d2c7c3e-0000-4000-8000-000000000001",
                patient("Onboarded", "1980-02-03", "IMPORT-1"),
            ),
        ],
    );
    let mut transaction = transaction;
    let p = "urn:uuid:9d2c7c3e-0000-4000-8000-000000000001";
    let e = "urn:uuid:9d2c7c3e-0000-4000-8000-000000000002";
    transaction["entry"][0]["resource"]["subject"]["reference"] = json!(p);
    transaction["entry"][1]["resource"]["subject"]["reference"] = json!(p);
    transaction["entry"][1]["resource"]["context"]["encounter"][0]["reference"] = json!(e);

    let (status, answer) = send(&s.app, A, transaction).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["type"], "transaction-response");
    let entries = answer["entry"].as_array().expect("entries");
    assert_eq!(entries.len(), 3);
    for (entry, kind) in entries
        .iter()
        .zip(["Encounter", "DocumentReference", "Patient"])
    {
        assert_eq!(entry["response"]["status"], "201 Created", "{entry}");
        assert_eq!(entry["response"]["etag"], "W/\"1\"");
        assert_eq!(entry["resource"]["resourceType"], kind);
        let id = located(entry);
        assert_eq!(
            entry["response"]["location"],
            format!("https://{A}/fhir/{kind}/{id}/_history/1")
        );
        assert_eq!(entry["resource"]["id"], id.as_str());
    }
    let (encounter_id, note_id, patient_id) = (
        located(&entries[0]),
        located(&entries[1]),
        located(&entries[2]),
    );

    // Stored with the references resolved, readable through the API.
    let (status, _, stored) = Call::new(
        Method::GET,
        &format!("/fhir/Encounter/{encounter_id}"),
        A,
        PHYSICIAN,
    )
    .send(&s.app)
    .await;
    assert_eq!(status, StatusCode::OK, "{stored}");
    assert_eq!(
        stored["subject"]["reference"],
        format!("Patient/{patient_id}")
    );
    let (_, _, stored) = Call::new(
        Method::GET,
        &format!("/fhir/DocumentReference/{note_id}"),
        A,
        PHYSICIAN,
    )
    .send(&s.app)
    .await;
    assert_eq!(
        stored["context"]["encounter"][0]["reference"],
        format!("Encounter/{encounter_id}")
    );
    // The patient's identifier is indexed as by a create.
    let (_, _, found) = Call::new(
        Method::GET,
        "/fhir/Patient?identifier=IMPORT-1",
        A,
        PHYSICIAN,
    )
    .send(&s.app)
    .await;
    assert_eq!(found["entry"][0]["resource"]["id"], patient_id.as_str());

    // One audit event per entry, in the order applied (the patient first).
    let events = audit(&s, a).await;
    let creates: Vec<_> = events.iter().take(3).cloned().collect();
    assert_eq!(
        creates,
        [
            (
                "create".into(),
                "Patient".into(),
                Some(patient_id.clone()),
                201
            ),
            (
                "create".into(),
                "Encounter".into(),
                Some(encounter_id.clone()),
                201
            ),
            (
                "create".into(),
                "DocumentReference".into(),
                Some(note_id.clone()),
                201
            ),
        ]
    );

    // Update and read in one transaction.
    let mut changed = stored.clone();
    changed["docStatus"] = json!("amended");
    let put = json!({"resource": changed,
        "request": {"method": "PUT", "url": format!("DocumentReference/{note_id}"), "ifMatch": "W/\"1\""}});
    let delete =
        json!({"request": {"method": "DELETE", "url": format!("DocumentReference/{note_id}")}});
    let (status, answer) = send(
        &s.app,
        A,
        bundle(
            "transaction",
            vec![
                put.clone(),
                json!({"request": {"method": "GET", "url": format!("Patient/{patient_id}")}}),
            ],
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["entry"][0]["response"]["status"], "200 OK");
    assert_eq!(answer["entry"][0]["response"]["etag"], "W/\"2\"");
    assert_eq!(answer["entry"][0]["resource"]["docStatus"], "amended");
    assert_eq!(answer["entry"][1]["resource"]["id"], patient_id.as_str());

    // A transaction applies DELETEs before PUTs: deleting and updating the note in one
    // is a 410 for the update, and nothing is deleted.
    let (status, outcome) = send(&s.app, A, bundle("transaction", vec![put, delete.clone()])).await;
    assert_eq!(status, StatusCode::GONE, "{outcome}");
    assert_eq!(outcome["issue"][0]["expression"][0], "Bundle.entry[0]");
    let (status, answer) = send(&s.app, A, bundle("transaction", vec![delete])).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["entry"][0]["response"]["status"], "204 No Content");
    let (status, _, _) = Call::new(
        Method::GET,
        &format!("/fhir/DocumentReference/{note_id}"),
        A,
        PHYSICIAN,
    )
    .send(&s.app)
    .await;
    assert_eq!(status, StatusCode::GONE);
}

#[tokio::test]
async fn a_failing_entry_fails_the_whole_transaction_and_is_named() {
    let s = setup().await;
    let (a, _) = s.ids;
    let missing = "00000000-0000-4000-8000-00000000beef";
    let p = "urn:uuid:3f1e0000-0000-4000-8000-000000000001";
    let mut orphan = encounter(missing, "2024-05-01T09:00:00Z", None, "finished", "dr-a");
    orphan["period"]["end"] = json!("2024-05-01T10:00:00Z");
    let (status, outcome) = send(
        &s.app,
        A,
        bundle(
            "transaction",
            vec![
                post(p, patient("Rolledback", "1980-02-03", "ROLL-1")),
                post("urn:uuid:3f1e0000-0000-4000-8000-000000000002", orphan),
            ],
        ),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{outcome}");
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    assert_eq!(outcome["issue"][0]["code"], "not-found");
    assert_eq!(
        outcome["issue"][0]["expression"][0],
        "Bundle.entry[1].resource.subject"
    );
    // Nothing written: not the patient created before the failing entry either.
    assert_eq!(count(&s, "clinical.patients", a).await, 0);
    assert_eq!(count(&s, "clinical.patient_identifiers", a).await, 0);
    assert_eq!(count(&s, "clinical.fhir_history", a).await, 0);
    // The failing entry's event records the refusal; the rolled-back create has none.
    let events = audit(&s, a).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(
        (events[0].0.as_str(), events[0].1.as_str(), events[0].3),
        ("create", "Encounter", 422)
    );

    // An invalid resource: 400 naming the element within the entry; malformed entries too.
    let mut bad = patient("Bad", "1980-02-30", "BAD-1");
    bad["gender"] = json!("female");
    for (entries, expression) in [
        (
            vec![post("urn:uuid:x", bad)],
            "Bundle.entry[0].resource.birthDate",
        ),
        (
            vec![json!({"request": {"method": "GET", "url": "Patient?name=x"}})],
            "Bundle.entry[0].request.url",
        ),
        (
            vec![json!({"request": {"method": "PATCH", "url": "Patient/x"}})],
            "Bundle.entry[0].request.method",
        ),
    ] {
        let (status, outcome) = send(&s.app, A, bundle("transaction", entries)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{outcome}");
        assert_eq!(
            outcome["issue"][0]["expression"][0], expression,
            "{outcome}"
        );
    }
    let (status, outcome) = send(
        &s.app,
        A,
        json!({"resourceType": "Bundle", "type": "collection"}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{outcome}");
    assert_eq!(outcome["issue"][0]["expression"][0], "Bundle.type");
    assert_eq!(count(&s, "clinical.patients", a).await, 0);
}

#[tokio::test]
async fn another_tenants_ids_in_a_bundle_are_refused_exactly_like_missing_ones() {
    let s = setup().await;
    let (_, b) = s.ids;
    let a_patient = create(&s.app, patient("Alpha", "1970-01-01", "A-1")).await;
    let missing = "00000000-0000-4000-8000-00000000beef";
    let attempt = |target: &str| {
        bundle(
            "transaction",
            vec![post(
                "urn:uuid:5e000000-0000-4000-8000-000000000001",
                encounter(target, "2024-05-01T09:00:00Z", None, "in-progress", "dr-b"),
            )],
        )
    };
    let (status_a, outcome_a) = send(&s.app, B, attempt(&a_patient)).await;
    let (status_m, outcome_m) = send(&s.app, B, attempt(missing)).await;
    assert_eq!(status_a, StatusCode::UNPROCESSABLE_ENTITY, "{outcome_a}");
    assert_eq!(status_a, status_m);
    assert_eq!(
        outcome_a.to_string().replace(&a_patient, "ID"),
        outcome_m.to_string().replace(missing, "ID"),
        "another tenant's patient is answered exactly as a missing one"
    );
    // PUT, GET and DELETE of A's patient in B's batch: 404 each, as a missing id.
    let (status, answer) = send(
        &s.app,
        B,
        bundle(
            "batch",
            vec![
                json!({"resource": {"resourceType": "Patient", "id": a_patient},
                    "request": {"method": "PUT", "url": format!("Patient/{a_patient}")}}),
                json!({"request": {"method": "GET", "url": format!("Patient/{a_patient}")}}),
                json!({"request": {"method": "DELETE", "url": format!("Patient/{a_patient}")}}),
            ],
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    for entry in answer["entry"].as_array().expect("entries") {
        assert_eq!(entry["response"]["status"], "404 Not Found", "{entry}");
        assert!(entry.get("resource").is_none());
    }
    assert!(!answer.to_string().contains("Alpha"));
    assert_eq!(count(&s, "clinical.encounters", b).await, 0);
    // A's patient is untouched.
    let (status, _, read) = Call::new(
        Method::GET,
        &format!("/fhir/Patient/{a_patient}"),
        A,
        PHYSICIAN,
    )
    .send(&s.app)
    .await;
    assert_eq!(
        (status, read["meta"]["versionId"].as_str()),
        (StatusCode::OK, Some("1"))
    );
}

#[tokio::test]
async fn a_batch_applies_each_entry_on_its_own() {
    let s = setup().await;
    let (a, _) = s.ids;
    let existing = create(&s.app, patient("Existing", "1970-01-01", "E-1")).await;
    let (_, _, current) = Call::new(
        Method::GET,
        &format!("/fhir/Patient/{existing}"),
        A,
        PHYSICIAN,
    )
    .send(&s.app)
    .await;
    let mut stale = current.clone();
    stale["gender"] = json!("female");
    let before = audit(&s, a).await.len();
    let (status, answer) = send(
        &s.app,
        A,
        bundle(
            "batch",
            vec![
                post("urn:uuid:b0000000-0000-4000-8000-000000000001", patient("Batched", "1990-01-01", "B-1")),
                json!({"resource": stale, "request": {"method": "PUT",
                    "url": format!("Patient/{existing}"), "ifMatch": "W/\"7\""}}),
                json!({"request": {"method": "GET", "url": format!("Patient/{existing}")}}),
                json!({"request": {"method": "DELETE", "url": "Encounter/00000000-0000-4000-8000-00000000beef"}}),
                post("urn:uuid:b0000000-0000-4000-8000-000000000002", patient("Invalid", "1990-13-01", "B-2")),
            ],
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["type"], "batch-response");
    let statuses: Vec<&str> = answer["entry"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["response"]["status"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        statuses,
        [
            "201 Created",
            "412 Precondition Failed",
            "200 OK",
            "404 Not Found",
            "400 Bad Request"
        ]
    );
    let invalid = &answer["entry"][4]["response"]["outcome"];
    assert_eq!(
        invalid["issue"][0]["expression"][0],
        "Bundle.entry[4].resource.birthDate"
    );
    assert_eq!(answer["entry"][2]["resource"]["id"], existing.as_str());
    assert_eq!(answer["entry"][2]["response"]["etag"], "W/\"1\"");
    // One event per entry that reached the database (the invalid one did not).
    let events: Vec<(String, String, i16)> = audit(&s, a)
        .await
        .into_iter()
        .skip(before)
        .map(|(action, kind, _, status)| (action, kind, status))
        .collect();
    assert_eq!(
        events,
        [
            ("create".into(), "Patient".into(), 201),
            ("update".into(), "Patient".into(), 412),
            ("read".into(), "Patient".into(), 200),
            ("delete".into(), "Encounter".into(), 404),
        ]
    );
    // The create stands although later entries failed; the stale update changed nothing.
    let created = located(&answer["entry"][0]);
    let (status, _, _) = Call::new(
        Method::GET,
        &format!("/fhir/Patient/{created}"),
        A,
        PHYSICIAN,
    )
    .send(&s.app)
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(count(&s, "clinical.patients", a).await, 2);
}

#[tokio::test]
async fn bundles_over_the_entry_limit_are_refused_before_any_entry_is_applied() {
    let s = setup().await;
    let (a, _) = s.ids;
    let limited = app(state_with(&s.catalog, &s.database, &Metrics::new(None))
        .with_request_settings(RequestSettings {
            max_bundle_entries: 2,
            ..RequestSettings::default()
        }));
    let entries = |n: usize| {
        (0..n)
            .map(|i| {
                post(
                    &format!("urn:uuid:c0000000-0000-4000-8000-00000000000{i}"),
                    patient("Limited", "1990-01-01", &format!("L-{i}")),
                )
            })
            .collect::<Vec<_>>()
    };
    for kind in ["transaction", "batch"] {
        let (status, outcome) = send(&limited, A, bundle(kind, entries(3))).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{outcome}");
        assert_eq!(outcome["issue"][0]["code"], "too-long");
    }
    assert_eq!(count(&s, "clinical.patients", a).await, 0);
    let (status, answer) = send(&limited, A, bundle("transaction", entries(2))).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(count(&s, "clinical.patients", a).await, 2);

    // Declared in the CapabilityStatement.
    let (_, _, statement) = Call::new(Method::GET, "/fhir/metadata", A, None)
        .send(&s.app)
        .await;
    let codes: Vec<&str> = statement["rest"][0]["interaction"]
        .as_array()
        .expect("system interactions")
        .iter()
        .filter_map(|i| i["code"].as_str())
        .collect();
    assert_eq!(codes, ["transaction", "batch"]);
    // A reader may not post Bundles.
    let (status, _, _) = Call::new(Method::POST, "/fhir", A, Some((A, "readonlys")))
        .body(bundle("batch", entries(1)))
        .send(&s.app)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}
