//! PostgreSQL restarted during the reconcile of 50 tenants (issue 10, item 8): the
//! operator's one bounded pool per Region database reconnects, every tenant converges, and
//! nothing is duplicated or leaked.
//!
//! The region is us-east-1: the stack's main region, the one with a streaming replica, so
//! the restart also drops the replica's stream and the Region's reader pool, and both must
//! come back (eu-west-1 and ap-southeast-1 have no replica).

use std::collections::HashSet;
use std::time::Duration;

use kube::Api;
use phoenix_crds::Region;
use phoenix_e2e::backends::Sampler;
use phoenix_e2e::bulk::{Bulk, assert_no_leaked_roles, assert_no_leaked_secrets};
use phoenix_e2e::guard::ScenarioGuard;
use phoenix_e2e::pg_server::{restart_primary, streaming_replicas};
use phoenix_e2e::scenario::*;
use phoenix_e2e::*;

const TENANTS: Bulk = Bulk {
    prefix: "e2e-pgr",
    label: "pgr",
};
/// Tenants, in two waves: the first is DatabaseReady before the restart, the second is
/// caught mid-reconcile by it.
const COUNT: usize = 50;
const REGION: &str = "us-east-1";
/// The operator's pool size per Region database (`DB_MAX_CONNECTIONS`), far below COUNT.
const POOL: usize = 4;

fn is_db_ready(t: &phoenix_crds::Tenant) -> bool {
    condition(t, "DatabaseReady").is_some_and(|c| c.0 == "True")
}

fn region_condition(region: &Region, type_: &str) -> Option<String> {
    region
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.status.clone())
}

