//! The record sets a tenant should have (pure): one latency-routed CNAME per Region its
//! data residency allows, pointing at that Region's ingress and following its health
//! check, plus the TXT ownership record. Residency decides, never capacity: an EU tenant
//! gets no record in a US region, whatever the load.

use super::{RecordSet, Zone, fqdn};

/// Label prefixed to a tenant's host name to hold its ownership record. A CNAME cannot
/// share its name with a TXT record, so ownership lives beside it (as external-dns does).
pub const OWNER_PREFIX: &str = "_phoenix-owner";

/// TTL of the records the operator writes.
pub const TTL: i64 = 60;

/// A Region as the DNS plan sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegionTarget {
    /// Region name (the `SetIdentifier`).
    pub name: String,
    /// AWS region (the latency `Region`).
    pub aws_region: String,
    /// Jurisdictions it may hold.
    pub residency: Vec<String>,
    /// Ingress host name (the CNAME's value).
    pub ingress: String,
    /// The Region's hosted zone, once the Region controller resolved it.
    pub zone: Option<Zone>,
    /// Its ingress health check, once the Region controller made it.
    pub health_check_id: Option<String>,
}

/// Name of the ownership record of `hostname`.
pub fn owner_record_name(hostname: &str) -> String {
    fqdn(&format!(
        "{OWNER_PREFIX}.{}",
        hostname.trim_end_matches('.')
    ))
}

/// Value of the ownership record: who may change the tenant's records.
pub fn owner_value(owner: &str, tenant: &str) -> String {
    format!("\"heritage=phoenix-operator,owner={owner},tenant={tenant}\"")
}

/// Why a tenant cannot have records (yet).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NoRecords {
    /// No Region its residency allows has `spec.dns` and `spec.ingress`.
    NoDnsRegion,
    /// The host name lies outside the zone of every such Region.
    OutsideZones {
        /// The zones looked at.
        zones: Vec<String>,
    },
    /// A Region's zone or health check does not exist yet.
    HealthCheckPending(String),
}

/// The tenant's zone and the record sets it should hold there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Desired {
    /// The zone.
    pub zone: Zone,
    /// Latency records, then the ownership record.
    pub records: Vec<RecordSet>,
}

