//! Dereference of an IdPConnection: its Tenant, and what its OpenID provider publishes
//! (the discovery document, then the JWKS it points to). Reads only.

use std::sync::Arc;

use kube::ResourceExt;
use phoenix_crds::{IdPConnection, Protocol, Tenant};
use serde_json::Value;

use crate::conditions::{self, types};
use crate::controller::error::DerefError;
use crate::controller::providers::{Database, SsoSeen};
use crate::controller::region::deref::writer;
use crate::controller::world::World;

/// What the IdPConnection's plan needs.
#[derive(Clone, Debug, PartialEq)]
pub struct IdpRefs {
    /// The issuer configured in spec.oidc.issuerUrl.
    pub issuer_url: String,
    /// Whether the Tenant it names exists.
    pub tenant_exists: bool,
    /// Where the tenant's SSO row goes and what is there now: its Region and what the
    /// Region's catalog holds; `None` while the tenant is not placed in a Ready Region.
    pub catalog: Option<(String, SsoSeen)>,
    /// The discovery document.
    pub discovery: Value,
    /// The JWKS (`null` when the document names none).
    pub jwks: Value,
    /// The SCIM token in its Secret, if there is one.
    pub scim_token: Option<super::scim::Token>,
}

/// The tenant's Region database, when the tenant is placed in a Ready Region.
async fn tenant_catalog(
    tenant: &Tenant,
    world: &World<'_>,
) -> Result<Option<(String, Arc<dyn Database>)>, DerefError> {
    let Some(placement) = tenant.status.as_ref().and_then(|s| s.placement.as_ref()) else {
        return Ok(None);
    };
    let Some(region) = world.region(&placement.region) else {
        return Ok(None);
    };
    if !region
        .status
        .as_ref()
        .is_some_and(|s| conditions::is_true(&s.conditions, types::READY))
    {
        return Ok(None);
    }
    Ok(Some((
        placement.region.clone(),
        writer(world, &region).await?,
    )))
}

/// Fetches what the plan needs; returns the tenant's Region database too, for apply.
pub async fn dereference(
    idp: &IdPConnection,
    world: &World<'_>,
) -> Result<(Option<Arc<dyn Database>>, IdpRefs), DerefError> {
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
    let tenant = world
        .tenants
        .iter()
        .find(|t| t.name_any() == idp.spec.tenant_ref)
        .cloned();
    let discovery = world.providers.oidc.discovery(&oidc.issuer_url).await?;
    let jwks = match discovery.get("jwks_uri").and_then(Value::as_str) {
        Some(uri) => world.providers.oidc.jwks(uri).await?,
        None => Value::Null,
    };
    let (db, catalog) = match &tenant {
        Some(t) => match tenant_catalog(t, world).await? {
            Some((region, db)) => {
                let seen = db.sso_seen(&t.uid().unwrap_or_default()).await?;
                (Some(db), Some((region, seen)))
            }
            None => (None, None),
        },
        None => (None, None),
    };
    let scim_token = world
        .providers
        .secrets
        .read(&world.settings.namespace, &super::scim::secret_name(idp))
        .await?
        .and_then(|d| d.get("token").cloned())
        .filter(|t| !t.is_empty())
        .map(super::scim::Token);
    let refs = IdpRefs {
        scim_token,
        issuer_url: oidc.issuer_url.clone(),
        tenant_exists: tenant.is_some(),
        catalog,
        discovery,
        jwks,
    };
    Ok((db, refs))
}
