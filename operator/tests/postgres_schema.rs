//! `Schema` tenants against a real PostgreSQL, converged: the operator creates a
//! per-tenant role and schema holding a copy of every clinical table under forced RLS,
//! converges it again to nothing, repairs a dropped table or policy, and carries what a
//! later migration adds to the clinical tables into existing tenant schemas. Who reaches
//! what, and deletion, are in `postgres_schema_access.rs`.

mod support;

use phoenix_catalog::POLICY_NAME;
use phoenix_catalog::schemas::tenant_role;
use phoenix_operator::controller::tenant::apply::converge_schema;
use phoenix_operator::db::roles::DATAPLANE_ROLE;
use phoenix_operator::db::tenant_schema::tables;
use support::tenants::{Roles, provisioned_schema_tenant, schema_tenant};
use support::{TestDb, count};

#[tokio::test]
async fn provisioning_creates_role_schema_tables_indexes_and_forced_rls_once() {
    let roles = Roles::new();
    let db = TestDb::new("schema_prov").await;
    let row = schema_tenant("alpha");
    roles.of_tenant(&row);
    let (region, id) = provisioned_schema_tenant(&db, &row).await;
    let schema = row.schema.clone().expect("schema");
    let role = tenant_role(&row.uid);
    let admin = db.admin().await;

    // The role: NOLOGIN, nothing that bypasses RLS, marked as the operator's.
    let r = admin
        .query_one(
            "SELECT rolcanlogin, rolsuper, rolbypassrls, rolcreaterole, rolcreatedb, shobj_description(oid, 'pg_authid')
             FROM pg_roles WHERE rolname = $1",
            &[&role],
        )
        .await
        .expect("role exists");
    assert_eq!(
        (
            r.get::<_, bool>(0),
            r.get::<_, bool>(1),
            r.get::<_, bool>(2),
            r.get::<_, bool>(3),
            r.get::<_, bool>(4)
        ),
        (false, false, false, false, false)
    );
    assert_eq!(
        r.get::<_, Option<String>>(5).as_deref(),
        Some(phoenix_operator::db::owned::OWNED_MARKER)
    );
    // The schema and every table, owned by the role, with forced RLS and the policy.
    let owner: String = admin
        .query_one(
            "SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = $1",
            &[&schema],
        )
        .await
        .expect("schema exists")
        .get(0);
    assert_eq!(owner, role);
    for table in tables() {
        let t = admin
            .query_one(
                "SELECT c.relowner::regrole::text, c.relrowsecurity, c.relforcerowsecurity,
                        (SELECT count(*) FROM pg_policies p WHERE p.schemaname = n.nspname AND p.tablename = c.relname AND p.policyname = $3),
                        (SELECT count(*) FROM pg_index i WHERE i.indrelid = c.oid),
                        (SELECT count(*) FROM pg_index i JOIN pg_class s ON s.oid = i.indrelid JOIN pg_namespace sn ON sn.oid = s.relnamespace
                          WHERE sn.nspname = 'clinical' AND s.relname = c.relname)
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname = $1 AND c.relname = $2",
                &[&schema, &table, &POLICY_NAME],
            )
            .await
            .unwrap_or_else(|e| panic!("table {schema}.{table}: {e}"));
        assert_eq!(t.get::<_, String>(0), role, "{table} owner");
        assert!(
            t.get::<_, bool>(1) && t.get::<_, bool>(2),
            "{table}: RLS enabled and forced"
        );
        assert_eq!(t.get::<_, i64>(3), 1, "{table}: isolation policy");
        assert_eq!(
            t.get::<_, i64>(4),
            t.get::<_, i64>(5),
            "{table}: as many indexes as clinical.{table}"
        );
    }
    // Foreign keys (but those to the catalog: a CHECK pins the rows instead) and the
    // audit chain's triggers were copied and point into the schema.
    let fks: Vec<String> = admin
        .query(
            "SELECT pg_get_constraintdef(con.oid) FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND con.contype = 'f'",
            &[&schema],
        )
        .await
        .expect("fks")
        .iter()
        .map(|r| r.get(0))
        .collect();
    let clinical_fks = count(
        &admin,
        "SELECT count(*) FROM pg_constraint con JOIN pg_namespace n ON n.oid = con.connamespace WHERE n.nspname = 'clinical' AND con.contype = 'f'
           AND con.confrelid <> 'catalog.tenants'::regclass",
        &[],
    )
    .await;
    assert!(clinical_fks > 0);
    assert_eq!(fks.len() as i64, clinical_fks, "{fks:#?}");
    assert!(!fks.iter().any(|f| f.contains("clinical.")), "{fks:#?}");
    assert!(!fks.iter().any(|f| f.contains("catalog.")), "{fks:#?}");
    let triggers = count(
        &admin,
        "SELECT count(*) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = $1 AND NOT t.tgisinternal AND t.tgfoid IN (SELECT p.oid FROM pg_proc p JOIN pg_namespace pn ON pn.oid = p.pronamespace WHERE pn.nspname = $1)",
        &[&schema],
    )
    .await;
    assert_eq!(
        triggers, 3,
        "the audit chain's three triggers call the schema's own functions"
    );

    // The data plane role writes and reads the tenant's rows there, with the search path
    // the data plane sets; the audit chain runs in the schema's own table.
    let mut dp = db.admin().await;
    dp.batch_execute(&format!("SET ROLE {DATAPLANE_ROLE}"))
        .await
        .expect("set role");
    let tx = dp.transaction().await.expect("tx");
    tx.query(phoenix_catalog::rls::SET_TENANT_SQL, &[&id.to_string()])
        .await
        .expect("set tenant");
    tx.execute(
        "INSERT INTO patients (tenant_id, family_name, resource) VALUES ($1, 'Doe', '{}')",
        &[&id],
    )
    .await
    .expect("insert into the tenant's patients");
    tx.execute(
        "INSERT INTO audit_events (tenant_id, seq, recorded_at, actor, action, resource_type, status, request_id, prev_hash, hash)
         VALUES ($1, 1, now(), 'u', 'read', 'Patient', 200, 'r', '\\x00'::bytea, '\\x00'::bytea)",
        &[&id],
    )
    .await
    .expect("append an audit entry");
    tx.commit().await.expect("commit");
    assert_eq!(
        count(
            &admin,
            &format!("SELECT count(*) FROM \"{schema}\".patients WHERE tenant_id = $1"),
            &[&id]
        )
        .await,
        1
    );
    assert_eq!(
        count(&admin, "SELECT count(*) FROM clinical.patients", &[]).await,
        0
    );
    let chained = count(
        &admin,
        &format!("SELECT count(*) FROM \"{schema}\".audit_events WHERE octet_length(hash) = 32 AND seq = 1"),
        &[],
    )
    .await;
    assert_eq!(chained, 1, "the chain trigger set seq and hash");

    // A schema name edited by hand to one of the platform's own schemas is refused on read.
    admin
        .execute(
            "UPDATE catalog.tenants SET schema_name = 'catalog' WHERE id = $1",
            &[&id],
        )
        .await
        .expect("passes the CHECK, which only checks the form");
    let err = region.tenant_rows(&row).await.expect_err("refused on read");
    assert!(
        err.to_string()
            .contains("is not a valid tenant schema name"),
        "{err}"
    );
    admin
        .execute(
            "UPDATE catalog.tenants SET schema_name = $2 WHERE id = $1",
            &[&id, &schema],
        )
        .await
        .expect("put back");

    // A second pass changes nothing.
    let again = converge_schema(&*region, &row.uid)
        .await
        .expect("second pass");
    assert!(!again.creates);
    assert_eq!(again.ddl, Vec::new(), "idempotent");
}

