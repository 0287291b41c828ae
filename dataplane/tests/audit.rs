//! The audit trail against a real PostgreSQL provisioned by the operator: the FHIR
//! interactions of every resource kind (Patient, Encounter, DocumentReference,
//! MedicationRequest, `_include`d resources among a search's ids) append a linear hash
//! chain per tenant in the request's own transaction, refusals of any of them are
//! audited, `verify` names a tampered row, the
//! data plane role can only append and read (grants and the trigger), concurrent writers
//! of one tenant do not fork the chain, tenants do not see each other's entries, and the
//! `AuditEvent` export is valid FHIR R4 and needs the audit permission.
//!
//! Needs the stack: `e2e/stack up && source .stack/env`.

mod support;

use axum::http::{Method, StatusCode};
use phoenix_dataplane::audit::chain::Break;
use phoenix_dataplane::audit::cli::{Verdict, verify};
use phoenix_dataplane::audit::store::Record;
use phoenix_dataplane::audit::{Action, AuditEntry, Requester};
use serde_json::{Value, json};
use support::clinical::{create_at, encounter, ids, medication, note, search};
use support::fhir::{A, B, Call, PHYSICIAN, create, patient, setup};
use tokio_postgres::Client;

const ADMIN: Option<(&str, &str)> = Some((A, "admins"));
const FAMILY: &str = "Quixotewren";

async fn tenant_id(admin: &Client, name: &str) -> i64 {
    admin
        .query_one("SELECT id FROM catalog.tenants WHERE name = $1", &[&name])
        .await
        .expect("tenant row")
        .get(0)
}

/// `(seq, action, resource_type, resource_id, result_ids, status, actor)` of a tenant's
/// entries, read as the superuser.
type Row = (
    i64,
    String,
    String,
    Option<String>,
    Option<Vec<String>>,
    i16,
    String,
);

async fn entries(admin: &Client, tenant: i64) -> Vec<Row> {
    admin
        .query(
            "SELECT seq, action, resource_type, resource_id, result_ids, status, actor \
             FROM clinical.audit_events WHERE tenant_id = $1 ORDER BY seq",
            &[&tenant],
        )
        .await
        .expect("audit rows")
        .iter()
        .map(|r| {
            (
                r.get(0),
                r.get(1),
                r.get(2),
                r.get(3),
                r.get(4),
                r.get(5),
                r.get(6),
            )
        })
        .collect()
}

fn intact(verdict: &Verdict, entries: u64) {
    assert_eq!(verdict.broken, None, "{verdict}");
    assert_eq!(verdict.checked, entries, "{verdict}");
}

