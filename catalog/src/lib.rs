//! The contract between the operator and the data plane, in one place.
//!
//! The operator writes each region's catalog; the data plane reads and follows it. Both
//! depend on this crate and on nothing of each other, so everything they must agree on
//! lives here: the migrations (the schema), the catalog row and its enums with explicit
//! string forms, the NOTIFY channel, the per-transaction tenant setting and the row-level
//! security predicate built on it.

pub mod connect;
pub mod migrations;
pub mod rls;
pub mod tenants;

pub use migrations::{MIGRATIONS, Migration, latest_version};
pub use rls::{POLICY_NAME, TENANT_SETTING, TENANT_TABLES, tenant_predicate};
pub use tenants::{Isolation, RowError, TenantRecord, TenantRow, TenantState, UnknownValue};

/// The channel `catalog.tenants`' trigger notifies on every change (payload: the tenant
/// name). The data plane LISTENs on it where the server allows (not on a hot standby).
pub const NOTIFY_CHANNEL: &str = "catalog_tenants";
