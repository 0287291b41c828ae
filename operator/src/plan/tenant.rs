//! What `plan` shows of a Tenant: its placement, its schema or dedicated database, its
//! catalog row and its DNS records.

use std::collections::HashMap;

use kube::ResourceExt;
use phoenix_crds::Tenant;

use super::report::{Change, ObjectPlan};
use super::{dedicated, failed};
use crate::controller::tenant::plan::{RowChange, TenantPlan};
use crate::controller::tenant::{self, placing::place_in};
use crate::controller::world::World;

/// The plan of Tenant `t`; `pending` holds the placements this plan has already decided.
pub(super) async fn plan_tenant(
    t: &Tenant,
    world: &World<'_>,
    pending: &mut HashMap<String, String>,
) -> ObjectPlan {
    let name = t.name_any();
    if let Err(e) = tenant::plan::precheck(t, &world.tenants) {
        return failed("Tenant", &name, e);
    }
    let placement = match place_in(t, &world.regions, &world.tenants, pending) {
        Ok(p) => p,
        Err(e) => {
            return failed(
                "Tenant",
                &name,
                crate::controller::error::PlanError::from(e),
            );
        }
    };
    let mut changes = Vec::new();
    let recorded = t.status.as_ref().and_then(|s| s.placement.as_ref());
    if recorded != Some(&placement) {
        changes.push(Change::new(
            "create",
            "placement",
            format!(
                "region {} (AWS {}, jurisdiction {})",
                placement.region, placement.aws_region, placement.jurisdiction
            ),
        ));
    }
    let desired = tenant::plan::catalog_row(t, &placement);
    let refs = match tenant::deref::dereference(&placement, &desired, world).await {
        Ok((_, refs)) => refs,
        Err(e) => return failed("Tenant", &name, e),
    };
    let target = format!("catalog row in {}", placement.region);
    match tenant::plan::plan(t, &placement, &refs) {
        Err(e) => return failed("Tenant", &name, e),
        Ok(TenantPlan::Wait { reason, message }) => {
            changes.push(Change::new("wait", target, format!("{reason}: {message}")));
        }
        Ok(TenantPlan::Converge {
            row,
            change,
            schema,
            dedicated,
            ..
        }) => {
            // A Tenant not created yet (a manifest, dry-run applied: no status) has only a
            // dry run's UID, so the names derived from it are not known yet.
            let known = t.status.as_ref().is_some_and(|s| s.placement.is_some());
            if let Some(w) = &dedicated {
                changes.extend(dedicated::changes(w, known, &placement.region));
            }
            if let Some(w) = &schema {
                let name = |text: &str| {
                    if known {
                        text.to_owned()
                    } else {
                        text.replace(&w.schema, "t_<from the Tenant's UID>")
                            .replace(&w.role, "phoenix_tenant_<from the Tenant's UID>")
                    }
                };
                for d in &w.ddl {
                    changes.push(Change::new(
                        if w.creates { "create" } else { "repair" },
                        name(&format!("{} in {}", d.target, placement.region)),
                        name(&d.summary),
                    ));
                }
            }
            match change {
            RowChange::Insert => changes.push(Change::new(
                "create",
                target,
                format!(
                    "name={} hostname={} isolation={} state={} requestsPerSecond={} maxUsers={} (RLS on the shared tables: in force)",
                    row.name, row.hostname, row.isolation, row.state, row.requests_per_second, row.max_users
                ),
            )),
            RowChange::Update(fields) => {
                changes.push(Change::new("update", target, fields.join(", ")));
            }
            RowChange::Unchanged => {}
            }
        }
    }
    changes.extend(dns_changes(t, world).await);
    // Records left at a previous host name (status.dns names another one).
    if let Ok(Some((zone_id, old))) = tenant::dns::left_behind(t, world).await {
        changes.extend(old.iter().map(|c| {
            Change::new(
                "delete",
                format!("DNS {} in zone {zone_id}", c.record.label()),
                "DELETE: left at the tenant's previous spec.dns.hostname",
            )
        }));
    }
    ObjectPlan::with("Tenant", &name, changes)
}

/// The Route53 changes a tenant's DNS pass would send, or why it would wait.
async fn dns_changes(t: &Tenant, world: &World<'_>) -> Vec<Change> {
    use crate::dns::Action;
    match tenant::dns::changes(t, world).await {
        Ok((zone, _, changes)) => changes
            .iter()
            .map(|c| {
                let r = &c.record;
                let mut detail = format!("{} -> {}", c.action.as_str(), r.values.join(" "));
                if let Some(region) = &r.region {
                    detail.push_str(&format!(", latency region {region}"));
                }
                if let Some(check) = &r.health_check_id {
                    detail.push_str(&format!(", health check {check}"));
                }
                let action = match c.action {
                    Action::Upsert => "upsert",
                    Action::Delete => "delete",
                };
                Change::new(
                    action,
                    format!("DNS {} in zone {}", r.label(), zone.name),
                    detail,
                )
            })
            .collect(),
        Err(report) if report.condition.reason == crate::reason::Reason::DNSNotConfigured => {
            Vec::new()
        }
        Err(report) => vec![Change::new(
            "wait",
            "DNS records",
            format!("{}: {}", report.condition.reason, report.condition.message),
        )],
    }
}
