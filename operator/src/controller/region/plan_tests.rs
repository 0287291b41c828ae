use std::collections::BTreeMap;

use super::*;
use crate::db::roles::desired_grants;

const DP: &str = "phoenix_dataplane_eu_west_1";

fn region(role: &str) -> Region {
    let mut spec = serde_json::json!({
        "awsRegion": "eu-west-1", "dataResidency": ["EU"],
        "database": {"writer": {"connectionSecretRef": {"namespace": "ops", "name": "db", "key": "dsn"}}}
    });
    if role == "Replica" {
        spec["role"] = "Replica".into();
        spec["replicaOf"] = "us-east-1".into();
    }
    Region::new("eu-west-1", serde_json::from_value(spec).expect("spec"))
}

fn refs(standby: Option<bool>, state: Option<DbState>) -> RegionRefs {
    RegionRefs {
        endpoint: "db:5432/phoenix".into(),
        sslmode: phoenix_catalog::connect::SslMode::Prefer,
        ca_pem: None,
        standby,
        state,
        own_lag: None,
        source: None,
        dataplane_secret: Some(BTreeMap::from([
            ("password".into(), "pw".into()),
            ("username".into(), DP.into()),
        ])),
        readers: Vec::new(),
        writer_lsn: None,
        published_readers: None,
        tenant_count: 0,
        logins: super::super::deref::logins_seen(
            &region("Primary"),
            Some(&BTreeMap::from([("username".into(), DP.into())])),
            jiff::Timestamp::UNIX_EPOCH,
            std::time::Duration::from_secs(3600),
        ),
    }
}

/// The state a fully provisioned database reports.
fn converged() -> DbState {
    let mut s = DbState::empty();
    s.schema_version = phoenix_catalog::latest_version();
    let (ddl, _) = database_changes(&DbState::empty(), DP, None);
    assert!(!ddl.is_empty());
    s.roles = ["phoenix_owner", DP]
        .iter()
        .map(|n| crate::db::state::RoleState {
            name: (*n).into(),
            superuser: false,
            bypass_rls: false,
            login: *n == DP,
            create_db: false,
            create_role: false,
            inherit: *n != DP,
            owned: true,
        })
        .collect();
    s.owners
        .insert("schema clinical".into(), "phoenix_owner".into());
    for t in phoenix_catalog::TENANT_TABLES {
        s.owners
            .insert(format!("table {t}"), "phoenix_owner".into());
    }
    s.grants = desired_grants(DP).into_iter().collect();
    s.rls = phoenix_catalog::TENANT_TABLES
        .iter()
        .map(|t| crate::db::rls::TableState {
            table: (*t).into(),
            enabled: true,
            forced: true,
            policies: vec![crate::db::rls::PolicyState {
                name: phoenix_catalog::POLICY_NAME.into(),
                permissive: true,
                command: "ALL".into(),
                roles: vec!["public".into()],
                using: Some("(tenant_id = (NULLIF(current_setting('app.tenant_id'::text, true), ''::text))::bigint)".into()),
                with_check: Some("(tenant_id = (NULLIF(current_setting('app.tenant_id'::text, true), ''::text))::bigint)".into()),
            }],
        })
        .collect();
    s.dataplane_verifier = Verifier::Present(scram::verifier("pw"));
    s
}

#[test]
fn readers_are_published_when_they_differ_and_a_converged_list_plans_nothing() {
    use crate::controller::region::deref::Reader;
    use crate::db::replication::{Lsn, Replay};
    let row = |ordinal: i32, healthy: bool| ReaderRow {
        ordinal,
        host: format!("replica-{ordinal}"),
        port: 5432,
        dbname: "phoenix".into(),
        sslmode: "verify-full".into(),
        healthy,
    };
    let mut r = refs(Some(false), Some(converged()));
    r.readers = vec![
        Reader {
            endpoint: Some(row(0, false)),
            seen: ReaderSeen::Standby(Replay {
                lag_seconds: 0.0,
                replayed: Lsn(1),
            }),
        },
        Reader {
            endpoint: Some(row(1, true)),
            seen: ReaderSeen::NotStandby,
        },
        // Its Secret is missing: nothing to publish for it.
        Reader {
            endpoint: None,
            seen: ReaderSeen::Failed("secret missing".into()),
        },
    ];
    let desired = vec![row(0, true), row(1, false)];
    // Not migrated to catalog.readers yet: everything is to publish.
    let p = plan(&region("Primary"), &r).expect("plan");
    assert_eq!(p.readers.as_ref(), Some(&desired));
    r.published_readers = Some(desired.clone());
    let p = plan(&region("Primary"), &r).expect("plan");
    assert_eq!(p.readers, None);
    assert!(p.is_empty(), "{p:?}");
    // A reader turned healthy, one removed from the spec: the new list.
    r.readers[1].seen = ReaderSeen::Standby(Replay {
        lag_seconds: 3.0,
        replayed: Lsn(2),
    });
    r.readers.remove(0);
    let p = plan(&region("Primary"), &r).expect("plan");
    assert_eq!(p.readers, Some(vec![row(1, true)]));
    // A Replica's catalog is its source's: nothing is published there.
    let mut replica = refs(Some(true), None);
    replica.readers = r.readers.clone();
    let p = plan(&region("Replica"), &replica).expect("plan");
    assert_eq!(p.readers, None);
}

