//! Crashes, leader failover, RLS drift and credential rotation converge.
//! Scenarios run one at a time (they share the API server and the operator they start).

use std::collections::HashSet;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::ListParams;
use phoenix_e2e::scenario::*;
use phoenix_e2e::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_operator_mid_reconcile_converges_without_duplicates_or_leaks() {
    let _serial = SERIAL.lock().await;
    install_platform();
    let residencies = ["US", "EU", "APAC"];
    let mut manifests = String::new();
    for i in 0..50 {
        manifests.push_str(&format!(
            "---\napiVersion: phoenixguardian.io/v1alpha1\nkind: Tenant\nmetadata:\n  name: e2e-bulk-{i:02}\n  labels: {{e2e: bulk}}\nspec:\n  displayName: Bulk {i}\n  dataResidency: [{}]\n  database: {{deletionPolicy: Delete}}\n  dns: {{hostname: bulk-{i:02}.e2e.phoenixguardian.test}}\n",
            residencies[i % 3]
        ));
    }
    let mut operator = Process::operator(10).await;
    kubectl_ok(&["apply", "-f", "-"], Some(&manifests));
    let api = tenants().await;
    let ready_count = || {
        let api = api.clone();
        async move {
            api.list(&ListParams::default().labels("e2e=bulk"))
                .await
                .map(|l| l.items.iter().filter(|t| is_ready(t)).count())
                .unwrap_or(0)
        }
    };
    let at_kill = eventually("the first bulk tenants Ready", READY_TIMEOUT, || async {
        Some(ready_count().await).filter(|n| *n >= 1)
    })
    .await;
    operator.kill_hard();
    eprintln!("killed the operator with {at_kill}/50 tenants Ready");
    let _operator = Process::operator(10).await;
    eventually(
        "all 50 bulk tenants Ready after the restart",
        Duration::from_secs(180),
        || async { (ready_count().await == 50).then_some(()) },
    )
    .await;

    let list = api
        .list(&ListParams::default().labels("e2e=bulk"))
        .await
        .expect("list");
    let mut total = 0;
    for region in REGIONS {
        let rows = catalog_names(region, "e2e-bulk-%").await;
        let names: HashSet<&str> = rows.iter().map(|r| r.0.as_str()).collect();
        assert_eq!(
            names.len(),
            rows.len(),
            "duplicate catalog rows in {region}: {rows:?}"
        );
        for t in &list.items {
            let placed = t
                .status
                .as_ref()
                .and_then(|s| s.placement.as_ref())
                .map(|p| p.region.as_str());
            let name = t.metadata.name.as_deref().unwrap_or_default();
            let row = rows.iter().find(|r| r.0 == name);
            if placed == Some(region) {
                let row =
                    row.unwrap_or_else(|| panic!("{name} placed in {region} has no catalog row"));
                assert_eq!(
                    Some(row.1.as_str()),
                    t.metadata.uid.as_deref(),
                    "{name}: catalog row of another object"
                );
                assert_eq!(row.2, "active");
            } else {
                assert!(
                    row.is_none(),
                    "{name} has a catalog row in {region} but lives in {placed:?}"
                );
            }
        }
        total += rows.len();
        let roles: i64 = pg(region)
            .await
            .query_one(
                "SELECT count(*) FROM pg_roles WHERE rolname LIKE 'phoenix\\_%'",
                &[],
            )
            .await
            .expect("roles")
            .get(0);
        assert_eq!(roles, 2, "roles leaked in {region}");
    }
    assert_eq!(total, 50);
    let secrets: Api<Secret> = Api::namespaced(kube_client().await, NAMESPACE);
    let managed = secrets
        .list(&ListParams::default().labels("app.kubernetes.io/managed-by=phoenix-operator"))
        .await
        .expect("secrets");
    let names: Vec<String> = managed
        .items
        .iter()
        .filter_map(|s| s.metadata.name.clone())
        .collect();
    assert_eq!(names.len(), 3, "operator Secrets leaked: {names:?}");

    kubectl_ok(
        &["delete", "tenant", "-l", "e2e=bulk", "--timeout=180s"],
        None,
    );
    for region in REGIONS {
        assert!(
            catalog_names(region, "e2e-bulk-%").await.is_empty(),
            "bulk tenants left in {region}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabling_rls_by_hand_is_repaired_with_an_event() {
    let _serial = SERIAL.lock().await;
    install_platform();
    let _operator = Process::operator(3).await;
    apply_ready_tenant("e2e-drift", "US", "  database: {deletionPolicy: Delete}\n").await;
    let before: HashSet<String> = events_with_reason("RLSRepaired")
        .await
        .into_iter()
        .filter_map(|e| e.metadata.name)
        .collect();
    let db = pg("us-east-1").await;
    db.batch_execute("ALTER TABLE clinical.encounters DISABLE ROW LEVEL SECURITY")
        .await
        .expect("disable rls");
    eventually("RLS re-enabled on clinical.encounters", Duration::from_secs(60), || async {
        let on: bool = db.query_one("SELECT relrowsecurity FROM pg_class WHERE oid = 'clinical.encounters'::regclass", &[]).await.ok()?.get(0);
        on.then_some(())
    })
    .await;
    let event = eventually("an RLSRepaired event", Duration::from_secs(30), || async {
        events_with_reason("RLSRepaired")
            .await
            .into_iter()
            .find(|e| {
                e.metadata
                    .name
                    .as_ref()
                    .is_some_and(|n| !before.contains(n))
                    || e.note
                        .as_deref()
                        .is_some_and(|n| n.contains("clinical.encounters"))
            })
    })
    .await;
    assert!(
        event
            .note
            .as_deref()
            .is_some_and(|n| n.contains("clinical.encounters") && n.contains("disabled")),
        "{event:?}"
    );
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    kubectl_ok(&["delete", "tenant", "e2e-drift", "--timeout=60s"], None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_reconciles_and_a_standby_takes_over_when_it_dies() {
    let _serial = SERIAL.lock().await;
    install_platform();
    let mut a = Process::operator_named("e2e-leader-a", 10).await;
    eventually("replica a leads", Duration::from_secs(30), || async {
        (a.metric("phoenix_operator_leader").await == Some(1.0)).then_some(())
    })
    .await;
    let mut b = Process::operator_named("e2e-leader-b", 10).await;
    apply_ready_tenant(
        "e2e-failover-1",
        "US",
        "  database: {deletionPolicy: Delete}\n",
    )
    .await;
    assert_eq!(
        b.metric("phoenix_operator_leader").await,
        Some(0.0),
        "two leaders"
    );
    let b_metrics = reqwest::get(format!("http://{}/metrics", b.addr))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        !b_metrics.contains("phoenix_operator_reconciles_total{"),
        "the standby reconciled: {b_metrics}"
    );

    // The leader crashes: the standby takes over once the 5 s lease lapses.
    a.kill_hard();
    kubectl_ok(
        &["apply", "-f", "-"],
        Some(&tenant_yaml(
            "e2e-failover-2",
            "US",
            "  database: {deletionPolicy: Delete}\n",
        )),
    );
    wait_tenant(
        "e2e-failover-2",
        "Ready after failover",
        Duration::from_secs(60),
        is_ready,
    )
    .await;
    assert_eq!(b.metric("phoenix_operator_leader").await, Some(1.0));

    // A graceful stop releases the lease, so a new replica need not wait for it to lapse.
    b.stop();
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(kube_client().await, NAMESPACE);
    let spec = leases
        .get("phoenix-operator")
        .await
        .expect("the lease exists")
        .spec
        .expect("lease spec");
    assert_eq!(
        spec.holder_identity, None,
        "b stopped without releasing the lease"
    );
    assert!(
        spec.lease_transitions.unwrap_or(0) >= 1,
        "the failover was not recorded: {spec:?}"
    );
    let c = Process::operator_named("e2e-leader-c", 10).await;
    eventually("replica c leads", Duration::from_secs(30), || async {
        (c.metric("phoenix_operator_leader").await == Some(1.0)).then_some(())
    })
    .await;
    kubectl_ok(
        &[
            "delete",
            "tenant",
            "e2e-failover-1",
            "e2e-failover-2",
            "--timeout=60s",
        ],
        None,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_dataplane_secret_rotates_the_password_at_once() {
    let _serial = SERIAL.lock().await;
    install_platform();
    // A long resync (Regions: 60 s), so only the Secret watch can explain a quick rotation.
    let _operator = Process::operator(3600).await;
    let out = kubectl(
        &[
            "wait",
            "--for=condition=Ready",
            "region/us-east-1",
            "--timeout=120s",
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let secrets: Api<Secret> = Api::namespaced(kube_client().await, NAMESPACE);
    let before = eventually("the data plane Secret", READY_TIMEOUT, || {
        let secrets = secrets.clone();
        async move {
            secrets
                .get_opt("phoenix-dataplane-us-east-1")
                .await
                .ok()
                .flatten()
        }
    })
    .await;
    let old_url = dataplane_url("us-east-1").await;
    kubectl_ok(
        &[
            "-n",
            NAMESPACE,
            "delete",
            "secret",
            "phoenix-dataplane-us-east-1",
        ],
        None,
    );
    let after = eventually(
        "a regenerated data plane Secret",
        Duration::from_secs(30),
        || {
            let secrets = secrets.clone();
            let old_uid = before.metadata.uid.clone();
            async move {
                secrets
                    .get_opt("phoenix-dataplane-us-east-1")
                    .await
                    .ok()
                    .flatten()
                    .filter(|s| s.metadata.uid != old_uid)
            }
        },
    )
    .await;
    assert!(after.metadata.uid.is_some());
    let new_url = dataplane_url("us-east-1").await;
    assert_ne!(old_url, new_url, "the password was not rotated");
    // The role's password follows: a data plane with the new credentials becomes ready,
    // one with the old ones cannot log in.
    let _dp = Process::dataplane("us-east-1", new_url).await;
    let (old, conn) = tokio_postgres::connect(&old_url, tokio_postgres::NoTls)
        .await
        .map(|(c, conn)| (Some(c), Some(conn)))
        .unwrap_or((None, None));
    drop(conn);
    assert!(old.is_none(), "the old data plane password still logs in");
}
