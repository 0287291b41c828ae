//! A Region's readers against the stack's real streaming replica: with replay paused the
//! Region reports the reader's replay position frozen and the WAL it is behind the writer,
//! and once replay resumes the position moves on.

use std::time::Duration;

const WITHIN: Duration = Duration::from_secs(60);

use kube::Api;
use phoenix_crds::Region;
use phoenix_crds::region::ReaderStatus;
use phoenix_e2e::*;
use tokio_postgres::Client;

/// Resumes replay on the replica when dropped, so that a failing test never leaves it
/// paused for the suites after it.
struct ResumeReplay(String);

impl Drop for ResumeReplay {
    fn drop(&mut self) {
        let dsn = self.0.clone();
        let resumed = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let client = phoenix_catalog::connect::parse(&dsn)
                    .ok()?
                    .connect()
                    .await
                    .ok()?;
                client
                    .batch_execute("SELECT pg_wal_replay_resume()")
                    .await
                    .ok()
            })
        })
        .join();
        if !matches!(resumed, Ok(Some(()))) {
            eprintln!("could not resume replay on the replica: run SELECT pg_wal_replay_resume()");
        }
    }
}

async fn replica() -> (Client, ResumeReplay) {
    let dsn = stack_var("PG_REPLICA_DSN_US_EAST_1");
    let client = phoenix_catalog::connect::parse(&dsn)
        .expect("replica DSN")
        .connect()
        .await
        .expect("connect to the replica");
    (client, ResumeReplay(dsn))
}

async fn reader(regions: &Api<Region>) -> Option<ReaderStatus> {
    regions
        .get("us-east-1")
        .await
        .ok()?
        .status?
        .readers
        .into_iter()
        .next()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_reader_reports_its_frozen_position_and_the_wal_it_is_behind() {
    let _serial = SERIAL.lock().await;
    install_platform();
    let _operator =
        Process::operator_with("e2e-operator", 3600, &[("REGION_RESYNC_SECONDS", "2")]).await;
    let regions: Api<Region> = Api::all(kube_client().await);
    eventually("us-east-1 reports a healthy reader", WITHIN, || async {
        reader(&regions).await.filter(|r| r.healthy)
    })
    .await;

    let (replica, _resume) = replica().await;
    replica
        .batch_execute("SELECT pg_wal_replay_pause()")
        .await
        .expect("pause replay");
    let paused_at: String = replica
        .query_one("SELECT pg_last_wal_replay_lsn()::text", &[])
        .await
        .expect("replay position")
        .get(0);
    // WAL the replica receives but does not replay.
    pg("us-east-1")
        .await
        .batch_execute("SELECT pg_logical_emit_message(false, 'e2e', repeat('x', 100000))")
        .await
        .expect("write WAL on the primary");

    let behind = eventually(
        "us-east-1 reports its reader frozen and behind",
        WITHIN,
        || async {
            reader(&regions)
                .await
                .filter(|r| r.replay_lsn.as_deref() == Some(paused_at.as_str()))
                .filter(|r| r.lag_bytes.is_some_and(|b| b >= 100_000))
        },
    )
    .await;
    assert!(behind.healthy, "a paused standby still streams: {behind:?}");

    replica
        .batch_execute("SELECT pg_wal_replay_resume()")
        .await
        .expect("resume replay");
    eventually("us-east-1 reports its reader moving on", WITHIN, || async {
        reader(&regions)
            .await
            .filter(|r| r.replay_lsn.as_deref() != Some(paused_at.as_str()))
            .filter(|r| r.lag_bytes.is_some_and(|b| b < 100_000))
    })
    .await;
    // Published to the catalog for the data plane the whole time, healthy.
    let healthy: bool = pg("us-east-1")
        .await
        .query_one("SELECT healthy FROM catalog.readers WHERE ordinal = 0", &[])
        .await
        .expect("catalog.readers")
        .get(0);
    assert!(healthy);
}
