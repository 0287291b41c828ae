//! Starting and stopping the whole data plane: pools, catalog follower, replica lag
//! sampler and HTTP server (HTTPS with [`tls`] when a certificate is configured).

pub mod http;
pub mod tls;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::Request;
use axum::middleware::{self, Next};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinError, JoinHandle};
use tracing::Instrument;

use crate::app::{AppState, admin_app, app};
use crate::catalog::Catalog;
use crate::catalog::follower::{CatalogFollower, FollowerSettings};
use crate::config::Config;
use crate::db::catalog_readers::CatalogReaders;
use crate::db::{Database, DbError, lag, pg_config, pg_target};
use crate::metrics::Metrics;

/// Why the data plane could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A database URL is unusable.
    #[error(transparent)]
    Database(#[from] DbError),
    /// The TLS certificate or key is unusable.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// The listen address could not be bound or read.
    #[error("listening on {addr} failed")]
    Listen {
        /// The address.
        addr: String,
        /// Why.
        source: io::Error,
    },
}

/// Why the data plane did not stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum StopError {
    /// The HTTP server failed.
    #[error("the HTTP server failed")]
    Server(#[from] io::Error),
    /// A task panicked.
    #[error("a data plane task panicked")]
    Task(#[from] JoinError),
}

/// A running data plane. Dropping it stops its tasks too; [`Dataplane::stop`] also waits for
/// in-flight requests to finish.
#[derive(Debug)]
pub struct Dataplane {
    local_addr: SocketAddr,
    admin_addr: SocketAddr,
    catalog: Catalog,
    database: Database,
    stop: watch::Sender<bool>,
    server: JoinHandle<io::Result<()>>,
    admin: JoinHandle<io::Result<()>>,
    follower: JoinHandle<()>,
    lag_sampler: JoinHandle<()>,
}

impl Dataplane {
    /// Binds `config.listen` and starts.
    pub async fn bind(config: &Config) -> Result<Self, StartError> {
        // Before anything signs or checks a token (the first use would fix the provider).
        crate::auth::crypto::install();
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| StartError::Listen {
                    addr: config.listen.to_string(),
                    source,
                })?;
        Self::start(config, listener, FollowerSettings::default()).await
    }

    /// Starts serving on `listener` (its address, not `config.listen`, is used), serving
    /// `/metrics` and the probes on `config.admin_listen`, and following the catalog of
    /// `config.database_url`. Returns at once: a database that is down makes the data
    /// plane unready, not failed.
    pub async fn start(
        config: &Config,
        listener: TcpListener,
        follower_settings: FollowerSettings,
    ) -> Result<Self, StartError> {
        let local_addr = listener.local_addr().map_err(|source| StartError::Listen {
            addr: config.listen.to_string(),
            source,
        })?;
        let admin_listener = TcpListener::bind(config.admin_listen)
            .await
            .map_err(|source| StartError::Listen {
                addr: config.admin_listen.to_string(),
                source,
            })?;
        let admin_addr = admin_listener
            .local_addr()
            .map_err(|source| StartError::Listen {
                addr: config.admin_listen.to_string(),
                source,
            })?;
        let catalog = Catalog::new();
        let database = Database::new(config)?;
        // Without a configured replica, reads follow the Region's readers as the operator
        // publishes them to the catalog.
        let database = if config.reader_url.is_none() {
            let writer = pg_target(
                "DATABASE_URL",
                &config.database_url,
                config.database_ca_file.as_deref(),
            )?;
            let readers = Arc::new(CatalogReaders::new(
                catalog.readers().clone(),
                writer,
                config.pool_size,
            ));
            database
                .with_readers(readers.clone())
                .with_reader_targets(readers)
        } else {
            database
        };
        let acceptor = match (&config.tls_cert_file, &config.tls_key_file) {
            (Some(cert), Some(key)) => Some(tls::acceptor(cert, key)?),
            _ => None,
        };
        let follower_pg = pg_config(
            "DATABASE_URL",
            &config.database_url,
            "phoenix-dataplane-catalog",
            config.database_ca_file.as_deref(),
        )?;
        let metrics = Metrics::new(config.region.as_deref());
        let (stop, stopped) = watch::channel(false);
        let span = tracing::info_span!("dataplane", region = config.region.as_deref());

        let follower = CatalogFollower::new(follower_pg, catalog.clone(), metrics.clone())
            .with_settings(follower_settings);
        let follower = tokio::spawn(
            follower
                .run(shutdown_signal(stopped.clone()))
                .instrument(span.clone()),
        );

        let state = AppState::new(catalog.clone(), database, metrics)
            .with_login(config.login())
            .with_verified_tokens(config.verified_tokens())
            .with_request_settings(config.request_settings());
        let sampled = state.database.clone();
        let served = state.database.clone();
        let stopped_sampling = shutdown_signal(stopped.clone());
        let lag_sampler = tokio::spawn(
            async move {
                sampled
                    .sample_lag_until(lag::SAMPLE_EVERY, stopped_sampling)
                    .await;
            }
            .instrument(span.clone()),
        );
        // Plain HTTP always: scrapers and the kubelet reach it inside the cluster.
        let admin = tokio::spawn(
            axum::serve(admin_listener, admin_app(state.clone()))
                .with_graceful_shutdown(shutdown_signal(stopped.clone()))
                .into_future()
                .instrument(span.clone()),
        );
        // Requests run on tasks of their own: carry the region span into each of them.
        let request_span = span.clone();
        let app = app(state).layer(middleware::from_fn(move |request: Request, next: Next| {
            next.run(request).instrument(request_span.clone())
        }));
        let tls = acceptor.is_some();
        let header_read_timeout = std::time::Duration::from_millis(config.header_read_timeout_ms);
        let server = tokio::spawn(
            http::serve(
                listener,
                acceptor,
                app,
                header_read_timeout,
                shutdown_signal(stopped),
            )
            .instrument(span.clone()),
        );
        span.in_scope(|| tracing::info!(%local_addr, %admin_addr, tls, "data plane listening"));

        Ok(Self {
            local_addr,
            admin_addr,
            catalog,
            database: served,
            stop,
            server,
            admin,
            follower,
            lag_sampler,
        })
    }

    /// The database handlers reach (its pools and reader source, as wired at start).
    pub fn database(&self) -> &Database {
        &self.database
    }

    /// The address the HTTP server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address of the admin listener (`/metrics`, probes).
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// The catalog the follower keeps current.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// Stops accepting connections, waits for in-flight requests, stops the follower.
    pub async fn stop(self) -> Result<(), StopError> {
        // Fails only when no task listens any more, which is what stopping wants.
        let _ = self.stop.send(true);
        let served = self.server.await;
        let admin = self.admin.await;
        self.follower.await?;
        self.lag_sampler.await?;
        served??;
        admin??;
        Ok(())
    }
}

// Completes once stop is asked for, or once the Dataplane is dropped.
async fn shutdown_signal(mut stopped: watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stop| *stop).await;
}
