//! IdPConnections against the stack's real Keycloak: a valid realm is Ready and its tenant's
//! SSOReady follows; a wrong issuer URL, an unreachable IdP, an issuer mismatch and an
//! untrusted TLS certificate each say what is wrong; SAML is NotImplemented; a key added at
//! Keycloak is picked up as a rotation.

use std::time::Duration;

use kube::Api;
use phoenix_crds::IdPConnection;
use phoenix_e2e::events::{Regarding, instant, wait_event};
use phoenix_e2e::guard::ScenarioGuard;
use phoenix_e2e::keycloak::admin_token;
use phoenix_e2e::scenario::*;
use phoenix_e2e::*;

fn idp_yaml(name: &str, tenant: &str, issuer: &str) -> String {
    format!(
        "---\napiVersion: phoenixguardian.io/v1alpha1\nkind: IdPConnection\nmetadata:\n  name: {name}\nspec:\n  tenantRef: {tenant}\n  protocol: OIDC\n  oidc:\n    issuerUrl: {issuer}\n    clientId: phoenix-dataplane\n    audiences: [phoenix-dataplane]\n"
    )
}

/// An HTTPS server on loopback whose certificate no client trusts (self-signed, made for
/// the test): `openssl s_server`, stopped on drop.
struct UntrustedTls {
    child: std::process::Child,
    url: String,
    _dir: TempDir,
}

