//! A data plane password rotation against a real PostgreSQL, through the Region's plan
//! and the same statements apply runs: the second login is made exactly like the first
//! (NOBYPASSRLS, marked, the same effective privileges), the old login is waited for while
//! a session of it remains and retired once drained (it can no longer log in; the new one
//! reads under RLS), and a login past the drain limit has its sessions ended.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use phoenix_crds::Region;
use phoenix_operator::controller::providers::Database;
use phoenix_operator::controller::region::apply::execute;
use phoenix_operator::controller::region::apply::provision_for;
use phoenix_operator::controller::region::deref::{RegionRefs, logins_seen};
use phoenix_operator::controller::region::plan::plan;
use phoenix_operator::controller::region::rotation::{ANNOTATION, Rotation};
use phoenix_operator::db::owned::{OWNED_MARKER, dataplane_role, standby_role};
use phoenix_operator::db::roles::set_password_sql;
use phoenix_operator::db::scram;
use phoenix_operator::db::standby::{retire_sql, terminate_sql};
use support::{TestDb, connect, rand_suffix};
use tokio_postgres::Client;

async fn login(db: &TestDb, user: &str, password: &str) -> Result<Client, String> {
    let mut target = db.target.clone();
    target.config.user(user).password(password);
    target.connect().await.map_err(|e| e.to_string())
}

fn region(name: &str, rotation: &str) -> Region {
    let spec = serde_json::from_value(serde_json::json!({
        "awsRegion": "eu-west-1", "dataResidency": ["EU"],
        "database": {"writer": {"connectionSecretRef": {"namespace": "ops", "name": "db", "key": "dsn"}}}
    }))
    .expect("spec");
    let mut r = Region::new(name, spec);
    r.metadata.annotations = Some(BTreeMap::from([(
        ANNOTATION.to_owned(),
        rotation.to_owned(),
    )]));
    r
}

/// What dereference reads for `region`, with `secret` as its data plane Secret.
async fn refs(
    db: &Arc<dyn Database>,
    region: &Region,
    secret: &BTreeMap<String, String>,
    max_drain: Duration,
) -> RegionRefs {
    let mut logins = logins_seen(region, Some(secret), jiff::Timestamp::now(), max_drain);
    let state = db
        .state(&[&logins.active, &logins.other])
        .await
        .expect("state");
    if state.role(&logins.other).is_some_and(|r| r.login) {
        logins.other_sessions = Some(db.sessions(&logins.other).await.expect("sessions"));
    }
    RegionRefs {
        endpoint: db.endpoint().to_owned(),
        sslmode: phoenix_catalog::connect::SslMode::Prefer,
        ca_pem: None,
        standby: Some(false),
        state: Some(state),
        own_lag: None,
        source: None,
        dataplane_secret: Some(secret.clone()),
        readers: Vec::new(),
        writer_lsn: None,
        published_readers: None,
        tenant_count: 0,
        logins,
    }
}

