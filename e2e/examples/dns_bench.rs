//! Benchmark: N Tenants over the three example Regions applied at once, until every one
//! is `DNSReady`, then deleted until every record is gone; against the running stack
//! (`source .stack/env`), with the operator's Route53 pacing and, optionally, the
//! throttling proxy in front of moto.
//!
//! ```sh
//! cargo run -p phoenix-e2e --example dns_bench -- [TENANTS] [REQUESTS_PER_SECOND] [THROTTLE_SHARE]
//! cargo run -p phoenix-e2e --example dns_bench -- 500 5 0.3
//! ```

use std::time::{Duration, Instant};

use phoenix_e2e::guard::ScenarioGuard;
use phoenix_e2e::route53::{self, Proxy};
use phoenix_e2e::scenario::tenants;
use phoenix_e2e::*;

const LABEL: &str = "dns-bench";

fn arg<T: std::str::FromStr>(n: usize, default: T) -> T {
    std::env::args()
        .nth(n)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

async fn changes(addr: &str, outcome: &str) -> f64 {
    route53::counter(
        addr,
        "phoenix_operator_route53_requests_total",
        &[
            "operation=\"ChangeResourceRecordSets\"",
            &format!("outcome=\"{outcome}\""),
        ],
    )
    .await
}

/// Changes applied so far (the sum of the batch-size histogram).
async fn applied_changes(operator: &Process) -> f64 {
    operator
        .metric("phoenix_operator_route53_batch_changes_sum")
        .await
        .unwrap_or(0.0)
}

#[tokio::main]
async fn main() {
    let count: usize = arg(1, 500);
    let rate: u32 = arg(2, 5);
    let share: f64 = arg(3, 0.0);
    install_platform();
    // Removes what an aborted run left (the operator below finishes their deletion).
    let proxy = if share > 0.0 {
        Some(Proxy::start(share).await)
    } else {
        None
    };
    let endpoint = proxy
        .as_ref()
        .map(|p| p.url.clone())
        .unwrap_or_else(|| stack_var("AWS_ENDPOINT_URL"));
    let rate_s = rate.to_string();
    let operator = Process::operator_with(
        "dns-bench-operator",
        300,
        &[
            ("AWS_ENDPOINT_URL", &endpoint),
            ("ROUTE53_REQUESTS_PER_SECOND", &rate_s),
            // A 500-tenant burst on a small machine can delay a renewal past the e2e
            // default of 5 s: the operator would exit on losing the lease.
            ("LEASE_SECONDS", "30"),
            ("LOG_FORMAT", "json"),
            // One debug line per round of Route53 changes (what closed it, its size).
            ("RUST_LOG", "warn,phoenix_operator::dns=debug"),
        ],
    )
    .await;
    let guard = ScenarioGuard::new(LABEL);
    // Residency in proportion to the Regions' capacity (300 US, 200 EU, 100 APAC).
    let residency = |i: usize| match i % 6 {
        0..=2 => "US",
        3 | 4 => "EU",
        _ => "APAC",
    };
    let manifest: String = (0..count)
        .map(|i| {
            format!(
                "---\napiVersion: phoenixguardian.io/v1alpha1\nkind: Tenant\nmetadata:\n  name: bench-{i}\nspec:\n  displayName: bench {i}\n  dataResidency: [{}]\n  database:\n    deletionPolicy: Delete\n  dns:\n    hostname: bench-{i}.bench.phoenixguardian.test\n",
                residency(i)
            )
        })
        .collect();
    let labeled = guard.labeled(&manifest);
    // Baselines: the guard may just have cleaned up an aborted run through this operator.
    let base_batches = changes(&operator.addr, "success").await;
    let base_failed = changes(&operator.addr, "error").await;
    let base_throttles = route53::counter(
        &operator.addr,
        "phoenix_operator_route53_throttles_total",
        &[],
    )
    .await;
    let base_requests = route53::counter(
        &operator.addr,
        "phoenix_operator_route53_requests_total",
        &[],
    )
    .await;
    let base_changes = applied_changes(&operator).await;
    let started = Instant::now();
    kubectl_ok(&["apply", "-f", "-"], Some(&labeled));
    let api = tenants().await;
    let params = kube::api::ListParams::default().labels(&format!("e2e-scenario={LABEL}"));
    loop {
        let list = api.list(&params).await.expect("list tenants");
        let ready = list
            .items
            .iter()
            .filter(|t| condition(t, "DNSReady").is_some_and(|c| c.0 == "True"))
            .count();
        if ready == count {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(1800),
            "{ready}/{count} DNSReady after 30 min"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let converged = started.elapsed();
    let all_batches = changes(&operator.addr, "success").await;
    let batches = all_batches - base_batches;
    let failed = changes(&operator.addr, "error").await - base_failed;
    let throttles = route53::counter(
        &operator.addr,
        "phoenix_operator_route53_throttles_total",
        &[],
    )
    .await
        - base_throttles;
    let all_requests = route53::counter(
        &operator.addr,
        "phoenix_operator_route53_requests_total",
        &[],
    )
    .await
        - base_requests;

    let sent_changes = applied_changes(&operator).await - base_changes;

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
    while !api.list(&params).await.expect("list").items.is_empty() {
        assert!(
            deleting.elapsed() < Duration::from_secs(1800),
            "deletion took over 30 min"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let deleted = deleting.elapsed();
    let delete_batches = changes(&operator.addr, "success").await - all_batches;
    let proxy_stats = match &proxy {
        Some(p) => p.stats().await.map(|s| s.to_string()).unwrap_or_default(),
        None => "no proxy".to_owned(),
    };
    drop(guard);
    println!(
        "tenants={count} rate={rate}/s throttle_share={share}\n\
         all DNSReady after {:.1} s: {sent_changes} changes, ChangeResourceRecordSets accepted {batches}, failed {failed}; \
         Route53 requests {all_requests} (throttled {throttles})\n\
         all deleted after {:.1} s: ChangeResourceRecordSets accepted {delete_batches}\n\
         proxy: {proxy_stats}",
        converged.as_secs_f64(),
        deleted.as_secs_f64()
    );
}
