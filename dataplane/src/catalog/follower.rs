//! Keeps a [`Catalog`] current over a dedicated connection: it reloads on connect (healing
//! changes missed while disconnected), periodically as a safety net, and on every change.
//!
//! How it learns of a change depends on the server. A primary notifies: the follower
//! LISTENs on `catalog_tenants`. A hot standby refuses LISTEN (and replays the primary's
//! NOTIFYs to nobody), so there the follower polls `pg_last_wal_replay_lsn()` and reloads
//! only when replay has moved since it last looked.

use std::future::Future;
use std::pin::pin;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior, interval_at, sleep, timeout};
use tokio_postgres::{AsyncMessage, Client};

use super::readers::load_readers;
use super::{Catalog, CatalogError, load_scim_tokens, load_sso, load_tenants};
use crate::db::DbTarget;
use crate::error::Report;
use crate::metrics::Metrics;

/// The channel the operator's trigger notifies on every change to `catalog.tenants`.
pub const CHANNEL: &str = phoenix_catalog::NOTIFY_CHANNEL;

/// A session that lasted this long resets the reconnect backoff.
const STABLE_SESSION: Duration = Duration::from_secs(10);

/// Timings of the follower.
#[derive(Clone, Debug)]
pub struct FollowerSettings {
    /// Reload this often even without notifications.
    pub resync_every: Duration,
    /// Give up on a LISTEN or reload that takes longer (a silently dead connection).
    pub query_timeout: Duration,
    /// First wait before reconnecting.
    pub backoff_min: Duration,
    /// Longest wait before reconnecting.
    pub backoff_max: Duration,
    /// On a hot standby: how often to look whether replay moved (and so the catalog may
    /// have changed).
    pub poll_every: Duration,
}

impl Default for FollowerSettings {
    fn default() -> Self {
        Self {
            resync_every: Duration::from_secs(30),
            query_timeout: Duration::from_secs(10),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(30),
            poll_every: Duration::from_secs(2),
        }
    }
}

