//! Versioned schema migrations of a region database (catalog + shared clinical schema).
//! The operator applies them; the data plane reads what they create.

use sha2::{Digest, Sha256};

/// One migration.
#[derive(Clone, Copy, Debug)]
pub struct Migration {
    /// Monotonic version.
    pub version: i32,
    /// Short name.
    pub name: &'static str,
    /// The SQL, run in one transaction.
    pub sql: &'static str,
}

impl Migration {
    /// SHA-256 of the SQL, recorded so that an edited, already-applied migration is caught.
    pub fn checksum(&self) -> String {
        hex::encode(Sha256::digest(self.sql.as_bytes()))
    }
}

/// Every migration, in order.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "catalog",
        sql: include_str!("../migrations/0001_catalog.sql"),
    },
    Migration {
        version: 2,
        name: "clinical",
        sql: include_str!("../migrations/0002_clinical.sql"),
    },
    Migration {
        version: 3,
        name: "sso",
        sql: include_str!("../migrations/0003_sso.sql"),
    },
    Migration {
        version: 4,
        name: "scim_tokens",
        sql: include_str!("../migrations/0004_scim_tokens.sql"),
    },
    // 0005 is SCIM provisioning, built on another branch; versions may have gaps, since
    // the operator applies every migration its ledger lacks, not only newer ones.
    Migration {
        version: 6,
        name: "sessions",
        sql: include_str!("../migrations/0006_sessions.sql"),
    },
];

/// The version a fully migrated database has.
pub fn latest_version() -> i32 {
    MIGRATIONS.iter().map(|m| m.version).max().unwrap_or(0)
}

/// The migrations after `version`, in order.
pub fn pending(version: i32) -> impl Iterator<Item = &'static Migration> {
    MIGRATIONS.iter().filter(move |m| m.version > version)
}

/// Ledger of applied migrations; its own schema so it exists before the first migration.
pub const LEDGER_SQL: &str = "CREATE SCHEMA IF NOT EXISTS phoenix_meta;
CREATE TABLE IF NOT EXISTS phoenix_meta.schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)";

/// Advisory lock key serialising migrations across operator replicas ("phoenix!").
pub const MIGRATION_LOCK: i64 = 0x7068_6f65_6e69_7821;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_strictly_increasing_from_one() {
        assert_eq!(MIGRATIONS[0].version, 1);
        for pair in MIGRATIONS.windows(2) {
            assert!(
                pair[0].version < pair[1].version,
                "{} must come before {}",
                pair[0].name,
                pair[1].name
            );
        }
        assert_eq!(latest_version(), MIGRATIONS.last().map_or(0, |m| m.version));
        assert_eq!(pending(0).count(), MIGRATIONS.len());
        assert_eq!(pending(latest_version()).count(), 0);
    }

    // Every migration's text, with the clinical tables it creates.
    fn all_sql() -> String {
        MIGRATIONS
            .iter()
            .map(|m| m.sql)
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn every_clinical_table_carries_tenant_id_first_in_its_key() {
        let sql = all_sql();
        for table in crate::rls::TENANT_TABLES {
            let short = table.trim_start_matches("clinical.");
            let start = sql
                .find(&format!("CREATE TABLE {table} ("))
                .unwrap_or_else(|| panic!("{table} missing"));
            let body = &sql[start..];
            let end = body.find(");").unwrap_or(body.len());
            let body = &body[..end];
            assert!(body.contains("tenant_id "), "{short} has no tenant_id");
            assert!(
                body.contains("PRIMARY KEY (tenant_id, "),
                "{short} key does not lead with tenant_id"
            );
        }
        for line in sql
            .lines()
            .filter(|l| l.starts_with("CREATE INDEX") && l.contains(" ON clinical."))
        {
            assert!(
                line.contains("(tenant_id,"),
                "index does not lead with tenant_id: {line}"
            );
        }
    }

    #[test]
    fn every_clinical_table_created_is_a_tenant_table() {
        let sql = all_sql();
        for line in sql
            .lines()
            .filter(|l| l.starts_with("CREATE TABLE clinical."))
        {
            let name = line
                .trim_start_matches("CREATE TABLE ")
                .split_whitespace()
                .next()
                .unwrap_or_default();
            assert!(
                crate::rls::TENANT_TABLES.contains(&name),
                "{name} is not in TENANT_TABLES, so it would not be under RLS"
            );
        }
    }

    #[test]
    fn the_enums_string_forms_are_the_ones_the_schema_accepts() {
        let catalog = MIGRATIONS[0].sql;
        let isolation: Vec<String> = crate::Isolation::ALL
            .iter()
            .map(|i| format!("'{}'", i.as_str()))
            .collect();
        assert!(
            catalog.contains(&format!("isolation IN ({})", isolation.join(", "))),
            "the isolation CHECK differs from Isolation::ALL"
        );
        let states: Vec<String> = crate::TenantState::ALL
            .iter()
            .map(|s| format!("'{}'", s.as_str()))
            .collect();
        assert!(
            catalog.contains(&format!("state IN ({})", states.join(", "))),
            "the state CHECK differs from TenantState::ALL"
        );
        assert!(catalog.contains(&format!("pg_notify('{}'", crate::NOTIFY_CHANNEL)));
        let sso = MIGRATIONS[2].sql;
        assert!(sso.contains(&format!("pg_notify('{}'", crate::NOTIFY_CHANNEL)));
        let protocols: Vec<String> = crate::sso::Protocol::ALL
            .iter()
            .map(|p| format!("'{}'", p.as_str()))
            .collect();
        assert!(
            sso.contains(&format!("protocol IN ({})", protocols.join(", "))),
            "the protocol CHECK differs from Protocol::ALL"
        );
    }
}
