//! Reading a tenant's schema and the clinical template it is copied from; and dropping it.
//! Reads run in one read-only transaction under `search_path = pg_catalog`, so every name
//! the server deparses (foreign keys, triggers, functions) comes schema-qualified.

use phoenix_catalog::schemas::SHARED_SCHEMA;
use tokio_postgres::{Client, Transaction};

use super::owned::OWNED_MARKER;
use super::rls::quote_ident;
use super::tenant_schema::{Column, Defined, SchemaSeen, Template, index_key, is_dataplane};
use super::{DbError, col};

const TABLES: &str = "SELECT c.relname::text, c.relowner::regrole::text
     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = $1 AND c.relkind IN ('r', 'p')";

const CONSTRAINTS: &str = "SELECT c.relname::text, con.conname::text, pg_get_constraintdef(con.oid)
     FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid
     JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = $1 AND con.contype::text = ANY($2) ORDER BY 1, 2";

const CATALOG_FKS: &str = "SELECT c.relname::text, con.conname::text
     FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid
     JOIN pg_namespace n ON n.oid = c.relnamespace
     JOIN pg_class f ON f.oid = con.confrelid
     JOIN pg_namespace fn ON fn.oid = f.relnamespace
     WHERE n.nspname = $1 AND con.contype = 'f' AND fn.nspname = 'catalog'
     ORDER BY 1, 2";

const COLUMNS: &str =
    "SELECT c.relname::text, a.attname::text, format_type(a.atttypid, a.atttypmod),
            a.attnotnull, pg_get_expr(d.adbin, d.adrelid), a.attgenerated = 's'
     FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
     JOIN pg_namespace n ON n.oid = c.relnamespace
     LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
     WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped
     ORDER BY 1, a.attnum";

const INDEXES: &str = "SELECT c.relname::text, i.relname::text, pg_get_indexdef(x.indexrelid)
     FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class c ON c.oid = x.indrelid
     JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') ORDER BY 1, 2";

const TRIGGERS: &str = "SELECT c.relname::text, t.tgname::text, pg_get_triggerdef(t.oid)
     FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
     JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = $1 AND NOT t.tgisinternal ORDER BY 1, 2";

const FUNCTIONS: &str = "SELECT p.proname::text, pg_get_functiondef(p.oid)
     FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
     WHERE n.nspname = $1 AND p.prokind = 'f' ORDER BY p.oid";

const TABLE_GRANTS: &str = "SELECT c.relname::text, a.grantee::regrole::text, a.privilege_type
     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace,
          aclexplode(c.relacl) a
     WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND a.grantee <> 0 AND a.grantee <> c.relowner
     UNION ALL
     SELECT 'schema', a.grantee::regrole::text, a.privilege_type
     FROM pg_namespace n, aclexplode(n.nspacl) a
     WHERE n.nspname = $1 AND a.grantee <> 0 AND a.grantee <> n.nspowner";

const RLS: &str = "SELECT n.nspname || '.' || c.relname, c.relrowsecurity, c.relforcerowsecurity
     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = $1 AND c.relkind IN ('r', 'p')";

const POLICIES: &str =
    "SELECT schemaname || '.' || tablename, policyname::text, permissive = 'PERMISSIVE',
            cmd, roles::text[], qual, with_check
     FROM pg_policies WHERE schemaname = $1 ORDER BY policyname";

async fn rows(
    tx: &tokio_postgres::Transaction<'_>,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    what: &'static str,
) -> Result<Vec<tokio_postgres::Row>, DbError> {
    tx.query(sql, params).await.map_err(DbError::query(what))
}

fn defined(rows: &[tokio_postgres::Row]) -> Result<Vec<Defined>, DbError> {
    rows.iter()
        .map(|r| {
            Ok(Defined {
                table: col(r, 0)?,
                name: col(r, 1)?,
                def: col(r, 2)?,
            })
        })
        .collect()
}

