//! The controllers and how they are wired together.

pub mod context;
pub mod error;
pub mod region;
pub mod tenant;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use phoenix_crds::{Region, Tenant};

use crate::backoff::Backoff;
use crate::conditions::types;
use crate::db::Databases;
use crate::metrics::Metrics;
use crate::secrets::KubeSecrets;
use context::{Context, Settings};

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
    // A tenant placed in (or leaving) a region changes that region's tenant count; a Secret
    // in the operator namespace that a Region references (or the data plane Secret it
    // generated) changing is acted on at once, not at the next retry or resync.
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(client.clone(), &settings.namespace);
    let referencing = region_store.clone();
    let namespace = settings.namespace.clone();
    let region_controller =
        Controller::new(regions.clone(), watcher::Config::default().any_semantic())
            .watches(
                tenants.clone(),
                watcher::Config::default().any_semantic(),
                |tenant: Tenant| {
                    tenant
                        .status
                        .and_then(|s| s.placement)
                        .map(|p| ObjectRef::<Region>::new(&p.region))
                },
            )
            .watches(
                secrets,
                watcher::Config::default(),
                move |secret: k8s_openapi::api::core::v1::Secret| {
                    let name = secret.metadata.name.unwrap_or_default();
                    region::regions_using_secret(
                        &referencing.state(),
                        &namespace,
                        &name,
                        &namespace,
                    )
                },
            );
    let tenant_controller =
        Controller::new(tenants.clone(), watcher::Config::default().any_semantic());

    let drivers = [tokio::spawn(drive_regions), tokio::spawn(drive_tenants)];
    let loaded = async {
        // One waiter per cache: the readiness signal wakes a single task.
        let _ = region_store.wait_until_ready().await;
        let _ = tenant_store.wait_until_ready().await;
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

    let reporter = Reporter {
        controller: "phoenix-operator".to_owned(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let ctx = Arc::new(Context {
        client: client.clone(),
        recorder: Recorder::new(client.clone(), reporter),
        secrets: Arc::new(KubeSecrets::new(client.clone())),
        databases: Databases::default(),
        metrics,
        settings,
        regions: region_store,
        tenants: tenant_store.clone(),
        backoff: Backoff::new(
            std::time::Duration::from_secs(2),
            std::time::Duration::from_secs(300),
        ),
        placements: tokio::sync::Mutex::new(Default::default()),
    });

    // A Region that changes wakes only the tenants that wait on Regions: those placed there
    // and waiting for it, and those no Region could take yet. Tenants merely provisioning
    // are not re-queued, so thousands converging do not wake each other on every count.
    let waiting = tenant_store.clone();
    let tenant_controller = tenant_controller.watches(
        regions,
        watcher::Config::default().any_semantic(),
        move |region: Region| {
            let name = region.name_any();
            waiting
                .state()
                .into_iter()
                .filter(|t| waits_on_region(t, &name))
                .map(|t| ObjectRef::from_obj(t.as_ref()))
                .collect::<Vec<_>>()
        },
    );

    let regions_done = region_controller
        .graceful_shutdown_on(shutdown.clone())
        .run(region::reconcile, region::error_policy, ctx.clone())
        .for_each(|_| futures::future::ready(()));
    let tenants_done = tenant_controller
        .graceful_shutdown_on(shutdown)
        .run(tenant::reconcile, tenant::error_policy, ctx.clone())
        .for_each(|_| futures::future::ready(()));
    ready.store(true, Ordering::SeqCst);
    ctx.metrics.set_leading(true);
    tracing::info!("controllers started");
    futures::join!(regions_done, tenants_done);
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

/// Whether a change of Region `region` may unblock `tenant`.
fn waits_on_region(tenant: &Tenant, region: &str) -> bool {
    let Some(status) = tenant.status.as_ref() else {
        return false;
    };
    let reason = status
        .conditions
        .iter()
        .find(|c| c.type_ == types::READY && c.status != "True")
        .map(|c| c.reason.as_str());
    let placed_here = status
        .placement
        .as_ref()
        .is_some_and(|p| p.region == region);
    match reason {
        Some(
            "RegionNotReady"
            | "RegionNotMigrated"
            | "RegionNotFound"
            | "DatabaseUnreachable"
            | "DatabaseError"
            | "SecretNotFound"
            | "SecretKeyMissing",
        ) => placed_here || status.placement.is_none(),
        Some(
            "NoRegionForResidency"
            | "CapacityExhausted"
            | "RegionDeleting"
            | "ResidencyViolation"
            | "ResidencyMismatch"
            | "RegionIsReplica",
        ) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use phoenix_crds::{Condition, Placement, TenantStatus};

    fn tenant(reason: &str, status: &str, placed: Option<&str>) -> Tenant {
        let spec = serde_json::from_value(serde_json::json!({
            "displayName": "x", "dataResidency": ["US"], "dns": {"hostname": "x.example.test"}
        }))
        .expect("spec");
        let mut t = Tenant::new("t", spec);
        t.status = Some(TenantStatus {
            conditions: vec![Condition {
                type_: "Ready".into(),
                status: status.into(),
                reason: reason.into(),
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
        assert!(waits_on_region(
            &tenant("RegionNotReady", "False", Some("us")),
            "us"
        ));
        assert!(!waits_on_region(
            &tenant("RegionNotReady", "False", Some("eu")),
            "us"
        ));
        assert!(waits_on_region(
            &tenant("NoRegionForResidency", "False", None),
            "us"
        ));
        assert!(!waits_on_region(
            &tenant("Reconciled", "True", Some("us")),
            "us"
        ));
        assert!(waits_on_region(
            &tenant("DatabaseUnreachable", "False", Some("us")),
            "us"
        ));
        assert!(!waits_on_region(
            &tenant("HostnameTaken", "False", Some("us")),
            "us"
        ));
        assert!(
            !waits_on_region(&tenant("Reconciled", "False", None), "us"),
            "a tenant in flight is not re-queued"
        );
    }
}
