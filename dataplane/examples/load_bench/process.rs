//! The release data plane as a process of its own, and its resident memory.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::process::{Child, Command};

use super::support::{self, TestDb};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// The release data plane as a process of its own.
pub struct Dataplane {
    child: Child,
    pub pid: u32,
    pub port: u16,
}

impl Dataplane {
    pub async fn start(bin: &Path, db: &TestDb, work: &Path) -> Self {
        let (port, admin) = (free_port(), free_port());
        let log = std::fs::File::create(work.join("dataplane.log")).expect("log file");
        let mut command = Command::new(bin);
        // `DATAPLANE_WORKERS=<n>`: the data plane's tokio workers (as a CPU limit would
        // set them), without changing this process's.
        if let Ok(workers) = std::env::var("DATAPLANE_WORKERS") {
            command.env("TOKIO_WORKER_THREADS", workers);
        }
        let child = command
            .env("DATABASE_URL", db.dataplane_url())
            .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
            .env("ADMIN_LISTEN_ADDR", format!("127.0.0.1:{admin}"))
            .env("REGION", "us-east-1")
            .env("PUBLIC_SCHEME", "http")
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
        let pid = child.id().expect("the data plane's pid");
        let http = support::http();
        let ready = format!("http://127.0.0.1:{port}/readyz");
        support::eventually("the data plane is ready", Duration::from_secs(60), || {
            let (http, ready) = (&http, &ready);
            async move {
                match http.get(ready).send().await {
                    Ok(r) if r.status().is_success() => Ok(()),
                    Ok(r) => Err(format!("readyz {}", r.status())),
                    Err(e) => Err(e.to_string()),
                }
            }
        })
        .await;
        eprintln!(
            "data plane pid {pid} on 127.0.0.1:{port}, log {}",
            work.join("dataplane.log").display()
        );
        Self { child, pid, port }
    }

    /// Peak resident memory of the process so far.
    pub fn hwm_mib(&self) -> f64 {
        status_kib(self.pid, "VmHWM:").unwrap_or(0) as f64 / 1024.0
    }
}

impl Drop for Dataplane {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The largest VmRSS seen since the last reset, sampled every 100 ms.
#[derive(Clone)]
pub struct RssSampler(Arc<AtomicU64>);

impl RssSampler {
    pub fn start(pid: u32) -> Self {
        let max = Arc::new(AtomicU64::new(0));
        let seen = max.clone();
        tokio::spawn(async move {
            loop {
                if let Some(kib) = status_kib(pid, "VmRSS:") {
                    seen.fetch_max(kib, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        Self(max)
    }

    pub fn reset(&self) {
        self.0.store(0, Ordering::Relaxed);
    }

    pub fn max_mib(&self) -> f64 {
        self.0.load(Ordering::Relaxed) as f64 / 1024.0
    }
}
