//! Probes of the process: `/healthz` (alive) and `/readyz` (able to serve).

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use crate::app::AppState;
use crate::error::Report;

/// How long readiness waits for the database to answer.
pub const READINESS_TIMEOUT: Duration = Duration::from_secs(1);

/// The probe routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

/// Body of `/healthz` and `/readyz`.
#[derive(Debug, Serialize)]
pub struct Health {
    /// `ok`, `ready` or `unavailable`.
    pub status: &'static str,
    /// Why the process is not ready; empty when it is.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<&'static str>,
}

async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok",
        reasons: Vec::new(),
    })
}

async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    let mut reasons = Vec::new();
    if !state.catalog.is_loaded() {
        reasons.push("the tenant catalog has not loaded yet");
    }
    match tokio::time::timeout(READINESS_TIMEOUT, state.probe.ping()).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => {
            tracing::warn!(error = %Report(&error), "readiness: database check failed");
            reasons.push("the database did not answer SELECT 1");
        }
        Err(_) => {
            tracing::warn!("readiness: database did not answer within {READINESS_TIMEOUT:?}");
            reasons.push("the database did not answer SELECT 1 within 1 s");
        }
    }
    if reasons.is_empty() {
        (
            StatusCode::OK,
            Json(Health {
                status: "ready",
                reasons,
            }),
        )
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Health {
                status: "unavailable",
                reasons,
            }),
        )
    }
}
