//! Deletion (Snapshot of Shared and Schema tenants too), bad references and unreachable
//! databases: what the user sees.
//! Scenarios run one at a time (they share the API server and the operator they start).

use std::collections::BTreeMap;
use std::time::Duration;

use kube::Api;
use phoenix_crds::{Region, TenantPhase};
use phoenix_e2e::events::{Regarding, instant, wait_event};
use phoenix_e2e::guard::ScenarioGuard;
use phoenix_e2e::scenario::*;
use phoenix_e2e::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_tenant_runs_the_finalizer_per_deletion_policy() {
    let _serial = SERIAL.lock().await;
    install_platform();
    let _operator = Process::operator(10).await;
    // Also tidies the rows the Retain tenant leaves on purpose.
    let scenario = ScenarioGuard::new("deletion");
    scenario.apply(
        &(tenant_yaml(
            "e2e-del-delete",
            "US",
            "  database: {deletionPolicy: Delete}\n",
        ) + &tenant_yaml(
            "e2e-del-retain",
            "US",
            "  database: {deletionPolicy: Retain}\n",
        )),
    );
    let mut ids = BTreeMap::new();
    let mut objects = Vec::new();
    for name in ["e2e-del-delete", "e2e-del-retain"] {
        let t = wait_tenant(name, "Ready", READY_TIMEOUT, is_ready).await;
        let finalizers = t.metadata.finalizers.clone().unwrap_or_default();
        assert!(
            finalizers
                .iter()
                .any(|f| f == "phoenixguardian.io/tenant-cleanup"),
            "{finalizers:?}"
        );
        objects.push(Regarding::of(&t));
        let id = t
            .status
            .and_then(|s| s.endpoints)
            .map(|e| e.catalog_id)
            .expect("catalog id in status");
        ids.insert(name, id);
    }
    let db = pg("us-east-1").await;
    for id in ids.values() {
        db.execute("INSERT INTO clinical.patients (tenant_id, resource) VALUES ($1, '{}'), ($1, '{}'), ($1, '{}')", &[id]).await.expect("seed");
    }
    let since = instant();
    kubectl_ok(
        &[
            "delete",
            "tenant",
            "e2e-del-delete",
            "e2e-del-retain",
            "--timeout=90s",
        ],
        None,
    );
    let count = |id: i64| {
        let db = &db;
        async move {
            db.query_one(
                "SELECT count(*) FROM clinical.patients WHERE tenant_id = $1",
                &[&id],
            )
            .await
            .expect("count")
            .get::<_, i64>(0)
        }
    };
    assert_eq!(
        count(ids["e2e-del-delete"]).await,
        0,
        "Delete left clinical rows"
    );
    assert_eq!(
        count(ids["e2e-del-retain"]).await,
        3,
        "Retain lost clinical rows"
    );
    let rows = catalog_names("us-east-1", "e2e-del-%").await;
    assert_eq!(
        rows.iter()
            .map(|r| (r.0.as_str(), r.2.as_str()))
            .collect::<Vec<_>>(),
        vec![("e2e-del-retain", "retired")]
    );
    for tenant in &objects {
        wait_event(tenant, "Deleted", since).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_references_get_a_condition_an_event_and_backoff_not_a_crash() {
    let _serial = SERIAL.lock().await;
    install_platform();
    let operator = Process::operator(10).await;
    let scenario = ScenarioGuard::new("bad-references");
    let since = instant();
    scenario.apply(
        &(tenant_yaml("e2e-canada", "CA", "")
            + &tenant_yaml("e2e-nowhere", "EU", "  homeRegion: eu-central-9\n")),
    );
    scenario.apply(
        "apiVersion: phoenixguardian.io/v1alpha1\nkind: Region\nmetadata:\n  name: e2e-broken\nspec:\n  awsRegion: sa-east-1\n  dataResidency: [BR]\n  database:\n    writer: {connectionSecretRef: {namespace: phoenix-system, name: e2e-missing-secret, key: dsn}}\n",
    );
    let canada = wait_tenant("e2e-canada", "Ready=False", READY_TIMEOUT, |t| {
        condition(t, "Ready").is_some_and(|c| c.0 == "False")
    })
    .await;
    let (_, reason, message) = condition(&canada, "Ready").expect("condition");
    assert_eq!(reason, "NoRegionForResidency");
    assert!(
        message.contains("\"CA\"") && message.contains("create a Region"),
        "{message}"
    );
    assert!(
        canada
            .status
            .as_ref()
            .and_then(|s| s.placement.as_ref())
            .is_none(),
        "placed somewhere anyway"
    );
    assert_eq!(
        canada.status.as_ref().and_then(|s| s.phase),
        Some(TenantPhase::Failed)
    );
    let nowhere = wait_tenant("e2e-nowhere", "Ready=False", READY_TIMEOUT, |t| {
        condition(t, "Ready").is_some_and(|c| c.0 == "False")
    })
    .await;
    let (_, reason, message) = condition(&nowhere, "Ready").expect("condition");
    assert_eq!(reason, "RegionNotFound");
    assert!(
        message.contains("create a Region named eu-central-9"),
        "{message}"
    );
    for region in REGIONS {
        assert!(
            catalog_names(region, "e2e-canada").await.is_empty(),
            "e2e-canada in {region}"
        );
    }

    let regions: Api<Region> = Api::all(kube_client().await);
    let broken = eventually("e2e-broken Ready=False", READY_TIMEOUT, || {
        let regions = regions.clone();
        async move {
            regions.get("e2e-broken").await.ok().filter(|r| {
                r.status.as_ref().is_some_and(|s| {
                    s.conditions
                        .iter()
                        .any(|c| c.type_ == "DatabaseReachable" && c.status == "False")
                })
            })
        }
    })
    .await;
    let broken_ref = Regarding::of(&broken);
    let reachable = broken
        .status
        .expect("status")
        .conditions
        .into_iter()
        .find(|c| c.type_ == "DatabaseReachable")
        .expect("condition");
    assert_eq!(reachable.reason, "SecretNotFound");
    assert!(
        reachable
            .message
            .contains("phoenix-system/e2e-missing-secret"),
        "{}",
        reachable.message
    );
    wait_event(&Regarding::of(&canada), "NoRegionForResidency", since).await;
    wait_event(&broken_ref, "SecretNotFound", since).await;

    // Backoff, not a hot loop: each failed reconcile of the unplaceable tenant is retried
    // later than the one before (2 s, 4 s, 8 s ... give or take 20 % jitter), as logged.
    let delays = eventually(
        "four failed reconciles of e2e-canada logged",
        READY_TIMEOUT,
        || async { Some(retry_delays(&operator, "Tenant", "e2e-canada")).filter(|d| d.len() >= 4) },
    )
    .await;
    assert!(
        delays.windows(2).all(|w| w[1] > w[0]),
        "the retry delays of e2e-canada do not grow: {delays:?}"
    );
    let ready = reqwest::get(format!("http://{}/readyz", operator.addr))
        .await
        .expect("readyz");
    assert!(
        ready.status().is_success(),
        "the operator is not ready after bad input"
    );

    kubectl_ok(
        &[
            "delete",
            "tenant",
            "e2e-canada",
            "e2e-nowhere",
            "--timeout=60s",
        ],
        None,
    );
    kubectl_ok(&["delete", "region", "e2e-broken", "--timeout=60s"], None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_region_database_is_reported_and_blocks_nothing_else() {
    let _serial = SERIAL.lock().await;
    install_platform();
    let _operator = Process::operator(10).await;
    let scenario = ScenarioGuard::new("unreachable-database");
    let port = free_port(); // nothing listens there
    let secret = format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: e2e-dead-db\n  namespace: {NAMESPACE}\nstringData:\n  dsn: postgres://postgres:x@127.0.0.1:{port}/phoenix\n"
    );
    scenario.apply(&secret);
    scenario.apply(
        "apiVersion: phoenixguardian.io/v1alpha1\nkind: Region\nmetadata:\n  name: e2e-dead\nspec:\n  awsRegion: sa-east-1\n  dataResidency: [ZZ]\n  database:\n    writer: {connectionSecretRef: {namespace: phoenix-system, name: e2e-dead-db, key: dsn}}\n",
    );
    scenario.apply(&tenant_yaml("e2e-waits", "ZZ", ""));

    let regions: Api<Region> = Api::all(kube_client().await);
    let dead = eventually(
        "e2e-dead reports its database unreachable",
        READY_TIMEOUT,
        || {
            let regions = regions.clone();
            async move {
                let r = regions.get("e2e-dead").await.ok()?;
                r.status?
                    .conditions
                    .into_iter()
                    .find(|c| c.type_ == "DatabaseReachable" && c.status == "False")
            }
        },
    )
    .await;
    assert_eq!(dead.reason, "DatabaseUnreachable");
    assert!(
        dead.message
            .contains(&format!("cannot connect to 127.0.0.1:{port}/phoenix")),
        "{}",
        dead.message
    );
    assert!(
        !dead.message.contains("postgres:x@"),
        "credentials in a condition: {}",
        dead.message
    );

    // The tenant is placed by residency but waits, saying on what.
    let waiting = wait_tenant("e2e-waits", "waiting on its region", READY_TIMEOUT, |t| {
        condition(t, "Ready").is_some_and(|c| c.1 == "RegionNotReady")
    })
    .await;
    let (_, _, message) = condition(&waiting, "Ready").expect("condition");
    assert!(
        message.contains("region e2e-dead is not Ready") && message.contains("cannot connect"),
        "{message}"
    );
    assert_eq!(
        waiting.status.as_ref().and_then(|s| s.phase),
        Some(TenantPhase::Provisioning)
    );
    assert_eq!(
        waiting
            .status
            .as_ref()
            .and_then(|s| s.placement.as_ref())
            .map(|p| p.region.as_str()),
        Some("e2e-dead")
    );

    // Other tenants are unaffected.
    apply_ready_tenant(
        &scenario,
        "e2e-unaffected",
        "EU",
        "  database: {deletionPolicy: Delete}\n",
    )
    .await;

    // Deleting it cannot clean up its data: the finalizer holds and says why.
    let since = instant();
    kubectl_ok(&["delete", "tenant", "e2e-waits", "--wait=false"], None);
    let stuck = wait_tenant(
        "e2e-waits",
        "deletion blocked with a reason",
        READY_TIMEOUT,
        |t| {
            t.status.as_ref().and_then(|s| s.phase) == Some(TenantPhase::Deleting)
                && condition(t, "Ready").is_some_and(|c| c.1 == "DatabaseUnreachable")
        },
    )
    .await;
    assert!(stuck.metadata.deletion_timestamp.is_some());
    let event = wait_event(&Regarding::of(&stuck), "DatabaseUnreachable", since).await;
    assert_eq!(event.type_.as_deref(), Some("Warning"), "{event:?}");
    // The runbook's way out: remove the finalizer by hand.
    kubectl_ok(
        &[
            "patch",
            "tenant",
            "e2e-waits",
            "--type=json",
            "-p",
            r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
        ],
        None,
    );
    kubectl_ok(
        &["wait", "--for=delete", "tenant/e2e-waits", "--timeout=30s"],
        None,
    );
    kubectl_ok(
        &["delete", "tenant", "e2e-unaffected", "--timeout=60s"],
        None,
    );
    kubectl_ok(&["delete", "region", "e2e-dead", "--timeout=60s"], None);
    kubectl_ok(&["-n", NAMESPACE, "delete", "secret", "e2e-dead-db"], None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_snapshot_tenant_writes_its_rows_to_s3_before_they_go() {
    let _serial = SERIAL.lock().await;
    install_platform();
    let bucket = "phoenix-snapshots-us-east-1";
    let s3 = phoenix_e2e::s3::client("us-east-1").await;
    phoenix_e2e::s3::ensure_bucket(&s3, bucket).await;
    let _operator = Process::operator(10).await;
    let scenario = ScenarioGuard::new("snapshot");
    // First the Region declares no bucket: the deletion must wait, keeping everything.
    kubectl_ok(
        &[
            "patch",
            "region",
            "us-east-1",
            "--type=json",
            "-p",
            r#"[{"op":"remove","path":"/spec/database/snapshots"}]"#,
        ],
        None,
    );
    scenario.apply(&tenant_yaml(
        "e2e-snap",
        "US",
        "  homeRegion: us-east-1\n  database: {deletionPolicy: Snapshot}\n",
    ));
    let t = wait_tenant("e2e-snap", "Ready", READY_TIMEOUT, is_ready).await;
    let (_, _, db_message) = condition(&t, "DatabaseReady").expect("DatabaseReady");
    assert!(
        db_message.contains("declares no snapshot bucket"),
        "a Snapshot tenant without a bucket is told before its deletion: {db_message}"
    );
    let about = Regarding::of(&t);
    let uid = about.uid.clone().expect("uid");
    let id = t
        .status
        .and_then(|s| s.endpoints)
        .map(|e| e.catalog_id)
        .expect("catalog id in status");
    let db = pg("us-east-1").await;
    db.execute(
        "INSERT INTO clinical.patients (tenant_id, resource) VALUES ($1, '{}'), ($1, '{}'), ($1, '{}')",
        &[&id],
    )
    .await
    .expect("seed patients");
    db.execute(
        "INSERT INTO clinical.audit_events (tenant_id, actor, action, resource_type, status, request_id) VALUES ($1, 'e2e', 'read', 'Patient', 200, 'e2e-snap')",
        &[&id],
    )
    .await
    .expect("seed an audit entry");
    let patients = |id: i64| {
        let db = &db;
        async move {
            db.query_one(
                "SELECT count(*) FROM clinical.patients WHERE tenant_id = $1",
                &[&id],
            )
            .await
            .expect("count")
            .get::<_, i64>(0)
        }
    };
    let since = instant();
    kubectl_ok(&["delete", "tenant", "e2e-snap", "--wait=false"], None);
    let stuck = wait_tenant("e2e-snap", "SnapshotNotConfigured", READY_TIMEOUT, |t| {
        condition(t, "Ready").is_some_and(|c| c.1 == "SnapshotNotConfigured")
    })
    .await;
    let (_, _, message) = condition(&stuck, "Ready").expect("condition");
    assert!(
        message.contains("spec.database.snapshots.bucket") && message.contains("us-east-1"),
        "{message}"
    );
    assert_eq!(
        stuck.status.as_ref().and_then(|s| s.phase),
        Some(TenantPhase::Deleting)
    );
    assert!(
        stuck
            .metadata
            .finalizers
            .unwrap_or_default()
            .iter()
            .any(|f| f == "phoenixguardian.io/tenant-cleanup"),
        "the finalizer must stay while the data cannot be saved"
    );
    wait_event(&about, "SnapshotNotConfigured", since).await;
    assert_eq!(patients(id).await, 3, "rows dropped without a snapshot");
    let prefix = format!("tenants/us-east-1/e2e-snap/{uid}/");
    assert!(phoenix_e2e::s3::keys(&s3, bucket, &prefix).await.is_empty());

    // Declaring the bucket wakes the tenant: the snapshot is written, then the rows go.
    kubectl_ok(
        &[
            "apply",
            "-f",
            &repo().join("examples/regions.yaml").display().to_string(),
        ],
        None,
    );
    let tenants = tenants().await;
    eventually("the Tenant to be gone", Duration::from_secs(90), || {
        let tenants = tenants.clone();
        async move {
            tenants
                .get_opt("e2e-snap")
                .await
                .ok()
                .flatten()
                .is_none()
                .then_some(())
        }
    })
    .await;
    let taken = wait_event(&about, "SnapshotTaken", since).await;
    let note = taken.note.unwrap_or_default();
    assert!(
        note.contains(&format!("s3://{bucket}/{prefix}")) && note.contains("patients=3"),
        "{note}"
    );
    let keys = phoenix_e2e::s3::keys(&s3, bucket, &prefix).await;
    assert_eq!(keys.len(), 1, "{keys:?}");
    let object = phoenix_e2e::s3::get(&s3, bucket, &keys[0]).await;
    let mut lines = object.split(|b| *b == b'\n');
    assert_eq!(lines.next(), Some(&b"phoenix-tenant-snapshot 1"[..]));
    let manifest: serde_json::Value =
        serde_json::from_slice(lines.next().expect("manifest line")).expect("manifest JSON");
    assert_eq!(manifest["tenant"]["uid"], uid.as_str());
    let rows = |table: &str| {
        manifest["tables"]
            .as_array()
            .and_then(|ts| ts.iter().find(|t| t["table"] == table))
            .and_then(|t| t["rows"].as_u64())
    };
    assert_eq!(rows("clinical.patients"), Some(3));
    assert_eq!(rows("clinical.audit_events"), Some(1));
    assert_eq!(patients(id).await, 0, "the snapshotted rows are deleted");
    wait_event(&about, "Deleted", since).await;
    drop(scenario);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_schema_snapshot_tenant_drops_its_schema_after_the_object_is_written() {
    let _serial = SERIAL.lock().await;
    install_platform();
    let bucket = "phoenix-snapshots-us-east-1";
    let s3 = phoenix_e2e::s3::client("us-east-1").await;
    phoenix_e2e::s3::ensure_bucket(&s3, bucket).await;
    // The Regions as the examples declare them, with their snapshot buckets.
    kubectl_ok(
        &[
            "apply",
            "-f",
            &repo().join("examples/regions.yaml").display().to_string(),
        ],
        None,
    );
    let _operator = Process::operator(10).await;
    let scenario = ScenarioGuard::new("schema-snapshot");
    scenario.apply(&tenant_yaml(
        "e2e-schema-snap",
        "US",
        "  homeRegion: us-east-1\n  database: {isolation: Schema, deletionPolicy: Snapshot}\n",
    ));
    let t = wait_tenant("e2e-schema-snap", "Ready", READY_TIMEOUT, is_ready).await;
    let about = Regarding::of(&t);
    let uid = about.uid.clone().expect("uid");
    let schema = phoenix_catalog::schemas::tenant_schema(&uid);
    let role = phoenix_catalog::schemas::tenant_role(&uid);
    let id = t
        .status
        .and_then(|s| s.endpoints)
        .map(|e| e.catalog_id)
        .expect("catalog id in status");
    let db = pg("us-east-1").await;
    db.execute(
        &format!(
            "INSERT INTO \"{schema}\".patients (tenant_id, resource) VALUES ($1, '{{}}'), ($1, '{{}}')"
        ),
        &[&id],
    )
    .await
    .expect("seed patients into the tenant's schema");
    let exists = |sql: &'static str, name: String| {
        let db = &db;
        async move {
            db.query_opt(sql, &[&name])
                .await
                .expect("look up")
                .is_some()
        }
    };
    let since = instant();
    kubectl_ok(
        &["delete", "tenant", "e2e-schema-snap", "--timeout=90s"],
        None,
    );
    let taken = wait_event(&about, "SnapshotTaken", since).await;
    let note = taken.note.unwrap_or_default();
    let prefix = format!("tenants/us-east-1/e2e-schema-snap/{uid}/");
    assert!(
        note.contains(&format!("s3://{bucket}/{prefix}")) && note.contains("patients=2"),
        "{note}"
    );
    let keys = phoenix_e2e::s3::keys(&s3, bucket, &prefix).await;
    assert_eq!(keys.len(), 1, "{keys:?}");
    let object = phoenix_e2e::s3::get(&s3, bucket, &keys[0]).await;
    let manifest: serde_json::Value =
        serde_json::from_slice(object.split(|b| *b == b'\n').nth(1).expect("manifest line"))
            .expect("manifest JSON");
    assert_eq!(manifest["tenant"]["uid"], uid.as_str());
    assert_eq!(manifest["tenant"]["isolation"], "Schema");
    let patients = manifest["tables"]
        .as_array()
        .and_then(|ts| ts.iter().find(|t| t["table"] == "clinical.patients"))
        .and_then(|t| t["rows"].as_u64());
    assert_eq!(patients, Some(2));
    assert!(
        !exists(
            "SELECT 1 FROM pg_namespace WHERE nspname = $1",
            schema.clone()
        )
        .await,
        "the schema must go once the snapshot is written"
    );
    assert!(
        !exists("SELECT 1 FROM pg_roles WHERE rolname = $1", role.clone()).await,
        "the role must go with the schema"
    );
    let deleted = wait_event(&about, "Deleted", since).await;
    let note = deleted.note.unwrap_or_default();
    assert!(
        note.contains(&format!("schema {schema} dropped")) && note.contains("role"),
        "{note}"
    );
    drop(scenario);
}
