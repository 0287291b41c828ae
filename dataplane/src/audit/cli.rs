//! `phoenix-dataplane audit verify --tenant <name|id>`: walks a tenant's audit chain on the
//! writer (`DATABASE_URL`, under the tenant's row-level security like any request) and
//! reports the first broken link. Exit 0: intact; 1: broken; 2: it could not be checked.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use super::chain::{Break, Walk};
use super::store::links_after;
use crate::db::tenant_tx::{Access, TxError};
use crate::db::{Database, DbError, pg_config};
use crate::error::Report;

/// Entries read per transaction while walking.
const BATCH: i64 = 5_000;

/// The `audit` commands.
#[derive(Debug, Parser)]
#[command(name = "phoenix-dataplane audit", about = "Audit trail tools")]
pub struct AuditCli {
    /// libpq URL of the region's writer (primary).
    #[arg(long = "database-url", env = "DATABASE_URL", hide_env_values = true)]
    database_url: String,
    /// PEM CA bundle for sslmode=verify-*.
    #[arg(long = "database-ca-file", env = "DATABASE_CA_FILE")]
    database_ca_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Recompute a tenant's hash chain and report the first broken link.
    Verify {
        /// The tenant's name (as in the catalog) or catalog id.
        #[arg(long)]
        tenant: String,
    },
}

/// Why a chain could not be checked.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The database is unusable.
    #[error(transparent)]
    Db(#[from] DbError),
    /// A statement failed.
    #[error(transparent)]
    Tx(#[from] TxError),
    /// No tenant of that name or id.
    #[error("no tenant named {0} (nor with that catalog id) in this region's catalog")]
    UnknownTenant(String),
}

/// The result of walking one tenant's chain.
#[derive(Debug, PartialEq, Eq)]
pub struct Verdict {
    /// The tenant's catalog id.
    pub tenant_id: i64,
    /// Entries that passed, from the first.
    pub checked: u64,
    /// Hash of the last entry that passed (hex), the chain's head when intact.
    pub head: String,
    /// The first broken link: its seq and how it is broken.
    pub broken: Option<(i64, Break)>,
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.broken {
            None => write!(
                f,
                "tenant {}: chain intact, {} entries, head {}",
                self.tenant_id, self.checked, self.head
            ),
            Some((seq, why)) => write!(
                f,
                "tenant {}: BROKEN at entry seq {seq} (row tenant_id={}, seq={seq}): {why}; the {} entries before it are intact",
                self.tenant_id, self.tenant_id, self.checked
            ),
        }
    }
}

/// The catalog id of the tenant named `tenant` (or whose id it is).
pub async fn tenant_id(db: &Database, tenant: &str) -> Result<i64, VerifyError> {
    let client = db.writer().get().await.map_err(DbError::from)?;
    let row = client
        .query_opt(
            "SELECT id FROM catalog.tenants WHERE name = $1 OR id::text = $1 ORDER BY name = $1 DESC LIMIT 1",
            &[&tenant],
        )
        .await
        .map_err(DbError::from)?;
    match row {
        Some(row) => Ok(row.try_get(0).map_err(DbError::from)?),
        None => Err(VerifyError::UnknownTenant(tenant.to_owned())),
    }
}

/// Walks tenant `tenant_id`'s whole chain in batches, stopping at the first broken link.
pub async fn verify(db: &Database, tenant_id: i64) -> Result<Verdict, VerifyError> {
    let mut walk = Walk::default();
    let mut after = 0;
    loop {
        let links = db
            .tenant_tx(Access::Write, tenant_id, |tx| {
                Box::pin(async move { links_after(tx, tenant_id, after, BATCH).await })
            })
            .await?;
        let Some(last) = links.last() else { break };
        after = last.seq;
        for link in &links {
            if let Err(broken) = walk.check(link) {
                return Ok(Verdict {
                    tenant_id,
                    checked: walk.checked(),
                    head: walk.head(),
                    broken: Some(broken),
                });
            }
        }
    }
    Ok(Verdict {
        tenant_id,
        checked: walk.checked(),
        head: walk.head(),
        broken: None,
    })
}

/// Runs `phoenix-dataplane audit ...` with `args` (starting with `audit`).
pub async fn run(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let cli = AuditCli::parse_from(args);
    let Command::Verify { tenant } = &cli.command;
    let result = async {
        let target = pg_config(
            "DATABASE_URL",
            &cli.database_url,
            "phoenix-dataplane-audit",
            cli.database_ca_file.as_deref(),
        )?;
        let db = Database::writer_only(target, 1)?;
        let id = tenant_id(&db, tenant).await?;
        verify(&db, id).await
    }
    .await;
    match result {
        Ok(verdict) => {
            println!("{verdict}");
            if verdict.broken.is_some() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(error) => {
            eprintln!("audit verify: {}", Report(&error));
            ExitCode::from(2)
        }
    }
}
