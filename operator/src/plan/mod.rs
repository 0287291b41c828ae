//! `phoenix-operator plan -f <file or dir>`: runs the reconcilers' own dereference and plan
//! steps against the live cluster and databases through read-only providers, and reports
//! per object what applying the manifests would change. It never writes: the manifests are
//! admitted with a server-side dry run, database sessions are read-only, and the secret
//! store refuses writes.

mod dedicated;
pub mod manifests;
mod rds;
pub mod report;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use phoenix_crds::{IdPConnection, Region, Tenant};
use serde::de::DeserializeOwned;

use crate::controller::context::Settings;
use crate::controller::error::Error;
use crate::controller::providers::Providers;
use crate::controller::region::rotation::Rotation;
use crate::controller::region::{self, plan::RegionPlan};
use crate::controller::tenant::plan::{RowChange, TenantPlan};
use crate::controller::tenant::{self, placing::place_in};
use crate::controller::world::World;
use crate::db::PgDatabases;
use crate::secrets::{KubeSecrets, ReadOnlySecrets};
use manifests::Manifest;
use report::{Change, ObjectPlan, Report};

/// Why a plan could not be made at all.
#[derive(Debug, thiserror::Error)]
pub enum PlanCmdError {
    /// A manifest file could not be read.
    #[error("reading {path}: {reason}")]
    Read {
        /// The path.
        path: String,
        /// Why.
        reason: String,
    },
    /// A document is not a manifest.
    #[error("{origin}: {reason}")]
    Parse {
        /// `file:document`.
        origin: String,
        /// Why.
        reason: String,
    },
    /// The cluster could not be read.
    #[error("reading the cluster: {0}")]
    Kube(#[from] kube::Error),
}

/// A manifest as the API server would admit it.
enum Admitted {
    Region(Arc<Region>),
    Tenant(Arc<Tenant>),
    Idp(Arc<IdPConnection>),
    Done(ObjectPlan),
}

const PLAN_MANAGER: &str = "phoenix-operator-plan";

/// The object `m` would become: a server-side dry-run apply (admission, defaults, CEL,
/// the live status), or, where dry runs are forbidden, the manifest parsed locally with the
/// live object's identity and status.
async fn admit<K>(client: &Client, m: &Manifest, live: &[Arc<K>]) -> Result<Arc<K>, String>
where
    K: kube::Resource<DynamicType = (), Scope = kube::core::ClusterResourceScope>
        + Clone
        + DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
{
    let api: Api<K> = Api::all(client.clone());
    let params = PatchParams::apply(PLAN_MANAGER).dry_run().force();
    match api.patch(&m.name, &params, &Patch::Apply(&m.value)).await {
        Ok(obj) => Ok(Arc::new(obj)),
        Err(kube::Error::Api(s)) if s.code == 403 => {
            let mut obj: K = serde_json::from_value(m.value.clone())
                .map_err(|e| format!("{}: {e}", m.source))?;
            if let Some(l) = live.iter().find(|l| l.name_any() == m.name) {
                let meta = obj.meta_mut();
                meta.uid = l.meta().uid.clone();
                meta.creation_timestamp = l.meta().creation_timestamp.clone();
                let mut value = serde_json::to_value(&obj).map_err(|e| e.to_string())?;
                let status = serde_json::to_value(l.as_ref())
                    .ok()
                    .and_then(|v| v.get("status").cloned());
                if let (Some(status), Some(map)) = (status, value.as_object_mut()) {
                    map.insert("status".to_owned(), status);
                }
                obj = serde_json::from_value(value).map_err(|e| e.to_string())?;
            }
            Ok(Arc::new(obj))
        }
        Err(kube::Error::Api(s)) => Err(format!("refused by the API server: {}", s.message)),
        Err(e) => Err(e.to_string()),
    }
}

/// Lays `planned` over `live`: same-named live objects are replaced.
fn overlay<K: kube::Resource<DynamicType = ()>>(
    live: Vec<Arc<K>>,
    planned: &[Arc<K>],
) -> Vec<Arc<K>> {
    let names: Vec<String> = planned.iter().map(|p| p.name_any()).collect();
    live.into_iter()
        .filter(|l| !names.contains(&l.name_any()))
        .chain(planned.iter().cloned())
        .collect()
}

fn failed(kind: &str, name: &str, e: impl Into<Error>) -> ObjectPlan {
    let e: Error = e.into();
    ObjectPlan::error(kind, name, format!("{}: {e}", e.reason()))
}

fn region_changes(name: &str, settings: &Settings, endpoint: &str, p: &RegionPlan) -> Vec<Change> {
    let mut out = Vec::new();
    if p.create_database {
        out.push(Change::new(
            "create",
            format!("database {endpoint}"),
            "the server has none of that name",
        ));
    }
    for (version, migration) in &p.migrations {
        out.push(Change::new(
            "apply",
            format!("migration {version}"),
            *migration,
        ));
    }
    for d in &p.ddl {
        out.push(Change::new(
            if p.create_database || !p.migrations.is_empty() {
                "create"
            } else {
                "repair"
            },
            d.target.clone(),
            d.summary.clone(),
        ));
    }
    if p.create_secret {
        out.push(Change::new(
            "create",
            format!(
                "secret {}/{}",
                settings.namespace,
                region::dataplane_secret_name(name)
            ),
            "the data plane's credentials (generated)",
        ));
    }
    if p.repoint_secret {
        out.push(Change::new(
            "update",
            format!(
                "secret {}/{}",
                settings.namespace,
                region::dataplane_secret_name(name)
            ),
            format!(
                "name the region's own role {} (the old role keeps working)",
                crate::db::owned::dataplane_role(name)
            ),
        ));
    }
    // The login the Secret names: the other one's partner.
    let active = p.other_login.as_ref().map_or_else(
        || crate::db::owned::dataplane_role(name),
        |(other, _)| crate::db::owned::other_login(name, other),
    );
    if let Some(why) = p.set_password {
        out.push(Change::new(
            "set",
            format!("password of role {active}"),
            why.as_str(),
        ));
    }
    let secret = format!(
        "secret {}/{}",
        settings.namespace,
        region::dataplane_secret_name(name)
    );
    match &p.rotation {
        Some(step @ Rotation::Start { to, .. }) => {
            out.push(Change::new(
                "set",
                format!("password of role {to}"),
                "generated, with LOGIN",
            ));
            out.push(Change::new("update", secret, step.describe()));
        }
        Some(step @ Rotation::Retire { login, .. }) => {
            out.push(Change::new(
                "retire",
                format!("role {login}"),
                step.describe(),
            ));
        }
        Some(step @ Rotation::Draining { login, .. }) => {
            out.push(Change::new(
                "wait",
                format!("role {login}"),
                step.describe(),
            ));
        }
        None => {}
    }
    if let Some(readers) = &p.readers {
        out.push(Change::new(
            "publish",
            format!("readers of {endpoint}"),
            region::plan::describe_readers(readers),
        ));
    }
    out
}

async fn plan_region(r: &Region, world: &World<'_>) -> ObjectPlan {
    let name = r.name_any();
    if let Some(instance) = &r.spec.database.rds {
        match rds::missing_instance(world, r, instance).await {
            Ok(Some(changes)) => return ObjectPlan::with("Region", &name, changes),
            Ok(None) => {}
            Err(e) => return failed("Region", &name, e),
        }
    }
    let (db, refs) = match region::deref::dereference(r, world).await {
        Ok(x) => x,
        Err(e) => return failed("Region", &name, e),
    };
    if let Some(why) = region::failover::would_promote(r, refs.standby) {
        let target = format!("standby {}", db.endpoint());
        return ObjectPlan::with("Region", &name, vec![Change::new("promote", target, why)]);
    }
    // A fenced old primary: its pass stops there (ADR 0011), it repairs nothing.
    if refs.standby == Some(false)
        && r.spec.role == phoenix_crds::RegionRole::Primary
        && let Ok(Some(m)) = db.superseded().await
    {
        let e = crate::controller::error::PlanError::Superseded { by: m.by, at: m.at };
        return failed("Region", &name, e);
    }
    match region::plan::plan(r, &refs) {
        Ok(p) => ObjectPlan::with(
            "Region",
            &name,
            region_changes(&name, world.settings, db.endpoint(), &p),
        ),
        Err(e) => failed("Region", &name, e),
    }
}

async fn plan_tenant(
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
            if let Some(w) = &dedicated {
                let known = t.status.as_ref().is_some_and(|s| s.placement.is_some());
                changes.extend(dedicated::changes(w, known, &placement.region));
            }
            if let Some(w) = &schema {
                // A Tenant not created yet (a manifest, dry-run applied: no status) has only
                // a dry run's UID, so the names it will get are not known yet.
                let known = t.status.as_ref().is_some_and(|s| s.placement.is_some());
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

async fn plan_idp(i: &IdPConnection, world: &World<'_>) -> ObjectPlan {
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

/// Every object of kind `K` in the cluster.
async fn live<K>(client: &Client) -> Result<Vec<Arc<K>>, kube::Error>
where
    K: kube::Resource<DynamicType = (), Scope = kube::core::ClusterResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::all(client.clone());
    Ok(api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .map(Arc::new)
        .collect())
}

/// Plans `paths` against the cluster of `client` and the databases it points to.
pub async fn plan(
    client: Client,
    paths: &[PathBuf],
    settings: &Settings,
) -> Result<Report, PlanCmdError> {
    let manifests = manifests::load(paths)?;
    let live_regions: Vec<Arc<Region>> = live(&client).await?;
    let live_tenants: Vec<Arc<Tenant>> = live(&client).await?;
    let live_idps: Vec<Arc<IdPConnection>> = live(&client).await?;
    let mut admitted = Vec::new();
    for m in &manifests {
        admitted.push(match m.kind.as_str() {
            "Region" => match admit(&client, m, &live_regions).await {
                Ok(r) => Admitted::Region(r),
                Err(e) => Admitted::Done(ObjectPlan::error("Region", &m.name, e)),
            },
            "Tenant" => match admit(&client, m, &live_tenants).await {
                Ok(t) => Admitted::Tenant(t),
                Err(e) => Admitted::Done(ObjectPlan::error("Tenant", &m.name, e)),
            },
            "IdPConnection" => match admit(&client, m, &live_idps).await {
                Ok(i) => Admitted::Idp(i),
                Err(e) => Admitted::Done(ObjectPlan::error("IdPConnection", &m.name, e)),
            },
            other => Admitted::Done(ObjectPlan::skipped(
                other,
                &m.name,
                "not managed by the operator",
            )),
        });
    }
    let planned_regions: Vec<Arc<Region>> = admitted
        .iter()
        .filter_map(|a| match a {
            Admitted::Region(r) => Some(r.clone()),
            _ => None,
        })
        .collect();
    let planned_tenants: Vec<Arc<Tenant>> = admitted
        .iter()
        .filter_map(|a| match a {
            Admitted::Tenant(t) => Some(t.clone()),
            _ => None,
        })
        .collect();
    let planned_idps: Vec<Arc<IdPConnection>> = admitted
        .iter()
        .filter_map(|a| match a {
            Admitted::Idp(i) => Some(i.clone()),
            _ => None,
        })
        .collect();
    let oidc = crate::oidc::HttpOidc::new().map_err(|e| PlanCmdError::Read {
        path: "identity providers".to_owned(),
        reason: e.to_string(),
    })?;
    let providers = Providers {
        databases: Arc::new(PgDatabases::read_only()),
        secrets: Arc::new(ReadOnlySecrets(KubeSecrets::new(client.clone()))),
        oidc: Arc::new(oidc),
        dns: Arc::new(crate::controller::providers::ReadOnlyDns(Arc::new(
            crate::dns::route53::Route53::from_env(
                Arc::new(crate::metrics::Metrics::default()),
                settings.route53.clone(),
            )
            .await,
        ))),
        snapshots: Arc::new(crate::snapshot::store::ReadOnlyStore(Arc::new(
            crate::snapshot::store::S3Store::from_env().await,
        ))),
        rds: Arc::new(crate::controller::providers::ReadOnlyRds(Arc::new(
            crate::rds::aws::AwsRds::from_env().await,
        ))),
    };
    let world = World {
        providers: &providers,
        settings,
        regions: overlay(live_regions, &planned_regions),
        tenants: overlay(live_tenants, &planned_tenants),
        idps: overlay(live_idps, &planned_idps),
    };
    let mut pending = HashMap::new();
    let mut objects = Vec::new();
    for a in admitted {
        objects.push(match a {
            Admitted::Region(r) => plan_region(&r, &world).await,
            Admitted::Tenant(t) => plan_tenant(&t, &world, &mut pending).await,
            Admitted::Idp(i) => plan_idp(&i, &world).await,
            Admitted::Done(o) => o,
        });
    }
    Ok(Report::new(objects))
}
