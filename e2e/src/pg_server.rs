//! The stack's PostgreSQL servers as processes (see `e2e/lib/pg.sh`): a region's primary
//! lives in `$STACK_DIR/pg/<region>/primary` and is run by `pg_ctl` as the `postgres`
//! system user when the stack runs as root (`as_pg`), as itself otherwise.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tokio_postgres::Client;

use crate::{pg_connect, stack_var, upper};

/// How long a restarted server may take to accept connections again.
pub const RESTART_TIMEOUT: Duration = Duration::from_secs(60);

/// The data directory of `region`'s primary.
pub fn primary_dir(region: &str) -> PathBuf {
    PathBuf::from(stack_var("STACK_DIR"))
        .join("pg")
        .join(region)
        .join("primary")
}

/// `pg_ctl` of the stack's PostgreSQL (`PG_BIN`, as e2e/lib/common.sh).
fn pg_ctl() -> PathBuf {
    PathBuf::from(
        std::env::var("PG_BIN").unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".to_owned()),
    )
    .join("pg_ctl")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Restarts `region`'s primary with `pg_ctl restart -m fast` (every session is ended, the
/// server shuts down cleanly and starts again) and waits until it accepts connections;
/// returns an admin session to the restarted server. Its log goes where the stack's does.
pub async fn restart_primary(region: &str) -> Client {
    let dir = primary_dir(region);
    assert!(
        dir.join("PG_VERSION").exists(),
        "no PostgreSQL data directory at {}: is the stack up?",
        dir.display()
    );
    let log = PathBuf::from(stack_var("STACK_DIR"))
        .join("logs")
        .join(format!("pg-{region}-primary.log"));
    let mut args: Vec<String> = ["restart", "-m", "fast", "-w", "-t", "60", "-D"]
        .map(str::to_owned)
        .to_vec();
    args.push(dir.display().to_string());
    args.push("-l".to_owned());
    args.push(log.display().to_string());
    let mut cmd = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(pg_ctl());
        c
    } else {
        Command::new(pg_ctl())
    };
    cmd.args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("pg_ctl task")
        .expect("pg_ctl runs");
    assert!(
        out.status.success(),
        "pg_ctl restart of the {region} primary failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    wait_accepting(region).await
}

/// Waits until `region`'s primary accepts an admin session; returns it.
pub async fn wait_accepting(region: &str) -> Client {
    let dsn = stack_var(&format!("PG_ADMIN_DSN_{}", upper(region)));
    let start = Instant::now();
    loop {
        let error = match pg_connect(&dsn).await {
            Ok(client) => match client.simple_query("SELECT 1").await {
                Ok(_) => return client,
                Err(e) => e.to_string(),
            },
            Err(e) => e,
        };
        assert!(
            start.elapsed() < RESTART_TIMEOUT,
            "the {region} primary does not accept connections {RESTART_TIMEOUT:?} after its restart: {error}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The standbys streaming from the primary `db` (`pg_stat_replication` rows in state
/// `streaming`).
pub async fn streaming_replicas(db: &Client) -> i64 {
    db.query_one(
        "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'",
        &[],
    )
    .await
    .map(|r| r.get(0))
    .unwrap_or(0)
}
