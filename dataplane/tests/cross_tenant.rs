//! Tenant isolation over every route the data plane serves, enumerated from the router
//! itself (its route table, as axum reports it), not from a hand-picked list: tenant B's
//! credentials (its clinical writer's and its administrator's), sent with every method to every route —
//! at tenant A's host, and at B's own host with A's ids in the path — never answer with
//! A's data, and on A's ids never succeed. A route added later is covered without
//! touching this test.

mod support;

use std::collections::BTreeSet;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use phoenix_dataplane::catalog::TenantRecord;
use serde_json::json;
use support::clinical::{create_at, encounter, medication, note};
use support::fhir::*;
use tower::ServiceExt;

/// A's patient's family name: no response to B may contain it.
const A_FAMILY: &str = "Zephyrine-Quillfeather";
const A_SCIM_USER: &str = "zephyrine.a@mercy.example.org";

/// The route templates of `app`, from its `Debug` form (axum lists every path it routes).
fn route_templates(app: &axum::Router) -> BTreeSet<String> {
    let text = format!("{app:?}");
    text.split("): \"")
        .skip(1)
        .filter_map(|p| p.split('"').next())
        .filter(|p| p.starts_with('/'))
        .map(str::to_owned)
        .collect()
}

/// `template` with its parameters filled with A's ids.
fn concrete(template: &str, ids: &AIds) -> String {
    let id = |kind: &str| match kind {
        "Patient" => ids.patient.clone(),
        "Encounter" => ids.encounter.clone(),
        "DocumentReference" => ids.note.clone(),
        "MedicationRequest" => ids.medication.clone(),
        "Users" => ids.scim_user.clone(),
        "Groups" => ids.scim_group.clone(),
        _ => "User".to_owned(),
    };
    let parts: Vec<&str> = template.split('/').collect();
    let mut out = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        out.push(match *part {
            "{id}" => id(parts[i - 1]),
            "{vid}" => "1".to_owned(),
            "{subject}" => ids.subject.clone(),
            p if p.starts_with("{*") => "anything".to_owned(),
            p => p.to_owned(),
        });
    }
    out.join("/")
}

struct AIds {
    patient: String,
    encounter: String,
    note: String,
    medication: String,
    scim_user: String,
    scim_group: String,
    subject: String,
}

impl AIds {
    fn all(&self) -> [&str; 6] {
        [
            &self.patient,
            &self.encounter,
            &self.note,
            &self.medication,
            &self.scim_user,
            &self.scim_group,
        ]
    }

    fn is_in(&self, path: &str) -> bool {
        self.all().iter().any(|id| path.contains(id))
    }
}

/// A Bundle of `kind` whose every entry names A's ids: an Encounter of A's patient, and
/// updates, reads and deletes of A's resources.
fn a_ids_bundle(kind: &str, ids: &AIds) -> serde_json::Value {
    let patient = format!("Patient/{}", ids.patient);
    json!({"resourceType": "Bundle", "type": kind, "entry": [
        {"fullUrl": "urn:uuid:6b000000-0000-4000-8000-000000000001",
         "resource": encounter(&ids.patient, "2024-05-01T09:00:00Z", None, "in-progress", "dr-b"),
         "request": {"method": "POST", "url": "Encounter"}},
        {"resource": {"resourceType": "Patient", "id": ids.patient, "name": [{"family": "B's attempt"}]},
         "request": {"method": "PUT", "url": patient}},
        {"request": {"method": "GET", "url": patient}},
        {"request": {"method": "GET", "url": format!("Encounter/{}", ids.encounter)}},
        {"request": {"method": "DELETE", "url": format!("MedicationRequest/{}", ids.medication)}},
        {"request": {"method": "DELETE", "url": format!("DocumentReference/{}", ids.note)}},
    ]})
}

