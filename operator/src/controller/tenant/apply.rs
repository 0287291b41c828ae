//! Applying a Tenant's plan: the placement is recorded before anything is written, then
//! the catalog row converges.

use std::sync::Arc;

use phoenix_crds::{Placement, Tenant, TenantPhase};

use super::plan::{RowChange, TenantPlan};
use crate::controller::context::Context;
use crate::controller::error::ApplyError;
use crate::controller::error::PlanError;
use crate::controller::providers::Database;
use crate::controller::tenant::deref::{TenantDb, TenantServer};
use crate::controller::tenant::rds::login_statements;
use crate::db::DbError;
use crate::db::tenant_database::{ServerWork, inside_changes, inside_template, logins};
use crate::db::tenant_schema::SchemaWork;
use crate::db::tenant_schema_pin::pins_for_new_row;
use phoenix_catalog::schemas::SHARED_SCHEMA;

/// Records `placement` in status unless it is there already: a crash after this point
/// resumes in the same region, and cleanup knows where to look.
pub async fn record_placement(
    tenant: &Tenant,
    placement: &Placement,
    ctx: &Context,
) -> Result<(), ApplyError> {
    let recorded = tenant.status.as_ref().and_then(|s| s.placement.as_ref());
    if recorded == Some(placement) {
        return Ok(());
    }
    let mut status = tenant.status.clone().unwrap_or_default();
    status.placement = Some(placement.clone());
    status.phase = status.phase.or(Some(TenantPhase::Provisioning));
    ctx.patch_status(tenant, &status).await?;
    Ok(())
}

/// What applying a Tenant's plan did.
#[derive(Debug, Default)]
pub struct Applied {
    /// The catalog row's id, or `None` while the plan waits.
    pub catalog_id: Option<i64>,
    /// A `Dedicated` tenant's database work (its `clinical` schema's, with the server's
    /// drift first), for status and Events.
    pub dedicated: Option<Box<SchemaWork>>,
}

/// Converges a `Schema` tenant's schema or a `Dedicated` tenant's database, then the
/// catalog row. The tables are complete before the row makes the data plane serve the
/// tenant.
pub async fn apply(
    db: Option<&Arc<dyn Database>>,
    tenant_db: Option<&TenantDb>,
    own_server: Option<&TenantServer>,
    plan: &TenantPlan,
) -> Result<Applied, ApplyError> {
    let (
        TenantPlan::Converge {
            row,
            change,
            catalog_id,
            schema,
            dedicated,
        },
        Some(db),
    ) = (plan, db)
    else {
        return Ok(Applied::default());
    };
    if let Some(work) = schema
        && !work.ddl.is_empty()
    {
        let sql: Vec<String> = work.ddl.iter().flat_map(|d| d.sql.clone()).collect();
        db.execute(&sql).await?;
    }
    let mut applied = Applied::default();
    if let Some(server) = dedicated {
        let Some(TenantDb(tdb)) = tenant_db else {
            return Err(ApplyError::Database(DbError::Query {
                context: "converging the tenant's database",
                reason: format!("database {} was not opened", server.database),
            }));
        };
        match own_server {
            None => db.apply_tenant_database(server).await?,
            Some(own) => {
                prepare_own_server(own).await?;
                own.db.0.apply_tenant_database(server).await?;
            }
        }
        applied.dedicated = Some(Box::new(converge_inside(tdb.as_ref(), server).await?));
    }
    applied.catalog_id = match (change, catalog_id) {
        (RowChange::Unchanged, Some(id)) => Some(*id),
        _ => match own_server {
            // Where its database is, in the row that makes the data plane serve it.
            Some(own) => {
                let mut row = row.clone();
                row.database_server = Some(own.endpoint.clone());
                Some(db.upsert_tenant(&row).await?)
            }
            None => Some(db.upsert_tenant(row).await?),
        },
    };
    // A new Schema tenant's tables are pinned to the id its row just got.
    if let (Some(work), Some(id)) = (schema, applied.catalog_id)
        && !work.pending_pins.is_empty()
    {
        db.execute(&pins_for_new_row(&work.schema, &work.pending_pins, id))
            .await?;
    }
    Ok(applied)
}

