//! Tenant DNS in Route53 (moto, through the real SDK) with the example Regions: latency
//! records by residency following each Region's health check, ownership records, records
//! of others left alone, host names outside the zone refused, zero change requests on a
//! converged resync, and records removed with their tenant.

use std::time::Duration;

use kube::{Api, ResourceExt};
use phoenix_crds::Region;
use phoenix_e2e::events::{Regarding, instant, wait_event};
use phoenix_e2e::guard::ScenarioGuard;
use phoenix_e2e::route53::{self, ZONE};
use phoenix_e2e::scenario::*;
use phoenix_e2e::*;

const CHANGES: &str = r#"phoenix_operator_route53_requests_total{operation="ChangeResourceRecordSets",outcome="success"}"#;
const TENANT_RECONCILES: &str =
    r#"phoenix_operator_reconciles_total{controller="tenant",result="success"}"#;

fn tenant(name: &str, residency: &str, hostname: &str) -> String {
    format!(
        "---\napiVersion: phoenixguardian.io/v1alpha1\nkind: Tenant\nmetadata:\n  name: {name}\nspec:\n  displayName: {name} hospital\n  dataResidency: [{residency}]\n  database:\n    deletionPolicy: Delete\n  dns:\n    hostname: {hostname}\n"
    )
}

fn dns_ready(t: &phoenix_crds::Tenant) -> Option<(String, String, String)> {
    condition(t, "DNSReady")
}

