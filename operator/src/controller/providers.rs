//! The providers the reconcilers drive, behind small traits the reconcilers own, gathered
//! in [`Providers`]. Each has one real implementation (PostgreSQL in [`crate::db`],
//! Kubernetes Secrets in [`crate::secrets`]); `plan` runs the same reconcilers over
//! read-only instances.

use std::sync::Arc;

use async_trait::async_trait;
use phoenix_catalog::{ReaderRow, TenantRecord, TenantRow};

use crate::db::replication::{Lsn, Replay};
use crate::db::rls::TableState;
use crate::db::state::DbState;
use crate::db::{DbError, Deleted, Migrated};
use crate::dns::{
    Applied, Change, DnsError, HealthCheckOutcome, HealthCheckSpec, RecordSet, Zone, ZoneRef,
};
use crate::secrets::SecretStore;

/// Every provider a reconcile may use.
#[derive(Clone)]
pub struct Providers {
    /// Region databases.
    pub databases: Arc<dyn Databases>,
    /// Secrets (Kubernetes today; Vault or OpenBao later).
    pub secrets: Arc<dyn SecretStore>,
    /// OpenID Connect providers' published metadata.
    pub oidc: Arc<dyn OidcMetadata>,
    /// Route53: zones, tenants' record sets, Region health checks.
    pub dns: Arc<dyn Dns>,
    /// S3: where tenant snapshots go (`deletionPolicy: Snapshot`).
    pub snapshots: Arc<dyn crate::snapshot::store::SnapshotStore>,
    /// RDS: the instances of Regions that declare `spec.database.rds`.
    pub rds: Arc<dyn Rds>,
}

/// RDS as the reconcilers use it ([`crate::rds::aws::AwsRds`]); the idempotent steps
/// over it (ownership checked) are in [`crate::rds`].
#[async_trait]
pub trait Rds: Send + Sync {
    /// The instance `identifier` in `aws_region`, with its tags; `None` when RDS knows none.
    async fn describe(
        &self,
        aws_region: &str,
        identifier: &str,
    ) -> Result<Option<crate::rds::Instance>, crate::rds::RdsError>;
    /// `CreateDBInstance`; a taken identifier is [`crate::rds::RdsError::AlreadyExists`].
    async fn create(
        &self,
        aws_region: &str,
        spec: &crate::rds::InstanceSpec,
        master_password: &str,
    ) -> Result<crate::rds::Instance, crate::rds::RdsError>;
    /// `CreateDBInstanceReadReplica`; a taken identifier is `AlreadyExists`.
    async fn create_read_replica(
        &self,
        aws_region: &str,
        spec: &crate::rds::ReplicaSpec,
    ) -> Result<crate::rds::Instance, crate::rds::RdsError>;
    /// `PromoteReadReplica`.
    async fn promote(
        &self,
        aws_region: &str,
        identifier: &str,
    ) -> Result<crate::rds::Instance, crate::rds::RdsError>;
    /// `DeleteDBInstance` with the final snapshot `snapshot`.
    async fn delete(
        &self,
        aws_region: &str,
        identifier: &str,
        snapshot: &str,
    ) -> Result<(), crate::rds::RdsError>;
    /// `DeleteDBInstance` without a final snapshot (a `Dedicated` tenant's `Delete`
    /// policy). Refused unless a provider implements it.
    async fn delete_without_snapshot(
        &self,
        _aws_region: &str,
        _identifier: &str,
    ) -> Result<(), crate::rds::RdsError> {
        Err(crate::rds::RdsError::ReadOnly(
            "DeleteDBInstance without a final snapshot",
        ))
    }
    /// The DB snapshots of instance `identifier`.
    async fn snapshots(
        &self,
        aws_region: &str,
        identifier: &str,
    ) -> Result<Vec<crate::rds::DbSnapshot>, crate::rds::RdsError>;
}

