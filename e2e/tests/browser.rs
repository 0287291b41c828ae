//! The browser login end to end: headless Chromium (through chromedriver) opens a tenant's
//! `/whoami` on a data plane serving HTTPS, is sent to Keycloak's login page, logs in as
//! alice and lands on `/whoami` with her email and role, holding an HttpOnly, Secure,
//! SameSite=Lax `__Host-` session cookie; logging out revokes the session (the cookie
//! replayed afterwards is a 401, the row is revoked). Bob (a nurse) logs in too; a user whose
//! email domain the IdPConnection does not allow is refused; a tampered state is refused.
//!
//! The client secret reaches the data plane as in a cluster: mirrored by the operator into
//! Secret `phoenix-dataplane-oidc-<region>`, mounted as `OIDC_CLIENT_SECRETS_DIR`.
//!
//! The scenario's own Tenant and IdPConnection (SCIM off, so that login does not depend on
//! provisioning) use the realm of the example tenant mercy-general. Users are provisioned
//! in one place, [`provision_users`], should the tenant ever need them provisioned.

use std::path::PathBuf;
use std::time::Duration;

use phoenix_e2e::guard::ScenarioGuard;
use phoenix_e2e::keycloak::{CLIENT_ID, admin_token, keycloak_url, realm_url};
use phoenix_e2e::scenario::*;
use phoenix_e2e::webdriver::{Browser, Driver};
use phoenix_e2e::*;
use serde_json::{Value, json};

const TENANT: &str = "e2e-login";
const HOST: &str = "e2e-login.e2e.phoenixguardian.test";
const REALM: &str = "mercy-general";
const COOKIE: &str = "__Host-phoenix_session";

fn manifests() -> String {
    let tenant = tenant_yaml(TENANT, "US", "  sso:\n    idpConnectionRef: e2e-login\n");
    let secret = serde_json::to_string(&stack_var("KEYCLOAK_CLIENT_SECRET")).expect("json");
    format!(
        "{tenant}---
apiVersion: v1
kind: Secret
metadata:
  name: keycloak-phoenix-dataplane
  namespace: {NAMESPACE}
stringData:
  clientSecret: {secret}
---
apiVersion: phoenixguardian.io/v1alpha1
kind: IdPConnection
metadata:
  name: {TENANT}
spec:
  tenantRef: {TENANT}
  protocol: OIDC
  oidc:
    issuerUrl: {issuer}
    clientId: {CLIENT_ID}
    clientSecretRef:
      namespace: {NAMESPACE}
      name: keycloak-phoenix-dataplane
      key: clientSecret
    audiences: [{CLIENT_ID}]
  roleMapping:
    - group: physicians
      role: physician
    - group: nurses
      role: nurse
  allowedEmailDomains: [{REALM}.example]
  scim:
    enabled: false
",
        issuer = realm_url(REALM)
    )
}

/// Calls Keycloak's admin API on `path` of the realm; the answer's JSON (or null).
async fn admin(method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
    let http = reqwest::Client::new();
    let token = admin_token(&http).await;
    let url = format!("{}/admin/realms/{REALM}{path}", keycloak_url());
    let mut request = http.request(method.clone(), &url).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let res = request.send().await.expect("Keycloak answers");
    let status = res.status();
    let text = res.text().await.unwrap_or_default();
    assert!(
        status.is_success() || status == 409,
        "{method} {url}: {status}: {text}"
    );
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

/// The realm's client lets this scenario's host be a redirect target (Keycloak allows only
/// a trailing wildcard: any port of the host).
async fn allow_redirects() {
    let clients = admin(
        reqwest::Method::GET,
        &format!("/clients?clientId={CLIENT_ID}"),
        None,
    )
    .await;
    let mut client = clients[0].clone();
    let id = client["id"].as_str().expect("client id").to_owned();
    let wanted = format!("https://{HOST}:*");
    let uris = client["redirectUris"]
        .as_array_mut()
        .expect("redirect URIs");
    if !uris.iter().any(|u| u == &json!(wanted)) {
        uris.push(json!(wanted));
        admin(
            reqwest::Method::PUT,
            &format!("/clients/{id}"),
            Some(client),
        )
        .await;
    }
}

/// The users this scenario logs in as, beyond the realm's alice and bob: eve, a physician
/// whose email domain the IdPConnection does not allow. Were the tenant provisioned over
/// SCIM, this is where its users would be provisioned.
async fn provision_users() {
    let eve = json!({
        "username": "eve", "email": "eve@elsewhere.example", "emailVerified": true,
        "firstName": "Eve", "lastName": "Outsider", "enabled": true,
        "credentials": [{"type": "password", "value": stack_var("KEYCLOAK_USER_PASSWORD"), "temporary": false}],
        "groups": ["/physicians"],
    });
    admin(reqwest::Method::POST, "/users", Some(eve)).await;
}

/// A self-signed certificate for the scenario's host, as PEM files (cert, key).
fn certificate() -> (PathBuf, PathBuf) {
    let dir = PathBuf::from(stack_var("STACK_DIR"))
        .join("pki")
        .join("e2e-login");
    std::fs::create_dir_all(&dir).expect("pki dir");
    let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
    let out = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
        ])
        .arg(format!("/CN={HOST}"))
        .arg("-addext")
        .arg(format!("subjectAltName=DNS:{HOST}"))
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}

