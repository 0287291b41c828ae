//! The `Region` custom resource: one deployment region and its database.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{Condition, SecretKeyRef};

/// Desired state of one deployment region.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "phoenixguardian.io",
    version = "v1alpha1",
    kind = "Region",
    plural = "regions",
    shortname = "pgregion",
    category = "phoenixguardian",
    status = "RegionStatus",
    printcolumn(name = "Role", type_ = "string", json_path = ".spec.role"),
    printcolumn(name = "AWS-Region", type_ = "string", json_path = ".spec.awsRegion"),
    printcolumn(name = "Tenants", type_ = "integer", json_path = ".status.tenantCount"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$') && size(self.metadata.name) <= 40").message("metadata.name must be a DNS label of at most 40 characters (it names databases and DNS records)"),
)]
#[x_kube(
    validation = Rule::new("self.role == 'Replica' ? has(self.replicaOf) : !has(self.replicaOf)").message("spec.replicaOf is required when spec.role is Replica and must be absent when it is Primary"),
    validation = Rule::new("!has(self.dns) || has(self.ingress)").message("spec.ingress is required with spec.dns: tenants' latency records point at it"),
)]
#[serde(rename_all = "camelCase")]
pub struct RegionSpec {
    /// AWS region this deployment region runs in, e.g. `eu-west-1`.
    #[schemars(
        length(min = 1, max = 32),
        regex(pattern = r"^[a-z]{2}(-gov)?-[a-z]+-[0-9]$")
    )]
    pub aws_region: String,
    /// `Primary` holds writable databases; `Replica` follows `replicaOf` with a streaming
    /// replica. Flipping Replica to Primary is a declarative regional failover.
    #[serde(default)]
    pub role: RegionRole,
    /// Name of the Region this replica follows. Required when `role` is `Replica`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 40),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub replica_of: Option<String>,
    /// Jurisdictions whose data this region may hold (`US`, `EU`, `APAC`, ...). A tenant is
    /// only ever placed in a region that lists one of the tenant's jurisdictions.
    #[schemars(
        length(min = 1, max = 8),
        inner(length(min = 2, max = 16), regex(pattern = r"^[A-Z][A-Z0-9]*$"))
    )]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub data_residency: Vec<String>,
    /// Where the region's PostgreSQL is: an existing writer (and readers), or an RDS
    /// instance to create.
    pub database: RegionDatabase,
    /// Public ingress of the region's data plane.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<RegionIngress>,
    /// Route53 settings for the records of this region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<RegionDns>,
    /// How many tenants this region may hold.
    #[serde(default)]
    pub capacity: RegionCapacity,
}

/// Role of a region.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum RegionRole {
    /// Holds writable databases; tenants are placed here.
    #[default]
    Primary,
    /// Holds a streaming replica of `replicaOf`'s database.
    Replica,
}

/// The database of a region.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(
    validation = Rule::new("has(self.writer) != has(self.rds)").message("set exactly one of spec.database.writer or spec.database.rds"),
)]
#[serde(rename_all = "camelCase")]
pub struct RegionDatabase {
    /// Name of the database holding the catalog and the shared clinical schema.
    #[serde(default = "default_database_name")]
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^[a-z_][a-z0-9_]*$"))]
    pub database_name: String,
    /// Connection to an existing writer (primary) instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub writer: Option<DatabaseConnection>,
    /// Read-only endpoints (streaming replicas) the data plane reads from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub readers: Vec<DatabaseConnection>,
    /// An RDS instance the operator creates through the RDS API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rds: Option<RdsInstance>,
    /// Where snapshots of this region's tenants go (`deletionPolicy: Snapshot`). Without
    /// it, deleting a Snapshot tenant of this region fails and keeps the tenant's data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshots: Option<RegionSnapshots>,
}

/// The S3 bucket (in the Region's `awsRegion`, so snapshots stay in its residency) that
/// receives the snapshots of the region's tenants.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(
    validation = Rule::new("!self.bucket.contains('..') && !self.bucket.contains('.-') && !self.bucket.contains('-.')").message("spec.database.snapshots.bucket is not a valid S3 bucket name (no '..', '.-' or '-.')"),
    validation = Rule::new("!has(self.prefix) || (!self.prefix.startsWith('/') && !self.prefix.endsWith('/') && !self.prefix.contains('//'))").message("spec.database.snapshots.prefix must not start or end with '/' nor contain '//'"),
)]
#[serde(rename_all = "camelCase")]
pub struct RegionSnapshots {
    /// Name of an existing S3 bucket; the operator needs `s3:PutObject` and
    /// `s3:GetObject` on it (HeadObject checks the upload).
    #[schemars(
        length(min = 3, max = 63),
        regex(pattern = r"^[a-z0-9][a-z0-9.-]*[a-z0-9]$")
    )]
    pub bucket: String,
    /// Key prefix of the snapshots; the key is
    /// `<prefix>/<region>/<tenant>/<tenant uid>/<UTC time>.snapshot`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 512),
        regex(pattern = r"^[A-Za-z0-9!_.*'()/-]+$")
    )]
    pub prefix: Option<String>,
}

