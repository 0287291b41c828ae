//! Where a read's CPU goes: PostgreSQL, the data plane, the load generator, per read.
//!
//! Counted from `/proc` in clock ticks: the PostgreSQL server as its postmaster with every
//! child (those that exited during the window, such as pgbench's backends, are in the
//! postmaster's `cutime`/`cstime`), a running process by its own `utime`/`stime`, and a
//! load generator that this benchmark spawned and waited for (oha, pgbench) by this
//! process's children times. The streaming replica's replay is another server's and is not
//! counted. Of the server's CPU, its background processes' share (the checkpointer, the
//! background and WAL writers, the WAL sender, autovacuum) is sampled apart every 100 ms:
//! the work a read leaves behind, or that merely happened to run in the window.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

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

/// The children of `pid` now (`/proc/<pid>/task/<pid>/children`: the postmaster is one
/// thread).
fn children(pid: &str) -> Vec<String> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .map(|list| list.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default()
}

/// Whether a server process works for no client: everything but client backends (the
/// checkpointer, the background and WAL writers, WAL senders, autovacuum). A client
/// backend names its client's address in its title, `postgres: user db 127.0.0.1(port) …`;
/// a WAL sender does too, but it serves the replica, not a read.
fn is_background(pid: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|title| {
        let title = String::from_utf8_lossy(&title);
        title.contains("walsender") || !title.contains('(')
    })
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

/// What one run between two samples cost, and gave.
pub struct Measured<T> {
    before: Sample,
    after: Sample,
    /// Ticks the server's background processes spent in the window (within `postgres`).
    background: u64,
    /// Wall time of the run, in seconds.
    pub seconds: f64,
    pub out: T,
}

/// The server's background processes' CPU over a window, sampled every 100 ms by a thread
/// of its own (a process that exits between two samples loses at most 100 ms of it). The
/// exact total is the server's; this splits it.
struct Background {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<u64>,
}

impl Background {
    fn start(postmaster: String) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            // Ticks of each background process when first seen (0 when it started within
            // the window) and when last seen; client backends are looked at once.
            let mut seen: HashMap<String, (u64, u64)> = HashMap::new();
            let mut clients: HashSet<String> = HashSet::new();
            let mut first = true;
            loop {
                for pid in children(&postmaster) {
                    if clients.contains(&pid) {
                        continue;
                    }
                    let Some(t) = times(&pid) else { continue };
                    let ticks = t[0] + t[1];
                    if let Some(entry) = seen.get_mut(&pid) {
                        entry.1 = ticks;
                    } else if is_background(&pid) {
                        seen.insert(pid, (if first { ticks } else { 0 }, ticks));
                    } else {
                        clients.insert(pid);
                    }
                }
                first = false;
                if stopped.load(Ordering::Relaxed) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            seen.values()
                .map(|(from, to)| to.saturating_sub(*from))
                .sum()
        });
        Self { stop, thread }
    }

    fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("the background sampler")
    }
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

    /// Puts the PostgreSQL server on `server` CPUs and every other process of the machine
    /// on `rest` (`taskset` lists, e.g. `0` and `1`): the data plane and this process (so
    /// the load generators it spawns), and the stack around them (its streaming replica
    /// replaying the reads' audit entries, Keycloak, the API server). Backends forked
    /// later inherit the postmaster's affinity. Kernel threads (no command line) stay where
    /// they are, and a process that cannot be moved is left as it is.
    pub fn pin(&self, server: &str, rest: &str) {
        let ours = children(&self.postmaster);
        taskset(server, &self.postmaster);
        for pid in &ours {
            taskset(server, pid);
        }
        if let Some(pid) = self.dataplane {
            taskset(rest, &pid.to_string());
        }
        taskset(rest, &std::process::id().to_string());
        for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
            let pid = entry.file_name().to_string_lossy().into_owned();
            if pid.bytes().all(|b| b.is_ascii_digit())
                && std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| !c.is_empty())
                && pid != self.postmaster
                && !ours.contains(&pid)
            {
                let _ = std::process::Command::new("taskset")
                    .args(["-a", "-p", "-c", rest, &pid])
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .status();
            }
        }
    }

    fn sample(&self) -> Sample {
        let postgres = times(&self.postmaster).map_or(0, |t| t.iter().sum::<u64>())
            + children(&self.postmaster)
                .iter()
                .filter_map(|pid| times(pid))
                .map(|t| t[0] + t[1])
                .sum::<u64>();
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
    /// second apart from any run, so exited backends have been counted by their parent).
    pub async fn around<T>(&self, work: impl Future<Output = T>) -> Measured<T> {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let background = Background::start(self.postmaster.clone());
        let before = self.sample();
        let started = Instant::now();
        let out = work.await;
        let seconds = started.elapsed().as_secs_f64();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let after = self.sample();
        Measured {
            before,
            after,
            background: background.stop(),
            seconds,
            out,
        }
    }

    /// `| label | reads/s | PostgreSQL | of it, background | data plane | load generator |`
    /// for `reads` in `seconds` of a run, µs per read; `in_process` when the reads ran in
    /// this process (no data plane).
    pub fn row<T>(
        &self,
        label: &str,
        reads: u64,
        seconds: f64,
        run: &Measured<T>,
        in_process: bool,
    ) -> String {
        let (before, after) = (run.before, run.after);
        let per = |ticks: u64| ticks as f64 * self.tick_us / reads.max(1) as f64;
        let (dataplane, generator) = if in_process {
            (
                format!("{:.0}", per(after.this - before.this)),
                "(in the data plane)".to_owned(),
            )
        } else {
            (
                if self.dataplane.is_none() {
                    "—".to_owned()
                } else {
                    format!("{:.0}", per(after.dataplane - before.dataplane))
                },
                format!("{:.0}", per(after.children - before.children)),
            )
        };
        format!(
            "| {label} | {:.0} | {:.0} | {:.0} | {dataplane} | {generator} |",
            reads as f64 / seconds,
            per(after.postgres - before.postgres),
            per(run.background),
        )
    }
}

/// The header of [`Cpu::row`]'s table, with a first column of its own.
pub const TABLE: &str = "| round | path | reads/s | PostgreSQL µs/read | of it, background | \
                         data plane µs/read | load generator µs/read |\n|---|---|---|---|---|---|---|";
