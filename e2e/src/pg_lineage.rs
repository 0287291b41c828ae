//! A PostgreSQL primary and its streaming standbys of a test's own, started like the
//! stack's (`e2e/lib/pg.sh`: `initdb`, then `pg_basebackup -R`) on free loopback ports
//! under `$STACK_DIR/pg/`, run as the `postgres` system user when the tests run as root,
//! and stopped (their files removed) on drop. For failover tests, which must never
//! promote the stack's own replica.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use tokio_postgres::Client;

use crate::{eventually, free_port, pg_connect, stack_var};

const PASSWORD: &str = "lineage-admin-pw";

/// One server of a lineage.
#[derive(Debug)]
pub struct PgServer {
    /// Its data directory.
    pub dir: PathBuf,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

impl PgServer {
    /// Its superuser connection string to database `db`.
    pub fn dsn(&self, db: &str) -> String {
        format!(
            "postgres://postgres:{PASSWORD}@127.0.0.1:{}/{db}?sslmode=disable",
            self.port
        )
    }

    /// A superuser session on the `phoenix` database.
    pub async fn admin(&self) -> Client {
        pg_connect(&self.dsn("phoenix"))
            .await
            .unwrap_or_else(|e| panic!("connect to {}: {e}", self.dir.display()))
    }
}

/// A primary with `phoenix` created, and its standbys.
#[derive(Debug)]
pub struct PgLineage {
    root: PathBuf,
    /// The primary.
    pub primary: PgServer,
    /// Its streaming standbys.
    pub standbys: Vec<PgServer>,
}

fn pg_bin(tool: &str) -> PathBuf {
    PathBuf::from(
        std::env::var("PG_BIN").unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".to_owned()),
    )
    .join(tool)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Runs `tool args` as the server's owner; panics with its output when it fails.
fn run_pg(tool: &str, args: &[&str], env: &[(&str, &str)]) {
    let mut cmd = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--", "env"]);
        for (k, v) in env {
            c.arg(format!("{k}={v}"));
        }
        c.arg(pg_bin(tool));
        c
    } else {
        let mut c = Command::new(pg_bin(tool));
        c.envs(env.iter().copied());
        c
    };
    let out = cmd
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {tool}: {e}"));
    assert!(
        out.status.success(),
        "{tool} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn own(path: &Path) {
    if is_root() {
        let status = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(path)
            .status()
            .expect("chown");
        assert!(status.success(), "chown {}", path.display());
    }
}

fn append(path: &Path, text: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    f.write_all(text.as_bytes()).expect("append");
}

fn start(dir: &Path) {
    let log = dir.with_extension("log");
    std::fs::write(&log, b"").expect("log file");
    own(&log);
    run_pg(
        "pg_ctl",
        &[
            "start",
            "-w",
            "-t",
            "60",
            "-D",
            &dir.display().to_string(),
            "-l",
            &log.display().to_string(),
        ],
        &[],
    );
}

impl PgLineage {
    /// Starts a primary and `standbys` streaming standbys under `$STACK_DIR/pg/<name>-<pid>`.
    pub async fn start(name: &str, standbys: usize) -> Self {
        Self::start_with(name, standbys, false).await
    }

    /// Like [`Self::start`], the servers also accepting TLS with the stack's PostgreSQL
    /// certificate (`$STACK_DIR/pki/postgres`, for 127.0.0.1 and localhost, signed by
    /// `PG_CA_FILE`): what stands in for RDS instances, reached with `verify-full`.
    /// Plain connections are still accepted (the tests' own sessions).
    pub async fn start_tls(name: &str, standbys: usize) -> Self {
        Self::start_with(name, standbys, true).await
    }

    async fn start_with(name: &str, standbys: usize, tls: bool) -> Self {
        let root = PathBuf::from(stack_var("STACK_DIR"))
            .join("pg")
            .join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).expect("lineage dir");
        own(&root);
        let primary = PgServer {
            dir: root.join("primary"),
            port: free_port(),
        };
        let pwfile = root.join(".pw");
        std::fs::write(&pwfile, PASSWORD).expect("password file");
        own(&pwfile);
        run_pg(
            "initdb",
            &[
                "-D",
                &primary.dir.display().to_string(),
                "-U",
                "postgres",
                "--pwfile",
                &pwfile.display().to_string(),
                "--auth-local",
                "scram-sha-256",
                "--auth-host",
                "scram-sha-256",
                "--encoding",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ],
            &[],
        );
        let _ = std::fs::remove_file(&pwfile);
        append(
            &primary.dir.join("postgresql.conf"),
            &format!(
                "\nlisten_addresses = '127.0.0.1'\nport = {}\nunix_socket_directories = '{}'\nwal_level = replica\nmax_wal_senders = 10\nwal_keep_size = '256MB'\nhot_standby = on\nmax_connections = 100\nfsync = off\nsynchronous_commit = off\nfull_page_writes = off\n",
                primary.port,
                root.display()
            ),
        );
        if tls {
            // The standbys' configuration is the primary's (pg_basebackup copies it).
            let pki = PathBuf::from(stack_var("STACK_DIR")).join("pki/postgres");
            append(
                &primary.dir.join("postgresql.conf"),
                &format!(
                    "ssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\n",
                    pki.join("server.crt").display(),
                    pki.join("server.key").display()
                ),
            );
        }
        std::fs::write(
            primary.dir.join("pg_hba.conf"),
            "local all all scram-sha-256\nhost all all 127.0.0.1/32 scram-sha-256\nhost replication all 127.0.0.1/32 scram-sha-256\n",
        )
        .expect("pg_hba.conf");
        own(&root);
        start(&primary.dir);
        let mut lineage = Self {
            root,
            primary,
            standbys: Vec::new(),
        };
        pg_connect(&lineage.primary.dsn("postgres"))
            .await
            .expect("connect to the new primary")
            .batch_execute("CREATE DATABASE phoenix")
            .await
            .expect("create database phoenix");
        for i in 0..standbys {
            let s = PgServer {
                dir: lineage.root.join(format!("standby-{i}")),
                port: free_port(),
            };
            run_pg(
                "pg_basebackup",
                &[
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &lineage.primary.port.to_string(),
                    "-U",
                    "postgres",
                    "-D",
                    &s.dir.display().to_string(),
                    "-R",
                    "-X",
                    "stream",
                    "-c",
                    "fast",
                    "--no-sync",
                ],
                &[("PGPASSWORD", PASSWORD)],
            );
            append(
                &s.dir.join("postgresql.conf"),
                &format!("\n# standby\nport = {}\n", s.port),
            );
            own(&s.dir);
            start(&s.dir);
            lineage.standbys.push(s);
        }
        for s in &lineage.standbys {
            let admin = s.admin().await;
            let recovering: bool = admin
                .query_one("SELECT pg_is_in_recovery()", &[])
                .await
                .expect("recovery")
                .get(0);
            assert!(recovering, "{} is not a standby", s.dir.display());
        }
        lineage
    }

    /// Stops the primary (`pg_ctl stop -m fast`): it is unreachable until [`Self::start_primary`].
    pub fn stop_primary(&self) {
        run_pg(
            "pg_ctl",
            &[
                "stop",
                "-m",
                "fast",
                "-w",
                "-t",
                "60",
                "-D",
                &self.primary.dir.display().to_string(),
            ],
            &[],
        );
    }

    /// Starts the primary again after [`Self::stop_primary`].
    pub fn start_primary(&self) {
        start(&self.primary.dir);
    }

    /// Waits until every standby has replayed what the primary wrote so far (its insert
    /// position: with `synchronous_commit = off` a commit may not be written out yet).
    pub async fn caught_up(&self) {
        let written: String = self
            .primary
            .admin()
            .await
            .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
            .await
            .expect("WAL position")
            .get(0);
        for s in &self.standbys {
            let c = s.admin().await;
            let (c, written) = (&c, &written);
            eventually(
                "a standby replays its primary",
                Duration::from_secs(30),
                || async move {
                    let row = c
                        .query_one(
                            "SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn",
                            &[written],
                        )
                        .await
                        .ok()?;
                    row.get::<_, bool>(0).then_some(())
                },
            )
            .await;
        }
    }
}

impl Drop for PgLineage {
    fn drop(&mut self) {
        for dir in self
            .standbys
            .iter()
            .map(|s| &s.dir)
            .chain(std::iter::once(&self.primary.dir))
        {
            let mut cmd = if is_root() {
                let mut c = Command::new("runuser");
                c.args(["-u", "postgres", "--"]).arg(pg_bin("pg_ctl"));
                c
            } else {
                Command::new(pg_bin("pg_ctl"))
            };
            let _ = cmd
                .args(["stop", "-m", "immediate", "-w", "-t", "30", "-D"])
                .arg(dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}
