//! Versioned schema migrations: defined once in the catalog crate, applied by the operator.

pub use phoenix_catalog::migrations::{
    LEDGER_SQL, MIGRATION_LOCK, MIGRATIONS, Migration, latest_version,
};
