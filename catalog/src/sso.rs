//! `catalog.sso`: the SSO settings of a tenant, published by the operator from its
//! IdPConnection, read by the data plane to validate tokens and logins.

use crate::RowError;

string_enum!(
    /// The protocol a tenant signs in with.
    Protocol, "protocol", {
        /// OpenID Connect.
        Oidc => "OIDC",
        /// SAML 2.0.
        Saml => "SAML",
    }
);

/// One IdP group (or claim value) granted a platform role.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RoleGrant {
    /// The group as the IdP names it in the groups claim.
    pub group: String,
    /// The platform role (`physician`, `nurse`, `admin`, `auditor`, ...).
    pub role: String,
}

/// The SSO row of a tenant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SsoRow {
    /// UID of the IdPConnection it was published from.
    pub idp_uid: String,
    /// Its name.
    pub idp_name: String,
    /// OIDC or SAML.
    pub protocol: Protocol,
    /// The issuer tokens must carry (`iss`).
    pub issuer: String,
    /// Where the issuer's signing keys are.
    pub jwks_uri: String,
    /// The client the data plane logs users in as.
    pub client_id: String,
    /// Accepted `aud` values.
    pub audiences: Vec<String>,
    /// Claim holding the user's stable id.
    pub claim_subject: String,
    /// Claim holding the email address.
    pub claim_email: String,
    /// Claim holding group memberships.
    pub claim_groups: String,
    /// Claim holding the display name.
    pub claim_name: String,
    /// IdP groups granted platform roles.
    pub role_mapping: Vec<RoleGrant>,
    /// Email domains allowed to log in (empty: any).
    pub allowed_email_domains: Vec<String>,
    /// Whether the tenant's IdP provisions users through SCIM.
    pub scim_enabled: bool,
    /// `metadata.generation` of the IdPConnection.
    pub generation: i64,
    /// Where browsers are sent to log in (discovery's `authorization_endpoint`).
    pub authorization_endpoint: Option<String>,
    /// Where the data plane exchanges an authorization code (discovery's `token_endpoint`).
    pub token_endpoint: Option<String>,
    /// Where browsers are sent to end the IdP session (RP-Initiated Logout), if published.
    pub end_session_endpoint: Option<String>,
}

/// The columns [`SsoRow::from_row`] reads (plus `tenant_id`).
pub const COLUMNS: &str = "tenant_id, idp_uid, idp_name, protocol, issuer, jwks_uri, client_id, audiences, \
     claim_subject, claim_email, claim_groups, claim_name, role_mapping::text AS role_mapping, \
     allowed_email_domains, scim_enabled, generation, authorization_endpoint, token_endpoint, \
     end_session_endpoint";

impl SsoRow {
    /// Reads a row selected with [`COLUMNS`]: its tenant id and the row.
    pub fn from_row(row: &tokio_postgres::Row) -> Result<(i64, Self), RowError> {
        let tenant_id: i64 = row.try_get("tenant_id")?;
        let unknown = |source| RowError::Unknown {
            id: tenant_id,
            source,
        };
        let protocol: String = row.try_get("protocol")?;
        let mapping: String = row.try_get("role_mapping")?;
        let role_mapping = serde_json::from_str(&mapping).map_err(|e| {
            unknown(crate::UnknownValue {
                column: "role_mapping",
                value: e.to_string(),
            })
        })?;
        Ok((
            tenant_id,
            SsoRow {
                idp_uid: row.try_get("idp_uid")?,
                idp_name: row.try_get("idp_name")?,
                protocol: protocol.parse().map_err(unknown)?,
                issuer: row.try_get("issuer")?,
                jwks_uri: row.try_get("jwks_uri")?,
                client_id: row.try_get("client_id")?,
                audiences: row.try_get("audiences")?,
                claim_subject: row.try_get("claim_subject")?,
                claim_email: row.try_get("claim_email")?,
                claim_groups: row.try_get("claim_groups")?,
                claim_name: row.try_get("claim_name")?,
                role_mapping,
                allowed_email_domains: row.try_get("allowed_email_domains")?,
                scim_enabled: row.try_get("scim_enabled")?,
                generation: row.try_get("generation")?,
                authorization_endpoint: row.try_get("authorization_endpoint")?,
                token_endpoint: row.try_get("token_endpoint")?,
                end_session_endpoint: row.try_get("end_session_endpoint")?,
            },
        ))
    }

    /// The fields in which `self` differs from `other`, for plans (generation aside).
    pub fn differences(&self, other: &SsoRow) -> Vec<&'static str> {
        let mut out = Vec::new();
        let mut check = |differs: bool, name: &'static str| {
            if differs {
                out.push(name);
            }
        };
        check(self.idp_uid != other.idp_uid, "idpConnection");
        check(self.protocol != other.protocol, "protocol");
        check(self.issuer != other.issuer, "issuer");
        check(self.jwks_uri != other.jwks_uri, "jwksUri");
        check(self.client_id != other.client_id, "clientId");
        check(self.audiences != other.audiences, "audiences");
        check(
            (
                &self.claim_subject,
                &self.claim_email,
                &self.claim_groups,
                &self.claim_name,
            ) != (
                &other.claim_subject,
                &other.claim_email,
                &other.claim_groups,
                &other.claim_name,
            ),
            "claimMapping",
        );
        check(self.role_mapping != other.role_mapping, "roleMapping");
        check(
            self.allowed_email_domains != other.allowed_email_domains,
            "allowedEmailDomains",
        );
        check(self.scim_enabled != other.scim_enabled, "scim");
        check(
            (
                &self.authorization_endpoint,
                &self.token_endpoint,
                &self.end_session_endpoint,
            ) != (
                &other.authorization_endpoint,
                &other.token_endpoint,
                &other.end_session_endpoint,
            ),
            "endpoints",
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> SsoRow {
        SsoRow {
            idp_uid: "u".into(),
            idp_name: "n".into(),
            protocol: Protocol::Oidc,
            issuer: "https://idp/realms/r".into(),
            jwks_uri: "https://idp/realms/r/certs".into(),
            client_id: "phoenix-dataplane".into(),
            audiences: vec![],
            claim_subject: "sub".into(),
            claim_email: "email".into(),
            claim_groups: "groups".into(),
            claim_name: "name".into(),
            role_mapping: vec![],
            allowed_email_domains: vec![],
            scim_enabled: false,
            generation: 1,
            authorization_endpoint: Some("https://idp/realms/r/auth".into()),
            token_endpoint: Some("https://idp/realms/r/token".into()),
            end_session_endpoint: None,
        }
    }

    #[test]
    fn a_changed_login_endpoint_is_a_difference() {
        let old = row();
        assert!(old.differences(&row()).is_empty());
        let mut new = row();
        new.end_session_endpoint = Some("https://idp/realms/r/logout".into());
        assert_eq!(old.differences(&new), ["endpoints"]);
        new.token_endpoint = None;
        assert_eq!(old.differences(&new), ["endpoints"]);
    }

    #[test]
    fn the_columns_name_the_login_endpoints() {
        for column in [
            "authorization_endpoint",
            "token_endpoint",
            "end_session_endpoint",
        ] {
            assert!(COLUMNS.contains(column), "{column}");
        }
    }
}
