//! Where a Tenant goes, decided against the Regions and Tenants the operator sees, with
//! the decisions this process made that the caches may not show yet. The rules themselves
//! are the pure [`crate::placement::place`].

use std::collections::HashMap;
use std::sync::Arc;

use kube::ResourceExt;
use phoenix_crds::{Placement, Region, Tenant};

use crate::controller::context::Context;
use crate::placement::{self, PlacementError, RegionView, TenantRequest};

/// The views placement needs, with counts from placed tenants plus decisions this process
/// made that the store may not show yet.
fn region_views(
    regions: &[Arc<Region>],
    tenants: &[Arc<Tenant>],
    pending: &HashMap<String, String>,
) -> Vec<RegionView> {
    let mut counts: HashMap<&str, (i32, std::collections::HashSet<String>)> = HashMap::new();
    for t in tenants {
        if let Some(p) = t.status.as_ref().and_then(|s| s.placement.as_ref()) {
            let e = counts.entry(p.region.as_str()).or_default();
            e.0 += 1;
            e.1.insert(t.uid().unwrap_or_default());
        }
    }
    for (uid, region) in pending {
        let e = counts.entry(region.as_str()).or_default();
        if !e.1.contains(uid) {
            e.0 += 1;
        }
    }
    regions
        .iter()
        .map(|r| RegionView {
            // A Region superseded by a failover takes no new tenants either (ADR 0011).
            accepting: r.metadata.deletion_timestamp.is_none()
                && crate::controller::region::failover::record_of(r)
                    .superseded_by
                    .is_none(),
            name: r.name_any(),
            aws_region: r.spec.aws_region.clone(),
            role: r.spec.role,
            data_residency: r.spec.data_residency.clone(),
            max_tenants: r.spec.capacity.max_tenants,
            tenant_count: counts.get(r.name_any().as_str()).map_or(0, |c| c.0),
        })
        .collect()
}

/// Places the tenant against `regions` and `tenants`, counting the decisions in `pending`
/// (by UID) that the caches may not show yet, and records the decision there.
pub fn place_in(
    tenant: &Tenant,
    regions: &[Arc<Region>],
    tenants: &[Arc<Tenant>],
    pending: &mut HashMap<String, String>,
) -> Result<Placement, PlacementError> {
    let uid = tenant.uid().unwrap_or_default();
    // A decision this process made whose status write the store may not show yet counts
    // as the current placement, unless the user pinned another region meanwhile.
    let pending_placement = pending.get(&uid).and_then(|region| {
        let pinned_elsewhere = tenant
            .spec
            .home_region
            .as_deref()
            .is_some_and(|h| h != region);
        let r = regions.iter().find(|r| r.name_any() == *region)?;
        (!pinned_elsewhere).then(|| Placement {
            region: region.clone(),
            aws_region: r.spec.aws_region.clone(),
            jurisdiction: String::new(),
        })
    });
    let current = tenant
        .status
        .as_ref()
        .and_then(|s| s.placement.clone())
        .or(pending_placement);
    let views = region_views(regions, tenants, pending);
    let request = TenantRequest {
        data_residency: &tenant.spec.data_residency,
        home_region: tenant.spec.home_region.as_deref(),
        current: current.as_ref(),
    };
    let placement = placement::place(&request, &views)?;
    pending.insert(uid, placement.region.clone());
    Ok(placement)
}

/// Places the tenant, serialised so that concurrent reconciles respect capacity.
pub(super) async fn place(tenant: &Tenant, ctx: &Context) -> Result<Placement, PlacementError> {
    let mut pending = ctx.placements.lock().await;
    place_in(
        tenant,
        &ctx.regions.state(),
        &ctx.tenants.state(),
        &mut pending,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use phoenix_crds::RegionSpec;

    fn region(name: &str, residency: &str, max: i32) -> Arc<Region> {
        let spec: RegionSpec = serde_json::from_value(serde_json::json!({
            "awsRegion": "us-east-1", "dataResidency": [residency],
            "database": {"writer": {"host": "127.0.0.1", "credentialsSecretRef": {"namespace": "n", "name": "s", "key": "k"}}},
            "capacity": {"maxTenants": max}
        }))
        .expect("valid spec");
        Arc::new(Region::new(name, spec))
    }

    #[test]
    fn pending_decisions_count_against_capacity() {
        let regions = vec![region("us-a", "US", 1), region("us-b", "US", 1)];
        let pending = HashMap::from([("uid-1".to_owned(), "us-a".to_owned())]);
        let views = region_views(&regions, &[], &pending);
        let a = views.iter().find(|v| v.name == "us-a").expect("us-a");
        assert_eq!(a.tenant_count, 1);
        let r = vec!["US".to_owned()];
        let p = placement::place(
            &TenantRequest {
                data_residency: &r,
                home_region: None,
                current: None,
            },
            &views,
        )
        .expect("placed");
        assert_eq!(p.region, "us-b");
    }
}
