//! The in-memory copy of `catalog.tenants`: which tenants this region serves, by host name.
//!
//! The operator writes the catalog; the [`follower`] keeps this copy current with
//! LISTEN/NOTIFY. Request handling only ever reads the latest snapshot, so a reload never
//! blocks a request for longer than an `Arc` clone.

pub mod follower;

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use tokio_postgres::Row;

/// Whether a live tenant may be served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TenantState {
    /// Serve it.
    Active,
    /// Known, but refused with 403 until the operator reactivates it.
    Suspended,
}

/// How a tenant's clinical rows are kept apart from other tenants'.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isolation {
    /// Rows in the shared clinical tables, separated by row-level security.
    Shared,
    /// A schema of its own.
    Schema,
    /// A database (or RDS instance) of its own.
    Dedicated,
}

/// One live row of `catalog.tenants`, as the data plane needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TenantRecord {
    /// Catalog id; the value of `app.tenant_id` under row-level security.
    pub id: i64,
    /// UID of the Tenant custom resource.
    pub uid: String,
    /// Name of the Tenant custom resource (a DNS label).
    pub name: String,
    /// Human name of the hospital system.
    pub display_name: String,
    /// Public host name the tenant is served at, lowercased.
    pub hostname: String,
    /// Region that holds the tenant's primary data.
    pub home_region: String,
    /// Jurisdictions the tenant's data may live in.
    pub data_residency: Vec<String>,
    /// How its rows are isolated.
    pub isolation: Isolation,
    /// Whether it may be served.
    pub state: TenantState,
    /// Request rate limit from the Tenant spec.
    pub requests_per_second: i32,
    /// User limit from the Tenant spec.
    pub max_users: i32,
    /// Generation of the Tenant resource the row was written from.
    pub generation: i64,
}

/// Why the catalog could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The query failed (connection lost, permission denied, schema missing).
    #[error("reading catalog.tenants failed")]
    Query(#[from] tokio_postgres::Error),
    /// A row holds a value this version of the data plane does not understand.
    #[error(
        "catalog.tenants row {id} has {column} = {value:?}, which this data plane does not know"
    )]
    UnknownValue {
        /// Catalog id of the row.
        id: i64,
        /// Column holding the value.
        column: &'static str,
        /// The value.
        value: String,
    },
}

const LIVE_TENANTS: &str = "SELECT id, uid, name, display_name, hostname, home_region, \
     data_residency, isolation, state, requests_per_second, max_users, generation \
     FROM catalog.tenants WHERE state <> 'retired' ORDER BY id";

/// Reads every live (not retired) tenant from `catalog.tenants`.
///
/// A row with a value this version does not know (an isolation or state added by a newer
/// operator) is logged and left out, so that one such row cannot freeze the whole catalog.
pub async fn load_tenants(
    client: &tokio_postgres::Client,
) -> Result<Vec<TenantRecord>, CatalogError> {
    let rows = client.query(LIVE_TENANTS, &[]).await?;
    let mut tenants = Vec::with_capacity(rows.len());
    for row in &rows {
        match tenant_from_row(row) {
            Ok(tenant) => tenants.push(tenant),
            Err(error @ CatalogError::UnknownValue { .. }) => {
                tracing::error!(error = %crate::error::Report(&error), "tenant left out of the catalog");
            }
            Err(error) => return Err(error),
        }
    }
    Ok(tenants)
}

fn tenant_from_row(row: &Row) -> Result<TenantRecord, CatalogError> {
    let id: i64 = row.try_get("id")?;
    let unknown =
        |column: &'static str, value: String| CatalogError::UnknownValue { id, column, value };
    let isolation = match row.try_get::<_, String>("isolation")?.as_str() {
        "Shared" => Isolation::Shared,
        "Schema" => Isolation::Schema,
        "Dedicated" => Isolation::Dedicated,
        other => return Err(unknown("isolation", other.to_owned())),
    };
    let state = match row.try_get::<_, String>("state")?.as_str() {
        "active" => TenantState::Active,
        "suspended" => TenantState::Suspended,
        other => return Err(unknown("state", other.to_owned())),
    };
    Ok(TenantRecord {
        id,
        uid: row.try_get("uid")?,
        name: row.try_get("name")?,
        display_name: row.try_get("display_name")?,
        hostname: row.try_get("hostname")?,
        home_region: row.try_get("home_region")?,
        data_residency: row.try_get("data_residency")?,
        isolation,
        state,
        requests_per_second: row.try_get("requests_per_second")?,
        max_users: row.try_get("max_users")?,
        generation: row.try_get("generation")?,
    })
}