async fn health_check_of(region: &str) -> String {
    let api: Api<Region> = Api::all(kube_client().await);
    eventually(
        &format!("region {region} shows its health check"),
        READY_TIMEOUT,
        || {
            let api = api.clone();
            async move { api.get(region).await.ok()?.status?.dns?.health_check_id }
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_get_latency_records_of_their_residency_only_and_lose_them_on_deletion() {
    let _serial = SERIAL.lock().await;
    install_platform();
    let operator = Process::operator(5).await;
    let scenario = ScenarioGuard::new("dns-records");
    let r53 = route53::client().await;
    let zone = route53::zone_id(&r53).await;

    // One health check per Region ingress, found again rather than duplicated.
    let regions: Api<Region> = Api::all(kube_client().await);
    let mut check_ids = std::collections::HashMap::new();
    for name in REGIONS {
        let id = health_check_of(name).await;
        let region = regions.get(name).await.expect("region");
        let reference = format!("phoenix-{}", region.uid().expect("uid"));
        let same_ref: Vec<_> = route53::health_checks(&r53)
            .await
            .into_iter()
            .filter(|h| h.caller_reference() == reference)
            .collect();
        assert_eq!(
            same_ref.len(),
            1,
            "one health check for {name}: {same_ref:?}"
        );
        assert_eq!(same_ref[0].id(), id);
        let config = same_ref[0].health_check_config().expect("config");
        assert_eq!(
            config.fully_qualified_domain_name(),
            Some(format!("api.{name}.phoenixguardian.test").as_str())
        );
        let tags = route53::health_check_tags(&r53, &id).await;
        let tag = |k: &str| {
            tags.iter()
                .find(|t| t.key() == Some(k))
                .and_then(|t| t.value().map(str::to_owned))
        };
        assert_eq!(tag("phoenixguardian.io/region").as_deref(), Some(name));
        assert_eq!(
            tag("phoenixguardian.io/owner").as_deref(),
            Some("phoenix-operator")
        );
        check_ids.insert(name, id);
    }

    let since = instant();
    scenario.apply(&format!(
        "{}{}",
        tenant("dns-us", "US", "dns-us.e2e.phoenixguardian.test"),
        tenant("dns-eu", "EU", "dns-eu.e2e.phoenixguardian.test")
    ));
    for name in ["dns-us", "dns-eu"] {
        let t = wait_tenant(name, "DNSReady True", READY_TIMEOUT, |t| {
            dns_ready(t).is_some_and(|c| c.0 == "True")
        })
        .await;
        let (_, reason, message) = dns_ready(&t).expect("DNSReady");
        assert_eq!(reason, "RecordsReady");
        assert!(
            message.contains(&format!("{name}.e2e.phoenixguardian.test.")),
            "{message}"
        );
        wait_event(&Regarding::of(&t), "RecordsChanged", since).await;
    }

    for (name, region) in [("dns-us", "us-east-1"), ("dns-eu", "eu-west-1")] {
        let host = format!("{name}.e2e.phoenixguardian.test.");
        let sets = route53::records_named(&r53, &zone, &host).await;
        let ids: Vec<_> = sets.iter().map(|s| s.set_identifier()).collect();
        assert_eq!(
            ids,
            [Some(region)],
            "{name}: only its residency's region: {sets:?}"
        );
        let set = &sets[0];
        assert_eq!(set.r#type().as_str(), "CNAME");
        assert_eq!(set.region().map(|r| r.as_str()), Some(region));
        assert_eq!(set.health_check_id(), Some(check_ids[region].as_str()));
        assert_eq!(
            set.resource_records()[0].value(),
            format!("api.{region}.phoenixguardian.test.")
        );
        let owner = route53::records_named(&r53, &zone, &format!("_phoenix-owner.{host}")).await;
        assert_eq!(owner.len(), 1, "{owner:?}");
        assert_eq!(
            owner[0].resource_records()[0].value(),
            format!("\"heritage=phoenix-operator,owner=phoenix-operator,tenant={name}\"")
        );
    }

    // A converged zone: resyncs (every 5 s) read it but send no change.
    let changes = operator.metric(CHANGES).await.unwrap_or(0.0);
    let reconciles = operator.metric(TENANT_RECONCILES).await.unwrap_or(0.0);
    eventually(
        "four more tenant reconciles",
        Duration::from_secs(60),
        || async {
            let now = operator.metric(TENANT_RECONCILES).await.unwrap_or(0.0);
            (now >= reconciles + 4.0).then_some(())
        },
    )
    .await;
    assert_eq!(
        operator.metric(CHANGES).await.unwrap_or(0.0),
        changes,
        "a resync of a converged zone sent ChangeResourceRecordSets"
    );

    // Deleting a tenant removes exactly its records.
    let us = tenants().await.get("dns-us").await.expect("dns-us");
    let since = instant();
    kubectl_ok(&["delete", "tenant", "dns-us", "--timeout=60s"], None);
    wait_event(&Regarding::of(&us), "RecordsRemoved", since).await;
    let all = route53::records(&r53, &zone).await;
    assert!(
        !all.iter().any(|r| r.name().contains("dns-us.e2e.")),
        "dns-us records left: {all:?}"
    );
    assert_eq!(
        route53::records_named(&r53, &zone, "dns-eu.e2e.phoenixguardian.test.")
            .await
            .len(),
        1,
        "dns-eu keeps its record"
    );
    drop(scenario);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_of_others_and_hosts_outside_the_zone_are_refused_and_left_alone() {
    let _serial = SERIAL.lock().await;
    install_platform();
    let _operator = Process::operator(5).await;
    let scenario = ScenarioGuard::new("dns-refused");
    let r53 = route53::client().await;
    let zone = route53::zone_id(&r53).await;
    let foreign = "dns-foreign.e2e.phoenixguardian.test.";
    route53::upsert_foreign(
        &r53,
        &zone,
        foreign,
        aws_sdk_route53::types::RrType::Cname,
        "elsewhere.example.com.",
    )
    .await;

    let since = instant();
    scenario.apply(&format!(
        "{}{}",
        tenant("dns-foreign", "US", "dns-foreign.e2e.phoenixguardian.test"),
        tenant("dns-outside", "EU", "dns-outside.example.com")
    ));
    let t = wait_tenant(
        "dns-foreign",
        "DNSReady RecordNotOwned",
        READY_TIMEOUT,
        |t| dns_ready(t).is_some_and(|c| c.1 == "RecordNotOwned"),
    )
    .await;
    let (_, reason, message) = dns_ready(&t).expect("DNSReady");
    assert_eq!(reason, "RecordNotOwned", "{message}");
    assert!(message.contains(foreign), "{message}");
    wait_event(&Regarding::of(&t), "RecordNotOwned", since).await;

    let t = wait_tenant(
        "dns-outside",
        "DNSReady HostnameOutsideZones",
        READY_TIMEOUT,
        |t| dns_ready(t).is_some_and(|c| c.1 == "HostnameOutsideZones"),
    )
    .await;
    let (_, reason, message) = dns_ready(&t).expect("DNSReady");
    assert_eq!(reason, "HostnameOutsideZones", "{message}");
    assert!(message.contains(ZONE), "{message}");
    wait_event(&Regarding::of(&t), "HostnameOutsideZones", since).await;

    // The foreign record is as its owner left it, with no ownership record beside it.
    let sets = route53::records_named(&r53, &zone, foreign).await;
    assert_eq!(sets.len(), 1, "{sets:?}");
    assert_eq!(sets[0].set_identifier(), None);
    assert_eq!(
        sets[0].resource_records()[0].value(),
        "elsewhere.example.com."
    );
    let owner = format!("_phoenix-owner.{foreign}");
    assert!(route53::records_named(&r53, &zone, &owner).await.is_empty());
    drop(scenario);
    // Deleting the tenant left the foreign record alone too.
    let sets = route53::records_named(&r53, &zone, foreign).await;
    assert_eq!(
        sets.len(),
        1,
        "the foreign record survives the tenant's deletion"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_gets_a_record_per_region_of_its_residency_and_a_deleted_region_takes_its_own() {
    let _serial = SERIAL.lock().await;
    install_platform();
    let _operator = Process::operator(5).await;
    let scenario = ScenarioGuard::new("dns-region");
    let r53 = route53::client().await;
    let zone = route53::zone_id(&r53).await;
    // A second US Region: a Replica on the stack's streaming replica (it creates no
    // roles, so it changes nothing another Region relies on), with its own ingress.
    scenario.apply(&format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: dns-replica-db\n  namespace: {NAMESPACE}\nstringData:\n  dsn: {}\n",
        serde_json::to_string(&stack_var("PG_REPLICA_DSN_US_EAST_1")).expect("json")
    ));
    scenario.apply(&format!(
        "apiVersion: phoenixguardian.io/v1alpha1\nkind: Region\nmetadata:\n  name: dns-replica\nspec:\n  awsRegion: us-west-2\n  role: Replica\n  replicaOf: us-east-1\n  dataResidency: [US]\n  database:\n    writer: {{connectionSecretRef: {{namespace: {NAMESPACE}, name: dns-replica-db, key: dsn}}}}\n  ingress:\n    hostname: api.us-west-2.phoenixguardian.test\n  dns:\n    zoneName: {ZONE}\n"
    ));
    let replica_check = health_check_of("dns-replica").await;
    let us_check = health_check_of("us-east-1").await;
    scenario.apply(&format!(
        "{}  homeRegion: us-east-1\n",
        tenant("dns-two", "US", "dns-two.e2e.phoenixguardian.test")
    ));
    let host = "dns-two.e2e.phoenixguardian.test.";
    let sets = eventually(
        "dns-two has a record in both US regions",
        READY_TIMEOUT,
        || {
            let r53 = r53.clone();
            let zone = zone.clone();
            async move {
                let sets = route53::records_named(&r53, &zone, host).await;
                (sets.len() == 2).then_some(sets)
            }
        },
    )
    .await;
    let by_id = |id: &str| {
        sets.iter()
            .find(|s| s.set_identifier() == Some(id))
            .unwrap_or_else(|| panic!("no record [{id}]: {sets:?}"))
            .clone()
    };
    let replica = by_id("dns-replica");
    assert_eq!(replica.region().map(|r| r.as_str()), Some("us-west-2"));
    assert_eq!(replica.health_check_id(), Some(replica_check.as_str()));
    assert_eq!(
        by_id("us-east-1").health_check_id(),
        Some(us_check.as_str())
    );

    // Deleting the Region removes its latency record, then its health check.
    let regions: Api<Region> = Api::all(kube_client().await);
    let region = regions.get("dns-replica").await.expect("dns-replica");
    let reference = format!("phoenix-{}", region.uid().expect("uid"));
    let since = instant();
    kubectl_ok(&["delete", "region", "dns-replica", "--timeout=60s"], None);
    wait_event(&Regarding::of(&region), "HealthCheckDeleted", since).await;
    let left = route53::records_named(&r53, &zone, host).await;
    let ids: Vec<_> = left.iter().map(|s| s.set_identifier()).collect();
    assert_eq!(ids, [Some("us-east-1")], "{left:?}");
    let checks = route53::health_checks(&r53).await;
    assert!(
        !checks.iter().any(|h| h.caller_reference() == reference),
        "the Region's health check is still there"
    );
    assert!(
        checks.iter().any(|h| h.id() == us_check),
        "us-east-1's health check must stay"
    );
    drop(scenario);
}