#[tokio::test]
async fn patient_interactions_append_a_verified_chain_of_ids_without_names() {
    let s = setup().await;
    let admin = s._db.admin();
    let (a, b) = (
        tenant_id(admin, "mercy").await,
        tenant_id(admin, "stjude").await,
    );

    let id = create(&s.app, patient(FAMILY, "1970-01-01", "MRN-1")).await;
    let path = format!("/fhir/Patient/{id}");
    let (status, _, _) = Call::new(Method::GET, &path, A, PHYSICIAN)
        .send(&s.app)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = Call::new(Method::GET, &format!("{path}/_history/1"), A, PHYSICIAN)
        .send(&s.app)
        .await;
    assert_eq!(status, StatusCode::OK);
    let mut changed = patient(FAMILY, "1970-01-02", "MRN-1");
    changed["id"] = json!(id);
    let (status, _, _) = Call::new(Method::PUT, &path, A, PHYSICIAN)
        .body(changed)
        .send(&s.app)
        .await;
    assert_eq!(status, StatusCode::OK);
    let search = format!("/fhir/Patient?family={FAMILY}");
    let (status, _, bundle) = Call::new(Method::GET, &search, A, PHYSICIAN)
        .send(&s.app)
        .await;
    assert_eq!(status, StatusCode::OK, "{bundle}");
    let (status, _, _) = Call::new(Method::DELETE, &path, A, PHYSICIAN)
        .send(&s.app)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _, _) = Call::new(Method::GET, &path, A, PHYSICIAN)
        .send(&s.app)
        .await;
    assert_eq!(status, StatusCode::GONE);
    // Tenant B's clinician asks for A's patient on B's host: a 404, audited in B.
    let (status, _, _) = Call::new(Method::GET, &path, B, Some((B, "physicians")))
        .send(&s.app)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let p = |s: &str| s.to_owned();
    let some = |s: &str| Some(s.to_owned());
    let actor = p("physicians-1");
    assert_eq!(
        entries(admin, a).await,
        vec![
            (
                1,
                p("create"),
                p("Patient"),
                some(&id),
                None,
                201,
                actor.clone()
            ),
            (
                2,
                p("read"),
                p("Patient"),
                some(&id),
                None,
                200,
                actor.clone()
            ),
            (
                3,
                p("vread"),
                p("Patient"),
                some(&format!("{id}/_history/1")),
                None,
                200,
                actor.clone()
            ),
            (
                4,
                p("update"),
                p("Patient"),
                some(&id),
                None,
                200,
                actor.clone()
            ),
            (
                5,
                p("search"),
                p("Patient"),
                None,
                Some(vec![id.clone()]),
                200,
                actor.clone()
            ),
            (
                6,
                p("delete"),
                p("Patient"),
                some(&id),
                None,
                204,
                actor.clone()
            ),
            (
                7,
                p("read"),
                p("Patient"),
                some(&id),
                None,
                410,
                actor.clone()
            ),
        ]
    );
    assert_eq!(
        entries(admin, b).await,
        vec![(
            1,
            p("read"),
            p("Patient"),
            some(&id),
            None,
            404,
            actor.clone()
        )]
    );
    // The search keeps the parameter's name, not the name searched for.
    let leaked: i64 = admin
        .query_one(
            "SELECT count(*) FROM clinical.audit_events e WHERE e::text ILIKE '%' || $1 || '%'",
            &[&FAMILY],
        )
        .await
        .expect("grep the audit rows")
        .get(0);
    assert_eq!(leaked, 0, "a patient's name reached the audit trail");
    let query: Option<String> = admin
        .query_one(
            "SELECT query FROM clinical.audit_events WHERE tenant_id = $1 AND seq = 5",
            &[&a],
        )
        .await
        .expect("search entry")
        .get(0);
    assert_eq!(query.as_deref(), Some("family"));

    intact(&verify(&s.database, a).await.expect("verify A"), 7);
    intact(&verify(&s.database, b).await.expect("verify B"), 1);
}

#[tokio::test]
async fn verify_names_exactly_the_row_the_superuser_changed() {
    let s = setup().await;
    let admin = s._db.admin();
    let a = tenant_id(admin, "mercy").await;
    for n in 0..5 {
        create(&s.app, patient("Tamper", "1980-01-01", &format!("MRN-{n}"))).await;
    }
    intact(&verify(&s.database, a).await.expect("verify"), 5);

    // Even the superuser cannot simply UPDATE: the trigger refuses...
    let refused = admin
        .execute(
            "UPDATE clinical.audit_events SET actor = 'mallory' WHERE tenant_id = $1 AND seq = 3",
            &[&a],
        )
        .await
        .expect_err("the append-only trigger refuses the superuser too");
    assert!(
        refused.to_string().contains("append-only")
            || format!("{refused:?}").contains("append-only"),
        "{refused:?}"
    );
    // ...but one who skips triggers can; the chain shows it.
    admin
        .batch_execute(&format!(
            "SET session_replication_role = replica; \
             UPDATE clinical.audit_events SET actor = 'mallory' WHERE tenant_id = {a} AND seq = 3; \
             RESET session_replication_role;"
        ))
        .await
        .expect("tamper with entry 3");
    let verdict = verify(&s.database, a).await.expect("verify");
    assert_eq!(verdict.checked, 2, "{verdict}");
    assert!(
        matches!(verdict.broken, Some((3, Break::Hash { .. }))),
        "{verdict}"
    );

    // The command an operator runs says the same, and fails.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_phoenix-dataplane"))
        .args(["audit", "verify", "--tenant", "mercy"])
        .env("DATABASE_URL", s._db.dataplane_url())
        .output()
        .expect("run phoenix-dataplane audit verify");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(1),
        "{stdout} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("BROKEN at entry seq 3"), "{stdout}");
    assert!(
        stdout.contains(&format!("tenant_id={a}, seq=3")),
        "{stdout}"
    );
    assert!(stdout.contains("does not match its fields"), "{stdout}");

    // Deleting an entry (again skipping triggers) is a gap at the next one.
    admin
        .batch_execute(&format!(
            "SET session_replication_role = replica; \
             UPDATE clinical.audit_events SET actor = 'physicians-1' WHERE tenant_id = {a} AND seq = 3; \
             DELETE FROM clinical.audit_events WHERE tenant_id = {a} AND seq = 4; \
             RESET session_replication_role;"
        ))
        .await
        .expect("undo, then delete entry 4");
    let verdict = verify(&s.database, a).await.expect("verify");
    assert_eq!(
        verdict.broken,
        Some((5, Break::Gap { expected: 4 })),
        "{verdict}"
    );
}

