//! The real [`Dns`](crate::controller::providers::Dns) provider: aws-sdk-route53 (against
//! `AWS_ENDPOINT_URL` when set: moto in the local stack), every request paced by one
//! token bucket and retried on `Throttling` / `PriorRequestNotComplete` with exponential
//! backoff and jitter, and counted in the metrics. Each zone's record sets are read
//! whole (paginated) and cached for a short window, so many tenants converging at once
//! share one read, and the cache follows the changes the operator makes.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_route53::Client;
use aws_sdk_route53::error::ProvideErrorMetadata;
use aws_sdk_route53::types::ChangeStatus;
use backon::{ExponentialBuilder, Retryable};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::Mutex;

use super::batch::{self, Limits, SendError};
use super::{
    Applied, Change, DnsError, HealthCheckOutcome, HealthCheckSpec, RecordSet, Zone, ZoneRef,
};
use crate::metrics::Metrics;

mod coalesce;
mod convert;
mod health;
pub mod round;

pub use coalesce::Route53;

/// Settings of the Route53 provider.
#[derive(Clone, Debug)]
pub struct Route53Settings {
    /// Requests per second, all operations together (Route53 allows 5 per account).
    pub requests_per_second: u32,
    /// How long a zone's cached record sets are trusted.
    pub zone_cache: Duration,
    /// Longest wait for a change to become INSYNC.
    pub insync_timeout: Duration,
    /// A round of changes is sent once none arrived for this long (each arrival restarts
    /// it): the changes of every tenant converging meanwhile share its batches.
    pub batch_window: Duration,
    /// ... and at the latest once its first change has waited this long (a full round,
    /// one request's worth, goes at once).
    pub batch_max_delay: Duration,
}

impl Default for Route53Settings {
    fn default() -> Self {
        Self {
            requests_per_second: 5,
            zone_cache: Duration::from_secs(10),
            insync_timeout: Duration::from_secs(120),
            batch_window: Duration::from_millis(2000),
            batch_max_delay: Duration::from_secs(10),
        }
    }
}

/// A cached read of one zone.
struct Snapshot {
    records: Arc<Vec<RecordSet>>,
    read_at: Instant,
}

/// The SDK client with its pacing, metrics and zone cache; [`Route53`] queues changes in
/// front of it.
struct Inner {
    client: Client,
    limiter: DefaultDirectRateLimiter,
    metrics: Arc<Metrics>,
    settings: Route53Settings,
    zones: Mutex<HashMap<String, Arc<Mutex<Option<Snapshot>>>>>,
}

/// Whether an SDK error is Route53 asking us to slow down.
fn is_throttle(code: Option<&str>) -> bool {
    matches!(
        code,
        Some("Throttling" | "ThrottlingException" | "PriorRequestNotComplete")
    )
}

/// Route53 refuses a change batch with a document whose root element is
/// `InvalidChangeBatch` (a `Messages` list), not the usual `ErrorResponse`; the SDK leaves
/// it without an error code. The messages of such a body, if `body` is one.
fn invalid_change_batch(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let root = text.find("<InvalidChangeBatch")?;
    let messages: Vec<String> = text[root..]
        .split("<Message>")
        .skip(1)
        .filter_map(|m| m.split("</Message>").next())
        .map(unescape_xml)
        .collect();
    Some(if messages.is_empty() {
        "InvalidChangeBatch".to_owned()
    } else {
        format!("InvalidChangeBatch: {}", messages.join("; "))
    })
}

