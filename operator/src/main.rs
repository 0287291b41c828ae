//! The operator binary.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use clap::{Parser, Subcommand};
use futures::FutureExt;
use phoenix_operator::controller::{self, context::Settings};
use phoenix_operator::http::{self, Probes};
use phoenix_operator::leader::Elector;
use phoenix_operator::metrics::Metrics;

/// Reconciles Phoenix Guardian Regions and Tenants.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// Namespace of the Secrets the operator creates.
    #[arg(
        long,
        env = "OPERATOR_NAMESPACE",
        default_value = "phoenix-system",
        global = true
    )]
    namespace: String,
    /// Address of /healthz, /readyz and /metrics.
    #[arg(
        long,
        env = "PROBE_ADDR",
        default_value = "0.0.0.0:8080",
        global = true
    )]
    probe_addr: SocketAddr,
    /// Seconds between reconciles of a healthy object (drift detection).
    #[arg(long, env = "RESYNC_SECONDS", default_value_t = 300, global = true)]
    resync_seconds: u64,
    /// Seconds between reconciles of a healthy Region, at most (it also measures
    /// replication lag); the smaller of this and the resync applies.
    #[arg(
        long,
        env = "REGION_RESYNC_SECONDS",
        default_value_t = 60,
        global = true
    )]
    region_resync_seconds: u64,
    /// Seconds a rotated-out SCIM token keeps working, so IdPs can move to the new one.
    #[arg(
        long,
        env = "SCIM_TOKEN_GRACE_SECONDS",
        default_value_t = 3600,
        global = true
    )]
    scim_token_grace_seconds: u64,
    /// Seconds a data plane login rotated out (phoenixguardian.io/rotate-dataplane-password)
    /// may keep its sessions; then they are ended and it is retired.
    #[arg(
        long,
        env = "ROTATION_DRAIN_SECONDS",
        default_value_t = 3600,
        global = true
    )]
    rotation_drain_seconds: u64,
    /// Connections per region database.
    #[arg(long, env = "DB_MAX_CONNECTIONS", default_value_t = 8, global = true)]
    db_max_connections: usize,
    /// Elect a leader over a Lease so that only one replica reconciles.
    #[arg(long, env = "LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set, global = true)]
    leader_election: bool,
    /// Seconds a leader's lease lasts without renewal.
    #[arg(long, env = "LEASE_SECONDS", default_value_t = 15, global = true)]
    lease_seconds: u64,
    /// Namespaces whose Secrets' metadata is watched so that a changed Secret a Region
    /// references is acted on at once (the operator namespace always is); `*` watches
    /// every namespace, which needs cluster-wide list/watch on Secrets.
    #[arg(
        long,
        env = "SECRET_NAMESPACES",
        default_value = "*",
        value_delimiter = ',',
        global = true
    )]
    secret_namespaces: Vec<String>,
    /// Log format: `json` or `text`.
    /// This instance's id in DNS ownership records and health check tags.
    #[arg(
        long,
        env = "DNS_OWNER_ID",
        default_value = "phoenix-operator",
        global = true
    )]
    dns_owner: String,
    /// Route53 requests per second (a token bucket; Route53 allows 5 per account).
    #[arg(
        long,
        env = "ROUTE53_REQUESTS_PER_SECOND",
        default_value_t = 5,
        global = true
    )]
    route53_requests_per_second: u32,
    /// How long a read of a hosted zone is reused.
    #[arg(
        long,
        env = "ROUTE53_ZONE_CACHE_SECONDS",
        default_value_t = 10,
        global = true
    )]
    route53_zone_cache_seconds: u64,
    /// A round of Route53 changes is sent once none arrived for this many milliseconds.
    #[arg(
        long,
        env = "ROUTE53_BATCH_WINDOW_MS",
        default_value_t = 2000,
        global = true
    )]
    route53_batch_window_ms: u64,
    /// ... or at the latest this many milliseconds after its first change.
    #[arg(
        long,
        env = "ROUTE53_BATCH_MAX_DELAY_MS",
        default_value_t = 10000,
        global = true
    )]
    route53_batch_max_delay_ms: u64,
    #[arg(long, env = "LOG_FORMAT", default_value = "json", global = true)]
    log_format: String,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the controllers (the default).
    Run,
    /// Show what applying manifests would change, without changing anything. Exit code 0:
    /// no changes, 2: changes, 1: an object cannot be planned or would be refused.
    Plan {
        /// Manifest files or directories (YAML, multi-document, or JSON).
        #[arg(short = 'f', long = "filename", required = true)]
        files: Vec<std::path::PathBuf>,
        /// Output: `text` or `json`.
        #[arg(short = 'o', long = "output", default_value = "text", value_parser = ["text", "json"])]
        output: String,
    },
    /// Tenant snapshots (deletionPolicy Snapshot) in S3: list, show, restore.
    Snapshot {
        #[command(subcommand)]
        command: SnapshotCommand,
    },
}

