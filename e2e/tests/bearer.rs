//! Bearer tokens at the data plane against the stack's real Keycloak (users provisioned
//! through SCIM first, as the example IdPConnections enable it): alice's genuine token
//! of mercy-general opens `GET /me` at mercy-general's host with her email and role; every
//! forgery built from it (and the genuine token at another tenant's host) is a 401 with a
//! Bearer challenge; no token reaches the data plane's log.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use phoenix_e2e::guard::ScenarioGuard;
use phoenix_e2e::keycloak::{
    admin_token, get_json, jwt_parts, password_grant, realm_url, user_email,
};
use phoenix_e2e::scenario::*;
use phoenix_e2e::scim::provision_users;
use phoenix_e2e::*;
use serde_json::{Value, json};

const MERCY_HOST: &str = "mercy-general.us.phoenixguardian.test";
const ST_LUKES_HOST: &str = "st-lukes.us.phoenixguardian.test";

/// An attacker's own RSA key (the data plane's unit-test key; Keycloak never saw it).
const ATTACKER_PEM: &[u8] = include_bytes!("../../dataplane/src/auth/test_rsa.pem");

/// `GET /me` at `host` with `token` (none: no Authorization header): status, WWW-Authenticate,
/// body.
async fn me(dataplane: &Process, host: &str, token: Option<&str>) -> (u16, String, Value) {
    let mut request = reqwest::Client::new()
        .get(format!("http://{}/me", dataplane.addr))
        .header("Host", host);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let res = request.send().await.expect("data plane answers");
    let status = res.status().as_u16();
    let challenge = res
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap_or_default().to_owned())
        .unwrap_or_default();
    let body = res.text().await.unwrap_or_default();
    let body = serde_json::from_str(&body).unwrap_or_else(|_| json!({"raw": body}));
    (status, challenge, body)
}

