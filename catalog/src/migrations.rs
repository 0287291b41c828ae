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
    Migration {
        version: 5,
        name: "scim",
        sql: include_str!("../migrations/0005_scim.sql"),
    },
    Migration {
        version: 6,
        name: "sessions",
        sql: include_str!("../migrations/0006_sessions.sql"),
    },
    Migration {
        version: 7,
        name: "fhir_history",
        sql: include_str!("../migrations/0007_fhir_history.sql"),
    },
    Migration {
        version: 8,
        name: "readers",
        sql: include_str!("../migrations/0008_readers.sql"),
    },
    Migration {
        version: 9,
        name: "fhir_clinical_search",
        sql: include_str!("../migrations/0009_fhir_clinical_search.sql"),
    },
    Migration {
        version: 10,
        name: "audit",
        sql: include_str!("../migrations/0010_audit.sql"),
    },
    Migration {
        version: 11,
        name: "encounter_analytics",
        sql: include_str!("../migrations/0011_encounter_analytics.sql"),
    },
    Migration {
        version: 12,
        name: "scim_tokens_tenant_index",
        sql: include_str!("../migrations/0012_scim_tokens_tenant_index.sql"),
    },
    Migration {
        version: 13,
        name: "tenant_schema",
        sql: include_str!("../migrations/0013_tenant_schema.sql"),
    },
    Migration {
        version: 14,
        name: "patient_identifiers",
        sql: include_str!("../migrations/0014_patient_identifiers.sql"),
    },
    Migration {
        version: 15,
        name: "tenant_database",
        sql: include_str!("../migrations/0015_tenant_database.sql"),
    },
    Migration {
        version: 16,
        name: "superseded",
        sql: include_str!("../migrations/0016_superseded.sql"),
    },
    Migration {
        version: 17,
        name: "tenant_database_server",
        sql: include_str!("../migrations/0017_tenant_database_server.sql"),
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

    // Where `table` is created, in whichever migration.
    fn table_body(table: &str) -> &'static str {
        let create = format!("CREATE TABLE {table} (");
        let sql = MIGRATIONS
            .iter()
            .map(|m| m.sql)
            .find(|sql| sql.contains(&create))
            .unwrap_or_else(|| panic!("{table} is created by no migration"));
        let body = &sql[sql.find(&create).unwrap_or(0)..];
        &body[..body.find(");").unwrap_or(body.len())]
    }

    #[test]
    fn every_tenant_table_carries_tenant_id_first_in_its_key() {
        for table in crate::rls::TENANT_TABLES {
            let body = table_body(table);
            assert!(body.contains("tenant_id "), "{table} has no tenant_id");
            assert!(
                body.contains("PRIMARY KEY (tenant_id, "),
                "{table} key does not lead with tenant_id"
            );
        }
    }

    #[test]
    fn every_index_of_every_migration_leads_with_tenant_id() {
        for migration in MIGRATIONS {
            for line in migration.sql.lines().filter(|l| {
                (l.starts_with("CREATE INDEX") || l.starts_with("CREATE UNIQUE INDEX"))
                    && l.contains(" ON clinical.")
            }) {
                assert!(
                    line.contains("(tenant_id,"),
                    "index does not lead with tenant_id: {line}"
                );
            }
        }
    }

    #[test]
    fn every_table_of_schema_clinical_is_a_tenant_table() {
        for migration in MIGRATIONS {
            for line in migration.sql.lines() {
                if let Some(rest) = line.strip_prefix("CREATE TABLE clinical.") {
                    let name = format!("clinical.{}", rest.split_whitespace().next().unwrap_or(""));
                    assert!(
                        crate::rls::TENANT_TABLES.contains(&name.as_str()),
                        "{name} (migration {}) is not in TENANT_TABLES, so not under RLS",
                        migration.name
                    );
                }
            }
        }
    }

    #[test]
    fn scim_user_names_are_unique_per_tenant_case_insensitively() {
        let scim = MIGRATIONS
            .iter()
            .find(|m| m.name == "scim")
            .map(|m| m.sql)
            .unwrap_or_default();
        assert!(scim.contains(
            "CREATE UNIQUE INDEX scim_users_user_name ON clinical.scim_users (tenant_id, lower(user_name));"
        ));
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
