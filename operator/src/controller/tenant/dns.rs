//! A Tenant's DNS: its latency records (one per Region its residency allows) and its
//! ownership record, converged in the Regions' hosted zone, and removed on deletion.
//! Reported as the `DNSReady` condition, which does not hold `Ready` back: the data
//! plane serves the tenant by its Host header whatever resolves it.

use std::sync::Arc;

use kube::ResourceExt;
use phoenix_crds::tenant::TenantDnsStatus;
use phoenix_crds::{Region, Tenant};

use crate::conditions::{NewCondition, Status, types};
use crate::controller::context::EventSpec;
use crate::controller::region::failover::serving_region;
use crate::controller::world::World;
use crate::dns::records::{self, NoRecords, RegionTarget};
use crate::dns::{Action, Change, DnsError, RecordSet, Zone, fqdn, ownership};
use crate::reason::Reason;

/// The Regions tenants may get records in ([`targets_of`] the world's Regions).
pub fn targets(world: &World<'_>) -> Vec<RegionTarget> {
    targets_of(&world.regions)
}

/// The Regions tenants may get records in: those with `spec.dns` and `spec.ingress`, not
/// being deleted, with the zone and health check their status shows (if any yet). A Region
/// superseded by a failover serves nobody (ADR 0011): its latency record (same set
/// identifier and latency region, so clients it was nearest keep an answer) points at the
/// ingress of the Region now serving in its place, under that Region's health check, for
/// the tenants both Regions' residencies allow; when the serving Region declares no DNS,
/// or is being deleted, the superseded Region's records go.
pub fn targets_of(regions: &[Arc<Region>]) -> Vec<RegionTarget> {
    regions
        .iter()
        .filter(|r| r.metadata.deletion_timestamp.is_none())
        .filter_map(|r| {
            let own = target(r)?;
            if !superseded(r) {
                return Some(own);
            }
            let serving = serving_region(regions, r)
                .filter(|s| s.metadata.deletion_timestamp.is_none() && !superseded(s))?;
            let to = target(&serving)?;
            Some(RegionTarget {
                residency: own
                    .residency
                    .iter()
                    .filter(|j| to.residency.contains(j))
                    .cloned()
                    .collect(),
                ingress: to.ingress,
                zone: own.zone.or(to.zone),
                health_check_id: to.health_check_id,
                ..own
            })
        })
        .collect()
}

fn superseded(r: &Region) -> bool {
    r.status
        .as_ref()
        .and_then(|s| s.failover.as_ref())
        .is_some_and(|f| f.superseded_by.is_some())
}

/// `r` as a DNS target of its own, when it declares `spec.dns` and `spec.ingress`.
fn target(r: &Region) -> Option<RegionTarget> {
    r.spec.dns.as_ref()?;
    let ingress = r.spec.ingress.as_ref()?;
    let dns = r.status.as_ref().and_then(|s| s.dns.as_ref());
    Some(RegionTarget {
        name: r.name_any(),
        aws_region: r.spec.aws_region.clone(),
        residency: r.spec.data_residency.clone(),
        ingress: ingress.hostname.clone(),
        zone: dns.and_then(|d| {
            Some(Zone {
                id: d.hosted_zone_id.clone()?,
                name: d.zone_name.clone()?,
            })
        }),
        health_check_id: dns.and_then(|d| d.health_check_id.clone()),
    })
}

/// What the tenant's DNS pass found and did.
#[derive(Debug)]
pub struct TenantDns {
    /// `DNSReady`.
    pub condition: NewCondition,
    /// Events of what changed (a failure's Warning is filtered by the caller).
    pub events: Vec<EventSpec>,
    /// Whether to look again soon (waiting for a health check, Route53 failed).
    pub retry: bool,
    /// The records now published, for `status.dns`; `None` leaves it as it was.
    pub published: Option<TenantDnsStatus>,
}

