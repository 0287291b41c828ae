//! The catalog rows of tenants: what the data plane reads to serve them.

use super::{DbError, RegionDatabase};

pub use phoenix_catalog::TenantRow;

/// What deleting a tenant did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deleted {
    /// Clinical rows removed.
    pub rows: u64,
    /// Whether a catalog row existed.
    pub existed: bool,
}

const UPSERT: &str = "INSERT INTO catalog.tenants AS t
    (uid, name, display_name, hostname, home_region, data_residency, isolation, state, requests_per_second, max_users, generation)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
ON CONFLICT (uid) DO UPDATE SET
    display_name = EXCLUDED.display_name, hostname = EXCLUDED.hostname, data_residency = EXCLUDED.data_residency,
    state = EXCLUDED.state, requests_per_second = EXCLUDED.requests_per_second, max_users = EXCLUDED.max_users,
    generation = EXCLUDED.generation, updated_at = now()
WHERE (t.display_name, t.hostname, t.data_residency, t.state, t.requests_per_second, t.max_users)
      IS DISTINCT FROM
      (EXCLUDED.display_name, EXCLUDED.hostname, EXCLUDED.data_residency, EXCLUDED.state, EXCLUDED.requests_per_second, EXCLUDED.max_users)";

use phoenix_catalog::rls::DELETE_ORDER;

impl RegionDatabase {
    /// Creates or updates the tenant's catalog row (touching it only when something
    /// changed, so that the data plane is not notified for nothing); returns its id.
    pub async fn upsert_tenant(&self, row: &TenantRow) -> Result<i64, DbError> {
        let client = self.client().await?;
        let result = client
            .execute(
                UPSERT,
                &[
                    &row.uid,
                    &row.name,
                    &row.display_name,
                    &row.hostname,
                    &row.home_region,
                    &row.data_residency,
                    &row.isolation.as_str(),
                    &row.state.as_str(),
                    &row.requests_per_second,
                    &row.max_users,
                    &row.generation,
                ],
            )
            .await;
        if let Err(e) = result {
            if e.as_db_error().and_then(|d| d.constraint()) == Some("tenants_live_hostname") {
                let owner = client
                    .query_opt("SELECT name FROM catalog.tenants WHERE hostname = $1 AND state <> 'retired'", &[&row.hostname])
                    .await
                    .ok()
                    .flatten()
                    .map(|r| r.get::<_, String>(0))
                    .unwrap_or_else(|| "another tenant".to_owned());
                return Err(DbError::HostnameTaken {
                    hostname: row.hostname.clone(),
                    owner,
                });
            }
            if e.as_db_error().and_then(|d| d.constraint()) == Some("tenants_live_name") {
                let owner_uid = client
                    .query_opt(
                        "SELECT uid FROM catalog.tenants WHERE name = $1 AND state <> 'retired'",
                        &[&row.name],
                    )
                    .await
                    .ok()
                    .flatten()
                    .map(|r| r.get::<_, String>(0))
                    .unwrap_or_default();
                return Err(DbError::NameTaken {
                    name: row.name.clone(),
                    owner_uid,
                });
            }
            return Err(DbError::query("writing the tenant's catalog row")(e));
        }
        let id = client
            .query_one("SELECT id FROM catalog.tenants WHERE uid = $1", &[&row.uid])
            .await
            .map_err(DbError::query("reading the tenant's catalog id"))?;
        Ok(id.get(0))
    }

    /// Marks the tenant retired, keeping its rows. Returns whether a live row was retired.
    pub async fn retire_tenant(&self, uid: &str) -> Result<bool, DbError> {
        let client = self.client().await?;
        let n = client
            .execute("UPDATE catalog.tenants SET state = 'retired', retired_at = now(), updated_at = now() WHERE uid = $1 AND state <> 'retired'", &[&uid])
            .await
            .map_err(DbError::query("retiring the tenant"))?;
        Ok(n > 0)
    }

    /// Deletes the tenant's clinical rows and catalog row in one transaction.
    pub async fn delete_tenant(&self, uid: &str) -> Result<Deleted, DbError> {
        let mut client = self.client().await?;
        let tx = client
            .transaction()
            .await
            .map_err(DbError::query("starting the tenant deletion"))?;
        let id: Option<i64> = tx
            .query_opt(
                "SELECT id FROM catalog.tenants WHERE uid = $1 FOR UPDATE",
                &[&uid],
            )
            .await
            .map_err(DbError::query("finding the tenant"))?
            .map(|r| r.get(0));
        let Some(id) = id else {
            return Ok(Deleted {
                rows: 0,
                existed: false,
            });
        };
        let mut rows = 0;
        for table in DELETE_ORDER {
            rows += tx
                .execute(&format!("DELETE FROM {table} WHERE tenant_id = $1"), &[&id])
                .await
                .map_err(DbError::query("deleting the tenant's clinical rows"))?;
        }
        tx.execute("DELETE FROM catalog.tenants WHERE id = $1", &[&id])
            .await
            .map_err(DbError::query("deleting the tenant's catalog row"))?;
        tx.commit()
            .await
            .map_err(DbError::query("committing the tenant deletion"))?;
        Ok(Deleted {
            rows,
            existed: true,
        })
    }

    /// Live tenants whose home is `region`.
    pub async fn tenant_count(&self, region: &str) -> Result<i64, DbError> {
        let client = self.client().await?;
        let row = client
            .query_one("SELECT count(*) FROM catalog.tenants WHERE home_region = $1 AND state <> 'retired'", &[&region])
            .await
            .map_err(DbError::query("counting tenants"))?;
        Ok(row.get(0))
    }
}
