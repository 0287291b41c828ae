//! `phoenix-operator plan` against the live cluster and databases: a plan of what is
//! applied shows no change, a plan of a new tenant shows its placement and catalog row,
//! a tenant no region can take is an error, and nothing is written by any of them.

use std::collections::BTreeMap;
use std::process::Command;

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::ListParams;
use phoenix_crds::{Region, Tenant};
use phoenix_e2e::guard::ScenarioGuard;
use phoenix_e2e::scenario::*;
use phoenix_e2e::*;

/// Runs `phoenix-operator plan` with `args`; (exit code, stdout, stderr).
fn plan(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(binary("phoenix-operator"))
        .arg("plan")
        .args(args)
        .env("KUBECONFIG", stack_var("KUBECONFIG"))
        .env("OPERATOR_NAMESPACE", NAMESPACE)
        .output()
        .expect("phoenix-operator runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Records the resourceVersion of every object of `api` under `kind/name`.
async fn versions<K>(out: &mut BTreeMap<String, String>, kind: &str, api: Api<K>)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    for o in api.list(&ListParams::default()).await.expect(kind) {
        let meta = o.meta();
        out.insert(
            format!("{kind}/{:?}", meta.name),
            format!("{:?}", meta.resource_version),
        );
    }
}

/// Everything a plan could write: objects' resourceVersions, the operator's Secrets, and in
/// every region the catalog rows, the operator's roles with their verifiers, the RLS flags
/// and policies, privileges and the migration ledger.
async fn snapshot() -> BTreeMap<String, String> {
    let client = kube_client().await;
    let mut out = BTreeMap::new();
    versions(&mut out, "region", Api::<Region>::all(client.clone())).await;
    versions(&mut out, "tenant", Api::<Tenant>::all(client.clone())).await;
    versions(
        &mut out,
        "secret",
        Api::<Secret>::namespaced(client, NAMESPACE),
    )
    .await;
    for region in REGIONS {
        let db = pg(region).await;
        for (what, sql) in [
            (
                "catalog",
                "SELECT coalesce(string_agg(id || ':' || name || ':' || state || ':' || updated_at, ',' ORDER BY id), '') FROM catalog.tenants",
            ),
            (
                "roles",
                "SELECT coalesce(string_agg(rolname || ':' || rolbypassrls || ':' || coalesce(rolpassword, ''), ',' ORDER BY rolname), '') FROM pg_authid WHERE rolname LIKE 'phoenix%'",
            ),
            (
                "rls",
                "SELECT coalesce(string_agg(relname || ':' || relrowsecurity || relforcerowsecurity, ',' ORDER BY relname), '') FROM pg_class WHERE relnamespace = 'clinical'::regnamespace AND relkind = 'r'",
            ),
            (
                "policies",
                "SELECT coalesce(string_agg(tablename || ':' || policyname || ':' || qual, ',' ORDER BY tablename, policyname), '') FROM pg_policies WHERE schemaname = 'clinical'",
            ),
            (
                "acl",
                "SELECT coalesce(string_agg(relname || ':' || coalesce(relacl::text, ''), ',' ORDER BY relname), '') FROM pg_class WHERE relnamespace IN ('clinical'::regnamespace, 'catalog'::regnamespace)",
            ),
            (
                "ledger",
                "SELECT coalesce(string_agg(version::text, ',' ORDER BY version), '') FROM phoenix_meta.schema_migrations",
            ),
        ] {
            let v: String = db.query_one(sql, &[]).await.expect(what).get(0);
            out.insert(format!("{region}/{what}"), v);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_shows_no_change_for_what_is_applied_and_the_changes_of_a_new_tenant_writing_nothing()
{
    let _serial = SERIAL.lock().await;
    install_platform();
    let examples = repo().join("examples");
    let mut operator = Process::operator(10).await;
    let scenario = ScenarioGuard::new("plan");
    let tenants = std::fs::read_to_string(examples.join("tenants.yaml")).expect("examples");
    scenario.apply(&tenants);
    for name in [
        "mercy-general",
        "st-lukes",
        "charite-berlin",
        "nordic-care",
        "raffles-sg",
    ] {
        wait_tenant(name, "Ready", READY_TIMEOUT, is_ready).await;
    }
    kubectl_ok(
        &[
            "wait",
            "--for=condition=Ready",
            "region",
            "--all",
            "--timeout=120s",
        ],
        None,
    );
    // The operator stops here: whatever changes from now on, a plan did.
    operator.stop();
    let before = snapshot().await;

    // The Regions and Tenants of examples/ (its IdPConnections need the stack's Keycloak
    // URL substituted first).
    let regions_arg = examples.join("regions.yaml").display().to_string();
    let tenants_arg = examples.join("tenants.yaml").display().to_string();
    let (code, stdout, stderr) = plan(&["-f", &regions_arg, "-f", &tenants_arg]);
    assert_eq!(code, 0, "plan of the applied examples:\n{stdout}\n{stderr}");
    for name in ["us-east-1", "eu-west-1", "ap-southeast-1"] {
        assert!(
            stdout.contains(&format!("Region {name}: no changes")),
            "{stdout}"
        );
    }
    for name in [
        "mercy-general",
        "st-lukes",
        "charite-berlin",
        "nordic-care",
        "raffles-sg",
    ] {
        assert!(
            stdout.contains(&format!("Tenant {name}: no changes")),
            "{stdout}"
        );
    }
    assert!(
        stdout.contains("Plan: 0 to change, 8 unchanged, 0 error(s)"),
        "{stdout}"
    );

    let dir = std::env::temp_dir().join(format!("e2e-plan-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let new = dir.join("new.yaml");
    std::fs::write(
        &new,
        tenant_yaml("e2e-plan-new", "EU", "  limits: {requestsPerSecond: 42}\n"),
    )
    .expect("write");
    let (code, stdout, stderr) = plan(&["-f", &new.display().to_string(), "-o", "json"]);
    assert_eq!(code, 2, "plan of a new tenant:\n{stdout}\n{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("JSON report");
    assert_eq!(report["changed"], true, "{report}");
    let object = &report["objects"][0];
    assert_eq!(
        (object["kind"].as_str(), object["name"].as_str()),
        (Some("Tenant"), Some("e2e-plan-new"))
    );
    let changes = object["changes"].as_array().expect("changes");
    let find = |target: &str| {
        changes
            .iter()
            .find(|c| c["target"] == target)
            .unwrap_or_else(|| panic!("no change of {target}: {report}"))
    };
    let placement = find("placement");
    assert_eq!(placement["action"], "create");
    assert!(
        placement["detail"]
            .as_str()
            .is_some_and(|d| d.contains("region eu-west-1") && d.contains("jurisdiction EU")),
        "{placement}"
    );
    let row = find("catalog row in eu-west-1");
    assert_eq!(row["action"], "create");
    assert!(
        row["detail"]
            .as_str()
            .is_some_and(|d| d.contains("name=e2e-plan-new")
                && d.contains("requestsPerSecond=42")
                && d.contains("isolation=Shared")),
        "{row}"
    );

    // Its latency record in the EU region's zone and its ownership record.
    let record = find(
        "DNS e2e-plan-new.e2e.phoenixguardian.test. CNAME [eu-west-1] in zone phoenixguardian.test.",
    );
    assert_eq!(record["action"], "upsert");
    assert!(
        record["detail"]
            .as_str()
            .is_some_and(|d| d.contains("api.eu-west-1.phoenixguardian.test.")
                && d.contains("latency region eu-west-1")
                && d.contains("health check")),
        "{record}"
    );
    let owner = find(
        "DNS _phoenix-owner.e2e-plan-new.e2e.phoenixguardian.test. TXT in zone phoenixguardian.test.",
    );
    assert_eq!(owner["action"], "upsert");

    // A Schema tenant: its role, schema, copied tables and their RLS come before its row.
    std::fs::write(
        &new,
        tenant_yaml("e2e-plan-schema", "EU", "  database: {isolation: Schema}\n"),
    )
    .expect("write");
    let (code, stdout, stderr) = plan(&["-f", &new.display().to_string()]);
    assert_eq!(code, 2, "plan of a Schema tenant:\n{stdout}\n{stderr}");
    for line in [
        "role phoenix_tenant_<from the Tenant's UID> in eu-west-1: create role phoenix_tenant_<from the Tenant's UID> (NOLOGIN)",
        "schema t_<from the Tenant's UID> in eu-west-1: create schema t_<from the Tenant's UID> owned by",
        "table t_<from the Tenant's UID>.patients in eu-west-1: create table t_<from the Tenant's UID>.patients like clinical.patients",
        "table t_<from the Tenant's UID>.audit_events in eu-west-1: enable and force row level security",
        "isolation=Schema",
    ] {
        assert!(stdout.contains(line), "{line} not in:\n{stdout}");
    }

    std::fs::write(&new, tenant_yaml("e2e-plan-canada", "CA", "")).expect("write");
    let (code, stdout, _) = plan(&["-f", &new.display().to_string()]);
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains("Tenant e2e-plan-canada: error: NoRegionForResidency"),
        "{stdout}"
    );
    let _ = std::fs::remove_dir_all(&dir);

    let after = snapshot().await;
    assert_eq!(before, after, "a plan wrote something");
    let out = kubectl(&["get", "tenant", "e2e-plan-new"], None);
    assert!(!out.status.success(), "plan created the tenant");
    // Running again so that the scenario's cleanup goes through the finalizers.
    operator = Process::operator(10).await;
    drop(scenario);
    drop(operator);
}
