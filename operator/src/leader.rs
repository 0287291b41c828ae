//! Leader election over a `coordination.k8s.io/v1` Lease, so that several operator
//! replicas can run for availability while exactly one reconciles. The decision is pure
//! and unit-tested; the loop around it talks to the API server with optimistic
//! concurrency (resourceVersion), so two candidates never both win.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};

/// What a candidate should do with the lease as it stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// No lease exists: create it.
    Create,
    /// We hold it: renew it.
    Renew,
    /// Its holder stopped renewing (or released it): take it over.
    TakeOver,
    /// Someone else holds it.
    Wait {
        /// The current holder.
        holder: String,
    },
}

/// The fields of a lease the decision needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseView {
    /// Holder, if any.
    pub holder: Option<String>,
    /// Last renewal.
    pub renew_time: Option<Timestamp>,
    /// How long a renewal is valid.
    pub duration: Duration,
}

/// Decides what `me` does at `now`.
pub fn decide(lease: Option<&LeaseView>, me: &str, now: Timestamp) -> Decision {
    let Some(lease) = lease else {
        return Decision::Create;
    };
    match lease.holder.as_deref() {
        None | Some("") => Decision::TakeOver,
        Some(holder) if holder == me => Decision::Renew,
        Some(holder) => {
            let expired = match lease.renew_time {
                None => true,
                Some(renewed) => {
                    let valid_for =
                        SignedDuration::try_from(lease.duration).unwrap_or(SignedDuration::MAX);
                    renewed
                        .checked_add(valid_for)
                        .is_ok_and(|until| until < now)
                }
            };
            if expired {
                Decision::TakeOver
            } else {
                Decision::Wait {
                    holder: holder.to_owned(),
                }
            }
        }
    }
}

fn view(lease: &Lease) -> Option<LeaseView> {
    let spec = lease.spec.as_ref()?;
    Some(LeaseView {
        holder: spec.holder_identity.clone(),
        renew_time: spec.renew_time.as_ref().map(|t| t.0),
        duration: Duration::from_secs(
            u64::try_from(spec.lease_duration_seconds.unwrap_or(15)).unwrap_or(15),
        ),
    })
}

/// A candidate for one lease.
#[derive(Clone)]
pub struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
}

