//! The controllers and how they are wired together.

pub mod context;
pub mod error;
pub mod region;
pub mod tenant;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, watcher};
use kube::{Api, Client, ResourceExt};
use phoenix_crds::{Region, Tenant};

use crate::backoff::Backoff;
use crate::conditions::{self, types};
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

    // A tenant placed in (or leaving) a region changes that region's tenant count.
    let region_controller =
        Controller::new(regions.clone(), watcher::Config::default().any_semantic()).watches(
            tenants.clone(),
            watcher::Config::default().any_semantic(),
            |tenant: Tenant| {
                tenant
                    .status
                    .and_then(|s| s.placement)
                    .map(|p| ObjectRef::<Region>::new(&p.region))
            },
        );
    let region_store = region_controller.store();
    let tenant_controller = Controller::new(tenants, watcher::Config::default().any_semantic());
    let tenant_store = tenant_controller.store();

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

    // A Region that changes wakes the tenants waiting on it or living in it.
    let waiting = tenant_store.clone();
    let tenant_controller = tenant_controller.watches(
        regions,
        watcher::Config::default().any_semantic(),
        move |region: Region| {
            let name = region.name_any();
            waiting
                .state()
                .into_iter()
                .filter(|t| {
                    let placed_here = t
                        .status
                        .as_ref()
                        .and_then(|s| s.placement.as_ref())
                        .is_some_and(|p| p.region == name);
                    let ready = t
                        .status
                        .as_ref()
                        .is_some_and(|s| conditions::is_true(&s.conditions, types::READY));
                    !ready
                        && (placed_here
                            || t.status
                                .as_ref()
                                .and_then(|s| s.placement.as_ref())
                                .is_none())
                })
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
    ready.store(false, Ordering::SeqCst);
    ctx.metrics.set_leading(false);
    tracing::info!("controllers stopped");
}
