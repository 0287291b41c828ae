//! DNS after a declarative failover (ADR 0011), against the stack's moto Route53: a primary
//! and a streaming standby declared as Regions with ingresses and DNS; a tenant gets a
//! latency record in each. Once the Replica is flipped to Primary and promoted, the old
//! Region's latency record (same set identifier, same latency region) points at the
//! promoted Region's ingress under its health check, and the tenant stays `DNSReady`.

use std::time::Duration;

use phoenix_e2e::failover::*;
use phoenix_e2e::guard::ScenarioGuard;
use phoenix_e2e::pg_lineage::PgLineage;
use phoenix_e2e::route53::{self, ZONE};
use phoenix_e2e::*;

const RESIDENCY: &str = "FODNS";

fn region_yaml(name: &str, aws: &str, replica_of: Option<&str>) -> String {
    let role = match replica_of {
        Some(source) => format!("Replica\n  replicaOf: {source}"),
        None => "Primary".to_owned(),
    };
    format!(
        "---\napiVersion: phoenixguardian.io/v1alpha1\nkind: Region\nmetadata:\n  name: {name}\nspec:\n  awsRegion: {aws}\n  role: {role}\n  dataResidency: [{RESIDENCY}]\n  database:\n    writer:\n      connectionSecretRef: {{namespace: {NAMESPACE}, name: {name}-db, key: dsn}}\n  ingress:\n    hostname: api.{name}.phoenixguardian.test\n  dns:\n    zoneName: {ZONE}\n"
    )
}

fn health_check(region: &phoenix_crds::Region) -> Option<String> {
    region
        .status
        .as_ref()?
        .dns
        .as_ref()?
        .health_check_id
        .clone()
}

/// The tenant's latency records: (set identifier, latency region, value, health check).
type Latency = Vec<(String, String, String, String)>;

async fn latency(r53: &aws_sdk_route53::Client, zone: &str, host: &str) -> Latency {
    let mut out: Latency = route53::records_named(r53, zone, host)
        .await
        .iter()
        .filter(|r| r.r#type().as_str() == "CNAME")
        .map(|r| {
            (
                r.set_identifier().unwrap_or_default().to_owned(),
                r.region()
                    .map(|x| x.as_str().to_owned())
                    .unwrap_or_default(),
                r.resource_records()
                    .first()
                    .map(|v| v.value().to_owned())
                    .unwrap_or_default(),
                r.health_check_id().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_failover_the_old_regions_latency_record_points_at_the_promoted_region() {
    let _serial = SERIAL.lock().await;
    install_platform();
    let lineage = PgLineage::start("failover_dns", 1).await;
    let _operator =
        Process::operator_with("e2e-operator", 5, &[("REGION_RESYNC_SECONDS", "2")]).await;
    let guard = ScenarioGuard::new("failover-dns");
    let (old, replicas) = names("fodns", 1);
    let new = replicas[0].clone();
    forget_claims(&replicas);
    let mut manifest = secret_yaml(&format!("{old}-db"), "dsn", &lineage.primary.dsn("phoenix"));
    manifest.push_str(&region_yaml(&old, "us-east-1", None));
    manifest.push_str(&secret_yaml(
        &format!("{new}-db"),
        "dsn",
        &lineage.standbys[0].dsn("phoenix"),
    ));
    manifest.push_str(&region_yaml(&new, "eu-west-1", Some(&old)));
    guard.apply(&manifest);
    let old_check = health_check(
        &region_where(&old, "Ready with a health check", |r| {
            region_ready(r) && health_check(r).is_some()
        })
        .await,
    )
    .expect("old health check");
    let new_check = health_check(
        &region_where(&new, "Ready as a replica with a health check", |r| {
            region_ready(r) && health_check(r).is_some()
        })
        .await,
    )
    .expect("new health check");
    assert_ne!(old_check, new_check);

    let tenants = declare_tenants(&guard, "fodns", RESIDENCY, 1);
    let tenant = &tenants[0];
    tenant_where(tenant, "Ready with its records", |t| {
        condition(t, "Ready").is_some_and(|(s, _, _)| s == "True")
            && condition(t, "DNSReady").is_some_and(|(s, _, _)| s == "True")
    })
    .await;
    let r53 = route53::client().await;
    let zone = route53::zone_id(&r53).await;
    let host = format!("{tenant}.e2e.phoenixguardian.test.");
    let ingress = |r: &str| format!("api.{r}.phoenixguardian.test.");
    assert_eq!(
        latency(&r53, &zone, &host).await,
        vec![
            (
                old.clone(),
                "us-east-1".to_owned(),
                ingress(&old),
                old_check.clone()
            ),
            (
                new.clone(),
                "eu-west-1".to_owned(),
                ingress(&new),
                new_check.clone()
            ),
        ]
    );

    flip(&replicas);
    region_where(&new, "promoted", |r| {
        r.status
            .as_ref()
            .and_then(|s| s.failover.as_ref())
            .is_some_and(|f| f.promoted_from.as_deref() == Some(old.as_str()))
    })
    .await;
    region_where(&old, "Superseded", |r| {
        region_condition(r, "Ready")
            .is_some_and(|(s, reason, _)| s == "False" && reason == "Superseded")
    })
    .await;

    // The old Region's record keeps its identifier and latency region, and now sends its
    // clients to the promoted Region's ingress, following that Region's health check.
    let want = vec![
        (
            old.clone(),
            "us-east-1".to_owned(),
            ingress(&new),
            new_check.clone(),
        ),
        (
            new.clone(),
            "eu-west-1".to_owned(),
            ingress(&new),
            new_check.clone(),
        ),
    ];
    let (r53, zone, host, want) = (&r53, &zone, &host, &want);
    eventually(
        "the old region's record re-pointed",
        WITHIN,
        || async move { (latency(r53, zone, host).await == *want).then_some(()) },
    )
    .await;
    let t = tenant_where(tenant, "served by the promoted region", |t| {
        t.status.as_ref().and_then(|s| s.serving_region.as_deref()) == Some(new.as_str())
    })
    .await;
    let (status, reason, message) = condition(&t, "DNSReady").expect("DNSReady");
    assert_eq!((status.as_str(), reason.as_str()), ("True", "RecordsReady"));
    assert!(
        message.contains(&old) && message.contains(&new),
        "{message}"
    );
    let owner = route53::records_named(r53, zone, &format!("_phoenix-owner.{host}")).await;
    assert_eq!(owner.len(), 1, "the ownership record stays");

    // Several passes later the records hold (nothing flips them back).
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(latency(r53, zone, host).await, *want);

    drop(guard);
    // The tenant's records go with it.
    eventually("the tenant's records removed", WITHIN, || async move {
        route53::records_named(r53, zone, host)
            .await
            .is_empty()
            .then_some(())
    })
    .await;
    forget_claims(&replicas);
}
