//! Replication health of a standby, and WAL positions (LSNs).

use std::fmt;

use tokio_postgres::Client;

use super::{DbError, col};

/// A WAL position (PostgreSQL's `pg_lsn`), as a byte offset.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Lsn(pub u64);

impl Lsn {
    /// Parses PostgreSQL's text form `X/Y` (two hexadecimal halves).
    pub fn parse(text: &str) -> Option<Lsn> {
        let (high, low) = text.split_once('/')?;
        let high = u32::from_str_radix(high, 16).ok()?;
        let low = u32::from_str_radix(low, 16).ok()?;
        Some(Lsn((u64::from(high) << 32) | u64::from(low)))
    }

    /// Bytes from `self` ahead to `later`; 0 when `later` is not ahead.
    pub fn bytes_to(self, later: Lsn) -> u64 {
        later.0.saturating_sub(self.0)
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

/// Where a streaming standby is.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Replay {
    /// Seconds behind: 0 when it has replayed all it received, else the age of the last
    /// replayed transaction.
    pub lag_seconds: f64,
    /// The last WAL position replayed.
    pub replayed: Lsn,
}

fn lsn(text: Option<String>, what: &'static str) -> Result<Lsn, DbError> {
    let text = text.unwrap_or_default();
    Lsn::parse(&text).ok_or_else(|| DbError::Query {
        context: what,
        reason: format!("PostgreSQL answered {text:?}, not an LSN"),
    })
}

/// The writer's current WAL position (`pg_current_wal_lsn()`).
pub async fn wal_position(client: &Client) -> Result<Lsn, DbError> {
    let row = client
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .map_err(DbError::query("reading the writer's WAL position"))?;
    lsn(col(&row, 0)?, "reading the writer's WAL position")
}

/// Where this (standby) database is; `None` on a primary. A standby whose WAL receiver
/// is not streaming is an error: it would otherwise look caught up with what it last
/// received, however long ago.
pub async fn replay(client: &Client) -> Result<Option<Replay>, DbError> {
    let row = client
        .query_one(
            "SELECT pg_is_in_recovery(),
                    coalesce((SELECT status FROM pg_stat_wal_receiver LIMIT 1), 'stopped'),
                    CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0::float8
                         ELSE round(extract(epoch FROM now() - pg_last_xact_replay_timestamp()))::float8 END,
                    pg_last_wal_replay_lsn()::text",
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
    let replayed = lsn(col(&row, 3)?, "measuring replication lag")?;
    if receiver != "streaming" {
        return Err(DbError::Query {
            context: "checking replication",
            reason: format!(
                "the standby's WAL receiver is {receiver}, not streaming from its primary"
            ),
        });
    }
    Ok(Some(Replay {
        lag_seconds: lag.unwrap_or(0.0),
        replayed,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsns_parse_print_and_measure_like_postgres() {
        let a = Lsn::parse("0/3000060").expect("lsn");
        let b = Lsn::parse("1/0").expect("lsn");
        assert_eq!(a, Lsn(0x0300_0060));
        assert_eq!(b, Lsn(1 << 32));
        assert_eq!(a.to_string(), "0/3000060");
        assert_eq!(
            Lsn::parse("16/B374D848").expect("lsn").to_string(),
            "16/B374D848"
        );
        // pg_wal_lsn_diff('1/0', '0/3000060')
        assert_eq!(a.bytes_to(b), (1 << 32) - 0x0300_0060);
        assert_eq!(
            b.bytes_to(a),
            0,
            "a reader ahead of the sample is not behind"
        );
        for bad in ["", "0", "0/", "/1", "x/1", "0/1/2", "100000000/0"] {
            assert_eq!(Lsn::parse(bad), None, "{bad:?}");
        }
    }
}
