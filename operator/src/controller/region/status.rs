//! A Region's status and Events: pure, from the plan's outcome.

use std::time::Duration;

use phoenix_catalog::ReaderRow;
use phoenix_crds::region::DataplaneCredentialsStatus;
use phoenix_crds::region::ReaderStatus;
use phoenix_crds::{Region, RegionStatus};

use super::apply::Applied;
use super::dataplane_secret_name;
use super::deref::{ReaderSeen, RegionRefs};
use super::rotation::Rotation;
use crate::conditions::{self, NewCondition, Status, types};
use crate::controller::context::EventSpec;
use crate::controller::error::Error;
use crate::reason::Reason;

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

/// Events saying what a pass changed.
pub fn change_events(region: &str, namespace: &str, endpoint: &str, a: &Applied) -> Vec<EventSpec> {
    let mut out = Vec::new();
    if a.created_database {
        out.push(EventSpec::normal(
            Reason::DatabaseCreated,
            "CreateDatabase",
            format!("created database {endpoint}"),
        ));
    }
    if let Some(m) = a.migrated.filter(|m| m.from != m.to) {
        out.push(EventSpec::normal(
            Reason::Migrated,
            "Migrate",
            format!(
                "schema migrated from version {} to {} on {endpoint}",
                m.from, m.to
            ),
        ));
    }
    if let Some(readers) = &a.readers_published {
        out.push(EventSpec::normal(
            Reason::ReadersPublished,
            "PublishReaders",
            format!(
                "readers published to the catalog: {}",
                super::plan::describe_readers(readers)
            ),
        ));
    }
    if a.secret_created {
        out.push(EventSpec::normal(
            Reason::DataplaneCredentialsCreated,
            "CreateSecret",
            format!(
                "created secret {namespace}/{}",
                dataplane_secret_name(region)
            ),
        ));
    }
    if a.fresh() {
        if !a.ddl.is_empty() {
            out.push(EventSpec::normal(
                Reason::Provisioned,
                "Provision",
                format!(
                    "{} change(s): roles, ownership, grants and row level security on every clinical table",
                    a.ddl.len()
                ),
            ));
        }
    } else {
        if !a.rls_drift.is_empty() {
            let what: Vec<String> = a
                .rls_drift
                .iter()
                .map(|(table, drifts)| {
                    let d: Vec<String> = drifts.iter().map(ToString::to_string).collect();
                    format!("{table}: {}", d.join(", "))
                })
                .collect();
            out.push(EventSpec::warning(
                Reason::RLSRepaired,
                "RepairRLS",
                format!("row level security drift repaired: {}", what.join("; ")),
            ));
        }
        // What a rotation's first phase does to its new login is not drift.
        let rotated_to = match &a.rotation {
            Some(Rotation::Start { to, .. }) => Some(to.as_str()),
            _ => None,
        };
        let other: Vec<&str> = a
            .ddl
            .iter()
            .filter(|d| d.kind != crate::db::roles::DdlKind::Rls)
            .filter(|d| {
                rotated_to.is_none_or(|to| {
                    d.target != format!("role {to}") && !d.summary.ends_with(&format!(" to {to}"))
                })
            })
            .map(|d| d.summary.as_str())
            .collect();
        if !other.is_empty() {
            out.push(EventSpec::warning(
                Reason::DatabaseDriftRepaired,
                "Repair",
                format!("database drift repaired: {}", other.join("; ")),
            ));
        }
    }
    if let Some(old) = &a.secret_repointed {
        out.push(EventSpec::normal(
            Reason::DataplaneRoleChanged,
            "MoveSecret",
            format!(
                "secret {namespace}/{} now names role {} (was {old}, which keeps working until the data planes restart)",
                dataplane_secret_name(region),
                crate::db::owned::dataplane_role(region)
            ),
        ));
    }
    match &a.rotation {
        Some(Rotation::Start { from, to, value }) => out.push(EventSpec::normal(
            Reason::DataplanePasswordRotating,
            "RotatePassword",
            format!(
                "rotation {value:?}: secret {namespace}/{} now names login {to} with a new password; {from} keeps working for the data planes connected with it and is retired once none is left",
                dataplane_secret_name(region)
            ),
        )),
        Some(Rotation::Retire { login, terminated }) => out.push(EventSpec::normal(
            Reason::DataplanePasswordRotated,
            "RetireLogin",
            if *terminated > 0 {
                format!(
                    "login {login} retired (NOLOGIN, no password) after the drain limit; its {terminated} remaining session(s) were ended"
                )
            } else {
                format!("login {login} retired (NOLOGIN, no password): no session was left")
            },
        )),
        Some(Rotation::Draining { .. }) | None => {}
    }
    if let Some(why) = a.password_set.filter(|_| !a.secret_created) {
        out.push(EventSpec::normal(
            Reason::DataplanePasswordSet,
            "SetPassword",
            format!(
                "set the password of the data plane role from secret {namespace}/{} ({})",
                dataplane_secret_name(region),
                why.as_str()
            ),
        ));
    }
    out
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
    use crate::controller::region::plan::PasswordWhy;
    use crate::db::Migrated;
    use crate::db::rls::Drift;
    use crate::db::roles::{Ddl, DdlKind};

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

    fn ddl(kind: DdlKind, summary: &str) -> Ddl {
        Ddl {
            kind,
            target: "t".into(),
            summary: summary.into(),
            sql: vec![],
        }
    }

    #[test]
    fn a_fresh_region_reports_provisioning_and_a_repair_reports_drift_as_warnings() {
        let fresh = Applied {
            created_database: true,
            migrated: Some(Migrated { from: 0, to: 2 }),
            ddl: vec![ddl(DdlKind::Rls, "x"), ddl(DdlKind::Role, "create role")],
            rls_drift: vec![("clinical.patients".into(), vec![Drift::Disabled])],
            secret_created: true,
            password_set: Some(PasswordWhy::NewSecret),
            secret_repointed: None,
            readers_published: None,
            rotation: None,
        };
        let reasons: Vec<Reason> = change_events("us", "ns", "db", &fresh)
            .iter()
            .map(|e| e.reason)
            .collect();
        assert_eq!(
            reasons,
            [
                Reason::DatabaseCreated,
                Reason::Migrated,
                Reason::DataplaneCredentialsCreated,
                Reason::Provisioned
            ]
        );
        let repair = Applied {
            ddl: vec![
                ddl(DdlKind::Rls, "x"),
                ddl(
                    DdlKind::Grant,
                    "grant INSERT on table clinical.encounters to phoenix_dataplane",
                ),
            ],
            rls_drift: vec![("clinical.encounters".into(), vec![Drift::Disabled])],
            password_set: Some(PasswordWhy::Differs),
            ..Applied::default()
        };
        let events = change_events("us", "ns", "db", &repair);
        assert_eq!(events[0].reason, Reason::RLSRepaired);
        assert!(events[0].warning);
        assert_eq!(
            events[0].note,
            "row level security drift repaired: clinical.encounters: row level security was disabled"
        );
        assert_eq!(events[1].reason, Reason::DatabaseDriftRepaired);
        assert!(
            events[1].note.contains("grant INSERT"),
            "{}",
            events[1].note
        );
        assert_eq!(events[2].reason, Reason::DataplanePasswordSet);
        assert!(
            events[2].note.contains("differs from its Secret"),
            "{}",
            events[2].note
        );
        assert!(
            change_events("us", "ns", "db", &Applied::default()).is_empty(),
            "a converged pass is silent"
        );
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
    fn a_rotation_announces_each_phase_and_its_new_login_is_not_drift() {
        let mut start = Applied {
            ddl: vec![
                ddl(DdlKind::Role, "create role b (LOGIN)"),
                ddl(DdlKind::Grant, "grant SELECT on table catalog.tenants to b"),
            ],
            rotation: Some(Rotation::Start {
                from: "a".into(),
                to: "b".into(),
                value: "v2".into(),
            }),
            ..Applied::default()
        };
        start.ddl[0].target = "role b".into();
        let events = change_events("us", "ns", "db", &start);
        let reasons: Vec<Reason> = events.iter().map(|e| e.reason).collect();
        assert_eq!(reasons, [Reason::DataplanePasswordRotating], "{events:#?}");
        assert!(events[0].note.contains("names login b") && events[0].note.contains("\"v2\""));
        assert!(!events[0].warning);
        let retire = |terminated| Applied {
            rotation: Some(Rotation::Retire {
                login: "a".into(),
                terminated,
            }),
            ..Applied::default()
        };
        let events = change_events("us", "ns", "db", &retire(0));
        assert_eq!(events[0].reason, Reason::DataplanePasswordRotated);
        assert!(
            events[0].note.contains("no session was left"),
            "{}",
            events[0].note
        );
        let events = change_events("us", "ns", "db", &retire(3));
        assert!(
            events[0].note.contains("3 remaining session(s) were ended"),
            "{}",
            events[0].note
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
