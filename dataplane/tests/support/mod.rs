//! A throwaway database per test on the stack's us-east-1 PostgreSQL, and a data plane
//! running against it as a login role without BYPASSRLS.

#![allow(dead_code)] // each test binary uses its own part of the support code

use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use phoenix_catalog::connect::{PgTarget, SslMode};
use phoenix_dataplane::catalog::follower::FollowerSettings;
use phoenix_dataplane::{Config, Dataplane};
use tokio::net::TcpListener;
use tokio_postgres::Client;
use tokio_postgres::config::Host;

const ADMIN_DSN_VAR: &str = "PG_ADMIN_DSN_US_EAST_1";
/// The stack's TLS-only primary (verify-full DSN) and its CA.
pub const TLS_ADMIN_DSN_VAR: &str = "PG_ADMIN_DSN_EU_WEST_1";
const CA_FILE_VAR: &str = "PG_CA_FILE";
const CATALOG_MIGRATION: &str = phoenix_catalog::MIGRATIONS[0].sql;
const CLINICAL_MIGRATION: &str = phoenix_catalog::MIGRATIONS[1].sql;

/// The admin DSN of the stack's us-east-1 primary; panics with how to get one.
pub fn admin_dsn() -> String {
    stack_var(ADMIN_DSN_VAR)
}

/// A variable of the stack's env file; panics with how to get one.
fn stack_var(var: &str) -> String {
    match std::env::var(var) {
        Ok(value) if !value.is_empty() => value,
        _ => panic!(
            "{var} is not set: these tests need the local PostgreSQL. \
             Run `e2e/stack up && source .stack/env` from the repository root, then rerun."
        ),
    }
}

/// Connects (over TLS when the DSN asks for it), the connection driven in the background.
async fn connect(target: &PgTarget) -> Client {
    target
        .connect()
        .await
        .unwrap_or_else(|error| panic!("connecting to PostgreSQL as admin failed: {error}"))
}

/// A database of its own with the operator's migrations applied, and a data plane role.
/// Both are dropped when this is dropped, even when the test panicked.
pub struct TestDb {
    admin_config: PgTarget,
    /// Database name.
    pub name: String,
    /// Login role the data plane uses.
    pub role: String,
    password: String,
    admin: Option<Client>,
}

impl TestDb {
    /// Creates the database, applies the migrations, creates the role with the grants the
    /// operator gives `phoenix_dataplane`.
    pub async fn create() -> Self {
        Self::create_on(ADMIN_DSN_VAR).await
    }

    /// Like [`TestDb::create`], on the server whose admin DSN is in `var` (e.g.
    /// [`TLS_ADMIN_DSN_VAR`]).
    pub async fn create_on(var: &str) -> Self {
        let admin_config = phoenix_catalog::connect::parse(&stack_var(var))
            .unwrap_or_else(|error| panic!("{var} is not a valid DSN: {error}"));
        let suffix = format!("{:016x}", rand::random::<u64>());
        let mut db = Self {
            admin_config,
            name: format!("dp_test_{suffix}"),
            role: format!("dp_test_{suffix}_dataplane"),
            password: format!("{:032x}", rand::random::<u128>()),
            admin: None,
        };

        let server = connect(&db.admin_config).await;
        // One statement per call: CREATE DATABASE cannot run in a (multi-statement) block.
        server
            .batch_execute(&format!("CREATE DATABASE {}", db.name))
            .await
            .expect("create the test database");
        server
            .batch_execute(&format!(
                "CREATE ROLE {role} LOGIN PASSWORD '{password}' \
                     NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS",
                role = db.role,
                password = db.password,
            ))
            .await
            .expect("create the data plane role");
        drop(server);

        let mut config = db.admin_config.clone();
        config.config.dbname(&db.name);
        let admin = connect(&config).await;
        admin
            .batch_execute(CATALOG_MIGRATION)
            .await
            .expect("apply 0001_catalog.sql");
        admin
            .batch_execute(CLINICAL_MIGRATION)
            .await
            .expect("apply 0002_clinical.sql");
        admin
            .batch_execute(&format!(
                "GRANT CONNECT ON DATABASE {db_name} TO {role}; \
                 GRANT USAGE ON SCHEMA catalog, clinical TO {role}; \
                 GRANT SELECT ON catalog.tenants TO {role};",
                db_name = db.name,
                role = db.role,
            ))
            .await
            .expect("grant the data plane role");
        db.admin = Some(admin);
        db
    }

    /// Superuser connection to the test database.
    pub fn admin(&self) -> &Client {
        self.admin
            .as_ref()
            .expect("admin connection made in create()")
    }