fn not_ready(reason: Reason, message: impl Into<String>, retry: bool) -> TenantDns {
    let message = message.into();
    TenantDns {
        condition: NewCondition::new(types::DNS_READY, Status::False, reason, message.clone()),
        events: vec![EventSpec::warning(reason, "DNS", message)],
        retry,
        published: None,
    }
}

/// What the tenant published before (its `status.dns`).
fn previous(tenant: &Tenant) -> Option<&TenantDnsStatus> {
    tenant.status.as_ref().and_then(|s| s.dns.as_ref())
}

/// Sends `changes` to the zone; the condition saying why when Route53 failed or refused
/// one of them.
async fn send(world: &World<'_>, zone_id: &str, changes: Vec<Change>) -> Result<(), TenantDns> {
    if changes.is_empty() {
        return Ok(());
    }
    let applied = world
        .providers
        .dns
        .change(zone_id, changes)
        .await
        .map_err(|e| not_ready(Reason::Route53Error, e.to_string(), true))?;
    match applied.rejected.first() {
        Some(r) => Err(not_ready(
            Reason::RecordRejected,
            format!(
                "Route53 refused {} {}: {}",
                r.change.action.as_str(),
                r.change.record.label(),
                r.message
            ),
            false,
        )),
        None => Ok(()),
    }
}

/// The changes removing what the tenant published at a host name it no longer has
/// (`status.dns` names another host), only under its own ownership record.
pub async fn left_behind(
    tenant: &Tenant,
    world: &World<'_>,
) -> Result<Option<(String, Vec<Change>)>, DnsError> {
    let host = fqdn(&tenant.spec.dns.hostname);
    let Some(prev) = previous(tenant).filter(|p| p.hostname != host) else {
        return Ok(None);
    };
    let seen = world.providers.dns.records(&prev.hosted_zone_id).await?;
    let changes = ownership::remove(
        &seen,
        &prev.hostname,
        &world.settings.dns_owner,
        &tenant.name_any(),
    );
    Ok(Some((prev.hosted_zone_id.clone(), changes)))
}

fn describe(records: &[RecordSet]) -> String {
    let latency: Vec<&str> = records
        .iter()
        .filter_map(|r| r.set_identifier.as_deref())
        .collect();
    let name = records.first().map(|r| r.name.as_str()).unwrap_or_default();
    let owner = records
        .iter()
        .find(|r| r.rtype == "TXT")
        .map(|r| r.name.as_str())
        .unwrap_or_default();
    format!(
        "latency records {name} CNAME in {}; ownership record {owner} TXT",
        latency.join(", ")
    )
}

/// The changes the tenant's records need, or the condition saying why none can be made.
pub async fn changes(
    tenant: &Tenant,
    world: &World<'_>,
) -> Result<(Zone, Vec<RecordSet>, Vec<Change>), TenantDns> {
    let host = &tenant.spec.dns.hostname;
    let residency = &tenant.spec.data_residency;
    let owner = &world.settings.dns_owner;
    let desired = records::desired(&tenant.name_any(), host, residency, owner, &targets(world))
        .map_err(|e| match e {
            // Not a fault: a platform may run without managed DNS. No Warning.
            NoRecords::NoDnsRegion => TenantDns {
                events: Vec::new(),
                ..not_ready(
                    Reason::DNSNotConfigured,
                    format!("no Region of residency {residency:?} declares spec.dns and spec.ingress; no records are managed"),
                    false,
                )
            },
            NoRecords::OutsideZones { zones } => not_ready(
                Reason::HostnameOutsideZones,
                format!("hostname {host} lies outside the hosted zone(s) {} of its Regions; choose a spec.dns.hostname inside one", zones.join(", ")),
                false,
            ),
            NoRecords::HealthCheckPending(region) => not_ready(
                Reason::HealthCheckPending,
                format!("waiting for region {region} to resolve its hosted zone and create its health check (see its DNSReady)"),
                true,
            ),
        })?;
    let seen = world
        .providers
        .dns
        .records(&desired.zone.id)
        .await
        .map_err(|e| not_ready(Reason::Route53Error, e.to_string(), true))?;
    let changes = ownership::converge(
        &desired.records,
        &seen,
        &fqdn(host),
        owner,
        &tenant.name_any(),
    )
    .map_err(|refusal| not_ready(Reason::RecordNotOwned, refusal.to_string(), false))?;
    Ok((desired.zone, desired.records, changes))
}

