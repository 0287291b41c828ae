//! `deletionPolicy: Snapshot` of a `Shared` tenant against a real PostgreSQL and moto's S3
//! (the stack's `AWS_ENDPOINT_URL`): the object is written and checked before any row goes,
//! it restores (through the `phoenix-operator snapshot restore` command) into a new tenant
//! with the same rows and an audit chain that verifies, and a missing bucket or a row
//! written after the snapshot leaves every row in place.

mod support;

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use phoenix_catalog::{TENANT_TABLES, TenantRow};
use phoenix_operator::controller::providers::Database;
use phoenix_operator::controller::region::apply::provision;
use phoenix_operator::snapshot::store::{
    Listed, ObjectLocation, S3Store, SnapshotStore, StoreError,
};
use phoenix_operator::snapshot::{Destination, Snapshot, SnapshotError, snapshot_then_delete};
use support::TestDb;
use tokio_postgres::Client;

const AWS_REGION: &str = "us-east-1";

fn tenant(name: &str) -> TenantRow {
    TenantRow {
        uid: format!("uid-{name}-{}", support::rand_suffix()),
        name: name.to_owned(),
        display_name: format!("{name} hospital"),
        hostname: format!("{name}-{}.example.test", support::rand_suffix()),
        home_region: "us-east-1".to_owned(),
        data_residency: vec!["US".to_owned()],
        isolation: phoenix_catalog::Isolation::Shared,
        state: phoenix_catalog::TenantState::Active,
        requests_per_second: 100,
        max_users: 100,
        generation: 1,
        schema: None,
    }
}

/// moto's S3 from the stack, through the operator's own client configuration; an unset
/// endpoint fails the test.
async fn s3() -> aws_sdk_s3::Client {
    assert!(
        std::env::var_os("AWS_ENDPOINT_URL").is_some(),
        "AWS_ENDPOINT_URL is not set: run `e2e/stack up && source .stack/env` so the tests reach moto"
    );
    S3Store::from_env().await.client(AWS_REGION)
}

/// A new bucket of its own in moto.
async fn bucket() -> String {
    let name = format!("phoenix-snap-{}", support::rand_suffix());
    s3().await
        .create_bucket()
        .bucket(&name)
        .send()
        .await
        .expect("create a bucket in moto (is the stack's moto running?)");
    name
}

fn destination(bucket: &str) -> Destination {
    Destination {
        aws_region: AWS_REGION.to_owned(),
        bucket: bucket.to_owned(),
        prefix: Some("tenants".to_owned()),
        region: "us-east-1".to_owned(),
    }
}

