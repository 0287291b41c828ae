//! The tenant's SCIM bearer token: generated into a Secret of the operator's namespace
//! (owned by the IdPConnection), only its SHA-256 in the region catalog, rotated when the
//! `phoenixguardian.io/rotate-scim-token` annotation takes a new value, the old token
//! accepted for a grace period.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::{Resource, ResourceExt};
use phoenix_crds::IdPConnection;
use sha2::{Digest, Sha256};

use crate::controller::context::EventSpec;
use crate::controller::error::ApplyError;
use crate::controller::providers::Database;
use crate::controller::world::World;
use crate::reason::Reason;
use crate::secrets::generate_password;

/// The annotation whose new value asks for a new SCIM token.
pub const ROTATE_ANNOTATION: &str = "phoenixguardian.io/rotate-scim-token";

/// What happens to the SCIM token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScimPlan {
    /// SCIM is off: no Secret, no hashes.
    Off,
    /// The token in the Secret stays.
    Keep,
    /// A first token is generated.
    Create,
    /// A new token replaces the current one, which keeps working for the grace period.
    Rotate,
}

/// The Secret holding the token of `idp`.
pub fn secret_name(idp: &IdPConnection) -> String {
    format!("phoenix-scim-{}", idp.name_any())
}

/// Decides, purely, from whether SCIM is on, whether a token exists, and whether the
/// rotation annotation has a value not acted on yet.
pub fn plan(idp: &IdPConnection, token_exists: bool) -> ScimPlan {
    if !idp.spec.scim.enabled {
        return ScimPlan::Off;
    }
    if !token_exists {
        return ScimPlan::Create;
    }
    let requested = idp.annotations().get(ROTATE_ANNOTATION);
    let handled = idp
        .status
        .as_ref()
        .and_then(|s| s.scim_token_rotation.as_ref());
    match requested {
        Some(r) if Some(r) != handled => ScimPlan::Rotate,
        _ => ScimPlan::Keep,
    }
}

/// A token read from its Secret; never shown in logs or debug output.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(pub String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// The status fields the token decides: the Secret (while SCIM is on) and the rotation
/// annotation value acted on.
pub fn status_fields(
    idp: &IdPConnection,
    plan: ScimPlan,
    namespace: &str,
) -> (Option<phoenix_crds::SecretRef>, Option<String>) {
    let secret = (plan != ScimPlan::Off).then(|| phoenix_crds::SecretRef {
        namespace: namespace.to_owned(),
        name: secret_name(idp),
    });
    let handled = idp
        .status
        .as_ref()
        .and_then(|s| s.scim_token_rotation.clone());
    let rotation = match plan {
        // A token created or rotated now satisfies the request there is.
        ScimPlan::Rotate | ScimPlan::Create => idp
            .annotations()
            .get(ROTATE_ANNOTATION)
            .cloned()
            .or(handled),
        ScimPlan::Keep | ScimPlan::Off => handled,
    };
    (secret, rotation)
}

/// SHA-256 of a token, hex: what the catalog holds.
pub fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn owner(idp: &IdPConnection) -> Option<OwnerReference> {
    idp.controller_owner_ref(&())
}

/// Applies `plan`: writes or deletes the Secret, converges the catalog's hashes; the
/// Events saying what changed (never the token).
pub async fn apply(
    idp: &IdPConnection,
    world: &World<'_>,
    db: &Arc<dyn Database>,
    tenant_id: i64,
    plan: ScimPlan,
    existing: Option<&str>,
) -> Result<Vec<EventSpec>, ApplyError> {
    let ns = &world.settings.namespace;
    let name = secret_name(idp);
    let grace = world.settings.scim_token_grace;
    let token = match plan {
        ScimPlan::Off => None,
        ScimPlan::Keep => existing.map(str::to_owned),
        ScimPlan::Create | ScimPlan::Rotate => {
            let token = generate_password(48);
            let labels = BTreeMap::from([
                (
                    "app.kubernetes.io/managed-by".to_owned(),
                    "phoenix-operator".to_owned(),
                ),
                ("phoenixguardian.io/idp".to_owned(), idp.name_any()),
                (
                    "phoenixguardian.io/tenant".to_owned(),
                    idp.spec.tenant_ref.clone(),
                ),
            ]);
            let data = BTreeMap::from([
                ("token".to_owned(), token.clone()),
                ("tenant".to_owned(), idp.spec.tenant_ref.clone()),
            ]);
            world
                .providers
                .secrets
                .put(ns, &name, labels, owner(idp), data)
                .await?;
            Some(token)
        }
    };
    let grace_seconds = i64::try_from(grace.as_secs()).unwrap_or(i64::MAX);
    let done = db
        .converge_scim(
            tenant_id,
            &idp.uid().unwrap_or_default(),
            token.as_deref().map(hash).as_deref(),
            grace_seconds,
        )
        .await?;
    let mut events = Vec::new();
    match plan {
        ScimPlan::Off => {
            if existing.is_some() {
                world.providers.secrets.delete(ns, &name).await?;
            }
            if existing.is_some() || done.purged > 0 {
                events.push(EventSpec::normal(
                    Reason::ScimTokenRemoved,
                    "Scim",
                    format!("SCIM is off: secret {ns}/{name} and {} token hash(es) removed", done.purged),
                ));
            }
        }
        ScimPlan::Create => events.push(EventSpec::normal(
            Reason::ScimTokenCreated,
            "Scim",
            format!("SCIM token generated into secret {ns}/{name}; its hash is in the tenant's catalog"),
        )),
        ScimPlan::Rotate => events.push(EventSpec::normal(
            Reason::ScimTokenRotated,
            "Scim",
            format!(
                "SCIM token in secret {ns}/{name} rotated; the previous token is accepted for {}s more",
                grace.as_secs()
            ),
        )),
        ScimPlan::Keep => {}
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idp(scim: bool, annotation: Option<&str>, handled: Option<&str>) -> IdPConnection {
        let spec = serde_json::from_value(serde_json::json!({
            "tenantRef": "mercy", "protocol": "OIDC", "scim": {"enabled": scim},
            "oidc": {"issuerUrl": "https://idp.example/realms/m", "clientId": "c"}
        }))
        .expect("spec");
        let mut i = IdPConnection::new("mercy-idp", spec);
        if let Some(a) = annotation {
            i.metadata.annotations = Some([(ROTATE_ANNOTATION.to_owned(), a.to_owned())].into());
        }
        i.status = Some(phoenix_crds::IdPConnectionStatus {
            scim_token_rotation: handled.map(str::to_owned),
            ..Default::default()
        });
        i
    }

    #[test]
    fn a_token_is_created_kept_and_rotated_once_per_annotation_value() {
        assert_eq!(plan(&idp(false, None, None), true), ScimPlan::Off);
        assert_eq!(plan(&idp(true, None, None), false), ScimPlan::Create);
        assert_eq!(plan(&idp(true, None, None), true), ScimPlan::Keep);
        assert_eq!(plan(&idp(true, Some("1"), None), true), ScimPlan::Rotate);
        assert_eq!(
            plan(&idp(true, Some("1"), Some("1")), true),
            ScimPlan::Keep,
            "acted on already"
        );
        assert_eq!(
            plan(&idp(true, Some("2"), Some("1")), true),
            ScimPlan::Rotate
        );
        assert_eq!(
            plan(&idp(true, Some("2"), Some("1")), false),
            ScimPlan::Create
        );
    }

    #[test]
    fn only_the_hash_is_kept_and_it_is_sha256_hex() {
        assert_eq!(
            hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
