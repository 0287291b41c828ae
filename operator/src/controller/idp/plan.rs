//! Validation of an OpenID provider's published metadata: pure. The issuer must be the
//! one configured, the provider must sign with an algorithm the platform accepts, and its
//! JWKS must hold a usable public signing key for one of them.

use kube::ResourceExt;
use phoenix_catalog::SsoRow;
use phoenix_catalog::sso::{Protocol, RoleGrant};
use phoenix_crds::IdPConnection;
use serde_json::Value;

use super::deref::IdpRefs;

/// Signing algorithms accepted for ID and access tokens: asymmetric only. `none` and the
/// HMAC family (HS*) are never accepted — a public key must never verify an HMAC.
pub const ACCEPTED_ALGORITHMS: [&str; 9] = [
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];

/// What is wrong with an identity provider's metadata; each message says what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdpProblem {
    /// The discovery document lacks a required member.
    #[error(
        "the discovery document of {issuer} has no {member}; is spec.oidc.issuerUrl the issuer of an OpenID provider?"
    )]
    InvalidDiscovery {
        /// The configured issuer.
        issuer: String,
        /// The missing member.
        member: &'static str,
    },
    /// The published issuer is not the configured one (tokens would not match).
    #[error(
        "the provider at {configured} says its issuer is {published}; set spec.oidc.issuerUrl to exactly {published}, or fix the provider's issuer (e.g. its frontend URL)"
    )]
    IssuerMismatch {
        /// spec.oidc.issuerUrl.
        configured: String,
        /// `issuer` of the discovery document.
        published: String,
    },
    /// The provider signs only with algorithms the platform refuses.
    #[error(
        "the provider signs ID tokens with {offered:?}, none of which is accepted ({accepted}); enable an asymmetric algorithm such as RS256 at the provider"
    )]
    UnsupportedAlgorithms {
        /// What it offers.
        offered: Vec<String>,
        /// What is accepted.
        accepted: String,
    },
    /// No key of the JWKS can verify an accepted algorithm.
    #[error(
        "the JWKS at {jwks_uri} holds {keys} key(s) but none is a usable public signing key for {algorithms:?}"
    )]
    NoUsableSigningKey {
        /// Where.
        jwks_uri: String,
        /// How many keys it holds.
        keys: usize,
        /// The accepted algorithms the provider offers.
        algorithms: Vec<String>,
    },
}

/// What a valid provider publishes, as the platform will use it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validated {
    /// The issuer (equals spec.oidc.issuerUrl).
    pub issuer: String,
    /// Where its keys are.
    pub jwks_uri: String,
    /// Accepted algorithms it signs with.
    pub algorithms: Vec<String>,
    /// Key ids of its usable signing keys, sorted.
    pub key_ids: Vec<String>,
    /// The endpoints browser login uses (see [`LoginEndpoints`]).
    pub endpoints: LoginEndpoints,
}

/// The endpoints of a provider the data plane's browser login needs, from its discovery
/// document. Each is `None` when the document names none; a login is then refused by the
/// data plane with a message, while bearer tokens keep working.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoginEndpoints {
    /// `authorization_endpoint`.
    pub authorization: Option<String>,
    /// `token_endpoint`.
    pub token: Option<String>,
    /// `end_session_endpoint` (RP-Initiated Logout), optional in the specification.
    pub end_session: Option<String>,
}

/// The login endpoints of a discovery document: only absolute `https` URLs, or `http` ones
/// (local providers in tests), are taken.
pub fn login_endpoints(doc: &Value) -> LoginEndpoints {
    let url = |name: &str| {
        doc.get(name)
            .and_then(Value::as_str)
            .filter(|u| u.starts_with("https://") || u.starts_with("http://"))
            .map(str::to_owned)
    };
    LoginEndpoints {
        authorization: url("authorization_endpoint"),
        token: url("token_endpoint"),
        end_session: url("end_session_endpoint"),
    }
}

