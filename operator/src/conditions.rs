//! Kubernetes-convention conditions: setting one keeps `lastTransitionTime` unless its
//! status really changed, so `kubectl wait` and Argo CD see honest transitions.

use phoenix_crds::Condition;

use crate::reason::Reason;

/// Condition types shared by the resources.
pub mod types {
    /// The resource is fully reconciled.
    pub const READY: &str = "Ready";
    /// The region's database answers.
    pub const DATABASE_REACHABLE: &str = "DatabaseReachable";
    /// The region's readers replay the writer's WAL.
    pub const REPLICATION_HEALTHY: &str = "ReplicationHealthy";
    /// The tenant's catalog entry and clinical storage exist.
    pub const DATABASE_READY: &str = "DatabaseReady";
    /// Row-level security is enabled, forced and its policies are in place.
    pub const RLS_ENFORCED: &str = "RLSEnforced";
    /// Route53 holds what the object needs: a Region's ingress health check, a Tenant's
    /// latency and ownership records.
    pub const DNS_READY: &str = "DNSReady";
    /// The tenant's identity provider is validated.
    pub const SSO_READY: &str = "SSOReady";
    /// A promoted Region's old primary accepts no writes (ADR 0011).
    pub const OLD_PRIMARY_FENCED: &str = "OldPrimaryFenced";
}

/// Status of a condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// The condition holds.
    True,
    /// The condition does not hold.
    False,
    /// Not known yet.
    Unknown,
}

impl Status {
    /// The string Kubernetes expects.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::True => "True",
            Status::False => "False",
            Status::Unknown => "Unknown",
        }
    }
}

/// A condition about to be set, before the transition time is decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewCondition {
    /// Condition type.
    pub type_: &'static str,
    /// Its status.
    pub status: Status,
    /// Why.
    pub reason: Reason,
    /// What happened and, on failure, what to fix.
    pub message: String,
}

impl NewCondition {
    /// A condition with the given type, status, reason and message.
    pub fn new(
        type_: &'static str,
        status: Status,
        reason: Reason,
        message: impl Into<String>,
    ) -> Self {
        Self {
            type_,
            status,
            reason,
            message: message.into(),
        }
    }
}

/// Merges `updates` into `existing`: a condition whose status is unchanged keeps its
/// `lastTransitionTime`; reason, message and observed generation always follow the update.
/// Conditions not mentioned in `updates` are kept as they are.
pub fn merge(
    existing: &[Condition],
    updates: &[NewCondition],
    generation: Option<i64>,
    now: &str,
) -> Vec<Condition> {
    let mut out: Vec<Condition> = existing.to_vec();
    for update in updates {
        let status = update.status.as_str();
        match out.iter_mut().find(|c| c.type_ == update.type_) {
            Some(current) => {
                if current.status != status {
                    current.status = status.to_owned();
                    current.last_transition_time = now.to_owned();
                }
                current.reason = update.reason.as_str().to_owned();
                current.message.clone_from(&update.message);
                current.observed_generation = generation;
            }
            None => out.push(Condition {
                type_: update.type_.to_owned(),
                status: status.to_owned(),
                reason: update.reason.as_str().to_owned(),
                message: update.message.clone(),
                last_transition_time: now.to_owned(),
                observed_generation: generation,
            }),
        }
    }
    out
}

/// The typed reason of the condition of `type_`, if it is set and known.
pub fn reason_of(conditions: &[Condition], type_: &str) -> Option<Reason> {
    conditions
        .iter()
        .find(|c| c.type_ == type_)
        .and_then(|c| Reason::parse(&c.reason))
}

/// Whether the condition of `type_` is `True`.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == type_ && c.status == "True")
}

/// The reason of the condition of `type_` when its status is not `True`, if this version
/// knows it.
pub fn blocked_reason(conditions: &[Condition], type_: &str) -> Option<Reason> {
    conditions
        .iter()
        .find(|c| c.type_ == type_ && c.status != "True")
        .and_then(|c| Reason::parse(&c.reason))
}

/// The current time in the RFC 3339 form Kubernetes uses (seconds precision, UTC).
pub fn now() -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| jiff::Timestamp::now().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready(status: Status, reason: Reason) -> NewCondition {
        NewCondition::new(types::READY, status, reason, format!("because {reason}"))
    }

    #[test]
    fn new_condition_gets_the_current_time() {
        let out = merge(
            &[],
            &[ready(Status::True, Reason::Reconciled)],
            Some(3),
            "2026-01-01T00:00:00Z",
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].status, "True");
        assert_eq!(out[0].last_transition_time, "2026-01-01T00:00:00Z");
        assert_eq!(out[0].observed_generation, Some(3));
    }

    #[test]
    fn unchanged_status_keeps_last_transition_time_but_updates_message() {
        let first = merge(
            &[],
            &[ready(Status::False, Reason::RegionNotReady)],
            Some(1),
            "2026-01-01T00:00:00Z",
        );
        let second = merge(
            &first,
            &[ready(Status::False, Reason::DatabaseUnreachable)],
            Some(2),
            "2026-01-01T00:05:00Z",
        );
        assert_eq!(second[0].last_transition_time, "2026-01-01T00:00:00Z");
        assert_eq!(second[0].reason, "DatabaseUnreachable");
        assert_eq!(second[0].message, "because DatabaseUnreachable");
        assert_eq!(second[0].observed_generation, Some(2));
    }

    #[test]
    fn changed_status_moves_last_transition_time() {
        let first = merge(
            &[],
            &[ready(Status::False, Reason::RegionNotReady)],
            Some(1),
            "2026-01-01T00:00:00Z",
        );
        let second = merge(
            &first,
            &[ready(Status::True, Reason::Reconciled)],
            Some(1),
            "2026-01-01T00:05:00Z",
        );
        assert_eq!(second[0].status, "True");
        assert_eq!(second[0].last_transition_time, "2026-01-01T00:05:00Z");
    }

    #[test]
    fn conditions_not_updated_are_kept() {
        let first = merge(
            &[],
            &[
                ready(Status::True, Reason::Reconciled),
                NewCondition::new(
                    types::RLS_ENFORCED,
                    Status::True,
                    Reason::PoliciesEnforced,
                    "",
                ),
            ],
            Some(1),
            "t0",
        );
        let second = merge(
            &first,
            &[ready(Status::False, Reason::Deleting)],
            Some(1),
            "t1",
        );
        assert_eq!(second.len(), 2);
        assert!(is_true(&second, types::RLS_ENFORCED));
        assert!(!is_true(&second, types::READY));
    }
}
