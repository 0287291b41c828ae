//! Route53 pacing and retries through the real SDK: the operator talks to moto through a
//! fault-injecting proxy (`e2e/faults/route53_proxy.py`) that answers 30 % of requests
//! with Route53's `Throttling` and `PriorRequestNotComplete` errors. Everything still
//! converges, no tenant fails, and the throttles show in the metrics. And a batch Route53
//! refuses as a whole (`InvalidChangeBatch`, the real answer, sent by the proxy for one
//! tenant's name) is bisected: only that tenant fails, naming its record and the reason.

use std::time::Duration;

use phoenix_e2e::events::{Regarding, events_about, instant, wait_event};
use phoenix_e2e::guard::ScenarioGuard;
use phoenix_e2e::route53::{self, Proxy};
use phoenix_e2e::scenario::*;
use phoenix_e2e::*;

fn tenant(name: &str, residency: &str) -> String {
    format!(
        "---\napiVersion: phoenixguardian.io/v1alpha1\nkind: Tenant\nmetadata:\n  name: {name}\nspec:\n  displayName: {name} hospital\n  dataResidency: [{residency}]\n  database:\n    deletionPolicy: Delete\n  dns:\n    hostname: {name}.e2e.phoenixguardian.test\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_thirty_percent_throttling_every_tenant_converges() {
    let _serial = SERIAL.lock().await;
    install_platform();
    let proxy = Proxy::start(0.3).await;
    let operator = Process::operator_with(
        "e2e-operator-throttled",
        5,
        &[
            ("AWS_ENDPOINT_URL", &proxy.url),
            ("ROUTE53_REQUESTS_PER_SECOND", "50"),
        ],
    )
    .await;
    let scenario = ScenarioGuard::new("dns-throttled");
    let names: Vec<(String, &str)> = (0..6)
        .map(|i| {
            let residency = ["US", "EU", "APAC"][i % 3];
            (format!("dns-thr-{i}"), residency)
        })
        .collect();
    let manifest: String = names.iter().map(|(n, r)| tenant(n, r)).collect();
    let since = instant();
    scenario.apply(&manifest);
    for (name, _) in &names {
        let t = wait_tenant(name, "DNSReady True", READY_TIMEOUT, |t| {
            condition(t, "DNSReady").is_some_and(|c| c.0 == "True")
        })
        .await;
        assert!(is_ready(&t), "{name} is not Ready: {:?}", t.status);
    }
    let stats = proxy.stats().await.expect("proxy stats");
    let throttled = stats["throttled"].as_u64().unwrap_or(0);
    assert!(throttled > 0, "the proxy throttled nothing: {stats}");
    assert!(
        stats["by_code"]["PriorRequestNotComplete"]
            .as_u64()
            .unwrap_or(0)
            > 0,
        "{stats}"
    );
    // The operator counts a throttle once it has read the answer; one still in flight when
    // the proxy's stats were read (a health check pass, a GetChange poll) is counted a
    // moment later.
    let operator_addr = &operator.addr;
    let seen = eventually(
        "the operator counts the throttles the proxy sent",
        Duration::from_secs(15),
        || async move {
            let seen = route53::counter(
                operator_addr,
                "phoenix_operator_route53_throttles_total",
                &[],
            )
            .await;
            (seen >= throttled as f64 * 0.9).then_some(seen)
        },
    )
    .await;
    assert!(
        seen >= throttled as f64 * 0.9,
        "the operator counted {seen} throttles, the proxy sent {throttled}"
    );
    let errors = route53::counter(
        &operator.addr,
        "phoenix_operator_route53_requests_total",
        &["outcome=\"error\""],
    )
    .await;
    assert_eq!(
        errors, 0.0,
        "Route53 requests failed other than by throttling"
    );
    // No tenant ever gave up on Route53 (retries exhausted).
    for (name, _) in &names {
        let t = tenants().await.get(name).await.expect("tenant");
        let gave_up = events_about(&Regarding::of(&t), "Route53Error", since).await;
        assert!(gave_up.is_empty(), "{name}: {gave_up:?}");
    }

    let sent = route53::counter(
        &operator.addr,
        "phoenix_operator_route53_requests_total",
        &[
            "operation=\"ChangeResourceRecordSets\"",
            "outcome=\"success\"",
        ],
    )
    .await;
    eprintln!(
        "{} tenants converged with {sent} ChangeResourceRecordSets request(s); proxy: {stats}",
        names.len()
    );
    assert!(
        sent <= names.len() as f64,
        "more change requests ({sent}) than tenants"
    );

    // Straight from moto: each tenant has exactly its residency's record and its
    // ownership record, once.
    let r53 = route53::client().await;
    let zone = route53::zone_id(&r53).await;
    for (name, residency) in &names {
        let region = match *residency {
            "US" => "us-east-1",
            "EU" => "eu-west-1",
            _ => "ap-southeast-1",
        };
        let host = format!("{name}.e2e.phoenixguardian.test.");
        let sets = route53::records_named(&r53, &zone, &host).await;
        let ids: Vec<_> = sets.iter().map(|s| s.set_identifier()).collect();
        assert_eq!(ids, [Some(region)], "{name}: {sets:?}");
        let owner = route53::records_named(&r53, &zone, &format!("_phoenix-owner.{host}")).await;
        assert_eq!(owner.len(), 1, "{name}: {owner:?}");
    }
    drop(scenario);
    let left: Vec<_> = route53::records(&r53, &zone)
        .await
        .into_iter()
        .filter(|r| r.name().contains("dns-thr-"))
        .map(|r| r.name().to_owned())
        .collect();
    assert!(
        left.is_empty(),
        "records left after deletion under throttling: {left:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_route53_refuses_is_bisected_so_only_the_bad_tenant_fails() {
    let _serial = SERIAL.lock().await;
    install_platform();
    let proxy = Proxy::start(0.0).await;
    let bad_host = "dns-bis-bad.e2e.phoenixguardian.test.";
    proxy.reject(&[bad_host]).await;
    let operator = Process::operator_with(
        "e2e-operator-bisect",
        5,
        &[
            ("AWS_ENDPOINT_URL", &proxy.url),
            ("ROUTE53_REQUESTS_PER_SECOND", "50"),
        ],
    )
    .await;
    let scenario = ScenarioGuard::new("dns-bisect");
    let good: Vec<String> = (0..4).map(|i| format!("dns-bis-{i}")).collect();
    // Applied together, so that the bad change shares its first batch with the others.
    let manifest: String = good
        .iter()
        .map(|n| tenant(n, "US"))
        .chain(std::iter::once(tenant("dns-bis-bad", "US")))
        .collect();
    let since = instant();
    scenario.apply(&manifest);

    let bad = wait_tenant("dns-bis-bad", "DNSReady False", READY_TIMEOUT, |t| {
        condition(t, "DNSReady").is_some_and(|c| c.0 == "False" && c.1 != "HealthCheckPending")
    })
    .await;
    let (_, reason, message) = condition(&bad, "DNSReady").expect("DNSReady");
    assert_eq!(reason, "RecordRejected", "{message}");
    assert!(
        message.contains("dns-bis-bad.e2e.phoenixguardian.test")
            && message.contains("not permitted"),
        "the condition names neither the record nor Route53's reason: {message}"
    );
    wait_event(&Regarding::of(&bad), "RecordRejected", since).await;
    for name in &good {
        let t = wait_tenant(name, "DNSReady True", READY_TIMEOUT, |t| {
            condition(t, "DNSReady").is_some_and(|c| c.0 == "True")
        })
        .await;
        assert!(
            events_about(&Regarding::of(&t), "RecordRejected", since)
                .await
                .is_empty(),
            "{name} was failed for another tenant's record"
        );
    }
    let stats = proxy.stats().await.expect("proxy stats");
    assert!(
        stats["rejected"].as_u64().unwrap_or(0) >= 1,
        "the proxy refused nothing: {stats}"
    );
    // Straight from moto: the good tenants' records are there, the bad one's are not.
    let r53 = route53::client().await;
    let zone = route53::zone_id(&r53).await;
    for name in &good {
        let host = format!("{name}.e2e.phoenixguardian.test.");
        assert_eq!(
            route53::records_named(&r53, &zone, &host).await.len(),
            1,
            "{name} has no record"
        );
    }
    assert!(
        route53::records_named(&r53, &zone, bad_host)
            .await
            .is_empty()
    );
    let accepted = route53::counter(
        &operator.addr,
        "phoenix_operator_route53_requests_total",
        &[
            "operation=\"ChangeResourceRecordSets\"",
            "outcome=\"success\"",
        ],
    )
    .await;
    assert!(accepted >= 1.0, "no change request was accepted");
    // The bad tenant stops failing once Route53 takes its record (here: the proxy lets it
    // through), with no operator restart.
    proxy.reject(&[]).await;
    wait_tenant("dns-bis-bad", "DNSReady True", READY_TIMEOUT, |t| {
        condition(t, "DNSReady").is_some_and(|c| c.0 == "True")
    })
    .await;
    drop(scenario);
}