// The five predefined XML entities; messages are plain text.
fn unescape_xml(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// The token bucket: `rate` requests per second, with a burst of one.
pub fn limiter(rate: u32) -> DefaultDirectRateLimiter {
    let rate = NonZeroU32::new(rate.max(1)).unwrap_or(NonZeroU32::MIN);
    RateLimiter::direct(Quota::per_second(rate).allow_burst(NonZeroU32::MIN))
}

impl Inner {
    /// A client from the environment's AWS settings (credentials, `AWS_ENDPOINT_URL`).
    async fn from_env(metrics: Arc<Metrics>, settings: Route53Settings) -> Self {
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .http_client(http)
            // Route53 is global; its endpoint lives in us-east-1.
            .region(aws_config::Region::new("us-east-1"))
            // Retries are ours: paced, counted, with jitter.
            .retry_config(aws_config::retry::RetryConfig::disabled())
            .timeout_config(
                aws_config::timeout::TimeoutConfig::builder()
                    .operation_attempt_timeout(Duration::from_secs(30))
                    .build(),
            )
            .load()
            .await;
        Self {
            client: Client::new(&shared),
            limiter: limiter(settings.requests_per_second),
            metrics,
            settings,
            zones: Mutex::new(HashMap::new()),
        }
    }

    /// Runs one Route53 request: paced, retried while throttled, counted.
    async fn call<T, E, F, Fut>(
        &self,
        operation: &'static str,
        f: F,
    ) -> Result<T, SendError<DnsError>>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, aws_sdk_route53::error::SdkError<E>>>,
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let attempt = || async {
            self.limiter.until_ready().await;
            let out = f().await;
            let outcome = match &out {
                Ok(_) => "success",
                Err(e) if is_throttle(e.code()) => {
                    self.metrics.route53_throttled(operation);
                    "throttled"
                }
                Err(_) => "error",
            };
            self.metrics.route53_request(operation, outcome);
            out
        };
        let retries = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(200))
            .with_max_delay(Duration::from_secs(10))
            .with_max_times(8)
            .with_jitter();
        attempt
            .retry(retries)
            .when(|e| is_throttle(e.code()))
            .await
            .map_err(|e| {
                let message = match (e.code(), e.message()) {
                    (Some(code), Some(msg)) => format!("{code}: {msg}"),
                    (Some(code), None) => code.to_owned(),
                    _ => aws_sdk_route53::error::DisplayErrorContext(&e).to_string(),
                };
                let unparsed = e
                    .raw_response()
                    .and_then(|r| r.body().bytes())
                    .and_then(invalid_change_batch);
                if let Some(messages) = unparsed {
                    SendError::Rejected(messages)
                } else if matches!(e.code(), Some("InvalidChangeBatch" | "InvalidInput")) {
                    SendError::Rejected(message)
                } else {
                    SendError::Failed(DnsError::Api { operation, message })
                }
            })
    }

    async fn read_zone(&self, zone_id: &str) -> Result<Vec<RecordSet>, DnsError> {
        let mut out = Vec::new();
        let mut start: Option<(String, aws_sdk_route53::types::RrType, Option<String>)> = None;
        loop {
            let page = self
                .call("ListResourceRecordSets", || {
                    let mut req = self
                        .client
                        .list_resource_record_sets()
                        .hosted_zone_id(zone_id);
                    if let Some((name, rtype, id)) = &start {
                        req = req
                            .start_record_name(name)
                            .start_record_type(rtype.clone())
                            .set_start_record_identifier(id.clone());
                    }
                    req.send()
                })
                .await
                .map_err(flatten)?;
            out.extend(page.resource_record_sets().iter().map(convert::from_sdk));
            match (
                page.is_truncated(),
                page.next_record_name(),
                page.next_record_type(),
            ) {
                (true, Some(name), Some(rtype)) => {
                    start = Some((
                        name.to_owned(),
                        rtype.clone(),
                        page.next_record_identifier().map(str::to_owned),
                    ));
                }
                _ => return Ok(out),
            }
        }
    }

    async fn snapshot(&self, zone_id: &str) -> Arc<Mutex<Option<Snapshot>>> {
        self.zones
            .lock()
            .await
            .entry(zone_id.to_owned())
            .or_default()
            .clone()
    }

    /// Sends one batch and waits until Route53 reports it INSYNC.
    async fn send(&self, zone_id: &str, changes: Vec<Change>) -> Result<(), SendError<DnsError>> {
        let sdk_changes: Vec<aws_sdk_route53::types::Change> = changes
            .iter()
            .map(convert::to_sdk)
            .collect::<Result<_, _>>()
            .map_err(SendError::Rejected)?;
        let batch = aws_sdk_route53::types::ChangeBatch::builder()
            .set_changes(Some(sdk_changes))
            .comment("phoenix-operator")
            .build()
            .map_err(|e| SendError::Rejected(e.to_string()))?;
        let out = self
            .call("ChangeResourceRecordSets", || {
                self.client
                    .change_resource_record_sets()
                    .hosted_zone_id(zone_id)
                    .change_batch(batch.clone())
                    .send()
            })
            .await?;
        self.metrics.route53_batch(changes.len());
        let mut info = out.change_info().cloned();
        let deadline = Instant::now() + self.settings.insync_timeout;
        while let Some(current) = info {
            if current.status() == &ChangeStatus::Insync {
                break;
            }
            if Instant::now() > deadline {
                return Err(SendError::Failed(DnsError::Pending(
                    current.id().to_owned(),
                )));
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
            let id = current.id().to_owned();
            let got = self
                .call("GetChange", || self.client.get_change().id(&id).send())
                .await?;
            info = got.change_info().cloned();
        }
        // The cache follows what was applied.
        if let Some(snap) = self.snapshot(zone_id).await.lock().await.as_mut() {
            let mut records = snap.records.as_ref().clone();
            for c in &changes {
                records.retain(|r| r.key() != c.record.key());
                if c.action == super::Action::Upsert {
                    records.push(c.record.clone());
                }
            }
            snap.records = Arc::new(records);
        }
        Ok(())
    }
}

