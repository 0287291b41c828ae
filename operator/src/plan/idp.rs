//! What `plan` shows of an IdPConnection: its SSO settings row, SCIM token Secret and
//! signing keys.

use kube::ResourceExt;
use phoenix_crds::IdPConnection;

use super::failed;
use super::report::{Change, ObjectPlan};
use crate::controller::world::World;

/// The plan of IdPConnection `i`: what its pass would publish, or why it could not.
pub(super) async fn plan_idp(i: &IdPConnection, world: &World<'_>) -> ObjectPlan {
    use crate::controller::idp;
    let name = i.name_any();
    let refs = match idp::deref::dereference(i, world).await {
        Ok((_, r)) => r,
        Err(e) => return failed("IdPConnection", &name, e),
    };
    let v = match idp::plan::validate(&refs.issuer_url, &refs.discovery, &refs.jwks) {
        Ok(v) => v,
        Err(e) => {
            return failed(
                "IdPConnection",
                &name,
                crate::controller::error::PlanError::from(e),
            );
        }
    };
    if !refs.tenant_exists {
        return ObjectPlan::error(
            "IdPConnection",
            &name,
            format!(
                "TenantNotFound: spec.tenantRef names tenant {}, which does not exist",
                i.spec.tenant_ref
            ),
        );
    }
    let known = i
        .status
        .as_ref()
        .map(|s| s.signing_key_ids.clone())
        .unwrap_or_default();
    let mut changes = Vec::new();
    match idp::plan::publish(i, &v, &refs) {
        idp::plan::Publish::Wait(why) => changes.push(Change::new("wait", "SSO settings", why)),
        idp::plan::Publish::Row {
            region,
            row,
            changes: fields,
            ..
        } => {
            let target = format!("SSO settings in {region}");
            match fields {
                None => changes.push(Change::new(
                    "create",
                    target,
                    format!(
                        "issuer={} clientId={} audiences={:?} scim={} roleMapping={}",
                        row.issuer,
                        row.client_id,
                        row.audiences,
                        row.scim_enabled,
                        row.role_mapping.len()
                    ),
                )),
                Some(f) if !f.is_empty() => {
                    changes.push(Change::new("update", target, f.join(", ")));
                }
                Some(_) => {}
            }
        }
    }
    let ns = &world.settings.namespace;
    let secret = idp::scim::secret_name(i);
    match idp::scim::plan(i, refs.scim_token.is_some()) {
        idp::scim::ScimPlan::Create => changes.push(Change::new(
            "create",
            format!("secret {ns}/{secret}"),
            "SCIM bearer token (generated; only its hash goes to the catalog)",
        )),
        idp::scim::ScimPlan::Rotate => changes.push(Change::new(
            "update",
            format!("secret {ns}/{secret}"),
            format!(
                "SCIM token rotated; the current one accepted for {}s more",
                world.settings.scim_token_grace.as_secs()
            ),
        )),
        idp::scim::ScimPlan::Off if refs.scim_token.is_some() => changes.push(Change::new(
            "delete",
            format!("secret {ns}/{secret}"),
            "SCIM is off: the token and its hashes go",
        )),
        idp::scim::ScimPlan::Off | idp::scim::ScimPlan::Keep => {}
    }
    if known != v.key_ids {
        changes.push(Change::new(
            if known.is_empty() { "create" } else { "update" },
            format!("signing keys of {}", v.issuer),
            format!("{} ({})", v.key_ids.join(", "), v.algorithms.join(", ")),
        ));
    }
    ObjectPlan::with("IdPConnection", &name, changes)
}
