//! The Phoenix Guardian regional data plane: an axum service that resolves tenants from
//! the catalog the operator writes into the region's PostgreSQL, and serves their API.
//!
//! Build the router with [`app::app`] over an [`app::AppState`] (tests use a fixed
//! [`catalog::Catalog`]); run the whole process (pools, catalog follower, HTTP server)
//! with [`server::Dataplane::start`].

pub mod analytics;
pub mod app;
pub mod audit;
pub mod auth;
pub mod catalog;
pub mod config;
pub mod db;
pub mod error;
pub mod fhir;
pub mod limits;
pub mod login;
pub mod metrics;
pub mod request;
pub mod routes;
pub mod scim;
pub mod server;
pub mod tenant;

pub use app::{AppState, admin_app, app};
pub use catalog::{Catalog, Isolation, TenantRecord, TenantRow, TenantState};
pub use config::Config;
pub use error::ApiError;
pub use server::Dataplane;
pub use tenant::Tenant;
