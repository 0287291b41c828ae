//! Row-level security of the shared clinical tables: the SQL that enforces it, the
//! inspection that detects drift, and the repair. Decisions are pure and unit-tested; the
//! queries live in [`super::observe`].

pub use phoenix_catalog::rls::{POLICY_NAME, TENANT_SETTING, TENANT_TABLES, tenant_predicate};

/// Statements that make `table` enforce tenant isolation, from any prior state.
pub fn enforce_sql(table: &str) -> Vec<String> {
    let predicate = tenant_predicate();
    vec![
        format!("ALTER TABLE {table} ENABLE ROW LEVEL SECURITY"),
        format!("ALTER TABLE {table} FORCE ROW LEVEL SECURITY"),
        format!("DROP POLICY IF EXISTS {POLICY_NAME} ON {table}"),
        format!(
            "CREATE POLICY {POLICY_NAME} ON {table} AS PERMISSIVE FOR ALL TO PUBLIC USING ({predicate}) WITH CHECK ({predicate})"
        ),
    ]
}

/// One policy as `pg_policies` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyState {
    /// Policy name.
    pub name: String,
    /// Whether it is PERMISSIVE (OR-ed with others) rather than RESTRICTIVE.
    pub permissive: bool,
    /// `ALL`, `SELECT`, ...
    pub command: String,
    /// Roles it applies to.
    pub roles: Vec<String>,
    /// Deparsed USING expression.
    pub using: Option<String>,
    /// Deparsed WITH CHECK expression.
    pub with_check: Option<String>,
}

/// The RLS state of one table as the catalog shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableState {
    /// Schema-qualified table name.
    pub table: String,
    /// `relrowsecurity`.
    pub enabled: bool,
    /// `relforcerowsecurity`.
    pub forced: bool,
    /// Every policy on the table.
    pub policies: Vec<PolicyState>,
}

/// A way a table's RLS differs from what isolation needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Drift {
    /// `ROW LEVEL SECURITY` is disabled.
    Disabled,
    /// It is not forced, so the table owner bypasses it.
    NotForced,
    /// The isolation policy is missing.
    PolicyMissing,
    /// The isolation policy exists but says something else.
    PolicyAltered,
    /// Another permissive policy would widen what a tenant sees.
    ForeignPermissivePolicy(String),
}

impl std::fmt::Display for Drift {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Drift::Disabled => write!(f, "row level security was disabled"),
            Drift::NotForced => write!(f, "row level security was not forced"),
            Drift::PolicyMissing => write!(f, "policy {POLICY_NAME} was missing"),
            Drift::PolicyAltered => write!(f, "policy {POLICY_NAME} was altered"),
            Drift::ForeignPermissivePolicy(name) => {
                write!(f, "permissive policy {name} widened access")
            }
        }
    }
}

/// Canonical form of a deparsed expression, so that formatting differences do not count.
fn canonical(expr: &str) -> String {
    expr.chars()
        .filter(|c| !c.is_whitespace() && *c != '(' && *c != ')')
        .collect::<String>()
        .to_lowercase()
}

/// The predicate as PostgreSQL deparses it, in canonical form.
fn expected_deparsed() -> String {
    canonical(&format!(
        "tenant_id = NULLIF(current_setting('{TENANT_SETTING}'::text, true), ''::text)::bigint"
    ))
}

/// What is wrong with `state`; empty when the table isolates tenants.
pub fn drift(state: &TableState) -> Vec<Drift> {
    let mut out = Vec::new();
    if !state.enabled {
        out.push(Drift::Disabled);
    }
    if !state.forced {
        out.push(Drift::NotForced);
    }
    let expected = expected_deparsed();
    match state.policies.iter().find(|p| p.name == POLICY_NAME) {
        None => out.push(Drift::PolicyMissing),
        Some(p) => {
            let ok = p.permissive
                && p.command.eq_ignore_ascii_case("ALL")
                && p.roles == ["public"]
                && p.using.as_deref().map(canonical) == Some(expected.clone())
                && p.with_check.as_deref().map(canonical) == Some(expected.clone());
            if !ok {
                out.push(Drift::PolicyAltered);
            }
        }
    }
    for p in state
        .policies
        .iter()
        .filter(|p| p.name != POLICY_NAME && p.permissive)
    {
        out.push(Drift::ForeignPermissivePolicy(p.name.clone()));
    }
    out
}

/// Statements that repair `drifts` on `table`.
pub fn repair_sql(table: &str, drifts: &[Drift]) -> Vec<String> {
    let mut out = Vec::new();
    for d in drifts {
        if let Drift::ForeignPermissivePolicy(name) = d {
            out.push(format!(
                "DROP POLICY IF EXISTS {} ON {table}",
                quote_ident(name)
            ));
        }
    }
    if drifts
        .iter()
        .any(|d| !matches!(d, Drift::ForeignPermissivePolicy(_)))
    {
        out.extend(enforce_sql(table));
    }
    out
}

