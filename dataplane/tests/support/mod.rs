//! A throwaway database per test on the stack's us-east-1 PostgreSQL, provisioned by the
//! operator's own code, and a data plane running against it as a login role without
//! BYPASSRLS.

#![allow(dead_code)] // each test binary uses its own part of the support code

pub mod audit;
pub mod auth;
pub mod clinical;
pub mod fhir;
mod tenants;

use std::future::Future;
use std::time::{Duration, Instant};

use phoenix_dataplane::catalog::follower::FollowerSettings;
use phoenix_dataplane::db::Database;
use phoenix_dataplane::{Config, Dataplane};
use std::sync::Arc;

use phoenix_catalog::connect::{PgTarget, SslMode};
use phoenix_operator::controller::providers::Database as OperatorDatabase;
use phoenix_operator::controller::region::apply::provision as operator_provision;
use phoenix_operator::db::PgDatabase;
use std::path::PathBuf;
use tokio::net::TcpListener;
use tokio_postgres::Client;
use tokio_postgres::config::Host;

const ADMIN_DSN_VAR: &str = "PG_ADMIN_DSN_US_EAST_1";
const REPLICA_DSN_VAR: &str = "PG_REPLICA_DSN_US_EAST_1";
/// The stack's TLS-only primary (verify-full DSN) and its CA.
pub const TLS_ADMIN_DSN_VAR: &str = "PG_ADMIN_DSN_EU_WEST_1";
const CA_FILE_VAR: &str = "PG_CA_FILE";

/// A DSN of the stack from `var` with its TLS settings; panics with how to get one.
fn stack_dsn(var: &str) -> PgTarget {
    match std::env::var(var) {
        Ok(dsn) if !dsn.is_empty() => phoenix_catalog::connect::parse(&dsn)
            .unwrap_or_else(|error| panic!("{var} is not a valid DSN: {error}")),
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

/// Provisions the database `database` names exactly as the operator does (migrations,
/// forced row-level security, the owner and data plane roles and their grants), then
/// creates `role`, a login role of this test only that inherits the data plane role's
/// grants, never bypassing RLS.
///
/// The one place the tests use the operator's database API: adapt it here when that API
/// changes. The cluster-wide `phoenix_dataplane` role gets no password (tests run in
/// parallel); `role` is dropped with the test database.
async fn provision(
    server: &Client,
    database: PgTarget,
    role: &str,
    password: &str,
) -> Arc<dyn OperatorDatabase> {
    let region: Arc<dyn OperatorDatabase> =
        Arc::new(PgDatabase::new(database, 2, false).expect("the operator's database provider"));
    operator_provision(&*region, None)
        .await
        .expect("the operator provisions the test database");
    let dataplane_role = phoenix_operator::db::roles::DATAPLANE_ROLE;
    server
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN PASSWORD '{password}' NOBYPASSRLS IN ROLE {dataplane_role}"
        ))
        .await
        .expect("create the test's data plane login role");
    region
}

/// A database of its own provisioned by the operator, and a data plane login role.
/// Both are dropped when this is dropped, even when the test panicked.
pub struct TestDb {
    admin_config: PgTarget,
    /// Database name.
    pub name: String,
    /// Login role the data plane uses.
    pub role: String,
    password: String,
    admin: Option<Client>,
    operator: Option<Arc<dyn OperatorDatabase>>,
    // Roles of Schema tenants: server-wide, so dropped with the database.
    schema_roles: std::sync::Mutex<Vec<String>>,
    // `Dedicated` tenants' databases, dropped before the roles that own them.
    tenant_dbs: std::sync::Mutex<Vec<String>>,
}

impl TestDb {
    /// Creates the database on the us-east-1 primary and provisions it with [`provision`].
    pub async fn create() -> Self {
        Self::create_on(ADMIN_DSN_VAR).await
    }

    /// Like [`TestDb::create`], on the server whose admin DSN is in `var` (e.g.
    /// [`TLS_ADMIN_DSN_VAR`]).
    pub async fn create_on(var: &str) -> Self {
        let admin_config = stack_dsn(var);
        let suffix = format!("{:016x}", rand::random::<u64>());
        let mut db = Self {
            admin_config,
            name: format!("dp_test_{suffix}"),
            role: format!("dp_test_{suffix}_dataplane"),
            password: format!("{:032x}", rand::random::<u128>()),
            admin: None,
            operator: None,
            schema_roles: std::sync::Mutex::new(Vec::new()),
            tenant_dbs: std::sync::Mutex::new(Vec::new()),
        };

        let server = connect(&db.admin_config).await;
        // One statement per call: CREATE DATABASE cannot run in a (multi-statement) block.
        server
            .batch_execute(&format!("CREATE DATABASE {}", db.name))
            .await
            .expect("create the test database");
        let mut config = db.admin_config.clone();
        config.config.dbname(&db.name);
        db.operator = Some(provision(&server, config.clone(), &db.role, &db.password).await);
        drop(server);
        db.admin = Some(connect(&config).await);
        db
    }