fn default_database_name() -> String {
    "phoenix".to_owned()
}

/// How to reach one PostgreSQL instance.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(
    validation = Rule::new("has(self.connectionSecretRef) != has(self.host)").message("set exactly one of connectionSecretRef or host"),
    validation = Rule::new("!has(self.host) || has(self.credentialsSecretRef)").message("credentialsSecretRef (the password) is required with host"),
    validation = Rule::new("!has(self.host) || !has(self.sslMode) || !(self.sslMode in ['verify-ca', 'verify-full']) || has(self.caSecretRef)").message("caSecretRef (the CA bundle) is required with host and sslMode verify-ca or verify-full"),
    validation = Rule::new("!has(self.caSecretRef) || !has(self.sslMode) || self.sslMode != 'disable'").message("caSecretRef makes no sense with sslMode disable: remove one of them"),
)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseConnection {
    /// Secret key holding a full libpq connection string (URL or key=value) of an admin role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_secret_ref: Option<SecretKeyRef>,
    /// Host name or IP address of the instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub host: Option<String>,
    /// TCP port of the instance.
    #[serde(default = "default_pg_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// Admin role the operator connects as.
    #[serde(default = "default_pg_user")]
    #[schemars(length(min = 1, max = 63))]
    pub user: String,
    /// Secret key holding the admin role's password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<SecretKeyRef>,
    /// TLS to the instance, as libpq's `sslmode`; overrides the connection string's.
    /// Unset: the connection string's, else `prefer`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssl_mode: Option<SslMode>,
    /// Secret key holding a PEM CA bundle the server's certificate is verified against
    /// (replaces the connection string's `sslrootcert`); with `require` it verifies the
    /// chain like `verify-ca`, as libpq does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<SecretKeyRef>,
}

/// TLS to the instance, as libpq's `sslmode`; overrides the connection string's (unset:
/// the connection string's, else `prefer`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum SslMode {
    /// Never TLS.
    #[serde(rename = "disable")]
    Disable,
    /// TLS when the server offers it; nothing verified.
    #[serde(rename = "prefer")]
    Prefer,
    /// TLS or no connection; the chain is verified only when a CA is given.
    #[serde(rename = "require")]
    Require,
    /// TLS, and the server's certificate chain must lead to the CA; any host name.
    #[serde(rename = "verify-ca")]
    VerifyCa,
    /// TLS, the chain must lead to the CA and the certificate must name the host.
    #[serde(rename = "verify-full")]
    VerifyFull,
}

fn default_pg_port() -> i32 {
    5432
}

fn default_pg_user() -> String {
    "postgres".to_owned()
}

/// An RDS for PostgreSQL instance created by the operator (in the Region's `awsRegion`,
/// tagged as the operator's; one it did not create is never adopted). The operator
/// connects as the master user with TLS `verify-full` against `caSecretRef`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(
    validation = Rule::new("!self.instanceIdentifier.endsWith('-') && !self.instanceIdentifier.contains('--')").message("spec.database.rds.instanceIdentifier must not end with '-' nor contain '--' (RDS refuses it)"),
)]
#[serde(rename_all = "camelCase")]
pub struct RdsInstance {
    /// DB instance identifier (the same on every pass: the operator finds its instance by it).
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^[a-z][-a-z0-9]*$"))]
    pub instance_identifier: String,
    /// Instance class, e.g. `db.r6g.large`.
    #[schemars(
        length(min = 1, max = 64),
        regex(pattern = r"^db\.[a-z0-9]+\.[a-z0-9]+$")
    )]
    pub instance_class: String,
    /// PostgreSQL engine version, e.g. `15.6`.
    #[serde(default = "default_engine_version")]
    pub engine_version: String,
    /// Allocated storage in GiB.
    #[serde(default = "default_storage")]
    #[schemars(range(min = 20, max = 65536))]
    pub allocated_storage_gib: i32,
    /// Whether the instance is deployed across availability zones.
    #[serde(default)]
    pub multi_az: bool,
    /// Master user name of the instance; the operator's login (`rds_superuser`, not a
    /// superuser).
    #[serde(default = "default_master_username")]
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^[a-z][a-z0-9_]*$"))]
    pub master_username: String,
    /// Secret key holding the master password: read when the key exists, else generated
    /// into it (the Secret is created when missing).
    pub master_password_secret_ref: SecretKeyRef,
    /// Secret key holding the PEM CA bundle the instance's certificate is verified against
    /// (`verify-full`), e.g. AWS's RDS bundle for the region.
    pub ca_secret_ref: SecretKeyRef,
}

fn default_master_username() -> String {
    "phoenix_admin".to_owned()
}

fn default_engine_version() -> String {
    "15".to_owned()
}

fn default_storage() -> i32 {
    100
}

