//! Patient `identifier` search on its side table (`clinical.patient_identifiers`, migration
//! 0014) against a real PostgreSQL through the router: the three token forms, updates and
//! deletions keeping the table equal to the resource, another tenant's identical
//! identifier never matching, the migration's backfill, and the planner choosing the
//! tenant-leading index on a table of realistic size.

mod support;

use axum::http::{Method, StatusCode};
use phoenix_dataplane::db::tenant_tx::{Access, TxError};
use phoenix_dataplane::fhir::patient;
use phoenix_dataplane::fhir::search::{Handling, parse};
use phoenix_dataplane::fhir::store::{refs, search_statement};
use serde_json::{Value, json};
use support::fhir::*;

const MRN: &str = "urn:oid:1.2.36.146.595.217.0.1";
const SSN: &str = "http://hl7.org/fhir/sid/us-ssn";

fn with_identifiers(family: &str, identifiers: Value) -> Value {
    json!({
        "resourceType": "Patient",
        "identifier": identifiers,
        "name": [{"family": family}],
    })
}

/// The ids of the patients `host`'s physician finds with `query`.
async fn found(app: &axum::Router, host: &str, query: &str) -> Vec<String> {
    let path = format!("/fhir/Patient?{query}");
    let (status, _, bundle) = Call::new(Method::GET, &path, host, Some((host, "physicians")))
        .send(app)
        .await;
    assert_eq!(status, StatusCode::OK, "{query}: {bundle}");
    let mut ids: Vec<String> = bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| e["resource"]["id"].as_str().expect("id").to_owned())
        .collect();
    ids.sort();
    ids
}

async fn create_on(app: &axum::Router, host: &str, body: Value) -> String {
    let (status, _, created) = Call::new(
        Method::POST,
        "/fhir/Patient",
        host,
        Some((host, "physicians")),
    )
    .body(body)
    .send(app)
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    created["id"].as_str().expect("id").to_owned()
}

#[tokio::test]
async fn identifier_search_serves_every_token_form_follows_updates_and_stays_in_the_tenant() {
    let s = setup().await;
    let both = create_on(
        &s.app,
        A,
        with_identifiers(
            "Both",
            json!([{"system": MRN, "value": "100"}, {"system": SSN, "value": "123-45-6789"}]),
        ),
    )
    .await;
    let bare = create_on(
        &s.app,
        A,
        with_identifiers("Bare", json!([{"value": "100"}])),
    )
    .await;
    let other_mrn = create_on(
        &s.app,
        A,
        with_identifiers("Other", json!([{"system": MRN, "value": "200"}])),
    )
    .await;
    // Tenant B holds the very same identifiers.
    let in_b = create_on(
        &s.app,
        B,
        with_identifiers(
            "Both",
            json!([{"system": MRN, "value": "100"}, {"value": "100"}]),
        ),
    )
    .await;

    let sorted = |mut ids: Vec<&String>| {
        ids.sort();
        ids.into_iter().cloned().collect::<Vec<String>>()
    };
    // system|value
    assert_eq!(
        found(&s.app, A, &format!("identifier={MRN}|100")).await,
        [both.as_str()]
    );
    assert_eq!(
        found(&s.app, A, &format!("identifier={SSN}|100")).await,
        Vec::<String>::new()
    );
    // value, any system
    assert_eq!(
        found(&s.app, A, "identifier=100").await,
        sorted(vec![&both, &bare])
    );
    // |value: no system
    assert_eq!(found(&s.app, A, "identifier=|100").await, [bare.as_str()]);
    // system|: any value of the system
    assert_eq!(
        found(&s.app, A, &format!("identifier={MRN}|")).await,
        sorted(vec![&both, &other_mrn])
    );
    // Several values: any of them.
    assert_eq!(
        found(&s.app, A, &format!("identifier={SSN}|123-45-6789,|100")).await,
        sorted(vec![&both, &bare])
    );
    // B sees its own patient only, A never sees B's.
    assert_eq!(found(&s.app, B, "identifier=100").await, [in_b.as_str()]);
    assert_eq!(
        found(&s.app, B, &format!("identifier={MRN}|")).await,
        [in_b.as_str()]
    );
    assert!(!found(&s.app, A, "identifier=100").await.contains(&in_b));

    // An update replaces the set: the old MRN no longer matches, the new one does, the
    // unchanged SSN still does.
    let path = format!("/fhir/Patient/{both}");
    let (_, _, mut current) = Call::new(Method::GET, &path, A, PHYSICIAN)
        .send(&s.app)
        .await;
    current["identifier"] = json!([
        {"system": SSN, "value": "123-45-6789"},
        {"system": MRN, "value": "101"},
        {"use": "old"},
    ]);
    let (status, _, updated) = Call::new(Method::PUT, &path, A, PHYSICIAN)
        .body(current)
        .send(&s.app)
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(
        found(&s.app, A, &format!("identifier={MRN}|100")).await,
        Vec::<String>::new()
    );
    assert_eq!(
        found(&s.app, A, &format!("identifier={MRN}|101")).await,
        [both.as_str()]
    );
    assert_eq!(
        found(&s.app, A, "identifier=123-45-6789").await,
        [both.as_str()]
    );
    assert_eq!(found(&s.app, A, "identifier=100").await, [bare.as_str()]);
    let rows: i64 = s
        ._db
        .admin()
        .query_one(
            "SELECT count(*) FROM clinical.patient_identifiers WHERE patient_id = $1::text::uuid",
            &[&both],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(
        rows, 2,
        "an identifier with neither system nor value has no row"
    );

    // A deleted patient matches nothing, and its rows are gone.
    let (status, _, _) = Call::new(
        Method::DELETE,
        &format!("/fhir/Patient/{bare}"),
        A,
        PHYSICIAN,
    )
    .send(&s.app)
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        found(&s.app, A, "identifier=|100").await,
        Vec::<String>::new()
    );
    let rows: i64 = s
        ._db
        .admin()
        .query_one(
            "SELECT count(*) FROM clinical.patient_identifiers WHERE patient_id = $1::text::uuid",
            &[&bare],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(rows, 0);
}

/// The migration's backfill, the part after its `-- Backfill` comment.
fn backfill_sql() -> &'static str {
    let migration = phoenix_catalog::migrations::MIGRATIONS
        .iter()
        .find(|m| m.name == "patient_identifiers")
        .expect("migration patient_identifiers");
    &migration.sql[migration.sql.find("-- Backfill").expect("a backfill")..]
}

