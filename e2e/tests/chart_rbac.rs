//! The Helm chart's RBAC is what the operator needs, against the real kube-apiserver: an
//! operator whose kubeconfig impersonates the chart's ServiceAccount (so the apiserver
//! authorizes it by the chart's ClusterRole and Roles alone) cannot lead before the chart's
//! RBAC exists; once it does, the operator leads, reconciles a Tenant and its IdPConnection
//! to Ready, generates the SCIM token Secret and records Events — with no `forbidden` in
//! its log.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use kube::Api;
use phoenix_crds::IdPConnection;
use phoenix_e2e::events::{Regarding, instant, wait_event};
use phoenix_e2e::guard::ScenarioGuard;
use phoenix_e2e::scenario::*;
use phoenix_e2e::*;
use serde::Deserialize as _;
use serde_yaml::Value;

/// The release name the chart is rendered as; its objects are named after it.
const RELEASE: &str = "e2e-rbac";
/// Kinds of the chart that grant the operator its rights.
const RBAC_KINDS: [&str; 5] = [
    "ServiceAccount",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
];

/// The chart rendered by the pinned Helm for the stack's Kubernetes version.
fn render_chart() -> String {
    let helm = Command::new(repo().join("e2e/toolchain/helm.sh"))
        .output()
        .expect("run e2e/toolchain/helm.sh");
    assert!(
        helm.status.success(),
        "helm build failed: {}",
        String::from_utf8_lossy(&helm.stderr)
    );
    let helm = String::from_utf8_lossy(&helm.stdout).trim().to_owned();
    let go_mod = std::fs::read_to_string(repo().join("e2e/toolchain/go.mod")).expect("go.mod");
    let kube_version = go_mod
        .lines()
        .find_map(|l| l.trim().strip_prefix("k8s.io/kubernetes "))
        .expect("k8s.io/kubernetes in go.mod")
        .trim()
        .to_owned();
    let out = Command::new(helm)
        .args(["template", RELEASE])
        .arg(repo().join("charts/phoenix-guardian"))
        .args(["--namespace", NAMESPACE, "--kube-version", &kube_version])
        .args(["--set", "dataplane.enabled=false"])
        .output()
        .expect("run helm template");
    assert!(
        out.status.success(),
        "helm template: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 manifests")
}

/// What the test takes from the rendered chart.
struct Chart {
    /// Its RBAC objects, as YAML documents.
    rbac: String,
    /// The operator ServiceAccount's name.
    service_account: String,
    /// The operator container's literal environment (`value`, not `valueFrom`).
    env: Vec<(String, String)>,
}

fn parse_chart(rendered: &str) -> Chart {
    let mut manifests = String::new();
    let mut operator_sa = None;
    let mut env = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(rendered) {
        let doc = Value::deserialize(doc).expect("rendered YAML parses");
        let kind = doc["kind"].as_str().unwrap_or_default();
        if kind == "Deployment"
            && doc["metadata"]["labels"]["app.kubernetes.io/component"].as_str() == Some("operator")
        {
            let containers = doc["spec"]["template"]["spec"]["containers"]
                .as_sequence()
                .expect("operator containers");
            for var in containers[0]["env"].as_sequence().expect("operator env") {
                if let (Some(name), Some(value)) = (var["name"].as_str(), var["value"].as_str()) {
                    env.push((name.to_owned(), value.to_owned()));
                }
            }
        }
        if !RBAC_KINDS.contains(&kind) {
            continue;
        }
        if kind == "ServiceAccount"
            && doc["metadata"]["labels"]["app.kubernetes.io/component"].as_str() == Some("operator")
        {
            operator_sa = doc["metadata"]["name"].as_str().map(str::to_owned);
        }
        manifests.push_str("---\n");
        manifests.push_str(&serde_yaml::to_string(&doc).expect("YAML"));
    }
    Chart {
        rbac: manifests,
        service_account: operator_sa.expect("the chart renders the operator's ServiceAccount"),
        env,
    }
}

/// The stack's kubeconfig, impersonating `user` (and the groups every ServiceAccount of
/// `NAMESPACE` has): every request is authorized as that ServiceAccount.
fn impersonating_kubeconfig(user: &str) -> PathBuf {
    let path = PathBuf::from(stack_var("KUBECONFIG"));
    let mut config: Value =
        serde_yaml::from_str(&std::fs::read_to_string(&path).expect("read KUBECONFIG"))
            .expect("kubeconfig parses");
    let users = config["users"]
        .as_sequence_mut()
        .expect("kubeconfig has users");
    for entry in users {
        let auth = entry["user"].as_mapping_mut().expect("user entry");
        auth.insert("as".into(), user.into());
        auth.insert(
            "as-groups".into(),
            Value::Sequence(vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{NAMESPACE}").into(),
                "system:authenticated".into(),
            ]),
        );
    }
    let out = PathBuf::from(stack_var("STACK_DIR")).join("kubeconfig-chart-operator");
    std::fs::write(&out, serde_yaml::to_string(&config).expect("YAML")).expect("write kubeconfig");
    out
}