/// A directory removed on drop.
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl UntrustedTls {
    fn start() -> Self {
        let dir = std::env::temp_dir().join(format!("e2e-untrusted-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        let made = std::process::Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args([
                "-subj",
                "/CN=127.0.0.1",
                "-addext",
                "subjectAltName=IP:127.0.0.1",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .expect("run openssl req");
        assert!(
            made.status.success(),
            "openssl req: {}",
            String::from_utf8_lossy(&made.stderr)
        );
        let port = free_port();
        let child = std::process::Command::new("openssl")
            .args(["s_server", "-quiet", "-www", "-accept"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("-cert")
            .arg(&cert)
            .arg("-key")
            .arg(&key)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("run openssl s_server");
        let start = std::time::Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "openssl s_server did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            child,
            url: format!("https://127.0.0.1:{port}"),
            _dir: TempDir(dir),
        }
    }
}

impl Drop for UntrustedTls {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The Ready condition of IdPConnection `name` once it has `status`: (reason, message).
async fn idp_ready(name: &str, status: &str) -> (String, String, IdPConnection) {
    let api: Api<IdPConnection> = Api::all(kube_client().await);
    eventually(
        &format!("IdPConnection {name} Ready={status}"),
        READY_TIMEOUT,
        || {
            let api = api.clone();
            async move {
                let idp = api.get_opt(name).await.ok().flatten()?;
                let c = idp
                    .status
                    .as_ref()?
                    .conditions
                    .iter()
                    .find(|c| c.type_ == "Ready" && c.status == status)?
                    .clone();
                Some((c.reason, c.message, idp))
            }
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idp_connections_against_keycloak_say_what_is_wrong_and_follow_key_rotation() {
    let _serial = SERIAL.lock().await;
    install_platform();
    // Resync every 3 s: re-validation is how a key rotation at the IdP is noticed. A
    // rotated-out SCIM token is accepted for 6 s.
    let _operator =
        Process::operator_with("e2e-operator", 3, &[("SCIM_TOKEN_GRACE_SECONDS", "6")]).await;
    let scenario = ScenarioGuard::new("idp");
    let kc = stack_var("KEYCLOAK_URL");

    scenario.apply(&tenant_yaml(
        "e2e-sso",
        "US",
        "  database: {deletionPolicy: Delete}\n  sso: {idpConnectionRef: e2e-sso-idp}\n",
    ));
    let missing = wait_tenant("e2e-sso", "SSOReady=False", READY_TIMEOUT, |t| {
        condition(t, "SSOReady").is_some_and(|c| c.0 == "False")
    })
    .await;
    let (_, reason, message) = condition(&missing, "SSOReady").expect("SSOReady");
    assert_eq!(reason, "IdPConnectionNotFound", "{message}");
    assert!(message.contains("e2e-sso-idp"), "{message}");

    let issuer = format!("{kc}/realms/mercy-general");
    scenario.apply(&(idp_yaml("e2e-sso-idp", "e2e-sso", &issuer) + "  scim: {enabled: true}\n"));
    let (reason, message, idp) = idp_ready("e2e-sso-idp", "True").await;
    assert_eq!(reason, "IdPValidated");
    assert!(
        message.contains(&format!("issuer {issuer};")) && message.contains("RS256"),
        "{message}"
    );
    let keys_before = idp
        .status
        .as_ref()
        .map(|s| s.signing_key_ids.clone())
        .unwrap_or_default();
    assert!(!keys_before.is_empty(), "no signing key ids in status");
    wait_tenant("e2e-sso", "SSOReady=True", READY_TIMEOUT, |t| {
        condition(t, "SSOReady").is_some_and(|c| c.0 == "True" && c.1 == "IdPReady")
    })
    .await;

    // The SSO settings are in the tenant's Region catalog, for the data plane.
    let sso_rows = || async {
        pg("us-east-1")
            .await
            .query(
                "SELECT s.issuer, s.client_id, s.scim_enabled FROM catalog.sso s
                 JOIN catalog.tenants t ON t.id = s.tenant_id WHERE t.name = 'e2e-sso'",
                &[],
            )
            .await
            .expect("catalog.sso")
            .into_iter()
            .map(|r| {
                (
                    r.get::<_, String>(0),
                    r.get::<_, String>(1),
                    r.get::<_, bool>(2),
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        sso_rows().await,
        [(issuer.clone(), "phoenix-dataplane".to_owned(), true)]
    );

    // The SCIM token: in a Secret owned by the connection, only its hash in the catalog.
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(kube_client().await, NAMESPACE);
    let token_of = |secret: &k8s_openapi::api::core::v1::Secret| {
        secret
            .data
            .as_ref()
            .and_then(|d| d.get("token"))
            .map(|t| String::from_utf8_lossy(&t.0).into_owned())
            .expect("a token in the SCIM Secret")
    };
    let secret = secrets
        .get("phoenix-scim-e2e-sso-idp")
        .await
        .expect("the SCIM token Secret");
    let owner = secret.metadata.owner_references.clone().unwrap_or_default();
    assert!(
        owner
            .iter()
            .any(|o| o.kind == "IdPConnection" && o.name == "e2e-sso-idp"),
        "{owner:?}"
    );
    let first = token_of(&secret);
    let sha = |t: &str| hex::encode(<sha2::Sha256 as sha2::Digest>::digest(t.as_bytes()));
    let hashes = || async {
        pg("us-east-1")
            .await
            .query(
                "SELECT h.token_sha256, h.expires_at IS NULL FROM catalog.scim_tokens h
                 JOIN catalog.tenants t ON t.id = h.tenant_id WHERE t.name = 'e2e-sso'
                 ORDER BY h.created_at",
                &[],
            )
            .await
            .expect("catalog.scim_tokens")
            .into_iter()
            .map(|r| (r.get::<_, String>(0), r.get::<_, bool>(1)))
            .collect::<Vec<_>>()
    };
    assert_eq!(hashes().await, [(sha(&first), true)]);
    let dump = pg("us-east-1")
        .await
        .query_one(
            "SELECT count(*) FROM catalog.scim_tokens WHERE token_sha256 = $1",
            &[&first],
        )
        .await
        .expect("count")
        .get::<_, i64>(0);
    assert_eq!(dump, 0, "the clear token is in the catalog");

    // Rotation on request: a new token, the old one accepted for its grace period only.
    let since = instant();
    kubectl_ok(
        &[
            "annotate",
            "--overwrite",
            "idpconnection",
            "e2e-sso-idp",
            "phoenixguardian.io/rotate-scim-token=1",
        ],
        None,
    );
    let second = eventually("a new SCIM token", READY_TIMEOUT, || {
        let secrets = secrets.clone();
        let first = first.clone();
        async move {
            let s = secrets.get("phoenix-scim-e2e-sso-idp").await.ok()?;
            let t = token_of(&s);
            (t != first).then_some(t)
        }
    })
    .await;
    let rotated = eventually(
        "both hashes, the old one in grace",
        READY_TIMEOUT,
        || async {
            let h = hashes().await;
            (h.len() == 2).then_some(h)
        },
    )
    .await;
    assert_eq!(rotated, [(sha(&first), false), (sha(&second), true)]);
    let idp = Api::<IdPConnection>::all(kube_client().await)
        .get("e2e-sso-idp")
        .await
        .expect("idp");
    wait_event(&Regarding::of(&idp), "ScimTokenRotated", since).await;
    eventually(
        "the old hash gone after its grace",
        READY_TIMEOUT,
        || async { (hashes().await == [(sha(&second), true)]).then_some(()) },
    )
    .await;

    // What is wrong is named, one case each.
    let dead = format!("http://127.0.0.1:{}/realms/x", free_port());
    let untrusted = UntrustedTls::start();
    for (name, url, want, says) in [
        (
            "e2e-idp-wrong",
            format!("{kc}/realms/no-such-realm"),
            "IdPHTTPError",
            "404",
        ),
        (
            "e2e-idp-dead",
            dead.clone(),
            "IdPUnreachable",
            "unreachable",
        ),
        (
            "e2e-idp-mismatch",
            format!("{kc}/realms/e2e-mismatch"),
            "IssuerMismatch",
            "says its issuer is",
        ),
        (
            "e2e-idp-tls",
            format!("{}/realms/x", untrusted.url),
            "IdPTLSError",
            "certificate",
        ),
    ] {
        scenario.apply(&idp_yaml(name, "e2e-sso", &url));
        let (reason, message, _) = idp_ready(name, "False").await;
        assert_eq!(reason, want, "{name}: {message}");
        assert!(message.contains(says), "{name}: {message}");
    }
    scenario.apply(
        "---\napiVersion: phoenixguardian.io/v1alpha1\nkind: IdPConnection\nmetadata:\n  name: e2e-idp-saml\nspec:\n  tenantRef: e2e-sso\n  protocol: SAML\n  saml: {entityId: phoenix, metadataUrl: 'https://idp.example/saml/metadata'}\n",
    );
    let (reason, _, _) = idp_ready("e2e-idp-saml", "False").await;
    assert_eq!(reason, "NotImplemented");

    // Keycloak gets a new signing key: the next validation sees it, without a restart.
    let http = reqwest::Client::new();
    let token = admin_token(&http).await;
    let realm: serde_json::Value = http
        .get(format!("{kc}/admin/realms/mercy-general"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("realm")
        .json()
        .await
        .expect("realm JSON");
    let since = instant();
    let created = http
        .post(format!("{kc}/admin/realms/mercy-general/components"))
        .bearer_auth(&token)
        .json(&serde_json::json!({
            "name": "e2e-rotated",
            "providerId": "rsa-generated",
            "providerType": "org.keycloak.keys.KeyProvider",
            "parentId": realm["id"],
            "config": {"priority": ["200"], "enabled": ["true"], "active": ["true"], "algorithm": ["RS256"]}
        }))
        .send()
        .await
        .expect("add a key provider");
    assert!(created.status().is_success(), "{}", created.status());
    let component = created
        .headers()
        .get("location")
        .and_then(|l| l.to_str().ok())
        .map(str::to_owned);
    let (_, _, rotated) = eventually("the new key in status", Duration::from_secs(60), || async {
        let (r, m, idp) = idp_ready("e2e-sso-idp", "True").await;
        let keys = idp
            .status
            .as_ref()
            .map(|s| s.signing_key_ids.clone())
            .unwrap_or_default();
        (keys.len() > keys_before.len()).then_some((r, m, idp))
    })
    .await;
    wait_event(&Regarding::of(&rotated), "SigningKeysRotated", since).await;
    if let Some(location) = component {
        let _ = http.delete(location).bearer_auth(&token).send().await;
    }

    // Deleting the connection removes its SSO settings from the catalog.
    kubectl_ok(
        &["delete", "idpconnection", "e2e-sso-idp", "--timeout=60s"],
        None,
    );
    assert!(
        sso_rows().await.is_empty(),
        "SSO settings left in the catalog"
    );
}