#[derive(Debug, Default)]
struct Snapshot {
    by_host: HashMap<String, Arc<TenantRecord>>,
    loaded: bool,
}

/// The shared, swappable set of live tenants, keyed by lowercased host name.
///
/// Cloning is cheap and every clone sees the same tenants.
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    current: Arc<RwLock<Arc<Snapshot>>>,
}

impl Catalog {
    /// A catalog that has not loaded yet: it resolves no host and is not ready.
    pub fn new() -> Self {
        Self::default()
    }

    /// A catalog holding exactly `tenants`, already loaded (for tests and tools).
    pub fn with_tenants(tenants: impl IntoIterator<Item = TenantRecord>) -> Self {
        let catalog = Self::new();
        catalog.replace(tenants);
        catalog
    }

    /// Replaces every tenant at once and marks the catalog loaded; returns how many it holds.
    ///
    /// Host names are compared lowercased. Should two live rows differ only in case, the
    /// one with the lower id (the first given) wins.
    pub fn replace(&self, tenants: impl IntoIterator<Item = TenantRecord>) -> usize {
        let mut by_host = HashMap::new();
        for mut tenant in tenants {
            tenant.hostname = normalize_host(&tenant.hostname);
            let host = tenant.hostname.clone();
            if let Some(kept) = by_host.get(&host) {
                let kept: &Arc<TenantRecord> = kept;
                tracing::warn!(
                    hostname = %host,
                    kept = %kept.name,
                    ignored = %tenant.name,
                    "two live tenants claim the same host name; ignoring the newer one"
                );
                continue;
            }
            by_host.insert(host, Arc::new(tenant));
        }
        let len = by_host.len();
        let snapshot = Arc::new(Snapshot {
            by_host,
            loaded: true,
        });
        // Nothing can panic while the lock is held, so a poisoned lock still holds a
        // consistent snapshot: carry on with it rather than take the process down.
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = snapshot;
        len
    }

    /// The live tenant served at `host` (already stripped of its port and lowercased).
    pub fn get(&self, host: &str) -> Option<Arc<TenantRecord>> {
        self.snapshot().by_host.get(host).cloned()
    }

    /// Whether the catalog has been loaded from the database at least once.
    pub fn is_loaded(&self) -> bool {
        self.snapshot().loaded
    }

    /// Number of live tenants (active and suspended).
    pub fn len(&self) -> usize {
        self.snapshot().by_host.len()
    }

    /// Whether no tenant is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }
}

/// Lowercases a host name and drops a trailing root dot (`Example.org.` -> `example.org`).
pub fn normalize_host(host: &str) -> String {
    host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(name: &str, hostname: &str, state: TenantState) -> TenantRecord {
        TenantRecord {
            id: 1,
            uid: format!("uid-{name}"),
            name: name.into(),
            display_name: format!("{name} hospital"),
            hostname: hostname.into(),
            home_region: "us-east-1".into(),
            data_residency: vec!["US".into()],
            isolation: Isolation::Shared,
            state,
            requests_per_second: 100,
            max_users: 1000,
            generation: 1,
        }
    }

    #[test]
    fn a_new_catalog_is_not_loaded_and_resolves_nothing() {
        let catalog = Catalog::new();
        assert!(!catalog.is_loaded());
        assert!(catalog.get("a.example.org").is_none());
    }

    #[test]
    fn hosts_are_keyed_lowercased_without_the_root_dot() {
        let catalog =
            Catalog::with_tenants([tenant("mercy", "Mercy.Example.ORG.", TenantState::Active)]);
        assert!(catalog.is_loaded());
        let found = catalog
            .get("mercy.example.org")
            .expect("tenant by lowercased host");
        assert_eq!(found.name, "mercy");
        assert_eq!(found.hostname, "mercy.example.org");
    }

    #[test]
    fn replace_drops_tenants_that_are_gone_and_keeps_the_first_of_a_duplicate_host() {
        let catalog = Catalog::with_tenants([tenant("a", "a.example.org", TenantState::Active)]);
        let len = catalog.replace([
            tenant("b", "b.example.org", TenantState::Active),
            tenant("c", "B.example.org", TenantState::Active),
        ]);
        assert_eq!(len, 1);
        assert!(catalog.get("a.example.org").is_none());
        assert_eq!(
            catalog.get("b.example.org").map(|t| t.name.clone()),
            Some("b".into())
        );
    }

    #[test]
    fn clones_share_the_same_tenants() {
        let catalog = Catalog::new();
        let clone = catalog.clone();
        catalog.replace([tenant("a", "a.example.org", TenantState::Suspended)]);
        assert!(clone.is_loaded());
        assert_eq!(clone.len(), 1);
    }
}
