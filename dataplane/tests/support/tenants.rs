//! Tenants and their SSO settings written into a test database exactly as the operator
//! writes them: the catalog rows, and a `Schema` or `Dedicated` tenant's own schema or
//! database.

use phoenix_dataplane::catalog::SsoRow;
use phoenix_dataplane::{Isolation, TenantRow, TenantState};
use phoenix_operator::db::PgDatabase;

use super::TestDb;

/// An active tenant of `isolation` in us-east-1, with the tests' usual limits.
fn row(uid: String, name: &str, hostname: &str, isolation: Isolation) -> TenantRow {
    TenantRow {
        uid,
        name: name.to_owned(),
        display_name: format!("{name} Health System"),
        hostname: hostname.to_owned(),
        home_region: "us-east-1".to_owned(),
        data_residency: vec!["US".to_owned()],
        isolation,
        state: TenantState::Active,
        requests_per_second: 100,
        max_users: 1000,
        generation: 1,
        schema: None,
        database: None,
        database_server: None,
    }
}

impl TestDb {
    /// Writes an active tenant's catalog row as the operator does; returns its catalog id.
    pub async fn insert_tenant(&self, name: &str, hostname: &str) -> i64 {
        let row = row(format!("uid-{name}"), name, hostname, Isolation::Shared);
        self.operator
            .as_ref()
            .expect("provisioned in create()")
            .upsert_tenant(&row)
            .await
            .unwrap_or_else(|error| panic!("operator writes tenant {name}: {error}"))
    }

    /// Creates a `Schema` tenant as the operator does (its role, and its schema with a copy
    /// of the clinical tables, then its catalog row); its catalog id and schema. The UID
    /// carries the database name: the tenant's role is server-wide, and tests run in
    /// parallel.
    pub async fn insert_schema_tenant(&self, name: &str, hostname: &str) -> (i64, String) {
        let operator = self.operator.as_ref().expect("provisioned in create()");
        let uid = format!("uid-{name}-{}", self.name);
        phoenix_operator::controller::tenant::apply::converge_schema(&**operator, &uid)
            .await
            .unwrap_or_else(|error| panic!("operator creates the schema of {name}: {error}"));
        let schema = phoenix_catalog::schemas::tenant_schema(&uid);
        let row = TenantRow {
            schema: Some(schema.clone()),
            ..row(uid, name, hostname, Isolation::Schema)
        };
        let id = operator
            .upsert_tenant(&row)
            .await
            .unwrap_or_else(|error| panic!("operator writes tenant {name}: {error}"));
        // As the reconcile does right after the row: the tables are pinned to its id.
        phoenix_operator::controller::tenant::apply::converge_schema(&**operator, &row.uid)
            .await
            .unwrap_or_else(|error| panic!("operator pins the schema of {name}: {error}"));
        self.schema_roles
            .lock()
            .expect("lock")
            .push(phoenix_catalog::schemas::tenant_role(&row.uid));
        (id, schema)
    }

    /// Creates a `Dedicated` tenant as the operator does (its role, its database with the
    /// clinical tables, then its catalog row); its catalog id and database.
    pub async fn insert_dedicated_tenant(&self, name: &str, hostname: &str) -> (i64, String) {
        let operator = self.operator.as_ref().expect("provisioned in create()");
        let uid = format!("uid-{name}-{}", self.name);
        let database = phoenix_catalog::schemas::tenant_database(&uid);
        self.tenant_dbs.lock().expect("lock").push(database.clone());
        self.schema_roles
            .lock()
            .expect("lock")
            .push(phoenix_catalog::schemas::tenant_role(&uid));
        let mut target = self.admin_config.clone();
        target.config.dbname(&database);
        let tdb = PgDatabase::new(target, 2, false).expect("the tenant database's provider");
        phoenix_operator::controller::tenant::apply::converge_dedicated(&**operator, &tdb, &uid)
            .await
            .unwrap_or_else(|error| panic!("operator creates the database of {name}: {error}"));
        let row = TenantRow {
            database: Some(database.clone()),
            ..row(uid, name, hostname, Isolation::Dedicated)
        };
        let id = operator
            .upsert_tenant(&row)
            .await
            .unwrap_or_else(|error| panic!("operator writes tenant {name}: {error}"));
        (id, database)
    }

    /// Publishes `row` as tenant `tenant_id`'s SSO settings, as the operator does.
    pub async fn upsert_sso(&self, tenant_id: i64, row: &SsoRow) {
        self.operator
            .as_ref()
            .expect("provisioned in create()")
            .upsert_sso(tenant_id, row)
            .await
            .unwrap_or_else(|error| panic!("operator writes SSO {}: {error}", row.idp_name));
    }
}
