//! The `phoenix-dataplane` binary: serves one region until SIGTERM or ctrl-c.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use phoenix_dataplane::error::Report;
use phoenix_dataplane::{Config, Dataplane};
use tracing_subscriber::EnvFilter;

/// Longest wait for in-flight requests after a shutdown signal (Kubernetes' default grace
/// period is 30 s).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(25);

#[tokio::main]
async fn main() -> ExitCode {
    if std::env::args_os().nth(1).is_some_and(|a| a == "audit") {
        return phoenix_dataplane::audit::cli::run(std::env::args_os().skip(1)).await;
    }
    let config = Config::parse();
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_current_span(true)
        .with_span_list(false)
        .init();

    let dataplane = match Dataplane::bind(&config).await {
        Ok(dataplane) => dataplane,
        Err(error) => {
            tracing::error!(error = %Report(&error), "data plane did not start");
            return ExitCode::FAILURE;
        }
    };
    shutdown_requested().await;
    tracing::info!("shutting down: draining in-flight requests");
    match tokio::time::timeout(DRAIN_TIMEOUT, dataplane.stop()).await {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(error)) => {
            tracing::error!(error = %Report(&error), "data plane stopped with an error");
            ExitCode::FAILURE
        }
        Err(_) => {
            tracing::warn!("requests still in flight after {DRAIN_TIMEOUT:?}; exiting anyway");
            ExitCode::FAILURE
        }
    }
}

async fn shutdown_requested() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut sigterm) => {
                sigterm.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
