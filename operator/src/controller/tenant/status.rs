//! A Tenant's status and Events: pure, from its plan and what applying it did.

use phoenix_crds::tenant::TenantEndpoints;
use phoenix_crds::{Placement, Tenant, TenantPhase, TenantStatus};

use crate::conditions::{self, NewCondition, Status, types};
use crate::controller::context::EventSpec;
use crate::controller::error::Error;
use crate::db::tenant_schema::SchemaWork;
use crate::reason::Reason;

/// Events of a `Schema` tenant's schema pass: what was created, or what drift was found
/// and repaired.
pub fn schema_events(work: &SchemaWork) -> Vec<EventSpec> {
    if work.creates
        && let Some(database) = &work.database
    {
        return vec![EventSpec::normal(
            Reason::DatabaseProvisioned,
            "Provision",
            format!(
                "created role {} and database {database} with the {} clinical table(s) of the catalog's migrations under forced row level security ({} change(s))",
                work.role,
                crate::db::tenant_schema::tables().len(),
                work.ddl.len()
            ),
        )];
    }
    if work.creates {
        return vec![EventSpec::normal(
            Reason::SchemaProvisioned,
            "Provision",
            format!(
                "created role {} and schema {} with {} copied clinical table(s) under forced row level security ({} change(s))",
                work.role,
                work.schema,
                crate::db::tenant_schema::tables().len(),
                work.ddl.len()
            ),
        )];
    }
    if work.drift.is_empty() {
        return Vec::new();
    }
    let reason = if work.rls_drift {
        Reason::RLSRepaired
    } else {
        Reason::DatabaseDriftRepaired
    };
    vec![EventSpec::warning(
        reason,
        "Repair",
        format!(
            "{} had drifted ({}); repaired",
            place(work),
            work.drift.join("; ")
        ),
    )]
}

/// Where a tenant's own tables are: `schema t_…`, or `database tdb_…`.
fn place(work: &SchemaWork) -> String {
    match &work.database {
        Some(database) => format!("database {database}"),
        None => format!("schema {}", work.schema),
    }
}

fn current(tenant: &Tenant) -> TenantStatus {
    tenant.status.clone().unwrap_or_default()
}

/// Status of a tenant whose catalog row is in place.
pub fn ready(
    tenant: &Tenant,
    placement: &Placement,
    catalog_id: i64,
    schema: Option<&SchemaWork>,
    now: &str,
) -> (TenantStatus, Vec<EventSpec>) {
    let current = current(tenant);
    let host = &tenant.spec.dns.hostname;
    let (phase, reason, message) = if tenant.spec.suspended {
        (
            TenantPhase::Suspended,
            Reason::Suspended,
            "tenant is suspended: data kept, requests refused".to_owned(),
        )
    } else {
        (
            TenantPhase::Active,
            Reason::Reconciled,
            format!("serving at https://{host}"),
        )
    };
    let conds = conditions::merge(
        &current.conditions,
        &[
            NewCondition::new(
                types::DATABASE_READY,
                Status::True,
                Reason::CatalogEntryReady,
                match schema {
                    Some(w) => format!(
                        "catalog id {catalog_id} in region {}; rows in {} owned by role {}",
                        placement.region,
                        place(w),
                        w.role
                    ),
                    None => format!("catalog id {catalog_id} in region {}", placement.region),
                },
            ),
            NewCondition::new(
                types::RLS_ENFORCED,
                Status::True,
                Reason::PoliciesEnforced,
                match schema {
                    Some(w) => format!(
                        "row level security enabled and forced on every clinical table and on the copies in {}",
                        place(w)
                    ),
                    None => {
                        "row level security enabled and forced on every clinical table".to_owned()
                    }
                },
            ),
            NewCondition::new(types::READY, Status::True, reason, message),
        ],
        tenant.metadata.generation,
        now,
    );
    let mut events = schema.map(schema_events).unwrap_or_default();
    if !conditions::is_true(&current.conditions, types::READY) {
        events.push(EventSpec::normal(
            Reason::Ready,
            "Provision",
            format!(
                "placed in region {} ({}), catalog id {catalog_id}",
                placement.region, placement.jurisdiction
            ),
        ));
    }
    let status = TenantStatus {
        phase: Some(phase),
        conditions: conds,
        endpoints: Some(TenantEndpoints {
            api: format!("https://{host}/fhir"),
            catalog_id,
        }),
        placement: Some(placement.clone()),
        dns: current.dns.clone(),
        serving_region: current.serving_region.clone(),
        observed_generation: tenant.metadata.generation,
    };
    (status, events)
}

