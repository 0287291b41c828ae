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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use phoenix_crds::region::RegionFailoverStatus;
    use phoenix_crds::{Condition, RegionStatus};

    use super::*;

    fn region(name: &str, promoted_from: Option<&str>) -> Arc<Region> {
        let spec = serde_json::from_value(serde_json::json!({
            "awsRegion": "eu-west-1", "dataResidency": ["EU"],
            "database": {"writer": {"connectionSecretRef": {"namespace": "ops", "name": "db", "key": "dsn"}}}
        }))
        .expect("spec");
        let mut r = Region::new(name, spec);
        r.status = Some(RegionStatus {
            failover: promoted_from.map(|from| RegionFailoverStatus {
                promoted_from: Some(from.into()),
                promoted_at: Some("2026-11-24T09:00:00Z".into()),
                ..Default::default()
            }),
            ..Default::default()
        });
        Arc::new(r)
    }

    fn tenant(home: &str, serving: Option<&str>) -> Tenant {
        let spec = serde_json::from_value(serde_json::json!({
            "displayName": "x", "dataResidency": ["EU"], "dns": {"hostname": "x.example.test"}
        }))
        .expect("spec");
        let mut t = Tenant::new("t", spec);
        t.status = Some(TenantStatus {
            placement: Some(placement(home)),
            serving_region: serving.map(str::to_owned),
            conditions: vec![Condition {
                type_: types::DATABASE_READY.into(),
                status: "True".into(),
                reason: Reason::CatalogEntryReady.as_str().into(),
                message: format!("catalog id 1 in region {home}"),
                last_transition_time: "2026-11-24T08:00:00Z".into(),
                observed_generation: None,
            }],
            ..Default::default()
        });
        t
    }

    fn placement(region: &str) -> Placement {
        Placement {
            region: region.into(),
            aws_region: "eu-west-1".into(),
            jurisdiction: "EU".into(),
        }
    }

    #[test]
    fn a_tenant_of_a_superseded_region_reports_the_promoted_one_once_with_an_event() {
        let regions = vec![region("a", None), region("b", Some("a"))];
        let t = tenant("a", None);
        assert!(newly_serves(&regions[1], &t));
        assert!(!newly_serves(&regions[0], &t), "a promoted nobody");
        let mut status = t.status.clone().expect("status");
        let mut events = Vec::new();
        report(&mut status, &mut events, &t, &placement("a"), &regions);
        assert_eq!(status.serving_region.as_deref(), Some("b"));
        let c = &status.conditions[0];
        assert_eq!(c.reason, "FailedOver");
        assert!(c.message.ends_with("served by region b, promoted in place of region a at 2026-11-24T09:00:00Z (failover)"), "{}", c.message);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].reason, Reason::FailedOver);
        // Reported already: no new Event, and the wake-up stops.
        let t = tenant("a", Some("b"));
        assert!(!newly_serves(&regions[1], &t));
        let mut status = t.status.clone().expect("status");
        let mut events = Vec::new();
        report(&mut status, &mut events, &t, &placement("a"), &regions);
        assert!(events.is_empty());
        // Without a failover: nothing is served elsewhere.
        let regions = vec![region("a", None)];
        let mut status = t.status.clone().expect("status");
        report(&mut status, &mut events, &t, &placement("a"), &regions);
        assert_eq!(status.serving_region, None);
        assert_eq!(status.conditions[0].reason, "CatalogEntryReady");
    }
}