/// Runs `sql` as the data plane role in a transaction of `tenant`; the error text if any.
async fn as_dataplane(s: &support::fhir::Setup, tenant: i64, sql: &str) -> Result<(), String> {
    let client = s.database.writer().get().await.expect("connection");
    let result = client
        .batch_execute(&format!(
            "BEGIN; SELECT set_config('app.tenant_id', '{tenant}', true); {sql}; COMMIT;"
        ))
        .await;
    let _ = client.batch_execute("ROLLBACK").await;
    result.map_err(|e| {
        e.as_db_error()
            .map_or_else(|| e.to_string(), |d| d.message().to_owned())
    })
}

#[tokio::test]
async fn the_dataplane_role_can_append_and_read_but_never_change_or_remove() {
    let s = setup().await;
    let admin = s._db.admin();
    let a = tenant_id(admin, "mercy").await;
    create(&s.app, patient("Grants", "1980-01-01", "MRN-G")).await;

    let changes = [
        "UPDATE clinical.audit_events SET actor = 'x'",
        "DELETE FROM clinical.audit_events",
        "TRUNCATE clinical.audit_events",
    ];
    for sql in changes {
        let error = as_dataplane(&s, a, sql).await.expect_err(sql);
        assert!(error.contains("permission denied"), "{sql}: {error}");
    }
    // Granted by hand (drift the operator would revoke), the trigger still refuses.
    s._db
        .execute(&format!(
            "GRANT UPDATE, DELETE, TRUNCATE ON clinical.audit_events TO {}",
            s._db.role
        ))
        .await;
    for sql in changes {
        let error = as_dataplane(&s, a, sql).await.expect_err(sql);
        assert!(error.contains("append-only"), "{sql}: {error}");
    }
    // An append that names its own seq and hashes gets the chain's instead.
    as_dataplane(
        &s,
        a,
        &format!(
            "INSERT INTO clinical.audit_events (tenant_id, seq, recorded_at, actor, action, resource_type, \
             status, request_id, prev_hash, hash) VALUES ({a}, 99, '2000-01-01', 'forger', 'read', 'Patient', \
             200, 'r', '\\x{z}', '\\x{z}')",
            z = "00".repeat(32)
        ),
    )
    .await
    .expect("the data plane may append");
    let rows = entries(admin, a).await;
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1].0, 2, "the trigger assigns the next seq");
    intact(&verify(&s.database, a).await.expect("verify"), 2);
}

#[tokio::test]
async fn concurrent_writers_of_one_tenant_keep_one_linear_chain() {
    let s = setup().await;
    let admin = s._db.admin();
    let a = tenant_id(admin, "mercy").await;
    let database = s._db.database(8);
    let writers = (0..8).map(|w| {
        let database = database.clone();
        tokio::spawn(async move {
            for n in 0..15 {
                let record = Record {
                    requester: Requester {
                        tenant_id: a,
                        actor: format!("writer-{w}"),
                        request_id: format!("{w}-{n}"),
                        source: Some("127.0.0.1".into()),
                    },
                    entry: AuditEntry::new(Action::Read, "Patient").id(format!("{w}-{n}")),
                    status: 200,
                };
                database.append(&record).await.expect("append");
            }
        })
    });
    for writer in futures::future::join_all(writers).await {
        writer.expect("writer task");
    }
    let row = admin
        .query_one(
            "SELECT count(*), count(DISTINCT prev_hash), min(seq), max(seq) \
             FROM clinical.audit_events WHERE tenant_id = $1",
            &[&a],
        )
        .await
        .expect("chain shape");
    let (count, distinct_prev, min, max): (i64, i64, i64, i64) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    assert_eq!((count, distinct_prev, min, max), (120, 120, 1, 120));
    intact(&verify(&s.database, a).await.expect("verify"), 120);
}