/// Status of a placed tenant that waits (on its Region, or for RLS to be repaired).
pub fn waiting(
    tenant: &Tenant,
    placement: &Placement,
    reason: Reason,
    message: &str,
    now: &str,
) -> (TenantStatus, Vec<EventSpec>) {
    let current = current(tenant);
    let previous = current
        .conditions
        .iter()
        .find(|c| c.type_ == types::READY)
        .map(|c| c.reason.clone());
    let mut updates = vec![NewCondition::new(
        types::READY,
        Status::False,
        reason,
        message,
    )];
    updates.push(if reason == Reason::RLSDrift {
        NewCondition::new(types::RLS_ENFORCED, Status::False, reason, message)
    } else {
        NewCondition::new(types::DATABASE_READY, Status::False, reason, message)
    });
    let conds = conditions::merge(
        &current.conditions,
        &updates,
        tenant.metadata.generation,
        now,
    );
    let events = if previous.as_deref() == Some(reason.as_str()) {
        Vec::new()
    } else {
        vec![EventSpec::normal(reason, "Provision", message)]
    };
    let phase = match current.phase {
        // A served tenant whose isolation drifted keeps its phase; its conditions say why.
        Some(p @ (TenantPhase::Active | TenantPhase::Suspended)) if reason == Reason::RLSDrift => p,
        _ => TenantPhase::Provisioning,
    };
    let status = TenantStatus {
        phase: Some(phase),
        conditions: conds,
        placement: Some(placement.clone()),
        observed_generation: tenant.metadata.generation,
        ..current
    };
    (status, events)
}

/// Status of a tenant whose pass failed, and the Warning Event saying why. `placed` is a
/// placement made in this pass: status is written whole, so it must be kept.
pub fn failed(
    tenant: &Tenant,
    placed: Option<Placement>,
    error: &Error,
    now: &str,
) -> (TenantStatus, Vec<EventSpec>) {
    let current = current(tenant);
    let reason = error.reason();
    let mut updates = vec![NewCondition::new(
        types::READY,
        Status::False,
        reason,
        error.to_string(),
    )];
    if reason != Reason::KubernetesAPIError {
        updates.push(NewCondition::new(
            types::DATABASE_READY,
            Status::False,
            reason,
            error.to_string(),
        ));
    }
    let conds = conditions::merge(
        &current.conditions,
        &updates,
        tenant.metadata.generation,
        now,
    );
    let phase = if error.needs_user() {
        TenantPhase::Failed
    } else {
        current.phase.unwrap_or(TenantPhase::Provisioning)
    };
    let status = TenantStatus {
        phase: Some(phase),
        conditions: conds,
        observed_generation: tenant.metadata.generation,
        placement: placed.or(current.placement.clone()),
        ..current
    };
    (
        status,
        vec![EventSpec::warning(reason, "Provision", error.to_string())],
    )
}

/// `status` with the tenant's `SSOReady` condition, when it names an IdPConnection.
pub fn with_sso(
    mut status: TenantStatus,
    tenant: &Tenant,
    sso: Option<NewCondition>,
    now: &str,
) -> TenantStatus {
    if let Some(c) = sso {
        status.conditions =
            conditions::merge(&status.conditions, &[c], tenant.metadata.generation, now);
    }
    status
}

