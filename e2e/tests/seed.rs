//! The quick start's seeding (`e2e/lib/seed.py`) against the real stack: with a Keycloak
//! token of an example tenant's physician it writes synthetic patients, encounters, notes
//! and medication requests through the data plane's FHIR API, a second run changes
//! nothing, and none of the seeded names reaches the data plane's or the operator's log,
//! even after searches by name.

use std::process::Command;

use phoenix_e2e::guard::ScenarioGuard;
use phoenix_e2e::keycloak::{password_grant, user_email};
use phoenix_e2e::scenario::*;
use phoenix_e2e::scim::provision_users;
use phoenix_e2e::*;
use serde_json::Value;

const HOST: &str = "mercy-general.us.phoenixguardian.test";
/// The family names seed.py gives its patients.
const SEEDED_FAMILIES: [&str; 5] = ["Rivera", "Okafor", "Lindqvist", "Nakamura", "Haddad"];

fn seed(dataplane: &Process, token: &str) -> String {
    let out = Command::new("python3")
        .arg(repo().join("e2e/lib/seed.py"))
        .args(["--url", &format!("http://{}", dataplane.addr)])
        .args([
            "--host",
            HOST,
            "--tenant",
            "mercy-general",
            "--token",
            token,
        ])
        .output()
        .expect("python3 runs e2e/lib/seed.py");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "seed.py failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

async fn search(dataplane: &Process, token: &str, query: &str) -> Value {
    let res = reqwest::Client::new()
        .get(format!("http://{}/fhir/{query}", dataplane.addr))
        .header("Host", HOST)
        .bearer_auth(token)
        .send()
        .await
        .expect("data plane answers");
    assert_eq!(res.status(), 200, "{query}");
    res.json().await.expect("a Bundle")
}

fn ids(bundle: &Value) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["resource"]["id"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_writes_through_the_api_once_and_no_seeded_name_is_logged() {
    let _serial = SERIAL.lock().await;
    install_platform();
    let operator = Process::operator(5).await;
    let scenario = ScenarioGuard::new("seed");
    let secret = serde_json::to_string(&stack_var("KEYCLOAK_CLIENT_SECRET")).expect("json");
    kubectl_ok(
        &["apply", "-f", "-"],
        Some(&format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: keycloak-phoenix-dataplane\n  namespace: {NAMESPACE}\nstringData:\n  clientSecret: {secret}\n"
        )),
    );
    let tenants = std::fs::read_to_string(repo().join("examples/tenants.yaml")).expect("read");
    scenario.apply(&tenants);
    let idps = std::fs::read_to_string(repo().join("examples/idpconnections.yaml"))
        .expect("read")
        .replace(
            "${KEYCLOAK_URL}",
            stack_var("KEYCLOAK_URL").trim_end_matches('/'),
        );
    scenario.apply(&idps);
    wait_tenant("mercy-general", "Ready", READY_TIMEOUT, is_ready).await;
    kubectl_ok(
        &[
            "wait",
            "--for=condition=Ready",
            "idpconnection/mercy-general",
            "--timeout=120s",
        ],
        None,
    );
    // At debug level, so that every line the request path may log is looked at.
    let dataplane = Process::dataplane_with(
        "e2e-dataplane-seed",
        "us-east-1",
        dataplane_url("us-east-1").await,
        None,
        &[(
            "RUST_LOG",
            "debug,hyper=info,h2=info,tokio_postgres=info,rustls=info".to_owned(),
        )],
    )
    .await;
    let alice = user_email("alice", "mercy-general");
    provision_users(&dataplane.addr, HOST, "mercy-general", &[&alice]).await;
    let token = password_grant("mercy-general", &alice).await["access_token"]
        .as_str()
        .expect("access token")
        .to_owned();
    // The SSO row reaches the data plane through its catalog follower.
    eventually(
        "the data plane accepts alice's token",
        READY_TIMEOUT,
        || async {
            let res = reqwest::Client::new()
                .get(format!("http://{}/me", dataplane.addr))
                .header("Host", HOST)
                .bearer_auth(&token)
                .send()
                .await
                .ok()?;
            (res.status() == 200).then_some(())
        },
    )
    .await;

    let first = seed(&dataplane, &token);
    assert!(
        first.contains("5 Patient, 15 Encounter, 10 DocumentReference, 5 MedicationRequest"),
        "{first}"
    );
    // The second run finds the first's patients by a search, which carries no consistency
    // token and so may be answered by the Region's reader (the stack's replica, published
    // by the operator): let the replica replay the first run before asking.
    us_east_1_replica_caught_up().await;
    let again = seed(&dataplane, &token);
    assert!(again.contains("already seeded"), "{again}");

    // What the first run wrote, read back through the API (the replica replayed it above).
    let patients = search(
        &dataplane,
        &token,
        "Patient?identifier=urn:phoenixguardian:seed|mercy-general-seed-000",
    )
    .await;
    let [patient] = ids(&patients).try_into().expect("one seeded patient 000");
    let encounters = search(&dataplane, &token, &format!("Encounter?patient={patient}")).await;
    assert_eq!(ids(&encounters).len(), 3, "{encounters}");
    let notes = search(
        &dataplane,
        &token,
        &format!("DocumentReference?patient={patient}"),
    )
    .await;
    assert_eq!(ids(&notes).len(), 2, "{notes}");
    let orders = search(
        &dataplane,
        &token,
        &format!("MedicationRequest?patient={patient}&status=active"),
    )
    .await;
    assert_eq!(ids(&orders).len(), 1, "{orders}");
    for family in SEEDED_FAMILIES {
        let found = search(&dataplane, &token, &format!("Patient?family={family}")).await;
        assert_eq!(ids(&found).len(), 1, "{family}: {found}");
    }

    // No seeded name in any log line, though the searches above carried them in their URLs
    // (and the data plane logged at debug level: it did log the requests).
    let logged = dataplane.own_log();
    assert!(
        logged.lines().count() > 40,
        "the data plane logged too little for this check to mean anything:\n{logged}"
    );
    for (who, log) in [
        ("the data plane", dataplane.own_log()),
        ("the operator", operator.own_log()),
    ] {
        for family in SEEDED_FAMILIES {
            assert!(
                !log.contains(family),
                "{who} logged the patient name {family}"
            );
        }
    }
}
