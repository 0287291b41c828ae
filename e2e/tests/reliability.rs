//! Crashes, leader failover, RLS drift and credential rotation converge.
//! Scenarios run one at a time (they share the API server and the operator they start).

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use phoenix_crds::Region;
use phoenix_e2e::bulk::{Bulk, assert_no_leaked_roles, assert_no_leaked_secrets};
use phoenix_e2e::events::{Regarding, instant, wait_event};
use phoenix_e2e::guard::ScenarioGuard;
use phoenix_e2e::route53;
use phoenix_e2e::scenario::*;
use phoenix_e2e::*;

/// Tenants of the crash scenario, in two waves of `BULK / 2`: the first converges before
/// the crash, the second is caught mid-reconcile by it.
const BULK: usize = 60;

/// The crash scenario's tenants, residencies cycling US, EU, APAC by index.
const TENANTS: Bulk = Bulk {
    prefix: "e2e-bulk",
    label: "bulk",
};

fn residency(i: usize) -> &'static str {
    ["US", "EU", "APAC"][i % 3]
}

/// How many record sets of the zone belong to bulk tenant `i` (its latency records and its
/// ownership record, whatever their names).
fn records_of(records: &[aws_sdk_route53::types::ResourceRecordSet], i: usize) -> usize {
    let host = format!("{}.", TENANTS.host(i));
    records.iter().filter(|r| r.name().ends_with(&host)).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_operator_mid_reconcile_converges_without_duplicates_or_leaks() {
    let _serial = SERIAL.lock().await;
    install_platform();
    // Route53 through the fault proxy: the second wave's change batches reach moto but
    // their answers are held, so the kill lands while those reconciles are in flight, on
    // a machine of any speed (waiting for "the first Ready" raced a whole batch window of
    // tenants all becoming Ready at once).
    let proxy = route53::Proxy::start(0.0).await;
    let mut operator = Process::operator_with(
        "e2e-operator",
        10,
        &[("AWS_ENDPOINT_URL", proxy.url.as_str())],
    )
    .await;
    let scenario = ScenarioGuard::new("crash");
    let api = tenants().await;
    let bulk = TENANTS.params();
    let half = BULK / 2;
    scenario.apply(&TENANTS.manifest(0..half, residency));
    eventually(
        &format!("the first {half} bulk tenants Ready"),
        READY_TIMEOUT,
        || async {
            let list = api.list(&bulk).await.ok()?;
            (list.items.iter().filter(|t| is_ready(t)).count() == half).then_some(())
        },
    )
    .await;
    proxy.hold(&["/rrset"]).await;
    scenario.apply(&TENANTS.manifest(half..BULK, residency));
    eventually(
        "a change batch of the second wave held at the proxy",
        READY_TIMEOUT,
        || async {
            let held = proxy.stats().await?["held"].as_u64()?;
            (held >= 1).then_some(())
        },
    )
    .await;
    operator.kill_hard();
    proxy.release().await;

    // The operator is dead, so nothing changes any more: the first wave is Ready, the
    // second was in flight (its records sent, their answer never seen).
    let at_kill = api.list(&bulk).await.expect("list");
    let ready: Vec<&str> = at_kill
        .items
        .iter()
        .filter(|t| is_ready(t))
        .filter_map(|t| t.metadata.name.as_deref())
        .collect();
    eprintln!(
        "killed the operator with {}/{BULK} tenants Ready",
        ready.len()
    );
    let first_wave: Vec<String> = (0..half).map(|i| TENANTS.name(i)).collect();
    assert_eq!(
        ready, first_wave,
        "exactly the first wave is Ready at the kill; the second was in flight"
    );
    drop(proxy);
    operator = Process::operator(10).await;
    eventually(
        &format!("all {BULK} bulk tenants Ready after the restart"),
        Duration::from_secs(180),
        || async {
            let list = api.list(&bulk).await.ok()?;
            (list.items.iter().filter(|t| is_ready(t)).count() == BULK).then_some(())
        },
    )
    .await;
    assert_eq!(
        operator.metric("phoenix_operator_leader").await,
        Some(1.0),
        "the restarted operator does not lead"
    );

    let list = api.list(&TENANTS.params()).await.expect("list");
    assert_eq!(TENANTS.assert_catalogs(&list.items, &REGIONS).await, BULK);
    for region in REGIONS {
        assert_no_leaked_roles(region).await;
    }
    assert_no_leaked_secrets().await;

    // A tenant whose change batch was in flight at the crash ends with the records of one
    // that converged before it (same residency: indexes `half` apart), none duplicated.
    let r53 = route53::client().await;
    let zone = route53::records(&r53, &route53::zone_id(&r53).await).await;
    for i in half..BULK {
        let (crashed, calm) = (records_of(&zone, i), records_of(&zone, i - half));
        assert!(calm > 0, "bulk tenant {} has no records", i - half);
        assert_eq!(
            crashed,
            calm,
            "bulk tenant {i} (in flight at the crash) has {crashed} record sets, bulk tenant {} has {calm}",
            i - half
        );
    }

    kubectl_ok(
        &["delete", "tenant", "-l", "e2e=bulk", "--timeout=180s"],
        None,
    );
    for region in REGIONS {
        assert!(
            catalog_names(region, &TENANTS.like()).await.is_empty(),
            "bulk tenants left in {region}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabling_rls_by_hand_is_repaired_with_an_event() {
    let _serial = SERIAL.lock().await;
    install_platform();
    let _operator = Process::operator(3).await;
    let scenario = ScenarioGuard::new("rls-drift");
    apply_ready_tenant(
        &scenario,
        "e2e-drift",
        "US",
        "  database: {deletionPolicy: Delete}\n",
    )
    .await;
    // The shared tables belong to the region: the region repairs them and says so.
    let regions: Api<Region> = Api::all(kube_client().await);
    let region = Regarding::of(&regions.get("us-east-1").await.expect("region us-east-1"));
    let db = pg("us-east-1").await;
    let since = instant();
    db.batch_execute("ALTER TABLE clinical.encounters DISABLE ROW LEVEL SECURITY")
        .await
        .expect("disable rls");
    eventually("RLS re-enabled on clinical.encounters", Duration::from_secs(60), || async {
        let on: bool = db.query_one("SELECT relrowsecurity FROM pg_class WHERE oid = 'clinical.encounters'::regclass", &[]).await.ok()?.get(0);
        on.then_some(())
    })
    .await;
    let event = wait_event(&region, "RLSRepaired", since).await;
    assert!(
        event
            .note
            .as_deref()
            .is_some_and(|n| n.contains("clinical.encounters") && n.contains("disabled")),
        "{event:?}"
    );
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    kubectl_ok(&["delete", "tenant", "e2e-drift", "--timeout=60s"], None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_reconciles_and_a_standby_takes_over_when_it_dies() {
    let _serial = SERIAL.lock().await;
    install_platform();
    let mut a = Process::operator_named("e2e-leader-a", 10).await;
    eventually("replica a leads", Duration::from_secs(30), || async {
        (a.metric("phoenix_operator_leader").await == Some(1.0)).then_some(())
    })
    .await;
    let mut b = Process::operator_named("e2e-leader-b", 10).await;
    let scenario = ScenarioGuard::new("leader-failover");
    apply_ready_tenant(
        &scenario,
        "e2e-failover-1",
        "US",
        "  database: {deletionPolicy: Delete}\n",
    )
    .await;
    assert_eq!(
        b.metric("phoenix_operator_leader").await,
        Some(0.0),
        "two leaders"
    );
    let b_metrics = reqwest::get(format!("http://{}/metrics", b.addr))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        !b_metrics.contains("phoenix_operator_reconciles_total{"),
        "the standby reconciled: {b_metrics}"
    );

    let leases: Api<Lease> = Api::namespaced(kube_client().await, NAMESPACE);
    let lease = || async {
        leases
            .get("phoenix-operator")
            .await
            .expect("the lease exists")
            .spec
            .expect("lease spec")
    };
    let held = lease().await;
    assert_eq!(held.holder_identity.as_deref(), Some("e2e-leader-a"));

    // The leader crashes: the standby takes over once the 5 s lease lapses.
    a.kill_hard();
    scenario.apply(&tenant_yaml(
        "e2e-failover-2",
        "US",
        "  database: {deletionPolicy: Delete}\n",
    ));
    wait_tenant(
        "e2e-failover-2",
        "Ready after failover",
        Duration::from_secs(60),
        is_ready,
    )
    .await;
    assert_eq!(b.metric("phoenix_operator_leader").await, Some(1.0));
    let taken = lease().await;
    assert_eq!(taken.holder_identity.as_deref(), Some("e2e-leader-b"));
    assert!(
        taken.lease_transitions > held.lease_transitions,
        "the failover was not recorded: {held:?} -> {taken:?}"
    );

    // A graceful stop releases the lease, so a new replica need not wait for it to lapse.
    b.stop();
    let released = lease().await;
    assert_eq!(
        released.holder_identity, None,
        "b stopped without releasing the lease"
    );
    // In a's slot: an operator must outlive the guard.
    a = Process::operator_named("e2e-leader-c", 10).await;
    let c = &a;
    eventually("replica c leads", Duration::from_secs(30), || async {
        (c.metric("phoenix_operator_leader").await == Some(1.0)).then_some(())
    })
    .await;
    kubectl_ok(
        &[
            "delete",
            "tenant",
            "e2e-failover-1",
            "e2e-failover-2",
            "--timeout=60s",
        ],
        None,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_dataplane_secret_rotates_the_password_at_once() {
    let _serial = SERIAL.lock().await;
    install_platform();
    // Regions resync hourly, so only the Secret watch can explain a rotation within minutes.
    let _operator =
        Process::operator_with("e2e-operator", 3600, &[("REGION_RESYNC_SECONDS", "3600")]).await;
    let out = kubectl(
        &[
            "wait",
            "--for=condition=Ready",
            "region/us-east-1",
            "--timeout=120s",
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let secrets: Api<Secret> = Api::namespaced(kube_client().await, NAMESPACE);
    let before = eventually("the data plane Secret", READY_TIMEOUT, || {
        let secrets = secrets.clone();
        async move {
            secrets
                .get_opt("phoenix-dataplane-us-east-1")
                .await
                .ok()
                .flatten()
        }
    })
    .await;
    let old_url = dataplane_url("us-east-1").await;
    kubectl_ok(
        &[
            "-n",
            NAMESPACE,
            "delete",
            "secret",
            "phoenix-dataplane-us-east-1",
        ],
        None,
    );
    eventually("a regenerated data plane Secret", READY_TIMEOUT, || {
        let secrets = secrets.clone();
        let old_uid = before.metadata.uid.clone();
        async move {
            secrets
                .get_opt("phoenix-dataplane-us-east-1")
                .await
                .ok()
                .flatten()
                .filter(|s| s.metadata.uid != old_uid)
        }
    })
    .await;
    let new_url = dataplane_url("us-east-1").await;
    assert_ne!(old_url, new_url, "the password was not rotated");
    // The role's password follows: a data plane with the new credentials becomes ready,
    // one with the old ones cannot log in.
    assert!(
        new_url.starts_with("postgres://phoenix_dataplane_us_east_1:"),
        "the data plane Secret names the Region's own role"
    );
    let _dp = Process::dataplane("us-east-1", new_url.clone(), None).await;
    // The data plane is connected as the Region's own role, not the shared one.
    let (admin, conn) =
        tokio_postgres::connect(&stack_var("PG_ADMIN_DSN_US_EAST_1"), tokio_postgres::NoTls)
            .await
            .expect("the admin DSN connects");
    tokio::spawn(conn);
    let own: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = 'phoenix_dataplane_us_east_1'",
            &[],
        )
        .await
        .expect("sessions")
        .get(0);
    assert!(own > 0, "no session of the Region's own data plane role");
    match tokio_postgres::connect(&old_url, tokio_postgres::NoTls).await {
        Ok(_) => panic!("the old data plane password still logs in"),
        Err(e) => assert_eq!(
            e.code(),
            Some(&tokio_postgres::error::SqlState::INVALID_PASSWORD),
            "the old password was not refused as invalid (28P01): {e}"
        ),
    }
    // The password was set as a verifier: the server logs DDL (e2e/stack sets
    // log_statement = ddl), and its log shows the statement but never the password.
    let password = new_url
        .split_once("://")
        .and_then(|(_, rest)| rest.split_once('@'))
        .and_then(|(user, _)| user.split_once(':'))
        .map(|(_, password)| password.to_owned())
        .expect("a password in the data plane URL");
    let log = std::fs::read_to_string(
        std::path::Path::new(&stack_var("STACK_DIR")).join("logs/pg-us-east-1-primary.log"),
    )
    .expect("the us-east-1 primary's log");
    assert!(
        log.contains("ALTER ROLE \"phoenix_dataplane_us_east_1\" PASSWORD 'SCRAM-SHA-256$"),
        "the password statement is not in the server's DDL log, so this check proves nothing"
    );
    assert!(
        !log.contains(&password),
        "the data plane password appears in clear text in the PostgreSQL log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_in_another_namespace_wakes_the_region_that_references_it() {
    let _serial = SERIAL.lock().await;
    install_platform();
    // Regions resync hourly: only the (metadata-only, any-namespace) Secret watch can make
    // the Region notice within minutes that its Secret changed.
    let _operator =
        Process::operator_with("e2e-operator", 3600, &[("REGION_RESYNC_SECONDS", "3600")]).await;
    let scenario = ScenarioGuard::new("xns-secret");
    let ns = "e2e-db-secrets";
    kubectl_ok(
        &["apply", "-f", "-"],
        Some(&format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n"
        )),
    );
    let secret = |dsn: &str| {
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: e2e-xns-db\n  namespace: {ns}\nstringData:\n  dsn: {}\n",
            serde_json::to_string(dsn).expect("json string")
        )
    };
    // A Replica Region on the stack's streaming replica: it creates no roles, so it
    // changes nothing another Region relies on.
    scenario.apply(&secret(&stack_var("PG_REPLICA_DSN_US_EAST_1")));
    scenario.apply(&format!(
        "apiVersion: phoenixguardian.io/v1alpha1\nkind: Region\nmetadata:\n  name: e2e-xns\nspec:\n  awsRegion: us-east-2\n  role: Replica\n  replicaOf: us-east-1\n  dataResidency: [US]\n  database:\n    writer: {{connectionSecretRef: {{namespace: {ns}, name: e2e-xns-db, key: dsn}}}}\n"
    ));
    let regions: Api<phoenix_crds::Region> = Api::all(kube_client().await);
    let reachable = |status: &'static str| {
        let regions = regions.clone();
        move || {
            let regions = regions.clone();
            async move {
                let r = regions.get("e2e-xns").await.ok()?;
                r.status?
                    .conditions
                    .into_iter()
                    .find(|c| c.type_ == "DatabaseReachable" && c.status == status)
            }
        }
    };
    eventually(
        "e2e-xns reaches its database",
        READY_TIMEOUT,
        reachable("True"),
    )
    .await;

    let dead = format!("postgres://postgres:x@127.0.0.1:{}/phoenix", free_port());
    scenario.apply(&secret(&dead));
    let down = eventually(
        "e2e-xns notices its changed Secret",
        READY_TIMEOUT,
        reachable("False"),
    )
    .await;
    assert_eq!(down.reason, "DatabaseUnreachable", "{}", down.message);
    assert!(
        down.message.contains("cannot connect to 127.0.0.1"),
        "{}",
        down.message
    );

    drop(scenario);
    kubectl_ok(&["delete", "namespace", ns, "--wait=false"], None);
}
