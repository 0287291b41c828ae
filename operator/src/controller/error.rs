//! Errors of a reconcile, one enum per step. Each carries what the user must do and maps
//! to one typed [`Reason`].

use crate::db::DbError;
use crate::placement::PlacementError;
use crate::reason::Reason;
use crate::secrets::SecretError;

/// Fetching what the spec points to (secrets, regions, database state) failed.
#[derive(Debug, thiserror::Error)]
pub enum DerefError {
    /// A secret could not be read.
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// A database could not be read.
    #[error(transparent)]
    Database(#[from] DbError),
    /// A connection string does not parse.
    #[error("{0}")]
    InvalidConnectionString(String),
    /// A port is not a TCP port.
    #[error("port {0} is not a TCP port")]
    InvalidPort(i32),
    /// A referenced Region does not exist.
    #[error("{0}")]
    RegionNotFound(String),
    /// The spec asks for something this version does not do yet.
    #[error("{0} is not implemented yet in this operator version")]
    NotImplemented(&'static str),
    /// An identity provider's metadata could not be fetched.
    #[error(transparent)]
    Fetch(#[from] crate::controller::providers::FetchError),
    /// `deletionPolicy: Snapshot` in a Region without a snapshot bucket.
    #[error("{0}")]
    SnapshotNotConfigured(String),
    /// An RDS step failed or was refused.
    #[error(transparent)]
    Rds(#[from] crate::rds::RdsError),
    /// The database's TLS certificate was refused (wrong CA, wrong host name).
    #[error("{0}")]
    CertificateUntrusted(String),
    /// The Region's RDS instance exists but does not accept connections yet.
    #[error(
        "RDS instance {identifier} is {status}, not available yet; the operator checks again shortly"
    )]
    RdsNotAvailable {
        /// The instance.
        identifier: String,
        /// What RDS reports.
        status: String,
    },
    /// A tenant's RDS instance is being deleted (its final snapshot not listed yet).
    #[error("{0}; the operator checks again shortly")]
    RdsDeleting(String),
}

/// The desired state cannot be reached from what was observed; the user must act.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The tenant cannot be placed.
    #[error(transparent)]
    Placement(#[from] PlacementError),
    /// Another live tenant holds the tenant's host name or name.
    #[error(transparent)]
    Conflict(#[from] crate::db::NameConflict),
    /// A Primary Region's writer is a standby.
    #[error(
        "database {0} is a standby in recovery but spec.role is Primary; point spec.database.writer at the primary or set role Replica"
    )]
    WriterIsStandby(String),
    /// A Replica Region's database is not a standby.
    #[error(
        "database {0} is not a standby but spec.role is Replica; point spec.database.writer at the replica or set role Primary (failover)"
    )]
    ReplicaNotInRecovery(String),
    /// Another Region was promoted in this one's place (failover); its fence stays.
    #[error(
        "region {by} was promoted in place of this region at {at} (failover); this region's database is fenced (read-only, data plane logins disabled) and the operator will not undo that. Rebuild the server as a streaming replica of {by}'s writer and declare this Region `role: Replica`, `replicaOf: {by}`, or delete this Region (docs/runbooks.md, \"Failing over a region\")"
    )]
    Superseded {
        /// The promoted Region.
        by: String,
        /// When.
        at: String,
    },
    /// Another Region holds the promotion of the same data.
    #[error(
        "region {winner} was already promoted from the same data (lineage {claim}, claimed {at}); two writable primaries for one lineage would be a split brain, so this region's standby is not promoted. Declare this Region `role: Replica` with `replicaOf: {winner}` (re-pointing its standby at {winner}'s writer), or delete it"
    )]
    SplitBrain {
        /// The Region holding the claim.
        winner: String,
        /// The lineage claim.
        claim: String,
        /// When it was claimed.
        at: String,
    },
    /// A Primary whose writer is a standby cannot be promoted as it is.
    #[error("{0}")]
    PromotionRefused(String),
    /// A replica would carry data outside its residency.
    #[error(
        "region {source_region} holds {outside:?} data, which region {region} may not hold (spec.dataResidency {residency:?}); a replica would carry it out of its residency"
    )]
    ReplicaResidencyViolation {
        /// The followed region.
        source_region: String,
        /// Jurisdictions that would leave their residency.
        outside: Vec<String>,
        /// The replica region.
        region: String,
        /// Its residency.
        residency: Vec<String>,
    },
    /// The Region still holds tenants.
    #[error("{0}")]
    TenantsRemain(String),
    /// A managed role has an attribute the operator's login (not a superuser) cannot take
    /// away; the data plane must not use it.
    #[error(
        "role {role} has {attribute}, which the operator's login {login} cannot remove (it is not a superuser); the data plane must never bypass row level security: run `ALTER ROLE {role} NO{attribute}` as a superuser, or `DROP ROLE {role}` (it owns nothing) and let the operator create it again"
    )]
    UnsafeRole {
        /// The role.
        role: String,
        /// `BYPASSRLS` or `SUPERUSER`.
        attribute: &'static str,
        /// The operator's login.
        login: String,
    },
    /// The spec asks for something this version does not do yet.
    #[error("{0} is not implemented yet in this operator version")]
    NotImplemented(&'static str),
    /// An identity provider's metadata is not usable.
    #[error(transparent)]
    Idp(#[from] super::idp::plan::IdpProblem),
    /// A `Schema` tenant's schema cannot be converged.
    #[error(transparent)]
    Schema(#[from] crate::db::tenant_schema::SchemaRefused),
}

/// Making the planned changes failed.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// A database statement failed.
    #[error(transparent)]
    Database(#[from] DbError),
    /// A secret could not be written.
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// The Kubernetes API failed (recording placement).
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// Route53 failed (removing records or a health check).
    #[error(transparent)]
    Dns(#[from] crate::dns::DnsError),
    /// What the database showed once created or migrated in this pass is refused, as
    /// planning refuses it (a managed role with BYPASSRLS the login cannot remove).
    #[error(transparent)]
    Refused(Box<PlanError>),
    /// A tenant's snapshot could not be taken; its data is kept.
    #[error(transparent)]
    Snapshot(#[from] crate::snapshot::SnapshotError),
}

/// Why a reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Dereferencing failed.
    #[error(transparent)]
    Deref(#[from] DerefError),
    /// Planning found something the user must fix.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// Applying failed.
    #[error(transparent)]
    Apply(#[from] ApplyError),
    /// Writing status failed.
    #[error("writing status: {0}")]
    Status(#[source] kube::Error),
    /// The finalizer machinery failed.
    #[error("finalizer: {0}")]
    Finalizer(String),
}

/// The reason of a database error.
pub fn db_reason(e: &DbError) -> Reason {
    match e {
        DbError::InvalidDsn(_) => Reason::InvalidConnectionString,
        DbError::Connect { reason, .. } if untrusted_certificate(reason) => {
            Reason::DatabaseCertificateUntrusted
        }
        DbError::Connect { .. } => Reason::DatabaseUnreachable,
        DbError::Query { .. } | DbError::ReadOnly(_) => Reason::DatabaseError,
        DbError::MigrationChanged { .. } => Reason::MigrationChanged,
        DbError::SchemaNewer { .. } => Reason::SchemaNewer,
        DbError::Conflict(c) => conflict_reason(c),
    }
}

/// Whether a connection failure's text is rustls refusing the server's certificate
/// (unknown issuer, wrong name, expired, ...).
pub fn untrusted_certificate(reason: &str) -> bool {
    reason.contains("invalid peer certificate")
}

fn conflict_reason(c: &crate::db::NameConflict) -> Reason {
    match c {
        crate::db::NameConflict::Hostname { .. } => Reason::HostnameTaken,
        crate::db::NameConflict::Name { .. } => Reason::NameTaken,
    }
}

fn rds_reason(e: &crate::rds::RdsError) -> Reason {
    use crate::rds::RdsError as R;
    match e {
        R::NotOwned { .. } => Reason::RdsInstanceNotOwned,
        R::Refused(_) => Reason::RdsReplicaRefused,
        R::NotFound { .. } => Reason::RdsInstanceNotAvailable,
        R::InvalidEndpointMap(_) => Reason::InvalidEndpointMap,
        R::AlreadyExists(_) | R::SnapshotMissing { .. } | R::Request { .. } | R::ReadOnly(_) => {
            Reason::RdsError
        }
    }
}

fn secret_reason(e: &SecretError) -> Reason {
    match e {
        SecretError::NotFound { .. } => Reason::SecretNotFound,
        SecretError::MissingKey { .. } => Reason::SecretKeyMissing,
        _ => Reason::SecretError,
    }
}

/// The reason of a refusal found while planning (or, for what only exists after this
/// pass's migrations, while applying).
fn plan_reason(e: &PlanError) -> Reason {
    match e {
        PlanError::Placement(p) => p.reason(),
        PlanError::Conflict(c) => conflict_reason(c),
        PlanError::WriterIsStandby(_) => Reason::WriterIsStandby,
        PlanError::ReplicaNotInRecovery(_) => Reason::ReplicaNotInRecovery,
        PlanError::Superseded { .. } => Reason::Superseded,
        PlanError::SplitBrain { .. } => Reason::SplitBrainRefused,
        PlanError::PromotionRefused(_) => Reason::PromotionRefused,
        PlanError::ReplicaResidencyViolation { .. } => Reason::ReplicaResidencyViolation,
        PlanError::TenantsRemain(_) => Reason::TenantsRemain,
        PlanError::UnsafeRole { .. } => Reason::UnsafeDataplaneRole,
        PlanError::NotImplemented(_) => Reason::NotImplemented,
        PlanError::Schema(_) => Reason::SchemaRefused,
        PlanError::Idp(p) => {
            use super::idp::plan::IdpProblem as P;
            match p {
                P::InvalidDiscovery { .. } => Reason::InvalidDiscovery,
                P::IssuerMismatch { .. } => Reason::IssuerMismatch,
                P::UnsupportedAlgorithms { .. } => Reason::UnsupportedAlgorithms,
                P::NoUsableSigningKey { .. } => Reason::NoUsableSigningKey,
            }
        }
    }
}

impl Error {
    /// The condition reason and metric label.
    pub fn reason(&self) -> Reason {
        match self {
            Error::Deref(e) => match e {
                DerefError::Secret(s) => secret_reason(s),
                DerefError::Database(d) => db_reason(d),
                DerefError::InvalidConnectionString(_) => Reason::InvalidConnectionString,
                DerefError::InvalidPort(_) => Reason::InvalidPort,
                DerefError::RegionNotFound(_) => Reason::RegionNotFound,
                DerefError::NotImplemented(_) => Reason::NotImplemented,
                DerefError::SnapshotNotConfigured(_) => Reason::SnapshotNotConfigured,
                DerefError::Rds(r) => rds_reason(r),
                DerefError::RdsNotAvailable { .. } | DerefError::RdsDeleting(_) => {
                    Reason::RdsInstanceNotAvailable
                }
                DerefError::CertificateUntrusted(_) => Reason::DatabaseCertificateUntrusted,
                DerefError::Fetch(f) => {
                    use crate::controller::providers::FetchError as F;
                    match f {
                        F::Unreachable { .. } => Reason::IdPUnreachable,
                        F::Tls { .. } => Reason::IdPTLSError,
                        F::Status { .. } => Reason::IdPHTTPError,
                        F::Invalid { .. } => Reason::InvalidDiscovery,
                    }
                }
            },
            Error::Plan(e) => plan_reason(e),
            Error::Apply(e) => match e {
                ApplyError::Database(d) => db_reason(d),
                ApplyError::Secret(s) => secret_reason(s),
                ApplyError::Kube(_) => Reason::KubernetesAPIError,
                ApplyError::Dns(_) => Reason::Route53Error,
                ApplyError::Refused(p) => plan_reason(p),
                ApplyError::Snapshot(crate::snapshot::SnapshotError::Database(d)) => db_reason(d),
                ApplyError::Snapshot(_) => Reason::SnapshotFailed,
            },
            Error::Status(_) => Reason::KubernetesAPIError,
            Error::Finalizer(_) => Reason::FinalizerError,
        }
    }

    /// Whether the user must change something (the object is Failed), rather than wait.
    pub fn needs_user(&self) -> bool {
        matches!(self, Error::Plan(_) | Error::Apply(ApplyError::Refused(_)))
            || matches!(self.reason(), Reason::HostnameTaken | Reason::NameTaken)
            || matches!(self, Error::Deref(DerefError::NotImplemented(_)))
            || matches!(
                self.reason(),
                Reason::RdsInstanceNotOwned
                    | Reason::RdsReplicaRefused
                    | Reason::InvalidEndpointMap
            )
    }
}

impl From<kube::runtime::finalizer::Error<Error>> for Error {
    fn from(e: kube::runtime::finalizer::Error<Error>) -> Self {
        use kube::runtime::finalizer::Error as F;
        match e {
            F::ApplyFailed(inner) | F::CleanupFailed(inner) => inner,
            other => Error::Finalizer(other.to_string()),
        }
    }
}