/// Where a snapshot object is.
#[derive(clap::Args, Debug)]
struct ObjectArgs {
    /// The bucket (the Region's spec.database.snapshots.bucket).
    #[arg(long)]
    bucket: String,
    /// The object key (as `snapshot list` prints it, or the SnapshotTaken Event names it).
    #[arg(long)]
    key: String,
    /// AWS region of the bucket (the Region's spec.awsRegion).
    #[arg(long = "aws-region", env = "AWS_REGION")]
    aws_region: String,
}

#[derive(Subcommand, Debug)]
enum SnapshotCommand {
    /// List snapshot objects: time, size, key.
    List {
        /// The bucket.
        #[arg(long)]
        bucket: String,
        /// Key prefix, e.g. `<prefix>/<region>/<tenant>/`.
        #[arg(long, default_value = "")]
        prefix: String,
        /// AWS region of the bucket.
        #[arg(long = "aws-region", env = "AWS_REGION")]
        aws_region: String,
    },
    /// Print a snapshot's manifest (tenant, schema version, tables and row counts), after
    /// checking every section.
    Show {
        #[command(flatten)]
        object: ObjectArgs,
    },
    /// Load a snapshot into a new, empty Shared or Schema tenant, in one transaction.
    Restore {
        #[command(flatten)]
        object: ObjectArgs,
        /// Name of the live tenant to load into (its catalog row must exist).
        #[arg(long = "into-tenant")]
        into_tenant: String,
        /// Admin connection string of the target region's writer.
        #[arg(long = "database-url", env = "DATABASE_URL", hide_env_values = true)]
        database_url: String,
    },
}

fn init_tracing(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,kube=warn,tower=warn,hyper=warn")
    });
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if format == "json" {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init();
    } else {
        builder.init();
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => futures::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = futures::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutdown requested");
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let mut args = Args::parse();
    match args.command.take().unwrap_or(Command::Run) {
        Command::Run => {
            init_tracing(&args.log_format);
            match run(args).await {
                Ok(()) => std::process::ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %e, "operator failed");
                    std::process::ExitCode::FAILURE
                }
            }
        }
        Command::Plan { files, output } => {
            // Plans print to stdout; logs (warnings only) go to stderr.
            tracing_subscriber::fmt()
                .with_writer(std::io::stderr)
                .with_env_filter(tracing_subscriber::EnvFilter::new("warn,kube=error"))
                .init();
            plan(&args, &files, &output).await
        }
        Command::Snapshot { command } => {
            tracing_subscriber::fmt()
                .with_writer(std::io::stderr)
                .with_env_filter(tracing_subscriber::EnvFilter::new("warn"))
                .init();
            snapshot(command).await
        }
    }
}