/// Status of a tenant being deleted; `why` is the reason deletion waits, if it does.
pub fn deleting(tenant: &Tenant, why: Option<&Error>, now: &str) -> TenantStatus {
    let mut status = current(tenant);
    let update = match why {
        Some(e) => NewCondition::new(types::READY, Status::False, e.reason(), e.to_string()),
        None => NewCondition::new(
            types::READY,
            Status::False,
            Reason::Deleting,
            format!(
                "deleting with policy {:?}",
                tenant.spec.database.deletion_policy
            ),
        ),
    };
    status.conditions = conditions::merge(
        &status.conditions,
        &[update],
        tenant.metadata.generation,
        now,
    );
    status.phase = Some(TenantPhase::Deleting);
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::error::{DerefError, PlanError};

    fn tenant() -> Tenant {
        let spec = serde_json::from_value(serde_json::json!({
            "displayName": "x", "dataResidency": ["US"], "dns": {"hostname": "x.example.test"}
        }))
        .expect("spec");
        let mut t = Tenant::new("x", spec);
        t.metadata.generation = Some(2);
        t
    }

    fn placement() -> Placement {
        Placement {
            region: "us".into(),
            aws_region: "us-east-1".into(),
            jurisdiction: "US".into(),
        }
    }

    #[test]
    fn waiting_announces_each_new_reason_once() {
        let mut t = tenant();
        let (status, events) = waiting(&t, &placement(), Reason::RegionNotReady, "down", "t0");
        assert_eq!(events.len(), 1);
        assert_eq!(status.phase, Some(TenantPhase::Provisioning));
        t.status = Some(status);
        let (status, events) =
            waiting(&t, &placement(), Reason::RegionNotReady, "still down", "t1");
        assert!(events.is_empty());
        t.status = Some(status);
        let (status, events) = waiting(&t, &placement(), Reason::RLSDrift, "drift", "t2");
        assert_eq!(events[0].reason, Reason::RLSDrift);
        let rls = status
            .conditions
            .iter()
            .find(|c| c.type_ == types::RLS_ENFORCED)
            .expect("RLSEnforced");
        assert_eq!(
            (rls.status.as_str(), rls.reason.as_str()),
            ("False", "RLSDrift")
        );
    }

    #[test]
    fn a_served_tenant_whose_rls_drifted_keeps_its_phase() {
        let mut t = tenant();
        t.status = Some(ready(&t, &placement(), 9, None, "t0").0);
        let (status, _) = waiting(&t, &placement(), Reason::RLSDrift, "drift", "t1");
        assert_eq!(status.phase, Some(TenantPhase::Active));
        assert_eq!(status.endpoints.map(|e| e.catalog_id), Some(9));
    }

    #[test]
    fn failures_the_user_must_fix_are_failed_others_keep_waiting() {
        let t = tenant();
        let e: Error = PlanError::NotImplemented("x").into();
        let (status, events) = failed(&t, Some(placement()), &e, "t0");
        assert_eq!(status.phase, Some(TenantPhase::Failed));
        assert_eq!(
            status.placement,
            Some(placement()),
            "a placement made now is kept"
        );
        assert!(events[0].warning);
        let e: Error = DerefError::InvalidPort(0).into();
        let (status, _) = failed(&t, None, &e, "t0");
        assert_eq!(status.phase, Some(TenantPhase::Provisioning));
    }

    #[test]
    fn ready_is_announced_only_on_the_transition() {
        let mut t = tenant();
        let (status, events) = ready(&t, &placement(), 4, None, "t0");
        assert_eq!(events.len(), 1);
        assert!(
            events[0].note.contains("catalog id 4"),
            "{}",
            events[0].note
        );
        t.status = Some(status);
        assert!(ready(&t, &placement(), 4, None, "t1").1.is_empty());
    }
}
