//! What the snapshot tests share: moto's S3, a tenant seeded in every tenant table (in the
//! shared `clinical` tables or in a `Schema` tenant's own schema), its rows counted and
//! read as text, its audit chain verified, the snapshot's manifest, the catalog row, and
//! the runbook's restore command with what a restore must and must not do.

#![allow(dead_code)]

use std::sync::Mutex;

use async_trait::async_trait;
use phoenix_catalog::TENANT_TABLES;
use phoenix_operator::snapshot::dump::physical;
use phoenix_operator::snapshot::restore::NOT_RESTORED;
use phoenix_operator::snapshot::store::{
    Listed, ObjectLocation, S3Store, SnapshotStore, StoreError,
};
use phoenix_operator::snapshot::{Destination, Snapshot};
use tokio_postgres::Client;

use crate::support::{self, TestDb};

pub const AWS_REGION: &str = "us-east-1";

/// moto's S3 from the stack, through the operator's own client configuration; an unset
/// endpoint fails the test.
pub async fn s3() -> aws_sdk_s3::Client {
    assert!(
        std::env::var_os("AWS_ENDPOINT_URL").is_some(),
        "AWS_ENDPOINT_URL is not set: run `e2e/stack up && source .stack/env` so the tests reach moto"
    );
    S3Store::from_env().await.client(AWS_REGION)
}

/// A new bucket of its own in moto.
pub async fn bucket() -> String {
    let name = format!("phoenix-snap-{}", support::rand_suffix());
    s3().await
        .create_bucket()
        .bucket(&name)
        .send()
        .await
        .expect("create a bucket in moto (is the stack's moto running?)");
    name
}

pub fn destination(bucket: &str) -> Destination {
    Destination {
        aws_region: AWS_REGION.to_owned(),
        bucket: bucket.to_owned(),
        prefix: Some("tenants".to_owned()),
        region: "us-east-1".to_owned(),
    }
}

/// Rows for tenant `id` in every tenant table (text with tabs, newlines and backslashes,
/// NULLs, arrays, JSON, three audit entries), written into `schema`'s copies of the
/// tables, or the `clinical` ones when `None`.
pub async fn seed(admin: &Client, id: i64, schema: Option<&str>) {
    let sql = format!(
        r#"
        INSERT INTO clinical.patients (tenant_id, id, family_name, given_name, birth_date, resource) VALUES
          ({id}, '00000000-0000-0000-0000-000000000001', E'O''Brien\tTab', E'line1\nline2 \\ back', '1970-01-02', '{{"resourceType":"Patient","name":[{{"family":"O''Brien"}}]}}'),
          ({id}, '00000000-0000-0000-0000-000000000002', 'Müller', NULL, NULL, '{{"resourceType":"Patient"}}');
        INSERT INTO clinical.patient_identifiers (tenant_id, patient_id, position, system, value) VALUES
          ({id}, '00000000-0000-0000-0000-000000000001', 0, 'urn:mrn', E'MRN\t1'),
          ({id}, '00000000-0000-0000-0000-000000000001', 1, NULL, 'SSN-1');
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
          ({id}, 'bob', 'create', 'Encounter', 201, 'r3');
        "#
    );
    let sql = match schema {
        None => sql,
        Some(s) => sql.replace("INSERT INTO clinical.", &format!("INSERT INTO \"{s}\".")),
    };
    admin
        .batch_execute(&sql)
        .await
        .expect("seed every tenant table");
}

/// A few rows of another tenant `id` in the `clinical` tables.
pub async fn seed_other(admin: &Client, id: i64) {
    admin
        .batch_execute(&format!(
            r#"
            INSERT INTO clinical.patients (tenant_id, id, family_name, given_name, birth_date, resource) VALUES
              ({id}, '00000000-0000-0000-0000-000000000001', 'Other', NULL, NULL, '{{}}');
            INSERT INTO clinical.patient_identifiers (tenant_id, patient_id, position, system, value) VALUES
              ({id}, '00000000-0000-0000-0000-000000000001', 0, 'urn:mrn', 'MRN-O');
            INSERT INTO clinical.audit_events (tenant_id, actor, action, resource_type, status, request_id) VALUES
              ({id}, 'zed', 'read', 'Patient', 200, 'r4');
            "#
        ))
        .await
        .expect("seed the other tenant");
}