fn b64(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

/// Asserts `token` is refused at `host` as an invalid token, saying `why`.
async fn refused(dataplane: &Process, host: &str, token: &str, what: &str) -> String {
    let (status, challenge, body) = me(dataplane, host, Some(token)).await;
    assert_eq!(status, 401, "{what}: accepted: {body}");
    assert!(
        challenge.starts_with("Bearer realm=") && challenge.contains("error=\"invalid_token\""),
        "{what}: challenge {challenge:?}"
    );
    assert_eq!(body["error"], "invalid_token", "{what}: {body}");
    assert!(!body.to_string().contains(token), "{what}: token echoed");
    assert!(!challenge.contains(token), "{what}: token echoed");
    body["message"].as_str().unwrap_or_default().to_owned()
}

/// A genuine access token of `user` in `realm` that lives one second: the client's
/// access token lifespan is set to 1 s for the grant, then put back.
async fn short_lived_token(realm: &str, user: &str) -> String {
    let http = reqwest::Client::new();
    let kc = stack_var("KEYCLOAK_URL").trim_end_matches('/').to_owned();
    let admin = admin_token(&http).await;
    let clients: Value = http
        .get(format!(
            "{kc}/admin/realms/{realm}/clients?clientId={}",
            phoenix_e2e::keycloak::CLIENT_ID
        ))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("Keycloak answers")
        .json()
        .await
        .expect("clients");
    let original = clients[0].clone();
    let id = original["id"].as_str().expect("client id").to_owned();
    let url = format!("{kc}/admin/realms/{realm}/clients/{id}");
    let put = |representation: Value| {
        let (http, url, admin) = (http.clone(), url.clone(), admin.clone());
        async move {
            let res = http
                .put(&url)
                .bearer_auth(&admin)
                .json(&representation)
                .send()
                .await
                .expect("Keycloak answers");
            assert!(res.status().is_success(), "PUT client: {}", res.status());
        }
    };
    let mut short = original.clone();
    short["attributes"]["access.token.lifespan"] = json!("1");
    put(short).await;
    let grant = password_grant(realm, user).await;
    put(original).await;
    grant["access_token"]
        .as_str()
        .expect("access token")
        .to_owned()
}

fn secret_yaml() -> String {
    let secret = serde_json::to_string(&stack_var("KEYCLOAK_CLIENT_SECRET")).expect("json");
    format!(
        "---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: keycloak-phoenix-dataplane\n  namespace: {NAMESPACE}\nstringData:\n  clientSecret: {secret}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_genuine_tokens_of_the_tenants_own_idp_open_me() {
    let _serial = SERIAL.lock().await;
    install_platform();
    let _operator = Process::operator(5).await;
    let scenario = ScenarioGuard::new("bearer");
    kubectl_ok(&["apply", "-f", "-"], Some(&secret_yaml()));
    let tenants = std::fs::read_to_string(repo().join("examples/tenants.yaml")).expect("read");
    scenario.apply(&tenants);
    let idps = std::fs::read_to_string(repo().join("examples/idpconnections.yaml"))
        .expect("read")
        .replace(
            "${KEYCLOAK_URL}",
            stack_var("KEYCLOAK_URL").trim_end_matches('/'),
        );
    scenario.apply(&idps);
    for name in ["mercy-general", "st-lukes"] {
        wait_tenant(name, "Ready", READY_TIMEOUT, is_ready).await;
        let out = kubectl(
            &[
                "wait",
                "--for=condition=Ready",
                &format!("idpconnection/{name}"),
                "--timeout=120s",
            ],
            None,
        );
        assert!(
            out.status.success(),
            "IdPConnection {name} not Ready: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let dataplane = Process::dataplane("us-east-1", dataplane_url("us-east-1").await, None).await;
    // Both tenants provision users through SCIM: their IdP's users exist here first.
    let (alice, bob) = (
        user_email("alice", "mercy-general"),
        user_email("bob", "mercy-general"),
    );
    provision_users(
        &dataplane.addr,
        MERCY_HOST,
        "mercy-general",
        &[&alice, &bob],
    )
    .await;
    let lukes_alice = user_email("alice", "st-lukes");
    provision_users(&dataplane.addr, ST_LUKES_HOST, "st-lukes", &[&lukes_alice]).await;

    // No token: a challenge without an error.
    let (status, challenge, body) = me(&dataplane, MERCY_HOST, None).await;
    assert_eq!(status, 401, "{body}");
    assert!(challenge.starts_with("Bearer realm="), "{challenge}");
    assert!(!challenge.contains("error="), "{challenge}");
    assert_eq!(body["error"], "unauthenticated", "{body}");

    // Alice's genuine token: her email and role (once the SSO row reached the data plane).
    let email = user_email("alice", "mercy-general");
    let grant = password_grant("mercy-general", &email).await;
    let token = grant["access_token"]
        .as_str()
        .expect("access token")
        .to_owned();
    let body = eventually("/me accepts alice's token", Duration::from_secs(60), || {
        let (dataplane, token) = (&dataplane, token.clone());
        async move {
            let (status, _, body) = me(dataplane, MERCY_HOST, Some(&token)).await;
            (status == 200).then_some(body)
        }
    })
    .await;
    assert_eq!(body["tenant"], "mercy-general", "{body}");
    assert_eq!(body["email"], email.as_str(), "{body}");
    assert_eq!(body["roles"], json!(["physician"]), "{body}");
    assert!(
        body["subject"].as_str().is_some_and(|s| !s.is_empty()),
        "{body}"
    );

    // Her ID token (same issuer, aud = the client) is not an access token.
    let id_token = grant["id_token"].as_str().expect("id token").to_owned();
    let why = refused(&dataplane, MERCY_HOST, &id_token, "ID token").await;
    assert!(why.contains("not an access token"), "{why}");
    // Bob is a nurse.
    let bob = password_grant("mercy-general", &user_email("bob", "mercy-general")).await;
    let bob = bob["access_token"]
        .as_str()
        .expect("access token")
        .to_owned();
    let (status, _, body) = me(&dataplane, MERCY_HOST, Some(&bob)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["roles"], json!(["nurse"]), "{body}");

    let (header, payload) = jwt_parts(&token);
    let kid = header["kid"].as_str().expect("kid").to_owned();
    let parts: Vec<&str> = token.split('.').collect();
    let (h, p, s) = (parts[0], parts[1], parts[2]);

    // alg none, no signature.
    let none = json!({"alg": "none", "typ": "JWT", "kid": kid});
    refused(
        &dataplane,
        MERCY_HOST,
        &format!("{}.{p}.", b64(&none)),
        "alg none",
    )
    .await;
    // The signature stripped.
    refused(
        &dataplane,
        MERCY_HOST,
        &format!("{h}.{p}."),
        "stripped signature",
    )
    .await;
    // HS256 with the issuer's public RSA key (its modulus bytes, and its JWK text) as secret.
    let certs = get_json(&format!(
        "{}/protocol/openid-connect/certs",
        realm_url("mercy-general")
    ))
    .await;
    let public = certs["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| k["kid"] == kid.as_str())
        .expect("the token's key is published")
        .clone();
    let n = URL_SAFE_NO_PAD
        .decode(public["n"].as_str().expect("n"))
        .expect("n is base64url");
    let mut hs = Header::new(Algorithm::HS256);
    hs.kid = Some(kid.clone());
    for secret in [n.clone(), public.to_string().into_bytes()] {
        let forged =
            jsonwebtoken::encode(&hs, &payload, &EncodingKey::from_secret(&secret)).expect("HS256");
        refused(&dataplane, MERCY_HOST, &forged, "HS256 with the public key").await;
    }
    // Signed by the attacker's key, which the header carries (jwk) or points to (jku).
    let attacker = EncodingKey::from_rsa_pem(ATTACKER_PEM).expect("attacker key");
    let attacker_jwk = Jwk::from_encoding_key(&attacker, Algorithm::RS256).expect("jwk");
    let mut embedded = Header::new(Algorithm::RS256);
    embedded.kid = Some(kid.clone());
    embedded.jwk = Some(attacker_jwk);
    let forged = jsonwebtoken::encode(&embedded, &payload, &attacker).expect("signed");
    let why = refused(&dataplane, MERCY_HOST, &forged, "embedded jwk").await;
    assert!(why.contains("own key"), "{why}");
    let mut pointed = Header::new(Algorithm::RS256);
    pointed.kid = Some("attacker".into());
    pointed.jku = Some("http://127.0.0.1:9/jwks.json".into());
    let forged = jsonwebtoken::encode(&pointed, &payload, &attacker).expect("signed");
    refused(&dataplane, MERCY_HOST, &forged, "jku header").await;
    // The attacker's key under the genuine kid: the signature does not verify.
    let mut same_kid = Header::new(Algorithm::RS256);
    same_kid.kid = Some(kid.clone());
    let forged = jsonwebtoken::encode(&same_kid, &payload, &attacker).expect("signed");
    refused(&dataplane, MERCY_HOST, &forged, "attacker key, genuine kid").await;
    // A kid the issuer does not publish.
    let mut unknown = header.clone();
    unknown["kid"] = json!("no-such-key");
    let why = refused(
        &dataplane,
        MERCY_HOST,
        &format!("{}.{p}.{s}", b64(&unknown)),
        "unknown kid",
    )
    .await;
    assert!(why.contains("not one of the issuer's"), "{why}");
    // Tampered payloads under the genuine signature: another role, another audience,
    // another issuer, a later expiry.
    // (An issuer that is not the tenant's is refused before any key is looked up.)
    for (claim, value, expected) in [
        ("groups", json!(["admins"]), "signature"),
        ("aud", json!("someone-else"), "signature"),
        (
            "iss",
            json!(realm_url("st-lukes")),
            "not issued by this tenant",
        ),
        (
            "exp",
            json!(payload["exp"].as_i64().unwrap_or(0) + 86_400),
            "signature",
        ),
    ] {
        let mut tampered = payload.clone();
        tampered[claim] = value;
        let forged = format!("{h}.{}.{s}", b64(&tampered));
        let why = refused(&dataplane, MERCY_HOST, &forged, claim).await;
        assert!(why.contains(expected), "{claim}: {why}");
    }
    // The genuine token at another tenant's host: not its issuer.
    let why = refused(&dataplane, ST_LUKES_HOST, &token, "other tenant's host").await;
    assert!(why.contains("not issued by this tenant"), "{why}");
    // St Luke's own alice is accepted there, and refused at Mercy.
    let other = password_grant("st-lukes", &user_email("alice", "st-lukes")).await;
    let other = other["access_token"]
        .as_str()
        .expect("access token")
        .to_owned();
    let (status, _, body) = me(&dataplane, ST_LUKES_HOST, Some(&other)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["tenant"], "st-lukes", "{body}");
    refused(&dataplane, MERCY_HOST, &other, "st-lukes token at mercy").await;

    // A genuine token that expired (beyond the 30 s leeway).
    let expiring = short_lived_token("mercy-general", &email).await;
    let (_, claims) = jwt_parts(&expiring);
    let lifetime = claims["exp"].as_i64().unwrap_or(0) - claims["iat"].as_i64().unwrap_or(0);
    assert!(lifetime <= 1, "Keycloak issued a token for {lifetime} s");
    tokio::time::sleep(Duration::from_secs(33)).await;
    let why = refused(&dataplane, MERCY_HOST, &expiring, "expired").await;
    assert!(why.contains("expired"), "{why}");

    // SSO settings follow the catalog without a restart: the IdPConnection deleted, the
    // tenant accepts no token; applied again, alice is back.
    kubectl_ok(
        &["delete", "idpconnection", "mercy-general", "--timeout=60s"],
        None,
    );
    eventually(
        "mercy-general stops accepting tokens",
        Duration::from_secs(60),
        || {
            let (dataplane, token) = (&dataplane, token.clone());
            async move {
                let (status, _, body) = me(dataplane, MERCY_HOST, Some(&token)).await;
                (status == 401 && body["message"] == "this tenant accepts no bearer tokens")
                    .then_some(())
            }
        },
    )
    .await;
    scenario.apply(&idps);
    let fresh = password_grant("mercy-general", &email).await;
    let fresh = fresh["access_token"]
        .as_str()
        .expect("access token")
        .to_owned();
    eventually(
        "mercy-general accepts tokens again",
        Duration::from_secs(60),
        || {
            let (dataplane, token) = (&dataplane, fresh.clone());
            async move { (me(dataplane, MERCY_HOST, Some(&token)).await.0 == 200).then_some(()) }
        },
    )
    .await;

    // No token (nor a part of one) in the data plane's log.
    let log = std::fs::read_to_string(&dataplane.log).expect("read log");
    for secret in [&token, &other, &expiring, &fresh, &id_token, &bob] {
        let signature = secret.rsplit('.').next().unwrap_or_default();
        assert!(!log.contains(signature), "a token reached the log");
    }
}
