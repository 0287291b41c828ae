//! A Region's part of DNS: its hosted zone resolved, one Route53 health check probing its
//! ingress (found by a caller reference derived from the Region's UID, so a crash between
//! create and status never makes a second one), and on deletion its latency records
//! removed before the health check goes.

use kube::ResourceExt;
use phoenix_crds::Region;
use phoenix_crds::region::RegionDnsStatus;

use crate::conditions::{NewCondition, Status, types};
use crate::controller::context::EventSpec;
use crate::controller::world::World;
use crate::dns::{DnsError, HealthCheckOutcome, HealthCheckSpec, Zone, ZoneRef, fqdn, ownership};
use crate::reason::Reason;

/// The caller reference of `region`'s health check: from its UID, so a Region deleted
/// and re-created gets a new one (Route53 refuses a reference used before).
pub fn caller_reference(region: &Region) -> String {
    format!(
        "phoenix-{}",
        region.uid().unwrap_or_else(|| region.name_any())
    )
}

/// How `spec.dns` names the zone.
pub fn zone_ref(dns: &phoenix_crds::region::RegionDns) -> Option<ZoneRef> {
    match (&dns.hosted_zone_id, &dns.zone_name) {
        (Some(id), _) => Some(ZoneRef::Id(id.clone())),
        (None, Some(name)) => Some(ZoneRef::Name(name.clone())),
        (None, None) => None,
    }
}

/// The zone the status shows, when it is the one `spec.dns` names: no lookup needed. A
/// different zone in the spec (or none in status) is looked up again.
fn known_zone(zone_ref: &ZoneRef, status: &RegionDnsStatus) -> Option<Zone> {
    let zone = Zone {
        id: status.hosted_zone_id.clone()?,
        name: status.zone_name.clone()?,
    };
    let same = match zone_ref {
        ZoneRef::Id(id) => id.trim_start_matches("/hostedzone/") == zone.id,
        ZoneRef::Name(name) => fqdn(name) == zone.name,
    };
    same.then_some(zone)
}

/// What the Region's DNS pass found and did.
#[derive(Debug)]
pub struct RegionDns {
    /// `status.dns`.
    pub status: RegionDnsStatus,
    /// The `DNSReady` condition.
    pub condition: NewCondition,
    /// Events of what changed.
    pub events: Vec<EventSpec>,
}

/// Resolves the zone and converges the ingress health check; `None` when the Region has
/// no `spec.dns`. A failure is reported in the condition, never fails the Region.
pub async fn converge(region: &Region, world: &World<'_>) -> Option<RegionDns> {
    let dns = region.spec.dns.as_ref()?;
    let ingress = region.spec.ingress.as_ref()?;
    let current = region
        .status
        .as_ref()
        .and_then(|s| s.dns.clone())
        .unwrap_or_default();
    let failed = |reason: Reason, e: DnsError| RegionDns {
        status: current.clone(),
        condition: NewCondition::new(types::DNS_READY, Status::False, reason, e.to_string()),
        events: vec![EventSpec::warning(reason, "Reconcile", e.to_string())],
    };
    let zone_ref = zone_ref(dns)?;
    let zone = match known_zone(&zone_ref, &current) {
        Some(z) => Ok(z),
        None => world.providers.dns.zone(&zone_ref).await,
    };
    let zone = match zone {
        Ok(z) => z,
        Err(e @ (DnsError::ZoneNotFound(_) | DnsError::ZoneAmbiguous { .. })) => {
            return Some(failed(Reason::ZoneNotFound, e));
        }
        Err(e) => return Some(failed(Reason::Route53Error, e)),
    };
    let spec = HealthCheckSpec {
        caller_reference: caller_reference(region),
        fqdn: ingress.hostname.clone(),
        path: ingress.health_check_path.clone(),
        owner: world.settings.dns_owner.clone(),
        region: region.name_any(),
        known_id: current.health_check_id.clone(),
    };
    let outcome = match world.providers.dns.ensure_health_check(&spec).await {
        Ok(o) => o,
        Err(e) => return Some(failed(Reason::Route53Error, e)),
    };
    let id = outcome.id().to_owned();
    let target = format!("https://{}{}", spec.fqdn, spec.path);
    let events = match &outcome {
        HealthCheckOutcome::Unchanged(_) => Vec::new(),
        HealthCheckOutcome::Created(_) => vec![EventSpec::normal(
            Reason::HealthCheckCreated,
            "Reconcile",
            format!("Route53 health check {id} created for {target}"),
        )],
        HealthCheckOutcome::Updated(_) => vec![EventSpec::normal(
            Reason::HealthCheckUpdated,
            "Reconcile",
            format!("Route53 health check {id} now probes {target}"),
        )],
    };
    Some(RegionDns {
        status: RegionDnsStatus {
            hosted_zone_id: Some(zone.id.clone()),
            zone_name: Some(zone.name.clone()),
            health_check_id: Some(id.clone()),
        },
        condition: NewCondition::new(
            types::DNS_READY,
            Status::True,
            Reason::HealthCheckReady,
            format!(
                "zone {} ({}); health check {id} probes {target}",
                zone.name, zone.id
            ),
        ),
        events,
    })
}

/// On deletion: removes the latency records of this Region that the operator owns, then
/// its health check. Returns what was done, for the Event.
pub async fn release(region: &Region, world: &World<'_>) -> Result<Option<String>, DnsError> {
    let Some(dns) = &region.spec.dns else {
        return Ok(None);
    };
    let name = region.name_any();
    let dns_api = &world.providers.dns;
    let mut removed = 0;
    if let Some(zone_ref) = zone_ref(dns) {
        match dns_api.zone(&zone_ref).await {
            Ok(zone) => {
                let seen = dns_api.records(&zone.id).await?;
                let changes = ownership::region_records(&seen, &world.settings.dns_owner, &name);
                removed = changes.len();
                if !changes.is_empty() {
                    let applied = dns_api.change(&zone.id, changes).await?;
                    if let Some(r) = applied.rejected.first() {
                        return Err(DnsError::Api {
                            operation: "ChangeResourceRecordSets",
                            message: format!("{}: {}", r.change.record.label(), r.message),
                        });
                    }
                }
            }
            // No zone, no records of ours in it.
            Err(DnsError::ZoneNotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    let deleted = dns_api
        .delete_health_check(&caller_reference(region))
        .await?;
    Ok(Some(format!(
        "removed {removed} latency record(s) of region {name}{}",
        deleted
            .map(|id| format!(" and its health check {id}"))
            .unwrap_or_default()
    )))
}