/// Deletes the chart's RBAC objects when dropped.
struct Installed(String);

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = try_kubectl(
            &["delete", "--ignore-not-found", "--wait=false", "-f", "-"],
            Some(&self.0),
        );
    }
}

/// The lines `process` logged about a request the apiserver denied its ServiceAccount.
fn denied(process: &Process) -> Vec<String> {
    process
        .own_log()
        .lines()
        .filter(|l| l.to_lowercase().contains("forbidden"))
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_charts_rbac_is_enough_for_the_operator_and_nothing_less_works() {
    let _serial = SERIAL.lock().await;
    install_platform();
    let chart = parse_chart(&render_chart());
    let rbac = chart.rbac.clone();
    let user = format!(
        "system:serviceaccount:{NAMESPACE}:{}",
        chart.service_account
    );
    let kubeconfig = impersonating_kubeconfig(&user);
    let kubeconfig = kubeconfig.display().to_string();
    // The operator runs with the chart's settings that decide what it asks the apiserver
    // for (where it writes and watches Secrets), as the impersonated ServiceAccount.
    let mut env: Vec<(&str, &str)> = chart
        .env
        .iter()
        .filter(|(k, _)| ["OPERATOR_NAMESPACE", "SECRET_NAMESPACES"].contains(&k.as_str()))
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        env.len(),
        2,
        "the chart sets OPERATOR_NAMESPACE and SECRET_NAMESPACES: {env:?}"
    );
    env.push(("KUBECONFIG", &kubeconfig));
    // Leftovers of an aborted run would grant the rights this test first withholds.
    let _ = try_kubectl(&["delete", "--ignore-not-found", "-f", "-"], Some(&rbac));

    // Without the chart's RBAC the impersonated identity may do nothing: proof that the
    // kubeconfig's impersonation is in force for kubectl ...
    let can_i = |verb: &str, resource: &str| {
        let out = try_kubectl(
            &[
                "--kubeconfig",
                &kubeconfig,
                "auth",
                "can-i",
                verb,
                resource,
                "-n",
                NAMESPACE,
            ],
            None,
        )
        .expect("kubectl auth can-i");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    assert_eq!(can_i("list", "tenants.phoenixguardian.io"), "no");

    // ... and for the operator: it cannot take its lease, so it never leads.
    let log_name = "e2e-operator-chart-rbac";
    let operator = Process::operator_standing_by(log_name, 5, &env).await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_ne!(
        operator.metric("phoenix_operator_leader").await,
        Some(1.0),
        "the operator leads without any RBAC: impersonation is not in force"
    );
    assert!(
        !denied(&operator).is_empty(),
        "the operator logged no forbidden request without RBAC"
    );
    drop(operator);

    // With the chart's RBAC: what the chart grants is what the operator needs.
    let _installed = Installed(rbac.clone());
    kubectl_ok(&["apply", "-f", "-"], Some(&rbac));
    assert_eq!(can_i("list", "tenants.phoenixguardian.io"), "yes");
    assert_eq!(can_i("create", "secrets"), "yes");
    assert_eq!(
        can_i("delete", "nodes"),
        "no",
        "the chart grants more than the operator needs"
    );
    let operator = Process::operator_with(log_name, 5, &env).await;
    let scenario = ScenarioGuard::new("chart-rbac");
    let since = instant();
    let tenant = apply_ready_tenant(
        &scenario,
        "e2e-rbac",
        "US",
        "  database: {deletionPolicy: Delete}\n  sso: {idpConnectionRef: e2e-rbac-idp}\n",
    )
    .await;
    let issuer = format!("{}/realms/mercy-general", stack_var("KEYCLOAK_URL"));
    scenario.apply(&format!(
        "---\napiVersion: phoenixguardian.io/v1alpha1\nkind: IdPConnection\nmetadata:\n  name: e2e-rbac-idp\nspec:\n  tenantRef: e2e-rbac\n  protocol: OIDC\n  oidc:\n    issuerUrl: {issuer}\n    clientId: phoenix-dataplane\n  scim: {{enabled: true}}\n"
    ));
    let idps: Api<IdPConnection> = Api::all(kube_client().await);
    eventually("IdPConnection e2e-rbac-idp Ready", READY_TIMEOUT, || {
        let idps = idps.clone();
        async move {
            let idp = idps.get_opt("e2e-rbac-idp").await.ok().flatten()?;
            idp.status?
                .conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
                .then_some(())
        }
    })
    .await;
    // Secrets: the SCIM token the operator generated as the ServiceAccount.
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(kube_client().await, NAMESPACE);
    let secret = secrets
        .get("phoenix-scim-e2e-rbac-idp")
        .await
        .expect("the SCIM token Secret exists");
    assert!(
        secret
            .metadata
            .owner_references
            .unwrap_or_default()
            .iter()
            .any(|o| o.kind == "IdPConnection" && o.name == "e2e-rbac-idp"),
        "the SCIM Secret is not owned by its IdPConnection"
    );
    // Events: recorded about the Tenant by this operator.
    wait_event(&Regarding::of(&tenant), "Ready", since).await;

    let denied = denied(&operator);
    assert!(
        denied.is_empty(),
        "requests the chart's RBAC does not allow:\n{}",
        denied.join("\n")
    );
    drop(scenario);
}
