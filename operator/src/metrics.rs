//! Prometheus metrics of the operator (`/metrics`).

use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of a reconcile outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcileLabels {
    /// `region` or `tenant`.
    pub controller: String,
    /// `success` or `error`.
    pub result: String,
}

/// Labels of an error.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// `region` or `tenant`.
    pub controller: String,
    /// Condition reason of the error.
    pub reason: String,
}

/// Labels naming a controller.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    /// `region` or `tenant`.
    pub controller: String,
}

/// Labels of a Route53 request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Route53Labels {
    /// The API operation (`ChangeResourceRecordSets`, ...).
    pub operation: String,
    /// `success`, `throttled` or `error`.
    pub outcome: String,
}

/// Labels naming a Route53 operation.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    /// The API operation.
    pub operation: String,
}

/// The operator's metrics.
pub struct Metrics {
    registry: Mutex<Registry>,
    reconciles: Family<ReconcileLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    duration: Family<ControllerLabels, Histogram>,
    in_flight: Family<ControllerLabels, Gauge>,
    rls_repairs: Counter,
    leading: Gauge,
    route53_requests: Family<Route53Labels, Counter>,
    route53_throttles: Family<OperationLabels, Counter>,
    route53_batch_changes: Histogram,
    route53_queued: Gauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("phoenix_operator");
        let reconciles = Family::<ReconcileLabels, Counter>::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        let duration = Family::<ControllerLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.005, 2.0, 14))
        });
        let in_flight = Family::<ControllerLabels, Gauge>::default();
        let rls_repairs = Counter::default();
        let leading = Gauge::default();
        registry.register(
            "reconciles",
            "Reconciles by controller and result",
            reconciles.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Reconcile errors by controller and reason",
            errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Duration of one reconcile",
            duration.clone(),
        );
        registry.register(
            "reconciles_in_flight",
            "Reconciles running now (the work queue being drained)",
            in_flight.clone(),
        );
        registry.register(
            "rls_repairs",
            "Tables whose row level security drifted and was repaired",
            rls_repairs.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica holds the lease and runs the controllers",
            leading.clone(),
        );
        let route53_requests = Family::<Route53Labels, Counter>::default();
        let route53_throttles = Family::<OperationLabels, Counter>::default();
        let route53_batch_changes = Histogram::new(exponential_buckets(1.0, 4.0, 6));
        registry.register(
            "route53_requests",
            "Route53 API requests by operation and outcome (each retry counts)",
            route53_requests.clone(),
        );
        registry.register(
            "route53_throttles",
            "Route53 requests answered Throttling or PriorRequestNotComplete",
            route53_throttles.clone(),
        );
        registry.register(
            "route53_batch_changes",
            "Changes per applied ChangeResourceRecordSets request",
            route53_batch_changes.clone(),
        );
        let route53_queued = Gauge::default();
        registry.register(
            "route53_queued_changes",
            "Route53 changes waiting for the next round of requests (not those being sent)",
            route53_queued.clone(),
        );
        Self {
            registry: Mutex::new(registry),
            route53_queued,
            route53_requests,
            route53_throttles,
            route53_batch_changes,
            reconciles,
            errors,
            duration,
            in_flight,
            rls_repairs,
            leading,
        }
    }
}

impl Metrics {
    /// Marks a reconcile as started; the guard records its outcome.
    pub fn start(&self, controller: &'static str) -> ReconcileTimer<'_> {
        self.in_flight
            .get_or_create(&ControllerLabels {
                controller: controller.to_owned(),
            })
            .inc();
        ReconcileTimer {
            metrics: self,
            controller,
            started: std::time::Instant::now(),
        }
    }

    /// Records whether this replica runs the controllers.
    pub fn set_leading(&self, leading: bool) {
        self.leading.set(i64::from(leading));
    }

    /// Counts a repaired table.
    pub fn rls_repaired(&self, tables: usize) {
        self.rls_repairs.inc_by(tables as u64);
    }

    /// Counts one Route53 request.
    pub fn route53_request(&self, operation: &str, outcome: &str) {
        self.route53_requests
            .get_or_create(&Route53Labels {
                operation: operation.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// Counts one throttled Route53 request.
    pub fn route53_throttled(&self, operation: &str) {
        self.route53_throttles
            .get_or_create(&OperationLabels {
                operation: operation.to_owned(),
            })
            .inc();
    }

    /// Records the size of one applied change batch.
    pub fn route53_batch(&self, changes: usize) {
        self.route53_batch_changes.observe(changes as f64);
    }

    /// Adds `delta` to the changes waiting for the next round.
    pub fn route53_queued(&self, delta: i64) {
        self.route53_queued.inc_by(delta);
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        if prometheus_client::encoding::text::encode(&mut out, &registry).is_err() {
            out.clear();
        }
        out
    }
}

/// Records one reconcile when finished.
pub struct ReconcileTimer<'a> {
    metrics: &'a Metrics,
    controller: &'static str,
    started: std::time::Instant,
}

impl ReconcileTimer<'_> {
    /// Records the outcome; `error_reason` is None on success.
    pub fn finish(self, error_reason: Option<&str>) {
        let elapsed: Duration = self.started.elapsed();
        let controller = self.controller.to_owned();
        self.metrics
            .duration
            .get_or_create(&ControllerLabels {
                controller: controller.clone(),
            })
            .observe(elapsed.as_secs_f64());
        let result = if error_reason.is_some() {
            "error"
        } else {
            "success"
        };
        self.metrics
            .reconciles
            .get_or_create(&ReconcileLabels {
                controller: controller.clone(),
                result: result.to_owned(),
            })
            .inc();
        if let Some(reason) = error_reason {
            self.metrics
                .errors
                .get_or_create(&ErrorLabels {
                    controller: controller.clone(),
                    reason: reason.to_owned(),
                })
                .inc();
        }
        self.metrics
            .in_flight
            .get_or_create(&ControllerLabels { controller })
            .dec();
    }
}
