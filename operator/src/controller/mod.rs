//! The controllers and how they are wired together. Each kind's reconcile reads as its
//! steps (`region/`, `tenant/`); [`skeleton`] runs them all the same way.

pub mod context;
pub mod error;
pub mod idp;
pub mod providers;
pub mod region;
pub mod released;
pub mod skeleton;
pub mod tenant;
pub mod world;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::core::PartialObjectMeta;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use phoenix_crds::{IdPConnection, Region, Tenant};

use crate::backoff::Backoff;
use crate::conditions::{blocked_reason, types};
use crate::db::PgDatabases;
use crate::metrics::Metrics;
use crate::reason::RegionWait;
use crate::secrets::KubeSecrets;
use context::{Context, Settings};
use providers::Providers;
use skeleton::{error_policy, reconcile};

/// Runs the Region and Tenant controllers until `shutdown` resolves.
pub async fn run(
    client: Client,
    settings: Settings,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let regions: Api<Region> = Api::all(client.clone());
    let tenants: Api<Tenant> = Api::all(client.clone());
    let shutdown = futures::FutureExt::shared(Box::pin(shutdown));

    // Each controller reads the other kind too, so the caches the reconcilers read are
    // our own, driven here and loaded before any controller starts: a restart must not
    // decide anything from a half-loaded list (no tenants, or no regions).
    let (region_store, drive_regions) = cache(regions.clone());
    let (tenant_store, drive_tenants) = cache(tenants.clone());
    let idps: Api<IdPConnection> = Api::all(client.clone());
    let (idp_store, drive_idps) = cache(idps.clone());
    let drivers = [
        tokio::spawn(drive_regions),
        tokio::spawn(drive_tenants),
        tokio::spawn(drive_idps),
    ];
    let loaded = async {
        // One waiter per cache: the readiness signal wakes a single task.
        let _ = region_store.wait_until_ready().await;
        let _ = tenant_store.wait_until_ready().await;
        let _ = idp_store.wait_until_ready().await;
    };
    tokio::select! {
        () = loaded => {}
        () = shutdown.clone() => {
            drivers.iter().for_each(|d| d.abort());
            return;
        }
    }
    tracing::info!(
        regions = region_store.state().len(),
        tenants = tenant_store.state().len(),
        "caches loaded"
    );

    // A Secret a Region references (in a watched namespace) or the data plane Secret it
    // generated changing is acted on at once. Only metadata is watched: the operator never
    // holds Secrets' values in memory, and reads a value only when it needs it.
    let mut region_controller =
        Controller::new(regions.clone(), watcher::Config::default().any_semantic())
            // A tenant placed in (or leaving) a region changes that region's tenant count.
            .watches(
                tenants.clone(),
                watcher::Config::default().any_semantic(),
                |tenant: Tenant| {
                    tenant
                        .status
                        .and_then(|s| s.placement)
                        .map(|p| ObjectRef::<Region>::new(&p.region))
                },
            );
    let secret_apis: Vec<Api<PartialObjectMeta<Secret>>> = match &settings.secret_namespaces {
        None => vec![Api::all(client.clone())],
        Some(namespaces) => {
            let mut namespaces = namespaces.clone();
            namespaces.push(settings.namespace.clone());
            namespaces.sort();
            namespaces.dedup();
            namespaces
                .iter()
                .map(|ns| Api::namespaced(client.clone(), ns))
                .collect()
        }
    };
    for api in secret_apis {
        let referencing = region_store.clone();
        let namespace = settings.namespace.clone();
        region_controller = region_controller.watches(
            api,
            watcher::Config::default(),
            move |secret: PartialObjectMeta<Secret>| {
                region::regions_using_secret(
                    &referencing.state(),
                    &secret.namespace().unwrap_or_default(),
                    &secret.name_any(),
                    &namespace,
                )
            },
        );
    }

    let oidc = match crate::oidc::HttpOidc::new() {
        Ok(o) => o,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the HTTP client for identity providers");
            drivers.iter().for_each(|d| d.abort());
            return;
        }
    };
    let reporter = Reporter {
        controller: "phoenix-operator".to_owned(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let ctx = Arc::new(Context {
        client: client.clone(),
        recorder: Recorder::new(client.clone(), reporter),
        providers: Providers {
            databases: Arc::new(PgDatabases::new()),
            secrets: Arc::new(KubeSecrets::new(client.clone())),
            oidc: Arc::new(oidc),
            dns: Arc::new(
                crate::dns::route53::Route53::from_env(metrics.clone(), settings.route53.clone())
                    .await,
            ),
            snapshots: Arc::new(crate::snapshot::store::S3Store::from_env().await),
            rds: Arc::new(crate::rds::aws::AwsRds::from_env().await),
        },
        metrics,
        settings,
        regions: region_store,
        tenants: tenant_store.clone(),
        idps: idp_store.clone(),
        backoff: Backoff::new(
            std::time::Duration::from_secs(2),
            std::time::Duration::from_secs(300),
        ),
        placements: tokio::sync::Mutex::new(Default::default()),
        released: released::Released::new(),
    });

    // A Region that changes wakes only the tenants that wait on Regions: those placed there
    // and waiting for it, and those no Region could take yet. Tenants merely provisioning
    // are not re-queued, so thousands converging do not wake each other on every count.
    let waiting = tenant_store.clone();
    let signing_in = tenant_store.clone();
    let tenant_controller =
        Controller::new(tenants.clone(), watcher::Config::default().any_semantic())
            // A tenant's SSOReady follows the IdPConnection it names.
            .watches(
                idps.clone(),
                watcher::Config::default().any_semantic(),
                move |idp: IdPConnection| {
                    let name = idp.name_any();
                    signing_in
                        .state()
                        .into_iter()
                        .filter(|t| {
                            t.spec
                                .sso
                                .as_ref()
                                .is_some_and(|s| s.idp_connection_ref == name)
                        })
                        .map(|t| ObjectRef::from_obj(t.as_ref()))
                        .collect::<Vec<_>>()
                },
            )
            .watches(
                regions,
                watcher::Config::default().any_semantic(),
                move |region: Region| {
                    let name = region.name_any();
                    waiting
                        .state()
                        .into_iter()
                        .filter(|t| {
                            waits_on_region(t, &name) || tenant::serving::newly_serves(&region, t)
                        })
                        .map(|t| ObjectRef::from_obj(t.as_ref()))
                        .collect::<Vec<_>>()
                },
            );

    // A connection names its tenant: a tenant appearing or going changes its Ready.
    let referencing_tenant = idp_store.clone();
    let idp_controller = Controller::new(idps, watcher::Config::default().any_semantic()).watches(
        tenants,
        watcher::Config::default().any_semantic(),
        move |tenant: Tenant| {
            let name = tenant.name_any();
            referencing_tenant
                .state()
                .into_iter()
                .filter(|i| i.spec.tenant_ref == name)
                .map(|i| ObjectRef::from_obj(i.as_ref()))
                .collect::<Vec<_>>()
        },
    );
    let idps_done = idp_controller
        .graceful_shutdown_on(shutdown.clone())
        .run(
            reconcile::<IdPConnection>,
            error_policy::<IdPConnection>,
            ctx.clone(),
        )
        .for_each(|_| futures::future::ready(()));
    let regions_done = region_controller
        .graceful_shutdown_on(shutdown.clone())
        .run(reconcile::<Region>, error_policy::<Region>, ctx.clone())
        .for_each(|_| futures::future::ready(()));
    let tenants_done = tenant_controller
        .graceful_shutdown_on(shutdown)
        .run(reconcile::<Tenant>, error_policy::<Tenant>, ctx.clone())
        .for_each(|_| futures::future::ready(()));
    ready.store(true, Ordering::SeqCst);
    ctx.metrics.set_leading(true);
    tracing::info!("controllers started");
    futures::join!(regions_done, tenants_done, idps_done);
    drivers.iter().for_each(|d| d.abort());
    ready.store(false, Ordering::SeqCst);
    ctx.metrics.set_leading(false);
    tracing::info!("controllers stopped");
}

/// A reflector cache of `K` and the future that keeps it current.
fn cache<K>(
    api: Api<K>,
) -> (
    Store<K>,
    impl std::future::Future<Output = ()> + Send + 'static,
)
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store();
    let drive = reflector::reflector(
        writer,
        watcher::watcher(api, watcher::Config::default().any_semantic()),
    )
    .default_backoff()
    .for_each(|_| futures::future::ready(()));
    (reader, drive)
}

