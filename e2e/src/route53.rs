//! Route53 in the stack's moto, read and written through the real AWS SDK: what the
//! suites assert on is what a user would list with the AWS CLI.

use aws_sdk_route53::Client;
use aws_sdk_route53::types::{
    Change, ChangeAction, ChangeBatch, HealthCheck, ResourceRecord, ResourceRecordSet, RrType, Tag,
    TagResourceType,
};

use crate::stack_var;

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
