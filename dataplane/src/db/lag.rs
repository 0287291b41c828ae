//! The replica lag in `/metrics`, sampled every few seconds while a reader is configured:
//! in bytes (the writer's WAL insert position, the same kind of position a consistency
//! token is, minus the reader's replay position) and in seconds
//! (the age of the last replayed transaction while WAL is left to replay, else 0).

use std::time::Duration;

use super::Database;
use super::consistency::Lsn;
use crate::error::Report;

/// How often the lag is sampled.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(5);

/// The writer's position (read first, so a busy writer makes the lag look larger, never
/// smaller than it was).
const WRITER_SQL: &str = "SELECT pg_current_wal_insert_lsn()::text";
/// The reader's replay position and the age of what it replayed; a reader not in
/// recovery is a primary and does not lag.
const READER_SQL: &str = "SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text, \
     CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0::float8 \
          ELSE coalesce(extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8, 0) END";

/// One sample of the lag.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Lag {
    /// WAL the reader has yet to replay.
    pub bytes: u64,
    /// Age of the last replayed transaction while WAL is left to replay.
    pub seconds: f64,
}

/// Why a sample failed.
#[derive(Debug, thiserror::Error)]
pub enum LagError {
    /// No connection to the writer or the reader.
    #[error("no database connection")]
    Pool(#[from] deadpool_postgres::PoolError),
    /// A statement failed or answered something unexpected.
    #[error("reading WAL positions failed")]
    Query(#[from] tokio_postgres::Error),
    /// A position did not read as a WAL position.
    #[error("a WAL position did not read")]
    Position,
}

impl Database {
    /// Samples the lag now and sets the gauges; `None` without a reader.
    pub async fn sample_lag(&self) -> Result<Option<Lag>, LagError> {
        let Some(reader) = self.reader() else {
            return Ok(None);
        };
        let position = |text: Option<String>| {
            text.and_then(|t| t.parse::<Lsn>().ok())
                .ok_or(LagError::Position)
        };
        let writer = self.writer().get().await?;
        let written = position(writer.query_one(WRITER_SQL, &[]).await?.try_get(0)?)?;
        drop(writer);
        let reader = reader.get().await?;
        let row = reader.query_one(READER_SQL, &[]).await?;
        let lag = if row.try_get::<_, bool>(0)? {
            let replayed = position(row.try_get(1)?)?;
            Lag {
                bytes: written.as_u64().saturating_sub(replayed.as_u64()),
                seconds: row.try_get::<_, Option<f64>>(2)?.unwrap_or(0.0).max(0.0),
            }
        } else {
            Lag {
                bytes: 0,
                seconds: 0.0,
            }
        };
        self.metrics().lag(lag.bytes, lag.seconds);
        Ok(Some(lag))
    }

    /// Samples the lag every `every` until `stop` completes; a failed sample is counted
    /// and logged (once while it keeps failing) and the gauges keep their last value.
    pub async fn sample_lag_until(&self, every: Duration, stop: impl Future<Output = ()>) {
        if self.reader().is_none() {
            return;
        }
        let sampling = async {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut failing = false;
            loop {
                ticks.tick().await;
                match self.sample_lag().await {
                    Ok(_) => failing = false,
                    Err(error) => {
                        self.metrics().lag_sample_failed();
                        if !failing {
                            tracing::warn!(error = %Report(&error), "sampling the replica lag failed");
                        }
                        failing = true;
                    }
                }
            }
        };
        tokio::select! {
            () = sampling => {}
            () = stop => {}
        }
    }
}