/// On a `Dedicated` tenant's own RDS instance, before its database is made: the region's
/// data plane logins, with the password they have on the region writer (as SCRAM
/// verifiers), then a check that none of them holds BYPASSRLS or SUPERUSER there (the
/// master user cannot take those away: refused, as for a Region's roles).
async fn prepare_own_server(own: &TenantServer) -> Result<(), ApplyError> {
    let admin = own.db.0.as_ref();
    admin.execute(&login_statements(&own.logins)).await?;
    let names: Vec<&str> = own.logins.iter().map(|l| l.name.as_str()).collect();
    let state = admin.state(&names).await?;
    let attrs: Vec<(String, bool, bool)> = state
        .roles
        .iter()
        .filter(|r| names.contains(&r.name.as_str()))
        .map(|r| (r.name.clone(), r.superuser, r.bypass_rls))
        .collect();
    if let Some((name, su, _)) = attrs.iter().find(|(_, su, by)| *su || *by) {
        return Err(ApplyError::Refused(Box::new(PlanError::UnsafeRole {
            role: name.clone(),
            attribute: if *su { "SUPERUSER" } else { "BYPASSRLS" },
            login: format!("the master user of RDS instance {}", own.identifier),
        })));
    }
    Ok(())
}

/// Inside a `Dedicated` tenant's database (which `server` made exist): the catalog's
/// migrations, then the plan of its `clinical` schema against the region's template, run
/// in one transaction; what it did, the server's drift first.
pub async fn converge_inside(
    tdb: &dyn Database,
    server: &ServerWork,
) -> Result<SchemaWork, ApplyError> {
    tdb.migrate().await?;
    let mut seen = tdb.tenant_schema(SHARED_SCHEMA, &server.role).await?;
    seen.template = inside_template(&server.template);
    let logins: Vec<String> = logins(&server.template).into_iter().collect();
    let inside = tdb.tenant_database_inside(&logins).await?;
    let mut work = inside_changes(
        &server.database,
        &server.role,
        &seen,
        &inside,
        server.creates(),
    )
    .map_err(|e| ApplyError::Refused(Box::new(e.into())))?;
    let sql: Vec<String> = work.ddl.iter().flat_map(|d| d.sql.clone()).collect();
    if !sql.is_empty() {
        tdb.execute(&sql).await?;
    }
    let mut drift = server.drift.clone();
    drift.append(&mut work.drift);
    work.drift = drift;
    work.creates = server.creates();
    Ok(work)
}

/// Creates or repairs the schema of the `Schema` tenant with UID `uid` exactly as its
/// reconcile does (same observation, same plan, same statements); what it did. For tools
/// and tests.
pub async fn converge_schema(
    db: &dyn Database,
    uid: &str,
) -> Result<crate::db::tenant_schema::SchemaWork, crate::controller::error::Error> {
    let schema = phoenix_catalog::schemas::tenant_schema(uid);
    let role = phoenix_catalog::schemas::tenant_role(uid);
    let seen = db
        .tenant_schema(&schema, &role)
        .await
        .map_err(ApplyError::from)?;
    let work = crate::db::tenant_schema::schema_changes(&schema, &role, &seen)
        .map_err(crate::controller::error::PlanError::from)?;
    let sql: Vec<String> = work.ddl.iter().flat_map(|d| d.sql.clone()).collect();
    if !sql.is_empty() {
        db.execute(&sql).await.map_err(ApplyError::from)?;
    }
    Ok(work)
}

/// Creates or repairs the database of the `Dedicated` tenant with UID `uid` exactly as its
/// reconcile does (same observation, same plans, same statements): `region` is the region
/// database, `tdb` the tenant's database on the same server; what it did. For tools and
/// tests.
pub async fn converge_dedicated(
    region: &dyn Database,
    tdb: &dyn Database,
    uid: &str,
) -> Result<SchemaWork, crate::controller::error::Error> {
    let database = phoenix_catalog::schemas::tenant_database(uid);
    let role = phoenix_catalog::schemas::tenant_role(uid);
    let seen = region
        .tenant_database(&database, &role)
        .await
        .map_err(ApplyError::from)?;
    let server = crate::db::tenant_database::server_changes(&database, &role, &seen)
        .map_err(crate::controller::error::PlanError::from)?;
    region
        .apply_tenant_database(&server)
        .await
        .map_err(ApplyError::from)?;
    Ok(converge_inside(tdb, &server).await?)
}
