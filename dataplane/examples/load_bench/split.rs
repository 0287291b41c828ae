//! Where a closed-loop read's CPU goes, three ways: through HTTP (oha against the data
//! plane), through the data plane's database code alone (in this process: no HTTP, token
//! or JSON), and as the pgbench script of the ceiling; in rounds, so that each round's
//! share of the ceiling compares runs a few seconds apart (a checkpoint or an autovacuum
//! falls in one round, not in one path).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use phoenix_dataplane::audit::{Action, AuditEntry, Requester};
use phoenix_dataplane::db::Database;
use phoenix_dataplane::db::audited_read::AuditedRead;
use phoenix_dataplane::db::tenant_tx::{Access, TxError};
use phoenix_dataplane::fhir::{patient, store};
use tokio_postgres::types::ToSql;

use super::Token;
use super::cpu::{self, Cpu};
use super::oha::Oha;
use super::pgbench::{Pgbench, read_scripts};
use super::process::Dataplane;
use super::support::TestDb;

/// What the three paths read, and with what.
pub struct Paths<'a> {
    pub db: &'a TestDb,
    pub dataplane: &'a Dataplane,
    pub oha: &'a Oha,
    /// oha's URL file of Patient reads.
    pub reads: &'a Path,
    pub token: &'a Token,
    pub pgbench: &'a Pgbench,
    /// Draws a tenant id and one of its patients' ids.
    pub pick: Arc<dyn Fn() -> (i64, String) + Send + Sync>,
    pub seconds: usize,
    pub rounds: usize,
}

/// Runs the three paths `rounds` times with every process on every core, then as many
/// times with the PostgreSQL server on core 0 and everything else on the other cores (the
/// database has the same CPU in every run, as when the data plane runs on machines of its
/// own), and prints each round and the median shares of the ceiling.
pub async fn cpu_split(paths: &Paths<'_>) {
    let backend: i32 = paths
        .db
        .admin()
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .expect("backend pid")
        .get(0);
    let cpu = Cpu::new(backend, Some(paths.dataplane.pid));
    let in_process = Cpu::new(backend, None);
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    let every = format!("0-{}", cpus - 1);
    for (heading, pinned) in [
        ("all processes share every core", false),
        (
            "PostgreSQL on core 0; the data plane and the load generators on the others",
            true,
        ),
    ] {
        if pinned {
            cpu.pin("0", &format!("1-{}", cpus - 1));
        }
        println!(
            "## CPU per read, closed loop, {heading} ({} s each, {} rounds)\n\n{}",
            paths.seconds,
            paths.rounds,
            cpu::TABLE
        );
        let mut shares = Vec::new();
        for round in 1..=paths.rounds {
            shares.push(one_round(paths, &cpu, &in_process, round).await);
        }
        let list = |pick: fn(&(f64, f64)) -> f64| {
            let mut all: Vec<f64> = shares.iter().map(pick).collect();
            let each = all
                .iter()
                .map(|s| format!("{s:.0} %"))
                .collect::<Vec<_>>()
                .join(", ");
            all.sort_by(f64::total_cmp);
            let mid = all.len() / 2;
            let median = if all.len().is_multiple_of(2) {
                f64::midpoint(all[mid - 1], all[mid])
            } else {
                all[mid]
            };
            format!("{each} (median {median:.0} %)")
        };
        println!(
            "\nOf the ceiling, round by round: HTTP reads {}; the database code alone {}.\n",
            list(|s| s.0),
            list(|s| s.1)
        );
    }
    cpu.pin(&every, &every);
}