/// An [`Rds`] that reads and never writes, for `plan`.
pub struct ReadOnlyRds(pub Arc<dyn Rds>);

#[async_trait]
impl Rds for ReadOnlyRds {
    async fn describe(
        &self,
        aws_region: &str,
        identifier: &str,
    ) -> Result<Option<crate::rds::Instance>, crate::rds::RdsError> {
        self.0.describe(aws_region, identifier).await
    }
    async fn create(
        &self,
        _: &str,
        _: &crate::rds::InstanceSpec,
        _: &str,
    ) -> Result<crate::rds::Instance, crate::rds::RdsError> {
        Err(crate::rds::RdsError::ReadOnly("CreateDBInstance"))
    }
    async fn create_read_replica(
        &self,
        _: &str,
        _: &crate::rds::ReplicaSpec,
    ) -> Result<crate::rds::Instance, crate::rds::RdsError> {
        Err(crate::rds::RdsError::ReadOnly(
            "CreateDBInstanceReadReplica",
        ))
    }
    async fn promote(
        &self,
        _: &str,
        _: &str,
    ) -> Result<crate::rds::Instance, crate::rds::RdsError> {
        Err(crate::rds::RdsError::ReadOnly("PromoteReadReplica"))
    }
    async fn delete(&self, _: &str, _: &str, _: &str) -> Result<(), crate::rds::RdsError> {
        Err(crate::rds::RdsError::ReadOnly("DeleteDBInstance"))
    }
    async fn snapshots(
        &self,
        aws_region: &str,
        identifier: &str,
    ) -> Result<Vec<crate::rds::DbSnapshot>, crate::rds::RdsError> {
        self.0.snapshots(aws_region, identifier).await
    }
}

/// Route53 as the reconcilers use it ([`crate::dns::route53::Route53`]).
#[async_trait]
pub trait Dns: Send + Sync {
    /// Resolves a Region's zone (by id, or by name when exactly one zone has it).
    async fn zone(&self, zone: &ZoneRef) -> Result<Zone, DnsError>;
    /// Every record set of the zone (read whole, paginated; shortly cached).
    async fn records(&self, zone_id: &str) -> Result<Arc<Vec<RecordSet>>, DnsError>;
    /// Applies `changes` in batches within Route53's limits, each waited on until
    /// INSYNC; a rejected batch is bisected so only bad changes fail.
    async fn change(&self, zone_id: &str, changes: Vec<Change>) -> Result<Applied, DnsError>;
    /// Makes a Region's ingress health check exist as `spec` says.
    async fn ensure_health_check(
        &self,
        spec: &HealthCheckSpec,
    ) -> Result<HealthCheckOutcome, DnsError>;
    /// Deletes the health check with `caller_reference`; its id, if it existed.
    async fn delete_health_check(&self, caller_reference: &str)
    -> Result<Option<String>, DnsError>;
}

/// A [`Dns`] that reads and never writes, for `plan`.
pub struct ReadOnlyDns(pub Arc<dyn Dns>);

#[async_trait]
impl Dns for ReadOnlyDns {
    async fn zone(&self, zone: &ZoneRef) -> Result<Zone, DnsError> {
        self.0.zone(zone).await
    }
    async fn records(&self, zone_id: &str) -> Result<Arc<Vec<RecordSet>>, DnsError> {
        self.0.records(zone_id).await
    }
    async fn change(&self, _: &str, _: Vec<Change>) -> Result<Applied, DnsError> {
        Err(DnsError::ReadOnly("ChangeResourceRecordSets"))
    }
    async fn ensure_health_check(
        &self,
        _: &HealthCheckSpec,
    ) -> Result<HealthCheckOutcome, DnsError> {
        Err(DnsError::ReadOnly("CreateHealthCheck"))
    }
    async fn delete_health_check(&self, _: &str) -> Result<Option<String>, DnsError> {
        Err(DnsError::ReadOnly("DeleteHealthCheck"))
    }
}