#[tokio::test]
async fn a_dropped_table_or_policy_in_the_tenant_schema_is_repaired() {
    let roles = Roles::new();
    let db = TestDb::new("schema_drift").await;
    let row = schema_tenant("beta");
    roles.of_tenant(&row);
    let (region, _) = provisioned_schema_tenant(&db, &row).await;
    let schema = row.schema.clone().expect("schema");
    let admin = db.admin().await;
    admin
        .batch_execute(&format!(
            "DROP TABLE \"{schema}\".sessions;
             DROP POLICY {POLICY_NAME} ON \"{schema}\".patients;
             ALTER TABLE \"{schema}\".encounters NO FORCE ROW LEVEL SECURITY;
             GRANT UPDATE, TRUNCATE ON \"{schema}\".audit_events TO {DATAPLANE_ROLE};"
        ))
        .await
        .expect("drift");
    let index: String = admin
        .query_one(
            "SELECT i.indexrelid::regclass::text FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = $1 AND c.relname = 'encounters' AND NOT i.indisunique LIMIT 1",
            &[&schema],
        )
        .await
        .expect("an index of the copy")
        .get(0);
    admin
        .batch_execute(&format!("DROP INDEX {index}"))
        .await
        .expect("drop an index");
    let work = converge_schema(&*region, &row.uid).await.expect("repair");
    assert!(work.rls_drift);
    let drift = work.drift.join("; ");
    assert!(
        drift.contains(&format!("table {schema}.sessions missing")),
        "{drift}"
    );
    assert!(
        drift.contains(&format!(
            "{schema}.patients: policy {POLICY_NAME} was missing"
        )),
        "{drift}"
    );
    assert!(
        drift.contains("row level security was not forced"),
        "{drift}"
    );
    let index_name = index.rsplit('.').next().unwrap_or(&index).to_owned();
    assert!(
        drift.contains(&format!("on {schema}.encounters missing")),
        "{index_name}: {drift}"
    );
    let indexes = |s: String| {
        let admin = &admin;
        async move {
            count(
                admin,
                "SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
                 JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname = $1 AND c.relname = 'encounters'",
                &[&s],
            )
            .await
        }
    };
    assert_eq!(
        indexes(schema.clone()).await,
        indexes("clinical".to_owned()).await,
        "the index is back"
    );
    assert!(
        drift.contains(&format!(
            "TRUNCATE, UPDATE on {schema}.audit_events for {DATAPLANE_ROLE} not desired"
        )),
        "{drift}"
    );
    let writable = count(
        &admin,
        &format!(
            "SELECT count(*) FROM pg_class c, aclexplode(c.relacl) a
             WHERE c.oid = '\"{schema}\".audit_events'::regclass
               AND a.grantee = '{DATAPLANE_ROLE}'::regrole AND a.privilege_type IN ('UPDATE', 'TRUNCATE')"
        ),
        &[],
    )
    .await;
    assert_eq!(writable, 0, "the audit trail's copy is append-only again");
    let forced = count(
        &admin,
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = $1 AND c.relkind = 'r' AND c.relforcerowsecurity
           AND EXISTS (SELECT 1 FROM pg_policies p WHERE p.schemaname = n.nspname AND p.tablename = c.relname)",
        &[&schema],
    )
    .await;
    assert_eq!(forced, tables().len() as i64);
    let again = converge_schema(&*region, &row.uid)
        .await
        .expect("third pass");
    assert_eq!(
        again.ddl,
        Vec::new(),
        "repaired for good: {:?}",
        again.drift
    );
}

