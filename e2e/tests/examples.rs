//! `examples/` against the real kube-apiserver, PostgreSQL and data planes.
//! Scenarios run one at a time (they share the API server and the operator they start).

use std::time::Duration;

use kube::Api;
use phoenix_crds::{Region, Tenant, TenantPhase};
use phoenix_e2e::guard::ScenarioGuard;
use phoenix_e2e::scenario::*;
use phoenix_e2e::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn examples_reach_ready_and_their_hosts_are_served() {
    let _serial = SERIAL.lock().await;
    install_platform();
    let _operator = Process::operator(10).await;
    // Removes the example tenants and the rows they retain when deleted.
    let scenario = ScenarioGuard::new("examples");
    let path = repo().join("examples/tenants.yaml");
    scenario.apply(
        &std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display())),
    );
    let out = kubectl(
        &[
            "wait",
            "--for=condition=Ready",
            "region",
            "--all",
            "--timeout=120s",
        ],
        None,
    );
    assert!(
        out.status.success(),
        "regions not Ready: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for name in [
        "mercy-general",
        "st-lukes",
        "charite-berlin",
        "nordic-care",
        "raffles-sg",
    ] {
        let out = kubectl(
            &[
                "wait",
                "--for=condition=Ready",
                &format!("tenant/{name}"),
                "--timeout=120s",
            ],
            None,
        );
        assert!(
            out.status.success(),
            "tenant {name} not Ready: {} {}",
            String::from_utf8_lossy(&out.stderr),
            kubectl_ok(&["get", "tenant", name, "-o", "yaml"], None)
        );
    }
    let api = tenants().await;
    let placed = |t: &Tenant| {
        t.status
            .as_ref()
            .and_then(|s| s.placement.as_ref())
            .map(|p| p.region.clone())
    };
    assert_eq!(
        placed(&api.get("charite-berlin").await.expect("get")).as_deref(),
        Some("eu-west-1")
    );
    assert_eq!(
        placed(&api.get("raffles-sg").await.expect("get")).as_deref(),
        Some("ap-southeast-1")
    );
    assert_eq!(
        placed(&api.get("st-lukes").await.expect("get")).as_deref(),
        Some("us-east-1")
    );
    let nordic = api.get("nordic-care").await.expect("get");
    assert_eq!(
        nordic.status.as_ref().and_then(|s| s.phase),
        Some(TenantPhase::Suspended)
    );
    for (t, cond) in [
        ("mercy-general", "RLSEnforced"),
        ("mercy-general", "DatabaseReady"),
    ] {
        let tenant = api.get(t).await.expect("get");
        assert_eq!(
            condition(&tenant, cond).map(|c| c.0).as_deref(),
            Some("True"),
            "{t} {cond}"
        );
    }

    // Residency: EU rows exist only in the EU region's database.
    let eu: Vec<String> = catalog_names("eu-west-1", "%")
        .await
        .into_iter()
        .map(|r| r.0)
        .collect();
    assert!(eu.contains(&"charite-berlin".to_owned()), "{eu:?}");
    for region in ["us-east-1", "ap-southeast-1"] {
        let names: Vec<String> = catalog_names(region, "%")
            .await
            .into_iter()
            .map(|r| r.0)
            .collect();
        assert!(
            !names.contains(&"charite-berlin".to_owned()),
            "EU tenant in {region}: {names:?}"
        );
    }

    let regions: Api<Region> = Api::all(kube_client().await);
    let us_status = eventually(
        "us-east-1 counts its tenants",
        Duration::from_secs(30),
        || {
            let regions = regions.clone();
            async move {
                regions
                    .get("us-east-1")
                    .await
                    .ok()?
                    .status
                    .filter(|s| s.tenant_count >= 2)
            }
        },
    )
    .await;
    assert!(
        us_status
            .conditions
            .iter()
            .any(|c| c.type_ == "ReplicationHealthy" && c.status == "True"),
        "{:?}",
        us_status.conditions
    );
    // Its reader (the stack's streaming replica) reports where it is, and is published to
    // the catalog (endpoint only) for the data plane.
    let replica_port: i32 = stack_var("PG_REPLICA_PORT_US_EAST_1")
        .parse()
        .expect("replica port");
    let [reader] = us_status.readers.as_slice() else {
        panic!("one reader expected: {:?}", us_status.readers);
    };
    assert!(reader.healthy, "{reader:?}");
    assert_eq!(reader.endpoint, format!("127.0.0.1:{replica_port}/phoenix"));
    assert!(
        reader
            .replay_lsn
            .as_deref()
            .is_some_and(|l| l.contains('/')),
        "{reader:?}"
    );
    assert!(reader.lag_bytes.is_some_and(|b| b >= 0), "{reader:?}");
    let published = pg("us-east-1")
        .await
        .query(
            "SELECT host, port, dbname, healthy FROM catalog.readers ORDER BY ordinal",
            &[],
        )
        .await
        .expect("catalog.readers");
    let published: Vec<(String, i32, String, bool)> = published
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    assert_eq!(
        published,
        [(
            "127.0.0.1".to_owned(),
            replica_port,
            "phoenix".to_owned(),
            true
        )]
    );

    // The data planes serve what the operator built, as the role it created.
    let us_dp = Process::dataplane("us-east-1", dataplane_url("us-east-1").await, None).await;
    // eu-west-1 is TLS-only: the data plane verifies it with the CA in its Secret.
    let eu_ca = dataplane_ca_file("eu-west-1").await;
    assert!(
        eu_ca.is_some(),
        "no ca.crt beside the eu-west-1 data plane's credentials"
    );
    assert!(
        dataplane_url("eu-west-1")
            .await
            .contains("sslmode=verify-full"),
        "the eu-west-1 data plane is not told to verify its server"
    );
    let eu_dp = Process::dataplane("eu-west-1", dataplane_url("eu-west-1").await, eu_ca).await;
    let (status, body) = get_metadata(&us_dp, "mercy-general.us.phoenixguardian.test").await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("CapabilityStatement") && body.contains("Mercy General Hospital"),
        "{body}"
    );
    let (status, body) = get_metadata(&us_dp, "charite.eu.phoenixguardian.test").await;
    assert_eq!(
        status, 404,
        "an EU tenant was served by the US data plane: {body}"
    );
    assert!(body.contains("OperationOutcome"), "{body}");
    assert_eq!(
        get_metadata(&eu_dp, "charite.eu.phoenixguardian.test")
            .await
            .0,
        200
    );
    assert_eq!(
        get_metadata(&eu_dp, "nordic-care.eu.phoenixguardian.test")
            .await
            .0,
        403,
        "a suspended tenant was served"
    );

    // A tenant applied now is served; deleted, it stops being served.
    scenario.apply(&tenant_yaml("e2e-late", "US", ""));
    served_as(
        &us_dp,
        "e2e-late.e2e.phoenixguardian.test",
        200,
        Duration::from_secs(60),
    )
    .await;
    kubectl_ok(&["delete", "tenant", "e2e-late", "--timeout=60s"], None);
    served_as(
        &us_dp,
        "e2e-late.e2e.phoenixguardian.test",
        404,
        Duration::from_secs(60),
    )
    .await;
}