/// One request as a member of `group` of B's IdP: status and everything answered.
async fn as_b(
    app: &axum::Router,
    method: &Method,
    host: &str,
    path: &str,
    group: &str,
    body: &str,
) -> (StatusCode, String) {
    let request = Request::builder()
        .method(method.clone())
        .uri(path)
        .header(header::HOST, host)
        .header(header::AUTHORIZATION, format!("Bearer {}", token(B, group)))
        .header(header::CONTENT_TYPE, "application/fhir+json")
        .body(Body::from(body.to_owned()))
        .expect("request");
    let response = app.clone().oneshot(request).await.expect("a response");
    let status = response.status();
    let headers = format!("{:?}", response.headers());
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (
        status,
        format!("{headers}\n{}", String::from_utf8_lossy(&bytes)),
    )
}

/// The tenant records with a rate limit this test cannot reach (it sends thousands of
/// requests at once; the limits have their own test).
fn unthrottled(record: &TenantRecord) -> TenantRecord {
    let mut record = record.clone();
    record.row.requests_per_second = 1_000_000;
    record
}

#[tokio::test]
async fn tenant_b_never_reaches_tenant_a_through_any_route() {
    b_never_reaches_a(setup().await, "clinical").await;
}

/// The same, with A a `Schema` tenant (its rows in a schema of its own) and B `Shared`.
#[tokio::test]
async fn tenant_b_never_reaches_a_schema_tenant_through_any_route() {
    let (s, schema) = setup_schema_a().await;
    b_never_reaches_a(s, &format!("\"{schema}\"")).await;
}

