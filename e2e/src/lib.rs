//! The harness of the end-to-end suites: the local stack (`e2e/stack up`) read from its
//! environment, kubectl, the operator and data plane binaries as real processes, and the
//! region databases. A missing stack fails loudly with the command that brings it up.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use tokio_postgres::Client;

pub mod backends;
pub mod bulk;
pub mod events;
pub mod failover;
pub mod guard;
pub mod keycloak;
pub mod pg_lineage;
pub mod pg_server;
pub mod rds;
pub mod rds_failover;
pub mod route53;
pub mod s3;
pub mod scenario;
pub mod scim;
pub mod webdriver;

/// The three regions of examples/.
pub const REGIONS: [&str; 3] = ["us-east-1", "eu-west-1", "ap-southeast-1"];

/// Namespace the operator keeps its Secrets in.
pub const NAMESPACE: &str = "phoenix-system";

/// One e2e scenario at a time: they share one API server and the operator they start.
pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// An environment variable of the stack; missing means the stack is not up.
pub fn stack_var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: the e2e suites need the local stack; run `e2e/test`, or `e2e/stack up && source .stack/env` first")
    })
}

/// `us-east-1` -> `US_EAST_1`.
pub fn upper(region: &str) -> String {
    region.to_uppercase().replace('-', "_")
}

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap_or(Path::new("."))
        .to_path_buf()
}

