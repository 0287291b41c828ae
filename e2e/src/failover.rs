//! A failover scenario of its own (ADR 0011): a [`PgLineage`] (a primary and standbys) as
//! Regions `<prefix>-a` (Primary) and `<prefix>-b`, `<prefix>-c`, … (Replicas of it) with
//! a residency no other Region has, tenants placed there, the role flip through the
//! apiserver, and the first write the promoted server accepts as its data plane login.
//! Shared by `tests/failover.rs` and `examples/failover_bench.rs`.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use phoenix_crds::{Region, Tenant};

use crate::guard::ScenarioGuard;
use crate::pg_lineage::{PgLineage, PgServer};
use crate::{NAMESPACE, eventually, kube_client, kubectl_ok, tenant_yaml};

/// How long a Region or Tenant may take to get where a step waits for it.
pub const WITHIN: Duration = Duration::from_secs(90);

/// The Region names of a scenario: `<prefix>-a` is the primary, the others its replicas.
pub fn names(prefix: &str, replicas: usize) -> (String, Vec<String>) {
    let replica = |i: usize| format!("{prefix}-{}", char::from(b'b' + i as u8));
    (format!("{prefix}-a"), (0..replicas).map(replica).collect())
}

fn secret_yaml(name: &str, dsn: &str) -> String {
    let dsn = serde_json::to_string(dsn).expect("json");
    format!(
        "---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  namespace: {NAMESPACE}\nstringData:\n  dsn: {dsn}\n"
    )
}

fn region_yaml(name: &str, residency: &str, replica_of: Option<&str>) -> String {
    let role = match replica_of {
        Some(source) => format!("Replica\n  replicaOf: {source}"),
        None => "Primary".to_owned(),
    };
    format!(
        "---\napiVersion: phoenixguardian.io/v1alpha1\nkind: Region\nmetadata:\n  name: {name}\nspec:\n  awsRegion: us-east-1\n  role: {role}\n  dataResidency: [{residency}]\n  database:\n    writer:\n      connectionSecretRef: {{namespace: {NAMESPACE}, name: {name}-db, key: dsn}}\n"
    )
}

/// Declares the lineage's servers as Regions (the primary, then a Replica per standby).
pub fn declare_regions(guard: &ScenarioGuard, lineage: &PgLineage, prefix: &str, residency: &str) {
    let (primary, replicas) = names(prefix, lineage.standbys.len());
    let mut manifest = secret_yaml(&format!("{primary}-db"), &lineage.primary.dsn("phoenix"));
    manifest.push_str(&region_yaml(&primary, residency, None));
    for (name, server) in replicas.iter().zip(&lineage.standbys) {
        manifest.push_str(&secret_yaml(&format!("{name}-db"), &server.dsn("phoenix")));
        manifest.push_str(&region_yaml(name, residency, Some(&primary)));
    }
    guard.apply(&manifest);
}

/// Applies `count` tenants `<prefix>-t<i>` of `residency`.
pub fn declare_tenants(
    guard: &ScenarioGuard,
    prefix: &str,
    residency: &str,
    count: usize,
) -> Vec<String> {
    let names: Vec<String> = (0..count).map(|i| format!("{prefix}-t{i}")).collect();
    let manifest: String = names
        .iter()
        .map(|n| tenant_yaml(n, residency, ""))
        .collect();
    guard.apply(&manifest);
    names
}

/// The Region `name` once `pred` holds for it.
pub async fn region_where(name: &str, what: &str, pred: impl Fn(&Region) -> bool) -> Region {
    let api: Api<Region> = Api::all(kube_client().await);
    let what = format!("region {name}: {what}");
    let (api, pred) = (&api, &pred);
    eventually(&what, WITHIN, || async move {
        api.get(name).await.ok().filter(|r| pred(r))
    })
    .await
}

/// The Tenant `name` once `pred` holds for it.
pub async fn tenant_where(name: &str, what: &str, pred: impl Fn(&Tenant) -> bool) -> Tenant {
    let api: Api<Tenant> = Api::all(kube_client().await);
    let what = format!("tenant {name}: {what}");
    let (api, pred) = (&api, &pred);
    eventually(&what, WITHIN, || async move {
        api.get(name).await.ok().filter(|t| pred(t))
    })
    .await
}

