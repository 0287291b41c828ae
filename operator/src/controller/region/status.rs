//! A Region's status and Events: pure, from the plan's outcome. The Events saying what a
//! pass changed are built in the `events` submodule.

use std::time::Duration;

use phoenix_catalog::ReaderRow;
use phoenix_crds::region::DataplaneCredentialsStatus;
use phoenix_crds::region::ReaderStatus;
use phoenix_crds::{Region, RegionStatus};

use super::apply::Applied;
use super::deref::{ReaderSeen, RegionRefs};
use super::rotation::Rotation;
use crate::conditions::{self, NewCondition, Status, types};
use crate::controller::context::EventSpec;
use crate::controller::error::Error;
use crate::reason::Reason;

mod events;

pub use events::change_events;

/// The `ReplicationHealthy` condition from the readers (and, on a Replica, its own lag).
pub fn replication(refs: &RegionRefs, max_lag: Duration) -> (NewCondition, Option<f64>) {
    let mut lag = refs.own_lag;
    let mut problem = None;
    for (i, reader) in refs.readers.iter().enumerate() {
        match &reader.seen {
            ReaderSeen::Standby(r) => {
                let l = r.lag_seconds;
                lag = Some(lag.map_or(l, |m: f64| m.max(l)));
            }
            ReaderSeen::NotStandby => {
                problem = Some(format!(
                    "spec.database.readers[{i}] is not a standby (not in recovery)"
                ));
            }
            ReaderSeen::Failed(e) => problem = Some(format!("spec.database.readers[{i}]: {e}")),
        }
    }
    let t = types::REPLICATION_HEALTHY;
    let condition = match (problem, lag) {
        (Some(p), _) => NewCondition::new(t, Status::False, Reason::ReplicaUnhealthy, p),
        (None, Some(l)) if l > max_lag.as_secs_f64() => NewCondition::new(
            t,
            Status::False,
            Reason::ReplicationLagging,
            format!("replicas are {l:.1}s behind (limit {}s)", max_lag.as_secs()),
        ),
        (None, Some(l)) => NewCondition::new(
            t,
            Status::True,
            Reason::ReplicaStreaming,
            format!("{} reader(s) {l:.1}s behind", refs.readers.len().max(1)),
        ),
        (None, None) => NewCondition::new(
            t,
            Status::Unknown,
            Reason::NoReaders,
            "no readers are declared in spec.database.readers",
        ),
    };
    (condition, lag)
}

/// Each reader's replication health for `status.readers`: its endpoint, what it replayed
/// and how far that is behind the writer's position sampled after it.
pub fn reader_statuses(refs: &RegionRefs) -> Vec<ReaderStatus> {
    refs.readers
        .iter()
        .enumerate()
        .map(|(i, reader)| {
            let endpoint = reader
                .endpoint
                .as_ref()
                .map(ReaderRow::endpoint)
                .unwrap_or_default();
            match &reader.seen {
                ReaderSeen::Standby(r) => ReaderStatus {
                    endpoint,
                    healthy: true,
                    replay_lsn: Some(r.replayed.to_string()),
                    lag_bytes: refs
                        .writer_lsn
                        .map(|w| i64::try_from(r.replayed.bytes_to(w)).unwrap_or(i64::MAX)),
                    lag_seconds: Some(r.lag_seconds),
                    message: None,
                },
                ReaderSeen::NotStandby => ReaderStatus {
                    endpoint,
                    message: Some(format!(
                        "spec.database.readers[{i}] is not a standby (not in recovery)"
                    )),
                    ..ReaderStatus::default()
                },
                ReaderSeen::Failed(e) => ReaderStatus {
                    endpoint,
                    message: Some(e.clone()),
                    ..ReaderStatus::default()
                },
            }
        })
        .collect()
}

