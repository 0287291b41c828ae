//! Builders of the clinical resources the FHIR tests write (Encounter, DocumentReference,
//! MedicationRequest), and helpers that create them and read searches (every body still
//! validated by `Call::send` with `fhir.resources`).

use axum::http::{Method, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use super::fhir::{Call, fresh_app};

/// An ambulatory Encounter of `patient` (an id) by `practitioner`, from `start` (to `end`).
pub fn encounter(
    patient: &str,
    start: &str,
    end: Option<&str>,
    status: &str,
    practitioner: &str,
) -> Value {
    let mut period = json!({"start": start});
    if let Some(end) = end {
        period["end"] = json!(end);
    }
    json!({
        "resourceType": "Encounter",
        "status": status,
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "serviceType": {"coding": [{"code": "cardiology"}]},
        "subject": {"reference": format!("Patient/{patient}")},
        "participant": [{"individual": {"reference": format!("Practitioner/{practitioner}")}}],
        "period": period,
    })
}

/// A SOAP note of `patient` (in `encounter`), written at `date`: one content entry per
/// section, each a base64 text attachment.
pub fn note(patient: &str, encounter: Option<&str>, date: &str) -> Value {
    let section = |title: &str, text: &str| {
        json!({"attachment": {"contentType": "text/plain; charset=utf-8", "title": title,
            "data": STANDARD.encode(text), "size": text.len()}})
    };
    let mut note = json!({
        "resourceType": "DocumentReference",
        "status": "current",
        "docStatus": "final",
        "type": {"coding": [{"system": "http://loinc.org", "code": "11506-3"}]},
        "subject": {"reference": format!("Patient/{patient}")},
        "date": date,
        "content": [
            section("Subjective", "Chest pain since this morning."),
            section("Objective", "BP 130/85, HR 88."),
            section("Assessment", "Atypical chest pain."),
            section("Plan", "ECG, troponin, review in 2 h."),
        ],
    });
    if let Some(encounter) = encounter {
        note["context"] = json!({"encounter": [{"reference": format!("Encounter/{encounter}")}]});
    }
    note
}

/// A MedicationRequest of `patient` (in `encounter`) with `status`.
pub fn medication(patient: &str, encounter: Option<&str>, status: &str) -> Value {
    let mut request = json!({
        "resourceType": "MedicationRequest",
        "status": status,
        "intent": "order",
        "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
            "code": "308182", "display": "Amoxicillin 500 MG Oral Capsule"}]},
        "subject": {"reference": format!("Patient/{patient}")},
        "authoredOn": "2024-05-01T10:00:00Z",
    });
    if let Some(encounter) = encounter {
        request["encounter"] = json!({"reference": format!("Encounter/{encounter}")});
    }
    request
}

/// Creates `body` at `/fhir/{its resourceType}` of `host` as `who`; its id.
pub async fn create_at(
    app: &axum::Router,
    host: &str,
    who: Option<(&str, &str)>,
    body: Value,
) -> String {
    let path = format!("/fhir/{}", body["resourceType"].as_str().expect("a type"));
    let (status, _, created) = Call::new(Method::POST, &path, host, who)
        .body(body)
        .send(app)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    created["id"].as_str().expect("an id").to_owned()
}

/// The ids of a searchset's entries in `mode` (`match` or `include`), in order.
pub fn ids(bundle: &Value, mode: &str) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["search"]["mode"] == mode)
        .filter_map(|e| e["resource"]["id"].as_str().map(str::to_owned))
        .collect()
}

/// The `next` link of a searchset, as a path of `host`.
pub fn next(bundle: &Value, host: &str) -> Option<String> {
    bundle["link"]
        .as_array()?
        .iter()
        .find(|l| l["relation"] == "next")?["url"]
        .as_str()
        .map(|url| {
            url.trim_start_matches(&format!("https://{host}"))
                .to_owned()
        })
}

/// Runs the search `path` at `host` as `who`: its bundle, which must be a 200.
pub async fn search(
    app: &axum::Router,
    host: &str,
    who: Option<(&str, &str)>,
    path: &str,
) -> Value {
    let (status, _, bundle) = Call::new(Method::GET, path, host, who).send(app).await;
    assert_eq!(status, StatusCode::OK, "{path}: {bundle}");
    assert_eq!(bundle["type"], "searchset");
    bundle
}

/// Follows the search `first` page by page, each page after the first on a new
/// application (no server state); the matched ids in order and the number of pages.
pub async fn every_page(
    setup: &super::fhir::Setup,
    host: &str,
    who: Option<(&str, &str)>,
    first: &str,
) -> (Vec<String>, usize) {
    let (mut seen, mut pages) = (Vec::new(), 0);
    let mut path = Some(first.to_owned());
    while let Some(url) = path.take() {
        let app = if pages == 0 {
            setup.app.clone()
        } else {
            fresh_app(&setup.catalog, &setup.database)
        };
        let bundle = search(&app, host, who, &url).await;
        seen.extend(ids(&bundle, "match"));
        path = next(&bundle, host);
        pages += 1;
        assert!(pages < 100, "paging does not end");
    }
    (seen, pages)
}

/// The `total` of the search `path`, which must be cheap (one page or `_summary=count`).
pub async fn total(app: &axum::Router, host: &str, who: Option<(&str, &str)>, path: &str) -> u64 {
    let bundle = search(app, host, who, path).await;
    bundle["total"].as_u64().unwrap_or(u64::MAX)
}