/// The tenant's `schema` and `role` as the server holds them, with the clinical template.
pub async fn seen(client: &mut Client, schema: &str, role: &str) -> Result<SchemaSeen, DbError> {
    let e = DbError::query;
    let tx = client
        .build_transaction()
        .read_only(true)
        .start()
        .await
        .map_err(e("reading the tenant's schema"))?;
    tx.batch_execute("SET LOCAL search_path = pg_catalog")
        .await
        .map_err(e("reading the tenant's schema"))?;
    let fk = vec!["f".to_owned()];
    let any = vec![
        "f".to_owned(),
        "p".to_owned(),
        "u".to_owned(),
        "c".to_owned(),
    ];
    let shared = SHARED_SCHEMA;
    let mut template = Template::default();
    for r in rows(&tx, TABLES, &[&shared], "reading the clinical tables").await? {
        template.tables.insert(col(&r, 0)?);
    }
    template.foreign_keys = defined(
        &rows(
            &tx,
            CONSTRAINTS,
            &[&shared, &fk],
            "reading the clinical foreign keys",
        )
        .await?,
    )?;
    let check = vec!["c".to_owned()];
    template.checks = defined(
        &rows(
            &tx,
            CONSTRAINTS,
            &[&shared, &check],
            "reading the clinical checks",
        )
        .await?,
    )?;
    template.indexes =
        defined(&rows(&tx, INDEXES, &[&shared], "reading the clinical indexes").await?)?;
    for r in rows(&tx, COLUMNS, &[&shared], "reading the clinical columns").await? {
        template.columns.push(Column {
            table: col(&r, 0)?,
            name: col(&r, 1)?,
            type_: col(&r, 2)?,
            not_null: col(&r, 3)?,
            default: col(&r, 4)?,
            generated: col(&r, 5)?,
        });
    }
    template.triggers =
        defined(&rows(&tx, TRIGGERS, &[&shared], "reading the clinical triggers").await?)?;
    for r in rows(&tx, FUNCTIONS, &[&shared], "reading the clinical functions").await? {
        template.functions.push(Defined {
            table: String::new(),
            name: col(&r, 0)?,
            def: col(&r, 1)?,
        });
    }
    for r in rows(&tx, TABLE_GRANTS, &[&shared], "reading the clinical grants").await? {
        let (object, grantee, privilege): (String, String, String) =
            (col(&r, 0)?, col(&r, 1)?, col(&r, 2)?);
        if object != "schema" && is_dataplane(&grantee) {
            template.grants.insert((object, grantee, privilege));
        }
    }

    let mut seen = SchemaSeen {
        template,
        ..SchemaSeen::default()
    };
    let marked = rows(&tx, "SELECT coalesce(shobj_description(oid, 'pg_authid') = $2, false) FROM pg_roles WHERE rolname = $1", &[&role, &OWNED_MARKER], "reading the tenant's role")
    .await?;
    seen.role = marked.first().map(|r| col(r, 0)).transpose()?;
    let acts = rows(
        &tx,
        "SELECT r.rolsuper OR EXISTS (SELECT 1 FROM pg_auth_members m JOIN pg_roles t ON t.oid = m.roleid
                                      WHERE t.rolname = $1 AND m.member = r.oid)
         FROM pg_roles r WHERE r.rolname = current_user",
        &[&role],
        "reading what the operator's login may do",
    )
    .await?;
    seen.login_acts_for_role = acts
        .first()
        .map(|r| col(r, 0))
        .transpose()?
        .unwrap_or(false);
    let owner = rows(
        &tx,
        "SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = $1",
        &[&schema],
        "reading the tenant's schema",
    )
    .await?;
    seen.schema_owner = owner.first().map(|r| col(r, 0)).transpose()?;
    if seen.schema_owner.is_none() {
        return Ok(seen);
    }
    let id = rows(
        &tx,
        "SELECT id FROM catalog.tenants WHERE schema_name = $1",
        &[&schema],
        "reading the tenant's catalog id",
    )
    .await?;
    seen.tenant_id = id.first().map(|r| col(r, 0)).transpose()?;
    for r in rows(
        &tx,
        CATALOG_FKS,
        &[&schema],
        "reading the tenant's catalog foreign keys",
    )
    .await?
    {
        seen.catalog_fks.push((col(&r, 0)?, col(&r, 1)?));
    }
    for r in rows(
        &tx,
        CONSTRAINTS,
        &[&schema, &check],
        "reading the tenant's checks",
    )
    .await?
    {
        seen.check_defs
            .insert((col(&r, 0)?, col(&r, 1)?), col(&r, 2)?);
    }
    for r in rows(&tx, TABLES, &[&schema], "reading the tenant's tables").await? {
        seen.tables.insert(col(&r, 0)?, col(&r, 1)?);
    }
    for r in rows(
        &tx,
        CONSTRAINTS,
        &[&schema, &any],
        "reading the tenant's constraints",
    )
    .await?
    {
        seen.constraints.insert((col(&r, 0)?, col(&r, 1)?));
    }
    for r in rows(&tx, COLUMNS, &[&schema], "reading the tenant's columns").await? {
        seen.columns.insert((col(&r, 0)?, col(&r, 1)?));
    }
    for r in rows(&tx, INDEXES, &[&schema], "reading the tenant's indexes").await? {
        let def: String = col(&r, 2)?;
        if let Some(key) = index_key(&def, schema) {
            seen.indexes.insert(key);
        }
    }
    for r in rows(&tx, TRIGGERS, &[&schema], "reading the tenant's triggers").await? {
        seen.triggers.insert((col(&r, 0)?, col(&r, 1)?));
    }
    for r in rows(&tx, FUNCTIONS, &[&schema], "reading the tenant's functions").await? {
        seen.functions.insert(col(&r, 0)?, col(&r, 1)?);
    }
    for r in rows(&tx, TABLE_GRANTS, &[&schema], "reading the tenant's grants").await? {
        seen.grants.insert((col(&r, 0)?, col(&r, 1)?, col(&r, 2)?));
    }
    let mut policies: std::collections::BTreeMap<String, Vec<super::rls::PolicyState>> =
        Default::default();
    for r in rows(&tx, POLICIES, &[&schema], "reading the tenant's policies").await? {
        policies
            .entry(col(&r, 0)?)
            .or_default()
            .push(super::rls::PolicyState {
                name: col(&r, 1)?,
                permissive: col(&r, 2)?,
                command: col(&r, 3)?,
                roles: col(&r, 4)?,
                using: col(&r, 5)?,
                with_check: col(&r, 6)?,
            });
    }
    for r in rows(
        &tx,
        RLS,
        &[&schema],
        "reading the tenant's row level security",
    )
    .await?
    {
        let table: String = col(&r, 0)?;
        seen.rls.push(super::rls::TableState {
            policies: policies.remove(&table).unwrap_or_default(),
            table,
            enabled: col(&r, 1)?,
            forced: col(&r, 2)?,
        });
    }
    seen.rls.sort_by(|a, b| a.table.cmp(&b.table));
    tx.commit()
        .await
        .map_err(e("reading the tenant's schema"))?;
    Ok(seen)
}

