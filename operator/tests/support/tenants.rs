//! Catalog rows of test tenants, one per isolation, a `Schema` tenant converged as the
//! operator does it, and the guard that drops the server-wide roles a test made.

use std::sync::{Arc, Mutex};

use phoenix_catalog::schemas::{tenant_database, tenant_role, tenant_schema};
use phoenix_catalog::{Isolation, TenantRow, TenantState};
use phoenix_operator::controller::providers::Database;
use phoenix_operator::controller::region::apply::provision;
use phoenix_operator::controller::tenant::apply::converge_schema;

use super::{TestDb, cleanup_as_admin, rand_suffix};

/// A `Shared` tenant's catalog row, its UID and hostname unique to the run.
pub fn tenant(name: &str) -> TenantRow {
    TenantRow {
        uid: format!("uid-{name}-{}", rand_suffix()),
        name: name.to_owned(),
        display_name: format!("{name} hospital"),
        hostname: format!("{name}-{}.example.test", rand_suffix()),
        home_region: "us-east-1".to_owned(),
        data_residency: vec!["US".to_owned()],
        isolation: Isolation::Shared,
        state: TenantState::Active,
        requests_per_second: 100,
        max_users: 100,
        generation: 1,
        schema: None,
        database: None,
        database_server: None,
    }
}

/// A `Schema` tenant's catalog row (its schema named after its UID).
pub fn schema_tenant(name: &str) -> TenantRow {
    let mut row = tenant(name);
    row.isolation = Isolation::Schema;
    row.schema = Some(tenant_schema(&row.uid));
    row
}

/// A `Dedicated` tenant's catalog row (its database named after its UID).
pub fn dedicated_tenant(name: &str) -> TenantRow {
    let mut row = tenant(name);
    row.isolation = Isolation::Dedicated;
    row.database = Some(tenant_database(&row.uid));
    row
}

/// A provisioned region database with a Schema tenant converged; its catalog id.
pub async fn provisioned_schema_tenant(db: &TestDb, row: &TenantRow) -> (Arc<dyn Database>, i64) {
    let region = db.region();
    provision(&*region, None).await.expect("provision");
    let work = converge_schema(&*region, &row.uid)
        .await
        .expect("converge schema");
    assert!(work.creates, "a first pass creates the schema");
    assert!(work.drift.is_empty(), "{:?}", work.drift);
    let id = region.upsert_tenant(row).await.expect("catalog row");
    // As the reconcile does right after the row: the tables are pinned to its id.
    let pinned = converge_schema(&*region, &row.uid).await.expect("pins");
    assert!(
        pinned
            .ddl
            .iter()
            .all(|d| d.summary.starts_with("pin every row")),
        "{:?}",
        pinned.ddl
    );
    (region, id)
}

/// Drops the server-wide roles a test made when it ends, passed or failed; declared before
/// the test's database, so that the database (holding what they own) is gone first.
pub struct Roles(Mutex<Vec<String>>);

impl Roles {
    pub fn new() -> Self {
        Self(Mutex::new(Vec::new()))
    }

    /// Drops tenant `row`'s role.
    pub fn of_tenant(&self, row: &TenantRow) {
        self.add(&tenant_role(&row.uid));
    }

    /// Drops `role`.
    pub fn add(&self, role: &str) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(role.to_owned());
    }
}

impl Drop for Roles {
    fn drop(&mut self) {
        let roles = std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()));
        cleanup_as_admin(
            roles
                .iter()
                .map(|role| format!("DROP ROLE IF EXISTS \"{role}\""))
                .collect(),
        );
    }
}
