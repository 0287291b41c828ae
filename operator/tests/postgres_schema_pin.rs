//! A `Schema` tenant's copies of the clinical tables against a real PostgreSQL: no foreign
//! key to `catalog.tenants` (dropping a schema and deleting another tenant's catalog row
//! deadlocked on it), a CHECK pinning every row to the tenant's catalog id instead, and an
//! old copy (foreign keys to the catalog, no CHECK) converged with its drift reported.

mod support;

use phoenix_catalog::schemas::tenant_role;
use phoenix_operator::controller::region::apply::provision;
use phoenix_operator::controller::tenant::apply::converge_schema;
use support::TestDb;
use support::tenants::{Roles, schema_tenant};
use tokio_postgres::Client;

/// (table, constraint) of the foreign keys from `schema` to the catalog schema.
async fn catalog_fks(admin: &Client, schema: &str) -> Vec<(String, String)> {
    admin
        .query(
            "SELECT c.relname::text, con.conname::text FROM pg_constraint con
             JOIN pg_class c ON c.oid = con.conrelid JOIN pg_class f ON f.oid = con.confrelid
             WHERE con.contype = 'f' AND c.relnamespace = $1::text::regnamespace
               AND f.relnamespace = 'catalog'::regnamespace ORDER BY 1, 2",
            &[&schema],
        )
        .await
        .expect("foreign keys")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// (table, definition) of the pins (CHECKs named `…_pin`) of `schema`'s tables.
async fn pins(admin: &Client, schema: &str) -> Vec<(String, String)> {
    admin
        .query(
            "SELECT c.relname::text, pg_get_constraintdef(con.oid) FROM pg_constraint con
             JOIN pg_class c ON c.oid = con.conrelid
             WHERE con.contype = 'c' AND c.relnamespace = $1::text::regnamespace
               AND con.conname LIKE '%\\_pin' ORDER BY 1",
            &[&schema],
        )
        .await
        .expect("pins")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// The clinical tables whose `tenant_id` references `catalog.tenants`, with the foreign
/// key's name and definition.
async fn clinical_catalog_fks(admin: &Client) -> Vec<(String, String, String)> {
    admin
        .query(
            "SELECT c.relname::text, con.conname::text, pg_get_constraintdef(con.oid)
             FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid
             WHERE con.contype = 'f' AND c.relnamespace = 'clinical'::regnamespace
               AND con.confrelid = 'catalog.tenants'::regclass ORDER BY 1",
            &[],
        )
        .await
        .expect("clinical foreign keys")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

#[tokio::test]
async fn a_schema_tenant_has_no_foreign_key_to_the_catalog_and_a_check_pins_its_rows() {
    let row = schema_tenant("pin");
    let roles = Roles::new();
    roles.of_tenant(&row);
    let db = TestDb::new("schema_pin").await;
    let region = db.region();
    provision(&*region, None).await.expect("provision");
    let admin = db.admin().await;
    let schema = row.schema.clone().expect("schema");
    let clinical = clinical_catalog_fks(&admin).await;
    assert!(
        clinical.iter().any(|(t, _, _)| t == "patients"),
        "the template references the catalog: {clinical:?}"
    );

    // Before the catalog row exists there is no id to pin to: the plan says what to pin.
    let first = converge_schema(&*region, &row.uid).await.expect("schema");
    assert!(first.creates);
    assert_eq!(first.pending_pins.len(), clinical.len());
    assert_eq!(catalog_fks(&admin, &schema).await, Vec::new());
    let id = region.upsert_tenant(&row).await.expect("catalog row");
    let pinned = converge_schema(&*region, &row.uid).await.expect("pins");
    assert!(pinned.pending_pins.is_empty());
    let want: Vec<(String, String)> = clinical
        .iter()
        .map(|(t, _, _)| (t.clone(), format!("CHECK ((tenant_id = {id}))")))
        .collect();
    assert_eq!(pins(&admin, &schema).await, want);
    let again = converge_schema(&*region, &row.uid).await.expect("again");
    assert_eq!(again.ddl, Vec::new(), "{:?}", again.drift);

    // Even the superuser (who bypasses RLS) cannot put another tenant's row there.
    let other = id + 1000;
    let refused = admin
        .execute(
            &format!(
                "INSERT INTO \"{schema}\".patients (tenant_id, family_name, resource) VALUES ($1, 'X', '{{}}')"
            ),
            &[&other],
        )
        .await
        .expect_err("another tenant's id is refused");
    assert_eq!(
        refused.code(),
        Some(&tokio_postgres::error::SqlState::CHECK_VIOLATION),
        "{refused}"
    );
    admin
        .execute(
            &format!(
                "INSERT INTO \"{schema}\".patients (tenant_id, family_name, resource) VALUES ($1, 'Own', '{{}}')"
            ),
            &[&id],
        )
        .await
        .expect("the tenant's own id is accepted");

    // With no foreign key, the catalog row goes while the schema still exists (the
    // schema's drop and the row's delete no longer lock each other's tables).
    region
        .drop_tenant_schema(&schema, &tenant_role(&row.uid))
        .await
        .expect("drop schema");
    region.delete_tenant(&row.uid).await.expect("delete row");
}

#[tokio::test]
async fn an_old_copy_with_foreign_keys_to_the_catalog_converges_to_pins() {
    let row = schema_tenant("oldcopy");
    let roles = Roles::new();
    roles.of_tenant(&row);
    let db = TestDb::new("schema_pin_old").await;
    let region = db.region();
    provision(&*region, None).await.expect("provision");
    converge_schema(&*region, &row.uid).await.expect("schema");
    let id = region.upsert_tenant(&row).await.expect("catalog row");
    converge_schema(&*region, &row.uid).await.expect("pins");
    let admin = db.admin().await;
    let schema = row.schema.clone().expect("schema");
    admin
        .execute(
            &format!(
                "INSERT INTO \"{schema}\".patients (tenant_id, family_name, resource) VALUES ($1, 'Kept', '{{}}')"
            ),
            &[&id],
        )
        .await
        .expect("a row");

    // What the operator made before: the template's foreign keys to the catalog, no pins;
    // and one pin pinning another tenant.
    let clinical = clinical_catalog_fks(&admin).await;
    let mut old = String::new();
    for (table, name, def) in &clinical {
        old.push_str(&format!(
            "ALTER TABLE \"{schema}\".{table} DROP CONSTRAINT {table}_tenant_id_pin;
             ALTER TABLE \"{schema}\".{table} ADD CONSTRAINT {name} {def};"
        ));
    }
    old.push_str(&format!(
        "ALTER TABLE \"{schema}\".patients ADD CONSTRAINT patients_tenant_id_pin CHECK (tenant_id = {}) NOT VALID;",
        id + 1
    ));
    admin.batch_execute(&old).await.expect("an old copy");
    assert_eq!(catalog_fks(&admin, &schema).await.len(), clinical.len());

    let work = converge_schema(&*region, &row.uid).await.expect("converge");
    let drift = work.drift.join("; ");
    assert!(
        drift.contains(&format!(
            "foreign key patients_tenant_id_fkey on {schema}.patients references the catalog"
        )),
        "{drift}"
    );
    assert!(
        drift.contains(&format!(
            "check sessions_tenant_id_pin pinning {schema}.sessions to tenant {id} missing"
        )),
        "{drift}"
    );
    assert!(
        drift.contains(&format!(
            "check patients_tenant_id_pin on {schema}.patients is CHECK ((tenant_id = {})) NOT VALID",
            id + 1
        )),
        "{drift}"
    );
    assert_eq!(catalog_fks(&admin, &schema).await, Vec::new());
    let want: Vec<(String, String)> = clinical
        .iter()
        .map(|(t, _, _)| (t.clone(), format!("CHECK ((tenant_id = {id}))")))
        .collect();
    assert_eq!(pins(&admin, &schema).await, want);
    let kept: i64 = admin
        .query_one(&format!("SELECT count(*) FROM \"{schema}\".patients"), &[])
        .await
        .expect("rows")
        .get(0);
    assert_eq!(kept, 1, "the tenant's rows are kept");
    let again = converge_schema(&*region, &row.uid).await.expect("again");
    assert_eq!(again.ddl, Vec::new(), "{:?}", again.drift);
}
