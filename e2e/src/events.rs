//! Events about one object since one instant: an assertion on an Event must be able to
//! fail, so it names the object the Event regards and the action that caused it.

use std::time::Duration;

use k8s_openapi::api::events::v1::Event;
use k8s_openapi::jiff::Timestamp;
use kube::api::ListParams;
use kube::{Api, Resource, ResourceExt};

use crate::{eventually, kube_client};

/// How long an Event may take to appear after what caused it was observed.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(30);

/// The object an Event must regard: kind and name, and uid when known.
#[derive(Debug, Clone)]
pub struct Regarding {
    /// `Tenant`, `Region`, ...
    pub kind: String,
    /// The object's name.
    pub name: String,
    /// The object's uid, which tells it from an earlier object of the same name.
    pub uid: Option<String>,
}

impl Regarding {
    /// The object `obj` as read from the API server (with its uid).
    pub fn of<K: Resource<DynamicType = ()>>(obj: &K) -> Self {
        Self {
            kind: K::kind(&()).into_owned(),
            name: obj.name_any(),
            uid: obj.uid(),
        }
    }

    fn matches(&self, event: &Event) -> bool {
        let Some(r) = event.regarding.as_ref() else {
            return false;
        };
        r.kind.as_deref() == Some(self.kind.as_str())
            && r.name.as_deref() == Some(self.name.as_str())
            && (self.uid.is_none() || r.uid == self.uid)
    }
}

/// An instant to take just before an action whose Events a test expects.
pub fn instant() -> Timestamp {
    Timestamp::now()
}

/// When the Event was last observed: a series' last occurrence, else its time.
fn observed(event: &Event) -> Option<Timestamp> {
    event
        .series
        .as_ref()
        .map(|s| s.last_observed_time.0)
        .or(event.event_time.as_ref().map(|t| t.0))
}

/// Events (in `default`, where those of cluster-scoped objects go) regarding `about` with
/// `reason`, observed at or after `since`. `since` is truncated to the second, as some
/// writers of Events truncate their times.
pub async fn events_about(about: &Regarding, reason: &str, since: Timestamp) -> Vec<Event> {
    let since = Timestamp::from_second(since.as_second()).unwrap_or(since);
    let api: Api<Event> = Api::namespaced(kube_client().await, "default");
    api.list(&ListParams::default())
        .await
        .expect("list events")
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some(reason) && about.matches(e))
        .filter(|e| observed(e).is_some_and(|t| t >= since))
        .collect()
}

/// Waits for an Event regarding `about` with `reason`, observed at or after `since`.
pub async fn wait_event(about: &Regarding, reason: &str, since: Timestamp) -> Event {
    eventually(
        &format!(
            "a {reason} Event regarding {} {} since {since}",
            about.kind, about.name
        ),
        EVENT_TIMEOUT,
        || async { events_about(about, reason, since).await.into_iter().next() },
    )
    .await
}
