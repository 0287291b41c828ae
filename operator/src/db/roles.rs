//! Roles of a region database: the owner of the clinical tables and the data plane's login
//! role, which owns nothing and never bypasses row-level security.

/// Owns the clinical tables; cannot log in.
pub const OWNER_ROLE: &str = "phoenix_owner";

/// The data plane's login role.
pub const DATAPLANE_ROLE: &str = "phoenix_dataplane";

/// Creates the roles if missing (tolerating a concurrent creator) and resets their
/// attributes, so that a role someone granted BYPASSRLS or SUPERUSER is repaired.
pub fn ensure_roles_sql() -> String {
    format!(
        "DO $$
BEGIN
    BEGIN
        CREATE ROLE {OWNER_ROLE} NOLOGIN;
    EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
    END;
    BEGIN
        CREATE ROLE {DATAPLANE_ROLE} LOGIN;
    EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
    END;
END
$$;
ALTER ROLE {OWNER_ROLE} NOSUPERUSER NOBYPASSRLS NOLOGIN NOCREATEDB NOCREATEROLE;
ALTER ROLE {DATAPLANE_ROLE} NOSUPERUSER NOBYPASSRLS LOGIN NOCREATEDB NOCREATEROLE NOINHERIT;"
    )
}

/// Ownership and grants inside one database. Ownership is changed only where it differs:
/// `ALTER .. OWNER` takes an ACCESS EXCLUSIVE lock even when nothing changes, which would
/// stall clinical traffic on every reconcile.
pub fn grants_sql(tables: &[&str]) -> String {
    let list = tables
        .iter()
        .map(|t| format!("'{t}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut sql = format!(
        "DO $$
DECLARE t text;
BEGIN
    IF (SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = 'clinical') <> '{OWNER_ROLE}' THEN
        ALTER SCHEMA clinical OWNER TO {OWNER_ROLE};
    END IF;
    FOREACH t IN ARRAY ARRAY[{list}] LOOP
        IF (SELECT relowner::regrole::text FROM pg_class WHERE oid = t::regclass) <> '{OWNER_ROLE}' THEN
            EXECUTE format('ALTER TABLE %s OWNER TO {OWNER_ROLE}', t);
        END IF;
    END LOOP;
END
$$;
GRANT USAGE ON SCHEMA catalog, clinical TO {DATAPLANE_ROLE};
GRANT SELECT ON catalog.tenants TO {DATAPLANE_ROLE};
REVOKE CREATE ON SCHEMA clinical, catalog FROM PUBLIC;
GRANT USAGE ON SCHEMA catalog TO {OWNER_ROLE};
GRANT SELECT, REFERENCES ON catalog.tenants TO {OWNER_ROLE};\n"
    );
    for table in tables {
        sql.push_str(&format!(
            "GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO {DATAPLANE_ROLE};\n"
        ));
    }
    sql
}

/// `ALTER ROLE .. PASSWORD` for a generated password (utility statements take no parameters).
pub fn set_password_sql(password: &str) -> String {
    format!(
        "ALTER ROLE {DATAPLANE_ROLE} PASSWORD '{}'",
        password.replace('\'', "''")
    )
}
