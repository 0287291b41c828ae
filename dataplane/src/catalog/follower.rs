//! Keeps a [`Catalog`] current: a dedicated connection LISTENs on `catalog_tenants` and
//! reloads on every notification, on reconnect (healing notifications missed while
//! disconnected), and periodically as a safety net.

use std::future::Future;
use std::pin::pin;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior, interval_at, sleep, timeout};
use tokio_postgres::{AsyncMessage, Client};

use super::{Catalog, CatalogError, load_tenants};
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
}

impl Default for FollowerSettings {
    fn default() -> Self {
        Self {
            resync_every: Duration::from_secs(30),
            query_timeout: Duration::from_secs(10),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(30),
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
    /// Reading the catalog failed.
    #[error(transparent)]
    Load(#[from] CatalogError),
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
        let mut backoff = Backoff::new(self.settings.backoff_min, self.settings.backoff_max);
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
                backoff.reset();
            }
            let delay = backoff.next_delay(rand::random());
            tokio::select! {
                biased;
                () = &mut shutdown => return,
                () = sleep(delay) => {}
            }
        }
    }

    // One session: connect, LISTEN, load, then reload on every change until something fails.
    async fn follow(&self) -> Result<std::convert::Infallible, FollowError> {
        let query_timeout = self.settings.query_timeout;
        // connect_timeout bounds the TCP connect only; this bounds the handshake too.
        let tls = self.pg.tls.clone();
        let (client, mut connection) = timeout(query_timeout, self.pg.config.connect(tls))
            .await
            .map_err(|_| FollowError::Timeout(query_timeout))?
            .map_err(FollowError::Connect)?;
        // Capacity 1: every notification means "reload everything", so one pending is enough
        // and a burst of changes (500 tenants applied at once) costs one or two reloads.
        let (changed, mut changes) = mpsc::channel::<()>(1);
        let mut driver = AbortOnDrop(tokio::spawn(async move {
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

        timeout(
            query_timeout,
            client.batch_execute(&format!("LISTEN {CHANNEL}")),
        )
        .await
        .map_err(|_| FollowError::Timeout(query_timeout))?
        .map_err(FollowError::Listen)?;
        // Loaded after LISTEN: a change committed in between is both loaded and notified,
        // never lost.
        let tenants = self.reload(&client).await?;
        tracing::info!(tenants, "catalog loaded; following {CHANNEL}");

        let period = self.settings.resync_every;
        let mut resync = interval_at(Instant::now() + period, period);
        resync.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                change = changes.recv() => if change.is_none() {
                    let error = match (&mut driver.0).await {
                        Ok(Err(error)) => Some(error),
                        Ok(Ok(())) | Err(_) => None,
                    };
                    return Err(FollowError::Closed(error));
                },
                _ = resync.tick() => {}
            }
            let tenants = self.reload(&client).await?;
            tracing::debug!(tenants, "catalog reloaded");
        }
    }

    async fn reload(&self, client: &Client) -> Result<usize, FollowError> {
        let timeout_after = self.settings.query_timeout;
        let loaded = match timeout(timeout_after, load_tenants(client)).await {
            Ok(Ok(tenants)) => Ok(tenants),
            Ok(Err(error)) => Err(FollowError::Load(error)),
            Err(_) => Err(FollowError::Timeout(timeout_after)),
        };
        match loaded {
            Ok(tenants) => {
                let count = self.catalog.replace(tenants);
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

struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Exponential backoff with jitter between reconnect attempts.
#[derive(Clone, Debug)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// Starts at `min`, doubles per attempt, never exceeds `max`.
    pub fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max: max.max(min),
            next: min,
        }
    }

    /// The wait before the next attempt; `unit` in [0, 1) picks the jitter, so that many
    /// data planes restarted together do not reconnect in lockstep. The result lies in
    /// [base/2, base], where base doubles from `min` up to `max`.
    pub fn next_delay(&mut self, unit: f64) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(self.max);
        base.mul_f64(0.5 + 0.5 * unit.clamp(0.0, 1.0))
    }

    /// Back to the shortest wait, after a session that worked.
    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter_and_resets() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(500));
        assert_eq!(backoff.next_delay(1.0), Duration::from_millis(100));
        assert_eq!(backoff.next_delay(0.0), Duration::from_millis(100));
        assert_eq!(backoff.next_delay(1.0), Duration::from_millis(400));
        assert_eq!(backoff.next_delay(1.0), Duration::from_millis(500));
        assert_eq!(backoff.next_delay(1.0), Duration::from_millis(500));
        backoff.reset();
        assert_eq!(backoff.next_delay(0.5), Duration::from_millis(75));
    }
}