/// A provisioned region database with tenant `source` holding rows in every tenant table
/// (text with tabs, newlines and backslashes, NULLs, arrays, JSON) and tenant `other`
/// holding a few; their ids.
async fn seeded(db: &TestDb) -> (Arc<dyn Database>, TenantRow, i64, i64) {
    let region = db.region();
    provision(&*region, None).await.expect("provision");
    let source = tenant("source");
    let id = region.upsert_tenant(&source).await.expect("source");
    let other = region.upsert_tenant(&tenant("other")).await.expect("other");
    let admin = db.admin().await;
    admin
        .batch_execute(&format!(
            r#"
            INSERT INTO clinical.patients (tenant_id, id, family_name, given_name, birth_date, resource) VALUES
              ({id}, '00000000-0000-0000-0000-000000000001', E'O''Brien\tTab', E'line1\nline2 \\ back', '1970-01-02', '{{"resourceType":"Patient","name":[{{"family":"O''Brien"}}]}}'),
              ({id}, '00000000-0000-0000-0000-000000000002', 'Müller', NULL, NULL, '{{"resourceType":"Patient"}}'),
              ({other}, '00000000-0000-0000-0000-000000000001', 'Other', NULL, NULL, '{{}}');
            INSERT INTO clinical.patient_identifiers (tenant_id, patient_id, position, system, value) VALUES
              ({id}, '00000000-0000-0000-0000-000000000001', 0, 'urn:mrn', E'MRN\t1'),
              ({id}, '00000000-0000-0000-0000-000000000001', 1, NULL, 'SSN-1'),
              ({other}, '00000000-0000-0000-0000-000000000001', 0, 'urn:mrn', 'MRN-O');
            INSERT INTO clinical.encounters (tenant_id, id, patient_id, status, department, period_start, period_end, resource) VALUES
              ({id}, '00000000-0000-0000-0000-0000000000e1', '00000000-0000-0000-0000-000000000001', 'finished', 'cardiology', '2026-01-01 10:00:00.123456+00', '2026-01-01 11:30:00+00', '{{}}');
            INSERT INTO clinical.document_references (tenant_id, patient_id, encounter_id, status, resource) VALUES
              ({id}, '00000000-0000-0000-0000-000000000001', '00000000-0000-0000-0000-0000000000e1', 'current', '{{"note":"S: ok\nO: ok"}}');
            INSERT INTO clinical.medication_requests (tenant_id, patient_id, status, resource) VALUES
              ({id}, '00000000-0000-0000-0000-000000000002', 'active', '{{}}');
            INSERT INTO clinical.scim_users (tenant_id, id, user_name, external_id, resource) VALUES
              ({id}, '00000000-0000-0000-0000-0000000000a1', 'ann@example.test', 'x1', '{{}}'),
              ({id}, '00000000-0000-0000-0000-0000000000a2', 'bob@example.test', NULL, '{{}}');
            INSERT INTO clinical.scim_groups (tenant_id, id, display_name, resource) VALUES
              ({id}, '00000000-0000-0000-0000-0000000000b1', 'Physicians', '{{}}');
            INSERT INTO clinical.scim_group_members (tenant_id, group_id, user_id, ordinal, display) VALUES
              ({id}, '00000000-0000-0000-0000-0000000000b1', '00000000-0000-0000-0000-0000000000a1', 0, 'Ann');
            INSERT INTO clinical.login_attempts (tenant_id, state_sha256, code_verifier, nonce, redirect_uri, return_to, expires_at) VALUES
              ({id}, 'st', 'cv', 'n', 'https://x/cb', '/', now() + interval '5 minutes');
            INSERT INTO clinical.sessions (tenant_id, id_sha256, subject, roles, expires_at) VALUES
              ({id}, 'sid', 'ann', ARRAY['physician', 'a,b "c"'], now() + interval '1 hour');
            INSERT INTO clinical.fhir_history (tenant_id, resource_type, id, version, resource) VALUES
              ({id}, 'Patient', '00000000-0000-0000-0000-000000000001', 1, '{{}}'),
              ({id}, 'Patient', '00000000-0000-0000-0000-000000000003', 2, NULL);
            INSERT INTO clinical.audit_events (tenant_id, actor, action, resource_type, resource_id, status, request_id) VALUES
              ({id}, 'ann', 'read', 'Patient', '00000000-0000-0000-0000-000000000001', 200, 'r1');
            INSERT INTO clinical.audit_events (tenant_id, actor, action, resource_type, query, result_ids, status, request_id, source) VALUES
              ({id}, 'ann', 'search', 'Patient', 'family', ARRAY['00000000-0000-0000-0000-000000000001', NULL], 200, 'r2', '10.0.0.1');
            INSERT INTO clinical.audit_events (tenant_id, actor, action, resource_type, status, request_id) VALUES
              ({id}, 'bob', 'create', 'Encounter', 201, 'r3'),
              ({other}, 'zed', 'read', 'Patient', 200, 'r4');
            "#
        ))
        .await
        .expect("seed every tenant table");
    (region, source, id, other)
}

/// Rows of tenant `id` in each tenant table, in `TENANT_TABLES` order.
async fn counts(admin: &Client, id: i64) -> Vec<(String, i64)> {
    let mut out = Vec::new();
    for table in TENANT_TABLES {
        let n: i64 = admin
            .query_one(
                &format!("SELECT count(*) FROM {table} WHERE tenant_id = $1"),
                &[&id],
            )
            .await
            .expect("count")
            .get(0);
        out.push((table.to_owned(), n));
    }
    out
}