#[tokio::test]
async fn a_tenant_neither_sees_nor_writes_another_tenants_entries() {
    let s = setup().await;
    let admin = s._db.admin();
    let (a, b) = (
        tenant_id(admin, "mercy").await,
        tenant_id(admin, "stjude").await,
    );
    create(&s.app, patient("Isolated", "1980-01-01", "MRN-I")).await;
    assert_eq!(entries(admin, a).await.len(), 1);

    let seen = s
        .database
        .tenant_tx(phoenix_dataplane::db::tenant_tx::Access::Read, b, |tx| {
            Box::pin(async move {
                let row = tx
                    .query_one(
                        "SELECT count(*) FROM clinical.audit_events WHERE tenant_id = $1",
                        &[&a],
                    )
                    .await?;
                Ok::<i64, phoenix_dataplane::db::tenant_tx::TxError>(row.get(0))
            })
        })
        .await
        .expect("B's transaction");
    assert_eq!(seen, 0);
    let error = as_dataplane(
        &s,
        b,
        &format!(
            "INSERT INTO clinical.audit_events (tenant_id, actor, action, resource_type, status, request_id) \
             VALUES ({a}, 'x', 'read', 'Patient', 200, 'r')"
        ),
    )
    .await
    .expect_err("RLS refuses an entry for another tenant");
    assert!(error.contains("row-level security"), "{error}");
    intact(&verify(&s.database, b).await.expect("verify B"), 0);

    // B's auditor sees only B's export (its own export entry, none of A's).
    let (status, _, bundle) = Call::new(Method::GET, "/fhir/AuditEvent", B, Some((B, "admins")))
        .send(&s.app)
        .await;
    assert_eq!(status, StatusCode::OK, "{bundle}");
    assert!(bundle.get("entry").is_none(), "{bundle}");
}

#[tokio::test]
async fn the_audit_event_export_is_valid_fhir_pages_and_needs_the_audit_permission() {
    let s = setup().await;
    let admin = s._db.admin();
    let a = tenant_id(admin, "mercy").await;
    let id = create(&s.app, patient("Export", "1980-01-01", "MRN-E")).await;
    let (status, _, _) = Call::new(Method::GET, &format!("/fhir/Patient/{id}"), A, PHYSICIAN)
        .send(&s.app)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = Call::new(Method::GET, "/fhir/Patient?family=Exp", A, PHYSICIAN)
        .send(&s.app)
        .await;
    assert_eq!(status, StatusCode::OK);

    // A physician reads PHI but not the audit trail.
    let (status, _, outcome) = Call::new(Method::GET, "/fhir/AuditEvent", A, PHYSICIAN)
        .send(&s.app)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{outcome}");
    assert_eq!(outcome["resourceType"], "OperationOutcome");

    // Every body is validated by fhir.resources in `send`; two per page.
    let mut events: Vec<Value> = Vec::new();
    let mut next = Some("/fhir/AuditEvent?_count=2".to_owned());
    let mut pages = 0;
    while let Some(path) = next {
        let (status, _, bundle) = Call::new(Method::GET, &path, A, ADMIN).send(&s.app).await;
        assert_eq!(status, StatusCode::OK, "{bundle}");
        pages += 1;
        for entry in bundle["entry"].as_array().into_iter().flatten() {
            events.push(entry["resource"].clone());
        }
        next = bundle["link"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|l| l["relation"] == "next")
            .and_then(|l| l["url"].as_str())
            .map(|url| url.trim_start_matches(&format!("https://{A}")).to_owned());
        assert!(pages < 10, "paging does not end");
    }
    // create, read, search, then each export page is audited as it is served: the first
    // page sees 3 entries, the second 4 (the first export added one)...
    let subtypes: Vec<&str> = events
        .iter()
        .filter_map(|e| e["subtype"][0]["code"].as_str())
        .collect();
    assert_eq!(
        &subtypes[..3],
        ["create", "read", "search-type"],
        "{events:#?}"
    );
    assert_eq!(
        events[0]["entity"][0]["what"]["reference"],
        format!("Patient/{id}")
    );
    assert_eq!(
        events[2]["entity"][1]["what"]["reference"],
        format!("Patient/{id}")
    );
    assert_eq!(
        events[0]["agent"][0]["who"]["identifier"]["value"],
        "physicians-1"
    );
    assert_eq!(events[0]["outcome"], "0");
    let ids: Vec<&str> = events.iter().filter_map(|e| e["id"].as_str()).collect();
    let mut unique = ids.clone();
    unique.dedup();
    assert_eq!(ids, unique, "a page repeated an event");

    // The exports were audited too, with what they returned (and the physician's refusal).
    let rows = entries(admin, a).await;
    let exports: Vec<&Row> = rows
        .iter()
        .filter(|r| r.1 == "export" && r.5 == 200)
        .collect();
    assert_eq!(exports.len(), pages);
    assert_eq!(exports[0].4, Some(vec!["1".to_owned(), "2".to_owned()]));

    // `date` bounds what is exported.
    let (status, _, bundle) =
        Call::new(Method::GET, "/fhir/AuditEvent?date=lt2000-01-01", A, ADMIN)
            .send(&s.app)
            .await;
    assert_eq!(status, StatusCode::OK, "{bundle}");
    assert!(bundle.get("entry").is_none(), "{bundle}");
    let today = jiff::Timestamp::now().strftime("%Y-%m-%d").to_string();
    let (status, _, bundle) = Call::new(
        Method::GET,
        &format!("/fhir/AuditEvent?date=ge{today}&_count=100"),
        A,
        ADMIN,
    )
    .send(&s.app)
    .await;
    assert_eq!(status, StatusCode::OK, "{bundle}");
    assert!(
        bundle["entry"].as_array().is_some_and(|e| e.len() >= 3),
        "{bundle}"
    );
    let (status, _, outcome) = Call::new(Method::GET, "/fhir/AuditEvent?date=yesterday", A, ADMIN)
        .send(&s.app)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{outcome}");

    // The CapabilityStatement lists the export.
    let (_, _, statement) = Call::new(Method::GET, "/fhir/metadata", A, None)
        .send(&s.app)
        .await;
    let types: Vec<&str> = statement["rest"][0]["resource"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["type"].as_str())
        .collect();
    assert!(types.contains(&"AuditEvent"), "{statement}");
    intact(
        &verify(&s.database, a).await.expect("verify"),
        rows.len() as u64 + 2,
    );
}

