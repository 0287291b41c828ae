//! Applying a Tenant's plan: the placement is recorded before anything is written, then
//! the catalog row converges.

use std::sync::Arc;

use phoenix_crds::{Placement, Tenant, TenantPhase};

use super::plan::{RowChange, TenantPlan};
use crate::controller::context::Context;
use crate::controller::error::ApplyError;
use crate::controller::providers::Database;

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

/// Converges a `Schema` tenant's schema, then the catalog row; the row's id, or `None`
/// while the plan waits. The schema is complete before the row makes the data plane serve
/// the tenant.
pub async fn apply(
    db: Option<&Arc<dyn Database>>,
    plan: &TenantPlan,
) -> Result<Option<i64>, ApplyError> {
    let (
        TenantPlan::Converge {
            row,
            change,
            catalog_id,
            schema,
        },
        Some(db),
    ) = (plan, db)
    else {
        return Ok(None);
    };
    if let Some(work) = schema
        && !work.ddl.is_empty()
    {
        let sql: Vec<String> = work.ddl.iter().flat_map(|d| d.sql.clone()).collect();
        db.execute(&sql).await?;
    }
    match (change, catalog_id) {
        (RowChange::Unchanged, Some(id)) => Ok(Some(*id)),
        _ => Ok(Some(db.upsert_tenant(row).await?)),
    }
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