/// Patients stored as rows before the side table existed: `count` per tenant, identifiers
/// `{prefix}{n}` of the MRN system, and every tenth also a bare `{n}`.
async fn bulk_patients(s: &Setup, tenant: i64, prefix: &str, count: i32) {
    s._db
        .admin()
        .execute(
            "INSERT INTO clinical.patients (tenant_id, id, family_name, resource) \
             SELECT $1, u, 'Bulk', jsonb_build_object('resourceType', 'Patient', 'id', u::text, \
               'identifier', CASE WHEN g % 10 = 0 \
                 THEN jsonb_build_array(jsonb_build_object('system', $2::text, 'value', $3::text || g), \
                                        jsonb_build_object('value', g::text)) \
                 ELSE jsonb_build_array(jsonb_build_object('system', $2::text, 'value', $3::text || g)) END) \
             FROM (SELECT gen_random_uuid() AS u, g FROM generate_series(1, $4) g) AS x",
            &[&tenant, &MRN, &prefix, &count],
        )
        .await
        .expect("bulk patients");
}

#[tokio::test]
async fn the_backfill_indexes_existing_patients_and_the_planner_uses_the_tenant_leading_index() {
    let s = setup().await;
    let (a, b) = s.ids;
    // 20,000 patients in two tenants, as rows written before migration 0014.
    bulk_patients(&s, a, "a-", 10_000).await;
    bulk_patients(&s, b, "b-", 10_000).await;
    assert!(
        found(&s.app, A, "identifier=a-17").await.is_empty(),
        "not yet indexed"
    );
    s._db.execute(backfill_sql()).await;
    s._db
        .execute("ANALYZE clinical.patients; ANALYZE clinical.patient_identifiers")
        .await;

    assert_eq!(
        found(&s.app, A, &format!("identifier={MRN}|a-17"))
            .await
            .len(),
        1
    );
    assert_eq!(found(&s.app, A, "identifier=a-17").await.len(), 1);
    assert_eq!(found(&s.app, A, "identifier=|170").await.len(), 1);
    assert!(found(&s.app, A, "identifier=b-17").await.is_empty());
    assert_eq!(found(&s.app, B, "identifier=b-17").await.len(), 1);

    // The plan of each form with a value, as the data plane role in A's transaction: the
    // side table is read through its (tenant_id, value, system) index, the patients by key.
    for query in [
        format!("identifier={MRN}|a-17"),
        "identifier=a-17".into(),
        "identifier=|170".into(),
    ] {
        let search = parse(&query, &patient::KIND, Handling::Strict).expect("parses");
        let (sql, params) = search_statement(a, &patient::KIND, &search, None, 21);
        let plan: Vec<String> = s
            .database
            .tenant_tx(Access::Read, a, |tx| {
                Box::pin(async move {
                    let rows = tx.query(&format!("EXPLAIN {sql}"), &refs(&params)).await?;
                    Ok::<_, TxError>(rows.iter().map(|r| r.get::<_, String>(0)).collect())
                })
            })
            .await
            .expect("explain");
        let plan = plan.join("\n");
        assert!(
            plan.contains("using patient_identifiers_value on patient_identifiers"),
            "{query}:\n{plan}"
        );
        assert!(!plan.contains("Seq Scan"), "{query}:\n{plan}");
    }
}