/// The members of a discovery document the platform needs: `issuer`, `jwks_uri`, and the
/// accepted signing algorithms it offers.
pub fn check_discovery(
    configured: &str,
    doc: &Value,
) -> Result<(String, String, Vec<String>), IdpProblem> {
    let member = |name: &'static str| {
        doc.get(name)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or(IdpProblem::InvalidDiscovery {
                issuer: configured.to_owned(),
                member: name,
            })
    };
    let issuer = member("issuer")?;
    if issuer != configured {
        return Err(IdpProblem::IssuerMismatch {
            configured: configured.to_owned(),
            published: issuer,
        });
    }
    let jwks_uri = member("jwks_uri")?;
    // RS256 is the default when the member is absent (OpenID Connect Discovery 1.0, §3).
    let offered: Vec<String> = match doc.get("id_token_signing_alg_values_supported") {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => vec!["RS256".to_owned()],
    };
    let accepted: Vec<String> = offered
        .iter()
        .filter(|a| ACCEPTED_ALGORITHMS.contains(&a.as_str()))
        .cloned()
        .collect();
    if accepted.is_empty() {
        return Err(IdpProblem::UnsupportedAlgorithms {
            offered,
            accepted: ACCEPTED_ALGORITHMS.join(", "),
        });
    }
    Ok((issuer, jwks_uri, accepted))
}

// The key type and curve an algorithm needs.
fn fits(alg: &str, key: &Value) -> bool {
    let s = |m: &str| key.get(m).and_then(Value::as_str);
    match (alg, s("kty")) {
        (a, Some("RSA")) if a.starts_with("RS") || a.starts_with("PS") => {
            s("n").is_some() && s("e").is_some()
        }
        ("ES256", Some("EC")) => s("crv") == Some("P-256") && s("x").is_some() && s("y").is_some(),
        ("ES384", Some("EC")) => s("crv") == Some("P-384") && s("x").is_some() && s("y").is_some(),
        ("EdDSA", Some("OKP")) => s("crv") == Some("Ed25519") && s("x").is_some(),
        _ => false,
    }
}

/// The usable signing keys of `jwks` for `algorithms`: public keys meant for signatures
/// (`use` absent or `sig`), whose own `alg`, if any, is one of them, of the right type.
pub fn usable_keys(
    jwks_uri: &str,
    jwks: &Value,
    algorithms: &[String],
) -> Result<Vec<String>, IdpProblem> {
    let keys: Vec<&Value> = jwks
        .get("keys")
        .and_then(Value::as_array)
        .map(|k| k.iter().collect())
        .unwrap_or_default();
    let mut ids: Vec<String> = keys
        .iter()
        .filter(|k| {
            k.get("use")
                .and_then(Value::as_str)
                .is_none_or(|u| u == "sig")
        })
        // A private part published by mistake disqualifies the key.
        .filter(|k| k.get("d").is_none())
        .filter(|k| match k.get("alg").and_then(Value::as_str) {
            Some(alg) => algorithms.iter().any(|a| a == alg) && fits(alg, k),
            None => algorithms.iter().any(|a| fits(a, k)),
        })
        .map(|k| {
            k.get("kid")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned()
        })
        .collect();
    ids.sort();
    ids.dedup();
    if ids.is_empty() {
        return Err(IdpProblem::NoUsableSigningKey {
            jwks_uri: jwks_uri.to_owned(),
            keys: keys.len(),
            algorithms: algorithms.to_vec(),
        });
    }
    Ok(ids)
}

/// Validates a provider's discovery document and JWKS against the configured issuer.
pub fn validate(
    configured: &str,
    discovery: &Value,
    jwks: &Value,
) -> Result<Validated, IdpProblem> {
    let (issuer, jwks_uri, algorithms) = check_discovery(configured, discovery)?;
    let key_ids = usable_keys(&jwks_uri, jwks, &algorithms)?;
    Ok(Validated {
        issuer,
        jwks_uri,
        algorithms,
        key_ids,
        endpoints: login_endpoints(discovery),
    })
}