/// Status of a Region whose pass succeeded, and the Events to publish.
pub fn ready(
    region: &Region,
    refs: &RegionRefs,
    applied: &Applied,
    schema_version: Option<i32>,
    max_lag: Duration,
    namespace: &str,
    now: &str,
) -> (RegionStatus, Vec<EventSpec>) {
    let current = region.status.clone().unwrap_or_default();
    let generation = region.metadata.generation;
    let name = region.metadata.name.clone().unwrap_or_default();
    let (replication, lag) = replication(refs, max_lag);
    let tenants = i32::try_from(refs.tenant_count).unwrap_or(i32::MAX);
    let conds = conditions::merge(
        &current.conditions,
        &[
            NewCondition::new(
                types::DATABASE_REACHABLE,
                Status::True,
                Reason::Connected,
                format!("connected to {}", refs.endpoint),
            ),
            replication,
            NewCondition::new(
                types::READY,
                Status::True,
                Reason::Reconciled,
                format!(
                    "schema version {}, {tenants} tenant(s)",
                    schema_version.unwrap_or(0)
                ),
            ),
        ],
        generation,
        now,
    );
    let mut events = change_events(&name, namespace, &refs.endpoint, applied);
    if !conditions::is_true(&current.conditions, types::READY) {
        events.push(EventSpec::normal(
            Reason::Ready,
            "Reconcile",
            format!("region database {} is ready", refs.endpoint),
        ));
    }
    let status = RegionStatus {
        phase: Some("Ready".to_owned()),
        conditions: conds,
        replication_lag_seconds: lag,
        readers: reader_statuses(refs),
        tenant_count: tenants,
        schema_version,
        dns: current.dns.clone(),
        dataplane_credentials: credentials(region, refs, applied, now),
        failover: current.failover.clone(),
        observed_generation: generation,
    };
    (status, events)
}

/// `status.dataplaneCredentials` after the pass: the login the Secret names and the
/// rotation it records, with the old login while it drains.
pub fn credentials(
    region: &Region,
    refs: &RegionRefs,
    applied: &Applied,
    now: &str,
) -> Option<DataplaneCredentialsStatus> {
    if region.spec.role != phoenix_crds::RegionRole::Primary {
        return None;
    }
    let l = &refs.logins;
    let draining_now = refs
        .state
        .as_ref()
        .and_then(|s| s.role(&l.other))
        .is_some_and(|r| r.login);
    let rotated_at = l.rotated_at.map(|t| t.to_string());
    Some(match &applied.rotation {
        Some(Rotation::Start { from, to, value }) => DataplaneCredentialsStatus {
            login: Some(to.clone()),
            rotation: Some(value.clone()),
            rotated_at: Some(now.to_owned()),
            draining: Some(from.clone()),
            draining_sessions: None,
        },
        Some(Rotation::Retire { .. }) => DataplaneCredentialsStatus {
            login: Some(l.active.clone()),
            rotation: l.recorded.clone(),
            rotated_at,
            draining: None,
            draining_sessions: None,
        },
        _ => DataplaneCredentialsStatus {
            login: Some(l.active.clone()),
            rotation: l.recorded.clone(),
            rotated_at,
            draining: draining_now.then(|| l.other.clone()),
            draining_sessions: l.other_sessions.filter(|_| draining_now),
        },
    })
}