fn flatten(e: SendError<DnsError>) -> DnsError {
    match e {
        SendError::Failed(e) => e,
        SendError::Rejected(message) => DnsError::Api {
            operation: "request",
            message,
        },
    }
}

impl Inner {
    async fn zone(&self, zone: &ZoneRef) -> Result<Zone, DnsError> {
        match zone {
            ZoneRef::Id(id) => {
                let out = self
                    .call("GetHostedZone", || {
                        self.client.get_hosted_zone().id(id).send()
                    })
                    .await
                    .map_err(flatten)?;
                let z = out
                    .hosted_zone()
                    .ok_or_else(|| DnsError::ZoneNotFound(id.clone()))?;
                Ok(convert::zone(z))
            }
            ZoneRef::Name(name) => {
                let wanted = super::fqdn(name);
                let out = self
                    .call("ListHostedZonesByName", || {
                        self.client
                            .list_hosted_zones_by_name()
                            .dns_name(&wanted)
                            .send()
                    })
                    .await
                    .map_err(flatten)?;
                let found: Vec<Zone> = out
                    .hosted_zones()
                    .iter()
                    .map(convert::zone)
                    .filter(|z| z.name == wanted)
                    .collect();
                match found.as_slice() {
                    [one] => Ok(one.clone()),
                    [] => Err(DnsError::ZoneNotFound(wanted)),
                    many => Err(DnsError::ZoneAmbiguous {
                        name: wanted,
                        count: many.len(),
                    }),
                }
            }
        }
    }

    async fn records(&self, zone_id: &str) -> Result<Arc<Vec<RecordSet>>, DnsError> {
        let snap = self.snapshot(zone_id).await;
        let mut guard = snap.lock().await;
        if let Some(s) = guard.as_ref()
            && s.read_at.elapsed() < self.settings.zone_cache
        {
            return Ok(s.records.clone());
        }
        let records = Arc::new(self.read_zone(zone_id).await?);
        *guard = Some(Snapshot {
            records: records.clone(),
            read_at: Instant::now(),
        });
        Ok(records)
    }

    /// Sends `changes` now: in batches within the limits, each bisected when rejected.
    async fn apply(&self, zone_id: &str, changes: Vec<Change>) -> Result<Applied, DnsError> {
        let mut applied = Applied::default();
        for b in batch::batches(changes, Limits::default()) {
            let (requests, rejected) =
                batch::send_bisecting(b, |part| self.send(zone_id, part)).await?;
            applied.requests += requests;
            applied.rejected.extend(rejected);
        }
        Ok(applied)
    }

    async fn ensure_health_check(
        &self,
        spec: &HealthCheckSpec,
    ) -> Result<HealthCheckOutcome, DnsError> {
        health::ensure(self, spec).await
    }

    async fn delete_health_check(
        &self,
        caller_reference: &str,
    ) -> Result<Option<String>, DnsError> {
        health::delete(self, caller_reference).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_codes_are_retried_others_not() {
        assert!(is_throttle(Some("Throttling")));
        assert!(is_throttle(Some("PriorRequestNotComplete")));
        assert!(!is_throttle(Some("InvalidChangeBatch")));
    }

    #[test]
    fn a_refused_batch_in_route53s_own_document_is_read_from_the_body() {
        let body = br#"<?xml version="1.0" encoding="UTF-8"?>
<InvalidChangeBatch xmlns="https://route53.amazonaws.com/doc/2013-04-01/"><Messages><Message>Tried to create resource record set [name='a.example.', type='CNAME'] but it already exists</Message><Message>x &amp; y</Message></Messages><RequestId>r</RequestId></InvalidChangeBatch>"#;
        assert_eq!(
            invalid_change_batch(body).as_deref(),
            Some(
                "InvalidChangeBatch: Tried to create resource record set [name='a.example.', type='CNAME'] but it already exists; x & y"
            )
        );
        let usual = br#"<ErrorResponse><Error><Code>Throttling</Code><Message>Rate exceeded</Message></Error></ErrorResponse>"#;
        assert_eq!(invalid_change_batch(usual), None);
        assert_eq!(invalid_change_batch(&[0xff, 0xfe]), None);
        assert!(!is_throttle(None));
    }

    #[tokio::test]
    async fn the_token_bucket_paces_requests_to_its_rate() {
        let bucket = limiter(20);
        let started = Instant::now();
        for _ in 0..11 {
            bucket.until_ready().await;
        }
        // One at once, then ten more at 20/s: at least half a second.
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(450), "{took:?}");
        assert!(took < Duration::from_secs(2), "{took:?}");
    }
}
