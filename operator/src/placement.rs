//! Where a tenant lives: chosen by data residency and capacity, pinned by `homeRegion`,
//! and never changed once made. Pure, so every rule is unit-tested without I/O.

use phoenix_crds::{Placement, RegionRole};

use crate::reason::Reason;

/// What placement needs to know about a Region.
#[derive(Clone, Debug, PartialEq)]
pub struct RegionView {
    /// Region name.
    pub name: String,
    /// AWS region.
    pub aws_region: String,
    /// Primary or Replica.
    pub role: RegionRole,
    /// Jurisdictions the region may hold.
    pub data_residency: Vec<String>,
    /// Capacity.
    pub max_tenants: i32,
    /// Tenants already placed there.
    pub tenant_count: i32,
    /// False while the Region is being deleted or is superseded by a failover: it keeps
    /// its tenants but takes no new ones.
    pub accepting: bool,
}

/// What placement needs to know about a Tenant.
#[derive(Clone, Debug, PartialEq)]
pub struct TenantRequest<'a> {
    /// Jurisdictions the tenant's data may reside in.
    pub data_residency: &'a [String],
    /// Pinned region, if any.
    pub home_region: Option<&'a str>,
    /// Placement already recorded in status; it wins.
    pub current: Option<&'a Placement>,
}

/// Why a tenant cannot be placed; each message says what to change.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlacementError {
    /// No Region's residency matches the tenant's.
    #[error(
        "no Region holds data of residency {wanted:?} (declared regions hold {available:?}); create a Region whose spec.dataResidency lists one of them or change spec.dataResidency"
    )]
    NoRegionForResidency {
        /// The tenant's jurisdictions.
        wanted: Vec<String>,
        /// Jurisdictions the declared primary regions hold.
        available: Vec<String>,
    },
    /// `homeRegion` names no Region.
    #[error("region {0} is not declared; create a Region named {0} or change spec.homeRegion")]
    RegionNotFound(String),
    /// `homeRegion` names a replica.
    #[error(
        "region {0} is a Replica and holds no writable data; set spec.homeRegion to a Primary region"
    )]
    RegionIsReplica(String),
    /// `homeRegion` names a Region being deleted.
    #[error("region {0} is being deleted and takes no new tenants; choose another spec.homeRegion")]
    RegionDeleting(String),
    /// The tenant's residency no longer allows the region it lives in.
    #[error(
        "the tenant lives in region {region}, which holds {holds:?}, but spec.dataResidency is now {wanted:?}; data is never moved silently: restore spec.dataResidency (or the Region's) or migrate the tenant to a new Tenant"
    )]
    ResidencyViolation {
        /// Where the tenant lives.
        region: String,
        /// What that region holds.
        holds: Vec<String>,
        /// What the tenant now allows.
        wanted: Vec<String>,
    },
    /// `homeRegion`'s residency does not match the tenant's.
    #[error(
        "region {region} holds {holds:?} but the tenant's dataResidency is {wanted:?}; pick a region of that residency"
    )]
    ResidencyMismatch {
        /// The pinned region.
        region: String,
        /// What it holds.
        holds: Vec<String>,
        /// What the tenant needs.
        wanted: Vec<String>,
    },
    /// Every eligible region is full.
    #[error(
        "every region for residency {wanted:?} is at capacity ({regions}); raise spec.capacity.maxTenants or add a Region"
    )]
    CapacityExhausted {
        /// The tenant's jurisdictions.
        wanted: Vec<String>,
        /// The full regions, `name (count/max)`.
        regions: String,
    },
}