/// Status of a Region whose pass failed, and the Warning Event saying why.
pub fn failed(region: &Region, error: &Error, now: &str) -> (RegionStatus, Vec<EventSpec>) {
    let current = region.status.clone().unwrap_or_default();
    let generation = region.metadata.generation;
    // Whether the database itself is the problem, or we could not even tell.
    let reachable = match error {
        // Failover refusals come from reading the database.
        Error::Plan(
            crate::controller::error::PlanError::Superseded { .. }
            | crate::controller::error::PlanError::SplitBrain { .. },
        ) => Status::True,
        Error::Deref(_) | Error::Plan(_) | Error::Apply(_) => Status::False,
        Error::Status(_) | Error::Finalizer(_) => Status::Unknown,
    };
    let reason = error.reason();
    let conds = conditions::merge(
        &current.conditions,
        &[
            NewCondition::new(
                types::DATABASE_REACHABLE,
                reachable,
                reason,
                error.to_string(),
            ),
            NewCondition::new(types::READY, Status::False, reason, error.to_string()),
        ],
        generation,
        now,
    );
    let status = RegionStatus {
        phase: Some("Failed".to_owned()),
        conditions: conds,
        observed_generation: generation,
        ..current
    };
    (
        status,
        vec![EventSpec::warning(reason, "Reconcile", error.to_string())],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::region::deref::Reader;
    use crate::db::replication::{Lsn, Replay};

    fn standby(lag_seconds: f64) -> ReaderSeen {
        ReaderSeen::Standby(Replay {
            lag_seconds,
            replayed: Lsn(0x0300_0000),
        })
    }

    fn refs(readers: Vec<ReaderSeen>) -> RegionRefs {
        let readers = readers
            .into_iter()
            .map(|seen| Reader {
                endpoint: None,
                seen,
            })
            .collect();
        RegionRefs {
            endpoint: "db:5432/phoenix".into(),
            sslmode: phoenix_catalog::connect::SslMode::Prefer,
            ca_pem: None,
            standby: Some(false),
            state: None,
            own_lag: None,
            source: None,
            dataplane_secret: None,
            readers,
            writer_lsn: None,
            published_readers: None,
            tenant_count: 3,
            logins: crate::controller::region::rotation::LoginsSeen::quiet("a", "b"),
        }
    }

    fn reason_of(c: &NewCondition) -> (Status, Reason) {
        (c.status, c.reason)
    }

    #[test]
    fn replication_health_follows_the_slowest_reader_and_the_limit() {
        let max = Duration::from_secs(30);
        let (c, lag) = replication(&refs(vec![]), max);
        assert_eq!(
            (reason_of(&c), lag),
            ((Status::Unknown, Reason::NoReaders), None)
        );
        let (c, lag) = replication(&refs(vec![standby(2.0), standby(5.0)]), max);
        assert_eq!(
            (reason_of(&c), lag),
            ((Status::True, Reason::ReplicaStreaming), Some(5.0))
        );
        let (c, _) = replication(&refs(vec![standby(45.0)]), max);
        assert_eq!(reason_of(&c), (Status::False, Reason::ReplicationLagging));
        assert!(
            c.message.contains("45.0s behind (limit 30s)"),
            "{}",
            c.message
        );
        let (c, _) = replication(&refs(vec![standby(1.0), ReaderSeen::NotStandby]), max);
        assert_eq!(reason_of(&c), (Status::False, Reason::ReplicaUnhealthy));
        assert!(
            c.message.contains("readers[1] is not a standby"),
            "{}",
            c.message
        );
    }

    #[test]
    fn each_reader_reports_its_replay_position_and_distance_to_the_writer() {
        let mut r = refs(vec![
            standby(1.0),
            ReaderSeen::NotStandby,
            ReaderSeen::Failed("connection refused".into()),
        ]);
        r.readers[0].endpoint = Some(ReaderRow {
            ordinal: 0,
            host: "replica".into(),
            port: 5433,
            dbname: "phoenix".into(),
            sslmode: "prefer".into(),
            healthy: false,
        });
        r.writer_lsn = Some(Lsn(0x0300_1000));
        let statuses = reader_statuses(&r);
        assert_eq!(
            statuses[0],
            ReaderStatus {
                endpoint: "replica:5433/phoenix".into(),
                healthy: true,
                replay_lsn: Some("0/3000000".into()),
                lag_bytes: Some(0x1000),
                lag_seconds: Some(1.0),
                message: None,
            }
        );
        assert!(!statuses[1].healthy);
        assert!(
            statuses[1]
                .message
                .as_deref()
                .is_some_and(|m| m.contains("readers[1] is not a standby")),
            "{:?}",
            statuses[1]
        );
        assert_eq!(statuses[2].message.as_deref(), Some("connection refused"));
        assert_eq!(statuses[2].lag_bytes, None);
    }

    #[test]
    fn becoming_ready_is_announced_once_and_failure_keeps_the_last_counts() {
        let spec: phoenix_crds::RegionSpec = serde_json::from_value(serde_json::json!({
            "awsRegion": "us-east-1", "dataResidency": ["US"],
            "database": {"writer": {"connectionSecretRef": {"namespace": "n", "name": "s", "key": "k"}}}
        }))
        .expect("spec");
        let mut region = Region::new("us", spec);
        let (status, events) = ready(
            &region,
            &refs(vec![]),
            &Applied::default(),
            Some(2),
            Duration::from_secs(30),
            "ns",
            "t0",
        );
        assert_eq!(
            events.iter().map(|e| e.reason).collect::<Vec<_>>(),
            [Reason::Ready]
        );
        assert_eq!((status.tenant_count, status.schema_version), (3, Some(2)));
        region.status = Some(status);
        let (_, events) = ready(
            &region,
            &refs(vec![]),
            &Applied::default(),
            Some(2),
            Duration::from_secs(30),
            "ns",
            "t1",
        );
        assert!(events.is_empty(), "{events:?}");
        let error: Error = crate::controller::error::DerefError::InvalidPort(70000).into();
        let (status, events) = failed(&region, &error, "t2");
        assert_eq!(status.phase.as_deref(), Some("Failed"));
        assert_eq!(status.tenant_count, 3, "the last count is kept");
        assert_eq!(events[0].reason, Reason::InvalidPort);
        let ready = status
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .expect("Ready");
        assert_eq!(
            (ready.status.as_str(), ready.last_transition_time.as_str()),
            ("False", "t2")
        );
    }

    #[test]
    fn the_status_names_the_login_and_the_one_draining() {
        let spec = serde_json::from_value(serde_json::json!({
            "awsRegion": "eu-west-1", "dataResidency": ["EU"],
            "database": {"writer": {"connectionSecretRef": {"namespace": "ops", "name": "db", "key": "dsn"}}}
        }))
        .expect("spec");
        let region = Region::new("us", spec);
        let mut r = refs(vec![]);
        let started = Applied {
            rotation: Some(Rotation::Start {
                from: "a".into(),
                to: "b".into(),
                value: "v2".into(),
            }),
            ..Applied::default()
        };
        let c = credentials(&region, &r, &started, "2026-11-24T03:00:00Z").expect("primary");
        assert_eq!(
            (
                c.login.as_deref(),
                c.draining.as_deref(),
                c.rotation.as_deref()
            ),
            (Some("b"), Some("a"), Some("v2"))
        );
        // The next pass reads the same from the world: b named, a still allowed to log in.
        let mut state = crate::db::state::DbState::empty();
        state.roles = vec![crate::db::role_attrs::desired_role("a", "a")];
        r.state = Some(state);
        r.logins = crate::controller::region::rotation::LoginsSeen {
            other_sessions: Some(2),
            recorded: Some("v2".into()),
            ..crate::controller::region::rotation::LoginsSeen::quiet("b", "a")
        };
        let c = credentials(&region, &r, &Applied::default(), "now").expect("primary");
        assert_eq!(
            (
                c.login.as_deref(),
                c.draining.as_deref(),
                c.draining_sessions
            ),
            (Some("b"), Some("a"), Some(2))
        );
        // Retired: nothing drains.
        r.state.as_mut().expect("state").roles[0].login = false;
        let c = credentials(&region, &r, &Applied::default(), "now").expect("primary");
        assert_eq!((c.draining, c.draining_sessions), (None, None));
    }
}