#[tokio::test]
async fn refused_requests_are_audited_with_who_was_refused() {
    let s = setup().await;
    let admin = s._db.admin();
    let a = tenant_id(admin, "mercy").await;
    let id = create(&s.app, patient("Refused", "1980-01-01", "MRN-R")).await;
    let path = format!("/fhir/Patient/{id}");

    // No credential: 401, anonymous; from the connection's peer address.
    let peer: std::net::SocketAddr = "10.1.2.3:4444".parse().expect("address");
    let behind_peer = s
        .app
        .clone()
        .layer(axum::extract::connect_info::MockConnectInfo(peer));
    let (status, _, _) = Call::new(Method::GET, &path, A, None)
        .send(&behind_peer)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // A token of B's IdP on A's host: 401, anonymous (it proves nothing here).
    let (status, _, _) = Call::new(Method::DELETE, &path, A, Some((B, "physicians")))
        .send(&s.app)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // Authenticated without the permission: 403, with the subject.
    let (status, _, _) = Call::new(Method::PUT, &path, A, Some((A, "readonlys")))
        .body(patient("Refused", "1980-01-01", "MRN-R"))
        .send(&s.app)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, _) = Call::new(Method::GET, "/fhir/AuditEvent", A, PHYSICIAN)
        .header("x-request-id", "req-403")
        .send(&s.app)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let p = |s: &str| s.to_owned();
    let rows = entries(admin, a).await;
    assert_eq!(
        rows[1..],
        [
            (
                2,
                p("read"),
                p("Patient"),
                Some(id.clone()),
                None,
                401,
                p("anonymous")
            ),
            (
                3,
                p("delete"),
                p("Patient"),
                Some(id.clone()),
                None,
                401,
                p("anonymous")
            ),
            (
                4,
                p("update"),
                p("Patient"),
                Some(id.clone()),
                None,
                403,
                p("readonlys-1")
            ),
            (
                5,
                p("export"),
                p("AuditEvent"),
                None,
                None,
                403,
                p("physicians-1")
            ),
        ]
    );
    let request_id: String = admin
        .query_one(
            "SELECT request_id FROM clinical.audit_events WHERE tenant_id = $1 AND seq = 5",
            &[&a],
        )
        .await
        .expect("entry 5")
        .get(0);
    assert_eq!(request_id, "req-403");
    let sources: Vec<Option<String>> = admin
        .query(
            "SELECT source FROM clinical.audit_events WHERE tenant_id = $1 ORDER BY seq",
            &[&a],
        )
        .await
        .expect("sources")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        sources,
        [None, Some("10.1.2.3".to_owned()), None, None, None]
    );
    intact(&verify(&s.database, a).await.expect("verify"), 5);
}

