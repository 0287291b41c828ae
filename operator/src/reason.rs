//! Every reason a condition or an Event can carry, as one typed enum.
//!
//! Reasons are an API: users `kubectl wait` on them, alerts match them, and the operator
//! itself decides from them which Tenants a Region change wakes. Matching strings would
//! let a rename silently break that; matching this enum cannot.

use std::fmt;

/// What a change of some Region means to a Tenant whose `Ready` carries this reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegionWait {
    /// Nothing: the tenant does not wait on Regions.
    No,
    /// Only a change of the Region it is placed in (or of any Region if not placed yet).
    Placed,
    /// A change of any Region may unblock it (placement failed).
    Any,
}

macro_rules! reasons {
    ($($(#[$meta:meta])* $variant:ident => $wait:ident,)+) => {
        /// A PascalCase condition or Event reason.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Reason {
            $($(#[$meta])* $variant,)+
        }

        impl Reason {
            /// Every reason, in declaration order.
            pub const ALL: &'static [Reason] = &[$(Reason::$variant,)+];

            /// The string written to conditions and Events.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Reason::$variant => stringify!($variant),)+
                }
            }

            /// The reason written as `s`, if this version knows it.
            pub fn parse(s: &str) -> Option<Reason> {
                match s {
                    $(stringify!($variant) => Some(Reason::$variant),)+
                    _ => None,
                }
            }

            /// Which Region changes may unblock a Tenant not Ready for this reason.
            pub const fn region_wait(self) -> RegionWait {
                match self {
                    $(Reason::$variant => RegionWait::$wait,)+
                }
            }
        }
    };
}

reasons! {
    // Success and progress.
    /// Fully reconciled.
    Reconciled => No,
    /// The region database answers.
    Connected => No,
    /// Readers stream from the writer.
    ReplicaStreaming => No,
    /// No readers are declared.
    NoReaders => No,
    /// The tenant's catalog entry exists.
    CatalogEntryReady => No,
    /// RLS is enabled, forced and its policy in place on every clinical table.
    PoliciesEnforced => No,
    /// The tenant is suspended: data kept, requests refused.
    Suspended => No,
    /// Being deleted.
    Deleting => No,
    /// Became Ready (Event).
    Ready => No,
    /// The region database was created (Event).
    DatabaseCreated => No,
    /// Migrations were applied (Event).
    Migrated => No,
    /// Roles, grants and RLS were created on a fresh database (Event).
    Provisioned => No,
    /// The data plane credentials Secret was created (Event).
    DataplaneCredentialsCreated => No,
    /// The data plane role's password was set from its Secret (Event).
    DataplanePasswordSet => No,
    /// The data plane Secret was moved to the Region's own role (Event).
    DataplaneRoleChanged => No,
    /// A password rotation started: the Secret names the other login with a new password,
    /// the old one drains (Event).
    DataplanePasswordRotating => No,
    /// A password rotation finished: the old login lost its login and password (Event).
    DataplanePasswordRotated => No,
    /// The readers published to the catalog changed (Event).
    ReadersPublished => No,
    /// Cleanup finished (Event).
    Deleted => No,
    /// A tenant's data was written to its Region's snapshot bucket (Event).
    SnapshotTaken => No,
    // Drift found and repaired.
    /// RLS on the shared tables had drifted and was repaired.
    RLSRepaired => No,
    /// Roles, ownership or grants had drifted and were repaired.
    DatabaseDriftRepaired => No,
    /// A `Schema` tenant's role, schema and copy of the clinical tables were created
    /// (Event).
    SchemaProvisioned => No,
    /// A `Dedicated` tenant's role and database with the clinical tables were created
    /// (Event).
    DatabaseProvisioned => No,
    /// A `Schema` tenant's role name is taken by a role the operator does not own, or the
    /// clinical schema to copy is incomplete.
    SchemaRefused => No,
    /// RLS on the shared tables has drifted; the Region repairs it.
    RLSDrift => Placed,
    // Waiting on a Region.
    /// The tenant's Region is not Ready.
    RegionNotReady => Placed,
    /// The tenant's Region database is not migrated yet.
    RegionNotMigrated => Placed,
    /// A referenced Region does not exist.
    RegionNotFound => Placed,
    /// The database cannot be reached.
    DatabaseUnreachable => Placed,
    /// A statement failed.
    DatabaseError => Placed,
    /// TLS to the database failed verification: its certificate does not lead to the CA
    /// given (`caSecretRef`) or does not name the host.
    DatabaseCertificateUntrusted => Placed,
    /// The Region's RDS instance is being created or is not `available` yet.
    RdsInstanceNotAvailable => Placed,
    /// An RDS request failed.
    RdsError => Placed,
    /// A referenced Secret does not exist.
    SecretNotFound => Placed,
    /// A referenced Secret lacks the key.
    SecretKeyMissing => Placed,
    /// A Secret could not be read.
    SecretError => Placed,
    // Placement.
    /// No Region holds the tenant's residency.
    NoRegionForResidency => Any,
    /// Every eligible Region is full.
    CapacityExhausted => Any,
    /// The pinned Region is being deleted.
    RegionDeleting => Any,
    /// The tenant's residency no longer allows its Region.
    ResidencyViolation => Any,
    /// The pinned Region's residency does not match.
    ResidencyMismatch => Any,
    /// The pinned Region is a Replica.
    RegionIsReplica => Any,
    // The user must fix something.
    /// Another Tenant owns the host name.
    HostnameTaken => No,
    /// A live catalog row of another Tenant object has the name.
    NameTaken => No,
    /// A connection string does not parse.
    InvalidConnectionString => No,
    /// A port is not a TCP port.
    InvalidPort => No,
    /// An applied migration was edited.
    MigrationChanged => No,
    /// The database was migrated by a newer operator.
    SchemaNewer => No,
    /// The Region's writer is a standby but the Region is Primary.
    WriterIsStandby => No,
    /// The Replica Region's database is not in recovery.
    ReplicaNotInRecovery => No,
    /// A replica would carry data outside its residency.
    ReplicaResidencyViolation => No,
    // Failover (ADR 0011).
    /// The Region's standby was promoted: its role became Primary (Event).
    Promoted => No,
    /// Another Region was promoted in this one's place; its database is fenced.
    Superseded => No,
    /// Another Region holds the promotion of the same data (lineage); this one stays a
    /// standby.
    SplitBrainRefused => No,
    /// A Primary whose writer is a standby cannot be promoted as it is (not reconciled as
    /// a Replica of a region, or the server is another one).
    PromotionRefused => No,
    /// The promotion did not finish in time; retried.
    PromotionPending => No,
    /// The old primary was fenced: no writes accepted there (condition and Event).
    Fenced => No,
    /// The old primary could not be fenced yet (unreachable); retried.
    FencePending => No,
    /// The tenant is served by the Region promoted in place of its home.
    FailedOver => No,
    /// Readers are unhealthy.
    ReplicaUnhealthy => No,
    /// Readers lag beyond the limit.
    ReplicationLagging => No,
    /// The Region still holds tenants and cannot be deleted.
    TenantsRemain => No,
    /// A managed role has BYPASSRLS or SUPERUSER and the operator's login cannot remove it.
    UnsafeDataplaneRole => No,
    /// An RDS instance with the Region's identifier exists but is not the operator's.
    RdsInstanceNotOwned => No,
    /// An RDS Replica Region's read replica cannot be made as declared (its source is not
    /// an RDS Region, another master user).
    RdsReplicaRefused => No,
    /// The operator setting mapping RDS endpoints (`PHOENIX_RDS_ENDPOINT_MAP`) is invalid.
    InvalidEndpointMap => No,
    /// The spec asks for something this version does not do yet.
    NotImplemented => No,
    // Identity providers.
    /// The IdP's discovery document and keys are valid.
    IdPValidated => No,
    /// The IdP's signing keys changed (Event).
    SigningKeysRotated => No,
    /// The IdP cannot be reached.
    IdPUnreachable => No,
    /// TLS to the IdP failed.
    IdPTLSError => No,
    /// The IdP answered with an HTTP error.
    IdPHTTPError => No,
    /// The IdP's discovery document or JWKS is not valid.
    InvalidDiscovery => No,
    /// The IdP's published issuer is not the configured one.
    IssuerMismatch => No,
    /// The IdP signs only with refused algorithms.
    UnsupportedAlgorithms => No,
    /// The IdP publishes no usable signing key.
    NoUsableSigningKey => No,
    /// `deletionPolicy: Snapshot`, but the tenant's Region declares no snapshot bucket
    /// (`spec.database.snapshots`); the data is kept. A change of that Region (declaring
    /// the bucket) retries the cleanup at once.
    SnapshotNotConfigured => Placed,
    /// Writing or checking a tenant's snapshot failed; the data is kept.
    SnapshotFailed => No,
    /// The Tenant an IdPConnection names does not exist.
    TenantNotFound => No,
    /// The Tenant an IdPConnection names has no catalog entry yet.
    TenantNotReady => No,
    /// SSO settings were published to the tenant's catalog (Event).
    SSOPublished => No,
    /// SSO settings were removed from a catalog (Event).
    SSORemoved => No,
    /// The SCIM token Secret was created (Event).
    ScimTokenCreated => No,
    /// The SCIM token was rotated; the old one is accepted for a grace period (Event).
    ScimTokenRotated => No,
    /// The SCIM token and its hashes were removed (Event).
    ScimTokenRemoved => No,
    /// The tenant's IdPConnection is Ready.
    IdPReady => No,
    /// The tenant's IdPConnection is not Ready.
    IdPNotReady => No,
    /// The IdPConnection a tenant names does not exist or is another tenant's.
    IdPConnectionNotFound => No,
    // DNS (Route53).
    /// The tenant's latency and ownership records are in place.
    RecordsReady => No,
    /// The tenant's records were created, updated or deleted (Event).
    RecordsChanged => No,
    /// The tenant's records were removed on deletion (Event).
    RecordsRemoved => No,
    /// The Region's ingress health check exists as specified.
    HealthCheckReady => No,
    /// The Region's ingress health check was created (Event).
    HealthCheckCreated => No,
    /// The Region's ingress health check was updated (Event).
    HealthCheckUpdated => No,
    /// The Region's ingress health check was deleted (Event).
    HealthCheckDeleted => No,
    /// A Region's health check does not exist yet; records wait for it.
    HealthCheckPending => No,
    /// No Region of the tenant's residency declares `spec.dns`.
    DNSNotConfigured => No,
    /// The tenant's host name lies outside every hosted zone of its Regions.
    HostnameOutsideZones => No,
    /// Records exist at the tenant's host name that the operator does not own.
    RecordNotOwned => No,
    /// Route53 refused one of the tenant's changes.
    RecordRejected => No,
    /// The Region's hosted zone does not exist or is ambiguous.
    ZoneNotFound => No,
    /// A Route53 request failed (after retries).
    Route53Error => No,
    // The operator's own trouble.
    /// The Kubernetes API failed.
    KubernetesAPIError => No,
    /// The finalizer machinery failed.
    FinalizerError => No,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_round_trips_through_its_string() {
        for r in Reason::ALL {
            assert_eq!(Reason::parse(r.as_str()), Some(*r), "{r:?}");
        }
        assert_eq!(Reason::parse("NoSuchReason"), None);
    }

    #[test]
    fn reasons_are_unique_pascal_case() {
        let mut seen = std::collections::HashSet::new();
        for r in Reason::ALL {
            let s = r.as_str();
            assert!(seen.insert(s), "{s} twice");
            assert!(
                s.chars().next().is_some_and(|c| c.is_ascii_uppercase()),
                "{s}"
            );
            assert!(s.chars().all(|c| c.is_ascii_alphanumeric()), "{s}");
        }
    }
}