/// Why an identity provider's metadata could not be fetched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// No TCP connection or HTTP answer (DNS, refused, timeout).
    #[error("{url} is unreachable: {reason}")]
    Unreachable {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The TLS handshake failed (untrusted or invalid certificate).
    #[error("TLS to {url} failed: {reason}")]
    Tls {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The server answered with an error status.
    #[error("{url} answered HTTP {status}")]
    Status {
        /// The URL.
        url: String,
        /// The status code.
        status: u16,
    },
    /// The body is not the JSON document expected.
    #[error("{url} did not return a valid {what}: {reason}")]
    Invalid {
        /// The URL.
        url: String,
        /// `discovery document` or `JWKS`.
        what: &'static str,
        /// Why.
        reason: String,
    },
}

/// Fetches what an OpenID provider publishes: its discovery document and its JWKS.
#[async_trait]
pub trait OidcMetadata: Send + Sync {
    /// `GET {issuer}/.well-known/openid-configuration`, as JSON.
    async fn discovery(&self, issuer_url: &str) -> Result<serde_json::Value, FetchError>;
    /// `GET jwks_uri`, as JSON.
    async fn jwks(&self, jwks_uri: &str) -> Result<serde_json::Value, FetchError>;
}

/// How to reach one PostgreSQL database, as dereferenced from a Region.
#[derive(Clone)]
pub struct DbTarget {
    /// Connection settings with their TLS settings (may hold a password: never logged).
    pub pg: phoenix_catalog::connect::PgTarget,
    /// Identifies the settings; a change rebuilds the pool.
    pub fingerprint: String,
    /// The CA bundle (PEM) given by a Secret, to hand on to the data plane.
    pub ca_pem: Option<String>,
}

impl std::fmt::Debug for DbTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbTarget")
            .field("endpoint", &crate::db::endpoint_of(&self.pg.config))
            .finish_non_exhaustive()
    }
}

/// Opens region databases (pooled, by key).
pub trait Databases: Send + Sync {
    /// The database at `target`, pooled under `key` (a region, or a region's reader).
    fn open(
        &self,
        key: &str,
        target: &DbTarget,
        max_connections: usize,
    ) -> Result<Arc<dyn Database>, DbError>;

    /// Forgets the pools of a region (when the Region is deleted).
    fn forget(&self, region: &str);

    /// A `Dedicated` tenant's `database` on the server of `target` (the region writer's
    /// settings, dbname replaced): a small pool, closed when idle; the number of such
    /// pools is capped, so the operator's connections stay bounded (ADR 0010).
    fn open_tenant_database(
        &self,
        region: &str,
        target: &DbTarget,
        database: &str,
    ) -> Result<Arc<dyn Database>, DbError>;

    /// Closes the pool of a tenant's `database` (before it is dropped).
    fn close_tenant_database(&self, database: &str);
}

/// What the live catalog holds about a tenant and its name and host name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RowsSeen {
    /// The tenant's own row, by UID.
    pub own: Option<TenantRecord>,
    /// UID of another live row with the tenant's name.
    pub name_owner: Option<String>,
    /// Name of another live tenant with the tenant's host name.
    pub hostname_owner: Option<String>,
}

impl RowsSeen {
    /// The live row of another tenant that claims `row`'s host name or name, if any.
    pub fn conflict(&self, row: &TenantRow) -> Option<crate::db::NameConflict> {
        use crate::db::NameConflict;
        if let Some(owner) = &self.hostname_owner {
            return Some(NameConflict::Hostname {
                hostname: row.hostname.clone(),
                owner: owner.clone(),
            });
        }
        self.name_owner
            .as_ref()
            .map(|owner_uid| NameConflict::Name {
                name: row.name.clone(),
                owner_uid: owner_uid.clone(),
            })
    }
}

