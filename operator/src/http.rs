//! The operator's own HTTP endpoints: `/healthz`, `/readyz` and `/metrics`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::metrics::Metrics;

/// State of the endpoints.
#[derive(Clone)]
pub struct Probes {
    /// Metrics to expose.
    pub metrics: Arc<Metrics>,
    /// Whether the replica can do its job: running the controllers, or standing by for the lease.
    pub ready: Arc<AtomicBool>,
}

/// The router of the probe and metrics endpoints.
pub fn router(probes: Probes) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(probes)
}

async fn readyz(State(p): State<Probes>) -> impl IntoResponse {
    if p.ready.load(Ordering::SeqCst) {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "controllers not running")
    }
}

async fn metrics(State(p): State<Probes>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        p.metrics.encode(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    #[tokio::test]
    async fn readyz_follows_the_controllers_and_metrics_are_exposed() {
        let probes = Probes {
            metrics: Arc::new(Metrics::default()),
            ready: Arc::new(AtomicBool::new(false)),
        };
        let app = router(probes.clone());
        let res = app
            .clone()
            .oneshot(
                Request::get("/readyz")
                    .body(Body::empty())
                    .expect("request"),
            )
            .await
            .expect("response");
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        probes.ready.store(true, Ordering::SeqCst);
        probes
            .metrics
            .start("tenant")
            .finish(Some("DatabaseUnreachable"));
        let res = app
            .clone()
            .oneshot(
                Request::get("/readyz")
                    .body(Body::empty())
                    .expect("request"),
            )
            .await
            .expect("response");
        assert_eq!(res.status(), StatusCode::OK);
        let res = app
            .oneshot(
                Request::get("/metrics")
                    .body(Body::empty())
                    .expect("request"),
            )
            .await
            .expect("response");
        let body = axum::body::to_bytes(res.into_body(), 1 << 20)
            .await
            .expect("body");
        let text = String::from_utf8_lossy(&body);
        assert!(text.contains("phoenix_operator_reconcile_errors_total{controller=\"tenant\",reason=\"DatabaseUnreachable\"} 1"), "{text}");
        assert!(
            text.contains(
                "phoenix_operator_reconciles_total{controller=\"tenant\",result=\"error\"} 1"
            ),
            "{text}"
        );
    }
}
