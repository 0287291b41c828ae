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
use crate::scenario::is_ready;
use crate::{
    NAMESPACE, Process, condition, eventually, kube_client, kubectl_ok, secret_yaml, tenant_yaml,
};

/// How long a Region or Tenant may take to get where a step waits for it.
pub const WITHIN: Duration = Duration::from_secs(90);

/// The Region names of a scenario: `<prefix>-a` is the primary, the others its replicas.
pub fn names(prefix: &str, replicas: usize) -> (String, Vec<String>) {
    let replica = |i: usize| format!("{prefix}-{}", char::from(b'b' + i as u8));
    (format!("{prefix}-a"), (0..replicas).map(replica).collect())
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
    let mut manifest = secret_yaml(
        &format!("{primary}-db"),
        "dsn",
        &lineage.primary.dsn("phoenix"),
    );
    manifest.push_str(&region_yaml(&primary, residency, None));
    for (name, server) in replicas.iter().zip(&lineage.standbys) {
        manifest.push_str(&secret_yaml(
            &format!("{name}-db"),
            "dsn",
            &server.dsn("phoenix"),
        ));
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

/// Whether `region` has the `type_` condition False for `reason`.
pub fn region_failed(region: &Region, type_: &str, reason: &str) -> bool {
    region_condition(region, type_).is_some_and(|(s, why, _)| s == "False" && why == reason)
}

/// Whether `region` is Ready as a Replica of Region `primary`.
pub fn ready_replica_of(region: &Region, primary: &str) -> bool {
    region_ready(region)
        && region
            .status
            .as_ref()
            .and_then(|s| s.failover.as_ref())
            .is_some_and(|f| f.replica_of.as_deref() == Some(primary))
}

/// Waits for Region `primary` to be Ready, then for each of `replicas` to be Ready as a
/// Replica of it.
pub async fn regions_ready(primary: &str, replicas: &[String]) {
    region_where(primary, "Ready", region_ready).await;
    for r in replicas {
        region_where(r, "Ready as a replica of the primary", |reg| {
            ready_replica_of(reg, primary)
        })
        .await;
    }
}

/// The operator of a failover scenario: reconciling Regions every 2 s, with `extra`
/// environment.
pub async fn operator(extra: &[(&str, &str)]) -> Process {
    let mut env = extra.to_vec();
    env.push(("REGION_RESYNC_SECONDS", "2"));
    Process::operator_with("e2e-operator", 5, &env).await
}

/// Waits for each of `tenants` to be Ready with its home in Region `home`; their
/// statuses.
pub async fn tenants_ready_in(tenants: &[String], home: &str) -> Vec<phoenix_crds::TenantStatus> {
    let mut statuses = Vec::new();
    for t in tenants {
        let t = tenant_where(t, "Ready in the primary region", is_ready).await;
        let status = t.status.expect("status");
        assert_eq!(status.placement.as_ref().expect("placement").region, home);
        statuses.push(status);
    }
    statuses
}

/// Whether `client`'s server is in recovery (a standby).
pub async fn in_recovery(client: &tokio_postgres::Client) -> bool {
    client
        .query_one("SELECT pg_is_in_recovery()", &[])
        .await
        .expect("pg_is_in_recovery")
        .get(0)
}

/// The old primary's data plane before a failover: its login, and a session on `server`
/// that has written one patient (`before-failover`) of tenant `catalog_id`.
pub struct OldDataPlane {
    pub user: String,
    pub password: String,
    pub session: tokio_postgres::Client,
}

impl OldDataPlane {
    /// Logs in as Region `region`'s data plane on `server` and writes; the lineage caught up.
    pub async fn write_before_failover(region: &str, lineage: &PgLineage, catalog_id: i64) -> Self {
        let (user, password) = dataplane_login(region).await;
        let session = login(&lineage.primary, &user, &password)
            .await
            .expect("the old data plane logs in");
        write_patient(&session, catalog_id, "before-failover")
            .await
            .expect("a write before the failover");
        lineage.caught_up().await;
        Self {
            user,
            password,
            session,
        }
    }

    /// Asserts the old primary takes no write from it any more: its open session fails
    /// (for tenant `catalog_id`), and so does a new login.
    pub async fn assert_refused(&self, lineage: &PgLineage, catalog_id: i64) {
        let error = write_patient(&self.session, catalog_id, "split-brain")
            .await
            .expect_err("the old data plane's open session wrote on the old primary");
        assert!(
            error.contains("terminating connection")
                || error.contains("closed")
                || error.contains("read-only"),
            "{error}"
        );
        let error = login(&lineage.primary, &self.user, &self.password)
            .await
            .map(|_| ())
            .expect_err("the old data plane logged in again");
        assert!(error.contains("not permitted to log in"), "{error}");
    }
}

/// The outcome of flipping two Replicas of `old` at once: which one won.
pub struct Promotion {
    pub winner: String,
    pub winner_i: usize,
    pub loser: String,
    pub loser_i: usize,
}

/// Flips the two `replicas` of Region `old` at once and waits until exactly one is
/// promoted and its server out of recovery takes tenant `catalog_ids[1]`'s write as its
/// own data plane login (not `old_user`) and has tenant `catalog_ids[0]`'s write made
/// before the failover; prints the time from the flip to that write after `label`.
pub async fn promote_and_wait(
    label: &str,
    lineage: &PgLineage,
    old: &str,
    replicas: &[String],
    old_user: &str,
    catalog_ids: &[i64],
) -> Promotion {
    let start = flip(replicas);
    // Exactly one is promoted; the other names it and stays a standby.
    let winner = eventually("one replica promoted", WITHIN, || async {
        for r in replicas {
            let reg = region_where(r, "exists", |_| true).await;
            let f = reg.status.and_then(|s| s.failover).unwrap_or_default();
            if f.promoted_from.as_deref() == Some(old) {
                return Some(r.clone());
            }
        }
        None
    })
    .await;
    let winner_i = usize::from(winner != replicas[0]);
    let (loser_i, loser) = (1 - winner_i, replicas[1 - winner_i].clone());
    let elapsed = first_write(&winner, &lineage.standbys[winner_i], catalog_ids[1], start).await;
    println!("{label}: spec change to first accepted write {elapsed:?}");
    assert!(!in_recovery(&lineage.standbys[winner_i].admin().await).await);
    // The write before the failover was replicated and is there.
    let (user, password) = dataplane_login(&winner).await;
    assert_ne!(
        user, old_user,
        "the promoted region has a data plane login of its own"
    );
    let promoted = login(&lineage.standbys[winner_i], &user, &password)
        .await
        .expect("login on the promoted server");
    promoted
        .batch_execute(&format!(
            "SELECT set_config('app.tenant_id', '{}', false)",
            catalog_ids[0]
        ))
        .await
        .expect("set tenant");
    let before: i64 = promoted
        .query_one(
            "SELECT count(*) FROM clinical.patients WHERE family_name = 'before-failover'",
            &[],
        )
        .await
        .expect("read the replicated write")
        .get(0);
    assert_eq!(before, 1);
    Promotion {
        winner,
        winner_i,
        loser,
        loser_i,
    }
}

/// Waits for the losing Replica of `promotion` to be refused as a split brain naming the
/// winner, and asserts its server is still a standby (`what` says what was promoted if not).
pub async fn assert_loser_refused(lineage: &PgLineage, promotion: &Promotion, what: &str) {
    let refused = region_where(&promotion.loser, "refused as a split brain", |r| {
        region_failed(r, "Ready", "SplitBrainRefused")
    })
    .await;
    let (_, _, message) = region_condition(&refused, "Ready").expect("Ready");
    assert!(
        message.contains(&format!("region {} was already promoted", promotion.winner)),
        "{message}"
    );
    assert!(
        in_recovery(&lineage.standbys[promotion.loser_i].admin().await).await,
        "{what}"
    );
}

/// Waits for each of `tenants` to report Region `winner` as serving it, its DatabaseReady
/// condition True for `FailedOver`; the tenants and that condition's message.
pub async fn tenants_served_by(tenants: &[String], winner: &str) -> Vec<(Tenant, String)> {
    let mut served = Vec::new();
    for t in tenants {
        let t = tenant_where(t, "served by the promoted region", |t| {
            t.status.as_ref().and_then(|s| s.serving_region.as_deref()) == Some(winner)
        })
        .await;
        let (status, reason, message) = condition(&t, "DatabaseReady").expect("DatabaseReady");
        assert_eq!((status.as_str(), reason.as_str()), ("True", "FailedOver"));
        served.push((t, message));
    }
    served
}

/// Waits for Region `winner` to report Region `old`'s primary fenced and `old` to be
/// Superseded naming `winner`; the Superseded condition's message.
pub async fn old_primary_superseded(winner: &str, old: &str) -> String {
    region_where(winner, "old primary fenced", |r| {
        region_condition(r, "OldPrimaryFenced")
            .is_some_and(|(s, reason, _)| s == "True" && reason == "Fenced")
    })
    .await;
    let superseded = region_where(old, "Superseded", |r| {
        region_failed(r, "Ready", "Superseded")
    })
    .await;
    let (_, _, message) = region_condition(&superseded, "Ready").expect("Ready");
    assert!(
        message.contains(&format!("region {winner} was promoted")),
        "{message}"
    );
    message
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