/// The `type_` condition of `region` as (status, reason, message).
pub fn region_condition(region: &Region, type_: &str) -> Option<(String, String, String)> {
    region
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// Whether `region` is Ready.
pub fn region_ready(region: &Region) -> bool {
    region_condition(region, "Ready").is_some_and(|(s, _, _)| s == "True")
}

/// Declares the Replica Regions `names` Primary (one merge patch each, sent back to back);
/// returns when the first was sent.
pub fn flip(names: &[String]) -> Instant {
    let patch = r#"{"spec":{"role":"Primary","replicaOf":null}}"#;
    let start = Instant::now();
    for name in names {
        kubectl_ok(
            &["patch", "region", name, "--type", "merge", "-p", patch],
            None,
        );
    }
    start
}

/// The data plane login of Region `region` (its Secret's username and password), once
/// the Secret exists.
pub async fn dataplane_login(region: &str) -> (String, String) {
    let api: Api<Secret> = Api::namespaced(kube_client().await, NAMESPACE);
    let name = format!("phoenix-dataplane-{region}");
    let (api, name) = (&api, &name);
    eventually(&format!("secret {name}"), WITHIN, || async move {
        let data = api.get(name).await.ok()?.data?;
        let get = |k: &str| {
            data.get(k)
                .map(|v| String::from_utf8_lossy(&v.0).into_owned())
        };
        Some((get("username")?, get("password")?))
    })
    .await
}

/// A session on `server`'s `phoenix` as `user`, or why there is none.
pub async fn login(
    server: &PgServer,
    user: &str,
    password: &str,
) -> Result<tokio_postgres::Client, String> {
    let mut config = tokio_postgres::Config::new();
    config
        .host("127.0.0.1")
        .port(server.port)
        .user(user)
        .password(password)
        .dbname("phoenix")
        .connect_timeout(Duration::from_secs(5));
    let (client, conn) = config
        .connect(tokio_postgres::NoTls)
        .await
        .map_err(|e| format!("{e:?}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// Writes one patient of tenant `catalog_id` as the data plane does (under RLS, the tenant
/// set in the transaction); PostgreSQL's error when it refuses.
pub async fn write_patient(
    client: &tokio_postgres::Client,
    catalog_id: i64,
    family: &str,
) -> Result<(), String> {
    let sql = format!(
        "BEGIN; SELECT set_config('app.tenant_id', '{catalog_id}', true); \
         INSERT INTO clinical.patients (tenant_id, family_name, resource) \
         VALUES ({catalog_id}, '{family}', '{{\"resourceType\":\"Patient\"}}'::jsonb); COMMIT"
    );
    client.batch_execute(&sql).await.map_err(|e| {
        let db = e.as_db_error().map(|d| d.message().to_owned());
        db.unwrap_or_else(|| e.to_string())
    })
}

/// Waits for the first write `server` accepts as Region `region`'s data plane login for
/// tenant `catalog_id`; the time since `start`.
pub async fn first_write(
    region: &str,
    server: &PgServer,
    catalog_id: i64,
    start: Instant,
) -> Duration {
    let region = region.to_owned();
    eventually("the first write on the promoted server", WITHIN, || {
        let region = region.clone();
        async move {
            let (user, password) = dataplane_login(&region).await;
            let client = login(server, &user, &password).await.ok()?;
            write_patient(&client, catalog_id, "after-failover")
                .await
                .ok()?;
            Some(start.elapsed())
        }
    })
    .await
}

/// Forgets the scenario Regions' lineage claims when made (a failed earlier run's) and when
/// dropped (also while a failed test unwinds), so no claim outlives its test.
pub struct ForgetClaims(Vec<String>);

impl ForgetClaims {
    pub fn new(regions: &[String]) -> Self {
        forget_claims(regions);
        Self(regions.to_vec())
    }
}

impl Drop for ForgetClaims {
    fn drop(&mut self) {
        forget_claims(&self.0);
    }
}

/// Removes the lineage claims the operator created for the scenario's Regions.
pub fn forget_claims(regions: &[String]) {
    let selector = format!(
        "phoenixguardian.io/lineage-claim=true,phoenixguardian.io/region in ({})",
        regions.join(",")
    );
    let _ = crate::try_kubectl(
        &["-n", NAMESPACE, "delete", "secret", "-l", &selector],
        None,
    );
}