/// The client secrets directory as the chart mounts it: the operator's mirror Secret
/// `phoenix-dataplane-oidc-us-east-1`, one file per key, once it holds this scenario's
/// IdPConnection's client secret.
async fn secrets_dir() -> PathBuf {
    use k8s_openapi::api::core::v1::Secret;
    let secrets: kube::Api<Secret> = kube::Api::namespaced(kube_client().await, NAMESPACE);
    let expected = stack_var("KEYCLOAK_CLIENT_SECRET");
    let data = eventually(
        "the operator mirrors the client secret",
        Duration::from_secs(60),
        || {
            let (secrets, expected) = (secrets.clone(), expected.clone());
            async move {
                let secret = secrets
                    .get_opt("phoenix-dataplane-oidc-us-east-1")
                    .await
                    .ok()??;
                let data = secret.data?;
                (data.get(TENANT)?.0 == expected.as_bytes()).then_some(data)
            }
        },
    )
    .await;
    let dir = PathBuf::from(stack_var("STACK_DIR")).join("e2e-login-oidc-secrets");
    std::fs::create_dir_all(&dir).expect("secrets dir");
    for (name, value) in data {
        std::fs::write(dir.join(name), value.0).expect("write secret");
    }
    dir
}

/// A client that reaches `HOST` at the data plane and trusts its test certificate.
fn https(dataplane: &Process) -> reqwest::Client {
    reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .resolve(HOST, dataplane.addr.parse().expect("socket address"))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("HTTP client")
}

/// Opens `/whoami` in a fresh browser and logs in on Keycloak's page as `user`.
async fn log_in(driver: &Driver, base: &str, user: &str) -> Browser {
    let browser = driver.browser().await;
    browser.open(&format!("{base}/whoami")).await;
    let kc = keycloak_url();
    browser
        .wait_url("Keycloak's login page", |u| u.starts_with(&kc))
        .await;
    browser.type_into("#username", user).await;
    browser
        .type_into("#password", &stack_var("KEYCLOAK_USER_PASSWORD"))
        .await;
    browser.click("#kc-login").await;
    browser
}

