//! `phoenix-operator plan -f <file or dir>`: runs the reconcilers' own dereference and plan
//! steps against the live cluster and databases through read-only providers, and reports
//! per object what applying the manifests would change. It never writes: the manifests are
//! admitted with a server-side dry run, database sessions are read-only, and the secret
//! store refuses writes.

mod dedicated;
mod idp;
pub mod manifests;
mod rds;
mod region;
pub mod report;
mod tenant;

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
use crate::controller::world::World;
use crate::db::PgDatabases;
use crate::secrets::{KubeSecrets, ReadOnlySecrets};
use idp::plan_idp;
use manifests::Manifest;
use region::plan_region;
use report::{ObjectPlan, Report};
use tenant::plan_tenant;

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

/// The plan of an object whose dereference or plan failed with `e`, its reason first.
fn failed(kind: &str, name: &str, e: impl Into<Error>) -> ObjectPlan {
    let e: Error = e.into();
    ObjectPlan::error(kind, name, format!("{}: {e}", e.reason()))
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
