//! Tenant DNS in Route53: the record sets a tenant should have (pure, [`records`]), the
//! changes that take a zone there without touching what others own ([`ownership`]),
//! batches within Route53's limits and their bisection ([`batch`]), and the real client
//! ([`route53`]) with pacing, retries and a cached view of each zone.

pub mod batch;
pub mod ownership;
pub mod records;
pub mod route53;

/// A hosted zone, as resolved from a Region's `spec.dns`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Zone {
    /// Zone id without the `/hostedzone/` prefix.
    pub id: String,
    /// Domain name, lowercase, with a trailing dot.
    pub name: String,
}

impl Zone {
    /// Whether `fqdn` (with a trailing dot) lies inside the zone.
    pub fn contains(&self, fqdn: &str) -> bool {
        fqdn == self.name || fqdn.ends_with(&format!(".{}", self.name))
    }
}

/// How a Region names its zone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ZoneRef {
    /// By id.
    Id(String),
    /// By domain name, looked up.
    Name(String),
}

/// One Route53 resource record set, in the terms the operator uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordSet {
    /// Fully qualified name, lowercase, with a trailing dot.
    pub name: String,
    /// `CNAME`, `TXT`, ...
    pub rtype: String,
    /// Latency records: the Region's name.
    pub set_identifier: Option<String>,
    /// Latency records: the AWS region.
    pub region: Option<String>,
    /// TTL in seconds (absent on alias records).
    pub ttl: Option<i64>,
    /// The values (`ResourceRecord` elements).
    pub values: Vec<String>,
    /// Health check the record follows.
    pub health_check_id: Option<String>,
}

impl RecordSet {
    /// What identifies a record set in its zone.
    pub fn key(&self) -> (&str, &str, Option<&str>) {
        (&self.name, &self.rtype, self.set_identifier.as_deref())
    }

    /// `name type [set identifier]`, for messages.
    pub fn label(&self) -> String {
        match &self.set_identifier {
            Some(id) => format!("{} {} [{id}]", self.name, self.rtype),
            None => format!("{} {}", self.name, self.rtype),
        }
    }
}

/// What a change does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// Removes a record set (must match it exactly).
    Delete,
    /// Creates or replaces a record set.
    Upsert,
}

impl Action {
    /// The Route53 spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Delete => "DELETE",
            Action::Upsert => "UPSERT",
        }
    }
}

/// One change, and the tenant (or Region) it is made for, so a rejected change fails
/// only its owner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// DELETE or UPSERT.
    pub action: Action,
    /// The record set.
    pub record: RecordSet,
    /// Who asked for it (a Tenant or Region name).
    pub for_object: String,
}

/// A change Route53 refused, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejected {
    /// The change.
    pub change: Change,
    /// Route53's message.
    pub message: String,
}

/// What applying changes did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// ChangeResourceRecordSets requests sent (bisection included).
    pub requests: usize,
    /// Changes refused, each alone (the others were applied).
    pub rejected: Vec<Rejected>,
}

/// A health check the operator wants for a Region ingress.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthCheckSpec {
    /// Deterministic caller reference (from the Region's UID).
    pub caller_reference: String,
    /// Host name probed over HTTPS on port 443.
    pub fqdn: String,
    /// Path probed.
    pub path: String,
    /// Tag `phoenixguardian.io/owner`.
    pub owner: String,
    /// Tag `phoenixguardian.io/region`.
    pub region: String,
    /// The id the Region's status shows, if any: verified with one GetHealthCheck instead
    /// of listing every health check (and its tags, which were set when it was recorded).
    pub known_id: Option<String>,
}

/// What ensuring a health check did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HealthCheckOutcome {
    /// It existed as wanted.
    Unchanged(String),
    /// It was created.
    Created(String),
    /// Its target was updated.
    Updated(String),
}

impl HealthCheckOutcome {
    /// The health check id.
    pub fn id(&self) -> &str {
        match self {
            Self::Unchanged(id) | Self::Created(id) | Self::Updated(id) => id,
        }
    }
}

/// Why a Route53 call failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    /// No hosted zone has the name.
    #[error("no hosted zone named {0}; create it or set spec.dns.hostedZoneId of the Region")]
    ZoneNotFound(String),
    /// Several hosted zones have the name.
    #[error(
        "{count} hosted zones are named {name}; set spec.dns.hostedZoneId of the Region to pick one"
    )]
    ZoneAmbiguous {
        /// The name.
        name: String,
        /// How many.
        count: usize,
    },
    /// Route53 refused a request or could not be reached (after retries).
    #[error("Route53 {operation} failed: {message}")]
    Api {
        /// The operation.
        operation: &'static str,
        /// Error code and message (never credentials).
        message: String,
    },
    /// A change did not reach INSYNC in time.
    #[error("Route53 change {0} is not INSYNC yet")]
    Pending(String),
    /// A read-only provider (`plan`) was asked to write.
    #[error("read-only: {0} not sent")]
    ReadOnly(&'static str),
}

/// The fully qualified form of a host or zone name: lowercase, one trailing dot.
pub fn fqdn(name: &str) -> String {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    format!("{name}.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zone_contains_its_subdomains_only() {
        let zone = Zone {
            id: "Z1".into(),
            name: fqdn("phoenixguardian.test"),
        };
        assert!(zone.contains("a.phoenixguardian.test."));
        assert!(zone.contains("phoenixguardian.test."));
        assert!(!zone.contains("a.otherphoenixguardian.test."));
        assert!(!zone.contains("a.example.com."));
    }
}
