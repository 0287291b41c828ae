//! Dereference of an IdPConnection: its Tenant, and what its OpenID provider publishes
//! (the discovery document, then the JWKS it points to). Reads only.

use kube::ResourceExt;
use phoenix_crds::{IdPConnection, Protocol};
use serde_json::Value;

use crate::controller::error::DerefError;
use crate::controller::world::World;

/// What the IdPConnection's plan needs.
#[derive(Clone, Debug, PartialEq)]
pub struct IdpRefs {
    /// The issuer configured in spec.oidc.issuerUrl.
    pub issuer_url: String,
    /// Whether the Tenant it names exists.
    pub tenant_exists: bool,
    /// The discovery document.
    pub discovery: Value,
    /// The JWKS (`null` when the document names none).
    pub jwks: Value,
}

/// Fetches what the plan needs.
pub async fn dereference(idp: &IdPConnection, world: &World<'_>) -> Result<IdpRefs, DerefError> {
    let oidc = match (&idp.spec.protocol, &idp.spec.oidc) {
        (Protocol::Oidc, Some(oidc)) => oidc,
        (Protocol::Saml, _) => {
            return Err(DerefError::NotImplemented("protocol SAML (IdPConnection)"));
        }
        // Admission refuses it; a broken object still gets a clear condition.
        (Protocol::Oidc, None) => {
            return Err(DerefError::NotImplemented(
                "protocol OIDC without spec.oidc (admission should have refused it)",
            ));
        }
    };
    let tenant_exists = world
        .tenants
        .iter()
        .any(|t| t.name_any() == idp.spec.tenant_ref);
    let discovery = world.providers.oidc.discovery(&oidc.issuer_url).await?;
    let jwks = match discovery.get("jwks_uri").and_then(Value::as_str) {
        Some(uri) => world.providers.oidc.jwks(uri).await?,
        None => Value::Null,
    };
    Ok(IdpRefs {
        issuer_url: oidc.issuer_url.clone(),
        tenant_exists,
        discovery,
        jwks,
    })
}
