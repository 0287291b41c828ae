//! Which connection a read runs on.
//!
//! A read goes to the reader pool when there is one, else to the writer. A read carrying a
//! consistency token first asks the reader connection it got how far it replayed
//! (`pg_last_wal_replay_lsn()`), and asks again, backing off from 1 ms to 16 ms, until
//! it reached the token or `READ_CONSISTENCY_WAIT_MS` ran out; then it reads on the
//! writer. A reader that gives no connection, or fails that question, sends the read to
//! the writer too: reads degrade to the primary, they do not fail with the replica.
//!
//! Where the reader pool comes from is a [`ReaderSource`]: the configured replica
//! (`DATABASE_READER_URL`, [`ConfiguredReader`]), else the Region's readers as the operator
//! publishes them to the catalog ([`super::catalog_readers::CatalogReaders`], wired in
//! with `Database::with_readers` at start).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use deadpool_postgres::{Object, Pool};

use super::Database;
use super::consistency::{Lsn, ReadPool};
use super::tenant_tx::TxError;
use crate::error::Report;
use crate::metrics::reads::{Fallback, Wait};

/// How far the server replayed; a server not in recovery (a primary, or a promoted
/// replica) is as far as its own log.
const REPLAYED_SQL: &str = "SELECT (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() \
     ELSE pg_current_wal_insert_lsn() END)::text";
/// First pause between two looks at the replay position; it doubles up to [`MAX_POLL`].
const FIRST_POLL: Duration = Duration::from_millis(1);
const MAX_POLL: Duration = Duration::from_millis(16);
/// At most one warning about a failing reader per this many seconds (the metric counts
/// them all).
const WARN_EVERY_SECS: u64 = 10;

/// Where reads find the reader pool.
pub trait ReaderSource: Send + Sync + std::fmt::Debug + 'static {
    /// The pool the next read should use; `None` reads on the writer.
    fn reader(&self) -> Option<Pool>;
}

/// The reader configured at start (`DATABASE_READER_URL`), or none.
#[derive(Debug)]
pub struct ConfiguredReader {
    pool: Option<Pool>,
}

impl ConfiguredReader {
    /// Reads go to `pool`, or to the writer when it is `None`.
    pub fn new(pool: Option<Pool>) -> Self {
        Self { pool }
    }
}

impl ReaderSource for ConfiguredReader {
    fn reader(&self) -> Option<Pool> {
        self.pool.clone()
    }
}

/// Whether the reader replayed a token within the wait.
enum Replay {
    Reached(Duration),
    Behind,
}

impl Database {
    /// A connection for a read that must see `token` (when given), and the pool it is of.
    pub(super) async fn read_connection(
        &self,
        token: Option<Lsn>,
    ) -> Result<(Object, ReadPool), TxError> {
        let metrics = self.metrics();
        let Some(reader) = self.reader() else {
            metrics.read(ReadPool::Writer);
            return Ok((
                self.checkout(self.writer(), ReadPool::Writer).await?,
                ReadPool::Writer,
            ));
        };
        let started = Instant::now();
        let fallback = match self.checkout(&reader, ReadPool::Reader).await {
            Ok(client) => {
                let Some(token) = token else {
                    metrics.read(ReadPool::Reader);
                    return Ok((client, ReadPool::Reader));
                };
                match self.wait_for_replay(&client, token).await {
                    Ok(Replay::Reached(waited)) => {
                        let outcome = if waited.is_zero() {
                            Wait::Replayed
                        } else {
                            Wait::Waited
                        };
                        metrics.consistency(outcome, started.elapsed());
                        metrics.read(ReadPool::Reader);
                        return Ok((client, ReadPool::Reader));
                    }
                    Ok(Replay::Behind) => Fallback::Lagging,
                    Err(error) => {
                        warn_throttled(&error, "asking the reader how far it replayed failed");
                        Fallback::Unavailable
                    }
                }
            }
            Err(error) => {
                warn_throttled(&error, "no reader connection");
                Fallback::Unavailable
            }
        };
        if token.is_some() {
            metrics.consistency(Wait::FellBack, started.elapsed());
        }
        metrics.fallback(fallback);
        metrics.read(ReadPool::Writer);
        Ok((
            self.checkout(self.writer(), ReadPool::Writer).await?,
            ReadPool::Writer,
        ))
    }

    // Looks at the replay position of `client`'s server until it reached `token` or the
    // wait ran out. The connection is the one the read then uses, so the answer is about
    // the server that serves it even behind a load balancer.
    async fn wait_for_replay(
        &self,
        client: &Object,
        token: Lsn,
    ) -> Result<Replay, tokio_postgres::Error> {
        let started = Instant::now();
        let deadline = started + self.consistency_wait();
        let statement = client.prepare_cached(REPLAYED_SQL).await?;
        let mut pause = FIRST_POLL;
        let mut first = true;
        loop {
            let replayed = client
                .query_one(&statement, &[])
                .await?
                .try_get::<_, Option<String>>(0)?
                .and_then(|text| text.parse::<Lsn>().ok())
                .unwrap_or(Lsn::ZERO);
            if replayed >= token {
                let waited = if first {
                    Duration::ZERO
                } else {
                    started.elapsed()
                };
                return Ok(Replay::Reached(waited));
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(Replay::Behind);
            }
            first = false;
            tokio::time::sleep(pause.min(deadline - now)).await;
            pause = (pause * 2).min(MAX_POLL);
        }
    }
}

// A reader that is down fails every read's first step: say so in the log now and then,
// not on every request.
fn warn_throttled(error: &(dyn std::error::Error + 'static), what: &str) {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = jiff::Timestamp::now().as_second().unsigned_abs();
    let last = LAST.load(Ordering::Relaxed);
    if now.saturating_sub(last) >= WARN_EVERY_SECS
        && LAST
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        tracing::warn!(error = %Report(error), "{what}; reading on the writer");
    }
}