/// Every privilege `role` has on the managed schemas and tables, as PostgreSQL decides it.
async fn privileges(admin: &Client, role: &str) -> Vec<(String, String, bool)> {
    admin
        .query(
            "SELECT n.nspname || '.' || c.relname, p, has_table_privilege($1, c.oid, p)
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace,
                    unnest(ARRAY['SELECT','INSERT','UPDATE','DELETE','TRUNCATE','REFERENCES','TRIGGER']) p
              WHERE n.nspname IN ('catalog', 'clinical') AND c.relkind IN ('r', 'p')
             UNION ALL
             SELECT nspname, p, has_schema_privilege($1, nspname, p)
               FROM pg_namespace, unnest(ARRAY['USAGE','CREATE']) p
              WHERE nspname IN ('catalog', 'clinical')
              ORDER BY 1, 2",
            &[&role],
        )
        .await
        .expect("privileges")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

async fn attributes(admin: &Client, role: &str) -> (bool, bool, bool, Option<String>) {
    let r = admin
        .query_one(
            "SELECT rolcanlogin, rolbypassrls, rolpassword IS NULL,
                    shobj_description(oid, 'pg_authid')
               FROM pg_authid WHERE rolname = $1",
            &[&role],
        )
        .await
        .expect("role");
    (r.get(0), r.get(1), r.get(2), r.get(3))
}

/// Runs a plan's database part and its rotation step as apply does; the new Secret.
async fn apply(
    db: &Arc<dyn Database>,
    refs: &RegionRefs,
    secret: &BTreeMap<String, String>,
    region: &Region,
) -> BTreeMap<String, String> {
    let p = plan(region, refs).expect("plan");
    let password = secret.get("password").map(String::as_str);
    execute(db.as_ref(), &p, password, &refs.logins.active)
        .await
        .expect("execute");
    let mut secret = secret.clone();
    match &p.rotation {
        Some(Rotation::Start { to, value, .. }) => {
            let new = format!("new-{value}");
            db.execute(&[set_password_sql(to, &scram::verifier(&new))])
                .await
                .expect("password");
            secret.insert("username".into(), to.clone());
            secret.insert("password".into(), new);
            secret.insert("rotation".into(), value.clone());
            secret.insert("rotatedAt".into(), jiff::Timestamp::now().to_string());
        }
        Some(Rotation::Retire { login, terminated }) => {
            db.execute(&[retire_sql(login)]).await.expect("retire");
            if *terminated > 0 {
                db.execute(&[terminate_sql(login)])
                    .await
                    .expect("terminate");
            }
        }
        _ => {}
    }
    secret
}

#[tokio::test]
async fn a_rotation_moves_to_an_equal_second_login_and_retires_the_first_once_drained() {
    let suffix = rand_suffix();
    let name = format!("it-rot-{suffix}");
    let (first, second) = (dataplane_role(&name), standby_role(&name));
    let db = TestDb::new("rotation").await;
    let region_db = db.region();
    provision_for(&*region_db, &first, Some("old-pw"))
        .await
        .expect("provision");
    let admin = db.admin().await;
    let mut secret = BTreeMap::from([
        ("username".to_owned(), first.clone()),
        ("password".to_owned(), "old-pw".to_owned()),
    ]);
    let r1 = region(&name, "one");
    let hour = Duration::from_secs(3600);

    // A data plane connected with the old Secret.
    let old = login(&db, &first, "old-pw").await.expect("old login");

    // Phase 1.
    let before = refs(&region_db, &r1, &secret, hour).await;
    assert!(matches!(
        plan(&r1, &before).expect("plan").rotation,
        Some(Rotation::Start { .. })
    ));
    secret = apply(&region_db, &before, &secret, &r1).await;
    assert_eq!(secret["username"], second);
    let (can_login, bypass, no_password, mark) = attributes(&admin, &second).await;
    assert!(can_login && !bypass && !no_password);
    assert_eq!(mark.as_deref(), Some(OWNED_MARKER));
    let of_first = privileges(&admin, &first).await;
    assert!(of_first.iter().any(|(_, _, has)| *has));
    assert_eq!(privileges(&admin, &second).await, of_first);

    // The old login's session keeps working; its login is waited for.
    old.query_one("SELECT count(*) FROM catalog.tenants", &[])
        .await
        .expect("the old login still serves");
    let draining = refs(&region_db, &r1, &secret, hour).await;
    let p = plan(&r1, &draining).expect("plan");
    assert!(
        matches!(&p.rotation, Some(Rotation::Draining { login, sessions, .. }) if *login == first && *sessions >= 1),
        "{p:#?}"
    );
    assert!(p.is_empty(), "waiting sends no DDL: {p:#?}");
    assert!(
        login(&db, &first, "old-pw").await.is_ok(),
        "still may log in"
    );

    // Phase 2, once the old data plane is gone.
    drop(old);
    let mut drained = refs(&region_db, &r1, &secret, hour).await;
    for _ in 0..50 {
        if drained.logins.other_sessions == Some(0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        drained = refs(&region_db, &r1, &secret, hour).await;
    }
    assert_eq!(
        plan(&r1, &drained).expect("plan").rotation,
        Some(Rotation::Retire {
            login: first.clone(),
            terminated: 0
        })
    );
    secret = apply(&region_db, &drained, &secret, &r1).await;
    let (can_login, _, no_password, mark) = attributes(&admin, &first).await;
    assert!(!can_login && no_password);
    assert_eq!(mark.as_deref(), Some(OWNED_MARKER), "still the operator's");
    let err = login(&db, &first, "old-pw").await.expect_err("retired");
    assert!(
        err.contains("not permitted to log in") || err.contains("password"),
        "{err}"
    );

    // The new login reads under RLS: only the tenant it is set to.
    let mut tenant_ids = Vec::new();
    for t in ["alpha", "beta"] {
        let mut row = support::tenants::tenant(t);
        row.home_region = name.clone();
        row.data_residency = vec!["EU".to_owned()];
        let id = region_db.upsert_tenant(&row).await.expect("catalog row");
        admin
            .execute(
                "INSERT INTO clinical.patients (tenant_id, resource) VALUES ($1, '{}')",
                &[&id],
            )
            .await
            .expect("seed");
        tenant_ids.push(id);
    }
    let mut new = login(&db, &second, &secret["password"])
        .await
        .expect("new login");
    let tx = new.transaction().await.expect("tx");
    tx.execute(
        "SELECT set_config('app.tenant_id', $1, true)",
        &[&tenant_ids[0].to_string()],
    )
    .await
    .expect("tenant");
    let seen: Vec<i64> = tx
        .query("SELECT tenant_id FROM clinical.patients", &[])
        .await
        .expect("read")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(seen, [tenant_ids[0]], "RLS applies to the new login");
    tx.commit().await.expect("commit");

    // Converged: nothing more, and both logins still alike.
    let after = refs(&region_db, &r1, &secret, hour).await;
    let p = plan(&r1, &after).expect("plan");
    assert!(p.is_empty() && p.rotation.is_none(), "{p:#?}");
    assert_eq!(
        privileges(&admin, &first).await,
        privileges(&admin, &second).await
    );

    drop((new, admin, region_db, after, drained, draining, before));
    drop(db);
    drop_roles(&[&first, &second]).await;
}

#[tokio::test]
async fn a_login_still_connected_past_the_drain_limit_has_its_sessions_ended() {
    let suffix = rand_suffix();
    let name = format!("it-rotcut-{suffix}");
    let (first, second) = (dataplane_role(&name), standby_role(&name));
    let db = TestDb::new("rotation_cut").await;
    let region_db = db.region();
    provision_for(&*region_db, &first, Some("old-pw"))
        .await
        .expect("provision");
    let mut secret = BTreeMap::from([
        ("username".to_owned(), first.clone()),
        ("password".to_owned(), "old-pw".to_owned()),
    ]);
    let r1 = region(&name, "one");
    let old = login(&db, &first, "old-pw").await.expect("old login");
    let none = Duration::ZERO;
    let before = refs(&region_db, &r1, &secret, none).await;
    secret = apply(&region_db, &before, &secret, &r1).await;
    let past = refs(&region_db, &r1, &secret, none).await;
    assert!(
        matches!(plan(&r1, &past).expect("plan").rotation, Some(Rotation::Retire { terminated, .. }) if terminated >= 1)
    );
    secret = apply(&region_db, &past, &secret, &r1).await;
    assert!(
        old.query_one("SELECT 1", &[]).await.is_err(),
        "the old login's session was ended"
    );
    assert!(login(&db, &first, "old-pw").await.is_err());
    assert!(login(&db, &second, &secret["password"]).await.is_ok());
    drop((old, region_db, past, before));
    drop(db);
    drop_roles(&[&first, &second]).await;
}

/// Drops roles the test made (their databases must be gone first).
async fn drop_roles(roles: &[&str]) {
    let admin = phoenix_catalog::connect::parse(&support::admin_dsn()).expect("admin DSN");
    let client = connect(&admin).await;
    for r in roles {
        client
            .batch_execute(&format!("DROP ROLE IF EXISTS {r}"))
            .await
            .expect("drop role");
    }
}