/// Every row of tenant `id` that a restore must carry over unchanged, as text.
async fn content(admin: &Client, id: i64) -> Vec<String> {
    let mut out = Vec::new();
    for (table, order) in [
        ("clinical.patients", "id"),
        ("clinical.encounters", "id"),
        ("clinical.document_references", "id"),
        ("clinical.medication_requests", "id"),
        ("clinical.scim_users", "id"),
        ("clinical.scim_groups", "id"),
        ("clinical.scim_group_members", "group_id, user_id"),
        ("clinical.fhir_history", "resource_type, id, version"),
    ] {
        let rows = admin
            .query(
                &format!(
                    "SELECT (to_jsonb(t) - 'tenant_id')::text FROM {table} t WHERE tenant_id = $1 ORDER BY {order}"
                ),
                &[&id],
            )
            .await
            .expect("content");
        out.extend(
            rows.iter()
                .map(|r| format!("{table} {}", r.get::<_, String>(0))),
        );
    }
    // The audit entries' own fields (not tenant_id, not the hashes that cover it).
    let rows = admin
        .query(
            "SELECT (to_jsonb(a) - 'tenant_id' - 'hash' - 'prev_hash')::text FROM clinical.audit_events a WHERE tenant_id = $1 ORDER BY seq",
            &[&id],
        )
        .await
        .expect("audit content");
    out.extend(
        rows.iter()
            .map(|r| format!("audit {}", r.get::<_, String>(0))),
    );
    out
}

/// Entries of tenant `id`'s audit chain that do not follow from the previous one, as
/// `phoenix-dataplane audit verify` recomputes them (the same canonical function).
async fn broken_links(admin: &Client, id: i64) -> i64 {
    admin
        .query_one(
            "SELECT count(*) FROM (
               SELECT a.seq, a.hash, a.prev_hash,
                      sha256(convert_to(clinical.audit_canonical(a), 'UTF8') || a.prev_hash) AS recomputed,
                      coalesce(lag(a.hash) OVER (ORDER BY a.seq), '\\x0000000000000000000000000000000000000000000000000000000000000000'::bytea) AS previous,
                      row_number() OVER (ORDER BY a.seq) AS n
               FROM clinical.audit_events a WHERE a.tenant_id = $1) c
             WHERE c.hash <> c.recomputed OR c.prev_hash <> c.previous OR c.seq <> c.n",
            &[&id],
        )
        .await
        .expect("verify the chain")
        .get(0)
}

/// The admin DSN of the stack, pointed at the test database.
fn dsn_of(db: &TestDb) -> String {
    let admin = support::admin_dsn();
    let (base, query) = admin
        .split_once('?')
        .map_or((admin.as_str(), None), |(b, q)| (b, Some(q)));
    let (server, _) = base.rsplit_once('/').expect("a DSN with a database");
    match query {
        Some(q) => format!("{server}/{}?{q}", db.name),
        None => format!("{server}/{}", db.name),
    }
}

fn restore_cmd(bucket: &str, key: &str, into: &str, dsn: &str) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_phoenix-operator"))
        .args([
            "snapshot",
            "restore",
            "--bucket",
            bucket,
            "--key",
            key,
            "--aws-region",
            AWS_REGION,
            "--into-tenant",
            into,
        ])
        .env("DATABASE_URL", dsn)
        .output()
        .expect("run phoenix-operator snapshot restore")
}

/// The real store, noting the source tenant's rows at the moment each object is written.
struct Watching {
    inner: S3Store,
    admin: Client,
    tenant_id: i64,
    /// Rows of the tenant seen when `put` was called.
    seen_at_put: Mutex<Vec<Vec<(String, i64)>>>,
    /// A statement run before the object is written (a write after the snapshot).
    meanwhile: Option<String>,
}

#[async_trait]
impl SnapshotStore for Watching {
    async fn put(&self, at: &ObjectLocation, body: Vec<u8>) -> Result<(), StoreError> {
        let seen = counts(&self.admin, self.tenant_id).await;
        self.seen_at_put.lock().expect("lock").push(seen);
        if let Some(sql) = &self.meanwhile {
            self.admin
                .batch_execute(sql)
                .await
                .expect("write meanwhile");
        }
        self.inner.put(at, body).await
    }
    async fn size(&self, at: &ObjectLocation) -> Result<Option<u64>, StoreError> {
        self.inner.size(at).await
    }
    async fn get(&self, at: &ObjectLocation) -> Result<Vec<u8>, StoreError> {
        self.inner.get(at).await
    }
    async fn list(&self, r: &str, b: &str, p: &str) -> Result<Vec<Listed>, StoreError> {
        self.inner.list(r, b, p).await
    }
}