/// What dropping a tenant's schema did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Dropped {
    /// The schema existed and was dropped with everything in it.
    pub schema: bool,
    /// The role existed, was the operator's, and was dropped.
    pub role: bool,
}

/// Drops `schema` with everything in it, then `role` if the operator owns it (marked), in
/// one transaction. A role it does not own is never dropped.
pub async fn drop(client: &mut Client, schema: &str, role: &str) -> Result<Dropped, DbError> {
    let e = DbError::query;
    let tx = client
        .transaction()
        .await
        .map_err(e("starting to drop the tenant's schema"))?;
    let dropped = drop_in(&tx, schema, role).await?;
    tx.commit()
        .await
        .map_err(e("dropping the tenant's schema"))?;
    Ok(dropped)
}

/// [`drop`] inside the caller's transaction (a snapshot's deletion re-checks the rows and
/// deletes the catalog row in the same one).
pub async fn drop_in(tx: &Transaction<'_>, schema: &str, role: &str) -> Result<Dropped, DbError> {
    let e = DbError::query;
    let exists = tx
        .query_opt("SELECT 1 FROM pg_namespace WHERE nspname = $1", &[&schema])
        .await
        .map_err(e("reading the tenant's schema"))?
        .is_some();
    if exists {
        tx.batch_execute(&format!("DROP SCHEMA {} CASCADE", quote_ident(schema)))
            .await
            .map_err(e("dropping the tenant's schema"))?;
    }
    let owned = tx
        .query_opt(
            "SELECT 1 FROM pg_roles WHERE rolname = $1 AND shobj_description(oid, 'pg_authid') = $2",
            &[&role, &OWNED_MARKER],
        )
        .await
        .map_err(e("reading the tenant's role"))?
        .is_some();
    if owned {
        tx.batch_execute(&format!("DROP ROLE {}", quote_ident(role)))
            .await
            .map_err(e("dropping the tenant's role"))?;
    }
    Ok(Dropped {
        schema: exists,
        role: owned,
    })
}