/// Public ingress of a region's data plane.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegionIngress {
    /// Public host name of the region's data plane (target of tenants' latency records).
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub hostname: String,
    /// Path Route53 health checks probe.
    #[serde(default = "default_health_path")]
    #[schemars(length(min = 1, max = 255), regex(pattern = r"^/"))]
    pub health_check_path: String,
}

fn default_health_path() -> String {
    "/healthz".to_owned()
}

/// Route53 settings of a region: the hosted zone its tenants' latency records go to,
/// named by id or by domain name (resolved by the operator).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(
    validation = Rule::new("has(self.hostedZoneId) != has(self.zoneName)").message("set exactly one of spec.dns.hostedZoneId or spec.dns.zoneName"),
)]
#[serde(rename_all = "camelCase")]
pub struct RegionDns {
    /// Id of the hosted zone in which tenants' records are written, e.g. `Z0123456789ABC`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 32), regex(pattern = r"^[A-Z0-9]+$"))]
    pub hosted_zone_id: Option<String>,
    /// Domain name of a public hosted zone the operator looks up instead of an id, e.g.
    /// `phoenixguardian.test` (a trailing dot is optional). Exactly one zone must have it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 254),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)+\.?$")
    )]
    pub zone_name: Option<String>,
}

/// Capacity of a region.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegionCapacity {
    /// Most tenants the placement puts in this region.
    #[serde(default = "default_max_tenants")]
    #[schemars(range(min = 1, max = 100000))]
    pub max_tenants: i32,
}

fn default_max_tenants() -> i32 {
    500
}

impl Default for RegionCapacity {
    fn default() -> Self {
        Self {
            max_tenants: default_max_tenants(),
        }
    }
}

/// Replication health of one reader.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReaderStatus {
    /// `host:port/dbname`, as published to the catalog for the data plane (empty when its
    /// connection could not be resolved).
    pub endpoint: String,
    /// A standby whose WAL receiver streams from the writer.
    pub healthy: bool,
    /// The last WAL position it replayed (`pg_last_wal_replay_lsn()`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_lsn: Option<String>,
    /// Bytes of WAL between what it replayed and the writer's position (sampled after it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_bytes: Option<i64>,
    /// Seconds behind: 0 when it replayed all it received, else the age of the last
    /// replayed transaction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_seconds: Option<f64>,
    /// Why it is not healthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Observed state of a region.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegionStatus {
    /// `Ready`, `Provisioning` or `Failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// `Ready`, `DatabaseReachable`, `ReplicationHealthy`.
    #[serde(default)]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// Replay lag of the slowest reader, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication_lag_seconds: Option<f64>,
    /// Each declared reader's replication health, in `spec.database.readers` order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub readers: Vec<ReaderStatus>,
    /// Active tenants whose home is this region.
    #[serde(default)]
    pub tenant_count: i32,
    /// Catalog schema version applied to the region's database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_version: Option<i32>,
    /// The region's Route53 zone and ingress health check, when `spec.dns` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<RegionDnsStatus>,
    /// Which login the data plane Secret names, and the password rotation in progress
    /// (a Primary region).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataplane_credentials: Option<DataplaneCredentialsStatus>,
    /// What a failover needs to know and did (ADR 0011): the lineage last seen, the
    /// region it was a replica of, the promotion and the fence of the old primary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover: Option<RegionFailoverStatus>,
    /// The `metadata.generation` last reconciled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// A Region's part in failovers (ADR 0011).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegionFailoverStatus {
    /// The writer's `pg_control_system().system_identifier`, last seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_identifier: Option<String>,
    /// The writer's timeline, last seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeline: Option<i64>,
    /// The Region this one was last reconciled (Ready) as a Replica of. Only a Region with
    /// this set is promoted when its role becomes Primary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica_of: Option<String>,
    /// The Region this one was promoted in place of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promoted_from: Option<String>,
    /// When it was promoted (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promoted_at: Option<String>,
    /// The lineage claim the promotion holds (`<system identifier>-tl<timeline>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lineage_claim: Option<String>,
    /// When the old primary was fenced; unset while fencing is pending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fenced_at: Option<String>,
    /// The Region promoted in this one's place (this one is fenced).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub superseded_by: Option<String>,
}

/// The data plane's database login and its password rotation
/// (`phoenixguardian.io/rotate-dataplane-password`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataplaneCredentialsStatus {
    /// The login the data plane Secret names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login: Option<String>,
    /// The rotation annotation value the Secret's password was made for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation: Option<String>,
    /// When the Secret last moved to another login (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotated_at: Option<String>,
    /// The previous login while it drains: it still logs in, and loses its login and
    /// password once none of its sessions is left (or the drain limit passes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub draining: Option<String>,
    /// Sessions of the draining login at the last pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub draining_sessions: Option<i64>,
}

/// What the operator built in Route53 for a region.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegionDnsStatus {
    /// The hosted zone, resolved from `spec.dns`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hosted_zone_id: Option<String>,
    /// The hosted zone's domain name, with a trailing dot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone_name: Option<String>,
    /// The Route53 health check probing `spec.ingress`, attached to the region's latency
    /// records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check_id: Option<String>,
}
