//! Invalid manifests are refused by the API server, naming the field.
//! Scenarios run one at a time (they share the API server and the operator they start).

use phoenix_e2e::guard::ScenarioGuard;
use phoenix_e2e::*;

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
                "  awsRegion: eu-west-1\n  dataResidency: [EU]\n  database:\n{writer}    rds: {{instanceIdentifier: db1, instanceClass: db.r6g.large, masterPasswordSecretRef: {{namespace: a, name: b, key: c}}, caSecretRef: {{namespace: a, name: b, key: ca}}}}\n"
            )),
            "exactly one of spec.database.writer or spec.database.rds",
        ),
        (
            "rds without its CA",
            r(
                "  awsRegion: eu-west-1\n  dataResidency: [EU]\n  database:\n    rds: {instanceIdentifier: db1, instanceClass: db.r6g.large, masterPasswordSecretRef: {namespace: a, name: b, key: c}}\n",
            ),
            "spec.database.rds.caSecretRef",
        ),
        (
            "rds identifier RDS refuses",
            r(
                "  awsRegion: eu-west-1\n  dataResidency: [EU]\n  database:\n    rds: {instanceIdentifier: db--1, instanceClass: db.r6g.large, masterPasswordSecretRef: {namespace: a, name: b, key: c}, caSecretRef: {namespace: a, name: b, key: ca}}\n",
            ),
            "must not end with '-' nor contain '--'",
        ),
        (
            "snapshot bucket not an S3 name",
            r(&format!(
                "  awsRegion: eu-west-1\n  dataResidency: [EU]\n  database:\n{writer}    snapshots: {{bucket: Bad_Bucket}}\n"
            )),
            "spec.database.snapshots.bucket",
        ),
        (
            "snapshot prefix with a leading slash",
            r(&format!(
                "  awsRegion: eu-west-1\n  dataResidency: [EU]\n  database:\n{writer}    snapshots: {{bucket: phoenix-snapshots, prefix: /tenants}}\n"
            )),
            "spec.database.snapshots.prefix must not start or end with '/'",
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
    // No operator yet, so that only the API server can refuse; declared before the guard,
    // so that the operator started later outlives it and runs the finalizers.
    let operator = std::cell::OnceCell::new();
    let scenario = ScenarioGuard::new("admission");
    let mut failures = Vec::new();
    for (what, manifest, fragment) in &invalid_manifests() {
        let out = kubectl(&["apply", "-f", "-"], Some(&scenario.labeled(manifest)));
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
    scenario.apply(&tenant_yaml(
        "e2e-pinned",
        "US",
        "  homeRegion: us-east-1\n",
    ));
    let out = kubectl(
        &["apply", "-f", "-"],
        Some(&scenario.labeled(&tenant_yaml(
            "e2e-pinned",
            "US",
            "  homeRegion: eu-west-1\n",
        ))),
    );
    assert!(!out.status.success(), "homeRegion changed");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("spec.homeRegion is immutable"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    kubectl_ok(&["delete", "tenant", "e2e-pinned", "--wait=false"], None);
    let _ = operator.set(Process::operator(10).await); // lets the finalizer (if any) finish
    kubectl_ok(
        &["wait", "--for=delete", "tenant/e2e-pinned", "--timeout=60s"],
        None,
    );
}
