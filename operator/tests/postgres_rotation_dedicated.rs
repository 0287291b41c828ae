//! A data plane password rotation on a Region with a `Dedicated` tenant, against a real
//! PostgreSQL: the second login, made by the rotation's first phase, reaches the tenant's
//! own database (CONNECT, its clinical tables under RLS, `catalog.tenants`) before the
//! Secret names it, not only at the tenant's next pass (ADR 0010's former gap).

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use phoenix_catalog::TenantRow;
use phoenix_catalog::schemas::{tenant_database, tenant_role};
use phoenix_crds::Region;
use phoenix_operator::controller::providers::Database;
use phoenix_operator::controller::region::apply::{execute, provision_for};
use phoenix_operator::controller::region::deref::{RegionRefs, logins_seen};
use phoenix_operator::controller::region::plan::plan;
use phoenix_operator::controller::region::rotation::{ANNOTATION, Rotation};
use phoenix_operator::controller::region::rotation_dedicated::prepare;
use phoenix_operator::controller::tenant::apply::converge_dedicated;
use phoenix_operator::db::PgDatabase;
use phoenix_operator::db::owned::{dataplane_role, standby_role};
use phoenix_operator::db::roles::set_password_sql;
use phoenix_operator::db::scram;
use support::{TestDb, rand_suffix};
use tokio_postgres::Client;

/// Drops the tenant's database, then the roles the test made, when it ends (passed or
/// failed); declared before the test's database, so that one is gone first too.
struct Cleanup {
    database: String,
    roles: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let drop_database = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.database);
        let drop_roles = self
            .roles
            .iter()
            .map(|role| format!("DROP ROLE IF EXISTS \"{role}\""));
        support::cleanup_as_admin(std::iter::once(drop_database).chain(drop_roles).collect());
    }
}

fn dedicated_tenant(uid: &str) -> TenantRow {
    TenantRow {
        schema: None,
        database: Some(tenant_database(uid)),
        database_server: None,
        uid: uid.to_owned(),
        name: format!("rotded-{}", rand_suffix()),
        display_name: "Rotation hospital".to_owned(),
        hostname: format!("rotded-{}.example.test", rand_suffix()),
        home_region: "eu-west-1".to_owned(),
        data_residency: vec!["EU".to_owned()],
        isolation: phoenix_catalog::Isolation::Dedicated,
        state: phoenix_catalog::TenantState::Active,
        requests_per_second: 100,
        max_users: 100,
        generation: 1,
    }
}

/// `user` logging in to `database` with `password`.
async fn login(db: &TestDb, database: &str, user: &str, password: &str) -> Result<Client, String> {
    let mut target = db.target.clone();
    target.config.dbname(database).user(user).password(password);
    target.connect().await.map_err(|e| format!("{e:?}"))
}