/// RLS changes for the tenant tables: each table whose state drifted, or that is not
/// observed because it is about to be created, with what was wrong.
pub fn rls_changes(observed: &[TableState]) -> Vec<(super::roles::Ddl, Vec<Drift>)> {
    let mut out = Vec::new();
    for table in TENANT_TABLES {
        let (drifts, summary) = match observed.iter().find(|s| s.table == table) {
            Some(state) => {
                let drifts = drift(state);
                let what = drifts.iter().map(ToString::to_string).collect::<Vec<_>>();
                (drifts, format!("repair {table}: {}", what.join(", ")))
            }
            None => (
                vec![Drift::Disabled, Drift::NotForced, Drift::PolicyMissing],
                format!("enable and force row level security on {table} with policy {POLICY_NAME}"),
            ),
        };
        if drifts.is_empty() {
            continue;
        }
        out.push((
            super::roles::Ddl {
                kind: super::roles::DdlKind::Rls,
                target: format!("table {table}"),
                summary,
                sql: repair_sql(table, &drifts),
            },
            drifts,
        ));
    }
    out
}

/// Quotes an SQL identifier.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn healthy(table: &str) -> TableState {
        let deparsed = "(tenant_id = (NULLIF(current_setting('app.tenant_id'::text, true), ''::text))::bigint)".to_owned();
        TableState {
            table: table.to_owned(),
            enabled: true,
            forced: true,
            policies: vec![PolicyState {
                name: POLICY_NAME.to_owned(),
                permissive: true,
                command: "ALL".to_owned(),
                roles: vec!["public".to_owned()],
                using: Some(deparsed.clone()),
                with_check: Some(deparsed),
            }],
        }
    }

    #[test]
    fn enforce_sql_enables_forces_and_recreates_the_policy_with_check() {
        let sql = enforce_sql("clinical.patients");
        assert_eq!(
            sql[0],
            "ALTER TABLE clinical.patients ENABLE ROW LEVEL SECURITY"
        );
        assert_eq!(
            sql[1],
            "ALTER TABLE clinical.patients FORCE ROW LEVEL SECURITY"
        );
        assert!(sql[3].starts_with("CREATE POLICY phoenix_tenant_isolation ON clinical.patients AS PERMISSIVE FOR ALL TO PUBLIC USING (tenant_id"));
        assert!(sql[3].contains(
            "WITH CHECK (tenant_id = nullif(current_setting('app.tenant_id', true), '')::bigint)"
        ));
    }

    #[test]
    fn healthy_table_has_no_drift() {
        assert!(drift(&healthy("clinical.patients")).is_empty());
    }

    #[test]
    fn disabled_and_unforced_rls_is_drift() {
        let mut s = healthy("t");
        s.enabled = false;
        s.forced = false;
        assert_eq!(drift(&s), vec![Drift::Disabled, Drift::NotForced]);
    }

    #[test]
    fn altered_or_missing_policy_is_drift() {
        let mut s = healthy("t");
        s.policies[0].using = Some("true".to_owned());
        assert_eq!(drift(&s), vec![Drift::PolicyAltered]);
        s.policies.clear();
        assert_eq!(drift(&s), vec![Drift::PolicyMissing]);
    }

    #[test]
    fn policy_limited_to_select_is_drift() {
        let mut s = healthy("t");
        s.policies[0].command = "SELECT".to_owned();
        assert_eq!(drift(&s), vec![Drift::PolicyAltered]);
    }

    #[test]
    fn foreign_permissive_policy_is_dropped_but_restrictive_ones_are_kept() {
        let mut s = healthy("clinical.patients");
        let mut open = s.policies[0].clone();
        open.name = "Open Door".to_owned();
        let mut narrowing = open.clone();
        narrowing.name = "audit_only".to_owned();
        narrowing.permissive = false;
        s.policies.push(open);
        s.policies.push(narrowing);
        let d = drift(&s);
        assert_eq!(
            d,
            vec![Drift::ForeignPermissivePolicy("Open Door".to_owned())]
        );
        assert_eq!(
            repair_sql("clinical.patients", &d),
            vec!["DROP POLICY IF EXISTS \"Open Door\" ON clinical.patients".to_owned()]
        );
    }

    #[test]
    fn repair_of_a_disabled_table_reenables_everything() {
        let sql = repair_sql("clinical.encounters", &[Drift::Disabled]);
        assert_eq!(sql, enforce_sql("clinical.encounters"));
    }
}
