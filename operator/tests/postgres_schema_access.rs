//! `Schema` tenants against a real PostgreSQL, reached and removed: a tenant role reaches
//! only its own schema and a tenant only its own rows, deletion drops the schema and the
//! role, and a CREATEROLE login that is not a superuser (a managed service's master user)
//! provisions and drops one. Convergence is in `postgres_schema.rs`.

mod support;

use std::sync::Arc;

use phoenix_catalog::schemas::tenant_role;
use phoenix_operator::controller::providers::Database;
use phoenix_operator::controller::tenant::apply::converge_schema;
use phoenix_operator::db::roles::DATAPLANE_ROLE;
use support::tenants::{Roles, provisioned_schema_tenant, schema_tenant};
use support::{TestDb, count};

#[tokio::test]
async fn tenant_roles_reach_only_their_own_schema_and_tenants_only_their_own_rows() {
    let roles = Roles::new();
    let db = TestDb::new("schema_walls").await;
    let a = schema_tenant("gamma");
    roles.of_tenant(&a);
    let (region, a_id) = provisioned_schema_tenant(&db, &a).await;
    let b = schema_tenant("delta");
    roles.of_tenant(&b);
    converge_schema(&*region, &b.uid).await.expect("b schema");
    let b_id = region.upsert_tenant(&b).await.expect("b row");
    let (sa, sb) = (a.schema.clone().expect("a"), b.schema.clone().expect("b"));
    let admin = db.admin().await;
    admin
        .execute(
            &format!("INSERT INTO \"{sb}\".patients (tenant_id, family_name, resource) VALUES ($1, 'B', '{{}}')"),
            &[&b_id],
        )
        .await
        .expect("seed b");

    // Tenant A's role: its own schema only.
    let c = db.admin().await;
    c.batch_execute(&format!("SET ROLE {}", tenant_role(&a.uid)))
        .await
        .expect("set role");
    for other in ["clinical.patients".to_owned(), format!("\"{sb}\".patients")] {
        let err = c
            .query(&format!("SELECT count(*) FROM {other}"), &[])
            .await
            .expect_err(&format!("tenant role read {other}"));
        assert!(
            err.to_string().contains("permission denied")
                || format!("{err:?}").contains("permission denied"),
            "{err:?}"
        );
    }
    // Its own tables are under forced RLS even for it, their owner: nothing without a tenant.
    assert_eq!(
        count(&c, &format!("SELECT count(*) FROM \"{sa}\".patients"), &[]).await,
        0
    );

    // The data plane role, as tenant A with A's search path: B's rows are unreachable.
    let mut dp = db.admin().await;
    dp.batch_execute(&format!("SET ROLE {DATAPLANE_ROLE}"))
        .await
        .expect("set role");
    let tx = dp.transaction().await.expect("tx");
    tx.query(phoenix_catalog::rls::SET_TENANT_SQL, &[&a_id.to_string()])
        .await
        .expect("set tenant");
    assert_eq!(count(&tx, "SELECT count(*) FROM patients", &[]).await, 0);
    assert_eq!(
        count(&tx, &format!("SELECT count(*) FROM \"{sb}\".patients"), &[]).await,
        0,
        "B's schema under A's tenant setting shows nothing"
    );
    let refused = tx
        .execute(
            &format!("INSERT INTO \"{sb}\".patients (tenant_id, family_name, resource) VALUES ($1, 'x', '{{}}')"),
            &[&b_id],
        )
        .await
        .expect_err("A wrote a row of B");
    assert!(
        format!("{refused:?}").contains("row-level security"),
        "{refused:?}"
    );
    drop(tx);
}

#[tokio::test]
async fn delete_drops_the_schema_and_the_role() {
    let roles = Roles::new();
    let db = TestDb::new("schema_delete").await;
    let row = schema_tenant("epsilon");
    roles.of_tenant(&row);
    let (region, _) = provisioned_schema_tenant(&db, &row).await;
    let schema = row.schema.clone().expect("schema");
    let role = tenant_role(&row.uid);
    let dropped = region
        .drop_tenant_schema(&schema, &role)
        .await
        .expect("drop");
    assert!(dropped.schema && dropped.role);
    let deleted = region.delete_tenant(&row.uid).await.expect("delete row");
    assert!(deleted.existed);
    let admin = db.admin().await;
    assert_eq!(
        count(
            &admin,
            "SELECT count(*) FROM pg_namespace WHERE nspname = $1",
            &[&schema]
        )
        .await,
        0
    );
    assert_eq!(
        count(
            &admin,
            "SELECT count(*) FROM pg_roles WHERE rolname = $1",
            &[&role]
        )
        .await,
        0
    );
    let again = region
        .drop_tenant_schema(&schema, &role)
        .await
        .expect("drop again");
    assert!(
        !again.schema && !again.role,
        "a second deletion finds nothing"
    );
}

#[tokio::test]
async fn a_createrole_login_that_is_not_a_superuser_provisions_and_drops_a_schema_tenant() {
    let roles = Roles::new();
    let db = TestDb::new("schema_managed").await;
    let login = format!("managed_admin_{}", support::rand_suffix());
    roles.add(&login);
    let admin = db.admin().await;
    // What a managed service's master user has: CREATEROLE and its own database.
    admin
        .batch_execute(&format!(
            "CREATE ROLE {login} LOGIN CREATEROLE NOSUPERUSER PASSWORD 'master-pw';
             ALTER DATABASE {} OWNER TO {login}",
            db.name
        ))
        .await
        .expect("a CREATEROLE login");
    let mut target = db.target.clone();
    target.config.user(&login).password("master-pw");
    let region: Arc<dyn Database> =
        Arc::new(phoenix_operator::db::PgDatabase::new(target, 2, false).expect("pool"));
    let dataplane =
        phoenix_operator::db::owned::dataplane_role(&format!("it-sm-{}", support::rand_suffix()));
    roles.add(&dataplane);
    phoenix_operator::controller::region::apply::provision_for(&*region, &dataplane, None)
        .await
        .expect("a non-superuser login provisions the region");
    let row = schema_tenant("eta");
    roles.of_tenant(&row);
    let work = converge_schema(&*region, &row.uid)
        .await
        .expect("a non-superuser login creates the tenant's schema");
    assert!(work.creates);
    let again = converge_schema(&*region, &row.uid).await.expect("again");
    assert_eq!(again.ddl, Vec::new());
    region.upsert_tenant(&row).await.expect("catalog row");
    let schema = row.schema.clone().expect("schema");
    let role = tenant_role(&row.uid);
    let owner: String = admin
        .query_one(
            &format!("SELECT relowner::regrole::text FROM pg_class WHERE oid = '\"{schema}\".patients'::regclass"),
            &[],
        )
        .await
        .expect("owner")
        .get(0);
    assert_eq!(owner, role);
    let dropped = region
        .drop_tenant_schema(&schema, &role)
        .await
        .expect("a non-superuser login drops it");
    assert!(dropped.schema && dropped.role);
    region
        .delete_tenant(&row.uid)
        .await
        .expect("catalog row goes");
    drop(region);
    admin
        .batch_execute(&format!(
            "REVOKE phoenix_owner FROM {login}; ALTER DATABASE {} OWNER TO CURRENT_USER",
            db.name
        ))
        .await
        .expect("tidy");
    drop(admin);
    drop(db);
}
