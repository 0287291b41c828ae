//! Login attempts and sessions in the tenant's rows of `clinical.login_attempts` and
//! `clinical.sessions`, always through [`Database::tenant_tx`] (forced RLS: a tenant sees
//! only its own rows). States and session ids are stored and looked up only as SHA-256.
//!
//! Both go to the primary (`Access::Write`, `Access::Primary` for the read-only listing):
//! a session must be found right after the callback created it and refused right after it
//! was revoked, which a lagging replica could not promise.

use std::time::Duration;

use crate::auth::Identity;
use crate::db::Database;
use crate::db::tenant_tx::{Access, TxError};

/// How long sessions and login attempts live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionSettings {
    /// A session unused for this long ends.
    pub idle: Duration,
    /// A session ends this long after the login, however much it is used.
    pub absolute: Duration,
    /// A login must come back from the provider within this time.
    pub attempt: Duration,
}

impl Default for SessionSettings {
    fn default() -> Self {
        Self {
            idle: Duration::from_secs(30 * 60),
            absolute: Duration::from_secs(12 * 3600),
            attempt: Duration::from_secs(10 * 60),
        }
    }
}

// Seconds as PostgreSQL's float8 for make_interval.
fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// What the callback needs of a login attempt it consumed.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredAttempt {
    /// The PKCE verifier.
    pub code_verifier: String,
    /// The nonce the ID token must carry.
    pub nonce: String,
    /// The redirect URI sent with the authorization request (the exchange repeats it).
    pub redirect_uri: String,
    /// Where the user goes after login.
    pub return_to: String,
}

impl std::fmt::Debug for StoredAttempt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredAttempt")
            .field("return_to", &self.return_to)
            .finish_non_exhaustive()
    }
}

/// A live session as a request sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRecord {
    /// Who is logged in.
    pub identity: Identity,
    /// When the session ends at the latest (Unix seconds).
    pub expires_at: i64,
}

/// A session as an administrator sees it: never its id or hash.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SessionSummary {
    /// The user's subject.
    pub subject: String,
    /// The user's email.
    pub email: Option<String>,
    /// When the user logged in (RFC 3339).
    pub created: String,
    /// When the session was last used (RFC 3339).
    pub last_seen: String,
    /// When it ends at the latest (RFC 3339).
    pub expires: String,
}