/// The record sets of tenant `tenant` (host name `hostname`, residency `residency`) given
/// the Regions with DNS. When the regions' zones differ, the most specific zone holding
/// the host name wins and only its regions get records.
pub fn desired(
    tenant: &str,
    hostname: &str,
    residency: &[String],
    owner: &str,
    regions: &[RegionTarget],
) -> Result<Desired, NoRecords> {
    let host = fqdn(hostname);
    let allowed: Vec<&RegionTarget> = regions
        .iter()
        .filter(|r| r.residency.iter().any(|j| residency.contains(j)))
        .collect();
    if allowed.is_empty() {
        return Err(NoRecords::NoDnsRegion);
    }
    if let Some(r) = allowed.iter().find(|r| r.zone.is_none()) {
        return Err(NoRecords::HealthCheckPending(r.name.clone()));
    }
    let Some(zone) = allowed
        .iter()
        .filter_map(|r| r.zone.as_ref())
        .filter(|z| z.contains(&host))
        .max_by_key(|z| z.name.len())
        .cloned()
    else {
        let mut zones: Vec<String> = allowed
            .iter()
            .filter_map(|r| r.zone.as_ref().map(|z| z.name.clone()))
            .collect();
        zones.sort();
        zones.dedup();
        return Err(NoRecords::OutsideZones { zones });
    };
    let mut records = Vec::new();
    for r in allowed
        .iter()
        .filter(|r| r.zone.as_ref().is_some_and(|z| z.id == zone.id))
    {
        let Some(check) = &r.health_check_id else {
            return Err(NoRecords::HealthCheckPending(r.name.clone()));
        };
        records.push(RecordSet {
            name: host.clone(),
            rtype: "CNAME".into(),
            set_identifier: Some(r.name.clone()),
            region: Some(r.aws_region.clone()),
            ttl: Some(TTL),
            values: vec![fqdn(&r.ingress)],
            health_check_id: Some(check.clone()),
        });
    }
    records.sort_by(|a, b| a.set_identifier.cmp(&b.set_identifier));
    records.push(RecordSet {
        name: owner_record_name(hostname),
        rtype: "TXT".into(),
        set_identifier: None,
        region: None,
        ttl: Some(TTL),
        values: vec![owner_value(owner, tenant)],
        health_check_id: None,
    });
    Ok(Desired { zone, records })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone() -> Zone {
        Zone {
            id: "Z1".into(),
            name: "phoenixguardian.test.".into(),
        }
    }

    fn region(name: &str, aws: &str, juris: &str) -> RegionTarget {
        RegionTarget {
            name: name.into(),
            aws_region: aws.into(),
            residency: vec![juris.into()],
            ingress: format!("api.{name}.phoenixguardian.test"),
            zone: Some(zone()),
            health_check_id: Some(format!("hc-{name}")),
        }
    }

    fn regions() -> Vec<RegionTarget> {
        vec![
            region("us-east-1", "us-east-1", "US"),
            region("us-west-2", "us-west-2", "US"),
            region("eu-west-1", "eu-west-1", "EU"),
        ]
    }

    fn ids(d: &Desired) -> Vec<Option<&str>> {
        d.records
            .iter()
            .map(|r| r.set_identifier.as_deref())
            .collect()
    }

    #[test]
    fn an_eu_tenant_gets_only_eu_records_and_its_ownership_record() {
        let eu = vec!["EU".to_owned()];
        let d = desired(
            "charite",
            "charite.eu.phoenixguardian.test",
            &eu,
            "op",
            &regions(),
        )
        .expect("records");
        assert_eq!(ids(&d), [Some("eu-west-1"), None]);
        let latency = &d.records[0];
        assert_eq!(latency.region.as_deref(), Some("eu-west-1"));
        assert_eq!(latency.values, ["api.eu-west-1.phoenixguardian.test."]);
        assert_eq!(latency.health_check_id.as_deref(), Some("hc-eu-west-1"));
        let owner = &d.records[1];
        assert_eq!(
            owner.name,
            "_phoenix-owner.charite.eu.phoenixguardian.test."
        );
        assert_eq!(owner.rtype, "TXT");
        assert!(owner.values[0].contains("owner=op,tenant=charite"));
    }

    #[test]
    fn a_us_tenant_gets_a_record_in_every_us_region() {
        let us = vec!["US".to_owned()];
        let d =
            desired("mercy", "mercy.phoenixguardian.test", &us, "op", &regions()).expect("records");
        assert_eq!(ids(&d), [Some("us-east-1"), Some("us-west-2"), None]);
    }

    #[test]
    fn a_host_outside_every_zone_names_the_zones() {
        let us = vec!["US".to_owned()];
        let err = desired("x", "x.example.com", &us, "op", &regions()).expect_err("outside");
        assert_eq!(
            err,
            NoRecords::OutsideZones {
                zones: vec!["phoenixguardian.test.".into()]
            }
        );
    }

    #[test]
    fn no_record_without_a_region_of_the_residency_or_its_health_check() {
        let apac = vec!["APAC".to_owned()];
        assert_eq!(
            desired("x", "x.phoenixguardian.test", &apac, "op", &regions()),
            Err(NoRecords::NoDnsRegion)
        );
        let mut rs = regions();
        rs[2].health_check_id = None;
        let eu = vec!["EU".to_owned()];
        assert_eq!(
            desired("x", "x.phoenixguardian.test", &eu, "op", &rs),
            Err(NoRecords::HealthCheckPending("eu-west-1".into()))
        );
        // A Region that has not resolved its zone yet: wait, never decide without it.
        let mut rs = regions();
        rs[2].zone = None;
        assert_eq!(
            desired("x", "x.example.com", &eu, "op", &rs),
            Err(NoRecords::HealthCheckPending("eu-west-1".into()))
        );
    }

    #[test]
    fn the_most_specific_zone_holding_the_host_wins() {
        let mut rs = regions();
        rs[1].zone = Some(Zone {
            id: "Z2".into(),
            name: "us.phoenixguardian.test.".into(),
        });
        let us = vec!["US".to_owned()];
        let d = desired("m", "m.us.phoenixguardian.test", &us, "op", &rs).expect("records");
        assert_eq!(d.zone.id, "Z2");
        assert_eq!(ids(&d), [Some("us-west-2"), None]);
    }
}