/// Converges the tenant's records; the condition and Events to publish.
pub async fn converge(tenant: &Tenant, world: &World<'_>) -> TenantDns {
    let (zone, desired, mut changes) = match changes(tenant, world).await {
        Ok(c) => c,
        Err(report) => return report,
    };
    // A changed host name: the old records go in the same round when in the same zone
    // (the batch order keeps every record covered by its ownership record).
    match left_behind(tenant, world).await {
        Ok(Some((zone_id, old))) if zone_id == zone.id => changes.extend(old),
        Ok(Some((zone_id, old))) => {
            if let Err(report) = send(world, &zone_id, old).await {
                return report;
            }
        }
        Ok(None) => {}
        Err(e) => return not_ready(Reason::Route53Error, e.to_string(), true),
    }
    let mut events = Vec::new();
    if !changes.is_empty() {
        let (upserts, deletes) = (
            changes
                .iter()
                .filter(|c| c.action == Action::Upsert)
                .count(),
            changes
                .iter()
                .filter(|c| c.action == Action::Delete)
                .count(),
        );
        if let Err(report) = send(world, &zone.id, changes).await {
            return report;
        }
        events.push(EventSpec::normal(
            Reason::RecordsChanged,
            "DNS",
            format!(
                "{upserts} record set(s) written, {deletes} deleted in zone {} ({})",
                zone.name, zone.id
            ),
        ));
    }
    TenantDns {
        condition: NewCondition::new(
            types::DNS_READY,
            Status::True,
            Reason::RecordsReady,
            describe(&desired),
        ),
        events,
        retry: false,
        published: Some(TenantDnsStatus {
            hostname: fqdn(&tenant.spec.dns.hostname),
            hosted_zone_id: zone.id.clone(),
            records: desired.iter().map(RecordSet::label).collect(),
        }),
    }
}

/// Removes the tenant's records from every zone its Regions use, only under its own
/// ownership record, waiting until Route53 has them INSYNC. What was removed, if any.
pub async fn remove(tenant: &Tenant, world: &World<'_>) -> Result<Option<String>, DnsError> {
    let host = fqdn(&tenant.spec.dns.hostname);
    let mut places: Vec<(String, String)> = targets(world)
        .into_iter()
        .filter_map(|t| t.zone)
        .filter(|z| z.contains(&host))
        .map(|z| (z.id, host.clone()))
        .collect();
    // What was published at another host name (a changed spec.dns.hostname).
    if let Some(prev) = previous(tenant) {
        places.push((prev.hosted_zone_id.clone(), prev.hostname.clone()));
    }
    places.sort();
    places.dedup();
    let mut removed = Vec::new();
    for (zone_id, host) in places {
        let seen = world.providers.dns.records(&zone_id).await?;
        let changes =
            ownership::remove(&seen, &host, &world.settings.dns_owner, &tenant.name_any());
        if changes.is_empty() {
            continue;
        }
        let labels: Vec<String> = changes.iter().map(|c| c.record.label()).collect();
        let applied = world.providers.dns.change(&zone_id, changes).await?;
        if let Some(r) = applied.rejected.first() {
            return Err(DnsError::Api {
                operation: "ChangeResourceRecordSets",
                message: format!("{}: {}", r.change.record.label(), r.message),
            });
        }
        removed.extend(labels);
    }
    Ok((!removed.is_empty()).then(|| format!("removed DNS records {}", removed.join(", "))))
}

#[cfg(test)]
#[path = "dns_tests.rs"]
mod tests;
