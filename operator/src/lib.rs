//! The Phoenix Guardian operator: reconciles Regions and Tenants into PostgreSQL catalogs,
//! clinical schemas and row-level security; `plan` shows what applying manifests would
//! change without changing anything.

pub mod backoff;
pub mod conditions;
pub mod controller;
pub mod db;
pub mod dns;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod oidc;
pub mod placement;
pub mod plan;
pub mod rds;
pub mod reason;
pub mod secrets;
pub mod snapshot;
