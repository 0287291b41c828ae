//! What every reconcile shares: clients, stores, providers, metrics, settings.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::Store;
use kube::{Client, Resource};
use phoenix_crds::{Region, Tenant};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::backoff::Backoff;
use crate::db::Databases;
use crate::metrics::Metrics;
use crate::secrets::SecretStore;

/// Field manager of every server-side apply the operator makes.
pub const FIELD_MANAGER: &str = "phoenix-operator";

/// Settings of the operator.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Namespace where the operator keeps the Secrets it creates.
    pub namespace: String,
    /// How often a healthy object is reconciled again (drift detection).
    pub resync: Duration,
    /// Connections per region database.
    pub db_max_connections: usize,
    /// Replication lag above which `ReplicationHealthy` is False.
    pub max_replication_lag: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            namespace: "phoenix-system".to_owned(),
            resync: Duration::from_secs(300),
            db_max_connections: 8,
            max_replication_lag: Duration::from_secs(30),
        }
    }
}

/// Shared by all reconciles.
pub struct Context {
    /// Kubernetes client.
    pub client: Client,
    /// Publishes Events.
    pub recorder: Recorder,
    /// Where secrets live.
    pub secrets: Arc<dyn SecretStore>,
    /// Region database pools.
    pub databases: Databases,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Settings.
    pub settings: Settings,
    /// Regions, as the Region controller sees them.
    pub regions: Store<Region>,
    /// Tenants, as the Tenant controller sees them.
    pub tenants: Store<Tenant>,
    /// Backoff of failing objects.
    pub backoff: Backoff,
    /// Placements decided by this process but maybe not yet visible in the store, by UID,
    /// so that tenants placed concurrently count against capacity.
    pub placements: tokio::sync::Mutex<HashMap<String, String>>,
}

impl Context {
    /// Publishes an Event about `obj`; failures are logged, never fatal.
    pub async fn event<K>(
        &self,
        obj: &K,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) where
        K: Resource<DynamicType = ()>,
    {
        let event = Event {
            type_,
            reason: reason.to_owned(),
            note: Some(truncate(note, 1000)),
            action: action.to_owned(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &obj.object_ref(&())).await {
            tracing::warn!(error = %e, reason, "could not publish event");
        }
    }

    /// Reports a failed step: writes `status` (best effort, the failure is what matters) and
    /// publishes a Warning Event with the error's reason and message.
    pub async fn report_failure<K, S>(
        &self,
        obj: &K,
        status: &S,
        action: &str,
        error: &super::error::Error,
    ) where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
        S: Serialize,
    {
        if let Err(e) = self.patch_status(obj, status).await {
            tracing::warn!(error = %e, "could not write status");
        }
        self.event(
            obj,
            EventType::Warning,
            error.reason(),
            action,
            error.to_string(),
        )
        .await;
    }

    /// Writes `status` of `obj` with server-side apply on the status subresource.
    pub async fn patch_status<K, S>(&self, obj: &K, status: &S) -> Result<(), kube::Error>
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
        S: Serialize,
    {
        let api: kube::Api<K> = kube::Api::all(self.client.clone());
        let name = obj.meta().name.clone().unwrap_or_default();
        let patch = serde_json::json!({
            "apiVersion": K::api_version(&()),
            "kind": K::kind(&()),
            "status": status,
        });
        api.patch_status(
            &name,
            &kube::api::PatchParams::apply(FIELD_MANAGER).force(),
            &kube::api::Patch::Apply(&patch),
        )
        .await?;
        Ok(())
    }
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}
