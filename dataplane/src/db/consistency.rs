//! Read-your-writes across the writer and the reader pool: the consistency token a write
//! answers with, and what one request carries from its handler's transactions to its
//! response (see docs/adr/0005-consistency-token-is-the-commit-wal-position.md).
//!
//! The token is a WAL position of the region's primary, in PostgreSQL's `pg_lsn` text form
//! (`16/B374D848`). A write transaction reads `pg_current_wal_insert_lsn()` on its own
//! connection right after its COMMIT returned (both in one round trip): the insert position
//! has then passed the end of the commit record, whatever `synchronous_commit` says, so a
//! replica whose `pg_last_wal_replay_lsn()` reached the token has replayed the commit.
//!
//! [`RequestConsistency`] is request-scoped (a task-local set by the route layer
//! `routes::consistency`): [`crate::db::Database::tenant_tx`] reads the token a read must
//! wait for from it, and records there the commit position of a write and the pool a read
//! ran on. Handlers do nothing but say `Access::Read` or `Access::Write`.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

/// Request and response header carrying the consistency token.
pub const TOKEN_HEADER: &str = "x-consistency-token";
/// Response header naming the pool a read ran on (`reader` or `writer`).
pub const READ_POOL_HEADER: &str = "x-read-pool";

/// Size of a WAL page header (`SizeOfXLogShortPHD` on 64-bit builds).
const SHORT_PAGE_HEADER: u64 = 24;
/// Size of the header of a WAL segment's first page (`SizeOfXLogLongPHD`).
const LONG_PAGE_HEADER: u64 = 40;

/// A position in the primary's write-ahead log (PostgreSQL's `pg_lsn`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lsn(u64);

/// A consistency token that is not a WAL position `X/Y` (1–8 hex digits each).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("X-Consistency-Token must be a WAL position such as 16/B374D848, as a write returned it")]
pub struct InvalidToken;

impl Lsn {
    /// The start of the log: every replica has replayed it.
    pub const ZERO: Self = Self(0);

    /// The position `value` bytes into the log.
    pub const fn new(value: u64) -> Self {
        Self(value)
    }

    /// The position as a byte offset.
    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// The end position that `insert`, a WAL *insert* position read after a commit, stands
    /// for.
    ///
    /// `pg_current_wal_insert_lsn()` names a position at a page boundary as the first byte
    /// after the page header, while a replica reports the record that ended at that
    /// boundary as replayed up to the boundary itself. No record lies in a page header, so
    /// the boundary is the same point of the log; without this a token would, once in
    /// about a thousand commits, wait for the next record to be written before a replica
    /// could reach it. `block_size` and `segment_size` are the server's `wal_block_size`
    /// and `wal_segment_size` in bytes (the first page of a segment has the long header).
    pub fn commit_end(insert: Self, block_size: u64, segment_size: u64) -> Self {
        if block_size == 0 || segment_size == 0 {
            return insert;
        }
        let Self(at) = insert;
        let in_segment = at % segment_size;
        if in_segment == LONG_PAGE_HEADER {
            Self(at - LONG_PAGE_HEADER)
        } else if at % block_size == SHORT_PAGE_HEADER && in_segment != SHORT_PAGE_HEADER {
            Self(at - SHORT_PAGE_HEADER)
        } else {
            insert
        }
    }
}

impl FromStr for Lsn {
    type Err = InvalidToken;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (high, low) = text.split_once('/').ok_or(InvalidToken)?;
        let half = |part: &str| {
            let hex = !part.is_empty()
                && part.len() <= 8
                && part.bytes().all(|byte| byte.is_ascii_hexdigit());
            hex.then(|| u32::from_str_radix(part, 16).ok())
                .flatten()
                .ok_or(InvalidToken)
        };
        Ok(Self(u64::from(half(high)?) << 32 | u64::from(half(low)?)))
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

/// The pool a read ran on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ReadPool {
    /// The reader (replica) pool.
    Reader = 1,
    /// The writer (primary) pool: no reader configured, the reader could not be used, or
    /// it had not replayed the request's token in time.
    Writer = 2,
}

impl ReadPool {
    /// The label and header value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reader => "reader",
            Self::Writer => "writer",
        }
    }
}

tokio::task_local! {
    static REQUEST: Arc<RequestConsistency>;
}

/// What one request carries between its tenant transactions and its response: the token
/// its reads must see, the highest commit position of its writes and the pool its reads
/// ran on (the writer, if any read of it ran there).
#[derive(Debug, Default)]
pub struct RequestConsistency {
    token: Option<Lsn>,
    // 0: no write committed yet (no real commit ends at the start of the log).
    committed: AtomicU64,
    // 0: no read yet, else a `ReadPool` discriminant.
    served: AtomicU8,
}