    /// libpq URL of the test database as the data plane role, with the admin DSN's
    /// sslmode (its CA is [`TestDb::ca_file`]).
    pub fn dataplane_url(&self) -> String {
        let host = match self.admin_config.config.get_hosts().first() {
            Some(Host::Tcp(host)) => host.clone(),
            _ => "127.0.0.1".to_owned(),
        };
        let port = self
            .admin_config
            .config
            .get_ports()
            .first()
            .copied()
            .unwrap_or(5432);
        format!(
            "postgres://{role}:{password}@{host}:{port}/{db}?sslmode={mode}",
            role = self.role,
            password = self.password,
            db = self.name,
            mode = self.admin_config.tls.mode,
        )
    }

    /// The stack's CA ($PG_CA_FILE) when the admin DSN verifies the server, else none.
    pub fn ca_file(&self) -> Option<PathBuf> {
        matches!(
            self.admin_config.tls.mode,
            SslMode::VerifyCa | SslMode::VerifyFull
        )
        .then(|| PathBuf::from(stack_var(CA_FILE_VAR)))
    }

    /// Inserts an active tenant; returns its catalog id.
    pub async fn insert_tenant(&self, name: &str, hostname: &str) -> i64 {
        let row = self
            .admin()
            .query_one(
                "INSERT INTO catalog.tenants (uid, name, display_name, hostname, home_region, \
                     data_residency, isolation, state, requests_per_second, max_users, generation) \
                 VALUES ($1, $2, $3, $4, 'us-east-1', ARRAY['US'], 'Shared', 'active', 100, 1000, 1) \
                 RETURNING id",
                &[
                    &format!("uid-{name}"),
                    &name,
                    &format!("{name} Health System"),
                    &hostname,
                ],
            )
            .await
            .expect("insert tenant");
        row.get(0)
    }

    /// Runs one admin statement in the test database.
    pub async fn execute(&self, sql: &str) {
        self.admin()
            .batch_execute(sql)
            .await
            .unwrap_or_else(|error| panic!("{sql}: {error}"));
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        self.admin = None;
        let config = self.admin_config.clone();
        let sql = format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE); DROP ROLE IF EXISTS {};",
            self.name, self.role
        );
        // Drop cannot await, and the test's runtime may be gone or busy unwinding: clean
        // up on a thread with a runtime of its own.
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async move {
                let (client, connection) = config.config.connect(config.connector()?).await?;
                let driver = tokio::spawn(connection);
                // DROP DATABASE cannot run in a transaction block: one statement at a time.
                for statement in sql.split_terminator(';') {
                    client.batch_execute(statement).await?;
                }
                drop(client);
                let _ = driver.await;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
            })
        });
        match cleanup.join() {
            Ok(Ok(())) => {}
            Ok(Err(error)) => eprintln!("dropping test database {} failed: {error}", self.name),
            Err(_) => eprintln!("dropping test database {} panicked", self.name),
        }
    }
}

/// Starts the data plane on a free loopback port against `db`, as its data plane role.
pub async fn start_dataplane(db: &TestDb) -> Dataplane {
    start_dataplane_with(db, FollowerSettings::default()).await
}

/// Like [`start_dataplane`], with the follower's timings given.
pub async fn start_dataplane_with(db: &TestDb, follower: FollowerSettings) -> Dataplane {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a free loopback port");
    let mut config = Config::new(db.dataplane_url());
    config.database_ca_file = db.ca_file();
    config.listen = listener.local_addr().expect("bound address");
    config.region = Some("us-east-1".to_owned());
    Dataplane::start(&config, listener, follower)
        .await
        .expect("start the data plane")
}

/// HTTP client for the tests (no proxy, short timeouts).
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(2))
        .build()
        .expect("build HTTP client")
}

/// GETs `path` on the data plane with `host` as the Host header; returns status and body.
pub async fn get(
    client: &reqwest::Client,
    dataplane: &Dataplane,
    host: Option<&str>,
    path: &str,
) -> (u16, serde_json::Value) {
    let mut request = client.get(format!("http://{}{path}", dataplane.local_addr()));
    if let Some(host) = host {
        request = request.header(reqwest::header::HOST, host);
    }
    let response = request
        .send()
        .await
        .expect("request reaches the data plane");
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or(serde_json::Value::Null);
    (status, body)
}

/// Polls `check` every 50 ms until it returns `Ok`; panics with its last error after `within`.
pub async fn eventually<T, F, Fut>(what: &str, within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let started = Instant::now();
    loop {
        let last = match check().await {
            Ok(value) => return value,
            Err(last) => last,
        };
        if started.elapsed() >= within {
            panic!("{what}: not within {within:?}; last seen: {last}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