/// Rows of tenant `id` in each tenant table (of `schema`, or the `clinical` ones), in
/// `TENANT_TABLES` order, named `clinical.<table>` either way.
pub async fn counts(admin: &Client, id: i64, schema: Option<&str>) -> Vec<(String, i64)> {
    let mut out = Vec::new();
    for table in TENANT_TABLES {
        let n: i64 = admin
            .query_one(
                &format!(
                    "SELECT count(*) FROM {} WHERE tenant_id = $1",
                    physical(table, schema)
                ),
                &[&id],
            )
            .await
            .expect("count")
            .get(0);
        out.push((table.to_owned(), n));
    }
    out
}

/// Every row of tenant `id` that a restore must carry over unchanged, as text (JSON keys
/// sorted, so the column order of a schema's copy does not matter).
pub async fn content(admin: &Client, id: i64, schema: Option<&str>) -> Vec<String> {
    let mut out = Vec::new();
    for (table, order) in [
        ("clinical.patients", "id"),
        ("clinical.patient_identifiers", "patient_id, position"),
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
                    "SELECT (to_jsonb(t) - 'tenant_id')::text FROM {} t WHERE tenant_id = $1 ORDER BY {order}",
                    physical(table, schema)
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
            &format!(
                "SELECT (to_jsonb(a) - 'tenant_id' - 'hash' - 'prev_hash')::text FROM {} a WHERE tenant_id = $1 ORDER BY seq",
                physical("clinical.audit_events", schema)
            ),
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

/// Entries of tenant `id`'s audit chain (in `schema`, or `clinical`) that do not follow
/// from the previous one, as `phoenix-dataplane audit verify` recomputes them (the same
/// canonical function, the schema's own copy for a `Schema` tenant).
pub async fn broken_links(admin: &Client, id: i64, schema: Option<&str>) -> i64 {
    let ns = schema.map_or_else(|| "clinical".to_owned(), |s| format!("\"{s}\""));
    admin
        .query_one(
            &format!(
                "SELECT count(*) FROM (
                   SELECT a.seq, a.hash, a.prev_hash,
                          sha256(convert_to({ns}.audit_canonical(a), 'UTF8') || a.prev_hash) AS recomputed,
                          coalesce(lag(a.hash) OVER (ORDER BY a.seq), '\\x0000000000000000000000000000000000000000000000000000000000000000'::bytea) AS previous,
                          row_number() OVER (ORDER BY a.seq) AS n
                   FROM {ns}.audit_events a WHERE a.tenant_id = $1) c
                 WHERE c.hash <> c.recomputed OR c.prev_hash <> c.previous OR c.seq <> c.n"
            ),
            &[&id],
        )
        .await
        .expect("verify the chain")
        .get(0)
}

/// Appends an audit entry for tenant `id` (in `schema`, or `clinical`) after a restore:
/// the chain's trigger must be back, number it after the three restored entries and give
/// it a hash that verifies.
pub async fn appends_and_verifies(admin: &Client, id: i64, schema: Option<&str>) {
    let audit = physical("clinical.audit_events", schema);
    admin
        .execute(
            &format!(
                "INSERT INTO {audit} (tenant_id, actor, action, resource_type, status, request_id) VALUES ($1, 'ann', 'read', 'Patient', 200, 'after')"
            ),
            &[&id],
        )
        .await
        .expect("append after the restore");
    let seq: i64 = admin
        .query_one(
            &format!("SELECT max(seq) FROM {audit} WHERE tenant_id = $1"),
            &[&id],
        )
        .await
        .expect("seq")
        .get(0);
    assert_eq!(seq, 4, "the new entry follows the three restored ones");
    assert_eq!(broken_links(admin, id, schema).await, 0);
}

/// The rows per table that a snapshot's manifest names, sorted by table.
pub fn manifest_counts(snap: &Snapshot) -> Vec<(String, i64)> {
    let mut counts: Vec<(String, i64)> = snap
        .counts()
        .into_iter()
        .map(|(t, n)| (t, i64::try_from(n).expect("few rows")))
        .collect();
    counts.sort();
    counts
}

/// `counts`, sorted by table (the order a manifest's are compared in).
pub fn sorted(counts: &[(String, i64)]) -> Vec<(String, i64)> {
    let mut counts = counts.to_vec();
    counts.sort();
    counts
}

/// What a restore of a snapshot holding `before` writes: the same rows, sign-in state
/// ([`NOT_RESTORED`]) left out.
pub fn expected_after_restore(before: &[(String, i64)]) -> Vec<(String, i64)> {
    before
        .iter()
        .map(|(t, n)| {
            let n = if NOT_RESTORED.contains(&t.as_str()) {
                0
            } else {
                *n
            };
            (t.clone(), n)
        })
        .collect()
}

/// Rows in all of `counts`' tables.
pub fn total(counts: &[(String, i64)]) -> i64 {
    counts.iter().map(|(_, n)| *n).sum()
}

/// Asserts that a failed snapshot deleted nothing: the history row the store's `meanwhile`
/// wrote is there beside the two seeded ones, and every table still has rows.
pub fn assert_nothing_deleted(after: &[(String, i64)]) {
    let history = after
        .iter()
        .find(|(t, _)| t == "clinical.fhir_history")
        .map(|(_, n)| *n);
    assert_eq!(history, Some(3), "nothing was deleted: {after:?}");
    assert!(after.iter().all(|(_, n)| *n > 0), "{after:?}");
}

/// Catalog rows of tenant `uid` (0 or 1).
pub async fn catalog_rows(admin: &Client, uid: &str) -> i64 {
    admin
        .query_one(
            "SELECT count(*) FROM catalog.tenants WHERE uid = $1",
            &[&uid],
        )
        .await
        .expect("count catalog rows")
        .get(0)
}

/// The catalog state of tenant `uid`, whose row must still be there.
pub async fn catalog_state(admin: &Client, uid: &str) -> String {
    admin
        .query_one("SELECT state FROM catalog.tenants WHERE uid = $1", &[&uid])
        .await
        .expect("the catalog row is still there")
        .get(0)
}

/// The admin DSN of the stack, pointed at the test database.
pub fn dsn_of(db: &TestDb) -> String {
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

/// `phoenix-operator snapshot restore` as the runbook runs it.
pub fn restore_cmd(bucket: &str, key: &str, into: &str, dsn: &str) -> std::process::Output {
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

/// Restores `key` into tenant `into` with the runbook's command, asserting it succeeds
/// and prints no DSN; its stdout.
pub fn restore_ok(bucket: &str, key: &str, into: &str, db: &TestDb) -> String {
    let out = restore_cmd(bucket, key, into, &dsn_of(db));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "restore into {into} failed: {stdout}{stderr}"
    );
    assert!(
        !stdout.contains("postgres://") && !stderr.contains("postgres://"),
        "a DSN was printed"
    );
    stdout
}

/// Asserts that restoring `key` into tenant `into` again is refused, saying the tenant
/// already has rows.
pub fn restore_refused_again(bucket: &str, key: &str, into: &str, db: &TestDb) {
    let again = restore_cmd(bucket, key, into, &dsn_of(db));
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(!again.status.success(), "a second restore into {into} ran");
    assert!(stderr.contains("already has"), "{stderr}");
}

/// The real store, noting the source tenant's rows at the moment each object is written.
pub struct Watching {
    pub inner: S3Store,
    pub admin: Client,
    pub tenant_id: i64,
    /// Where its rows are (`None`: the `clinical` tables).
    pub schema: Option<String>,
    /// Rows of the tenant seen when `put` was called.
    pub seen_at_put: Mutex<Vec<Vec<(String, i64)>>>,
    /// A statement run before the object is written (a write after the snapshot).
    pub meanwhile: Option<String>,
}

impl Watching {
    /// Watching tenant `tenant_id`'s rows in the test database.
    pub async fn new(db: &TestDb, tenant_id: i64, schema: Option<&str>) -> Self {
        Self::through(db.admin().await, tenant_id, schema).await
    }

    /// Watching tenant `tenant_id`'s rows through `admin` (a `Dedicated` tenant's own
    /// database).
    pub async fn through(admin: Client, tenant_id: i64, schema: Option<&str>) -> Self {
        Self {
            inner: S3Store::from_env().await,
            admin,
            tenant_id,
            schema: schema.map(str::to_owned),
            seen_at_put: Mutex::new(Vec::new()),
            meanwhile: None,
        }
    }
}

#[async_trait]
impl SnapshotStore for Watching {
    async fn put(&self, at: &ObjectLocation, body: Vec<u8>) -> Result<(), StoreError> {
        let seen = counts(&self.admin, self.tenant_id, self.schema.as_deref()).await;
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
