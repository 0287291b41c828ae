//! Measures how long a tenant the operator writes takes to be served by a running data
//! plane: from the operator's catalog write (`upsert_tenant`, on the primary) to the moment
//! the data plane's catalog resolves the tenant's host (checked every millisecond).
//!
//! ```text
//! source .stack/env
//! cargo run -p phoenix-dataplane --example catalog_propagation -- [primary|replica] [samples]
//! ```
//!
//! `primary` follows the primary (LISTEN/NOTIFY); `replica` follows the stack's hot
//! standby (polling replay every `FollowerSettings::poll_every`). Uses the tests' own
//! provisioning (a throwaway database provisioned by the operator's code, dropped at exit).

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use phoenix_dataplane::catalog::follower::FollowerSettings;
use support::{TestDb, eventually, start_dataplane_at};

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "primary".to_owned());
    let samples: usize = args
        .next()
        .map(|n| {
            n.parse()
                .unwrap_or_else(|_| panic!("samples must be a number, not {n}"))
        })
        .unwrap_or(50);

    let db = TestDb::create().await;
    let url = match mode.as_str() {
        "primary" => db.dataplane_url(),
        "replica" => db.replica_url(),
        other => panic!("mode is primary or replica, not {other}"),
    };
    let settings = FollowerSettings::default();
    let dataplane = start_dataplane_at(url, None, settings.clone()).await;
    eventually("the catalog loads", Duration::from_secs(30), || async {
        if dataplane.catalog().is_loaded() {
            Ok(())
        } else {
            Err("not loaded".to_owned())
        }
    })
    .await;

    let mut took = Vec::with_capacity(samples);
    for i in 0..samples {
        let host = format!("t{i}.bench.example.org");
        if mode == "replica" {
            // Writes right after a poll would all wait a full period: arrive at a random
            // phase of the poll, as real writes do.
            tokio::time::sleep(settings.poll_every.mul_f64(rand::random::<f64>())).await;
        }
        // The clock starts before the operator's write: upsert_tenant commits and then reads
        // the id back, and the notification may be handled before it returns.
        let started = Instant::now();
        db.insert_tenant(&format!("t{i}"), &host).await;
        while dataplane.catalog().get(&host).is_none() {
            if started.elapsed() > Duration::from_secs(30) {
                panic!("{host} not served within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        took.push(started.elapsed());
    }
    took.sort_unstable();
    let at = |q: f64| took[((took.len() - 1) as f64 * q).round() as usize];
    println!(
        "mode={mode} samples={samples} poll_every={:?} p50={:?} p95={:?} p99={:?} max={:?}",
        settings.poll_every,
        at(0.50),
        at(0.95),
        at(0.99),
        at(1.0),
    );
    if let Err(error) = dataplane.stop().await {
        eprintln!("stopping the data plane: {error}");
    }
}