#[test]
fn a_converged_region_plans_nothing() {
    let plan = plan(&region("Primary"), &refs(Some(false), Some(converged()))).expect("plan");
    assert!(plan.is_empty(), "{plan:#?}");
}

#[test]
fn a_missing_database_plans_everything_in_isolation_first_order() {
    let mut r = refs(None, None);
    r.dataplane_secret = None;
    let plan = plan(&region("Primary"), &r).expect("plan");
    assert!(plan.create_database && plan.create_secret);
    assert_eq!(plan.migrations.len(), phoenix_catalog::MIGRATIONS.len());
    assert_eq!(plan.set_password, Some(PasswordWhy::NewSecret));
    let kinds: Vec<_> = plan.ddl.iter().map(|d| d.kind).collect();
    let mut sorted = kinds.clone();
    sorted.sort();
    assert_eq!(
        kinds, sorted,
        "RLS before roles before ownership before grants"
    );
    assert_eq!(plan.rls_drift.len(), phoenix_catalog::TENANT_TABLES.len());
}

#[test]
fn drift_is_planned_with_what_was_found() {
    let mut s = converged();
    s.rls[1].enabled = false;
    s.roles[1].bypass_rls = true;
    let plan = plan(&region("Primary"), &refs(Some(false), Some(s))).expect("plan");
    assert_eq!(
        plan.rls_drift,
        vec![(
            phoenix_catalog::TENANT_TABLES[1].to_owned(),
            vec![Drift::Disabled]
        )]
    );
    assert_eq!(plan.ddl.len(), 2, "{:#?}", plan.ddl);
    assert!(plan.migrations.is_empty() && !plan.create_database);
}

#[test]
fn a_password_that_differs_from_the_secret_is_reset_and_an_unreadable_one_left_alone() {
    let mut s = converged();
    s.dataplane_verifier = Verifier::Present(scram::verifier("old"));
    assert_eq!(
        password_change(&s, Some("pw"), DP),
        Some(PasswordWhy::Differs),
        "the role is the Region's own: no other Region resets it"
    );
    s.dataplane_verifier = Verifier::Missing;
    assert_eq!(
        password_change(&s, Some("pw"), DP),
        Some(PasswordWhy::Missing)
    );
    s.dataplane_verifier = Verifier::Unreadable;
    assert_eq!(password_change(&s, Some("pw"), DP), None);
    s.roles.clear();
    assert_eq!(
        password_change(&s, Some("pw"), DP),
        Some(PasswordWhy::NewRole)
    );
}

#[test]
fn a_primary_whose_writer_is_a_standby_is_refused() {
    let err = plan(&region("Primary"), &refs(Some(true), None)).unwrap_err();
    assert!(matches!(err, PlanError::WriterIsStandby(_)));
    let err = plan(&region("Replica"), &refs(Some(false), None)).unwrap_err();
    assert!(matches!(err, PlanError::ReplicaNotInRecovery(_)));
    assert!(
        plan(&region("Replica"), &refs(Some(true), None))
            .expect("ok")
            .is_empty()
    );
}

#[test]
fn a_replica_of_a_region_with_other_residency_is_refused() {
    let us = region("Primary");
    let mut us = us.clone();
    us.spec.data_residency = vec!["US".into(), "EU".into()];
    let mut r = refs(Some(true), None);
    r.source = Some(std::sync::Arc::new(us));
    let err = plan(&region("Replica"), &r).unwrap_err();
    assert!(err.to_string().contains("[\"US\"]"), "{err}");
}

#[test]
fn a_secret_naming_the_shared_role_is_moved_to_the_regions_own() {
    let mut r = refs(Some(false), Some(converged()));
    r.dataplane_secret = Some(BTreeMap::from([
        ("password".into(), "pw".into()),
        ("username".into(), "phoenix_dataplane".into()),
    ]));
    let plan = plan(&region("Primary"), &r).expect("plan");
    assert!(plan.repoint_secret && !plan.create_secret, "{plan:#?}");
}

#[test]
fn a_bypassrls_role_the_login_cannot_fix_is_refused_with_what_to_do() {
    let mut s = converged();
    s.admin.superuser = false;
    s.admin.owner_member = true;
    s.admin.name = "rds_admin".into();
    s.roles[1].bypass_rls = true;
    let err = plan(&region("Primary"), &refs(Some(false), Some(s))).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, PlanError::UnsafeRole { .. }), "{err:?}");
    assert!(
        text.contains(&format!("ALTER ROLE {DP} NOBYPASSRLS")),
        "{text}"
    );
}

const DP2: &str = "phoenix_dataplane2_eu_west_1";