/// One round of the three paths; returns the HTTP reads' and the database code's shares of
/// the round's ceiling, in percent.
async fn one_round(paths: &Paths<'_>, cpu: &Cpu, in_process: &Cpu, round: usize) -> (f64, f64) {
    let seconds = paths.seconds;
    // A token per round: Keycloak's live 5 minutes.
    let token = paths.token.get().await;
    let run = cpu
        .around(paths.oha.run(paths.reads, &token, None, 0, &[]))
        .await;
    let (reads, refused) = (run.out.ok(), run.out.requests() - run.out.ok());
    assert_eq!(refused, 0, "every HTTP read answers 2xx");
    let http = reads as f64 / run.seconds;
    let label = "HTTP: oha -c 50 → data plane (pool 16)";
    println!(
        "| {round} {}",
        cpu.row(label, reads, run.seconds, &run, false)
    );

    // The pool outlives the measurement: backends that exit while it is sampled could be
    // missed (they leave the children list before their parent has counted them).
    let database = paths.db.database(16);
    let reads = database_reads(database.clone(), 50, seconds as u64, paths.pick.clone());
    let run = in_process.around(reads).await;
    let alone = run.out as f64 / run.seconds;
    let label = "the data plane's database code alone (50 tasks, pool 16, no HTTP)";
    println!(
        "| {round} {}",
        in_process.row(label, run.out, run.seconds, &run, true)
    );
    drop(database);

    let search_path = "&options=-c%20search_path%3Dclinical";
    let url = format!("{}{search_path}", paths.db.dataplane_url());
    let (script, _, _) = read_scripts();
    let run = in_process
        .around(paths.pgbench.run("cpu", &script, &url))
        .await;
    let tps = run.out.0;
    let label = "pgbench, the ceiling's script (16 clients, pipelined)";
    let n = (tps * seconds as f64) as u64;
    println!(
        "| {round} {}",
        in_process.row(label, n, seconds as f64, &run, false)
    );
    (100.0 * http / tps, 100.0 * alone / tps)
}

/// Patient reads through the data plane's own database code (`Database::audited_read` with
/// the statement the route sends), without HTTP, tokens or JSON: `clients` at a time, for
/// `seconds`. `pick` draws a tenant id and patient id. Returns the reads made.
pub async fn database_reads(
    database: Database,
    clients: usize,
    seconds: u64,
    pick: Arc<dyn Fn() -> (i64, String) + Send + Sync>,
) -> u64 {
    let done = Arc::new(AtomicU64::new(0));
    let end = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (database, done, pick) = (database.clone(), done.clone(), pick.clone());
        tasks.push(tokio::spawn(async move {
            let kind = &patient::KIND;
            while Instant::now() < end {
                let (tenant_id, id) = pick();
                let requester = Requester {
                    tenant_id,
                    actor: "alice".to_owned(),
                    request_id: "load-bench".to_owned(),
                    source: Some("127.0.0.1".to_owned()),
                };
                let entry = AuditEntry::new(Action::Read, kind.resource_type).id(&id);
                let sql = store::read_sql(kind);
                let params: [&(dyn ToSql + Sync); 3] = [&tenant_id, &id, &kind.resource_type];
                let read = AuditedRead {
                    sql: &sql,
                    params: &params,
                    found: store::READ_FOUND,
                };
                let found = database
                    .audited_read(Access::Read, &requester, entry, read, |row| {
                        Ok::<_, ReadError>(matches!(store::lookup(row)?, store::Lookup::Found(..)))
                    })
                    .await
                    .unwrap_or_else(|ReadError(e)| panic!("a read through the database path: {e}"));
                assert!(found, "patient {id} of tenant {tenant_id} exists");
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for task in tasks {
        task.await.expect("a reading task");
    }
    done.load(Ordering::Relaxed)
}

/// A read's failure, as the audit trail counts it.
pub struct ReadError(TxError);

impl From<TxError> for ReadError {
    fn from(error: TxError) -> Self {
        Self(error)
    }
}

impl phoenix_dataplane::audit::Outcome for ReadError {
    fn status(&self) -> axum::http::StatusCode {
        axum::http::StatusCode::INTERNAL_SERVER_ERROR
    }
}