/// The tenant's SSO row as the connection publishes it.
pub fn sso_row(idp: &IdPConnection, v: &Validated) -> SsoRow {
    let claims = idp
        .spec
        .oidc
        .as_ref()
        .map(|o| o.claim_mapping.clone())
        .unwrap_or_default();
    SsoRow {
        idp_uid: idp.uid().unwrap_or_default(),
        idp_name: idp.name_any(),
        protocol: Protocol::Oidc,
        issuer: v.issuer.clone(),
        jwks_uri: v.jwks_uri.clone(),
        client_id: idp
            .spec
            .oidc
            .as_ref()
            .map(|o| o.client_id.clone())
            .unwrap_or_default(),
        audiences: idp
            .spec
            .oidc
            .as_ref()
            .map(|o| o.audiences.clone())
            .unwrap_or_default(),
        claim_subject: claims.subject,
        claim_email: claims.email,
        claim_groups: claims.groups,
        claim_name: claims.name,
        role_mapping: idp
            .spec
            .role_mapping
            .iter()
            .map(|m| RoleGrant {
                group: m.group.clone(),
                role: serde_json::to_value(m.role)
                    .ok()
                    .and_then(|r| r.as_str().map(str::to_owned))
                    .unwrap_or_default(),
            })
            .collect(),
        allowed_email_domains: idp.spec.allowed_email_domains.clone(),
        scim_enabled: idp.spec.scim.enabled,
        generation: idp.metadata.generation.unwrap_or(0),
        authorization_endpoint: v.endpoints.authorization.clone(),
        token_endpoint: v.endpoints.token.clone(),
        end_session_endpoint: v.endpoints.end_session.clone(),
    }
}

/// What publishing the SSO settings does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Publish {
    /// Nothing can be published yet; why.
    Wait(String),
    /// The tenant's row in its Region's catalog.
    Row {
        /// The Region.
        region: String,
        /// The tenant's catalog id.
        tenant_id: i64,
        /// The row as it must be.
        row: Box<SsoRow>,
        /// `None`: insert; empty: unchanged; else the fields that change.
        changes: Option<Vec<&'static str>>,
    },
}