/// Why a follower session ended; it then reconnects.
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    /// Connecting failed.
    #[error("connecting to the catalog database failed")]
    Connect(#[source] tokio_postgres::Error),
    /// LISTEN failed.
    #[error("LISTEN {CHANNEL} failed")]
    Listen(#[source] tokio_postgres::Error),
    /// Asking whether the server is a standby, or how far it replayed, failed.
    #[error("reading the server's recovery state failed")]
    Recovery(#[source] tokio_postgres::Error),
    /// Reading the catalog failed.
    #[error(transparent)]
    Load(#[from] CatalogError),
    /// The standby was promoted: follow it as a primary from now on.
    #[error("the catalog database was promoted to primary; following it with LISTEN")]
    Promoted,
    /// The connection closed.
    #[error("the catalog connection closed")]
    Closed(#[source] Option<tokio_postgres::Error>),
    /// A statement took longer than the query timeout.
    #[error("the catalog database did not answer within {0:?}")]
    Timeout(Duration),
}

/// Follows `catalog.tenants` into a [`Catalog`].
#[derive(Debug)]
pub struct CatalogFollower {
    pg: DbTarget,
    catalog: Catalog,
    metrics: Metrics,
    settings: FollowerSettings,
}

impl CatalogFollower {
    /// A follower connecting with `pg` and filling `catalog`.
    pub fn new(pg: DbTarget, catalog: Catalog, metrics: Metrics) -> Self {
        Self {
            pg,
            catalog,
            metrics,
            settings: FollowerSettings::default(),
        }
    }

    /// Replaces the default timings.
    pub fn with_settings(mut self, settings: FollowerSettings) -> Self {
        self.settings = settings;
        self
    }

    /// Follows until `shutdown` completes; never gives up on the database.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let mut shutdown = pin!(shutdown);
        let (min, max) = (self.settings.backoff_min, self.settings.backoff_max);
        let mut backoff = reconnect_backoff(min, max);
        loop {
            let session_started = Instant::now();
            tokio::select! {
                biased;
                () = &mut shutdown => return,
                ended = self.follow() => match ended {
                    Err(error) => tracing::warn!(
                        error = %Report(&error),
                        "catalog follower lost the database; reconnecting"
                    ),
                },
            }
            // A session that lasted was a working one: start backing off afresh. One that
            // failed quickly (a flapping database) keeps growing the wait.
            if session_started.elapsed() >= STABLE_SESSION {
                backoff = reconnect_backoff(min, max);
            }
            let delay = backoff.next().unwrap_or(max);
            tokio::select! {
                biased;
                () = &mut shutdown => return,
                () = sleep(delay) => {}
            }
        }
    }

    // One session: connect, load, then reload on every change until something fails.
    async fn follow(&self) -> Result<std::convert::Infallible, FollowError> {
        let Session {
            client,
            mut changes,
            mut driver,
        } = self.connect().await?;
        let standby: bool = self
            .bounded(client.query_one("SELECT pg_is_in_recovery()", &[]))
            .await?
            .map_err(FollowError::Recovery)?
            .try_get(0)
            .map_err(FollowError::Recovery)?;
        // Read before loading: a change replayed in between is loaded now and seen as a
        // move at the next poll, which costs one extra reload, never a lost change.
        let mut replayed = if standby {
            self.replay_position(&client).await?
        } else {
            // Loaded after LISTEN: a change committed in between is both loaded and
            // notified, never lost.
            self.bounded(client.batch_execute(&format!("LISTEN {CHANNEL}")))
                .await?
                .map_err(FollowError::Listen)?;
            None
        };
        let tenants = self.reload(&client).await?;
        if standby {
            tracing::info!(tenants, "catalog loaded; hot standby, polling replay");
        } else {
            tracing::info!(tenants, "catalog loaded; following {CHANNEL}");
        }

        let period = self.settings.resync_every;
        let mut resync = interval_at(Instant::now() + period, period);
        resync.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let every = self.settings.poll_every;
        let mut poll = interval_at(Instant::now() + every, every);
        poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                // A notification; on a standby only the end of the connection.
                change = changes.recv() => if change.is_none() {
                    let error = match (&mut driver.0).await {
                        Ok(Err(error)) => Some(error),
                        Ok(Ok(())) | Err(_) => None,
                    };
                    return Err(FollowError::Closed(error));
                },
                _ = resync.tick() => {}
                _ = poll.tick(), if standby => {
                    let now = self.replay_position(&client).await?;
                    if now == replayed {
                        continue;
                    }
                    replayed = now;
                }
            }
            let tenants = self.reload(&client).await?;
            tracing::debug!(tenants, "catalog reloaded");
        }
    }

    // The one place the follower's connection is made.
    async fn connect(&self) -> Result<Session, FollowError> {
        // connect_timeout bounds the TCP connect only; this bounds the handshake too.
        let tls = self.pg.tls.clone();
        let (client, mut connection) = self
            .bounded(self.pg.config.connect(tls))
            .await?
            .map_err(FollowError::Connect)?;
        // Capacity 1: every notification means "reload everything", so one pending is enough
        // and a burst of changes (500 tenants applied at once) costs one or two reloads.
        let (changed, changes) = mpsc::channel::<()>(1);
        let driver = AbortOnDrop(tokio::spawn(async move {
            let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(message) = messages.next().await {
                match message {
                    Ok(AsyncMessage::Notification(notification)) => {
                        tracing::debug!(tenant = notification.payload(), "catalog change notified");
                        // Full means a reload is already pending, which covers this change.
                        let _ = changed.try_send(());
                    }
                    Ok(AsyncMessage::Notice(notice)) => {
                        tracing::debug!(notice = notice.message(), "catalog connection notice");
                    }
                    Ok(_) => {}
                    Err(error) => return Err(error),
                }
            }
            Ok(())
        }));
        Ok(Session {
            client,
            changes,
            driver,
        })
    }

    // How far a standby has replayed the primary's WAL. A standby promoted since (a regional
    // failover) ends the session: the next one LISTENs.
    async fn replay_position(&self, client: &Client) -> Result<Option<String>, FollowError> {
        let row = self
            .bounded(client.query_one(
                "SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text",
                &[],
            ))
            .await?
            .map_err(FollowError::Recovery)?;
        if !row.try_get::<_, bool>(0).map_err(FollowError::Recovery)? {
            return Err(FollowError::Promoted);
        }
        row.try_get(1).map_err(FollowError::Recovery)
    }

    // Gives up on `work` after the query timeout (a silently dead connection).
    async fn bounded<T>(&self, work: impl Future<Output = T>) -> Result<T, FollowError> {
        let limit = self.settings.query_timeout;
        timeout(limit, work)
            .await
            .map_err(|_| FollowError::Timeout(limit))
    }

    async fn reload(&self, client: &Client) -> Result<usize, FollowError> {
        let timeout_after = self.settings.query_timeout;
        // Tenants and their SSO settings are read together; a change between the two reads
        // is notified and loaded by the next reload.
        let load = async {
            Ok::<_, CatalogError>((
                load_tenants(client).await?,
                load_sso(client).await?,
                load_scim_tokens(client).await?,
                load_readers(client).await?,
            ))
        };
        let loaded = match timeout(timeout_after, load).await {
            Ok(Ok(tenants)) => Ok(tenants),
            Ok(Err(error)) => Err(FollowError::Load(error)),
            Err(_) => Err(FollowError::Timeout(timeout_after)),
        };
        match loaded {
            Ok((tenants, sso, scim_tokens, readers)) => {
                let count = self.catalog.replace_all(tenants, sso, scim_tokens);
                self.catalog.readers().replace(readers);
                self.metrics.catalog_reloaded(count);
                Ok(count)
            }
            Err(error) => {
                self.metrics.catalog_reload_failed();
                Err(error)
            }
        }
    }
}

// A connected session: the client, the notifications (closed when the connection ends),
// and the task driving the connection.
struct Session {
    client: Client,
    changes: mpsc::Receiver<()>,
    driver: AbortOnDrop<Result<(), tokio_postgres::Error>>,
}

struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Reconnect delays: exponential from `min` to `max` with jitter (up to +100 %), so that
/// many data planes restarted together do not reconnect in lockstep. The sequence comes
/// from `backon`, the implementation the operator's backoff uses too.
fn reconnect_backoff(min: Duration, max: Duration) -> impl Iterator<Item = Duration> {
    use backon::BackoffBuilder;
    backon::ExponentialBuilder::default()
        .with_min_delay(min)
        .with_max_delay(max.max(min))
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnect_delays_double_within_their_jitter_up_to_the_cap() {
        let min = Duration::from_millis(100);
        let max = Duration::from_millis(500);
        let delays: Vec<Duration> = reconnect_backoff(min, max).take(5).collect();
        for (d, base) in delays.iter().zip([100u64, 200, 400, 500, 500]) {
            let base = Duration::from_millis(base);
            assert!(*d >= base && *d < base * 2, "{d:?} outside [{base:?}, 2x)");
        }
    }
}