/// What a region's catalog holds about a tenant's SSO.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SsoSeen {
    /// The tenant's live catalog id, if it has a live row.
    pub tenant_id: Option<i64>,
    /// The tenant's published SSO row.
    pub row: Option<phoenix_catalog::SsoRow>,
}

/// What converging a tenant's SCIM token hashes did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScimConverged {
    /// The current token's hash was new.
    pub inserted: bool,
    /// Tokens rotated out now (their grace period starts).
    pub retired: u64,
    /// Tokens whose grace period ended, deleted.
    pub purged: u64,
}

/// One region database. Reads never write; writes fail on a read-only instance.
#[async_trait]
pub trait Database: Send + Sync {
    /// `host:port/dbname`, for messages.
    fn endpoint(&self) -> &str;
    /// Whether the server is a standby, or `None` when the database does not exist.
    async fn probe(&self) -> Result<Option<bool>, DbError>;
    /// The state the Region plan needs, with the first of `logins` as the data plane role
    /// (whose password verifier is read) and the others as its other logins.
    async fn state(&self, logins: &[&str]) -> Result<DbState, DbError>;
    /// How many sessions role `role` has on the server.
    async fn sessions(&self, role: &str) -> Result<i64, DbError>;
    /// RLS of the tenant tables that exist.
    async fn rls_state(&self) -> Result<Vec<TableState>, DbError>;
    /// Applied schema version.
    async fn schema_version(&self) -> Result<i32, DbError>;
    /// Where a standby is (lag and replayed LSN); `None` on a primary.
    async fn replay(&self) -> Result<Option<Replay>, DbError>;
    /// The writer's current WAL position.
    async fn wal_position(&self) -> Result<Lsn, DbError>;
    /// The readers published in the catalog, by ordinal.
    async fn published_readers(&self) -> Result<Vec<ReaderRow>, DbError>;
    /// Makes the published readers exactly `rows`, in one transaction.
    async fn publish_readers(&self, rows: &[ReaderRow]) -> Result<(), DbError>;
    /// Live tenants whose home is `region`.
    async fn tenant_count(&self, region: &str) -> Result<i64, DbError>;
    /// The `Dedicated` tenants' databases this catalog names that exist on the server.
    async fn dedicated_databases(&self) -> Result<Vec<String>, DbError>;
    /// The catalog rows that concern `row` (its own, and live rows claiming its names).
    async fn tenant_rows(&self, row: &TenantRow) -> Result<RowsSeen, DbError>;
    /// The tenant's catalog id and SSO row, by the Tenant's UID.
    async fn sso_seen(&self, tenant_uid: &str) -> Result<SsoSeen, DbError>;
    /// Publishes the SSO row of tenant `tenant_id`.
    async fn upsert_sso(
        &self,
        tenant_id: i64,
        row: &phoenix_catalog::SsoRow,
    ) -> Result<(), DbError>;
    /// Removes the SSO row published from IdPConnection `idp_uid`; how many went.
    async fn delete_sso(&self, idp_uid: &str) -> Result<u64, DbError>;
    /// Makes `current` (a token's SHA-256, hex) the tenant's one current SCIM token hash
    /// for IdPConnection `idp_uid`: other current hashes get `grace_seconds` to live, ended
    /// ones go; `None` removes them all (SCIM off).
    async fn converge_scim(
        &self,
        tenant_id: i64,
        idp_uid: &str,
        current: Option<&str>,
        grace_seconds: i64,
    ) -> Result<ScimConverged, DbError>;
    /// Removes every SCIM token hash of IdPConnection `idp_uid`; how many went.
    async fn delete_scim(&self, idp_uid: &str) -> Result<u64, DbError>;
    /// Takes away the login of role `name` and its password, if it is a role the operator
    /// owns (marked) and can still log in; whether it did. Existing sessions are left to
    /// end by themselves.
    async fn retire_login(&self, name: &str) -> Result<bool, DbError>;
    /// Creates the database when the server has none of that name; whether it did.
    async fn create_database(&self) -> Result<bool, DbError>;
    /// Applies pending migrations.
    async fn migrate(&self) -> Result<Migrated, DbError>;
    /// Runs DDL statements in one transaction.
    async fn execute(&self, statements: &[String]) -> Result<(), DbError>;
    /// Creates or updates a catalog row; its id.
    async fn upsert_tenant(&self, row: &TenantRow) -> Result<i64, DbError>;
    /// Marks a tenant retired, keeping its rows; whether a live row was retired.
    async fn retire_tenant(&self, uid: &str) -> Result<bool, DbError>;
    /// Deletes a tenant's clinical rows and catalog row.
    async fn delete_tenant(&self, uid: &str) -> Result<Deleted, DbError>;
    /// A `Schema` tenant's schema and role as the server holds them, with the clinical
    /// schema they are copied from.
    async fn tenant_schema(
        &self,
        schema: &str,
        role: &str,
    ) -> Result<crate::db::tenant_schema::SchemaSeen, DbError>;
    /// A `Dedicated` tenant's database and role as the server holds them, with the region
    /// database's clinical template.
    async fn tenant_database(
        &self,
        database: &str,
        role: &str,
    ) -> Result<crate::db::tenant_database::DatabaseSeen, DbError>;
    /// Runs a `Dedicated` tenant's server work: role changes, `CREATE DATABASE` (outside a
    /// transaction), then the database's owner and who may connect.
    async fn apply_tenant_database(
        &self,
        work: &crate::db::tenant_database::ServerWork,
    ) -> Result<(), DbError>;
    /// On a tenant's own database: what its plan needs besides the `clinical` schema
    /// (`logins` are the data plane logins).
    async fn tenant_database_inside(
        &self,
        logins: &[String],
    ) -> Result<crate::db::tenant_database::InsideSeen, DbError>;
    /// Drops a `Dedicated` tenant's database (its sessions terminated first) and its role,
    /// if the operator owns it.
    async fn drop_tenant_database(
        &self,
        database: &str,
        role: &str,
    ) -> Result<crate::db::tenant_database_observe::DroppedDatabase, DbError>;
    /// Drops a `Schema` tenant's schema (with its rows) and its role, if the operator owns
    /// it.
    async fn drop_tenant_schema(
        &self,
        schema: &str,
        role: &str,
    ) -> Result<crate::db::tenant_schema_observe::Dropped, DbError>;
    /// The rows of the (`Shared` or `Schema`) tenant with `uid`, read at one moment, stamped
    /// `taken_at`; `None` when no catalog row has that UID.
    async fn snapshot_tenant(
        &self,
        uid: &str,
        taken_at: &str,
    ) -> Result<Option<crate::snapshot::Snapshot>, DbError>;
    /// Deletes a tenant's rows as [`Database::delete_tenant`] (a `Schema` tenant's schema
    /// and role as [`Database::drop_tenant_schema`]), but only if each table holds exactly
    /// the rows `counts` (a snapshot's) says; otherwise nothing.
    async fn delete_snapshotted(
        &self,
        uid: &str,
        counts: &[(String, u64)],
    ) -> Result<Deleted, DbError>;
    /// The server's `system_identifier`, timeline and whether it is in recovery.
    async fn lineage(&self) -> Result<crate::db::failover::Lineage, DbError>;
    /// Promotes the standby (`pg_promote`, waiting up to `wait_seconds`); whether it now
    /// accepts writes. A primary answers true.
    async fn promote(&self, wait_seconds: i32) -> Result<bool, DbError>;
    /// The failover fence marker the database carries, if any.
    async fn superseded(&self) -> Result<Option<crate::db::failover::Superseded>, DbError>;
    /// Fences the database for the promoted Region `by` (see [`crate::db::failover::fence`]).
    async fn fence(
        &self,
        by: &str,
        lineage: &str,
        logins: &[&str],
    ) -> Result<crate::db::failover::Fenced, DbError>;
}