impl RequestConsistency {
    /// The state of a request that carries `token` (or none).
    pub fn new(token: Option<Lsn>) -> Arc<Self> {
        Arc::new(Self {
            token,
            ..Self::default()
        })
    }

    /// Runs `work` (the rest of the request) with `self` as the current request's state.
    pub async fn scope<F: Future>(self: Arc<Self>, work: F) -> F::Output {
        REQUEST.scope(self, work).await
    }

    /// The state of the request being served, when it is in a [`RequestConsistency::scope`].
    pub fn current() -> Option<Arc<Self>> {
        REQUEST.try_with(Arc::clone).ok()
    }

    /// The token the request's reads must see.
    pub fn token(&self) -> Option<Lsn> {
        self.token
    }

    /// The token to answer with: where the request's last write committed.
    pub fn committed(&self) -> Option<Lsn> {
        match self.committed.load(Ordering::Acquire) {
            0 => None,
            at => Some(Lsn(at)),
        }
    }

    /// The pool the request's reads ran on; the writer when any of them ran there.
    pub fn served(&self) -> Option<ReadPool> {
        match self.served.load(Ordering::Acquire) {
            1 => Some(ReadPool::Reader),
            2 => Some(ReadPool::Writer),
            _ => None,
        }
    }

    /// Records a write that committed at `at`.
    pub fn record_commit(&self, at: Lsn) {
        self.committed.fetch_max(at.0, Ordering::AcqRel);
    }

    /// Records a read that ran on `pool`.
    pub fn record_read(&self, pool: ReadPool) {
        self.served.fetch_max(pool as u8, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_read_and_print_as_postgresql_writes_lsns() {
        let lsn: Lsn = "16/B374D848".parse().expect("valid");
        assert_eq!(lsn.as_u64(), 0x16_B374_D848);
        assert_eq!(lsn.to_string(), "16/B374D848");
        assert_eq!("0/0".parse::<Lsn>(), Ok(Lsn::ZERO));
        assert_eq!(
            "ffffffff/ffffffff".parse::<Lsn>().map(Lsn::as_u64),
            Ok(u64::MAX)
        );
        assert!("0/16B3748".parse::<Lsn>().expect("valid") < lsn);
    }

    #[test]
    fn anything_else_is_not_a_token() {
        for bad in [
            "",
            "16",
            "/1",
            "1/",
            "1/2/3",
            "G/0",
            "+1/0",
            "-1/0",
            " 1/0",
            "1/0 ",
            "123456789/0",
            "0/123456789",
            "１/0",
        ] {
            assert_eq!(bad.parse::<Lsn>(), Err(InvalidToken), "{bad:?}");
        }
    }

    #[test]
    fn an_insert_position_just_past_a_page_header_is_the_page_boundary() {
        const BLOCK: u64 = 8192;
        const SEGMENT: u64 = 16 * 1024 * 1024;
        let end = |at| Lsn::commit_end(Lsn::new(at), BLOCK, SEGMENT).as_u64();
        // Inside a page: the position itself.
        assert_eq!(end(SEGMENT + 3 * BLOCK + 200), SEGMENT + 3 * BLOCK + 200);
        // Right after a short page header: the boundary before it.
        assert_eq!(end(SEGMENT + 3 * BLOCK + 24), SEGMENT + 3 * BLOCK);
        // Right after the long header of a segment's first page.
        assert_eq!(end(2 * SEGMENT + 40), 2 * SEGMENT);
        // 40 bytes into any other page is inside a record, not a header.
        assert_eq!(end(SEGMENT + BLOCK + 40), SEGMENT + BLOCK + 40);
        // Unknown sizes change nothing.
        assert_eq!(
            Lsn::commit_end(Lsn::new(BLOCK + 24), 0, SEGMENT).as_u64(),
            BLOCK + 24
        );
    }

    #[tokio::test]
    async fn a_request_keeps_its_latest_commit_and_its_worst_pool() {
        assert!(RequestConsistency::current().is_none());
        let request = RequestConsistency::new(Some(Lsn::new(7)));
        let seen = request
            .clone()
            .scope(async {
                let current = RequestConsistency::current().expect("in scope");
                current.record_commit(Lsn::new(10));
                current.record_commit(Lsn::new(9));
                current.record_read(ReadPool::Writer);
                current.record_read(ReadPool::Reader);
                current.token()
            })
            .await;
        assert_eq!(seen, Some(Lsn::new(7)));
        assert_eq!(request.committed(), Some(Lsn::new(10)));
        assert_eq!(request.served(), Some(ReadPool::Writer));
        assert!(RequestConsistency::new(None).committed().is_none());
    }
}