#[tokio::test]
async fn a_shared_tenant_is_snapshotted_before_its_rows_go_and_restores_into_a_new_tenant() {
    let db = TestDb::new("snap_round").await;
    let (region, source, id, other) = seeded(&db).await;
    let admin = db.admin().await;
    let before = counts(&admin, id).await;
    assert!(
        before.iter().all(|(_, n)| *n > 0),
        "seed every table: {before:?}"
    );
    let before_content = content(&admin, id).await;
    let other_before = counts(&admin, other).await;
    let bucket = bucket().await;
    let store = Watching {
        inner: S3Store::from_env().await,
        admin: db.admin().await,
        tenant_id: id,
        seen_at_put: Mutex::new(Vec::new()),
        meanwhile: None,
    };

    let taken_at = "2026-11-24T05:38:29.5Z";
    let taken = snapshot_then_delete(
        &*region,
        &store,
        &destination(&bucket),
        &source.uid,
        "source",
        taken_at,
    )
    .await
    .expect("snapshot then delete")
    .expect("the tenant had a catalog row");

    // The object was written while every row was still there.
    assert_eq!(
        store.seen_at_put.lock().expect("lock").clone(),
        vec![before.clone()],
        "rows must stay until the object exists"
    );
    assert_eq!(
        taken.at.key,
        format!(
            "tenants/us-east-1/source/{}/20261124T053829Z.snapshot",
            source.uid
        )
    );
    // The object in S3 is the snapshot, with the counts and the tenant in its manifest.
    let bytes = store.get(&taken.at).await.expect("the object exists in S3");
    assert_eq!(bytes.len() as u64, taken.bytes);
    let snap = Snapshot::decode(&bytes).expect("a valid snapshot");
    assert_eq!(snap.tenant.uid, source.uid);
    assert_eq!(snap.tenant.catalog_id, id);
    assert_eq!(
        snap.schema_version,
        phoenix_catalog::migrations::latest_version()
    );
    let mut manifest_counts: Vec<(String, i64)> = snap
        .counts()
        .into_iter()
        .map(|(t, n)| (t, i64::try_from(n).expect("few rows")))
        .collect();
    manifest_counts.sort();
    let mut expected = before.clone();
    expected.sort();
    assert_eq!(manifest_counts, expected);
    assert!(
        snap.tables
            .iter()
            .all(|t| !t.columns.contains(&"tenant_id".to_owned())),
        "tenant_id is never in the rows"
    );

    // The tenant's rows and catalog row are gone; the other tenant's are not.
    assert!(counts(&admin, id).await.iter().all(|(_, n)| *n == 0));
    assert_eq!(
        taken.deleted.rows,
        before.iter().map(|(_, n)| *n as u64).sum::<u64>()
    );
    let catalog: i64 = admin
        .query_one(
            "SELECT count(*) FROM catalog.tenants WHERE uid = $1",
            &[&source.uid],
        )
        .await
        .expect("catalog")
        .get(0);
    assert_eq!(catalog, 0);
    assert_eq!(counts(&admin, other).await, other_before);

    // Restore into a new tenant through the command of the runbook.
    let target = tenant("restored");
    let new_id = region.upsert_tenant(&target).await.expect("target tenant");
    assert_ne!(new_id, id);
    let dsn = dsn_of(&db);
    let out = restore_cmd(&bucket, &taken.at.key, "restored", &dsn);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "restore failed: {stdout}{stderr}");
    assert!(
        stdout.contains("audit trail: 3 entries verified"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("postgres://") && !stderr.contains("postgres://"),
        "a DSN was printed"
    );

    let after = counts(&admin, new_id).await;
    for ((table, was), (_, now)) in before.iter().zip(&after) {
        let expected = if ["clinical.login_attempts", "clinical.sessions"].contains(&table.as_str())
        {
            0
        } else {
            *was
        };
        assert_eq!(*now, expected, "{table}: {was} before, {now} restored");
    }
    // Same rows: ids, versions, text with tabs and newlines, times to the microsecond.
    assert_eq!(content(&admin, new_id).await, before_content);
    // The restored trail verifies under the new id, and new entries chain on from it.
    assert_eq!(broken_links(&admin, new_id).await, 0);
    admin
        .execute(
            "INSERT INTO clinical.audit_events (tenant_id, actor, action, resource_type, status, request_id) VALUES ($1, 'ann', 'read', 'Patient', 200, 'after')",
            &[&new_id],
        )
        .await
        .expect("append after the restore");
    let (seq,): (i64,) = admin
        .query_one(
            "SELECT max(seq) FROM clinical.audit_events WHERE tenant_id = $1",
            &[&new_id],
        )
        .await
        .map(|r| (r.get(0),))
        .expect("seq");
    assert_eq!(seq, 4);
    assert_eq!(broken_links(&admin, new_id).await, 0);
    // The trigger is back: the appended entry got its time and hash from the database.
    assert_eq!(counts(&admin, other).await, other_before);

    // A second restore into the same tenant is refused and changes nothing.
    let again = restore_cmd(&bucket, &taken.at.key, "restored", &dsn);
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(!again.status.success());
    assert!(stderr.contains("already has"), "{stderr}");
    assert_eq!(
        counts(&admin, new_id)
            .await
            .iter()
            .map(|(_, n)| *n)
            .sum::<i64>(),
        after.iter().map(|(_, n)| *n).sum::<i64>() + 1
    );
}

