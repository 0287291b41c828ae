//! Replication health of a standby.

use tokio_postgres::Client;

use super::{DbError, col};

/// Replay lag of this (standby) database in whole seconds: 0 when it has replayed all it
/// received, else the age of the last replayed transaction. None on a primary. A standby
/// whose WAL receiver is not streaming is an error: it would otherwise look caught up with
/// what it last received, however long ago.
pub async fn replay_lag(client: &Client) -> Result<Option<f64>, DbError> {
    let row = client
        .query_one(
            "SELECT pg_is_in_recovery(),
                    coalesce((SELECT status FROM pg_stat_wal_receiver LIMIT 1), 'stopped'),
                    CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0::float8
                         ELSE round(extract(epoch FROM now() - pg_last_xact_replay_timestamp()))::float8 END",
            &[],
        )
        .await
        .map_err(DbError::query("measuring replication lag"))?;
    let standby: bool = col(&row, 0)?;
    let receiver: String = col(&row, 1)?;
    let lag: Option<f64> = col(&row, 2)?;
    if !standby {
        return Ok(None);
    }
    if receiver != "streaming" {
        return Err(DbError::Query {
            context: "checking replication",
            reason: format!(
                "the standby's WAL receiver is {receiver}, not streaming from its primary"
            ),
        });
    }
    Ok(Some(lag.unwrap_or(0.0)))
}