/// B's credentials against every route, with A's rows in `a_schema` (quoted).
async fn b_never_reaches_a(s: Setup, a_schema: &str) {
    let (a, b) = (
        s.catalog.get(A).expect("tenant A"),
        s.catalog.get(B).expect("tenant B"),
    );
    s.catalog.replace_with_sso(
        [unthrottled(&a), unthrottled(&b)],
        [
            (a.id, (*s.catalog.sso(&a).expect("A's SSO")).clone()),
            (b.id, (*s.catalog.sso(&b).expect("B's SSO")).clone()),
        ],
    );
    let app = fresh_app(&s.catalog, &s.database);

    // A's data, through the API as A's physician, and SCIM rows as its IdP would leave.
    let patient = create(&app, patient(A_FAMILY, "1961-03-02", "A-MRN-7")).await;
    let encounter_id = create_at(
        &app,
        A,
        PHYSICIAN,
        encounter(
            &patient,
            "2024-05-01T09:00:00Z",
            None,
            "in-progress",
            "dr-a",
        ),
    )
    .await;
    let note_id = create_at(
        &app,
        A,
        PHYSICIAN,
        note(&patient, Some(&encounter_id), "2024-05-01T10:00:00Z"),
    )
    .await;
    let medication_id = create_at(
        &app,
        A,
        PHYSICIAN,
        medication(&patient, Some(&encounter_id), "active"),
    )
    .await;
    let scim = |sql: String, value: &'static str| {
        let db = &s._db;
        let tenant = a.id;
        async move {
            let row = db
                .admin()
                .query_one(&sql, &[&tenant, &value])
                .await
                .expect("SCIM row of A");
            row.get::<_, String>(0)
        }
    };
    let scim_user = scim(
        format!(
            "INSERT INTO {a_schema}.scim_users (tenant_id, user_name, resource)
         VALUES ($1, $2, jsonb_build_object('userName', $2::text)) RETURNING id::text"
        ),
        A_SCIM_USER,
    )
    .await;
    let scim_group = scim(
        format!(
            "INSERT INTO {a_schema}.scim_groups (tenant_id, display_name, resource)
         VALUES ($1, $2, jsonb_build_object('displayName', $2::text)) RETURNING id::text"
        ),
        "Zephyrine ward A",
    )
    .await;
    let ids = AIds {
        patient,
        encounter: encounter_id,
        note: note_id,
        medication: medication_id,
        scim_user,
        scim_group,
        // A subject, not an id of A's: revoking a subject's sessions at B acts on B's
        // sessions of that subject (none), which is B's business.
        subject: "zephyrine-subject-a".to_owned(),
    };

    let templates = route_templates(&app);
    for expected in [
        "/fhir",
        "/fhir/Patient/{id}",
        "/fhir/Encounter/{id}/_history/{vid}",
        "/scim/v2/Users/{id}",
        "/analytics/encounters",
        "/admin/sessions/{subject}",
    ] {
        assert!(
            templates.contains(expected),
            "the route table as read from the router lacks {expected}: {templates:?}"
        );
    }
    let methods = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
    ];
    // The clinical writer and the administrator: every other role's rights are a subset.
    let groups = ["physicians", "admins"];
    let mut served = 0;
    for template in &templates {
        let path = concrete(template, &ids);
        // The base takes Bundles: a transaction whose every entry names A's ids.
        let bundle = template == "/fhir";
        let on_a_ids = ids.is_in(&path) || bundle;
        // A body that names A's patient, for the methods that take one.
        let kind = template.split('/').nth(2).unwrap_or("Patient");
        let body = if bundle {
            a_ids_bundle("transaction", &ids).to_string()
        } else {
            json!({"resourceType": kind, "id": ids.patient,
                "subject": {"reference": format!("Patient/{}", ids.patient)},
                "name": [{"family": "B's attempt"}]})
            .to_string()
        };
        for method in &methods {
            for group in groups {
                for host in [A, B] {
                    let (status, answer) = as_b(&app, method, host, &path, group, &body).await;
                    let what = format!("{method} {path} at {host} as B's {group}: {status}");
                    // 503 is what /login answers for a test IdP that publishes no
                    // authorization endpoint; a 500 would be a bug (or a panic).
                    assert_ne!(
                        status,
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "{what}\n{answer}"
                    );
                    assert!(
                        !answer.contains(A_FAMILY) && !answer.contains(A_SCIM_USER),
                        "{what}: A's data answered\n{answer}"
                    );
                    if host == A {
                        // B's token is no credential at A's host: A's routes that need
                        // one refuse it; only the public ones (metadata, probes, login
                        // pages) answer, and they carry no tenant data.
                        assert!(!(status.is_success() && on_a_ids), "{what}\n{answer}");
                    } else if on_a_ids {
                        // At B's own host A's ids are nobody's: never a success.
                        assert!(
                            !status.is_success(),
                            "{what}: an id of A succeeded at B\n{answer}"
                        );
                    }
                    if status != StatusCode::METHOD_NOT_ALLOWED && status != StatusCode::NOT_FOUND {
                        served += 1;
                    }
                }
            }
        }
    }
    // Enough (route, method) pairs were really exercised for the sweep to mean something.
    eprintln!(
        "{} routes, {served} requests answered other than 404/405",
        templates.len()
    );
    assert!(
        served > 300,
        "only {served} requests reached a handler or its guards"
    );

    // A batch applies its entries one by one and answers 200: at B's host, each of its
    // entries on A's ids fails as on missing ones, and nothing of A's is answered.
    let batch = a_ids_bundle("batch", &ids).to_string();
    let (status, answer) = as_b(&app, &Method::POST, B, "/fhir", "physicians", &batch).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert!(!answer.contains(A_FAMILY), "{answer}");
    let body = answer.split_once('\n').map_or("", |(_, body)| body);
    let answered: serde_json::Value = serde_json::from_str(body).expect("a batch-response");
    let entries = answered["entry"].as_array().expect("entries");
    assert_eq!(entries.len(), 6, "{answer}");
    for entry in entries {
        let status = entry["response"]["status"].as_str().unwrap_or("");
        assert!(
            status.starts_with("404") || status.starts_with("422"),
            "an entry on A's ids answered {status} at B: {answer}"
        );
    }

    // A's data is untouched by all of it.
    let (status, _, read) = Call::new(
        Method::GET,
        &format!("/fhir/Patient/{}", ids.patient),
        A,
        PHYSICIAN,
    )
    .send(&app)
    .await;
    assert_eq!(status, StatusCode::OK, "{read}");
    assert_eq!(read["meta"]["versionId"], "1", "{read}");
    assert_eq!(read["name"][0]["family"], A_FAMILY, "{read}");
}
