//! A tenant's DNS over its life, against moto through the real SDK: a changed
//! `spec.dns.hostname` takes its records (and ownership record) with it, and an operator
//! killed between a change request and its status write converges on restart without
//! duplicate records or health checks.

use std::time::Duration;

use phoenix_e2e::guard::ScenarioGuard;
use phoenix_e2e::route53;
use phoenix_e2e::scenario::*;
use phoenix_e2e::*;

fn tenant(name: &str, hostname: &str) -> String {
    format!(
        "---\napiVersion: phoenixguardian.io/v1alpha1\nkind: Tenant\nmetadata:\n  name: {name}\nspec:\n  displayName: {name} hospital\n  dataResidency: [US]\n  database:\n    deletionPolicy: Delete\n  dns:\n    hostname: {hostname}\n"
    )
}

fn dns_ready(t: &phoenix_crds::Tenant) -> Option<(String, String, String)> {
    condition(t, "DNSReady")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_hostname_moves_the_records_and_removes_the_old_ones() {
    let _serial = SERIAL.lock().await;
    install_platform();
    let _operator = Process::operator(5).await;
    let scenario = ScenarioGuard::new("dns-move");
    let r53 = route53::client().await;
    let zone = route53::zone_id(&r53).await;
    let old = "dns-move-a.e2e.phoenixguardian.test.";
    let new = "dns-move-b.e2e.phoenixguardian.test.";

    scenario.apply(&tenant("dns-move", old.trim_end_matches('.')));
    let t = wait_tenant("dns-move", "DNSReady True", READY_TIMEOUT, |t| {
        dns_ready(t).is_some_and(|c| c.0 == "True")
    })
    .await;
    let published = t.status.and_then(|s| s.dns).expect("status.dns");
    assert_eq!(published.hostname, old);
    assert_eq!(published.hosted_zone_id, zone);
    assert_eq!(route53::records_named(&r53, &zone, old).await.len(), 1);

    scenario.apply(&tenant("dns-move", new.trim_end_matches('.')));
    let t = wait_tenant(
        "dns-move",
        "DNSReady names the new host",
        READY_TIMEOUT,
        |t| dns_ready(t).is_some_and(|c| c.0 == "True" && c.2.contains(new)),
    )
    .await;
    let (_, reason, message) = dns_ready(&t).expect("DNSReady");
    assert_eq!(reason, "RecordsReady");
    assert!(!message.contains(old), "{message}");
    let published = t.status.and_then(|s| s.dns).expect("status.dns");
    assert_eq!(published.hostname, new);

    let sets = route53::records_named(&r53, &zone, new).await;
    assert_eq!(sets.len(), 1, "{sets:?}");
    assert_eq!(sets[0].set_identifier(), Some("us-east-1"));
    let owner = route53::records_named(&r53, &zone, &format!("_phoenix-owner.{new}")).await;
    assert_eq!(owner.len(), 1, "{owner:?}");
    assert!(
        route53::records_named(&r53, &zone, old).await.is_empty(),
        "the old host's records are gone"
    );
    assert!(
        route53::records_named(&r53, &zone, &format!("_phoenix-owner.{old}"))
            .await
            .is_empty(),
        "the old host's ownership record is gone"
    );
    drop(scenario);
    assert!(
        route53::records(&r53, &zone)
            .await
            .iter()
            .all(|r| !r.name().contains("dns-move-")),
        "deleting the tenant removed its records"
    );
}

/// Health checks carrying `reference` in moto.
async fn checks_with(r53: &aws_sdk_route53::Client, reference: &str) -> usize {
    route53::health_checks(r53)
        .await
        .iter()
        .filter(|h| h.caller_reference() == reference)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_killed_between_a_change_and_its_status_write_converges_without_duplicates() {
    let _serial = SERIAL.lock().await;
    install_platform();
    let scenario = ScenarioGuard::new("dns-crash");
    let r53 = route53::client().await;
    let zone = route53::zone_id(&r53).await;
    let proxy = route53::Proxy::start(0.0).await;
    let mut first = Process::operator_with(
        "e2e-operator",
        5,
        &[("AWS_ENDPOINT_URL", proxy.url.as_str())],
    )
    .await;
    // ChangeResourceRecordSets and CreateHealthCheck reach moto; their answers never
    // reach the operator, so nothing of them is in any status when it dies.
    proxy.hold(&["/rrset", "/healthcheck"]).await;
    // A new Region (a Replica on the stack's streaming replica, creating no roles) makes
    // a health check; an EU tenant makes records (in eu-west-1 only, not waiting on it).
    scenario.apply(&format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: dns-crash-db\n  namespace: {NAMESPACE}\nstringData:\n  dsn: {}\n",
        serde_json::to_string(&stack_var("PG_REPLICA_DSN_US_EAST_1")).expect("json")
    ));
    scenario.apply(&format!(
        "apiVersion: phoenixguardian.io/v1alpha1\nkind: Region\nmetadata:\n  name: dns-crash\nspec:\n  awsRegion: us-west-1\n  role: Replica\n  replicaOf: us-east-1\n  dataResidency: [US]\n  database:\n    writer: {{connectionSecretRef: {{namespace: {NAMESPACE}, name: dns-crash-db, key: dsn}}}}\n  ingress:\n    hostname: api.us-west-1.phoenixguardian.test\n  dns:\n    zoneName: {}\n",
        route53::ZONE
    ));
    let host = "dns-crash.e2e.phoenixguardian.test.";
    scenario.apply(
        &tenant("dns-crash", host.trim_end_matches('.'))
            .replace("dataResidency: [US]", "dataResidency: [EU]"),
    );
    eventually(
        "a change request and a health check creation held at the proxy",
        READY_TIMEOUT,
        || async {
            let held = proxy.stats().await?["held"].as_u64()?;
            (held >= 2).then_some(())
        },
    )
    .await;
    first.kill_hard();
    proxy.release().await;

    // What the dead operator did is in moto, and in no status.
    let region: kube::Api<phoenix_crds::Region> = kube::Api::all(kube_client().await);
    let crash = region.get("dns-crash").await.expect("region dns-crash");
    let reference = format!("phoenix-{}", kube::ResourceExt::uid(&crash).expect("uid"));
    assert!(
        crash.status.and_then(|s| s.dns?.health_check_id).is_none(),
        "the health check id reached status before the kill"
    );
    assert_eq!(checks_with(&r53, &reference).await, 1);
    assert_eq!(route53::records_named(&r53, &zone, host).await.len(), 1);
    let t = tenants().await.get("dns-crash").await.expect("tenant");
    assert!(
        dns_ready(&t).is_none_or(|c| c.0 != "True"),
        "DNSReady was written before the kill"
    );

    // Restarted (straight to moto): converges on what is there.
    let _second = Process::operator(5).await;
    wait_tenant("dns-crash", "DNSReady True", READY_TIMEOUT, |t| {
        dns_ready(t).is_some_and(|c| c.0 == "True")
    })
    .await;
    eventually(
        "region dns-crash shows its health check",
        READY_TIMEOUT,
        || {
            let region = region.clone();
            async move {
                region
                    .get("dns-crash")
                    .await
                    .ok()?
                    .status?
                    .dns?
                    .health_check_id
            }
        },
    )
    .await;
    assert_eq!(
        checks_with(&r53, &reference).await,
        1,
        "one health check for the Region, not two"
    );
    let sets = route53::records_named(&r53, &zone, host).await;
    assert_eq!(sets.len(), 1, "one latency record: {sets:?}");
    assert_eq!(sets[0].set_identifier(), Some("eu-west-1"));
    let owner = route53::records_named(&r53, &zone, &format!("_phoenix-owner.{host}")).await;
    assert_eq!(owner.len(), 1, "one ownership record: {owner:?}");
    assert_eq!(owner[0].resource_records().len(), 1, "{owner:?}");
    drop(scenario);
    assert_eq!(
        checks_with(&r53, &reference).await,
        0,
        "the Region's deletion removed its health check"
    );
}

const REQUESTS: &str = "phoenix_operator_route53_requests_total";

async fn requests(operator: &Process, operation: &str) -> f64 {
    route53::counter(
        &operator.addr,
        REQUESTS,
        &[&format!("operation=\"{operation}\"")],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_region_pass_reads_route53_once_through_its_status() {
    let _serial = SERIAL.lock().await;
    install_platform();
    // The example Regions' status already names their zone and health check.
    let regions: kube::Api<phoenix_crds::Region> = kube::Api::all(kube_client().await);
    for name in REGIONS {
        eventually(
            &format!("region {name} shows its health check"),
            READY_TIMEOUT,
            || {
                let regions = regions.clone();
                async move { regions.get(name).await.ok()?.status?.dns?.health_check_id }
            },
        )
        .await;
    }
    let operator =
        Process::operator_with("e2e-operator", 3600, &[("REGION_RESYNC_SECONDS", "2")]).await;
    let passes = r#"phoenix_operator_reconciles_total{controller="region",result="success"}"#;
    eventually(
        "nine Region passes (three each)",
        Duration::from_secs(90),
        || async { (operator.metric(passes).await? >= 9.0).then_some(()) },
    )
    .await;
    // Every pass verified its health check with one GetHealthCheck; none listed the
    // health checks or their tags, or looked its zone up.
    assert!(requests(&operator, "GetHealthCheck").await >= 9.0);
    for operation in [
        "ListHealthChecks",
        "ListTagsForResource",
        "ListHostedZonesByName",
        "GetHostedZone",
        "CreateHealthCheck",
        "UpdateHealthCheck",
    ] {
        assert_eq!(
            requests(&operator, operation).await,
            0.0,
            "{operation} was sent by Region passes that had their ids in status"
        );
    }

    // A stale id in status (a health check deleted by hand would look the same): the
    // pass falls back to the lookup and finds the Region's own check again.
    let region = regions.get("us-east-1").await.expect("us-east-1");
    let id = region
        .status
        .and_then(|s| s.dns?.health_check_id)
        .expect("health check id");
    // A pass already under way when the patch lands writes the id it read before it, so
    // the patch can be undone without any pass having seen it: patch again until a pass
    // has looked the check up (within the usual deadline).
    let started = std::time::Instant::now();
    loop {
        kubectl_ok(
            &[
                "patch",
                "region",
                "us-east-1",
                "--subresource=status",
                "--type=merge",
                "-p",
                r#"{"status":{"dns":{"healthCheckId":"00000000-0000-0000-0000-000000000000"}}}"#,
            ],
            None,
        );
        let found = eventually(
            "us-east-1 shows its own health check again",
            READY_TIMEOUT,
            || {
                let regions = regions.clone();
                let id = id.clone();
                async move {
                    let now = regions
                        .get("us-east-1")
                        .await
                        .ok()?
                        .status?
                        .dns?
                        .health_check_id?;
                    (now == id).then_some(now)
                }
            },
        )
        .await;
        assert_eq!(found, id);
        if requests(&operator, "ListHealthChecks").await >= 1.0 {
            break;
        }
        assert!(
            started.elapsed() < READY_TIMEOUT,
            "no Region pass looked its health check up after the stale id was patched in"
        );
    }
    assert_eq!(requests(&operator, "CreateHealthCheck").await, 0.0);
}
