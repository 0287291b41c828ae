//! A throwaway database on the real PostgreSQL of the local stack, dropped on drop.

#![allow(dead_code)]

use std::sync::Arc;

use phoenix_operator::controller::providers::Database;
use phoenix_operator::db::PgDatabase;
use tokio_postgres::{Client, NoTls};

/// Admin DSN of the test PostgreSQL; a missing stack is a failure, never a skip.
pub fn admin_dsn() -> String {
    std::env::var("PG_ADMIN_DSN_US_EAST_1").unwrap_or_else(|_| {
        panic!("PG_ADMIN_DSN_US_EAST_1 is not set: run `e2e/stack up && source .stack/env` (or `e2e/test`) so the tests reach a real PostgreSQL")
    })
}

/// Connects with `config`, driving the connection in the background.
pub async fn connect(config: &tokio_postgres::Config) -> Client {
    let (client, connection) = config
        .connect(NoTls)
        .await
        .expect("connect to the test PostgreSQL");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// A fresh database, dropped (with its connections) when the guard goes.
pub struct TestDb {
    pub name: String,
    pub config: tokio_postgres::Config,
    admin: tokio_postgres::Config,
}

impl TestDb {
    pub async fn new(prefix: &str) -> Self {
        let admin: tokio_postgres::Config = admin_dsn().parse().expect("valid admin DSN");
        let name = format!("{prefix}_{}", rand_suffix());
        let client = connect(&admin).await;
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create test database");
        let mut config = admin.clone();
        config.dbname(&name);
        Self {
            name,
            config,
            admin,
        }
    }

    /// A region database over it, as the operator's provider opens one.
    pub fn region(&self) -> Arc<dyn Database> {
        Arc::new(PgDatabase::new(self.config.clone(), 4, false).expect("pool"))
    }

    /// An admin (superuser) client on it.
    pub async fn admin(&self) -> Client {
        connect(&self.config).await
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let admin = self.admin.clone();
        let name = self.name.clone();
        // Drop synchronously on a helper thread: Drop cannot await.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                if let Ok((client, conn)) = admin.connect(NoTls).await {
                    tokio::spawn(async move {
                        let _ = conn.await;
                    });
                    let _ = client
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                }
            });
        })
        .join();
    }
}

pub fn rand_suffix() -> String {
    use rand::Rng;
    rand::rng()
        .sample_iter(&rand::distr::Alphanumeric)
        .take(10)
        .map(|c| char::from(c).to_ascii_lowercase())
        .collect()
}
