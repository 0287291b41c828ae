//! Events about one object since one instant: an assertion on an Event must be able to
//! fail, so it names the object the Event regards and the action that caused it.

use std::time::Duration;

use k8s_openapi::api::events::v1::Event;
use k8s_openapi::jiff::Timestamp;
use kube::api::ListParams;
use kube::{Api, Resource, ResourceExt};

use crate::kube_client;

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

/// Events (in `default`, where those of cluster-scoped objects go) with `reason`.
async fn with_reason(reason: &str) -> Vec<Event> {
    let api: Api<Event> = Api::namespaced(kube_client().await, "default");
    api.list(&ListParams::default())
        .await
        .expect("list events")
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .collect()
}

/// Whether `event` was observed at or after `since`, truncated to the second as some
/// writers of Events truncate their times.
fn observed_since(event: &Event, since: Timestamp) -> bool {
    let since = Timestamp::from_second(since.as_second()).unwrap_or(since);
    observed(event).is_some_and(|t| t >= since)
}

/// Events regarding `about` with `reason`, observed at or after `since`.
pub async fn events_about(about: &Regarding, reason: &str, since: Timestamp) -> Vec<Event> {
    with_reason(reason)
        .await
        .into_iter()
        .filter(|e| about.matches(e) && observed_since(e, since))
        .collect()
}

/// Waits for an Event regarding `about` with `reason`, observed at or after `since`; on
/// timeout, says which objects Events of that reason did regard.
pub async fn wait_event(about: &Regarding, reason: &str, since: Timestamp) -> Event {
    let start = std::time::Instant::now();
    loop {
        let events = with_reason(reason).await;
        if let Some(e) = events
            .iter()
            .find(|e| about.matches(e) && observed_since(e, since))
        {
            return e.clone();
        }
        if start.elapsed() > EVENT_TIMEOUT {
            let seen: Vec<String> = events.iter().map(summary).collect();
            panic!(
                "no {reason} Event regarding {} {} (uid {:?}) since {since} within {EVENT_TIMEOUT:?}; {reason} Events: {seen:#?}",
                about.kind, about.name, about.uid
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// `kind/name at time: note` of an Event, for failure messages.
fn summary(e: &Event) -> String {
    let r = e.regarding.as_ref();
    format!(
        "{}/{} at {}: {}",
        r.and_then(|r| r.kind.as_deref()).unwrap_or("?"),
        r.and_then(|r| r.name.as_deref()).unwrap_or("?"),
        observed(e).map(|t| t.to_string()).unwrap_or_default(),
        e.note.as_deref().unwrap_or_default()
    )
}
