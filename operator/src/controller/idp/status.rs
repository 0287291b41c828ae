//! An IdPConnection's status and Events, and the `SSOReady` condition of the Tenant that
//! signs in with it: pure.

use kube::ResourceExt;
use phoenix_crds::{IdPConnection, IdPConnectionStatus, Tenant};

use super::plan::{Publish, Validated};
use crate::conditions::{self, NewCondition, Status, types};
use crate::controller::context::EventSpec;
use crate::controller::error::Error;
use crate::reason::Reason;

/// The `Ready` condition of a connection whose provider validated.
fn ready_condition(
    idp: &IdPConnection,
    keys: &str,
    tenant_exists: bool,
    publish: &Publish,
) -> NewCondition {
    match publish {
        _ if !tenant_exists => NewCondition::new(
            types::READY,
            Status::False,
            Reason::TenantNotFound,
            format!(
                "spec.tenantRef names tenant {}, which does not exist; create it or fix spec.tenantRef (the provider itself is valid: {keys})",
                idp.spec.tenant_ref
            ),
        ),
        Publish::Wait(why) => NewCondition::new(
            types::READY,
            Status::False,
            Reason::TenantNotReady,
            format!("{why} (the provider itself is valid: {keys})"),
        ),
        Publish::Row { region, .. } => NewCondition::new(
            types::READY,
            Status::True,
            Reason::IdPValidated,
            format!("{keys}; SSO settings published to region {region}"),
        ),
    }
}

/// The Event saying the tenant's SSO row was published or changed, if it was.
fn publish_event(idp: &IdPConnection, publish: &Publish) -> Option<EventSpec> {
    let Publish::Row {
        region,
        changes,
        row,
        ..
    } = publish
    else {
        return None;
    };
    let what = match changes {
        None => "published".to_owned(),
        Some(c) if c.is_empty() => return None,
        Some(c) => format!("updated ({})", c.join(", ")),
    };
    Some(EventSpec::normal(
        Reason::SSOPublished,
        "Publish",
        format!(
            "SSO settings of tenant {} {what} in region {region}: issuer {}, SCIM {}",
            idp.spec.tenant_ref,
            row.issuer,
            if row.scim_enabled { "on" } else { "off" }
        ),
    ))
}

/// Status of a connection whose provider validated, and the Events to publish.
pub fn validated(
    idp: &IdPConnection,
    v: &Validated,
    tenant_exists: bool,
    publish: &Publish,
    now: &str,
) -> (IdPConnectionStatus, Vec<EventSpec>) {
    let current = idp.status.clone().unwrap_or_default();
    let keys = format!(
        "issuer {}; signing key(s) {} ({})",
        v.issuer,
        v.key_ids.join(", "),
        v.algorithms.join(", ")
    );
    let ready = ready_condition(idp, &keys, tenant_exists, publish);
    let ok = ready.status == Status::True;
    let conds = conditions::merge(&current.conditions, &[ready], idp.metadata.generation, now);
    let mut events = Vec::new();
    if ok && !conditions::is_true(&current.conditions, types::READY) {
        events.push(EventSpec::normal(Reason::Ready, "Validate", keys.clone()));
    }
    events.extend(publish_event(idp, publish));
    if !current.signing_key_ids.is_empty() && current.signing_key_ids != v.key_ids {
        events.push(EventSpec::normal(
            Reason::SigningKeysRotated,
            "Validate",
            format!(
                "signing keys changed from {} to {}",
                current.signing_key_ids.join(", "),
                v.key_ids.join(", ")
            ),
        ));
    }
    let status = IdPConnectionStatus {
        phase: Some(if ok { "Ready" } else { "Failed" }.to_owned()),
        conditions: conds,
        signing_key_ids: v.key_ids.clone(),
        observed_generation: idp.metadata.generation,
        ..current
    };
    (status, events)
}

/// Status of a connection that could not be validated, and the Warning saying why.
pub fn failed(
    idp: &IdPConnection,
    error: &Error,
    now: &str,
) -> (IdPConnectionStatus, Vec<EventSpec>) {
    let current = idp.status.clone().unwrap_or_default();
    let reason = error.reason();
    let conds = conditions::merge(
        &current.conditions,
        &[NewCondition::new(
            types::READY,
            Status::False,
            reason,
            error.to_string(),
        )],
        idp.metadata.generation,
        now,
    );
    let status = IdPConnectionStatus {
        phase: Some("Failed".to_owned()),
        conditions: conds,
        observed_generation: idp.metadata.generation,
        ..current
    };
    (
        status,
        vec![EventSpec::warning(reason, "Validate", error.to_string())],
    )
}