async fn snapshot(command: SnapshotCommand) -> std::process::ExitCode {
    use phoenix_operator::snapshot::{cli, store::ObjectLocation};
    let at = |o: ObjectArgs| ObjectLocation {
        aws_region: o.aws_region,
        bucket: o.bucket,
        key: o.key,
    };
    let result = match command {
        SnapshotCommand::List {
            bucket,
            prefix,
            aws_region,
        } => cli::list(&aws_region, &bucket, &prefix).await,
        SnapshotCommand::Show { object } => cli::show(&at(object)).await.map(|s| s + "\n"),
        SnapshotCommand::Restore {
            object,
            into_tenant,
            database_url,
        } => cli::restore_into(&at(object), &database_url, &into_tenant).await,
    };
    match result {
        Ok(out) => {
            print!("{out}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("snapshot: {e}");
            std::process::ExitCode::from(1)
        }
    }
}

async fn plan(args: &Args, files: &[std::path::PathBuf], output: &str) -> std::process::ExitCode {
    let rds_endpoints = match phoenix_operator::rds::endpoint_map::EndpointMap::from_env() {
        Ok(m) => m,
        Err(e) => {
            eprintln!("plan: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    let settings = Settings {
        namespace: args.namespace.clone(),
        dns_owner: args.dns_owner.clone(),
        route53: route53_settings(args),
        rotation_drain: Duration::from_secs(args.rotation_drain_seconds),
        rds_endpoints,
        ..Settings::default()
    };
    let result = async {
        let client = kube::Client::try_default().await?;
        Ok::<_, Box<dyn std::error::Error>>(
            phoenix_operator::plan::plan(client, files, &settings).await?,
        )
    }
    .await;
    match result {
        Ok(report) => {
            if output == "json" {
                match serde_json::to_string_pretty(&report) {
                    Ok(json) => println!("{json}"),
                    Err(e) => {
                        eprintln!("plan: {e}");
                        return std::process::ExitCode::from(1);
                    }
                }
            } else {
                print!("{}", report.text());
            }
            std::process::ExitCode::from(report.exit_code())
        }
        Err(e) => {
            eprintln!("plan: {e}");
            std::process::ExitCode::from(1)
        }
    }
}

fn route53_settings(args: &Args) -> phoenix_operator::dns::route53::Route53Settings {
    phoenix_operator::dns::route53::Route53Settings {
        requests_per_second: args.route53_requests_per_second.max(1),
        zone_cache: Duration::from_secs(args.route53_zone_cache_seconds),
        batch_window: Duration::from_millis(args.route53_batch_window_ms),
        batch_max_delay: Duration::from_millis(args.route53_batch_max_delay_ms),
        ..Default::default()
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let client = kube::Client::try_default().await?;
    let metrics = Arc::new(Metrics::default());
    let ready = Arc::new(AtomicBool::new(false));
    let listener = tokio::net::TcpListener::bind(args.probe_addr).await?;
    tracing::info!(addr = %args.probe_addr, "serving probes and metrics");
    let probes = http::router(Probes {
        metrics: metrics.clone(),
        ready: ready.clone(),
    });
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, probes).await {
            tracing::error!(error = %e, "probe server stopped");
        }
    });
    let settings = Settings {
        namespace: args.namespace.clone(),
        resync: Duration::from_secs(args.resync_seconds.max(1)),
        region_resync: Duration::from_secs(args.region_resync_seconds.max(1)),
        scim_token_grace: Duration::from_secs(args.scim_token_grace_seconds),
        rotation_drain: Duration::from_secs(args.rotation_drain_seconds),
        db_max_connections: args.db_max_connections.max(1),
        secret_namespaces: (!args.secret_namespaces.iter().any(|n| n == "*")).then(|| {
            args.secret_namespaces
                .iter()
                .filter(|n| !n.is_empty())
                .cloned()
                .collect()
        }),
        dns_owner: args.dns_owner.clone(),
        route53: route53_settings(&args),
        rds_endpoints: phoenix_operator::rds::endpoint_map::EndpointMap::from_env()?,
        ..Settings::default()
    };
    if !settings.rds_endpoints.is_empty() {
        tracing::warn!(
            "{} is set: RDS endpoints are mapped (a test and development facility)",
            phoenix_operator::rds::endpoint_map::ENV
        );
    }
    let shutdown = shutdown_signal().boxed().shared();
    if !args.leader_election {
        controller::run(client, settings, metrics, ready, shutdown).await;
        return Ok(());
    }

    let identity = std::env::var("POD_NAME").unwrap_or_else(|_| {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "phoenix-operator".to_owned());
        format!("{host}-{}", std::process::id())
    });
    let elector = Elector::new(
        client.clone(),
        &args.namespace,
        "phoenix-operator",
        identity,
        Duration::from_secs(args.lease_seconds.max(3)),
    );
    // A standby is ready: it can take over the moment the leader goes.
    ready.store(true, std::sync::atomic::Ordering::SeqCst);
    tokio::select! {
        () = elector.acquire() => {}
        () = shutdown.clone() => return Ok(()),
    }
    // The controllers stop on a signal; losing the lease ends the process at once.
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    {
        let (elector, shutdown) = (elector.clone(), shutdown.clone());
        tokio::spawn(async move {
            tokio::select! {
                () = shutdown => {}
                () = elector.hold() => {
                    // Another replica may take over any moment now: stop writing at once
                    // rather than wait for in-flight reconciles to finish.
                    tracing::error!("lost the leader lease; exiting so that only the new leader reconciles");
                    std::process::exit(1);
                }
            }
            let _ = stop_tx.send(());
        });
    }
    let stop = async move {
        let _ = stop_rx.await;
    };
    controller::run(client, settings, metrics, ready, stop).await;
    elector.release().await;
    Ok(())
}