#[tokio::test]
async fn a_missing_bucket_fails_the_cleanup_and_keeps_every_row() {
    let db = TestDb::new("snap_nobucket").await;
    let (region, source, id, _) = seeded(&db).await;
    let admin = db.admin().await;
    let before = counts(&admin, id).await;
    let missing = format!("phoenix-snap-missing-{}", support::rand_suffix());
    let store = S3Store::from_env().await;
    let err = snapshot_then_delete(
        &*region,
        &store,
        &destination(&missing),
        &source.uid,
        "source",
        "2026-11-24T05:38:29Z",
    )
    .await
    .expect_err("no bucket, no deletion");
    let message = err.to_string();
    assert!(
        matches!(err, SnapshotError::Store(StoreError::NoSuchBucket { .. })),
        "{err:?}"
    );
    assert!(message.contains(&missing), "{message}");
    assert!(message.contains("data is kept"), "{message}");
    assert_eq!(counts(&admin, id).await, before);
    let state: String = admin
        .query_one(
            "SELECT state FROM catalog.tenants WHERE uid = $1",
            &[&source.uid],
        )
        .await
        .expect("the catalog row is still there")
        .get(0);
    assert_eq!(
        state, "retired",
        "the data plane stops serving it, nothing is dropped"
    );
}

#[tokio::test]
async fn a_row_written_after_the_snapshot_stops_the_deletion() {
    let db = TestDb::new("snap_race").await;
    let (region, source, id, _) = seeded(&db).await;
    let admin = db.admin().await;
    let bucket = bucket().await;
    let store = Watching {
        inner: S3Store::from_env().await,
        admin: db.admin().await,
        tenant_id: id,
        seen_at_put: Mutex::new(Vec::new()),
        meanwhile: Some(format!(
            "INSERT INTO clinical.fhir_history (tenant_id, resource_type, id, version, resource) VALUES ({id}, 'Patient', gen_random_uuid(), 1, '{{}}')"
        )),
    };
    let err = snapshot_then_delete(
        &*region,
        &store,
        &destination(&bucket),
        &source.uid,
        "source",
        "2026-11-24T05:38:29Z",
    )
    .await
    .expect_err("the snapshot misses a row");
    assert!(
        err.to_string().contains("rows changed after the snapshot"),
        "{err}"
    );
    let after = counts(&admin, id).await;
    let history = after
        .iter()
        .find(|(t, _)| t == "clinical.fhir_history")
        .map(|(_, n)| *n);
    assert_eq!(history, Some(3), "nothing was deleted: {after:?}");
    assert!(after.iter().all(|(_, n)| *n > 0));
}
