//! Row-level security of the shared clinical tables as both sides see it: the setting the
//! data plane sets per transaction and the predicate the operator's policy enforces on it.

/// The setting the data plane sets per transaction (`set_config(.., true)`); the policy
/// reads it.
pub const TENANT_SETTING: &str = "app.tenant_id";

/// Name of the isolation policy on every tenant table.
pub const POLICY_NAME: &str = "phoenix_tenant_isolation";

/// Tables that hold tenants' rows and must be under forced RLS.
pub const TENANT_TABLES: [&str; 12] = [
    "clinical.patients",
    "clinical.patient_identifiers",
    "clinical.encounters",
    "clinical.document_references",
    "clinical.medication_requests",
    "clinical.scim_users",
    "clinical.scim_groups",
    "clinical.scim_group_members",
    "clinical.login_attempts",
    "clinical.sessions",
    "clinical.fhir_history",
    "clinical.audit_events",
];

/// Tenant tables the data plane may only append to and read (no UPDATE, DELETE or
/// TRUNCATE is granted; a trigger refuses them as well): the audit trail.
pub const APPEND_ONLY_TABLES: [&str; 1] = ["clinical.audit_events"];

/// Tables holding tenants' rows, children first, so that foreign keys hold while deleting.
pub const DELETE_ORDER: [&str; 12] = [
    "clinical.audit_events",
    "clinical.fhir_history",
    "clinical.sessions",
    "clinical.login_attempts",
    "clinical.scim_group_members",
    "clinical.scim_groups",
    "clinical.scim_users",
    "clinical.medication_requests",
    "clinical.document_references",
    "clinical.encounters",
    "clinical.patient_identifiers",
    "clinical.patients",
];

/// The predicate of the policy. `current_setting(.., true)` is NULL on a connection that
/// never set it but the empty string on a pooled connection after a transaction that set it
/// locally; `nullif` makes both mean "no tenant", so nothing is visible (TESTBED.md).
pub fn tenant_predicate() -> String {
    format!("tenant_id = nullif(current_setting('{TENANT_SETTING}', true), '')::bigint")
}

/// The statement that sets the tenant for the current transaction only; `$1` is the
/// tenant's catalog id as text. It also sets `search_path`, locally, to where the catalog
/// says the tenant's rows live (its own schema, isolation `Schema`; else `clinical`), so
/// the same unqualified SQL reaches either (ADR 0009). The name is read from the catalog
/// in the same statement (never stale), was checked there by a CHECK constraint, and is
/// quoted; a tenant without a row gets `clinical`, where forced RLS shows it nothing.
pub const SET_TENANT_SQL: &str = "SELECT set_config('app.tenant_id', $1, true), \
     set_config('search_path', coalesce((SELECT quote_ident(t.schema_name) FROM catalog.tenants t \
     WHERE t.id = $1::bigint), 'clinical'), true)";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn predicate_treats_empty_setting_as_unset() {
        assert_eq!(
            tenant_predicate(),
            "tenant_id = nullif(current_setting('app.tenant_id', true), '')::bigint"
        );
    }

    #[test]
    fn the_set_statement_sets_the_setting_the_policy_reads_locally() {
        assert!(SET_TENANT_SQL.contains(&format!("'{TENANT_SETTING}'")));
        assert!(
            SET_TENANT_SQL.ends_with("true)"),
            "must be transaction-local"
        );
        assert!(SET_TENANT_SQL.contains("set_config('search_path'"));
        assert!(SET_TENANT_SQL.contains(crate::schemas::SHARED_SCHEMA));
    }

    #[test]
    fn delete_order_covers_every_tenant_table() {
        let mut a = TENANT_TABLES.to_vec();
        let mut b = DELETE_ORDER.to_vec();
        a.sort_unstable();
        b.sort_unstable();
        assert_eq!(a, b);
    }

    #[test]
    fn append_only_tables_are_tenant_tables() {
        for table in APPEND_ONLY_TABLES {
            assert!(TENANT_TABLES.contains(&table), "{table}");
        }
    }
}
