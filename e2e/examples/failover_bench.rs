//! Benchmark: the time from a Region's role flip (`Replica` -> `Primary`, one merge patch
//! through the apiserver) to the first write the promoted server accepts as that Region's
//! data plane login (ADR 0011). Each run starts a primary and a streaming standby of its
//! own (never the stack's replica), declares them as Regions with one tenant, waits for
//! everything to be Ready and the standby caught up, flips, and polls the write every
//! 250 ms. Against the running stack (`source .stack/env`); prints each run, the median and
//! the maximum. A measurement, not an assertion.
//!
//! With `--rds` the two servers stand in for RDS instances (ADR 0014,
//! `phoenix_e2e::rds_failover`): an RDS source Region and an RDS Replica Region (a
//! cross-region read replica in moto), reached through the endpoint map (one operator per
//! run: the map names that run's servers); the flip is promoted with `PromoteReadReplica`.
//!
//! ```sh
//! cargo build -p phoenix-operator --bin phoenix-operator
//! cargo run -p phoenix-e2e --example failover_bench -- [RUNS] [--rds]
//! ```

use std::time::Duration;

use phoenix_e2e::failover::*;
use phoenix_e2e::guard::ScenarioGuard;
use phoenix_e2e::pg_lineage::PgLineage;
use phoenix_e2e::rds_failover::RdsScenario;
use phoenix_e2e::scenario::is_ready;
use phoenix_e2e::*;

const RESIDENCY: &str = "FOB";

async fn run(i: usize, on_rds: bool) -> Duration {
    let prefix = format!("fb{i}");
    let (old, replicas) = names(&prefix, 1);
    let (lineage, scenario, _operator) = if on_rds {
        let lineage = PgLineage::start_tls(&format!("failover-bench-{i}"), 1).await;
        let scenario = RdsScenario::new(&lineage, &prefix);
        scenario.prepare_master(&lineage).await;
        let operator = Process::operator_with(
            "bench-operator",
            300,
            &[
                ("PHOENIX_RDS_ENDPOINT_MAP", scenario.endpoint_map.as_str()),
                ("REGION_RESYNC_SECONDS", "60"),
            ],
        )
        .await;
        (lineage, Some(scenario), Some(operator))
    } else {
        let lineage = PgLineage::start(&format!("failover-bench-{i}"), 1).await;
        (lineage, None, None)
    };
    let guard = ScenarioGuard::new("failover-bench");
    match &scenario {
        Some(s) => s.declare(&guard, RESIDENCY),
        None => declare_regions(&guard, &lineage, &prefix, RESIDENCY),
    }
    regions_ready(&old, &replicas).await;
    let tenant = declare_tenants(&guard, &prefix, RESIDENCY, 1).remove(0);
    let t = tenant_where(&tenant, "Ready", is_ready).await;
    let catalog_id = t
        .status
        .and_then(|s| s.endpoints)
        .expect("endpoints")
        .catalog_id;
    lineage.caught_up().await;
    let start = flip(&replicas);
    let elapsed = first_write(&replicas[0], &lineage.standbys[0], catalog_id, start).await;
    drop(guard);
    forget_claims(&replicas);
    if let Some(s) = &scenario {
        s.forget_secrets();
    }
    elapsed
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let on_rds = args.iter().any(|a| a == "--rds");
    let runs: usize = args.iter().find_map(|a| a.parse().ok()).unwrap_or(5);
    install_platform();
    // RDS runs start an operator each (the endpoint map names that run's servers).
    let _operator = if on_rds {
        None
    } else {
        Some(
            Process::operator_with("bench-operator", 300, &[("REGION_RESYNC_SECONDS", "60")]).await,
        )
    };
    let mut times = Vec::new();
    for i in 0..runs {
        let t = run(i, on_rds).await;
        println!("run {}: {:.3}s", i + 1, t.as_secs_f64());
        times.push(t);
    }
    times.sort();
    let median = times[times.len() / 2];
    let max = times[times.len() - 1];
    println!(
        "failover{}, spec change to first accepted write: {runs} runs, median {:.3}s, max {:.3}s",
        if on_rds { " (RDS Regions)" } else { "" },
        median.as_secs_f64(),
        max.as_secs_f64()
    );
}
