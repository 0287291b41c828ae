//! Metrics of the read/write split: reads by pool, fallbacks to the writer, waits for the
//! replica to replay a consistency token, and the replica's lag.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use crate::db::consistency::ReadPool;

/// Why a read ran on the writer although a reader is configured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fallback {
    /// The replica had not replayed the request's consistency token in time.
    Lagging,
    /// No reader connection could be had, or asking it how far it replayed failed.
    Unavailable,
}

impl Fallback {
    fn as_str(self) -> &'static str {
        match self {
            Self::Lagging => "lagging",
            Self::Unavailable => "unavailable",
        }
    }
}

/// How a read carrying a consistency token got its data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// The replica had replayed the token at the first look.
    Replayed,
    /// The replica replayed it while the read waited.
    Waited,
    /// The wait ran out (or the replica failed): the read went to the writer.
    FellBack,
}

impl Wait {
    fn as_str(self) -> &'static str {
        match self {
            Self::Replayed => "replayed",
            Self::Waited => "waited",
            Self::FellBack => "fell_back",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    pool: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

/// The read/write split's series; clones share them. A default instance is registered
/// nowhere (a `Database` before `AppState` wires it to the process's registry).
#[derive(Clone, Debug)]
pub struct ReadMetrics {
    reads: Family<PoolLabels, Counter>,
    fallbacks: Family<ReasonLabels, Counter>,
    consistency_reads: Family<OutcomeLabels, Counter>,
    consistency_wait: Histogram,
    lag_bytes: Gauge,
    lag_seconds: Gauge<f64, AtomicU64>,
    lag_sample_failures: Counter,
    pool_wait: Family<PoolLabels, Histogram, fn() -> Histogram>,
    pool_size: Family<PoolLabels, Gauge>,
    pool_available: Family<PoolLabels, Gauge>,
    pool_waiting: Family<PoolLabels, Gauge>,
}

fn pool_wait_histogram() -> Histogram {
    // 50 µs .. ~3 s: a warm pool hands out a connection in microseconds; the wait is
    // bounded by the pool's timeout.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
}

impl Default for ReadMetrics {
    fn default() -> Self {
        Self {
            reads: Family::default(),
            fallbacks: Family::default(),
            consistency_reads: Family::default(),
            // 0.5 ms .. ~1 s: the wait is bounded by READ_CONSISTENCY_WAIT_MS.
            consistency_wait: Histogram::new(exponential_buckets(0.000_5, 2.0, 12)),
            lag_bytes: Gauge::default(),
            lag_seconds: Gauge::default(),
            lag_sample_failures: Counter::default(),
            pool_wait: Family::new_with_constructor(pool_wait_histogram),
            pool_size: Family::default(),
            pool_available: Family::default(),
            pool_waiting: Family::default(),
        }
    }
}

impl ReadMetrics {
    /// New series, registered in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "dataplane_db_reads",
            "Read transactions (Access::Read), by the pool that served them",
            metrics.reads.clone(),
        );
        registry.register(
            "dataplane_db_read_fallbacks",
            "Reads served by the writer although a reader is configured, by reason \
             (lagging: the token was not replayed in time; unavailable: the reader failed)",
            metrics.fallbacks.clone(),
        );
        registry.register(
            "dataplane_consistency_reads",
            "Reads carrying X-Consistency-Token, by outcome (replayed, waited, fell_back)",
            metrics.consistency_reads.clone(),
        );
        registry.register_with_unit(
            "dataplane_consistency_wait",
            "Time a read carrying X-Consistency-Token waited for the replica",
            Unit::Seconds,
            metrics.consistency_wait.clone(),
        );
        registry.register_with_unit(
            "dataplane_replica_lag",
            "WAL the reader has yet to replay: the writer's position minus the reader's \
             replay position at the last sample",
            Unit::Bytes,
            metrics.lag_bytes.clone(),
        );
        registry.register_with_unit(
            "dataplane_replica_lag",
            "Age of the last transaction the reader replayed while it has WAL left to \
             replay (0 when it has replayed all it received), at the last sample",
            Unit::Seconds,
            metrics.lag_seconds.clone(),
        );
        registry.register(
            "dataplane_replica_lag_sample_failures",
            "Samples of the replica lag that failed (the gauges keep their last value)",
            metrics.lag_sample_failures.clone(),
        );
        registry.register_with_unit(
            "dataplane_pool_wait",
            "Time a request waited for a connection from a pool (writer, reader), \
             failed waits included",
            Unit::Seconds,
            metrics.pool_wait.clone(),
        );
        registry.register(
            "dataplane_pool_connections",
            "Connections a pool holds (idle and in use), at the last scrape",
            metrics.pool_size.clone(),
        );
        registry.register(
            "dataplane_pool_idle_connections",
            "Connections of a pool ready to be handed out, at the last scrape",
            metrics.pool_available.clone(),
        );
        registry.register(
            "dataplane_pool_waiters",
            "Requests waiting for a connection of a pool, at the last scrape",
            metrics.pool_waiting.clone(),
        );
        metrics
    }

    /// Counts a read served by `pool`.
    pub fn read(&self, pool: ReadPool) {
        self.reads
            .get_or_create(&PoolLabels {
                pool: pool.as_str(),
            })
            .inc();
    }

    /// Counts a read sent to the writer for `reason`.
    pub fn fallback(&self, reason: Fallback) {
        self.fallbacks
            .get_or_create(&ReasonLabels {
                reason: reason.as_str(),
            })
            .inc();
    }

    /// Counts a read that carried a token, and how long it waited.
    pub fn consistency(&self, outcome: Wait, waited: Duration) {
        self.consistency_reads
            .get_or_create(&OutcomeLabels {
                outcome: outcome.as_str(),
            })
            .inc();
        self.consistency_wait.observe(waited.as_secs_f64());
    }

    /// Sets the replica lag from a sample.
    pub fn lag(&self, bytes: u64, seconds: f64) {
        self.lag_bytes.set(i64::try_from(bytes).unwrap_or(i64::MAX));
        self.lag_seconds.set(seconds);
    }

    /// Records that a request waited `waited` for a connection of `pool`.
    pub fn pool_wait(&self, pool: ReadPool, waited: Duration) {
        self.pool_wait
            .get_or_create(&PoolLabels {
                pool: pool.as_str(),
            })
            .observe(waited.as_secs_f64());
    }

    /// Sets the gauges of `pool` from its status.
    pub fn pool_status(&self, pool: ReadPool, status: deadpool_postgres::Status) {
        let labels = PoolLabels {
            pool: pool.as_str(),
        };
        let gauge = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        self.pool_size
            .get_or_create(&labels)
            .set(gauge(status.size));
        self.pool_available
            .get_or_create(&labels)
            .set(gauge(status.available));
        self.pool_waiting
            .get_or_create(&labels)
            .set(gauge(status.waiting));
    }

    /// Counts a failed lag sample.
    pub fn lag_sample_failed(&self) {
        self.lag_sample_failures.inc();
    }
}