    /// Superuser connection to the test database.
    pub fn admin(&self) -> &Client {
        self.admin
            .as_ref()
            .expect("admin connection made in create()")
    }

    /// libpq URL of the test database on the primary, as the data plane role.
    pub fn dataplane_url(&self) -> String {
        self.dataplane_url_at(&self.admin_config)
    }

    /// libpq URL of the test database as the data plane role, reached through `addr` (a
    /// proxy in front of the primary).
    pub fn dataplane_url_through(&self, addr: std::net::SocketAddr) -> String {
        let mut through = tokio_postgres::Config::new();
        through.host(addr.ip().to_string()).port(addr.port());
        self.dataplane_url_at(&PgTarget::from(through))
    }

    /// libpq URL of the test database on the stack's hot-standby replica (the database and
    /// the role reach it by streaming replication), as the data plane role.
    pub fn replica_url(&self) -> String {
        self.dataplane_url_at(&stack_dsn(REPLICA_DSN_VAR))
    }

    /// The primary's address, for tests that put something between it and the data plane.
    pub fn primary_addr(&self) -> String {
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
        format!("{host}:{port}")
    }

    /// The region's database as the data plane sees it, reached through `addr` (a proxy
    /// in front of the primary), with pools of `pool_size`.
    pub fn database_through(&self, addr: std::net::SocketAddr, pool_size: usize) -> Database {
        let mut through = tokio_postgres::Config::new();
        through.host(addr.ip().to_string()).port(addr.port());
        let mut config = Config::new(self.dataplane_url_at(&PgTarget::from(through)));
        config.pool_size = pool_size;
        Database::new(&config).expect("data plane pools")
    }

    /// Superuser connection to the test database on the replica (read-only).
    pub async fn replica_admin(&self) -> Client {
        let mut config = stack_dsn(REPLICA_DSN_VAR);
        config.config.dbname(&self.name);
        connect(&config).await
    }

    /// The region's database with a reader: the stack's streaming replica, as the data
    /// plane role; a read carrying a consistency token waits up to `wait` for it.
    pub fn split_database(&self, pool_size: usize, wait: Duration) -> Database {
        let mut config = Config::new(self.dataplane_url());
        config.reader_url = Some(self.replica_url());
        config.read_consistency_wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
        config.database_ca_file = self.ca_file();
        config.pool_size = pool_size;
        Database::new(&config).expect("data plane pools")
    }

    /// Waits until the replica replayed everything written on the primary so far (this
    /// database, its role and rows included).
    pub async fn replica_caught_up(&self) {
        let written: String = self
            .admin()
            .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
            .await
            .expect("the primary's WAL position")
            .get(0);
        let replica = connect(&stack_dsn(REPLICA_DSN_VAR)).await;
        let replica = &replica;
        let written = &written;
        eventually(
            "the replica replays the primary",
            Duration::from_secs(30),
            || async move {
                let caught_up: bool = replica
                    .query_one(
                        "SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn",
                        &[written],
                    )
                    .await
                    .map_err(|error| error.to_string())?
                    .get(0);
                caught_up.then_some(()).ok_or_else(|| "behind".to_owned())
            },
        )
        .await;
    }

    /// The region's database as the data plane sees it, with pools of `pool_size`.
    pub fn database(&self, pool_size: usize) -> Database {
        let mut config = Config::new(self.dataplane_url());
        config.database_ca_file = self.ca_file();
        config.pool_size = pool_size;
        Database::new(&config).expect("data plane pools")
    }

    // The URL as the data plane role at `server`, with the server's sslmode (its CA is
    // [`TestDb::ca_file`]).
    fn dataplane_url_at(&self, server: &PgTarget) -> String {
        let host = match server.config.get_hosts().first() {
            Some(Host::Tcp(host)) => host.clone(),
            _ => "127.0.0.1".to_owned(),
        };
        let port = server.config.get_ports().first().copied().unwrap_or(5432);
        format!(
            "postgres://{role}:{password}@{host}:{port}/{db}?sslmode={mode}",
            role = self.role,
            password = self.password,
            db = self.name,
            mode = server.tls.mode,
        )
    }