fn rfc3339(seconds: i64) -> String {
    jiff::Timestamp::from_second(seconds)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// Records a login attempt; also drops the tenant's expired ones.
pub async fn store_attempt(
    db: &Database,
    tenant_id: i64,
    state_sha256: String,
    attempt: StoredAttempt,
    ttl: Duration,
) -> Result<(), TxError> {
    db.tenant_tx(Access::Write, tenant_id, move |tx| {
        Box::pin(async move {
            tx.execute(
                "DELETE FROM login_attempts WHERE tenant_id = $1 AND expires_at < now()",
                &[&tenant_id],
            )
            .await?;
            tx.execute(
                "INSERT INTO login_attempts
                     (tenant_id, state_sha256, code_verifier, nonce, redirect_uri, return_to, expires_at)
                 VALUES ($1, $2, $3, $4, $5, $6, now() + make_interval(secs => $7))",
                &[
                    &tenant_id,
                    &state_sha256,
                    &attempt.code_verifier,
                    &attempt.nonce,
                    &attempt.redirect_uri,
                    &attempt.return_to,
                    &secs(ttl),
                ],
            )
            .await?;
            Ok(())
        })
    })
    .await
}

/// Consumes the attempt of `state_sha256`: deleted whatever happens next, so a state
/// works once. `None` when this tenant has no such attempt or it has expired.
pub async fn take_attempt(
    db: &Database,
    tenant_id: i64,
    state_sha256: String,
) -> Result<Option<StoredAttempt>, TxError> {
    db.tenant_tx(Access::Write, tenant_id, move |tx| {
        Box::pin(async move {
            let row = tx
                .query_opt(
                    "DELETE FROM login_attempts WHERE tenant_id = $1 AND state_sha256 = $2
                     RETURNING code_verifier, nonce, redirect_uri, return_to, expires_at > now()",
                    &[&tenant_id, &state_sha256],
                )
                .await?;
            Ok(row.filter(|r| r.get::<_, bool>(4)).map(|r| StoredAttempt {
                code_verifier: r.get(0),
                nonce: r.get(1),
                redirect_uri: r.get(2),
                return_to: r.get(3),
            }))
        })
    })
    .await
}

/// How long ended sessions are kept (for `GET /admin/sessions` history and incident
/// review) before a new login of the tenant deletes them.
pub const ENDED_RETENTION_DAYS: i32 = 7;

/// Creates a session for `identity` under `id_sha256`; returns when it ends at the latest
/// (Unix seconds). Also deletes the tenant's sessions that ended more than
/// [`ENDED_RETENTION_DAYS`] ago.
pub async fn create(
    db: &Database,
    tenant_id: i64,
    id_sha256: String,
    identity: Identity,
    absolute: Duration,
) -> Result<i64, TxError> {
    db.tenant_tx(Access::Write, tenant_id, move |tx| {
        Box::pin(async move {
            tx.execute(
                "DELETE FROM sessions
                 WHERE tenant_id = $1
                   AND (expires_at < now() - make_interval(days => $2)
                        OR revoked_at < now() - make_interval(days => $2))",
                &[&tenant_id, &ENDED_RETENTION_DAYS],
            )
            .await?;
            let row = tx
                .query_one(
                    "INSERT INTO sessions
                         (tenant_id, id_sha256, subject, email, name, roles, expires_at)
                     VALUES ($1, $2, $3, $4, $5, $6, now() + make_interval(secs => $7))
                     RETURNING extract(epoch FROM expires_at)::bigint",
                    &[
                        &tenant_id,
                        &id_sha256,
                        &identity.subject,
                        &identity.email,
                        &identity.name,
                        &identity.roles,
                        &secs(absolute),
                    ],
                )
                .await?;
            Ok(row.get(0))
        })
    })
    .await
}

/// The live session of `id_sha256`: not revoked, not past its absolute end, used within
/// the idle timeout. Marks it used (at most once a minute, to spare the primary writes).
pub async fn lookup(
    db: &Database,
    tenant_id: i64,
    id_sha256: String,
    idle: Duration,
) -> Result<Option<SessionRecord>, TxError> {
    db.tenant_tx(Access::Write, tenant_id, move |tx| {
        Box::pin(async move {
            let Some(row) = tx
                .query_opt(
                    "SELECT subject, email, name, roles, extract(epoch FROM expires_at)::bigint,
                            last_seen_at < now() - interval '60 seconds'
                     FROM sessions
                     WHERE tenant_id = $1 AND id_sha256 = $2 AND revoked_at IS NULL
                       AND expires_at > now()
                       AND last_seen_at > now() - make_interval(secs => $3)",
                    &[&tenant_id, &id_sha256, &secs(idle)],
                )
                .await?
            else {
                return Ok(None);
            };
            if row.get::<_, bool>(5) {
                tx.execute(
                    "UPDATE sessions SET last_seen_at = now()
                     WHERE tenant_id = $1 AND id_sha256 = $2",
                    &[&tenant_id, &id_sha256],
                )
                .await?;
            }
            Ok(Some(SessionRecord {
                identity: Identity {
                    subject: row.get(0),
                    email: row.get(1),
                    name: row.get(2),
                    roles: row.get(3),
                },
                expires_at: row.get(4),
            }))
        })
    })
    .await
}

/// Revokes the session of `id_sha256`; whether a live one was revoked.
pub async fn revoke(db: &Database, tenant_id: i64, id_sha256: String) -> Result<bool, TxError> {
    db.tenant_tx(Access::Write, tenant_id, move |tx| {
        Box::pin(async move {
            let n = tx
                .execute(
                    "UPDATE sessions SET revoked_at = now()
                     WHERE tenant_id = $1 AND id_sha256 = $2 AND revoked_at IS NULL",
                    &[&tenant_id, &id_sha256],
                )
                .await?;
            Ok(n > 0)
        })
    })
    .await
}

/// Revokes every live session of `subject`; how many.
pub async fn revoke_subject(
    db: &Database,
    tenant_id: i64,
    subject: String,
) -> Result<u64, TxError> {
    db.tenant_tx(Access::Write, tenant_id, move |tx| {
        Box::pin(async move {
            tx.execute(
                "UPDATE sessions SET revoked_at = now()
                 WHERE tenant_id = $1 AND subject = $2 AND revoked_at IS NULL",
                &[&tenant_id, &subject],
            )
            .await
        })
    })
    .await
}

/// The tenant's live sessions, newest first (at most 1,000).
pub async fn list_active(
    db: &Database,
    tenant_id: i64,
    idle: Duration,
) -> Result<Vec<SessionSummary>, TxError> {
    db.tenant_tx(Access::Primary, tenant_id, move |tx| {
        Box::pin(async move {
            let rows = tx
                .query(
                    "SELECT subject, email, extract(epoch FROM created_at)::bigint,
                            extract(epoch FROM last_seen_at)::bigint,
                            extract(epoch FROM expires_at)::bigint
                     FROM sessions
                     WHERE tenant_id = $1 AND revoked_at IS NULL AND expires_at > now()
                       AND last_seen_at > now() - make_interval(secs => $2)
                     ORDER BY created_at DESC LIMIT 1000",
                    &[&tenant_id, &secs(idle)],
                )
                .await?;
            Ok(rows
                .iter()
                .map(|r| SessionSummary {
                    subject: r.get(0),
                    email: r.get(1),
                    created: rfc3339(r.get(2)),
                    last_seen: rfc3339(r.get(3)),
                    expires: rfc3339(r.get(4)),
                })
                .collect())
        })
    })
    .await
}
