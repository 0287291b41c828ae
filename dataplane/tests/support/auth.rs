//! Tokens for data plane tests: the unit-test RSA key, a JWKS that serves it (as `k1`),
//! and the tenant and SSO rows a test starts from.

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey};
use phoenix_catalog::sso::Protocol;
use phoenix_dataplane::auth::jwks::{FetchError, JwksSource};
use phoenix_dataplane::catalog::{Isolation, SsoRow, TenantRecord, TenantRow, TenantState};
use serde_json::json;

/// The private key test tokens are signed with (`dataplane/src/auth/test_rsa.pem`).
pub fn key() -> EncodingKey {
    EncodingKey::from_rsa_pem(include_bytes!("../../src/auth/test_rsa.pem")).expect("test key")
}

/// Serves one JWKS holding the public half of [`key`] under kid `k1`.
pub struct FixedJwks;

#[async_trait::async_trait]
impl JwksSource for FixedJwks {
    async fn fetch(&self, _uri: &str) -> Result<Vec<u8>, FetchError> {
        let mut jwk = Jwk::from_encoding_key(&key(), Algorithm::RS256).expect("jwk");
        jwk.common.key_id = Some("k1".into());
        Ok(json!({ "keys": [jwk] }).to_string().into_bytes())
    }
}

/// An active, shared-isolation US tenant `name` served at `host`.
pub fn tenant_record(id: i64, name: &str, host: &str) -> TenantRecord {
    TenantRecord {
        id,
        row: TenantRow {
            uid: format!("uid-{name}"),
            name: name.into(),
            display_name: name.into(),
            hostname: host.into(),
            home_region: "us-east-1".into(),
            data_residency: vec!["US".into()],
            isolation: Isolation::Shared,
            state: TenantState::Active,
            requests_per_second: 100,
            max_users: 100,
            generation: 1,
            schema: None,
            database: None,
            database_server: None,
        },
    }
}

/// OIDC settings of IdP `idp_name` at `issuer` (keys at `<issuer>/certs`, audience and
/// client `phoenix-dataplane`, standard claims), no role mapping, no domain rule, SCIM
/// off, no login endpoints; tests set what they need with struct update syntax.
pub fn oidc_sso(idp_name: &str, issuer: &str) -> SsoRow {
    SsoRow {
        idp_uid: format!("uid-{idp_name}"),
        idp_name: idp_name.into(),
        protocol: Protocol::Oidc,
        issuer: issuer.into(),
        jwks_uri: format!("{issuer}/certs"),
        client_id: "phoenix-dataplane".into(),
        audiences: vec!["phoenix-dataplane".into()],
        claim_subject: "sub".into(),
        claim_email: "email".into(),
        claim_groups: "groups".into(),
        claim_name: "name".into(),
        role_mapping: vec![],
        allowed_email_domains: vec![],
        scim_enabled: false,
        generation: 1,
        authorization_endpoint: None,
        token_endpoint: None,
        end_session_endpoint: None,
    }
}
