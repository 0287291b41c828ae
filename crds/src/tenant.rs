//! The `Tenant` custom resource: one hospital system.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::Condition;

/// Desired state of one hospital tenant.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "phoenixguardian.io",
    version = "v1alpha1",
    kind = "Tenant",
    plural = "tenants",
    shortname = "pgtenant",
    category = "phoenixguardian",
    status = "TenantStatus",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Region", type_ = "string", json_path = ".status.placement.region"),
    printcolumn(name = "Hostname", type_ = "string", json_path = ".spec.dns.hostname", priority = 1),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$') && size(self.metadata.name) <= 40").message("metadata.name must be a DNS label of at most 40 characters (it names databases, roles and DNS records)"),
    validation = Rule::new("!has(oldSelf.status) || !has(oldSelf.status.placement) || !has(self.spec.homeRegion) || self.spec.homeRegion == oldSelf.status.placement.region").message("spec.homeRegion cannot move a tenant that is already placed (status.placement.region); migrate it to a new Tenant instead"),
)]
#[x_kube(
    validation = Rule::new("!has(oldSelf.homeRegion) || (has(self.homeRegion) && self.homeRegion == oldSelf.homeRegion)").message("spec.homeRegion is immutable once set"),
)]
#[serde(rename_all = "camelCase")]
pub struct TenantSpec {
    /// Human-readable name of the hospital system.
    #[schemars(length(min = 1, max = 200))]
    pub display_name: String,
    /// Jurisdictions the tenant's data may reside in (`US`, `EU`, `APAC`, ...). The tenant is
    /// placed only in a region whose `dataResidency` lists one of them, never elsewhere.
    #[schemars(
        length(min = 1, max = 8),
        inner(length(min = 2, max = 16), regex(pattern = r"^[A-Z][A-Z0-9]*$"))
    )]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub data_residency: Vec<String>,
    /// Region to place the tenant in. When absent the operator places it by residency and
    /// capacity. Immutable once set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 40),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub home_region: Option<String>,
    /// How the tenant's clinical data is isolated and what happens to it on deletion.
    #[serde(default)]
    pub database: TenantDatabase,
    /// DNS name the tenant's users reach the platform at.
    pub dns: TenantDns,
    /// Single sign-on settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sso: Option<TenantSso>,
    /// Per-tenant limits enforced by the data plane.
    #[serde(default)]
    pub limits: TenantLimits,
    /// A suspended tenant keeps its data but the data plane refuses its requests.
    #[serde(default)]
    pub suspended: bool,
}

/// Database settings of a tenant.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(
    validation = Rule::new("self.isolation == oldSelf.isolation").message("spec.database.isolation is immutable; create a new Tenant to change it"),
)]
#[serde(rename_all = "camelCase")]
pub struct TenantDatabase {
    /// `Shared`: rows in the region's shared tables under row-level security; `Schema`: a
    /// schema per tenant; `Dedicated`: a database or RDS instance of its own.
    #[serde(default)]
    pub isolation: Isolation,
    /// What deleting the Tenant does to its data: `Retain` keeps the rows and marks the
    /// tenant retired; `Snapshot` writes the tenant's rows to the Region's snapshot bucket
    /// (`spec.database.snapshots`) and deletes them once the object is there; `Delete`
    /// removes the tenant's rows.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

impl Default for TenantDatabase {
    fn default() -> Self {
        Self {
            isolation: Isolation::Shared,
            deletion_policy: DeletionPolicy::Retain,
        }
    }
}

/// Isolation level of a tenant's clinical data.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum Isolation {
    /// Rows in shared tables, separated by row-level security.
    #[default]
    Shared,
    /// A PostgreSQL schema of its own.
    Schema,
    /// A database or RDS instance of its own.
    Dedicated,
}

/// What deleting a Tenant does to its data.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DeletionPolicy {
    /// Keep the data; the tenant is marked retired in the catalog.
    #[default]
    Retain,
    /// Snapshot the data to the Region's snapshot bucket, then delete it.
    Snapshot,
    /// Delete the tenant's data.
    Delete,
}

/// DNS settings of a tenant.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantDns {
    /// Fully qualified host name of the tenant, e.g. `mercy.eu.phoenixguardian.health`.
    #[schemars(
        length(min = 3, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)+$")
    )]
    pub hostname: String,
}

/// Single sign-on settings of a tenant.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantSso {
    /// Name of the IdPConnection users of this tenant sign in with.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub idp_connection_ref: String,
}

/// Per-tenant limits.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantLimits {
    /// Sustained API requests per second before the data plane answers 429.
    #[serde(default = "default_rps")]
    #[schemars(range(min = 1, max = 100000))]
    pub requests_per_second: i32,
    /// Most users SCIM provisioning may create.
    #[serde(default = "default_users")]
    #[schemars(range(min = 1, max = 1000000))]
    pub max_users: i32,
}

fn default_rps() -> i32 {
    100
}

fn default_users() -> i32 {
    5000
}

impl Default for TenantLimits {
    fn default() -> Self {
        Self {
            requests_per_second: default_rps(),
            max_users: default_users(),
        }
    }
}

/// Lifecycle phase of a tenant.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum TenantPhase {
    /// Being placed and provisioned.
    Provisioning,
    /// Serving traffic.
    Active,
    /// Data kept, traffic refused.
    Suspended,
    /// Finalizer running.
    Deleting,
    /// Cannot make progress until the spec or the environment is fixed.
    Failed,
}

/// Observed state of a tenant.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantStatus {
    /// Lifecycle phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<TenantPhase>,
    /// `Ready`, `DatabaseReady`, `RLSEnforced`, `DNSReady`, `SSOReady`.
    #[serde(default)]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// Where the tenant lives. Set once; never changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<Placement>,
    /// Where the tenant is served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoints: Option<TenantEndpoints>,
    /// The DNS records the operator published for the tenant: where they are, so that a
    /// changed `spec.dns.hostname` has the old ones removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<TenantDnsStatus>,
    /// The Region whose database serves the tenant when it is not its home
    /// (`placement.region`): the one promoted in its place by a failover.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serving_region: Option<String>,
    /// The `metadata.generation` last reconciled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// Where a tenant was placed.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Placement {
    /// Name of the home Region.
    pub region: String,
    /// AWS region of the home Region.
    pub aws_region: String,
    /// Jurisdiction of the tenant the region satisfies.
    pub jurisdiction: String,
}

/// The Route53 records the operator published for a tenant.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantDnsStatus {
    /// The host name the records are at (fully qualified, lowercase, trailing dot).
    pub hostname: String,
    /// The hosted zone holding them.
    pub hosted_zone_id: String,
    /// The record sets, as `name type [set identifier]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub records: Vec<String>,
}

/// Endpoints of a tenant.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantEndpoints {
    /// Base URL of the tenant's FHIR API.
    pub api: String,
    /// The tenant's id in the region catalog (the value of `app.tenant_id`).
    pub catalog_id: i64,
}
