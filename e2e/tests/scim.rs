//! SCIM at the data plane against the stack: the external checker scim2-tester passes with
//! no failures using the tenant's generated token; an IdP-style flow (provision, group,
//! deactivate, reactivate, delete) opens and closes the user's access at once with their
//! real Keycloak token; and a rotated SCIM token works during its grace period only.

use std::time::{Duration, Instant};

use phoenix_e2e::guard::ScenarioGuard;
use phoenix_e2e::keycloak::{jwt_parts, password_grant, user_email};
use phoenix_e2e::scenario::*;
use phoenix_e2e::scim::{GROUP_SCHEMA, ScimClient, client_when_ready, scim_token};
use phoenix_e2e::*;
use reqwest::Method;
use serde_json::{Value, json};

const MERCY_HOST: &str = "mercy-general.us.phoenixguardian.test";

fn secret_yaml() -> String {
    let secret = serde_json::to_string(&stack_var("KEYCLOAK_CLIENT_SECRET")).expect("json");
    format!(
        "---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: keycloak-phoenix-dataplane\n  namespace: {NAMESPACE}\nstringData:\n  clientSecret: {secret}\n"
    )
}

/// The example tenants and IdPConnections applied and Ready, and a us-east-1 data plane.
async fn platform(scenario: &ScenarioGuard) -> Process {
    kubectl_ok(&["apply", "-f", "-"], Some(&secret_yaml()));
    // scim2-tester fires its checks back to back, faster than mercy-general's example
    // limit of 200 requests per second (the data plane answers 429 beyond it, as it
    // should): the conformance run gets the headroom a bulk provisioning job would.
    let tenants = std::fs::read_to_string(repo().join("examples/tenants.yaml"))
        .expect("read")
        .replacen("requestsPerSecond: 200", "requestsPerSecond: 5000", 1);
    assert!(
        tenants.contains("requestsPerSecond: 5000"),
        "examples/tenants.yaml changed"
    );
    scenario.apply(&tenants);
    let idps = std::fs::read_to_string(repo().join("examples/idpconnections.yaml"))
        .expect("read")
        .replace(
            "${KEYCLOAK_URL}",
            stack_var("KEYCLOAK_URL").trim_end_matches('/'),
        );
    scenario.apply(&idps);
    wait_tenant("mercy-general", "Ready", READY_TIMEOUT, is_ready).await;
    let out = kubectl(
        &[
            "wait",
            "--for=condition=Ready",
            "idpconnection/mercy-general",
            "--timeout=120s",
        ],
        None,
    );
    assert!(
        out.status.success(),
        "IdPConnection not Ready: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Process::dataplane("us-east-1", dataplane_url("us-east-1").await, None).await
}

/// `GET /me` at mercy-general with `token`: status and body.
async fn me(dataplane: &Process, token: &str) -> (u16, Value) {
    let res = reqwest::Client::new()
        .get(format!("http://{}/me", dataplane.addr))
        .header("Host", MERCY_HOST)
        .bearer_auth(token)
        .send()
        .await
        .expect("data plane answers");
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scim2_tester_passes_and_an_idp_controls_access_through_scim() {
    let _serial = SERIAL.lock().await;
    install_platform();
    let _operator = Process::operator(5).await;
    let scenario = ScenarioGuard::new("scim");
    let dataplane = platform(&scenario).await;
    let scim = client_when_ready(&dataplane.addr, MERCY_HOST, "mercy-general").await;
    let token = scim_token("mercy-general").await.expect("token");

    // The external compliance checker, with the tenant's generated token.
    let cli = stack_var("SCIM2_CLI");
    let started = Instant::now();
    let out = std::process::Command::new(&cli)
        .args(["--url", &format!("http://{}/scim/v2", dataplane.addr)])
        .args(["-h", &format!("Authorization: Bearer {token}")])
        .args(["-h", &format!("Host: {MERCY_HOST}")])
        .arg("test")
        .output()
        .unwrap_or_else(|e| panic!("{cli} does not run ({e}): e2e/stack up installs it"));
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines: Vec<&str> = report.lines().collect();
    let passed = lines.iter().filter(|l| l.starts_with("SUCCESS")).count();
    let other: Vec<&&str> = lines
        .iter()
        .filter(|l| {
            !l.starts_with("SUCCESS") && !l.starts_with("  ") && !l.starts_with("Performing")
        })
        .collect();
    let summary = format!(
        "scim2-tester 0.5.2 (scim2-cli 0.6.0) against {MERCY_HOST}: {passed} checks SUCCESS, {} not ({:?}), exit {:?}, {:.1} s",
        other.len(),
        other,
        out.status.code(),
        started.elapsed().as_secs_f64()
    );
    eprintln!("{report}\n{summary}");
    let kept = repo().join("target/e2e");
    let _ = std::fs::create_dir_all(&kept);
    let _ = std::fs::write(
        kept.join("scim2-tester.txt"),
        format!("{report}\n{summary}\n"),
    );
    assert!(
        !report.contains(&token),
        "the token is echoed in the report"
    );
    assert!(
        out.status.success() && other.is_empty() && passed > 50,
        "{summary}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The IdP-style flow with Bob, a real Keycloak user: provisioned with his subject as
    // externalId, put in a group; his token opens /me only while he is active.
    let email = user_email("bob", "mercy-general");
    let grant = password_grant("mercy-general", &email).await;
    let bob_token = grant["access_token"]
        .as_str()
        .expect("access token")
        .to_owned();
    let (_, claims) = jwt_parts(&bob_token);
    let subject = claims["sub"].as_str().expect("sub").to_owned();
    let (status, body) = me(&dataplane, &bob_token).await;
    assert_eq!(status, 401, "not provisioned yet: {body}");
    assert_eq!(body["error"], "invalid_token", "{body}");

    let id = scim.create_user(&email, Some(&subject)).await;
    let (status, group) = scim
        .send(Method::POST, "/Groups", Some(json!({"schemas": [GROUP_SCHEMA], "displayName": "nurses", "members": [{"value": id}]})))
        .await;
    assert_eq!(status, 201, "{group}");
    let (status, body) = me(&dataplane, &bob_token).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["subject"], subject.as_str(), "{body}");

    scim.set_active(&id, false).await;
    let (status, body) = me(&dataplane, &bob_token).await;
    assert_eq!(status, 401, "deactivated: {body}");
    assert!(!body.to_string().contains("scim_users"), "{body}");
    scim.set_active(&id, true).await;
    assert_eq!(me(&dataplane, &bob_token).await.0, 200, "reactivated");
    let (status, _) = scim
        .send(Method::DELETE, &format!("/Users/{id}"), None)
        .await;
    assert_eq!(status, 204);
    assert_eq!(me(&dataplane, &bob_token).await.0, 401, "deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_scim_token_works_during_its_grace_period_only() {
    let _serial = SERIAL.lock().await;
    install_platform();
    let grace = 20;
    let _operator =
        Process::operator_with("e2e-operator", 5, &[("SCIM_TOKEN_GRACE_SECONDS", "20")]).await;
    let scenario = ScenarioGuard::new("scim-rotation");
    let dataplane = platform(&scenario).await;
    let old = client_when_ready(&dataplane.addr, MERCY_HOST, "mercy-general").await;
    let old_token = scim_token("mercy-general").await.expect("token");

    let value = format!(
        "{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(1)
    );
    kubectl_ok(
        &[
            "annotate",
            "--overwrite",
            "idpconnection",
            "mercy-general",
            &format!("phoenixguardian.io/rotate-scim-token={value}"),
        ],
        None,
    );
    let rotated_at = Instant::now();
    let new_token = eventually(
        "a new SCIM token in the Secret",
        Duration::from_secs(60),
        || {
            let old_token = old_token.clone();
            async move {
                scim_token("mercy-general")
                    .await
                    .filter(|t| *t != old_token)
            }
        },
    )
    .await;
    let new = ScimClient::new(&dataplane.addr, MERCY_HOST, &new_token);
    eventually(
        "the new token opens /scim/v2",
        Duration::from_secs(30),
        || async { (new.send(Method::GET, "/Users", None).await.0 == 200).then_some(()) },
    )
    .await;
    let (status, body) = old.send(Method::GET, "/Users", None).await;
    assert_eq!(
        status, 200,
        "the old token works during its grace period: {body}"
    );
    assert!(
        rotated_at.elapsed() < Duration::from_secs(grace),
        "checked too late to prove the grace"
    );
    eventually(
        "the old token is refused after its grace period",
        Duration::from_secs(grace + 60),
        || async { (old.send(Method::GET, "/Users", None).await.0 == 401).then_some(()) },
    )
    .await;
    assert!(
        rotated_at.elapsed() >= Duration::from_secs(grace - 5),
        "refused before its grace ended"
    );
    assert_eq!(new.send(Method::GET, "/Users", None).await.0, 200);
}
