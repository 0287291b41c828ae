//! The audit trail against a real PostgreSQL provisioned by the operator: Patient
//! interactions append a linear hash chain per tenant in the request's own transaction,
//! `verify` names a tampered row, the data plane role can only append and read (grants and
//! the trigger), concurrent writers of one tenant do not fork the chain, and tenants do not
//! see each other's entries. `audit_kinds.rs` covers every resource kind and refusals,
//! `audit_export.rs` the `AuditEvent` export, replica reads and a failed append.
//!
//! Needs the stack: `e2e/stack up && source .stack/env`.

mod support;

use axum::http::{Method, StatusCode};
use phoenix_dataplane::audit::chain::Break;
use phoenix_dataplane::audit::cli::verify;
use phoenix_dataplane::audit::store::Record;
use phoenix_dataplane::audit::{Action, AuditEntry, Requester};
use serde_json::json;
use support::audit::{entries, intact, tenant_id};
use support::fhir::{A, B, Call, PHYSICIAN, create, patient, setup};

const FAMILY: &str = "Quixotewren";

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