    /// The stack's CA ($PG_CA_FILE) when the admin DSN verifies the server, else none.
    pub fn ca_file(&self) -> Option<PathBuf> {
        matches!(
            self.admin_config.tls.mode,
            SslMode::VerifyCa | SslMode::VerifyFull
        )
        .then(|| {
            PathBuf::from(std::env::var(CA_FILE_VAR).unwrap_or_else(|_| {
                panic!("{CA_FILE_VAR} is not set: source the stack's env file")
            }))
        })
    }

    /// A superuser connection to `database` (a `Dedicated` tenant's) on the replica.
    pub async fn replica_admin_of(&self, database: &str) -> Client {
        let mut config = stack_dsn(REPLICA_DSN_VAR);
        config.config.dbname(database);
        connect(&config).await
    }

    /// A superuser connection to `database` (a `Dedicated` tenant's) on the test server.
    pub async fn admin_of(&self, database: &str) -> Client {
        let mut target = self.admin_config.clone();
        target.config.dbname(database);
        connect(&target).await
    }

    /// libpq URL of the test database as the stack's superuser (bypasses RLS).
    pub fn admin_url(&self) -> String {
        let user = self.admin_config.config.get_user().unwrap_or("postgres");
        let password = self
            .admin_config
            .config
            .get_password()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .unwrap_or_default();
        format!(
            "postgres://{user}:{password}@{addr}/{db}?sslmode={mode}",
            addr = self.primary_addr(),
            db = self.name,
            mode = self.admin_config.tls.mode,
        )
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
        self.operator = None;
        let config = self.admin_config.clone();
        let mut sql = String::new();
        for database in self
            .tenant_dbs
            .lock()
            .map(|d| d.clone())
            .unwrap_or_default()
        {
            sql.push_str(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE);"));
        }
        sql.push_str(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE); DROP ROLE IF EXISTS {};",
            self.name, self.role
        ));
        for role in self
            .schema_roles
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
        {
            sql.push_str(&format!("DROP ROLE IF EXISTS {role};"));
        }
        // Drop cannot await, and the test's runtime may be gone or busy unwinding: clean
        // up on a thread with a runtime of its own.
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async move {
                let client = config.connect().await?;
                // DROP DATABASE cannot run in a transaction block: one statement at a time.
                for statement in sql.split_terminator(';') {
                    client.batch_execute(statement).await?;
                }
                drop(client);
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
    start_dataplane_at(db.dataplane_url(), db.ca_file(), follower).await
}

/// Starts the data plane on a free loopback port with `database_url` as its DATABASE_URL
/// and `ca_file` as its DATABASE_CA_FILE.
pub async fn start_dataplane_at(
    database_url: String,
    ca_file: Option<PathBuf>,
    follower: FollowerSettings,
) -> Dataplane {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a free loopback port");
    let mut config = Config::new(database_url);
    config.database_ca_file = ca_file;
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

/// WAL replay paused on the stack's replica (shared by every test of the run: keep it
/// short). Resumed by [`ReplayPaused::resume`], or when dropped, also when the test panics.
pub struct ReplayPaused {
    resumed: bool,
}

impl ReplayPaused {
    /// Pauses replay: nothing written on the primary from now on reaches the replica's
    /// readers until it is resumed.
    pub async fn pause() -> Self {
        let replica = connect(&stack_dsn(REPLICA_DSN_VAR)).await;
        replica
            .batch_execute("SELECT pg_wal_replay_pause()")
            .await
            .expect("pause replay on the replica (as superuser)");
        Self { resumed: false }
    }

    /// Resumes replay.
    pub async fn resume(mut self) {
        let replica = connect(&stack_dsn(REPLICA_DSN_VAR)).await;
        replica
            .batch_execute("SELECT pg_wal_replay_resume()")
            .await
            .expect("resume replay on the replica");
        self.resumed = true;
    }
}

impl Drop for ReplayPaused {
    fn drop(&mut self) {
        if self.resumed {
            return;
        }
        // As TestDb's drop: no await here, and the test's runtime may be unwinding.
        let target = stack_dsn(REPLICA_DSN_VAR);
        let resumed = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async move {
                let client = target.connect().await?;
                client
                    .batch_execute("SELECT pg_wal_replay_resume()")
                    .await?;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
            })
        })
        .join();
        if !matches!(resumed, Ok(Ok(()))) {
            eprintln!(
                "RESUMING WAL REPLAY ON THE REPLICA FAILED: run SELECT pg_wal_replay_resume() on $PG_REPLICA_DSN_US_EAST_1"
            );
        }
    }
}