/// The tenant's `SSOReady`: follows the IdPConnection it names, if it names one.
pub fn sso_ready(tenant: &Tenant, idps: &[std::sync::Arc<IdPConnection>]) -> Option<NewCondition> {
    let name = &tenant.spec.sso.as_ref()?.idp_connection_ref;
    let t = types::SSO_READY;
    let Some(idp) = idps.iter().find(|i| i.name_any() == *name) else {
        return Some(NewCondition::new(
            t,
            Status::False,
            Reason::IdPConnectionNotFound,
            format!(
                "spec.sso.idpConnectionRef names IdPConnection {name}, which does not exist; create it"
            ),
        ));
    };
    if idp.spec.tenant_ref != tenant.name_any() {
        return Some(NewCondition::new(
            t,
            Status::False,
            Reason::IdPConnectionNotFound,
            format!(
                "IdPConnection {name} belongs to tenant {}; name an IdPConnection whose spec.tenantRef is {}",
                idp.spec.tenant_ref,
                tenant.name_any()
            ),
        ));
    }
    let ready = idp
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == types::READY));
    Some(match ready {
        Some(c) if c.status == "True" => NewCondition::new(
            t,
            Status::True,
            Reason::IdPReady,
            format!("signing in through IdPConnection {name}: {}", c.message),
        ),
        Some(c) => NewCondition::new(
            t,
            Status::False,
            Reason::IdPNotReady,
            format!(
                "IdPConnection {name} is not Ready ({}): {}",
                c.reason, c.message
            ),
        ),
        None => NewCondition::new(
            t,
            Status::Unknown,
            Reason::IdPNotReady,
            format!("IdPConnection {name} has not been validated yet"),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idp(tenant: &str) -> IdPConnection {
        let spec = serde_json::from_value(serde_json::json!({
            "tenantRef": tenant, "protocol": "OIDC",
            "oidc": {"issuerUrl": "https://idp.example/realms/m", "clientId": "c"}
        }))
        .expect("spec");
        IdPConnection::new("mercy-idp", spec)
    }

    fn tenant(sso: Option<&str>) -> Tenant {
        let mut spec = serde_json::json!({"displayName": "x", "dataResidency": ["US"], "dns": {"hostname": "x.example.test"}});
        if let Some(r) = sso {
            spec["sso"] = serde_json::json!({"idpConnectionRef": r});
        }
        Tenant::new("mercy", serde_json::from_value(spec).expect("spec"))
    }

    fn row(changes: Option<Vec<&'static str>>) -> Publish {
        Publish::Row {
            region: "us-east-1".into(),
            tenant_id: 7,
            row: Box::new(super::super::plan::sso_row(
                &idp("mercy"),
                &validated_keys(&["k1"]),
            )),
            changes,
        }
    }

    fn validated_keys(keys: &[&str]) -> Validated {
        Validated {
            issuer: "https://idp.example/realms/m".into(),
            jwks_uri: "https://idp.example/certs".into(),
            algorithms: vec!["RS256".into()],
            key_ids: keys.iter().map(|k| (*k).to_owned()).collect(),
            endpoints: Default::default(),
        }
    }

    #[test]
    fn a_valid_provider_is_ready_once_and_a_key_change_is_a_rotation() {
        let mut i = idp("mercy");
        let (status, events) = validated(&i, &validated_keys(&["k1"]), true, &row(None), "t0");
        assert_eq!(
            events.iter().map(|e| e.reason).collect::<Vec<_>>(),
            [Reason::Ready, Reason::SSOPublished]
        );
        assert_eq!(status.phase.as_deref(), Some("Ready"));
        i.status = Some(status);
        let (status, events) =
            validated(&i, &validated_keys(&["k2"]), true, &row(Some(vec![])), "t1");
        assert_eq!(
            events.iter().map(|e| e.reason).collect::<Vec<_>>(),
            [Reason::SigningKeysRotated]
        );
        assert!(
            events[0].note.contains("from k1 to k2"),
            "{}",
            events[0].note
        );
        assert_eq!(status.signing_key_ids, ["k2"]);
    }

    #[test]
    fn a_provider_for_a_missing_or_unplaced_tenant_is_not_ready() {
        let ready_of = |status: &IdPConnectionStatus| {
            let c = status
                .conditions
                .iter()
                .find(|c| c.type_ == "Ready")
                .expect("Ready");
            (c.status.clone(), c.reason.clone())
        };
        let (status, _) = validated(
            &idp("ghost"),
            &validated_keys(&["k1"]),
            false,
            &row(None),
            "t0",
        );
        assert_eq!(ready_of(&status), ("False".into(), "TenantNotFound".into()));
        let waiting = Publish::Wait("tenant mercy is not placed".into());
        let (status, events) = validated(
            &idp("mercy"),
            &validated_keys(&["k1"]),
            true,
            &waiting,
            "t0",
        );
        assert!(events.is_empty(), "{events:?}");
        assert_eq!(ready_of(&status), ("False".into(), "TenantNotReady".into()));
    }

    #[test]
    fn sso_ready_follows_the_idp_and_says_what_is_missing() {
        assert!(sso_ready(&tenant(None), &[]).is_none());
        let missing = sso_ready(&tenant(Some("mercy-idp")), &[]).expect("condition");
        assert_eq!(missing.reason, Reason::IdPConnectionNotFound);
        let other = std::sync::Arc::new(idp("st-lukes"));
        let c = sso_ready(&tenant(Some("mercy-idp")), &[other]).expect("condition");
        assert!(
            c.message.contains("belongs to tenant st-lukes"),
            "{}",
            c.message
        );
        let mut ready = idp("mercy");
        ready.status = Some(validated(&ready, &validated_keys(&["k1"]), true, &row(None), "t0").0);
        let c = sso_ready(&tenant(Some("mercy-idp")), &[std::sync::Arc::new(ready)])
            .expect("condition");
        assert_eq!((c.status, c.reason), (Status::True, Reason::IdPReady));
    }
}