#[tokio::test]
async fn reads_served_by_the_replica_are_audited_on_the_primary() {
    let s = setup().await;
    let admin = s._db.admin();
    let a = tenant_id(admin, "mercy").await;
    let mut config = phoenix_dataplane::Config::new(s._db.dataplane_url());
    config.reader_url = Some(s._db.replica_url());
    config.database_ca_file = s._db.ca_file();
    config.pool_size = 2;
    let split = phoenix_dataplane::db::Database::new(&config).expect("pools");
    let app = support::fhir::fresh_app(&s.catalog, &split);

    let id = create(&app, patient("Replica", "1980-01-01", "MRN-P")).await;
    let path = format!("/fhir/Patient/{id}");
    // The replica serves the read once it replayed the create (no read-your-writes yet).
    support::eventually(
        "the replica serves the new patient",
        std::time::Duration::from_secs(10),
        || async {
            let (status, _, _) = Call::new(Method::GET, &path, A, PHYSICIAN).send(&app).await;
            (status == StatusCode::OK)
                .then_some(())
                .ok_or_else(|| status.to_string())
        },
    )
    .await;
    let missing = format!("/fhir/Patient/{}", "00000000-0000-4000-8000-000000000000");
    let (status, _, _) = Call::new(Method::GET, &missing, A, PHYSICIAN)
        .send(&app)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let rows = entries(admin, a).await;
    let last_two: Vec<(String, i16)> = rows[rows.len() - 2..]
        .iter()
        .map(|r| (r.1.clone(), r.5))
        .collect();
    assert_eq!(
        last_two,
        [("read".to_owned(), 200), ("read".to_owned(), 404)]
    );
    assert!(rows.iter().skip(1).all(|r| r.1 == "read"), "{rows:?}");
    intact(
        &verify(&s.database, a).await.expect("verify"),
        rows.len() as u64,
    );
}