impl Elector {
    /// A candidate named `identity` for lease `namespace/name`.
    pub fn new(
        client: Client,
        namespace: &str,
        name: &str,
        identity: String,
        duration: Duration,
    ) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: name.to_owned(),
            identity,
            duration,
        }
    }

    fn spec(&self, now: Timestamp, transitions: i32, acquire: Option<MicroTime>) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(i32::try_from(self.duration.as_secs()).unwrap_or(15)),
            acquire_time: Some(acquire.unwrap_or(MicroTime(now))),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(transitions),
            ..Default::default()
        }
    }

    /// One attempt: returns whether this candidate holds the lease afterwards.
    pub async fn try_acquire_or_renew(&self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let current = self.api.get_opt(&self.name).await?;
        let decision = decide(
            current.as_ref().and_then(view).as_ref(),
            &self.identity,
            now,
        );
        let result = match (decision, current) {
            (Decision::Create, _) => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        ..Default::default()
                    },
                    spec: Some(self.spec(now, 0, None)),
                };
                self.api
                    .create(&PostParams::default(), &lease)
                    .await
                    .map(|_| ())
            }
            (Decision::Renew, Some(mut lease)) => {
                let spec = lease.spec.take().unwrap_or_default();
                lease.spec =
                    Some(self.spec(now, spec.lease_transitions.unwrap_or(0), spec.acquire_time));
                self.api
                    .replace(&self.name, &PostParams::default(), &lease)
                    .await
                    .map(|_| ())
            }
            (Decision::TakeOver, Some(mut lease)) => {
                let transitions = lease
                    .spec
                    .as_ref()
                    .and_then(|s| s.lease_transitions)
                    .unwrap_or(0)
                    + 1;
                lease.spec = Some(self.spec(now, transitions, None));
                self.api
                    .replace(&self.name, &PostParams::default(), &lease)
                    .await
                    .map(|_| ())
            }
            (Decision::Wait { .. }, _) | (_, None) => return Ok(false),
        };
        match result {
            Ok(()) => Ok(true),
            // Another candidate wrote first (409 on create or on a stale resourceVersion).
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Waits until this candidate holds the lease.
    pub async fn acquire(&self) {
        let retry = self.duration / 5;
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => {
                    tracing::info!(identity = %self.identity, lease = %self.name, "became the leader");
                    return;
                }
                Ok(false) => tracing::debug!("another replica leads; standing by"),
                Err(e) => tracing::warn!(error = %e, "leader election failed; retrying"),
            }
            tokio::time::sleep(retry).await;
        }
    }

    /// Renews the lease until it can no longer be sure it holds it: another holder took
    /// it, or no renewal succeeded within the lease's duration less one renewal period
    /// (each attempt is bounded, so a hung connection cannot stretch that). Returns then,
    /// and the caller must stop reconciling at once.
    pub async fn hold(&self) {
        let renew_every = self.duration / 3;
        // Counted from the start of the last successful attempt: the renewTime it wrote
        // is no later than that.
        let mut held_since = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(renew_every).await;
            let attempt_started = tokio::time::Instant::now();
            match tokio::time::timeout(renew_every, self.try_acquire_or_renew()).await {
                Ok(Ok(true)) => held_since = attempt_started,
                Ok(Ok(false)) => {
                    tracing::error!(identity = %self.identity, "lost the lease to another replica");
                    return;
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "could not renew the lease"),
                Err(_) => tracing::warn!("renewing the lease timed out"),
            }
            if held_since.elapsed() >= self.duration.saturating_sub(renew_every) {
                tracing::error!(identity = %self.identity, "could not renew the lease in time");
                return;
            }
        }
    }

    /// Gives the lease up on a graceful shutdown, so a standby takes over at once.
    pub async fn release(&self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.name).await else {
            return;
        };
        let held = lease
            .spec
            .as_ref()
            .and_then(|s| s.holder_identity.as_deref())
            == Some(self.identity.as_str());
        if !held {
            return;
        }
        if let Some(spec) = lease.spec.as_mut() {
            spec.holder_identity = None;
            spec.renew_time = None;
        }
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => tracing::info!(identity = %self.identity, "released the lease"),
            Err(e) => tracing::warn!(error = %e, "could not release the lease"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).expect("valid time")
    }

    fn held_by(holder: &str, renewed: i64) -> LeaseView {
        LeaseView {
            holder: Some(holder.to_owned()),
            renew_time: Some(at(renewed)),
            duration: Duration::from_secs(15),
        }
    }

    #[test]
    fn no_lease_is_created() {
        assert_eq!(decide(None, "a", at(0)), Decision::Create);
    }

    #[test]
    fn own_lease_is_renewed() {
        assert_eq!(
            decide(Some(&held_by("a", 0)), "a", at(100)),
            Decision::Renew
        );
    }

    #[test]
    fn fresh_lease_of_another_is_respected_until_it_expires() {
        let lease = held_by("b", 0);
        assert_eq!(
            decide(Some(&lease), "a", at(14)),
            Decision::Wait {
                holder: "b".to_owned()
            }
        );
        assert_eq!(
            decide(Some(&lease), "a", at(15)),
            Decision::Wait {
                holder: "b".to_owned()
            }
        );
        assert_eq!(decide(Some(&lease), "a", at(16)), Decision::TakeOver);
    }

    #[test]
    fn released_lease_is_taken_at_once() {
        let released = LeaseView {
            holder: None,
            renew_time: None,
            duration: Duration::from_secs(15),
        };
        assert_eq!(decide(Some(&released), "a", at(0)), Decision::TakeOver);
        let empty = LeaseView {
            holder: Some(String::new()),
            ..released
        };
        assert_eq!(decide(Some(&empty), "a", at(0)), Decision::TakeOver);
    }
}
