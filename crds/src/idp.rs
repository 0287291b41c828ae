//! The `IdPConnection` custom resource: a tenant's identity provider.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{Condition, SecretKeyRef, SecretRef};

/// Desired state of one identity provider connection.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "phoenixguardian.io",
    version = "v1alpha1",
    kind = "IdPConnection",
    plural = "idpconnections",
    shortname = "idp",
    category = "phoenixguardian",
    status = "IdPConnectionStatus",
    printcolumn(name = "Tenant", type_ = "string", json_path = ".spec.tenantRef"),
    printcolumn(name = "Protocol", type_ = "string", json_path = ".spec.protocol"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(
    validation = Rule::new("self.protocol == 'OIDC' ? has(self.oidc) : !has(self.oidc)").message("spec.oidc is required when protocol is OIDC and must be absent otherwise"),
    validation = Rule::new("self.protocol == 'SAML' ? has(self.saml) : !has(self.saml)").message("spec.saml is required when protocol is SAML and must be absent otherwise"),
    validation = Rule::new("self.tenantRef == oldSelf.tenantRef").message("spec.tenantRef is immutable"),
)]
#[serde(rename_all = "camelCase")]
pub struct IdPConnectionSpec {
    /// Name of the Tenant whose users sign in through this IdP.
    #[schemars(
        length(min = 1, max = 40),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub tenant_ref: String,
    /// `OIDC` or `SAML`.
    pub protocol: Protocol,
    /// OpenID Connect settings; required exactly when `protocol` is `OIDC`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oidc: Option<OidcSettings>,
    /// SAML 2.0 settings; required exactly when `protocol` is `SAML`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub saml: Option<SamlSettings>,
    /// Maps IdP groups to platform roles.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub role_mapping: Vec<RoleMapping>,
    /// Email domains allowed to sign in; empty allows any the IdP asserts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 32),
        inner(
            length(min = 3, max = 253),
            regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)+$")
        )
    )]
    pub allowed_email_domains: Vec<String>,
    /// SCIM 2.0 provisioning.
    #[serde(default)]
    pub scim: ScimSettings,
}

/// Sign-in protocol.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Protocol {
    /// OpenID Connect.
    #[serde(rename = "OIDC")]
    Oidc,
    /// SAML 2.0.
    #[serde(rename = "SAML")]
    Saml,
}

/// OpenID Connect settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OidcSettings {
    /// Issuer URL; `<issuer>/.well-known/openid-configuration` must serve discovery. HTTPS,
    /// or plain HTTP on loopback only (a local IdP in development).
    #[schemars(
        length(min = 8, max = 2048),
        regex(
            pattern = r"^(https://[^\s]+|http://(localhost|127\.0\.0\.1|\[::1\])(:[0-9]+)?(/[^\s]*)?)$"
        )
    )]
    pub issuer_url: String,
    /// OAuth 2.0 client id of the platform at the IdP.
    #[schemars(length(min = 1, max = 255))]
    pub client_id: String,
    /// Secret key holding the client secret (confidential clients).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret_ref: Option<SecretKeyRef>,
    /// Accepted `aud` values of bearer tokens; defaults to the client id.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16), inner(length(min = 1, max = 255)))]
    pub audiences: Vec<String>,
    /// Which token claims carry the user's identity.
    #[serde(default)]
    pub claim_mapping: ClaimMapping,
}

/// Token claims that carry a user's identity.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClaimMapping {
    /// Claim with the stable user id.
    #[serde(default = "default_subject")]
    pub subject: String,
    /// Claim with the email address.
    #[serde(default = "default_email")]
    pub email: String,
    /// Claim with the group list.
    #[serde(default = "default_groups")]
    pub groups: String,
    /// Claim with the display name.
    #[serde(default = "default_name")]
    pub name: String,
}

fn default_subject() -> String {
    "sub".to_owned()
}
fn default_email() -> String {
    "email".to_owned()
}
fn default_groups() -> String {
    "groups".to_owned()
}
fn default_name() -> String {
    "name".to_owned()
}

impl Default for ClaimMapping {
    fn default() -> Self {
        Self {
            subject: default_subject(),
            email: default_email(),
            groups: default_groups(),
            name: default_name(),
        }
    }
}

/// SAML 2.0 settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(
    validation = Rule::new("has(self.metadataUrl) != has(self.metadataXml)").message("set exactly one of spec.saml.metadataUrl or spec.saml.metadataXml"),
)]
#[serde(rename_all = "camelCase")]
pub struct SamlSettings {
    /// URL of the IdP's SAML metadata: HTTPS, or plain HTTP on loopback only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 8, max = 2048),
        regex(
            pattern = r"^(https://[^\s]+|http://(localhost|127\.0\.0\.1|\[::1\])(:[0-9]+)?(/[^\s]*)?)$"
        )
    )]
    pub metadata_url: Option<String>,
    /// The IdP's SAML metadata document, inline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 262144))]
    pub metadata_xml: Option<String>,
    /// Entity id of the IdP.
    #[schemars(length(min = 1, max = 1024))]
    pub entity_id: String,
    /// Which assertion attributes carry the user's identity.
    #[serde(default)]
    pub attribute_mapping: AttributeMapping,
}

/// SAML attributes that carry a user's identity.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AttributeMapping {
    /// Attribute with the email address; the NameID when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Attribute with the group list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<String>,
    /// Attribute with the display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// Maps one IdP group to a platform role.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoleMapping {
    /// Group name as the IdP asserts it.
    #[schemars(length(min = 1, max = 255))]
    pub group: String,
    /// Platform role members of the group get.
    pub role: PlatformRole,
}

/// Roles of the platform.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PlatformRole {
    /// Writes and signs notes.
    Physician,
    /// Reads and contributes to notes.
    Nurse,
    /// Drafts notes for a physician.
    Scribe,
    /// Manages the tenant's users and settings.
    Admin,
    /// Reads only.
    Readonly,
}

/// SCIM 2.0 provisioning settings.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScimSettings {
    /// Whether the IdP provisions users over SCIM; the operator then generates a bearer
    /// token into a Secret.
    #[serde(default)]
    pub enabled: bool,
}

/// Observed state of an IdP connection.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct IdPConnectionStatus {
    /// `Ready`, `Invalid` or `Pending`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// `Ready`, `DiscoveryValid`, `CertificateValid`, `Published`.
    #[serde(default)]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// RFC 3339 expiry of the IdP's signing certificate (SAML).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_expiry: Option<String>,
    /// Secret holding the generated SCIM bearer token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scim_token_secret: Option<SecretRef>,
    /// The value of the `phoenixguardian.io/rotate-scim-token` annotation last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scim_token_rotation: Option<String>,
    /// Key ids (`kid`) of the signing keys the IdP publishes that the platform accepts, as
    /// last validated; a change is a key rotation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signing_key_ids: Vec<String>,
    /// The `metadata.generation` last reconciled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}