/// Operator sessions waiting on a lock of the catalog table.
async fn waiting_on_catalog(db: &tokio_postgres::Client) -> i64 {
    db.query_one(
        "SELECT count(*) FROM pg_stat_activity
         WHERE application_name = 'phoenix-operator' AND wait_event_type = 'Lock'
           AND query ILIKE '%catalog.tenants%'",
        &[],
    )
    .await
    .map(|r| r.get(0))
    .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_postgres_mid_reconcile_converges_without_duplicates_or_leaks() {
    let _serial = SERIAL.lock().await;
    install_platform();
    let pool = POOL.to_string();
    let operator = Process::operator_with(
        "e2e-operator",
        10,
        &[("DB_MAX_CONNECTIONS", &pool), ("LOG_FORMAT", "json")],
    )
    .await;
    let scenario = ScenarioGuard::new("pg-restart");
    let api = tenants().await;
    let regions: Api<Region> = Api::all(kube_client().await);
    let region_is = |type_: &'static str| {
        let regions = regions.clone();
        move || {
            let regions = regions.clone();
            async move {
                let r = regions.get(REGION).await.ok()?;
                (region_condition(&r, type_).as_deref() == Some("True")).then_some(())
            }
        }
    };
    eventually("us-east-1 Ready", READY_TIMEOUT, region_is("Ready")).await;
    let sampler = Sampler::start(&[REGION]).await;

    let half = COUNT / 2;
    scenario.apply(&TENANTS.manifest(0..half, |_| "US"));
    eventually(
        &format!("the first {half} tenants DatabaseReady"),
        READY_TIMEOUT,
        || async {
            let list = api.list(&TENANTS.params()).await.ok()?;
            (list.items.iter().filter(|t| is_db_ready(t)).count() == half).then_some(())
        },
    )
    .await;

    // An admin session holds the catalog table against writes, so the second wave's
    // reconciles are waiting inside PostgreSQL (mid-reconcile, on a pooled connection)
    // when the restart ends their sessions: on a machine of any speed, no race with the
    // reconciles finishing first. The operator's lock_timeout is 10 s; the restart comes
    // at once.
    let holder = pg(REGION).await;
    holder
        .batch_execute("BEGIN; LOCK TABLE catalog.tenants IN EXCLUSIVE MODE")
        .await
        .expect("lock the catalog");
    scenario.apply(&TENANTS.manifest(half..COUNT, |_| "US"));
    let observer = pg(REGION).await;
    eventually(
        "an operator session waiting on the held catalog",
        Duration::from_secs(30),
        || async { (waiting_on_catalog(&observer).await >= 1).then_some(()) },
    )
    .await;
    let at_restart = api.list(&TENANTS.params()).await.expect("list");
    let db_ready = at_restart.items.iter().filter(|t| is_db_ready(t)).count();
    let db = restart_primary(REGION).await;
    eprintln!("restarted the {REGION} primary with {db_ready}/{COUNT} tenants DatabaseReady");
    assert!(
        (half..COUNT).contains(&db_ready),
        "{db_ready}/{COUNT} DatabaseReady at the restart: the second wave was not in flight"
    );
    assert!(
        holder.is_closed() || holder.simple_query("SELECT 1").await.is_err(),
        "the lock holder's session survived the restart: the server did not restart"
    );
    drop((holder, observer));

    // Every tenant converges: the second wave's catalog rows can only be written over
    // connections the pool opens to the restarted server.
    eventually(
        &format!("all {COUNT} tenants DatabaseReady and Ready after the restart"),
        Duration::from_secs(240),
        || async {
            let list = api.list(&TENANTS.params()).await.ok()?;
            let done = list
                .items
                .iter()
                .filter(|t| is_db_ready(t) && is_ready(t))
                .count();
            (done == COUNT).then_some(())
        },
    )
    .await;
    // The Region's pool recovered, and so did the replica's stream and its reader pool.
    eventually(
        "us-east-1 Ready after the restart",
        READY_TIMEOUT,
        region_is("Ready"),
    )
    .await;
    eventually(
        "the us-east-1 replica streaming again",
        Duration::from_secs(60),
        || async { (streaming_replicas(&db).await >= 1).then_some(()) },
    )
    .await;
    eventually(
        "us-east-1 ReplicationHealthy after the restart",
        READY_TIMEOUT,
        region_is("ReplicationHealthy"),
    )
    .await;
    assert_eq!(
        operator.metric("phoenix_operator_leader").await,
        Some(1.0),
        "the operator no longer leads"
    );

    // The restart did hit reconciles: some of the second wave failed (Warning, retried).
    let hit: Vec<String> = (half..COUNT)
        .map(|i| TENANTS.name(i))
        .filter(|n| !retry_delays(&operator, "Tenant", n).is_empty())
        .collect();
    eprintln!("second-wave tenants whose reconcile failed at the restart: {hit:?}");
    assert!(
        !hit.is_empty(),
        "no reconcile of the second wave failed: the restart did not land mid-reconcile"
    );

    // The operator is connected to the new server, over its pool, never a connection per
    // tenant: its sessions there all started after the restart, and at no time did it hold
    // more than the pool size.
    let (now, fresh): (i64, i64) = {
        let row = db
            .query_one(
                "SELECT count(*), count(*) FILTER (WHERE backend_start >= pg_postmaster_start_time())
                 FROM pg_stat_activity WHERE application_name = 'phoenix-operator'",
                &[],
            )
            .await
            .expect("operator sessions");
        (row.get(0), row.get(1))
    };
    assert!(
        now >= 1,
        "the operator holds no session on the restarted server"
    );
    assert_eq!(now, fresh, "sessions from before the restart cannot exist");
    let seen = sampler.seen();
    eprintln!("operator backends in {REGION}: {}", seen.report());
    assert!(
        seen.samples.get(REGION).copied().unwrap_or(0) >= 20,
        "the sampler barely sampled: {seen:?}"
    );
    assert!(
        seen.peak(REGION) <= POOL,
        "the operator held {} sessions at once, more than its pool of {POOL}",
        seen.peak(REGION)
    );
    // One pool's worth before the restart, one after.
    assert!(
        seen.opened(REGION) <= 2 * POOL,
        "the operator opened {} sessions over the run, more than two pools of {POOL}: {}",
        seen.opened(REGION),
        seen.report()
    );

    // Nothing duplicated: one active row per tenant, by uid, in us-east-1 only.
    let list = api.list(&TENANTS.params()).await.expect("list");
    assert_eq!(list.items.len(), COUNT);
    let uids: HashSet<&str> = list
        .items
        .iter()
        .filter_map(|t| t.metadata.uid.as_deref())
        .collect();
    assert_eq!(uids.len(), COUNT);
    assert_eq!(TENANTS.assert_catalogs(&list.items, &REGIONS).await, COUNT);
    for region in REGIONS {
        assert_no_leaked_roles(region).await;
    }
    assert_no_leaked_secrets().await;

    // Nothing leaked: deleted, their rows are gone.
    kubectl_ok(
        &["delete", "tenant", "-l", "e2e=pgr", "--timeout=180s"],
        None,
    );
    for region in REGIONS {
        assert!(
            catalog_names(region, &TENANTS.like()).await.is_empty(),
            "tenants left in the {region} catalog after their deletion"
        );
    }
    drop(scenario);
}
