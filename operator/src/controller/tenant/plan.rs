//! The Tenant's plan: pure. What its catalog row must be, how it differs from the row the
//! region holds, and what the tenant waits on.

use std::sync::Arc;

use kube::ResourceExt;
use phoenix_catalog::{TenantRecord, TenantRow, TenantState};
use phoenix_crds::{Isolation, Placement, Tenant};

use super::deref::TenantRefs;
use crate::controller::error::PlanError;
use crate::db::rls::drift;
use crate::reason::Reason;

/// How the catalog row changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RowChange {
    /// The row is created: the data plane starts serving the tenant.
    Insert,
    /// These fields change.
    Update(Vec<&'static str>),
    /// Nothing changes.
    Unchanged,
}

/// What a Tenant's reconcile does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TenantPlan {
    /// Nothing can be written yet.
    Wait {
        /// Why.
        reason: Reason,
        /// What it waits for.
        message: String,
    },
    /// The catalog row converges.
    Converge {
        /// The row as it must be.
        row: TenantRow,
        /// How the stored row changes.
        change: RowChange,
        /// Its catalog id, when it exists.
        catalog_id: Option<i64>,
    },
}

/// The catalog row of `tenant` placed at `placement`.
pub fn catalog_row(tenant: &Tenant, placement: &Placement) -> TenantRow {
    TenantRow {
        uid: tenant.uid().unwrap_or_default(),
        name: tenant.name_any(),
        display_name: tenant.spec.display_name.clone(),
        hostname: tenant.spec.dns.hostname.to_lowercase(),
        home_region: placement.region.clone(),
        data_residency: tenant.spec.data_residency.clone(),
        isolation: match tenant.spec.database.isolation {
            Isolation::Shared => phoenix_catalog::Isolation::Shared,
            Isolation::Schema => phoenix_catalog::Isolation::Schema,
            Isolation::Dedicated => phoenix_catalog::Isolation::Dedicated,
        },
        state: if tenant.spec.suspended {
            TenantState::Suspended
        } else {
            TenantState::Active
        },
        requests_per_second: tenant.spec.limits.requests_per_second,
        max_users: tenant.spec.limits.max_users,
        generation: tenant.metadata.generation.unwrap_or(0),
    }
}

/// How `stored` must change to become `desired`. The home region and isolation never
/// change once written; the generation alone does not touch the row (the data plane would
/// be notified for nothing).
pub fn row_change(stored: Option<&TenantRecord>, desired: &TenantRow) -> RowChange {
    let Some(stored) = stored else {
        return RowChange::Insert;
    };
    let s = &stored.row;
    let mut fields = Vec::new();
    if s.display_name != desired.display_name {
        fields.push("displayName");
    }
    if s.hostname != desired.hostname {
        fields.push("hostname");
    }
    if s.data_residency != desired.data_residency {
        fields.push("dataResidency");
    }
    if s.state != desired.state {
        fields.push("state");
    }
    if s.requests_per_second != desired.requests_per_second {
        fields.push("requestsPerSecond");
    }
    if s.max_users != desired.max_users {
        fields.push("maxUsers");
    }
    if fields.is_empty() {
        RowChange::Unchanged
    } else {
        RowChange::Update(fields)
    }
}

/// A host name must be unique across every region, not only within one region's catalog:
/// the oldest Tenant claiming it keeps it.
pub fn hostname_owner(tenant: &Tenant, tenants: &[Arc<Tenant>]) -> Option<String> {
    let host = tenant.spec.dns.hostname.to_lowercase();
    let key = |t: &Tenant| {
        (
            t.metadata.creation_timestamp.clone().map(|c| c.0),
            t.name_any(),
        )
    };
    tenants
        .iter()
        .filter(|t| t.uid() != tenant.uid() && t.metadata.deletion_timestamp.is_none())
        .filter(|t| t.spec.dns.hostname.to_lowercase() == host)
        .filter(|t| key(t) < key(tenant))
        .map(|t| t.name_any())
        .min()
}

/// What must hold before a tenant is even placed.
pub fn precheck(tenant: &Tenant, tenants: &[Arc<Tenant>]) -> Result<(), PlanError> {
    if tenant.spec.database.isolation != Isolation::Shared {
        return Err(PlanError::NotImplemented(
            "spec.database.isolation Schema and Dedicated (use Shared)",
        ));
    }
    if let Some(owner) = hostname_owner(tenant, tenants) {
        return Err(PlanError::HostnameTaken {
            hostname: tenant.spec.dns.hostname.clone(),
            owner,
        });
    }
    Ok(())
}

/// Plans a placed tenant's pass.
pub fn plan(
    tenant: &Tenant,
    placement: &Placement,
    refs: &TenantRefs,
) -> Result<TenantPlan, PlanError> {
    let region = &placement.region;
    if let Some(why) = &refs.region_not_ready {
        return Ok(TenantPlan::Wait {
            reason: Reason::RegionNotReady,
            message: format!("region {region} is not Ready: {why}"),
        });
    }
    let Some(seen) = &refs.seen else {
        return Ok(TenantPlan::Wait {
            reason: Reason::RegionNotReady,
            message: format!("region {region} is not Ready: its database was not read"),
        });
    };
    let latest = phoenix_catalog::latest_version();
    if seen.schema_version < latest {
        return Ok(TenantPlan::Wait {
            reason: Reason::RegionNotMigrated,
            message: format!(
                "region {region} database is at schema version {}, waiting for {latest}",
                seen.schema_version
            ),
        });
    }
    // Isolation first: a catalog row makes the data plane serve the tenant.
    let drifted: Vec<String> = phoenix_catalog::TENANT_TABLES
        .iter()
        .filter_map(|table| match seen.rls.iter().find(|s| s.table == *table) {
            None => Some(format!("{table}: table missing")),
            Some(state) => {
                let d = drift(state);
                (!d.is_empty()).then(|| {
                    let d: Vec<String> = d.iter().map(ToString::to_string).collect();
                    format!("{table}: {}", d.join(", "))
                })
            }
        })
        .collect();
    if !drifted.is_empty() {
        return Ok(TenantPlan::Wait {
            reason: Reason::RLSDrift,
            message: format!(
                "row level security on the shared tables is not in force ({}); region {region} repairs it",
                drifted.join("; ")
            ),
        });
    }
    let row = catalog_row(tenant, placement);
    if let Some(owner) = &seen.rows.hostname_owner {
        return Err(PlanError::HostnameTaken {
            hostname: row.hostname,
            owner: owner.clone(),
        });
    }
    if let Some(owner_uid) = &seen.rows.name_owner {
        return Err(PlanError::NameTaken {
            name: row.name,
            owner_uid: owner_uid.clone(),
        });
    }
    let change = row_change(seen.rows.own.as_ref(), &row);
    Ok(TenantPlan::Converge {
        catalog_id: seen.rows.own.as_ref().map(|r| r.id),
        row,
        change,
    })
}