impl PlacementError {
    /// The condition reason for this error.
    pub fn reason(&self) -> Reason {
        match self {
            PlacementError::NoRegionForResidency { .. } => Reason::NoRegionForResidency,
            PlacementError::RegionNotFound(_) => Reason::RegionNotFound,
            PlacementError::RegionIsReplica(_) => Reason::RegionIsReplica,
            PlacementError::RegionDeleting(_) => Reason::RegionDeleting,
            PlacementError::ResidencyViolation { .. } => Reason::ResidencyViolation,
            PlacementError::ResidencyMismatch { .. } => Reason::ResidencyMismatch,
            PlacementError::CapacityExhausted { .. } => Reason::CapacityExhausted,
        }
    }
}

fn matching_jurisdiction(region: &RegionView, wanted: &[String]) -> Option<String> {
    wanted
        .iter()
        .find(|j| region.data_residency.contains(j))
        .cloned()
}

fn placement_in(region: &RegionView, jurisdiction: String) -> Placement {
    Placement {
        region: region.name.clone(),
        aws_region: region.aws_region.clone(),
        jurisdiction,
    }
}

/// Chooses the tenant's home region.
///
/// An existing placement is kept as long as its region is declared (placement is immutable).
/// A `homeRegion` must exist, be a Primary and match the residency; capacity does not refuse a
/// pinned tenant (the user chose it). Otherwise the least-utilised eligible Primary with room
/// wins, ties broken by name so that the choice is deterministic.
pub fn place(
    tenant: &TenantRequest<'_>,
    regions: &[RegionView],
) -> Result<Placement, PlacementError> {
    let wanted = tenant.data_residency;
    if let Some(current) = tenant.current {
        // Kept even when the region is full or being deleted; but residency is re-checked,
        // since both sides of it can be edited after placement.
        let region = regions
            .iter()
            .find(|r| r.name == current.region)
            .ok_or_else(|| PlacementError::RegionNotFound(current.region.clone()))?;
        let jurisdiction = matching_jurisdiction(region, wanted).ok_or_else(|| {
            PlacementError::ResidencyViolation {
                region: region.name.clone(),
                holds: region.data_residency.clone(),
                wanted: wanted.to_vec(),
            }
        })?;
        return Ok(Placement {
            jurisdiction,
            ..current.clone()
        });
    }
    if let Some(name) = tenant.home_region {
        let region = regions
            .iter()
            .find(|r| r.name == name)
            .ok_or_else(|| PlacementError::RegionNotFound(name.to_owned()))?;
        if region.role != RegionRole::Primary {
            return Err(PlacementError::RegionIsReplica(name.to_owned()));
        }
        if !region.accepting {
            return Err(PlacementError::RegionDeleting(name.to_owned()));
        }
        let jurisdiction = matching_jurisdiction(region, wanted).ok_or_else(|| {
            PlacementError::ResidencyMismatch {
                region: name.to_owned(),
                holds: region.data_residency.clone(),
                wanted: wanted.to_vec(),
            }
        })?;
        return Ok(placement_in(region, jurisdiction));
    }
    let mut eligible: Vec<(&RegionView, String)> = regions
        .iter()
        .filter(|r| r.role == RegionRole::Primary && r.accepting)
        .filter_map(|r| matching_jurisdiction(r, wanted).map(|j| (r, j)))
        .collect();
    if eligible.is_empty() {
        let mut available: Vec<String> = regions
            .iter()
            .filter(|r| r.role == RegionRole::Primary)
            .flat_map(|r| r.data_residency.iter().cloned())
            .collect();
        available.sort();
        available.dedup();
        return Err(PlacementError::NoRegionForResidency {
            wanted: wanted.to_vec(),
            available,
        });
    }
    let full: Vec<String> = eligible
        .iter()
        .filter(|(r, _)| r.tenant_count >= r.max_tenants)
        .map(|(r, _)| format!("{} ({}/{})", r.name, r.tenant_count, r.max_tenants))
        .collect();
    eligible.retain(|(r, _)| r.tenant_count < r.max_tenants);
    eligible.sort_by(|(a, _), (b, _)| {
        let ua = f64::from(a.tenant_count) / f64::from(a.max_tenants.max(1));
        let ub = f64::from(b.tenant_count) / f64::from(b.max_tenants.max(1));
        ua.total_cmp(&ub).then_with(|| a.name.cmp(&b.name))
    });
    match eligible.into_iter().next() {
        Some((region, jurisdiction)) => Ok(placement_in(region, jurisdiction)),
        None => Err(PlacementError::CapacityExhausted {
            wanted: wanted.to_vec(),
            regions: full.join(", "),
        }),
    }
}

