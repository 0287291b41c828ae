//! The axum application: shared state and the router every test and the binary serve.

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRef};
use axum::middleware;

use crate::auth::jwks::{self, HttpJwks, JwksCache};
use crate::auth::verified::VerifiedTokens;
use crate::catalog::Catalog;
use crate::db::{Database, DatabaseProbe};
use crate::limits::RateLimits;
use crate::login::LoginSettings;
use crate::metrics::{self, Metrics};
use crate::request::{self, RequestSettings};
use crate::routes;

/// What every handler can reach: one `Arc`, so the clone axum makes for every extractor
/// and middleware of every request is one reference count, not one per field (the fields'
/// dozens of `Arc`s cost 8 % of the CPU of a Patient read when cloned one by one).
#[derive(Clone)]
pub struct AppState(Arc<AppStateInner>);

impl std::ops::Deref for AppState {
    type Target = AppStateInner;

    fn deref(&self) -> &AppStateInner {
        &self.0
    }
}

/// The fields of [`AppState`].
#[derive(Clone)]
pub struct AppStateInner {
    /// The live tenants, by host name.
    pub catalog: Catalog,
    /// The region's database; handlers reach tenant data through
    /// [`Database::tenant_tx`].
    pub database: Database,
    /// Answers readiness' database check (the database itself, or a test double).
    pub probe: Arc<dyn DatabaseProbe>,
    /// The process's metrics.
    pub metrics: Metrics,
    /// The signing keys of the tenants' identity providers.
    pub jwks: JwksCache,
    /// Bearer tokens already verified, by tenant (ADR 0015).
    pub verified_tokens: VerifiedTokens,
    /// Browser login and session settings.
    pub login: LoginSettings,
    /// Every tenant's request rate bucket.
    pub limits: RateLimits,
    /// Body size limit, timeout and region of every request.
    pub request: RequestSettings,
    started_at: jiff::Timestamp,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("catalog", &self.catalog)
            .field("started_at", &self.started_at)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// State over `catalog` and `database`; readiness pings `database`, whose read/write
    /// split reports to `metrics`.
    pub fn new(catalog: Catalog, database: Database, metrics: Metrics) -> Self {
        let database = database.observed_by(metrics.reads());
        Self(Arc::new(AppStateInner {
            catalog,
            probe: Arc::new(database.clone()),
            database,
            metrics,
            jwks: JwksCache::new(Arc::new(HttpJwks::new()), jwks::MIN_REFRESH),
            verified_tokens: VerifiedTokens::default(),
            login: LoginSettings::default(),
            limits: RateLimits::default(),
            request: RequestSettings::default(),
            started_at: jiff::Timestamp::now(),
        }))
    }

    /// Keys come from `jwks` instead of the issuers' endpoints (for tests).
    pub fn with_jwks(mut self, jwks: JwksCache) -> Self {
        Arc::make_mut(&mut self.0).jwks = jwks;
        self
    }

    /// Verified bearer tokens are kept in `tokens` (a disabled cache verifies every time).
    pub fn with_verified_tokens(mut self, tokens: VerifiedTokens) -> Self {
        Arc::make_mut(&mut self.0).verified_tokens = tokens;
        self
    }

    /// Browser logins and sessions follow `login`.
    pub fn with_login(mut self, login: LoginSettings) -> Self {
        Arc::make_mut(&mut self.0).login = login;
        self
    }

    /// Requests are held to `settings` (body size limit, timeout).
    pub fn with_request_settings(mut self, settings: RequestSettings) -> Self {
        Arc::make_mut(&mut self.0).request = settings;
        self
    }

    /// Readiness asks `probe` instead of the database (for tests).
    pub fn with_probe(mut self, probe: Arc<dyn DatabaseProbe>) -> Self {
        Arc::make_mut(&mut self.0).probe = probe;
        self
    }

    /// When this server's capabilities last changed (its start), as a FHIR dateTime.
    pub fn fhir_date(&self) -> String {
        self.started_at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
    }
}

impl FromRef<AppState> for Catalog {
    fn from_ref(state: &AppState) -> Self {
        state.catalog.clone()
    }
}

impl FromRef<AppState> for Database {
    fn from_ref(state: &AppState) -> Self {
        state.database.clone()
    }
}

impl FromRef<AppState> for Metrics {
    fn from_ref(state: &AppState) -> Self {
        state.metrics.clone()
    }
}

/// The whole public HTTP API over `state` (no `/metrics`: that is [`admin_app`]'s).
pub fn app(state: AppState) -> Router {
    let max_body_bytes = state.request.max_body_bytes;
    Router::new()
        .merge(routes::health::router())
        .merge(routes::tenant_routes(state.clone()))
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        // One limit for every body extractor of every route (JSON, bytes, forms).
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            request::observe,
        ))
        .with_state(state)
}

/// The admin listener's API (`ADMIN_LISTEN_ADDR`): `/metrics` and the probes, for the
/// cluster's scrapers and the kubelet, not for tenants' clients.
pub fn admin_app(state: AppState) -> Router {
    Router::new()
        .merge(routes::health::router())
        .merge(metrics::router())
        .fallback(routes::not_found)
        .with_state(state)
}