#[tokio::test]
async fn a_request_whose_entry_cannot_be_written_is_not_answered_and_writes_nothing() {
    let s = setup().await;
    let admin = s._db.admin();
    let a = tenant_id(admin, "mercy").await;
    let id = create(&s.app, patient("Atomic", "1980-01-01", "MRN-A1")).await;
    // Every new entry now fails (a constraint that refuses all new rows).
    s._db
        .execute(
            "ALTER TABLE clinical.audit_events ADD CONSTRAINT refuse_all CHECK (false) NOT VALID",
        )
        .await;

    let (status, _, outcome) = Call::new(Method::POST, "/fhir/Patient", A, PHYSICIAN)
        .body(patient("Atomic", "1980-01-01", "MRN-A2"))
        .send(&s.app)
        .await;
    assert!(status.is_server_error(), "{status} {outcome}");
    let (status, _, outcome) = Call::new(Method::GET, &format!("/fhir/Patient/{id}"), A, PHYSICIAN)
        .send(&s.app)
        .await;
    assert!(
        status.is_server_error(),
        "a read was answered unaudited: {status} {outcome}"
    );
    let patients: i64 = admin
        .query_one(
            "SELECT count(*) FROM clinical.patients WHERE tenant_id = $1",
            &[&a],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(patients, 1, "the create committed without its audit entry");

    s._db
        .execute("ALTER TABLE clinical.audit_events DROP CONSTRAINT refuse_all")
        .await;
    intact(&verify(&s.database, a).await.expect("verify"), 1);
}

/// `(action, resource_type, resource_id, result_ids, status)` of a tenant's entries after
/// `after_seq`.
async fn interactions(
    admin: &Client,
    tenant: i64,
    after_seq: i64,
) -> Vec<(String, String, Option<String>, Option<Vec<String>>, i16)> {
    entries(admin, tenant)
        .await
        .into_iter()
        .filter(|r| r.0 > after_seq)
        .map(|(_, action, resource_type, id, results, status, _)| {
            (action, resource_type, id, results, status)
        })
        .collect()
}

#[tokio::test]
async fn every_resource_kind_is_audited_with_the_ids_it_discloses() {
    let s = setup().await;
    let admin = s._db.admin();
    let a = tenant_id(admin, "mercy").await;
    admin
        .batch_execute("CREATE EXTENSION IF NOT EXISTS pg_walinspect")
        .await
        .expect("pg_walinspect (contrib of the server package)");
    let pid = create(&s.app, patient(FAMILY, "1970-01-01", "MRN-K")).await;
    let before: String = admin
        .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
        .await
        .expect("position")
        .get(0);

    // An Encounter create: its entry commits in the same transaction, and the write's
    // consistency token covers that commit record.
    let (status, headers, created) = Call::new(Method::POST, "/fhir/Encounter", A, PHYSICIAN)
        .body(encounter(
            &pid,
            "2024-05-01T09:00:00Z",
            None,
            "in-progress",
            "dr-k",
        ))
        .send(&s.app)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let eid = created["id"].as_str().expect("id").to_owned();
    let token = headers
        .get("x-consistency-token")
        .and_then(|v| v.to_str().ok())
        .expect("a write answers a token")
        .to_owned();
    let xids: Vec<String> = admin
        .query(
            "SELECT xmin::text FROM clinical.encounters WHERE id = $1::text::uuid \
             UNION ALL SELECT xmin::text FROM clinical.audit_events \
             WHERE tenant_id = $2 AND action = 'create' AND resource_id = $1",
            &[&eid, &a],
        )
        .await
        .expect("xmins")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(xids.len(), 2, "{xids:?}");
    assert_eq!(xids[0], xids[1], "the entry left in another transaction");
    for sql in [
        "CREATE TABLE IF NOT EXISTS public.flush_marker (x int)",
        "SET synchronous_commit = on",
        "INSERT INTO public.flush_marker VALUES (1)",
        "RESET synchronous_commit",
    ] {
        admin.batch_execute(sql).await.expect("flush");
    }
    let row = admin
        .query_one(
            "SELECT end_lsn::text, $3::text::pg_lsn >= end_lsn \
             FROM pg_get_wal_records_info($1::text::pg_lsn, pg_current_wal_flush_lsn()) \
             WHERE resource_manager = 'Transaction' AND record_type = 'COMMIT' \
               AND xid::text = $2",
            &[&before, &xids[0], &token],
        )
        .await
        .expect("the create's commit record");
    let (end, covered): (String, bool) = (row.get(0), row.get(1));
    assert!(
        covered,
        "token {token} is before the commit record's end {end}"
    );

    // A search that includes the patient: both ids are in its entry, the patient's
    // qualified by its type.
    let bundle = search(
        &s.app,
        A,
        PHYSICIAN,
        &format!("/fhir/Encounter?patient={pid}&_include=Encounter:patient"),
    )
    .await;
    assert_eq!(ids(&bundle, "match"), [eid.as_str()]);
    assert_eq!(ids(&bundle, "include"), [pid.as_str()]);

    // Every interaction of the other two kinds.
    let did = create_at(
        &s.app,
        A,
        PHYSICIAN,
        note(&pid, Some(&eid), "2024-05-01T10:00:00Z"),
    )
    .await;
    let mid = create_at(&s.app, A, PHYSICIAN, medication(&pid, Some(&eid), "active")).await;
    for (kind, id) in [("DocumentReference", &did), ("MedicationRequest", &mid)] {
        let path = format!("/fhir/{kind}/{id}");
        let (status, _, current) = Call::new(Method::GET, &path, A, PHYSICIAN)
            .send(&s.app)
            .await;
        assert_eq!(status, StatusCode::OK, "{current}");
        let (status, _, _) = Call::new(Method::GET, &format!("{path}/_history/1"), A, PHYSICIAN)
            .send(&s.app)
            .await;
        assert_eq!(status, StatusCode::OK);
        let (status, _, updated) = Call::new(Method::PUT, &path, A, PHYSICIAN)
            .body(current)
            .send(&s.app)
            .await;
        assert_eq!(status, StatusCode::OK, "{updated}");
        search(
            &s.app,
            A,
            PHYSICIAN,
            &format!("/fhir/{kind}?patient={pid}&_include={kind}:patient"),
        )
        .await;
        let (status, _, _) = Call::new(Method::DELETE, &path, A, PHYSICIAN)
            .send(&s.app)
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (status, _, _) = Call::new(Method::GET, &path, A, PHYSICIAN)
            .send(&s.app)
            .await;
        assert_eq!(status, StatusCode::GONE);
    }

    let p = |s: &str| s.to_owned();
    let qualified = format!("Patient/{pid}");
    let mut expected = vec![
        (p("create"), p("Encounter"), Some(eid.clone()), None, 201),
        (
            p("search"),
            p("Encounter"),
            None,
            Some(vec![eid.clone(), qualified.clone()]),
            200,
        ),
        (
            p("create"),
            p("DocumentReference"),
            Some(did.clone()),
            None,
            201,
        ),
        (
            p("create"),
            p("MedicationRequest"),
            Some(mid.clone()),
            None,
            201,
        ),
    ];
    for (kind, id) in [("DocumentReference", &did), ("MedicationRequest", &mid)] {
        expected.extend([
            (p("read"), p(kind), Some(id.clone()), None, 200),
            (
                p("vread"),
                p(kind),
                Some(format!("{id}/_history/1")),
                None,
                200,
            ),
            (p("update"), p(kind), Some(id.clone()), None, 200),
            (
                p("search"),
                p(kind),
                None,
                Some(vec![id.clone(), qualified.clone()]),
                200,
            ),
            (p("delete"), p(kind), Some(id.clone()), None, 204),
            (p("read"), p(kind), Some(id.clone()), None, 410),
        ]);
    }
    assert_eq!(interactions(admin, a, 1).await, expected);
    let query: Option<String> = admin
        .query_one(
            "SELECT query FROM clinical.audit_events WHERE tenant_id = $1 AND seq = 3",
            &[&a],
        )
        .await
        .expect("search entry")
        .get(0);
    assert_eq!(query.as_deref(), Some("_include,patient"));
    intact(
        &verify(&s.database, a).await.expect("verify"),
        1 + expected.len() as u64,
    );

    // The export shows the included patient as a Patient, the match as an Encounter.
    let (status, _, bundle) = Call::new(Method::GET, "/fhir/AuditEvent", A, ADMIN)
        .send(&s.app)
        .await;
    assert_eq!(status, StatusCode::OK, "{bundle}");
    let search_event = &bundle["entry"][2]["resource"];
    let references: Vec<&str> = search_event["entity"]
        .as_array()
        .expect("entities")
        .iter()
        .filter_map(|e| e["what"]["reference"].as_str())
        .collect();
    assert_eq!(references, [format!("Encounter/{eid}"), qualified.clone()]);
}

#[tokio::test]
async fn refusals_on_every_resource_kind_are_audited() {
    let s = setup().await;
    let admin = s._db.admin();
    let a = tenant_id(admin, "mercy").await;
    let pid = create(&s.app, patient("Refusal", "1980-01-01", "MRN-RK")).await;
    let eid = create_at(
        &s.app,
        A,
        PHYSICIAN,
        encounter(&pid, "2024-05-01T09:00:00Z", None, "finished", "dr-r"),
    )
    .await;
    let readonly = Some((A, "readonlys"));

    // A read-only user writes a SOAP note: 403, nothing stored, the refusal audited.
    let (status, _, outcome) = Call::new(Method::POST, "/fhir/DocumentReference", A, readonly)
        .body(note(&pid, Some(&eid), "2024-05-01T10:00:00Z"))
        .send(&s.app)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{outcome}");
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    let notes: i64 = admin
        .query_one(
            "SELECT count(*) FROM clinical.document_references WHERE tenant_id = $1",
            &[&a],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(notes, 0);
    // ... deletes an Encounter: 403; nobody searches MedicationRequests: 401.
    let (status, _, _) = Call::new(
        Method::DELETE,
        &format!("/fhir/Encounter/{eid}"),
        A,
        readonly,
    )
    .send(&s.app)
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, _) = Call::new(
        Method::GET,
        &format!("/fhir/MedicationRequest?patient={pid}"),
        A,
        None,
    )
    .send(&s.app)
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // HEAD asks what GET does: an anonymous one is a refused read.
    let (status, _, _) = Call::new(Method::HEAD, &format!("/fhir/Encounter/{eid}"), A, None)
        .send(&s.app)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let p = |s: &str| s.to_owned();
    let rows = entries(admin, a).await;
    let refusals: Vec<(String, String, Option<String>, i16, String)> = rows[2..]
        .iter()
        .map(|r| (r.1.clone(), r.2.clone(), r.3.clone(), r.5, r.6.clone()))
        .collect();
    assert_eq!(
        refusals,
        [
            (
                p("create"),
                p("DocumentReference"),
                None,
                403,
                p("readonlys-1")
            ),
            (
                p("delete"),
                p("Encounter"),
                Some(eid.clone()),
                403,
                p("readonlys-1")
            ),
            (
                p("search"),
                p("MedicationRequest"),
                None,
                401,
                p("anonymous")
            ),
            (
                p("read"),
                p("Encounter"),
                Some(eid.clone()),
                401,
                p("anonymous")
            ),
        ]
    );
    intact(&verify(&s.database, a).await.expect("verify"), 6);
}
