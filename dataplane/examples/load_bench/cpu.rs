//! Where a read's CPU goes: PostgreSQL, the data plane, the load generator, per read.
//!
//! Counted from `/proc` in clock ticks: the PostgreSQL server as its postmaster with every
//! child (those that exited during the window, such as pgbench's backends, are in the
//! postmaster's `cutime`/`cstime`), a running process by its own `utime`/`stime`, and a
//! load generator that this benchmark spawned and waited for (oha, pgbench) by this
//! process's children times. The streaming replica's replay is another server's and is not
//! counted.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use phoenix_dataplane::audit::{Action, AuditEntry, Requester};
use phoenix_dataplane::db::Database;
use phoenix_dataplane::db::audited_read::AuditedRead;
use phoenix_dataplane::db::tenant_tx::{Access, TxError};
use phoenix_dataplane::fhir::{patient, store};
use tokio_postgres::types::ToSql;

/// `/proc/<pid>/stat` fields after the command name: utime, stime, cutime, cstime (ticks).
fn times(pid: &str) -> Option<[u64; 4]> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let field = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    Some([field(11)?, field(12)?, field(13)?, field(14)?])
}

fn parent(pid: &str) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(1).map(str::to_owned)
}

/// Sets the CPU affinity of every thread of `pid`; a process that ended meanwhile (a
/// backend) is skipped.
fn taskset(cpus: &str, pid: &str) {
    let status = std::process::Command::new("taskset")
        .args(["-a", "-p", "-c", cpus, pid])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("taskset (util-linux)");
    if !status.success() && std::path::Path::new(&format!("/proc/{pid}")).exists() {
        panic!("taskset -a -p -c {cpus} {pid} failed");
    }
}

/// Microseconds per clock tick (`getconf CLK_TCK`).
fn tick_us() -> f64 {
    let out = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .expect("getconf CLK_TCK");
    let hz: f64 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("CLK_TCK is a number");
    1_000_000.0 / hz
}

/// CPU counters of the processes of one measurement.
pub struct Cpu {
    postmaster: String,
    dataplane: Option<u32>,
    tick_us: f64,
}

/// One snapshot of [`Cpu`]'s counters, in ticks.
#[derive(Clone, Copy)]
pub struct Sample {
    postgres: u64,
    dataplane: u64,
    this: u64,
    children: u64,
}

impl Cpu {
    /// The counters of the server whose backend `backend_pid` is, and of `dataplane`.
    pub fn new(backend_pid: i32, dataplane: Option<u32>) -> Self {
        let postmaster = parent(&backend_pid.to_string()).expect("the backend's postmaster");
        Self {
            postmaster,
            dataplane,
            tick_us: tick_us(),
        }
    }

    /// The PostgreSQL server's processes: the postmaster and its children (backends forked
    /// later inherit the postmaster's CPU affinity).
    fn server_pids(&self) -> Vec<String> {
        let mut pids = vec![self.postmaster.clone()];
        for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
            let pid = entry.file_name().to_string_lossy().into_owned();
            if pid.bytes().all(|b| b.is_ascii_digit())
                && parent(&pid).as_deref() == Some(&self.postmaster)
            {
                pids.push(pid);
            }
        }
        pids
    }

    /// Puts the PostgreSQL server on `server` CPUs and the data plane and this process (so
    /// the load generators it spawns) on `rest` (`taskset` lists, e.g. `0` and `1`).
    pub fn pin(&self, server: &str, rest: &str) {
        for pid in self.server_pids() {
            taskset(server, &pid);
        }
        if let Some(pid) = self.dataplane {
            taskset(rest, &pid.to_string());
        }
        taskset(rest, &std::process::id().to_string());
    }

    pub fn sample(&self) -> Sample {
        let mut postgres = times(&self.postmaster).map_or(0, |t| t.iter().sum());
        for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
            let pid = entry.file_name().to_string_lossy().into_owned();
            if pid.bytes().all(|b| b.is_ascii_digit())
                && parent(&pid).as_deref() == Some(&self.postmaster)
                && let Some(t) = times(&pid)
            {
                postgres += t[0] + t[1];
            }
        }
        let dataplane = self
            .dataplane
            .and_then(|pid| times(&pid.to_string()))
            .map_or(0, |t| t[0] + t[1]);
        let me = times("self").expect("/proc/self/stat");
        Sample {
            postgres,
            dataplane,
            this: me[0] + me[1],
            children: me[2] + me[3],
        }
    }

    /// Runs `work` between two samples, each taken once the processes have settled (a
    /// second apart from any run, so exited backends have been counted by their parent);
    /// also returns the run's wall time and its output.
    pub async fn around<T>(&self, work: impl Future<Output = T>) -> (Sample, Sample, f64, T) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let before = self.sample();
        let started = Instant::now();
        let out = work.await;
        let elapsed = started.elapsed().as_secs_f64();
        tokio::time::sleep(Duration::from_secs(1)).await;
        (before, self.sample(), elapsed, out)
    }

    /// `| label | reads/s | PostgreSQL | data plane | load generator |` between two samples,
    /// µs per read; `in_process` when the reads ran in this process (no data plane).
    pub fn row(
        &self,
        label: &str,
        reads: u64,
        seconds: f64,
        before: Sample,
        after: Sample,
        in_process: bool,
    ) -> String {
        let per = |ticks: u64| ticks as f64 * self.tick_us / reads.max(1) as f64;
        let (dataplane, generator) = if in_process {
            (
                per(after.this - before.this),
                "(in the data plane)".to_owned(),
            )
        } else {
            (
                per(after.dataplane - before.dataplane),
                format!("{:.0}", per(after.children - before.children)),
            )
        };
        format!(
            "| {label} | {:.0} | {:.0} | {} | {generator} |",
            reads as f64 / seconds,
            per(after.postgres - before.postgres),
            if self.dataplane.is_none() && !in_process {
                "—".to_owned()
            } else {
                format!("{dataplane:.0}")
            },
        )
    }
}

/// Patient reads through the data plane's own database code (`Database::audited_read` with
/// the statement the route sends), without HTTP, tokens or JSON: `clients` at a time, for
/// `seconds`. `pick` draws a tenant id and patient id. Returns the reads made.
pub async fn database_reads(
    database: Database,
    clients: usize,
    seconds: u64,
    pick: impl Fn() -> (i64, String) + Send + Sync + 'static,
) -> u64 {
    let done = Arc::new(AtomicU64::new(0));
    let pick = Arc::new(pick);
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