#[tokio::test]
async fn what_a_later_migration_adds_to_clinical_tables_reaches_existing_tenant_schemas() {
    let roles = Roles::new();
    let db = TestDb::new("schema_migrate").await;
    let row = schema_tenant("zeta");
    roles.of_tenant(&row);
    let (region, id) = provisioned_schema_tenant(&db, &row).await;
    let schema = row.schema.clone().expect("schema");
    let admin = db.admin().await;
    admin
        .execute(
            &format!("INSERT INTO \"{schema}\".patients (tenant_id, family_name, resource) VALUES ($1, 'Doe', '{{}}')"),
            &[&id],
        )
        .await
        .expect("a row before the migration");
    // What a migration 00NN could do to a clinical table.
    admin
        .batch_execute(
            "ALTER TABLE clinical.patients ADD COLUMN family_lower text GENERATED ALWAYS AS (lower(family_name)) STORED;
             ALTER TABLE clinical.patients ADD COLUMN flagged boolean NOT NULL DEFAULT false;
             CREATE INDEX patients_lower_unflagged ON clinical.patients (tenant_id, family_lower) WHERE NOT flagged;
             ALTER TABLE clinical.patients ADD CONSTRAINT patients_family_lower_check CHECK (family_lower <> '');
             CREATE OR REPLACE FUNCTION clinical.audit_field(v text) RETURNS text
             LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT CASE WHEN v IS NULL THEN '~' ELSE octet_length(v)::text || ':' || v END $$;",
        )
        .await
        .expect("migrate clinical");
    let work = converge_schema(&*region, &row.uid)
        .await
        .expect("follow the migration");
    let drift = work.drift.join("; ");
    for what in [
        format!("column {schema}.patients.family_lower missing"),
        format!("column {schema}.patients.flagged missing"),
        format!("index patients_lower_unflagged on {schema}.patients missing"),
        format!("check patients_family_lower_check on {schema}.patients missing"),
        format!("function {schema}.audit_field differs from the clinical one"),
    ] {
        assert!(drift.contains(&what), "{what} not in {drift}");
    }
    let family: String = admin
        .query_one(
            &format!("SELECT family_lower FROM \"{schema}\".patients WHERE NOT flagged"),
            &[],
        )
        .await
        .expect("the new columns are there, computed for the old row")
        .get(0);
    assert_eq!(family, "doe");
    let field: String = admin
        .query_one(&format!("SELECT \"{schema}\".audit_field(NULL)"), &[])
        .await
        .expect("the copy's function")
        .get(0);
    assert_eq!(field, "~", "the replaced function reached the copy");
    let refused = admin
        .execute(
            &format!("INSERT INTO \"{schema}\".patients (tenant_id, family_name, resource) VALUES ($1, '', '{{}}')"),
            &[&id],
        )
        .await;
    assert!(refused.is_err(), "the new CHECK holds in the copy");
    let indexes = |s: &str| {
        let sql = format!(
            "SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = '{s}' AND c.relname = 'patients'"
        );
        let admin = &admin;
        async move { count(admin, &sql, &[]).await }
    };
    assert_eq!(indexes(&schema).await, indexes("clinical").await);
    let again = converge_schema(&*region, &row.uid).await.expect("again");
    assert_eq!(again.ddl, Vec::new(), "{:?}", again.drift);
}
