//! The operator's PostgreSQL backends (`application_name` `phoenix-operator*`), sampled in
//! region databases every 100 ms: the peak at once per region, and the distinct backends
//! seen (pid + start time), which counts the connections the operator opened. A server
//! restarted during a run is sampled again from a new session once it is back.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::{pg_connect, stack_var, upper};

/// What the sampler saw, by region.
#[derive(Debug, Default, Clone)]
pub struct Seen {
    /// The most operator backends at once, by region.
    pub peak: BTreeMap<String, usize>,
    /// Every operator backend seen: (region, pid, backend_start).
    pub backends: HashSet<(String, i32, String)>,
    /// Samples taken (successful queries), by region.
    pub samples: BTreeMap<String, usize>,
}

impl Seen {
    /// Distinct backends seen in `region`.
    pub fn opened(&self, region: &str) -> usize {
        self.backends.iter().filter(|b| b.0 == region).count()
    }

    /// The peak in `region` (0 when never sampled).
    pub fn peak(&self, region: &str) -> usize {
        self.peak.get(region).copied().unwrap_or(0)
    }

    /// One line for a report.
    pub fn report(&self) -> String {
        let opened: BTreeMap<&str, usize> = self
            .peak
            .keys()
            .map(|r| (r.as_str(), self.opened(r)))
            .collect();
        format!(
            "peak at once {:?}, distinct backends seen {:?} (total {})",
            self.peak,
            opened,
            self.backends.len()
        )
    }
}

/// Samples the operator's backends in `regions` until dropped.
pub struct Sampler {
    seen: Arc<Mutex<Seen>>,
    task: tokio::task::JoinHandle<()>,
}

impl Sampler {
    /// Starts sampling `regions` (one admin session each, opened before this returns).
    pub async fn start(regions: &[&str]) -> Self {
        let mut clients = Vec::new();
        for r in regions {
            clients.push(((*r).to_owned(), crate::pg(r).await));
        }
        let seen = Arc::new(Mutex::new(Seen::default()));
        let task = tokio::spawn(sample(clients, seen.clone()));
        Self { seen, task }
    }

    /// What was seen so far.
    pub fn seen(&self) -> Seen {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// What was seen so far; starts again from nothing.
    pub fn take(&self) -> Seen {
        std::mem::take(&mut *self.seen.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn sample(mut clients: Vec<(String, tokio_postgres::Client)>, seen: Arc<Mutex<Seen>>) {
    loop {
        for (r, c) in &mut clients {
            let rows = match c
                .query(
                    "SELECT pid, backend_start::text FROM pg_stat_activity
                     WHERE application_name LIKE 'phoenix-operator%'",
                    &[],
                )
                .await
            {
                Ok(rows) => Some(rows),
                Err(_) => {
                    // The server restarted: sample again from a new session once it
                    // accepts one.
                    if let Ok(fresh) =
                        pg_connect(&stack_var(&format!("PG_ADMIN_DSN_{}", upper(r)))).await
                    {
                        *c = fresh;
                    }
                    None
                }
            };
            let Some(rows) = rows else { continue };
            let mut s = seen.lock().unwrap_or_else(|p| p.into_inner());
            *s.samples.entry(r.clone()).or_default() += 1;
            let peak = s.peak.entry(r.clone()).or_default();
            *peak = (*peak).max(rows.len());
            for row in rows {
                s.backends.insert((r.clone(), row.get(0), row.get(1)));
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
