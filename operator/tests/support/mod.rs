//! A throwaway database on the real PostgreSQL of the local stack, dropped on drop.

#![allow(dead_code)]

use phoenix_catalog::connect::PgTarget;
use std::sync::Arc;

use phoenix_operator::controller::providers::Database;
use phoenix_operator::db::PgDatabase;
use tokio_postgres::Client;

pub mod tenants;

/// The stack's TLS-only primary (its DSN is verify-full with the stack's CA).
pub const TLS_ADMIN_DSN_VAR: &str = "PG_ADMIN_DSN_EU_WEST_1";

/// Admin DSN of the test PostgreSQL; a missing stack is a failure, never a skip.
pub fn admin_dsn() -> String {
    stack_dsn("PG_ADMIN_DSN_US_EAST_1")
}

/// The DSN in `var` of the stack's env file; a missing stack is a failure, never a skip.
pub fn stack_dsn(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} is not set: run `e2e/stack up && source .stack/env` (or `e2e/test`) so the tests reach a real PostgreSQL")
    })
}

/// Connects with `target` (a tokio-postgres config, or a [`PgTarget`] when TLS settings
/// matter), driving the connection in the background.
pub async fn connect(target: &(impl Clone + Into<PgTarget>)) -> Client {
    let target: PgTarget = target.clone().into();
    target
        .connect()
        .await
        .expect("connect to the test PostgreSQL")
}

/// A fresh database, dropped (with its connections) when the guard goes.
pub struct TestDb {
    pub name: String,
    /// Its connection settings (no TLS verification; see `target` for those).
    pub config: tokio_postgres::Config,
    /// Its connection settings with the admin DSN's TLS settings.
    pub target: PgTarget,
    admin: PgTarget,
}

impl TestDb {
    pub async fn new(prefix: &str) -> Self {
        Self::new_on(prefix, "PG_ADMIN_DSN_US_EAST_1").await
    }

    /// Like [`TestDb::new`], on the server whose admin DSN is in `var`.
    pub async fn new_on(prefix: &str, var: &str) -> Self {
        let admin = phoenix_catalog::connect::parse(&stack_dsn(var)).expect("valid admin DSN");
        let name = format!("{prefix}_{}", rand_suffix());
        let client = connect(&admin).await;
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create test database");
        let mut target = admin.clone();
        target.config.dbname(&name);
        Self {
            name,
            config: target.config.clone(),
            target,
            admin,
        }
    }

    /// A region database over it, as the operator's provider opens one.
    pub fn region(&self) -> Arc<dyn Database> {
        Arc::new(PgDatabase::new(self.target.clone(), 4, false).expect("pool"))
    }

    /// An admin (superuser) client on it.
    pub async fn admin(&self) -> Client {
        connect(&self.target).await
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        cleanup_on(
            self.admin.clone(),
            vec![format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            )],
        );
    }
}

/// Runs `statements` in order as the stack's admin, for the guards that clean up when a
/// test ends, passed or failed; see [`cleanup_on`].
pub fn cleanup_as_admin(statements: Vec<String>) {
    cleanup_on(
        phoenix_catalog::connect::parse(&admin_dsn()).expect("admin DSN"),
        statements,
    );
}

/// Runs `statements` in order on the server of `admin`, each on its own with its error
/// ignored (what it drops may be gone already), and returns when they ran. It blocks on a
/// thread of its own, as `Drop` cannot await.
pub fn cleanup_on(admin: PgTarget, statements: Vec<String>) {
    let _ = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            if let Ok(client) = admin.connect().await {
                for sql in statements {
                    let _ = client.batch_execute(&sql).await;
                }
            }
        });
    })
    .join();
}

/// Drops database `name` on the server of `admin`, with its connections.
pub async fn drop_database(admin: &(impl Clone + Into<PgTarget>), name: &str) {
    connect(admin)
        .await
        .batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .await
        .expect("drop the test database");
}

pub fn rand_suffix() -> String {
    use rand::Rng;
    rand::rng()
        .sample_iter(&rand::distr::Alphanumeric)
        .take(10)
        .map(|c| char::from(c).to_ascii_lowercase())
        .collect()
}

/// The single `bigint` that `sql` selects (a count).
pub async fn count(
    c: &impl tokio_postgres::GenericClient,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> i64 {
    c.query_one(sql, params).await.expect(sql).get(0)
}
