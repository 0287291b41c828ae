//! The operator against a real kube-apiserver, real PostgreSQL and the real data plane.
//! Scenarios run one at a time (they share the API server and the operator they start).

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::ListParams;
use phoenix_crds::{Region, Tenant, TenantPhase};
use phoenix_e2e::*;

const READY_TIMEOUT: Duration = Duration::from_secs(120);

async fn tenants() -> Api<Tenant> {
    Api::all(kube_client().await)
}

async fn wait_tenant<F>(name: &str, what: &str, timeout: Duration, pred: F) -> Tenant
where
    F: Fn(&Tenant) -> bool,
{
    let api = tenants().await;
    eventually(&format!("tenant {name}: {what}"), timeout, || {
        let api = api.clone();
        let name = name.to_owned();
        let pred = &pred;
        async move { api.get_opt(&name).await.ok().flatten().filter(|t| pred(t)) }
    })
    .await
}

fn is_ready(t: &Tenant) -> bool {
    condition(t, "Ready").is_some_and(|c| c.0 == "True")
}

async fn catalog_names(region: &str, like: &str) -> Vec<(String, String, String)> {
    pg(region)
        .await
        .query(
            "SELECT name, uid, state FROM catalog.tenants WHERE name LIKE $1 ORDER BY name",
            &[&like],
        )
        .await
        .expect("catalog query")
        .into_iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

async fn dataplane_url(region: &str) -> String {
    let secrets: Api<Secret> = Api::namespaced(kube_client().await, NAMESPACE);
    let secret = secrets
        .get(&format!("phoenix-dataplane-{region}"))
        .await
        .expect("the operator created the data plane Secret");
    let data = secret.data.expect("secret data");
    String::from_utf8(data["databaseUrl"].0.clone()).expect("utf-8 url")
}

async fn get_metadata(dataplane: &Process, host: &str) -> (u16, String) {
    let res = reqwest::Client::new()
        .get(format!("http://{}/fhir/metadata", dataplane.addr))
        .header("Host", host)
        .send()
        .await
        .expect("data plane answers");
    let status = res.status().as_u16();
    (status, res.text().await.unwrap_or_default())
}

async fn events_with_reason(reason: &str) -> Vec<Event> {
    let api: Api<Event> = Api::namespaced(kube_client().await, "default");
    api.list(&ListParams::default())
        .await
        .expect("events")
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn examples_reach_ready_and_their_hosts_are_served() {
    let _serial = SERIAL.lock().await;
    install_platform();
    let _operator = Process::operator(10).await;
    kubectl_ok(
        &[
            "apply",
            "-f",
            &repo().join("examples/tenants.yaml").display().to_string(),
        ],
        None,
    );
    let out = kubectl(
        &[
            "wait",
            "--for=condition=Ready",
            "region",
            "--all",
            "--timeout=120s",
        ],
        None,
    );
    assert!(
        out.status.success(),
        "regions not Ready: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for name in [
        "mercy-general",
        "st-lukes",
        "charite-berlin",
        "nordic-care",
        "raffles-sg",
    ] {
        let out = kubectl(
            &[
                "wait",
                "--for=condition=Ready",
                &format!("tenant/{name}"),
                "--timeout=120s",
            ],
            None,
        );
        assert!(
            out.status.success(),
            "tenant {name} not Ready: {} {}",
            String::from_utf8_lossy(&out.stderr),
            kubectl_ok(&["get", "tenant", name, "-o", "yaml"], None)
        );
    }
    let api = tenants().await;
    let placed = |t: &Tenant| {
        t.status
            .as_ref()
            .and_then(|s| s.placement.as_ref())
            .map(|p| p.region.clone())
    };
    assert_eq!(
        placed(&api.get("charite-berlin").await.expect("get")).as_deref(),
        Some("eu-west-1")
    );
    assert_eq!(
        placed(&api.get("raffles-sg").await.expect("get")).as_deref(),
        Some("ap-southeast-1")
    );
    assert_eq!(
        placed(&api.get("st-lukes").await.expect("get")).as_deref(),
        Some("us-east-1")
    );
    let nordic = api.get("nordic-care").await.expect("get");
    assert_eq!(
        nordic.status.as_ref().and_then(|s| s.phase),
        Some(TenantPhase::Suspended)
    );
    for (t, cond) in [
        ("mercy-general", "RLSEnforced"),
        ("mercy-general", "DatabaseReady"),
    ] {
        let tenant = api.get(t).await.expect("get");
        assert_eq!(
            condition(&tenant, cond).map(|c| c.0).as_deref(),
            Some("True"),
            "{t} {cond}"
        );
    }

    // Residency: EU rows exist only in the EU region's database.
    let eu: Vec<String> = catalog_names("eu-west-1", "%")
        .await
        .into_iter()
        .map(|r| r.0)
        .collect();
    assert!(eu.contains(&"charite-berlin".to_owned()), "{eu:?}");
    for region in ["us-east-1", "ap-southeast-1"] {
        let names: Vec<String> = catalog_names(region, "%")
            .await
            .into_iter()
            .map(|r| r.0)
            .collect();
        assert!(
            !names.contains(&"charite-berlin".to_owned()),
            "EU tenant in {region}: {names:?}"
        );
    }

    let regions: Api<Region> = Api::all(kube_client().await);
    let us_status = eventually(
        "us-east-1 counts its tenants",
        Duration::from_secs(30),
        || {
            let regions = regions.clone();
            async move {
                regions
                    .get("us-east-1")
                    .await
                    .ok()?
                    .status
                    .filter(|s| s.tenant_count >= 2)
            }
        },
    )
    .await;
    assert!(
        us_status
            .conditions
            .iter()
            .any(|c| c.type_ == "ReplicationHealthy" && c.status == "True"),
        "{:?}",
        us_status.conditions
    );

    // The data planes serve what the operator built, as the role it created.
    let us_dp = Process::dataplane("us-east-1", dataplane_url("us-east-1").await).await;
    let eu_dp = Process::dataplane("eu-west-1", dataplane_url("eu-west-1").await).await;
    let (status, body) = get_metadata(&us_dp, "mercy-general.us.phoenixguardian.test").await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("CapabilityStatement") && body.contains("Mercy General Hospital"),
        "{body}"
    );
    let (status, body) = get_metadata(&us_dp, "charite.eu.phoenixguardian.test").await;
    assert_eq!(
        status, 404,
        "an EU tenant was served by the US data plane: {body}"
    );
    assert!(body.contains("OperationOutcome"), "{body}");
    assert_eq!(
        get_metadata(&eu_dp, "charite.eu.phoenixguardian.test")
            .await
            .0,
        200
    );
    assert_eq!(
        get_metadata(&eu_dp, "nordic-care.eu.phoenixguardian.test")
            .await
            .0,
        403,
        "a suspended tenant was served"
    );

    // A tenant applied now is served within seconds; deleted, it stops being served.
    kubectl_ok(
        &["apply", "-f", "-"],
        Some(&tenant_yaml("e2e-late", "US", "")),
    );
    let served = eventually(
        "e2e-late served by the data plane",
        Duration::from_secs(60),
        || async {
            (get_metadata(&us_dp, "e2e-late.e2e.phoenixguardian.test")
                .await
                .0
                == 200)
                .then_some(())
        },
    )
    .await;
    let () = served;
    kubectl_ok(&["delete", "tenant", "e2e-late", "--timeout=60s"], None);
    eventually(
        "e2e-late no longer served",
        Duration::from_secs(10),
        || async {
            (get_metadata(&us_dp, "e2e-late.e2e.phoenixguardian.test")
                .await
                .0
                == 404)
                .then_some(())
        },
    )
    .await;
}

/// (manifest, a fragment the refusal must contain)
fn invalid_manifests() -> Vec<(&'static str, String, &'static str)> {
    let t = |name: &str, spec: &str| {
        format!(
            "apiVersion: phoenixguardian.io/v1alpha1\nkind: Tenant\nmetadata:\n  name: {name}\nspec:\n{spec}"
        )
    };
    let base =
        "  displayName: X\n  dataResidency: [US]\n  dns: {hostname: x.e2e.phoenixguardian.test}\n";
    let r = |spec: &str| {
        format!(
            "apiVersion: phoenixguardian.io/v1alpha1\nkind: Region\nmetadata:\n  name: e2e-bad-region\nspec:\n{spec}"
        )
    };
    let writer =
        "    writer: {connectionSecretRef: {namespace: phoenix-system, name: x, key: dsn}}\n";
    let idp = |spec: &str| {
        format!(
            "apiVersion: phoenixguardian.io/v1alpha1\nkind: IdPConnection\nmetadata:\n  name: e2e-bad-idp\nspec:\n  tenantRef: mercy-general\n{spec}"
        )
    };
    vec![
        ("uppercase name", t("Bad_Name", base), "metadata.name"),
        (
            "name with a dot",
            t("bad.name", base),
            "metadata.name must be a DNS label",
        ),
        (
            "empty residency",
            t(
                "e2e-bad",
                "  displayName: X\n  dataResidency: []\n  dns: {hostname: x.e2e.phoenixguardian.test}\n",
            ),
            "spec.dataResidency",
        ),
        (
            "lowercase jurisdiction",
            t(
                "e2e-bad",
                "  displayName: X\n  dataResidency: [eu]\n  dns: {hostname: x.e2e.phoenixguardian.test}\n",
            ),
            "spec.dataResidency[0]",
        ),
        (
            "unknown isolation",
            t(
                "e2e-bad",
                &format!("{base}  database: {{isolation: Partitioned}}\n"),
            ),
            "spec.database.isolation",
        ),
        (
            "snapshot of shared data",
            t(
                "e2e-bad",
                &format!("{base}  database: {{isolation: Shared, deletionPolicy: Snapshot}}\n"),
            ),
            "deletionPolicy Snapshot requires isolation Dedicated",
        ),
        (
            "missing dns",
            t("e2e-bad", "  displayName: X\n  dataResidency: [US]\n"),
            "spec.dns",
        ),
        (
            "hostname with spaces",
            t(
                "e2e-bad",
                "  displayName: X\n  dataResidency: [US]\n  dns: {hostname: not a host}\n",
            ),
            "spec.dns.hostname",
        ),
        (
            "zero rate limit",
            t(
                "e2e-bad",
                &format!("{base}  limits: {{requestsPerSecond: 0}}\n"),
            ),
            "spec.limits.requestsPerSecond",
        ),
        (
            "homeRegion not a DNS label",
            t("e2e-bad", &format!("{base}  homeRegion: US_EAST\n")),
            "spec.homeRegion",
        ),
        (
            "empty display name",
            t(
                "e2e-bad",
                "  displayName: \"\"\n  dataResidency: [US]\n  dns: {hostname: x.e2e.phoenixguardian.test}\n",
            ),
            "spec.displayName",
        ),
        (
            "replica without replicaOf",
            r(&format!(
                "  awsRegion: eu-west-1\n  role: Replica\n  dataResidency: [EU]\n  database:\n{writer}"
            )),
            "spec.replicaOf is required",
        ),
        (
            "writer and rds",
            r(&format!(
                "  awsRegion: eu-west-1\n  dataResidency: [EU]\n  database:\n{writer}    rds: {{instanceIdentifier: db1, instanceClass: db.r6g.large, masterPasswordSecretRef: {{namespace: a, name: b, key: c}}}}\n"
            )),
            "exactly one of spec.database.writer or spec.database.rds",
        ),
        (
            "bad aws region",
            r(&format!(
                "  awsRegion: mars\n  dataResidency: [EU]\n  database:\n{writer}"
            )),
            "spec.awsRegion",
        ),
        (
            "host without credentials",
            r(
                "  awsRegion: eu-west-1\n  dataResidency: [EU]\n  database:\n    writer: {host: db.internal}\n",
            ),
            "credentialsSecretRef",
        ),
        (
            "OIDC without oidc",
            idp("  protocol: OIDC\n"),
            "spec.oidc is required",
        ),
        (
            "SAML with oidc",
            idp(
                "  protocol: SAML\n  oidc: {issuerUrl: 'https://idp.example', clientId: x}\n  saml: {metadataUrl: 'https://idp.example/md', entityId: e}\n",
            ),
            "spec.oidc is required when protocol is OIDC and must be absent",
        ),
        (
            "plain-HTTP issuer off loopback",
            idp("  protocol: OIDC\n  oidc: {issuerUrl: 'http://idp.example.org', clientId: x}\n"),
            "spec.oidc.issuerUrl",
        ),
        (
            "unknown protocol",
            idp("  protocol: LDAP\n"),
            "spec.protocol",
        ),
        (
            "unknown platform role",
            idp(
                "  protocol: OIDC\n  oidc: {issuerUrl: 'https://idp.example', clientId: x}\n  roleMapping: [{group: docs, role: surgeon}]\n",
            ),
            "spec.roleMapping[0].role",
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_manifests_are_refused_at_admission_naming_the_field() {
    let _serial = SERIAL.lock().await;
    install_platform();
    let cases = invalid_manifests();
    assert!(cases.len() >= 10);
    let mut failures = Vec::new();
    for (what, manifest, fragment) in &cases {
        let out = kubectl(&["apply", "-f", "-"], Some(manifest));
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.success() {
            failures.push(format!("{what}: accepted"));
        } else if !stderr.contains(fragment) {
            failures.push(format!(
                "{what}: refused without naming {fragment:?}: {stderr}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    for kind in [
        "tenant/e2e-bad",
        "region/e2e-bad-region",
        "idpconnection/e2e-bad-idp",
    ] {
        let out = kubectl(&["get", kind], None);
        assert!(!out.status.success(), "{kind} exists although refused");
    }

    // homeRegion is immutable once set (no operator runs here, so no finalizer either).
    kubectl_ok(
        &["apply", "-f", "-"],
        Some(&tenant_yaml(
            "e2e-pinned",
            "US",
            "  homeRegion: us-east-1\n",
        )),
    );
    let out = kubectl(
        &["apply", "-f", "-"],
        Some(&tenant_yaml(
            "e2e-pinned",
            "US",
            "  homeRegion: eu-west-1\n",
        )),
    );
    assert!(!out.status.success(), "homeRegion changed");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("spec.homeRegion is immutable"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    kubectl_ok(&["delete", "tenant", "e2e-pinned", "--wait=false"], None);
    let _operator = Process::operator(10).await; // lets the finalizer (if any) finish
    kubectl_ok(
        &["wait", "--for=delete", "tenant/e2e-pinned", "--timeout=60s"],
        None,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_tenant_runs_the_finalizer_per_deletion_policy() {
    let _serial = SERIAL.lock().await;
    install_platform();
    let _operator = Process::operator(10).await;
    kubectl_ok(
        &["apply", "-f", "-"],
        Some(
            &(tenant_yaml(
                "e2e-del-delete",
                "US",
                "  database: {deletionPolicy: Delete}\n",
            ) + &tenant_yaml(
                "e2e-del-retain",
                "US",
                "  database: {deletionPolicy: Retain}\n",
            )),
        ),
    );
    let mut ids = BTreeMap::new();
    for name in ["e2e-del-delete", "e2e-del-retain"] {
        let t = wait_tenant(name, "Ready", READY_TIMEOUT, is_ready).await;
        let finalizers = t.metadata.finalizers.clone().unwrap_or_default();
        assert!(
            finalizers
                .iter()
                .any(|f| f == "phoenixguardian.io/tenant-cleanup"),
            "{finalizers:?}"
        );
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
    assert!(
        !events_with_reason("Deleted").await.is_empty(),
        "no Deleted event"
    );
    // Leave the shared database as we found it.
    db.execute(
        "DELETE FROM clinical.patients WHERE tenant_id = $1",
        &[&ids["e2e-del-retain"]],
    )
    .await
    .expect("tidy");
    db.execute(
        "DELETE FROM catalog.tenants WHERE id = $1",
        &[&ids["e2e-del-retain"]],
    )
    .await
    .expect("tidy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_references_get_a_condition_an_event_and_backoff_not_a_crash() {
    let _serial = SERIAL.lock().await;
    install_platform();
    let operator = Process::operator(10).await;
    kubectl_ok(
        &["apply", "-f", "-"],
        Some(
            &(tenant_yaml("e2e-canada", "CA", "")
                + &tenant_yaml("e2e-nowhere", "EU", "  homeRegion: eu-central-9\n")),
        ),
    );
    kubectl_ok(
        &["apply", "-f", "-"],
        Some(
            "apiVersion: phoenixguardian.io/v1alpha1\nkind: Region\nmetadata:\n  name: e2e-broken\nspec:\n  awsRegion: sa-east-1\n  dataResidency: [BR]\n  database:\n    writer: {connectionSecretRef: {namespace: phoenix-system, name: e2e-missing-secret, key: dsn}}\n",
        ),
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
    assert!(
        !events_with_reason("NoRegionForResidency").await.is_empty(),
        "no event for the unplaceable tenant"
    );
    assert!(
        !events_with_reason("SecretNotFound").await.is_empty(),
        "no event for the broken region"
    );

    // Backoff, not a hot loop: a few seconds later the failure count grew only a little.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let metrics = reqwest::get(format!("http://{}/metrics", operator.addr))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let errors: f64 = metrics
        .lines()
        .filter(|l| {
            l.starts_with("phoenix_operator_reconcile_errors_total{")
                && l.contains("NoRegionForResidency")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(
        (1.0..=10.0).contains(&errors),
        "unplaceable tenant reconciled {errors} times in seconds: {metrics}"
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
    kubectl_ok(
        &["apply", "-f", "-"],
        Some(&tenant_yaml(
            "e2e-drift",
            "US",
            "  database: {deletionPolicy: Delete}\n",
        )),
    );
    wait_tenant("e2e-drift", "Ready", READY_TIMEOUT, is_ready).await;
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
    kubectl_ok(
        &["apply", "-f", "-"],
        Some(&tenant_yaml(
            "e2e-failover-1",
            "US",
            "  database: {deletionPolicy: Delete}\n",
        )),
    );
    wait_tenant("e2e-failover-1", "Ready", READY_TIMEOUT, is_ready).await;
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
async fn an_unreachable_region_database_is_reported_and_blocks_nothing_else() {
    let _serial = SERIAL.lock().await;
    install_platform();
    let _operator = Process::operator(10).await;
    let port = free_port(); // nothing listens there
    let secret = format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: e2e-dead-db\n  namespace: {NAMESPACE}\nstringData:\n  dsn: postgres://postgres:x@127.0.0.1:{port}/phoenix\n"
    );
    kubectl_ok(&["apply", "-f", "-"], Some(&secret));
    kubectl_ok(
        &["apply", "-f", "-"],
        Some(
            "apiVersion: phoenixguardian.io/v1alpha1\nkind: Region\nmetadata:\n  name: e2e-dead\nspec:\n  awsRegion: sa-east-1\n  dataResidency: [ZZ]\n  database:\n    writer: {connectionSecretRef: {namespace: phoenix-system, name: e2e-dead-db, key: dsn}}\n",
        ),
    );
    kubectl_ok(
        &["apply", "-f", "-"],
        Some(&tenant_yaml("e2e-waits", "ZZ", "")),
    );

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
    kubectl_ok(
        &["apply", "-f", "-"],
        Some(&tenant_yaml(
            "e2e-unaffected",
            "EU",
            "  database: {deletionPolicy: Delete}\n",
        )),
    );
    wait_tenant("e2e-unaffected", "Ready", READY_TIMEOUT, is_ready).await;

    // Deleting it cannot clean up its data: the finalizer holds and says why.
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
    assert!(
        !events_with_reason("DatabaseUnreachable").await.is_empty(),
        "no Warning event for the blocked deletion"
    );
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
