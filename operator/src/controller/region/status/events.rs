//! The Events a Region's pass publishes about what it changed: created, migrated,
//! provisioned, repaired, rotated. Pure, from what apply reports.

use crate::controller::context::EventSpec;
use crate::controller::region::apply::Applied;
use crate::controller::region::dataplane_secret_name;
use crate::controller::region::plan::describe_readers;
use crate::controller::region::rotation::Rotation;
use crate::reason::Reason;

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
                describe_readers(readers)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::region::plan::PasswordWhy;
    use crate::db::Migrated;
    use crate::db::rls::Drift;
    use crate::db::roles::{Ddl, DdlKind};

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
}