/// Where and how the tenant's SSO row changes.
pub fn publish(idp: &IdPConnection, v: &Validated, refs: &IdpRefs) -> Publish {
    let tenant = &idp.spec.tenant_ref;
    let Some((region, seen)) = &refs.catalog else {
        return Publish::Wait(format!(
            "tenant {tenant} is not placed in a Ready Region yet; its SSO settings are published to its Region's catalog then"
        ));
    };
    let Some(tenant_id) = seen.tenant_id else {
        return Publish::Wait(format!(
            "tenant {tenant} has no live catalog entry in region {region} yet"
        ));
    };
    let row = Box::new(sso_row(idp, v));
    let changes = seen.row.as_ref().map(|old| old.differences(&row));
    Publish::Row {
        region: region.clone(),
        tenant_id,
        row,
        changes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ISS: &str = "https://idp.example/realms/mercy";

    fn discovery() -> Value {
        json!({"issuer": ISS, "jwks_uri": format!("{ISS}/certs"),
               "id_token_signing_alg_values_supported": ["PS384", "RS256", "HS256", "none"]})
    }

    fn rsa(kid: &str) -> Value {
        json!({"kid": kid, "kty": "RSA", "alg": "RS256", "use": "sig", "n": "AQAB", "e": "AQAB"})
    }

    #[test]
    fn a_provider_with_an_rsa_signing_key_is_valid() {
        let jwks = json!({"keys": [rsa("k2"), rsa("k1"),
            {"kid": "enc", "kty": "RSA", "use": "enc", "n": "x", "e": "y"}]});
        let v = validate(ISS, &discovery(), &jwks).expect("valid");
        assert_eq!(
            v.algorithms,
            ["PS384", "RS256"],
            "HS256 and none are never accepted"
        );
        assert_eq!(
            v.key_ids,
            ["k1", "k2"],
            "encryption keys are not signing keys"
        );
    }

    #[test]
    fn an_issuer_that_differs_even_by_a_slash_is_a_mismatch() {
        let err = check_discovery(&format!("{ISS}/"), &discovery()).unwrap_err();
        assert!(matches!(err, IdpProblem::IssuerMismatch { .. }));
        assert!(
            err.to_string()
                .contains(&format!("set spec.oidc.issuerUrl to exactly {ISS}")),
            "{err}"
        );
    }

    #[test]
    fn only_symmetric_or_none_algorithms_are_refused() {
        let doc = json!({"issuer": ISS, "jwks_uri": "x", "id_token_signing_alg_values_supported": ["HS256", "none"]});
        assert!(matches!(
            check_discovery(ISS, &doc),
            Err(IdpProblem::UnsupportedAlgorithms { .. })
        ));
        let defaulted = json!({"issuer": ISS, "jwks_uri": "x"});
        assert_eq!(
            check_discovery(ISS, &defaulted)
                .expect("RS256 by default")
                .2,
            ["RS256"]
        );
    }

    #[test]
    fn hmac_keys_private_keys_and_mismatched_types_are_not_usable() {
        let algs = vec!["RS256".to_owned(), "ES256".to_owned()];
        let jwks = json!({"keys": [
            {"kid": "oct", "kty": "oct", "k": "c2VjcmV0", "alg": "HS256"},
            {"kid": "priv", "kty": "RSA", "alg": "RS256", "n": "x", "e": "y", "d": "secret"},
            {"kid": "ec-wrong-curve", "kty": "EC", "crv": "P-384", "x": "a", "y": "b", "alg": "ES256"},
            {"kid": "rs512-only", "kty": "RSA", "alg": "RS512", "n": "x", "e": "y"}
        ]});
        let err = usable_keys("https://idp/certs", &jwks, &algs).unwrap_err();
        assert!(
            matches!(err, IdpProblem::NoUsableSigningKey { keys: 4, .. }),
            "{err}"
        );
        let ec = json!({"keys": [{"kid": "ec", "kty": "EC", "crv": "P-256", "x": "a", "y": "b"}]});
        assert_eq!(usable_keys("u", &ec, &algs).expect("usable"), ["ec"]);
    }

    #[test]
    fn the_login_endpoints_are_taken_from_discovery() {
        let mut doc = discovery();
        doc["authorization_endpoint"] = json!(format!("{ISS}/protocol/openid-connect/auth"));
        doc["token_endpoint"] = json!(format!("{ISS}/protocol/openid-connect/token"));
        doc["end_session_endpoint"] = json!("javascript:alert(1)");
        let jwks = json!({"keys": [rsa("k1")]});
        let v = validate(ISS, &doc, &jwks).expect("valid");
        assert_eq!(
            v.endpoints,
            LoginEndpoints {
                authorization: Some(format!("{ISS}/protocol/openid-connect/auth")),
                token: Some(format!("{ISS}/protocol/openid-connect/token")),
                end_session: None,
            },
            "only http(s) URLs are published"
        );
        assert_eq!(
            validate(ISS, &discovery(), &jwks).expect("valid").endpoints,
            LoginEndpoints::default()
        );
    }

    #[test]
    fn a_document_without_a_jwks_uri_is_invalid() {
        let doc = json!({"issuer": ISS});
        let err = check_discovery(ISS, &doc).unwrap_err();
        assert_eq!(
            err,
            IdpProblem::InvalidDiscovery {
                issuer: ISS.into(),
                member: "jwks_uri"
            }
        );
    }
}