/// `converged()` with the second login present, retired.
fn converged_with_second_login() -> DbState {
    let mut s = converged();
    let mut b = crate::db::role_attrs::desired_role(DP2, DP2);
    b.login = false;
    s.roles.push(b);
    s.grants
        .extend(desired_grants(DP2).into_iter().filter(|g| g.grantee == DP2));
    s
}

fn annotated(value: &str) -> Region {
    let mut r = region("Primary");
    r.metadata.annotations = Some(BTreeMap::from([(
        super::super::rotation::ANNOTATION.to_owned(),
        value.to_owned(),
    )]));
    r
}

#[test]
fn a_rotation_request_creates_the_second_login_like_the_first_and_starts_phase_one() {
    let region = annotated("2026-11-24");
    let mut r = refs(Some(false), Some(converged()));
    r.logins.requested = super::super::rotation::requested(&region);
    let p = plan(&region, &r).expect("plan");
    assert_eq!(
        p.rotation,
        Some(Rotation::Start {
            from: DP.into(),
            to: DP2.into(),
            value: "2026-11-24".into()
        })
    );
    assert!(!p.is_empty());
    let sql: Vec<&str> = p
        .ddl
        .iter()
        .flat_map(|d| &d.sql)
        .map(String::as_str)
        .collect();
    assert!(
        sql.iter()
            .any(|q| q.contains(&format!("ALTER ROLE {DP2} NOSUPERUSER NOBYPASSRLS LOGIN"))),
        "{sql:#?}"
    );
    assert!(
        sql.contains(
            &format!("GRANT DELETE, INSERT, SELECT, UPDATE ON TABLE clinical.patients TO {DP2}")
                .as_str()
        ),
        "{sql:#?}"
    );
    // The first login and its password are left as they are.
    assert_eq!(p.set_password, None);
    assert!(
        sql.iter().all(|q| !q.contains(&format!("{DP} "))),
        "{sql:#?}"
    );
    // A Secret created in this pass already answers the request: no rotation.
    r.dataplane_secret = None;
    let p = plan(&region, &r).expect("plan");
    assert!(p.create_secret && p.rotation.is_none(), "{p:#?}");
}

#[test]
fn a_region_with_both_logins_converged_plans_nothing_and_drift_of_the_second_is_repaired() {
    let mut r = refs(Some(false), Some(converged_with_second_login()));
    r.logins.requested = Some("1".into());
    r.logins.recorded = Some("1".into());
    let p = plan(&annotated("1"), &r).expect("plan");
    assert!(p.is_empty(), "{p:#?}");
    // Someone grants the retired login more than the data plane has.
    let mut s = converged_with_second_login();
    s.grants.insert(crate::db::state::Grant::new(
        "table catalog.tenants",
        DP2,
        "DELETE",
    ));
    let mut r = refs(Some(false), Some(s));
    r.logins.recorded = Some("1".into());
    let p = plan(&annotated("1"), &r).expect("plan");
    assert_eq!(p.ddl.len(), 1, "{:#?}", p.ddl);
    assert!(p.ddl[0].summary.contains("revoke DELETE"), "{:?}", p.ddl[0]);
}

#[test]
fn after_phase_one_the_secret_naming_the_second_login_is_normal_and_its_password_is_checked() {
    // The Secret names the second login; the first still may log in (draining).
    let mut s = converged_with_second_login();
    s.roles[1].login = true; // DP
    s.roles[2].login = true; // DP2
    s.dataplane_verifier = Verifier::Present(scram::verifier("pw"));
    let mut r = refs(Some(false), Some(s.clone()));
    r.dataplane_secret = Some(BTreeMap::from([
        ("password".into(), "pw".into()),
        ("username".into(), DP2.into()),
        ("rotation".into(), "1".into()),
    ]));
    r.logins = super::super::deref::logins_seen(
        &annotated("1"),
        r.dataplane_secret.as_ref(),
        jiff::Timestamp::UNIX_EPOCH,
        std::time::Duration::from_secs(3600),
    );
    assert_eq!(
        (r.logins.active.as_str(), r.logins.other.as_str()),
        (DP2, DP)
    );
    r.logins.other_sessions = Some(2);
    let p = plan(&annotated("1"), &r).expect("plan");
    assert!(!p.repoint_secret && !p.create_secret);
    assert!(matches!(
        p.rotation,
        Some(Rotation::Draining { sessions: 2, .. })
    ));
    assert!(p.is_empty(), "waiting sends nothing: {p:#?}");
    // The verifier read is the second login's: a different one is reset.
    r.state.as_mut().expect("state").dataplane_verifier =
        Verifier::Present(scram::verifier("other"));
    let p = plan(&annotated("1"), &r).expect("plan");
    assert_eq!(p.set_password, Some(PasswordWhy::Differs));
    // Drained: the first login is retired.
    r.logins.other_sessions = Some(0);
    let p = plan(&annotated("1"), &r).expect("plan");
    assert_eq!(
        p.rotation,
        Some(Rotation::Retire {
            login: DP.into(),
            terminated: 0
        })
    );
}