/// A workspace binary built by `cargo build --bins`.
pub fn binary(name: &str) -> PathBuf {
    let dir = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo().join("target"));
    let path = dir.join("debug").join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --bins` first (e2e/test does)",
        path.display()
    );
    path
}

/// Runs kubectl with `args`, feeding `stdin`.
pub fn kubectl(args: &[&str], stdin: Option<&str>) -> Output {
    let _ = stack_var("KUBECONFIG");
    try_kubectl(args, stdin).expect("kubectl runs (the stack's env puts it on PATH)")
}

/// Runs kubectl without panicking, for code that runs while a test unwinds.
pub fn try_kubectl(args: &[&str], stdin: Option<&str>) -> std::io::Result<Output> {
    let mut child = Command::new("kubectl")
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        use std::io::Write;
        pipe.write_all(input.as_bytes())?;
    }
    child.wait_with_output()
}

/// Runs kubectl and fails the test when it fails.
pub fn kubectl_ok(args: &[&str], stdin: Option<&str>) -> String {
    let out = kubectl(args, stdin);
    assert!(
        out.status.success(),
        "kubectl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Polls `check` every 250 ms until it returns Some or `timeout` passes.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A free port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// An admin connection to a region's primary.
/// Over TLS where the stack's DSN asks for it (eu-west-1: verify-full with the stack's CA).
pub async fn pg(region: &str) -> Client {
    let dsn = stack_var(&format!("PG_ADMIN_DSN_{}", upper(region)));
    pg_connect(&dsn)
        .await
        .unwrap_or_else(|e| panic!("connect to the {region} database: {e}"))
}

/// Waits until the stack's replica of us-east-1 has replayed everything written on its
/// primary so far: reads a data plane sends to the Region's readers (`catalog.readers`)
/// then see it. Reads without a consistency token may be that far behind (ADR 0005).
pub async fn us_east_1_replica_caught_up() {
    let written: String = pg("us-east-1")
        .await
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .expect("the primary's WAL position")
        .get(0);
    let replica = phoenix_catalog::connect::parse(&stack_var("PG_REPLICA_DSN_US_EAST_1"))
        .expect("the replica's DSN parses")
        .connect()
        .await
        .expect("connect to the replica");
    let (replica, written) = (&replica, &written);
    eventually(
        "the us-east-1 replica replays the primary",
        Duration::from_secs(30),
        || async move {
            let row = replica
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

/// A connection to `dsn` (libpq TLS semantics, as [`pg`]), or why there is none.
pub async fn pg_connect(dsn: &str) -> Result<Client, String> {
    phoenix_catalog::connect::parse(dsn)
        .map_err(|e| format!("the DSN does not parse: {e}"))?
        .connect()
        .await
        .map_err(|e| e.to_string())
}

/// The DSN the operator gets for a region in its Secret: no local file path (the operator
/// may run elsewhere), so a TLS region's says `sslmode=require` and the Region's spec
/// upgrades it to verify-full with the CA from the Secret `region-<r>-db-ca` (key
/// `ca.crt`, its `spec.database.writer.caSecretRef`).
pub fn operator_dsn(dsn: &str) -> String {
    match dsn.split_once('?') {
        Some((base, query)) if query.contains("sslmode=verify-") => {
            format!("{base}?sslmode=require")
        }
        _ => dsn.to_owned(),
    }
}

/// Installs the CRDs, the region Secrets and the example Regions (idempotent).
pub fn install_platform() {
    kubectl_ok(
        &[
            "apply",
            "--server-side",
            "--force-conflicts",
            "-f",
            &repo().join("crds/crds.yaml").display().to_string(),
        ],
        None,
    );
    kubectl_ok(
        &[
            "wait",
            "--for=condition=Established",
            "crd/regions.phoenixguardian.io",
            "crd/tenants.phoenixguardian.io",
            "--timeout=60s",
        ],
        None,
    );
    let mut secrets = String::new();
    for region in REGIONS {
        let dsn = stack_var(&format!("PG_ADMIN_DSN_{}", upper(region)));
        secrets.push_str(&secret_yaml(
            &format!("region-{region}-db"),
            "dsn",
            &operator_dsn(&dsn),
        ));
        if dsn.contains("sslrootcert=") {
            let ca = std::fs::read_to_string(stack_var("PG_CA_FILE")).expect("read PG_CA_FILE");
            secrets.push_str(&secret_yaml(
                &format!("region-{region}-db-ca"),
                "ca.crt",
                &ca,
            ));
        }
    }
    secrets.push_str(&secret_yaml(
        "region-us-east-1-replica-db",
        "dsn",
        &stack_var("PG_REPLICA_DSN_US_EAST_1"),
    ));
    kubectl_ok(&["apply", "-f", "-"], Some(&secrets));
    kubectl_ok(
        &[
            "apply",
            "-f",
            &repo().join("examples/regions.yaml").display().to_string(),
        ],
        None,
    );
}

/// A Secret `name` in the operator's namespace holding `value` under `key`, as a YAML
/// document to apply.
pub fn secret_yaml(name: &str, key: &str, value: &str) -> String {
    let value = serde_json::to_string(value).expect("json string");
    format!(
        "---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  namespace: {NAMESPACE}\nstringData:\n  {key}: {value}\n"
    )
}

/// The value under `key` of Secret `name` in the operator's namespace, when there.
pub async fn secret_value(name: &str, key: &str) -> Option<String> {
    let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> =
        kube::Api::namespaced(kube_client().await, NAMESPACE);
    let secret = secrets.get_opt(name).await.ok()??;
    let raw = secret.data?.get(key)?.0.clone();
    String::from_utf8(raw).ok()
}

/// A process killed when dropped.
pub struct Process {
    child: Child,
    /// Its log file (appended to by every process of the same name).
    pub log: PathBuf,
    /// Length of the log file when this process started: its own lines follow.
    log_start: u64,
    /// Its HTTP address.
    pub addr: String,
    /// The address of its `/metrics`: `addr` for the operator, the admin listener
    /// (`ADMIN_LISTEN_ADDR`) for a data plane.
    pub metrics_addr: String,
}

impl Process {
    fn spawn(name: &str, program: &Path, envs: &[(&str, String)], addr: String) -> Self {
        let logs = PathBuf::from(stack_var("STACK_DIR")).join("logs");
        std::fs::create_dir_all(&logs).expect("log dir");
        let log = logs.join(format!("{name}.log"));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("log file");
        let log_start = file.metadata().map(|m| m.len()).unwrap_or(0);
        let child = Command::new(program)
            .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::from(file.try_clone().expect("log fd")))
            .stderr(Stdio::from(file))
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        Self {
            child,
            log,
            log_start,
            metrics_addr: addr.clone(),
            addr,
        }
    }

    /// Starts the operator with the given resync period (leader election on, 5 s lease)
    /// and waits until it leads.
    pub async fn operator(resync_seconds: u64) -> Self {
        Self::operator_with("e2e-operator", resync_seconds, &[]).await
    }

    /// Starts an operator replica whose log is `<name>.log`; it may lead or stand by.
    pub async fn operator_named(name: &str, resync_seconds: u64) -> Self {
        Self::operator_standing_by(name, resync_seconds, &[]).await
    }

    /// Starts an operator replica whose log is `<name>.log`, with `extra` environment, without
    /// waiting for it to lead.
    pub async fn operator_standing_by(
        name: &str,
        resync_seconds: u64,
        extra: &[(&str, &str)],
    ) -> Self {
        Self::spawn_operator(name, resync_seconds, extra).await
    }

    /// Starts an operator whose log is `<name>.log`, with `extra` environment (e.g.
    /// `REGION_RESYNC_SECONDS`), and waits until it leads: a scenario must never pass or
    /// fail against another operator holding the lease (such as the quick start's).
    pub async fn operator_with(name: &str, resync_seconds: u64, extra: &[(&str, &str)]) -> Self {
        let p = Self::spawn_operator(name, resync_seconds, extra).await;
        let start = Instant::now();
        while p.metric("phoenix_operator_leader").await != Some(1.0) {
            assert!(
                start.elapsed() < Duration::from_secs(45),
                "operator {name} did not take the lease phoenix-operator within 45 s: another operator holds it (stop the quick start's: kill $(cat .stack/pids/operator.pid))"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        p
    }

    async fn spawn_operator(name: &str, resync_seconds: u64, extra: &[(&str, &str)]) -> Self {
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let mut env = vec![
            ("KUBECONFIG", stack_var("KUBECONFIG")),
            ("OPERATOR_NAMESPACE", NAMESPACE.to_owned()),
            ("PROBE_ADDR", addr.clone()),
            ("RESYNC_SECONDS", resync_seconds.to_string()),
            ("LEASE_SECONDS", "5".to_owned()),
            ("POD_NAME", name.to_owned()),
            ("RUST_LOG", "info,kube=warn".to_owned()),
        ];
        env.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
        let p = Self::spawn(name, &binary("phoenix-operator"), &env, addr);
        p.wait_http("/readyz", Duration::from_secs(30)).await;
        p
    }

    /// Starts a data plane with `database_url` and, for a server verified over TLS, the CA
    /// bundle file `ca_file` (DATABASE_CA_FILE).
    pub async fn dataplane(region: &str, database_url: String, ca_file: Option<String>) -> Self {
        let addr = format!("127.0.0.1:{}", free_port());
        let admin = format!("127.0.0.1:{}", free_port());
        let mut env = vec![
            ("DATABASE_URL", database_url),
            ("LISTEN_ADDR", addr.clone()),
            ("ADMIN_LISTEN_ADDR", admin.clone()),
            ("REGION", region.to_owned()),
        ];
        if let Some(ca) = ca_file {
            env.push(("DATABASE_CA_FILE", ca));
        }
        let mut p = Self::spawn(
            &format!("e2e-dataplane-{region}"),
            &binary("phoenix-dataplane"),
            &env,
            addr,
        );
        p.metrics_addr = admin;
        p.wait_http("/readyz", Duration::from_secs(30)).await;
        p
    }

    /// Starts a data plane like [`Process::dataplane`], logging to `<name>.log`, with
    /// `extra` environment; serving HTTPS when `extra` sets `TLS_CERT_FILE`.
    pub async fn dataplane_with(
        name: &str,
        region: &str,
        database_url: String,
        ca_file: Option<String>,
        extra: &[(&str, String)],
    ) -> Self {
        let addr = format!("127.0.0.1:{}", free_port());
        let admin = format!("127.0.0.1:{}", free_port());
        let mut env = vec![
            ("DATABASE_URL", database_url),
            ("LISTEN_ADDR", addr.clone()),
            ("ADMIN_LISTEN_ADDR", admin.clone()),
            ("REGION", region.to_owned()),
        ];
        if let Some(ca) = ca_file {
            env.push(("DATABASE_CA_FILE", ca));
        }
        env.extend(extra.iter().cloned());
        let tls = extra.iter().any(|(k, _)| *k == "TLS_CERT_FILE");
        let mut p = Self::spawn(name, &binary("phoenix-dataplane"), &env, addr);
        p.metrics_addr = admin;
        let scheme = if tls { "https" } else { "http" };
        p.wait_url(
            &format!("{scheme}://{}/readyz", p.addr),
            Duration::from_secs(30),
        )
        .await;
        p
    }

    async fn wait_http(&self, path: &str, timeout: Duration) {
        self.wait_url(&format!("http://{}{path}", self.addr), timeout)
            .await;
    }

    async fn wait_url(&self, url: &str, timeout: Duration) {
        let log = self.log.clone();
        let start = Instant::now();
        // The test's own certificates are self-signed.
        let client = reqwest::Client::builder()
            .danger_accept_invalid_certs(true)
            .build()
            .expect("HTTP client");
        loop {
            if let Ok(r) = client.get(url).send().await
                && r.status().is_success()
            {
                return;
            }
            if start.elapsed() > timeout {
                let tail = std::fs::read_to_string(&log).unwrap_or_default();
                let tail: String = tail
                    .lines()
                    .rev()
                    .take(30)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect::<Vec<_>>()
                    .join("\n");
                panic!(
                    "{url} did not answer within {timeout:?}; log {}:\n{tail}",
                    log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// SIGKILL, as a crash or an OOM kill would.
    pub fn kill_hard(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, as Kubernetes stops a pod; SIGKILL if it has not exited within 10 s.
    pub fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill_hard();
    }

    /// What this process has logged so far (not the earlier lines of its log file).
    pub fn own_log(&self) -> String {
        let text = std::fs::read(&self.log).unwrap_or_default();
        let own = text
            .get(usize::try_from(self.log_start).unwrap_or(0)..)
            .unwrap_or_default();
        String::from_utf8_lossy(own).into_owned()
    }

    /// The JSON lines this process has logged so far (other lines are skipped).
    pub fn json_log(&self) -> Vec<serde_json::Value> {
        self.own_log()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The value of an unlabelled metric, if exposed (on the admin listener of a data
    /// plane).
    pub async fn metric(&self, name: &str) -> Option<f64> {
        let text = reqwest::get(format!("http://{}/metrics", self.metrics_addr))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.lines()
            .find(|l| l.split(' ').next() == Some(name))?
            .rsplit(' ')
            .next()?
            .parse()
            .ok()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // Graceful, so that an operator releases its lease for the next scenario.
        self.stop();
    }
}

/// A Kubernetes client from the stack's kubeconfig.
pub async fn kube_client() -> kube::Client {
    let _ = stack_var("KUBECONFIG");
    kube::Client::try_default()
        .await
        .expect("a client from KUBECONFIG")
}

/// A Tenant manifest.
pub fn tenant_yaml(name: &str, residency: &str, extra: &str) -> String {
    format!(
        "---\napiVersion: phoenixguardian.io/v1alpha1\nkind: Tenant\nmetadata:\n  name: {name}\nspec:\n  displayName: {name} hospital\n  dataResidency: [{residency}]\n  dns:\n    hostname: {name}.e2e.phoenixguardian.test\n{extra}"
    )
}

/// The condition `type_` of a tenant as (status, reason, message).
pub fn condition(tenant: &phoenix_crds::Tenant, type_: &str) -> Option<(String, String, String)> {
    tenant
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}