async fn me_with_cookie(client: &reqwest::Client, base: &str, cookie: &str) -> u16 {
    client
        .get(format!("{base}/me"))
        .header("cookie", format!("{COOKIE}={cookie}"))
        .header("accept", "application/json")
        .send()
        .await
        .expect("data plane answers")
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_logs_in_with_keycloak_sees_whoami_and_logs_out() {
    let _serial = SERIAL.lock().await;
    install_platform();
    let _operator = Process::operator(5).await;
    let scenario = ScenarioGuard::new("browser-login");
    allow_redirects().await;
    provision_users().await;
    scenario.apply(&manifests());
    wait_tenant(TENANT, "Ready", READY_TIMEOUT, is_ready).await;
    let out = kubectl(
        &[
            "wait",
            "--for=condition=Ready",
            &format!("idpconnection/{TENANT}"),
            "--timeout=120s",
        ],
        None,
    );
    assert!(
        out.status.success(),
        "IdPConnection not Ready: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let (cert, key) = certificate();
    let dataplane = Process::dataplane_with(
        "e2e-dataplane-login",
        "us-east-1",
        dataplane_url("us-east-1").await,
        None,
        &[
            ("TLS_CERT_FILE", cert.display().to_string()),
            ("TLS_KEY_FILE", key.display().to_string()),
            ("PUBLIC_SCHEME", "https".to_owned()),
            (
                "OIDC_CLIENT_SECRETS_DIR",
                secrets_dir().await.display().to_string(),
            ),
        ],
    )
    .await;
    let port = dataplane.addr.rsplit(':').next().expect("port").to_owned();
    let base = format!("https://{HOST}:{port}");
    let client = https(&dataplane);
    // The SSO row (with the login endpoints) has reached the data plane.
    eventually(
        "the data plane starts logins for the tenant",
        Duration::from_secs(60),
        || async {
            let res = client.get(format!("{base}/login")).send().await.ok()?;
            (res.status() == 303).then_some(())
        },
    )
    .await;

    // Alice: Keycloak's page, then /whoami as a physician.
    let driver = Driver::start().await;
    let alice = log_in(&driver, &base, "alice").await;
    alice
        .wait_url("/whoami", |u| u == format!("{base}/whoami"))
        .await;
    assert_eq!(alice.text("#email").await, format!("alice@{REALM}.example"));
    assert_eq!(alice.text("#roles").await, "physician");
    assert_eq!(alice.text("#tenant").await, format!("{TENANT} hospital"));
    let cookies = alice.cookies().await;
    let session = cookies
        .iter()
        .find(|c| c.name == COOKIE)
        .unwrap_or_else(|| panic!("no session cookie among {cookies:?}"))
        .clone();
    assert!(session.http_only, "{session:?}");
    assert!(session.secure, "{session:?}");
    assert_eq!(session.same_site, "Lax", "{session:?}");
    assert_eq!(session.value.len(), 43, "a 256-bit id");
    assert_eq!(me_with_cookie(&client, &base, &session.value).await, 200);

    // Logout: the session row is revoked and the cookie is worthless, even replayed.
    alice.click("#logout").await;
    let after = alice
        .wait_url("Keycloak's logout or the logged-out page", |u| {
            !u.starts_with(&format!("{base}/whoami"))
        })
        .await;
    if after.starts_with(&keycloak_url()) {
        // Keycloak asks before ending its own session when no id_token_hint is sent.
        alice.click("#kc-logout").await;
        alice
            .wait_url("/logged-out", |u| {
                u.starts_with(&format!("{base}/logged-out"))
            })
            .await;
    }
    assert_eq!(me_with_cookie(&client, &base, &session.value).await, 401);
    let revoked: i64 = pg("us-east-1")
        .await
        .query_one(
            "SELECT count(*) FROM clinical.sessions s JOIN catalog.tenants t ON t.id = s.tenant_id
             WHERE t.name = $1 AND s.email = $2 AND s.revoked_at IS NOT NULL",
            &[&TENANT, &format!("alice@{REALM}.example")],
        )
        .await
        .expect("sessions")
        .get(0);
    assert_eq!(revoked, 1, "alice's session row is revoked");
    drop(alice);

    // Bob logs in as a nurse.
    let bob = log_in(&driver, &base, "bob").await;
    bob.wait_url("/whoami", |u| u == format!("{base}/whoami"))
        .await;
    assert_eq!(bob.text("#roles").await, "nurse");

    // A state the data plane did not issue is refused, even with a genuine code (bob's
    // Keycloak session answers at once).
    let login = client
        .get(format!("{base}/login"))
        .send()
        .await
        .expect("login");
    let location = login.headers()["location"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let mut url = reqwest::Url::parse(&location).expect("URL");
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "state" {
                "tampered".to_owned()
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    url.query_pairs_mut().clear().extend_pairs(pairs);
    bob.open(url.as_str()).await;
    bob.wait_url("the callback", |u| {
        u.starts_with(&format!("{base}/auth/callback"))
    })
    .await;
    let message = bob.text("#message").await;
    assert!(message.contains("start the login again"), "{message}");
    drop(bob);

    // Eve's email domain is not allowed: a clear refusal, no session.
    let eve = log_in(&driver, &base, "eve").await;
    eve.wait_url("the callback", |u| {
        u.starts_with(&format!("{base}/auth/callback"))
    })
    .await;
    let message = eve.text("#message").await;
    assert!(message.contains("email domain is not allowed"), "{message}");
    assert!(eve.cookies().await.iter().all(|c| c.name != COOKIE));
    drop(eve);

    // Nothing secret reached the data plane's log.
    let log = std::fs::read_to_string(&dataplane.log).unwrap_or_default();
    assert!(
        !log.contains(&session.value),
        "the session id is in the log"
    );
    assert!(
        !log.contains(&stack_var("KEYCLOAK_CLIENT_SECRET")),
        "the client secret is in the log"
    );
}