#[tokio::test]
async fn the_new_login_reaches_a_dedicated_tenant_database_before_the_secret_names_it() {
    let suffix = rand_suffix();
    let name = format!("it-rotd-{suffix}");
    let (first, second) = (dataplane_role(&name), standby_role(&name));
    let uid = format!("uid-rotd-{suffix}");
    let row = dedicated_tenant(&uid);
    let database = row.database.clone().expect("dedicated");
    let _cleanup = Cleanup {
        database: database.clone(),
        roles: vec![tenant_role(&uid), first.clone(), second.clone()],
    };
    let db = TestDb::new("rotation_dedicated").await;
    let region_db = db.region();
    provision_for(&*region_db, &first, Some("old-pw"))
        .await
        .expect("provision");
    let mut target = db.target.clone();
    target.config.dbname(&database);
    let tdb: Arc<dyn Database> = Arc::new(PgDatabase::new(target, 2, false).expect("pool"));
    converge_dedicated(&*region_db, &*tdb, &uid)
        .await
        .expect("the tenant's database");
    let id = region_db.upsert_tenant(&row).await.expect("catalog row");
    login(&db, &database, &first, "old-pw")
        .await
        .expect("the first login reaches the tenant's database");

    // Phase 1 as the Region's apply runs it: the plan's DDL makes the second login.
    let mut r = Region::new(
        &name,
        serde_json::from_value(serde_json::json!({
            "awsRegion": "eu-west-1", "dataResidency": ["EU"],
            "database": {"writer": {"connectionSecretRef": {"namespace": "ops", "name": "db", "key": "dsn"}}}
        }))
        .expect("spec"),
    );
    r.metadata.annotations = Some(BTreeMap::from([(ANNOTATION.to_owned(), "one".to_owned())]));
    let secret = BTreeMap::from([
        ("username".to_owned(), first.clone()),
        ("password".to_owned(), "old-pw".to_owned()),
    ]);
    let logins = logins_seen(
        &r,
        Some(&secret),
        jiff::Timestamp::now(),
        Duration::from_secs(3600),
    );
    let state = region_db
        .state(&[&logins.active, &logins.other])
        .await
        .expect("state");
    let refs = RegionRefs {
        endpoint: region_db.endpoint().to_owned(),
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
        tenant_count: 1,
        logins,
    };
    let p = plan(&r, &refs).expect("plan");
    let Some(Rotation::Start { to, .. }) = &p.rotation else {
        panic!("a rotation starts: {p:#?}");
    };
    assert_eq!(*to, second);
    execute(region_db.as_ref(), &p, Some("old-pw"), &first)
        .await
        .expect("execute");
    // (Apply sets the password after preparing; set here first, to show what it closes.)
    region_db
        .execute(&[set_password_sql(&second, &scram::verifier("new-pw"))])
        .await
        .expect("password");
    let refused = login(&db, &database, &second, "new-pw")
        .await
        .expect_err("without the preparation the new login cannot reach the tenant");
    assert!(refused.contains("permission denied"), "{refused}");

    let databases = region_db
        .dedicated_databases()
        .await
        .expect("the Region's tenant databases");
    assert_eq!(databases, vec![database.clone()]);
    prepare(&*region_db, &databases, |_| Ok(tdb.clone()), &second)
        .await
        .expect("prepare");

    // Before any Secret names it, the new login serves the tenant as the first one does.
    let client = login(&db, &database, &second, "new-pw")
        .await
        .expect("the new login reaches the tenant's database");
    client
        .query_one("SELECT count(*) FROM catalog.tenants", &[])
        .await
        .expect("reads catalog.tenants there");
    client
        .batch_execute(&format!("SET app.tenant_id = '{id}'"))
        .await
        .expect("tenant");
    client
        .execute(
            "INSERT INTO clinical.patients (tenant_id, family_name, resource) VALUES ($1, 'Rotated', '{}')",
            &[&id],
        )
        .await
        .expect("writes the tenant's rows");
    let seen: i64 = client
        .query_one("SELECT count(*) FROM clinical.patients", &[])
        .await
        .expect("reads the tenant's rows")
        .get(0);
    assert_eq!(seen, 1);
    let first_client = login(&db, &database, &first, "old-pw")
        .await
        .expect("first");
    let privileges = |role: String| {
        let c = &first_client;
        async move {
            c.query(
                "SELECT c.relname::text, p FROM pg_class c, unnest(ARRAY['SELECT','INSERT','UPDATE','DELETE']) p
                 WHERE c.relnamespace = 'clinical'::regnamespace AND c.relkind = 'r'
                   AND has_table_privilege($1, c.oid, p) ORDER BY 1, 2",
                &[&role],
            )
            .await
            .expect("privileges")
            .iter()
            .map(|r| (r.get::<_, String>(0), r.get::<_, String>(1)))
            .collect::<Vec<_>>()
        }
    };
    let of_first = privileges(first.clone()).await;
    assert!(!of_first.is_empty());
    assert_eq!(privileges(second.clone()).await, of_first);
    drop((client, first_client));

    // The tenant's own next pass finds nothing to do for the new login.
    let again = converge_dedicated(&*region_db, &*tdb, &uid)
        .await
        .expect("again");
    assert!(
        !again.ddl.iter().any(|d| d.summary.contains(&second)),
        "{:?}",
        again.ddl
    );
    drop(tdb);
}