/// Jurisdictions a replica would receive that its own residency does not allow: a
/// streaming replica carries every row of its source, so the source's residency must be
/// a subset of the replica's.
pub fn replica_residency_violations(source: &[String], replica: &[String]) -> Vec<String> {
    source
        .iter()
        .filter(|j| !replica.contains(j))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(name: &str, residency: &[&str], count: i32, max: i32) -> RegionView {
        RegionView {
            name: name.to_owned(),
            aws_region: name.to_owned(),
            role: RegionRole::Primary,
            data_residency: residency.iter().map(|s| (*s).to_owned()).collect(),
            max_tenants: max,
            tenant_count: count,
            accepting: true,
        }
    }

    fn req<'a>(
        residency: &'a [String],
        home: Option<&'a str>,
        current: Option<&'a Placement>,
    ) -> TenantRequest<'a> {
        TenantRequest {
            data_residency: residency,
            home_region: home,
            current,
        }
    }

    fn residency(r: &[&str]) -> Vec<String> {
        r.iter().map(|s| (*s).to_owned()).collect()
    }

    fn regions() -> Vec<RegionView> {
        vec![
            region("us-east-1", &["US"], 10, 100),
            region("eu-west-1", &["EU"], 0, 100),
            region("ap-southeast-1", &["APAC"], 0, 100),
        ]
    }

    #[test]
    fn eu_tenant_is_placed_only_in_an_eu_region() {
        let r = residency(&["EU"]);
        let p = place(&req(&r, None, None), &regions()).expect("placed");
        assert_eq!(p.region, "eu-west-1");
        assert_eq!(p.jurisdiction, "EU");
    }

    #[test]
    fn residency_no_region_satisfies_is_refused_not_placed_elsewhere() {
        let r = residency(&["CA"]);
        let err = place(&req(&r, None, None), &regions()).unwrap_err();
        assert_eq!(err.reason(), Reason::NoRegionForResidency);
        assert!(err.to_string().contains("\"CA\""), "{err}");
    }

    #[test]
    fn least_utilised_region_wins_and_full_regions_are_skipped() {
        let rs = vec![
            region("us-a", &["US"], 50, 100),
            region("us-b", &["US"], 10, 100),
            region("us-c", &["US"], 5, 5),
        ];
        let r = residency(&["US"]);
        let p = place(&req(&r, None, None), &rs).expect("placed");
        assert_eq!(p.region, "us-b");
    }

    #[test]
    fn ties_are_broken_by_name() {
        let rs = vec![
            region("us-b", &["US"], 0, 10),
            region("us-a", &["US"], 0, 10),
        ];
        let r = residency(&["US"]);
        let p = place(&req(&r, None, None), &rs).expect("placed");
        assert_eq!(p.region, "us-a");
    }

    #[test]
    fn all_eligible_regions_full_is_capacity_exhausted() {
        let rs = vec![region("us-a", &["US"], 3, 3), region("eu", &["EU"], 0, 3)];
        let r = residency(&["US"]);
        let err = place(&req(&r, None, None), &rs).unwrap_err();
        assert_eq!(err.reason(), Reason::CapacityExhausted);
        assert!(err.to_string().contains("us-a (3/3)"), "{err}");
    }

    #[test]
    fn replicas_never_receive_tenants() {
        let mut replica = region("eu-replica", &["EU"], 0, 100);
        replica.role = RegionRole::Replica;
        let r = residency(&["EU"]);
        let err = place(&req(&r, None, None), &[replica.clone()]).unwrap_err();
        assert_eq!(err.reason(), Reason::NoRegionForResidency);
        let pinned = place(&req(&r, Some("eu-replica"), None), &[replica]).unwrap_err();
        assert_eq!(pinned.reason(), Reason::RegionIsReplica);
    }

    #[test]
    fn home_region_pins_the_tenant_even_when_another_is_emptier() {
        let rs = vec![
            region("us-a", &["US"], 90, 100),
            region("us-b", &["US"], 0, 100),
        ];
        let r = residency(&["US"]);
        let p = place(&req(&r, Some("us-a"), None), &rs).expect("placed");
        assert_eq!(p.region, "us-a");
    }

    #[test]
    fn home_region_must_exist_and_match_residency() {
        let r = residency(&["EU"]);
        let missing = place(&req(&r, Some("eu-central-1"), None), &regions()).unwrap_err();
        assert_eq!(missing.reason(), Reason::RegionNotFound);
        assert!(
            missing
                .to_string()
                .contains("create a Region named eu-central-1")
        );
        let mismatch = place(&req(&r, Some("us-east-1"), None), &regions()).unwrap_err();
        assert_eq!(mismatch.reason(), Reason::ResidencyMismatch);
    }

    #[test]
    fn existing_placement_is_kept_even_if_capacity_changed() {
        let current = Placement {
            region: "us-east-1".into(),
            aws_region: "us-east-1".into(),
            jurisdiction: "US".into(),
        };
        let rs = vec![
            region("us-east-1", &["US"], 100, 100),
            region("us-west-2", &["US"], 0, 100),
        ];
        let r = residency(&["US"]);
        let p = place(&req(&r, None, Some(&current)), &rs).expect("kept");
        assert_eq!(p, current);
    }

    #[test]
    fn existing_placement_in_a_deleted_region_is_reported() {
        let current = Placement {
            region: "gone".into(),
            aws_region: "x".into(),
            jurisdiction: "US".into(),
        };
        let r = residency(&["US"]);
        let err = place(&req(&r, None, Some(&current)), &regions()).unwrap_err();
        assert_eq!(err, PlacementError::RegionNotFound("gone".into()));
    }

    #[test]
    fn a_region_being_deleted_keeps_its_tenants_but_takes_no_new_ones() {
        let mut going = region("us-a", &["US"], 1, 100);
        going.accepting = false;
        let rs = vec![going, region("us-b", &["US"], 50, 100)];
        let r = residency(&["US"]);
        let current = Placement {
            region: "us-a".into(),
            aws_region: "us-a".into(),
            jurisdiction: "US".into(),
        };
        let kept = place(&req(&r, None, Some(&current)), &rs);
        assert_eq!(kept, Ok(current));
        let new = place(&req(&r, None, None), &rs).expect("placed");
        assert_eq!(new.region, "us-b");
        let pinned = place(&req(&r, Some("us-a"), None), &rs);
        assert_eq!(pinned.map_err(|e| e.reason()), Err(Reason::RegionDeleting));
    }

    #[test]
    fn residency_changed_after_placement_is_a_violation_not_a_move() {
        let current = Placement {
            region: "us-east-1".into(),
            aws_region: "us-east-1".into(),
            jurisdiction: "US".into(),
        };
        let r = residency(&["EU"]);
        let err = place(&req(&r, None, Some(&current)), &regions()).unwrap_err();
        assert_eq!(err.reason(), Reason::ResidencyViolation);
        assert!(err.to_string().contains("never moved silently"), "{err}");
    }

    #[test]
    fn a_replica_may_only_follow_a_region_whose_data_it_may_hold() {
        let eu = residency(&["EU"]);
        let us_eu = residency(&["US", "EU"]);
        assert!(replica_residency_violations(&eu, &us_eu).is_empty());
        assert_eq!(
            replica_residency_violations(&us_eu, &eu),
            residency(&["US"])
        );
    }
}
