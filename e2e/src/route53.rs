//! Route53 in the stack's moto, read and written through the real AWS SDK: what the
//! suites assert on is what a user would list with the AWS CLI.

use aws_sdk_route53::Client;
use aws_sdk_route53::types::{
    Change, ChangeAction, ChangeBatch, HealthCheck, ResourceRecord, ResourceRecordSet, RrType, Tag,
    TagResourceType,
};

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{eventually, free_port, repo, stack_var};

/// The hosted zone the stack creates and the example Regions name.
pub const ZONE: &str = "phoenixguardian.test.";

/// A client for the stack's moto (`AWS_ENDPOINT_URL`).
pub async fn client() -> Client {
    let _ = stack_var("AWS_ENDPOINT_URL");
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(http)
        .region(aws_config::Region::new("us-east-1"))
        .load()
        .await;
    Client::new(&config)
}

/// The id of the stack's zone.
pub async fn zone_id(r53: &Client) -> String {
    let out = r53
        .list_hosted_zones_by_name()
        .dns_name(ZONE)
        .send()
        .await
        .expect("ListHostedZonesByName");
    let zone = out
        .hosted_zones()
        .iter()
        .find(|z| z.name() == ZONE)
        .unwrap_or_else(|| {
            panic!("no hosted zone {ZONE} in moto: the stack creates it (e2e/lib/route53.sh)")
        });
    zone.id().trim_start_matches("/hostedzone/").to_owned()
}

/// Every record set of the zone (paginated).
pub async fn records(r53: &Client, zone: &str) -> Vec<ResourceRecordSet> {
    let mut out = Vec::new();
    let mut next: Option<(String, RrType, Option<String>)> = None;
    loop {
        let mut req = r53.list_resource_record_sets().hosted_zone_id(zone);
        if let Some((name, rtype, id)) = next.take() {
            req = req
                .start_record_name(name)
                .start_record_type(rtype)
                .set_start_record_identifier(id);
        }
        let page = req.send().await.expect("ListResourceRecordSets");
        out.extend(page.resource_record_sets().iter().cloned());
        match (
            page.is_truncated(),
            page.next_record_name(),
            page.next_record_type(),
        ) {
            (true, Some(n), Some(t)) => {
                next = Some((
                    n.to_owned(),
                    t.clone(),
                    page.next_record_identifier().map(str::to_owned),
                ));
            }
            _ => return out,
        }
    }
}

/// The record sets named `fqdn` (with its trailing dot).
pub async fn records_named(r53: &Client, zone: &str, fqdn: &str) -> Vec<ResourceRecordSet> {
    records(r53, zone)
        .await
        .into_iter()
        .filter(|r| r.name() == fqdn)
        .collect()
}

/// Writes a plain record nobody's ownership record covers, as another team would.
pub async fn upsert_foreign(r53: &Client, zone: &str, fqdn: &str, rtype: RrType, value: &str) {
    let set = ResourceRecordSet::builder()
        .name(fqdn)
        .r#type(rtype)
        .ttl(300)
        .resource_records(
            ResourceRecord::builder()
                .value(value)
                .build()
                .expect("record"),
        )
        .build()
        .expect("record set");
    let change = Change::builder()
        .action(ChangeAction::Upsert)
        .resource_record_set(set)
        .build()
        .expect("change");
    r53.change_resource_record_sets()
        .hosted_zone_id(zone)
        .change_batch(
            ChangeBatch::builder()
                .changes(change)
                .build()
                .expect("batch"),
        )
        .send()
        .await
        .expect("ChangeResourceRecordSets");
}

/// Every health check (paginated).
pub async fn health_checks(r53: &Client) -> Vec<HealthCheck> {
    let mut out = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let page = r53
            .list_health_checks()
            .set_marker(marker.take())
            .send()
            .await
            .expect("ListHealthChecks");
        out.extend(page.health_checks().iter().cloned());
        match (page.is_truncated(), page.next_marker()) {
            (true, Some(m)) => marker = Some(m.to_owned()),
            _ => return out,
        }
    }
}

/// The tags of health check `id`.
pub async fn health_check_tags(r53: &Client, id: &str) -> Vec<Tag> {
    r53.list_tags_for_resource()
        .resource_type(TagResourceType::Healthcheck)
        .resource_id(id)
        .send()
        .await
        .expect("ListTagsForResource")
        .resource_tag_set()
        .map(|s| s.tags().to_vec())
        .unwrap_or_default()
}

/// The fault-injecting proxy (`e2e/faults/route53_proxy.py`) in front of the stack's
/// moto, killed when dropped.
pub struct Proxy {
    child: Child,
    /// Its URL (the operator's `AWS_ENDPOINT_URL`).
    pub url: String,
}

impl Proxy {
    /// Starts it answering `share` of the requests with Route53 throttling errors.
    pub async fn start(share: f64) -> Self {
        let port = free_port();
        let script = repo().join("e2e/faults/route53_proxy.py");
        let child = Command::new("python3")
            .arg(&script)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--upstream", &stack_var("AWS_ENDPOINT_URL")])
            .args(["--share", &share.to_string()])
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {} (python3 is required): {e}",
                    script.display()
                )
            });
        let url = format!("http://127.0.0.1:{port}");
        let proxy = Self { child, url };
        eventually(
            "the Route53 proxy answers",
            Duration::from_secs(20),
            || async { proxy.stats().await.map(|_| ()) },
        )
        .await;
        proxy
    }

    /// From now on, POSTs whose path ends with one of `suffixes` reach moto but their
    /// answers are held back until [`Proxy::release`].
    pub async fn hold(&self, suffixes: &[&str]) {
        reqwest::Client::new()
            .post(format!("{}/_proxy/hold", self.url))
            .json(&serde_json::json!({ "suffixes": suffixes }))
            .send()
            .await
            .expect("proxy hold");
    }

    /// From now on, every change batch naming one of `names` (fully qualified) is refused
    /// as a whole with Route53's `InvalidChangeBatch`, without reaching moto.
    pub async fn reject(&self, names: &[&str]) {
        reqwest::Client::new()
            .post(format!("{}/_proxy/reject", self.url))
            .json(&serde_json::json!({ "names": names }))
            .send()
            .await
            .expect("proxy reject");
    }

    /// Answers what was held, and holds nothing more.
    pub async fn release(&self) {
        reqwest::Client::new()
            .post(format!("{}/_proxy/release", self.url))
            .send()
            .await
            .expect("proxy release");
    }

    /// Its counters: `requests`, `throttled`, `held`, `rejected`, `by_code`.
    pub async fn stats(&self) -> Option<serde_json::Value> {
        reqwest::get(format!("{}/_proxy/stats", self.url))
            .await
            .ok()?
            .json()
            .await
            .ok()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The sum of counter `name` over its label sets that contain every one of `labels`
/// (e.g. `outcome="success"`), read from the `/metrics` of the process at `addr`.
pub async fn counter(addr: &str, name: &str, labels: &[&str]) -> f64 {
    let text = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && labels.iter().all(|x| l.contains(x)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .fold(0.0, |a, b| a + b)
}