/// Whether a change of Region `region` may unblock `tenant`, judged by the typed reason of
/// its `Ready` condition when that is not True.
fn waits_on_region(tenant: &Tenant, region: &str) -> bool {
    let Some(status) = tenant.status.as_ref() else {
        return false;
    };
    let placed = status.placement.as_ref();
    match blocked_reason(&status.conditions, types::READY).map(|r| r.region_wait()) {
        Some(RegionWait::Placed) => placed.is_none_or(|p| p.region == region),
        Some(RegionWait::Any) => true,
        Some(RegionWait::No) | None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reason::Reason;
    use phoenix_crds::{Condition, Placement, TenantStatus};

    fn tenant(reason: Reason, status: &str, placed: Option<&str>) -> Tenant {
        let spec = serde_json::from_value(serde_json::json!({
            "displayName": "x", "dataResidency": ["US"], "dns": {"hostname": "x.example.test"}
        }))
        .expect("spec");
        let mut t = Tenant::new("t", spec);
        t.status = Some(TenantStatus {
            conditions: vec![Condition {
                type_: "Ready".into(),
                status: status.into(),
                reason: reason.as_str().into(),
                message: String::new(),
                last_transition_time: "t".into(),
                observed_generation: None,
            }],
            placement: placed.map(|r| Placement {
                region: r.into(),
                aws_region: r.into(),
                jurisdiction: "US".into(),
            }),
            ..Default::default()
        });
        t
    }

    #[test]
    fn only_tenants_blocked_on_regions_are_woken() {
        use Reason::*;
        assert!(waits_on_region(
            &tenant(RegionNotReady, "False", Some("us")),
            "us"
        ));
        assert!(!waits_on_region(
            &tenant(RegionNotReady, "False", Some("eu")),
            "us"
        ));
        assert!(waits_on_region(
            &tenant(NoRegionForResidency, "False", None),
            "us"
        ));
        assert!(!waits_on_region(
            &tenant(Reconciled, "True", Some("us")),
            "us"
        ));
        assert!(waits_on_region(
            &tenant(DatabaseUnreachable, "False", Some("us")),
            "us"
        ));
        assert!(waits_on_region(
            &tenant(RLSDrift, "False", Some("us")),
            "us"
        ));
        assert!(!waits_on_region(
            &tenant(HostnameTaken, "False", Some("us")),
            "us"
        ));
        assert!(
            !waits_on_region(&tenant(Reconciled, "False", None), "us"),
            "a tenant in flight is not re-queued"
        );
    }

    #[test]
    fn every_reason_a_tenant_can_wait_with_on_a_region_wakes_it() {
        // The reasons the Tenant's plan and errors produce while blocked on a Region:
        // classifying one of them as No would leave such tenants asleep until resync.
        for r in [
            Reason::RegionNotReady,
            Reason::RegionNotMigrated,
            Reason::RegionNotFound,
            Reason::RLSDrift,
            Reason::SecretNotFound,
        ] {
            assert_eq!(r.region_wait(), RegionWait::Placed, "{r}");
        }
        for e in [
            crate::placement::PlacementError::CapacityExhausted {
                wanted: vec![],
                regions: String::new(),
            }
            .reason(),
            crate::placement::PlacementError::RegionDeleting(String::new()).reason(),
        ] {
            assert_eq!(e.region_wait(), RegionWait::Any, "{e}");
        }
    }
}
