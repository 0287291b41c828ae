//! What every reconcile shares: the client, the providers, the caches, metrics, settings;
//! and the two ways a reconcile speaks to users: status and Events.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::Store;
use kube::{Client, Resource};
use phoenix_crds::{IdPConnection, Region, Tenant};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::providers::Providers;
use crate::backoff::Backoff;
use crate::metrics::Metrics;
use crate::reason::Reason;

/// Field manager of every server-side apply the operator makes.
pub const FIELD_MANAGER: &str = "phoenix-operator";

/// Settings of the operator.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Namespace where the operator keeps the Secrets it creates.
    pub namespace: String,
    /// How often a healthy object is reconciled again (drift detection).
    pub resync: Duration,
    /// How often a healthy Region is, at most (it measures replication lag and counts
    /// tenants, so it is checked more often than tenants).
    pub region_resync: Duration,
    /// Connections per region database.
    pub db_max_connections: usize,
    /// Replication lag above which `ReplicationHealthy` is False.
    pub max_replication_lag: Duration,
    /// How long a rotated-out SCIM token keeps working.
    pub scim_token_grace: Duration,
    /// How long a data plane login rotated out may drain before its sessions are ended.
    pub rotation_drain: Duration,
    /// Namespaces whose Secrets' metadata is watched (a change wakes the Regions that
    /// reference them); `None` watches every namespace (needs cluster-wide list/watch).
    pub secret_namespaces: Option<Vec<String>>,
    /// This operator instance's id in DNS ownership records and health check tags: it
    /// changes only records whose ownership record names it.
    pub dns_owner: String,
    /// Pacing and caching of Route53 requests.
    pub route53: crate::dns::route53::Route53Settings,
    /// Where RDS endpoints are really reached (`PHOENIX_RDS_ENDPOINT_MAP`, a test and
    /// development facility; empty in production).
    pub rds_endpoints: crate::rds::endpoint_map::EndpointMap,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            namespace: "phoenix-system".to_owned(),
            resync: Duration::from_secs(300),
            region_resync: Duration::from_secs(60),
            db_max_connections: 8,
            max_replication_lag: Duration::from_secs(30),
            scim_token_grace: Duration::from_secs(3600),
            rotation_drain: Duration::from_secs(3600),
            secret_namespaces: None,
            dns_owner: "phoenix-operator".to_owned(),
            route53: Default::default(),
            rds_endpoints: Default::default(),
        }
    }
}

/// An Event a status step decided to publish.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventSpec {
    /// Normal or Warning.
    pub warning: bool,
    /// Why.
    pub reason: Reason,
    /// What the operator did (`Reconcile`, `Provision`, `Delete`, ...).
    pub action: &'static str,
    /// What happened, for people (never a secret).
    pub note: String,
}

impl EventSpec {
    /// A Normal Event.
    pub fn normal(reason: Reason, action: &'static str, note: impl Into<String>) -> Self {
        Self {
            warning: false,
            reason,
            action,
            note: note.into(),
        }
    }

    /// A Warning Event.
    pub fn warning(reason: Reason, action: &'static str, note: impl Into<String>) -> Self {
        Self {
            warning: true,
            reason,
            action,
            note: note.into(),
        }
    }
}

/// Shared by all reconciles.
pub struct Context {
    /// Kubernetes client.
    pub client: Client,
    /// Publishes Events.
    pub recorder: Recorder,
    /// Databases and secrets.
    pub providers: Providers,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Settings.
    pub settings: Settings,
    /// Regions, as the operator sees them.
    pub regions: Store<Region>,
    /// Tenants, as the operator sees them.
    pub tenants: Store<Tenant>,
    /// IdPConnections, as the operator sees them.
    pub idps: Store<IdPConnection>,
    /// Backoff of failing objects.
    pub backoff: Backoff,
    /// Placements decided by this process but maybe not yet visible in the store, by UID,
    /// so that tenants placed concurrently count against capacity.
    pub placements: tokio::sync::Mutex<HashMap<String, String>>,
    /// Objects whose cleanup succeeded: a stale copy reconciled again only has its
    /// finalizer removed (see [`super::released`]).
    pub released: super::released::Released,
}

impl Context {
    /// Publishes Events about `obj`; failures are logged, never fatal.
    pub async fn publish_events<K>(&self, obj: &K, events: &[EventSpec])
    where
        K: Resource<DynamicType = ()>,
    {
        for e in events {
            let event = Event {
                type_: if e.warning {
                    EventType::Warning
                } else {
                    EventType::Normal
                },
                reason: e.reason.as_str().to_owned(),
                note: Some(truncate(e.note.clone(), 1000)),
                action: e.action.to_owned(),
                secondary: None,
            };
            if let Err(err) = self.recorder.publish(&event, &obj.object_ref(&())).await {
                tracing::warn!(error = %err, reason = %e.reason, "could not publish event");
            }
        }
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

    /// Writes status and publishes Events. A status write that fails after a failed step is
    /// only logged: the step's error is what the reconcile reports.
    pub async fn publish<K, S>(
        &self,
        obj: &K,
        status: &S,
        events: &[EventSpec],
    ) -> Result<(), kube::Error>
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
        S: Serialize,
    {
        let written = self.patch_status(obj, status).await;
        self.publish_events(obj, events).await;
        written
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
