//! `spec.database.isolation: Schema` through the real operator and kube-apiserver: the
//! Tenant becomes Ready with its schema published in the catalog, a dropped table in it is
//! repaired with an Event, and deletion drops the schema and role (`Delete`) or keeps them
//! (`Retain`).

use phoenix_e2e::events::{Regarding, instant, wait_event};
use phoenix_e2e::guard::ScenarioGuard;
use phoenix_e2e::scenario::*;
use phoenix_e2e::*;
use std::time::Duration;

async fn exists(db: &tokio_postgres::Client, sql: &str, name: &str) -> bool {
    db.query_one(&format!("SELECT EXISTS ({sql})"), &[&name])
        .await
        .expect(sql)
        .get(0)
}

const SCHEMA: &str = "SELECT 1 FROM pg_namespace WHERE nspname = $1";
const ROLE: &str = "SELECT 1 FROM pg_roles WHERE rolname = $1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_tenant_gets_its_schema_repaired_and_dropped_per_deletion_policy() {
    let _serial = SERIAL.lock().await;
    install_platform();
    let _operator = Process::operator(5).await;
    let scenario = ScenarioGuard::new("schema-tenant");
    let applied = instant();
    scenario.apply(
        &(tenant_yaml(
            "e2e-schema-del",
            "US",
            "  database: {isolation: Schema, deletionPolicy: Delete}\n",
        ) + &tenant_yaml(
            "e2e-schema-ret",
            "US",
            "  database: {isolation: Schema, deletionPolicy: Retain}\n",
        )),
    );
    let db = pg("us-east-1").await;
    let mut names = Vec::new();
    for name in ["e2e-schema-del", "e2e-schema-ret"] {
        let t = wait_tenant(name, "Ready", READY_TIMEOUT, is_ready).await;
        let uid = t.metadata.uid.clone().expect("uid");
        let schema = phoenix_catalog::schemas::tenant_schema(&uid);
        let role = phoenix_catalog::schemas::tenant_role(&uid);
        let (_, _, message) = condition(&t, "DatabaseReady").expect("DatabaseReady");
        assert!(message.contains(&schema), "{message}");
        let published: Option<String> = db
            .query_one(
                "SELECT schema_name FROM catalog.tenants WHERE uid = $1",
                &[&uid],
            )
            .await
            .expect("catalog row")
            .get(0);
        assert_eq!(published.as_deref(), Some(schema.as_str()));
        assert!(exists(&db, SCHEMA, &schema).await && exists(&db, ROLE, &role).await);
        // No foreign key to the catalog; a CHECK pins every table's rows to the tenant's
        // catalog id, added right after the row (ADR 0009).
        let id = t
            .status
            .as_ref()
            .and_then(|s| s.endpoints.as_ref())
            .expect("endpoints")
            .catalog_id;
        let (fks, pins): (i64, Vec<String>) = {
            let row = db
                .query_one(
                    "SELECT (SELECT count(*) FROM pg_constraint con JOIN pg_class f ON f.oid = con.confrelid
                             WHERE con.contype = 'f' AND con.connamespace = $1::text::regnamespace
                               AND f.relnamespace = 'catalog'::regnamespace),
                            ARRAY(SELECT DISTINCT pg_get_constraintdef(oid) FROM pg_constraint
                                  WHERE contype = 'c' AND connamespace = $1::text::regnamespace
                                    AND conname LIKE '%\\_pin')",
                    &[&schema],
                )
                .await
                .expect("constraints");
            (row.get(0), row.get(1))
        };
        assert_eq!(fks, 0, "foreign keys from {schema} to the catalog");
        assert_eq!(pins, [format!("CHECK ((tenant_id = {id}))")]);
        wait_event(&Regarding::of(&t), "SchemaProvisioned", applied).await;
        names.push((Regarding::of(&t), schema, role));
    }

    // Drift in the tenant's schema: the next pass (resync 5 s) repairs it.
    let (del, del_schema, del_role) = &names[0];
    let since = instant();
    db.batch_execute(&format!("DROP TABLE \"{del_schema}\".sessions"))
        .await
        .expect("drop a table");
    let event = wait_event(del, "DatabaseDriftRepaired", since).await;
    let note = event.note.unwrap_or_default();
    assert!(
        note.contains(&format!("table {del_schema}.sessions missing")),
        "{note}"
    );
    eventually("the table is back", Duration::from_secs(30), || {
        let db = &db;
        async move {
            let back: bool = db
                .query_one(
                    "SELECT to_regclass($1) IS NOT NULL",
                    &[&format!("{del_schema}.sessions")],
                )
                .await
                .ok()?
                .get(0);
            back.then_some(())
        }
    })
    .await;

    let since = instant();
    kubectl_ok(
        &[
            "delete",
            "tenant",
            "e2e-schema-del",
            "e2e-schema-ret",
            "--timeout=90s",
        ],
        None,
    );
    let (ret, ret_schema, ret_role) = &names[1];
    assert!(
        !exists(&db, SCHEMA, del_schema).await,
        "Delete left the schema"
    );
    assert!(!exists(&db, ROLE, del_role).await, "Delete left the role");
    assert!(
        exists(&db, SCHEMA, ret_schema).await,
        "Retain dropped the schema"
    );
    assert!(exists(&db, ROLE, ret_role).await, "Retain dropped the role");
    for tenant in [del, ret] {
        wait_event(tenant, "Deleted", since).await;
    }
}
