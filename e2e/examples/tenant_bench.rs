//! Benchmark: N Tenants (`deletionPolicy: Delete`; `Shared`, or every SCHEMA_EVERY-th one
//! `Schema`, or every DEDICATED_EVERY-th one `Dedicated`, which wins where both fall) over
//! the three example Regions
//! applied at once, until every one is `DatabaseReady`, then deleted until every one is
//! gone; against the running stack (`source .stack/env`). Meanwhile the operator's
//! PostgreSQL backends (`application_name` `phoenix-operator*`) are sampled in every
//! Region database every 100 ms: the peak at once per Region, and the distinct backends
//! seen (pid + start time), which counts the connections the operator opened (to the
//! Region database and to every `Dedicated` tenant's database on that server). A server
//! restarted during the run (by hand) is sampled again once it is back.
//!
//! ```sh
//! cargo run -p phoenix-e2e --example tenant_bench -- [TENANTS] [DB_MAX_CONNECTIONS] [SCHEMA_EVERY] [DEDICATED_EVERY]
//! cargo run -p phoenix-e2e --example tenant_bench -- 500 8
//! cargo run -p phoenix-e2e --example tenant_bench -- 500 8 10   # one tenant in ten Schema
//! cargo run -p phoenix-e2e --example tenant_bench -- 500 8 10 50   # and one in fifty Dedicated
//! ```

use std::time::{Duration, Instant};

use phoenix_e2e::backends::Sampler;
use phoenix_e2e::guard::ScenarioGuard;
use phoenix_e2e::scenario::tenants;
use phoenix_e2e::*;

const LABEL: &str = "tenant-bench";
const REGIONS: [&str; 3] = ["us-east-1", "eu-west-1", "ap-southeast-1"];

fn arg<T: std::str::FromStr>(n: usize, default: T) -> T {
    std::env::args()
        .nth(n)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let count: usize = arg(1, 500);
    let pool: usize = arg(2, 8);
    let schema_every: usize = arg(3, 0);
    let dedicated_every: usize = arg(4, 0);
    let isolation = |i: usize| {
        if dedicated_every > 0 && i.is_multiple_of(dedicated_every) {
            "Dedicated"
        } else if schema_every > 0 && i.is_multiple_of(schema_every) {
            "Schema"
        } else {
            "Shared"
        }
    };
    let schemas = (0..count).filter(|i| isolation(*i) == "Schema").count();
    let dedicated = (0..count).filter(|i| isolation(*i) == "Dedicated").count();
    println!(
        "{count} tenants: {} Shared, {schemas} Schema, {dedicated} Dedicated; operator pool {pool}",
        count - schemas - dedicated
    );
    install_platform();
    let pool_s = pool.to_string();
    let operator = Process::operator_with(
        "tenant-bench-operator",
        300,
        &[
            ("DB_MAX_CONNECTIONS", &pool_s),
            ("LEASE_SECONDS", "30"),
            ("LOG_FORMAT", "json"),
            // One debug line per round of Route53 changes (what closed it, its size).
            (
                "RUST_LOG",
                "warn,phoenix_operator=info,phoenix_operator::dns=debug",
            ),
        ],
    )
    .await;
    let guard = ScenarioGuard::new(LABEL);
    let residency = |i: usize| match i % 6 {
        0..=2 => "US",
        3 | 4 => "EU",
        _ => "APAC",
    };
    let manifest: String = (0..count)
        .map(|i| {
            format!(
                "---\napiVersion: phoenixguardian.io/v1alpha1\nkind: Tenant\nmetadata:\n  name: tbench-{i}\nspec:\n  displayName: bench {i}\n  dataResidency: [{}]\n  database:\n    isolation: {}\n    deletionPolicy: Delete\n  dns:\n    hostname: tbench-{i}.bench.phoenixguardian.test\n",
                residency(i),
                isolation(i)
            )
        })
        .collect();
    let labeled = guard.labeled(&manifest);
    let api = tenants().await;
    let params = kube::api::ListParams::default().labels(&format!("e2e-scenario={LABEL}"));

    let sampler = Sampler::start(&REGIONS).await;
    let started = Instant::now();
    kubectl_ok(&["apply", "-f", "-"], Some(&labeled));
    // kubectl sends one request per object: the last Tenant exists only from here.
    let applied = started.elapsed();
    let mut db_ready_at = None;
    loop {
        let list = api.list(&params).await.expect("list tenants");
        let db_ready = list
            .items
            .iter()
            .filter(|t| condition(t, "DatabaseReady").is_some_and(|c| c.0 == "True"))
            .count();
        let ready = list
            .items
            .iter()
            .filter(|t| condition(t, "Ready").is_some_and(|c| c.0 == "True"))
            .count();
        if db_ready == count && db_ready_at.is_none() {
            db_ready_at = Some(started.elapsed());
        }
        if db_ready == count && ready == count {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(1800),
            "{db_ready}/{count} DatabaseReady, {ready} Ready after 30 min"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let converged = started.elapsed();
    let create_seen = sampler.take();
    let failed = |log: &[serde_json::Value]| {
        log.iter()
            .filter(|l| {
                l["span"]["tenant"]
                    .as_str()
                    .is_some_and(|t| t.starts_with("tbench-"))
            })
            .filter(|l| l["message"] == "reconcile failed")
            .count()
    };
    let create_failures = failed(&operator.json_log());

    let deleting = Instant::now();
    kubectl_ok(
        &[
            "delete",
            "tenants",
            "-l",
            &format!("e2e-scenario={LABEL}"),
            "--wait=false",
        ],
        None,
    );
    let requested = deleting.elapsed();
    while !api.list(&params).await.expect("list").items.is_empty() {
        assert!(
            deleting.elapsed() < Duration::from_secs(1800),
            "deletion took over 30 min"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let deleted = deleting.elapsed();
    let delete_seen = sampler.seen();
    drop(sampler);
    // Work per deletion: cleanups run (one per tenant when none is repeated) and failed
    // reconciles (such as a finalizer removal finding the object gone).
    let log = operator.json_log();
    let ours = |l: &&serde_json::Value| {
        l["span"]["tenant"]
            .as_str()
            .is_some_and(|t| t.starts_with("tbench-"))
    };
    let cleanups = log
        .iter()
        .filter(ours)
        .filter(|l| l["message"] == "tenant cleaned up")
        .count();
    let failures = log
        .iter()
        .filter(ours)
        .filter(|l| l["message"] == "reconcile failed")
        .count();
    drop(guard);
    drop(operator);
    println!(
        "tenants={count} ({schemas} Schema, {dedicated} Dedicated), DB_MAX_CONNECTIONS={pool}\n\
         kubectl apply returned after {:.1} s; all DatabaseReady after {:.1} s, all Ready after {:.1} s; operator backends: {}\n\
         kubectl delete returned after {:.1} s; all deleted after {:.1} s; operator backends: {}\n\
         cleanups run {cleanups}, reconciles failed {failures} ({create_failures} of them before the deletion)",
        applied.as_secs_f64(),
        db_ready_at.unwrap_or(converged).as_secs_f64(),
        converged.as_secs_f64(),
        create_seen.report(),
        requested.as_secs_f64(),
        deleted.as_secs_f64(),
        delete_seen.report(),
    );
}
