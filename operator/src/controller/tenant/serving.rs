//! Which Region serves a Tenant after a failover (ADR 0011): its home, or the Region
//! promoted in the home's place. Reported as `status.servingRegion`, on `DatabaseReady`
//! (reason `FailedOver`) and with a `FailedOver` Event when it changes.

use kube::ResourceExt;
use phoenix_crds::{Placement, Region, Tenant, TenantStatus};

use crate::conditions::types;
use crate::controller::context::EventSpec;
use crate::controller::region::failover::{record_of, serving_region};
use crate::reason::Reason;

/// Whether a change of `region` concerns `tenant`: it was promoted in place of the
/// tenant's home (or of a Region promoted in its place) and does not serve it yet.
pub fn newly_serves(region: &Region, tenant: &Tenant) -> bool {
    let Some(status) = tenant.status.as_ref() else {
        return false;
    };
    let rec = record_of(region);
    rec.promoted_from.is_some()
        && status.serving_region.as_deref() != Some(region.name_any().as_str())
        && status.placement.as_ref().is_some_and(|p| {
            rec.promoted_from.as_deref() == Some(p.region.as_str())
                || status.serving_region.as_deref() == rec.promoted_from.as_deref()
        })
}

/// Records in `status` which Region serves the tenant placed by `placement`.
pub fn report(
    status: &mut TenantStatus,
    events: &mut Vec<EventSpec>,
    tenant: &Tenant,
    placement: &Placement,
    regions: &[std::sync::Arc<Region>],
) {
    let home = regions.iter().find(|r| r.name_any() == placement.region);
    let serving = home.and_then(|h| serving_region(regions, h));
    let Some(serving) = serving else {
        status.serving_region = None;
        return;
    };
    let name = serving.name_any();
    let rec = record_of(&serving);
    let note = format!(
        "; served by region {name}, promoted in place of region {} at {} (failover)",
        rec.promoted_from.as_deref().unwrap_or("?"),
        rec.promoted_at.as_deref().unwrap_or("?"),
    );
    for c in &mut status.conditions {
        if c.type_ == types::DATABASE_READY {
            c.reason = Reason::FailedOver.as_str().to_owned();
            if !c.message.contains(&note) {
                c.message.push_str(&note);
            }
        }
    }
    let before = tenant
        .status
        .as_ref()
        .and_then(|s| s.serving_region.as_deref());
    if before != Some(name.as_str()) {
        events.push(EventSpec::normal(
            Reason::FailedOver,
            "Failover",
            format!(
                "region {} was superseded: the tenant is now served by region {name}'s database",
                placement.region
            ),
        ));
    }
    status.serving_region = Some(name);
}
