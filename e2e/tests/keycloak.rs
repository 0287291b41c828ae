//! The stack's Keycloak as the IdPConnection controller and the data plane will see it:
//! per example tenant a realm whose discovery, JWKS and password grant behave like a
//! production OIDC provider, and one realm whose issuer does not match its URL.
//! Needs the stack's env (`KEYCLOAK_URL`, ...): fails, never skips, without it.

use phoenix_e2e::keycloak::*;
use serde_json::Value;

fn strings(v: &Value) -> Vec<&str> {
    match v {
        Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
        Value::String(s) => vec![s.as_str()],
        _ => Vec::new(),
    }
}

#[tokio::test]
async fn every_example_tenant_has_a_realm_whose_discovery_names_its_own_url() {
    for tenant in EXAMPLE_TENANTS {
        let doc = discovery(tenant).await;
        assert_eq!(
            doc["issuer"].as_str(),
            Some(realm_url(tenant).as_str()),
            "issuer of realm {tenant}: {doc}"
        );
        let jwks_uri = doc["jwks_uri"]
            .as_str()
            .unwrap_or_else(|| panic!("realm {tenant}: no jwks_uri in {doc}"));
        assert!(
            jwks_uri.starts_with(&realm_url(tenant)),
            "realm {tenant}: jwks_uri {jwks_uri} is not under the realm"
        );
        let jwks = get_json(jwks_uri).await;
        let keys = jwks["keys"].as_array().cloned().unwrap_or_default();
        assert!(
            keys.iter().any(|k| k["alg"] == "RS256"
                && k["use"] == "sig"
                && k["kty"] == "RSA"
                && k["kid"].is_string()
                && k["n"].is_string()),
            "realm {tenant}: no RS256 signing key in {jwks}"
        );
    }
}

#[tokio::test]
async fn alice_gets_an_rs256_token_with_issuer_audience_groups_and_email() {
    for tenant in EXAMPLE_TENANTS {
        let answer = password_grant(tenant, "alice").await;
        let token = answer["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("realm {tenant}: no access_token in {answer}"));
        let (header, payload) = jwt_parts(token);
        assert_eq!(header["alg"], "RS256", "realm {tenant}: header {header}");
        assert!(header["kid"].is_string(), "realm {tenant}: header {header}");
        assert_eq!(
            payload["iss"].as_str(),
            Some(realm_url(tenant).as_str()),
            "realm {tenant}: payload {payload}"
        );
        assert!(
            strings(&payload["aud"]).contains(&CLIENT_ID),
            "realm {tenant}: {CLIENT_ID} not in aud of {payload}"
        );
        assert!(
            strings(&payload["groups"]).contains(&"physicians"),
            "realm {tenant}: physicians not in groups of {payload}"
        );
        assert_eq!(
            payload["email"].as_str(),
            Some(user_email("alice", tenant).as_str()),
            "realm {tenant}: payload {payload}"
        );
        assert_eq!(payload["email_verified"], true, "realm {tenant}: {payload}");
        assert_eq!(payload["azp"], CLIENT_ID, "realm {tenant}: {payload}");
    }
}

#[tokio::test]
async fn bob_is_a_nurse_and_not_a_physician() {
    let tenant = EXAMPLE_TENANTS[0];
    let answer = password_grant(tenant, "bob").await;
    let (_, payload) = jwt_parts(answer["access_token"].as_str().unwrap_or_default());
    let groups = strings(&payload["groups"]);
    assert!(
        groups.contains(&"nurses") && !groups.contains(&"physicians"),
        "bob's groups in {tenant}: {payload}"
    );
    assert_eq!(
        payload["email"].as_str(),
        Some(user_email("bob", tenant).as_str())
    );
}

#[tokio::test]
async fn the_mismatch_realm_announces_an_issuer_other_than_its_url() {
    let doc = discovery(MISMATCH_REALM).await;
    let issuer = doc["issuer"]
        .as_str()
        .unwrap_or_else(|| panic!("no issuer in {doc}"));
    assert_ne!(
        issuer,
        realm_url(MISMATCH_REALM),
        "realm {MISMATCH_REALM} must announce a foreign issuer: {doc}"
    );
    assert!(
        issuer.ends_with(&format!("/realms/{MISMATCH_REALM}")),
        "unexpected issuer {issuer}"
    );
    // Same server under another name: what it names still answers, so only an issuer
    // check (not an unreachable JWKS) can tell this realm apart.
    let jwks_uri = doc["jwks_uri"].as_str().unwrap_or_default();
    assert!(jwks_uri.starts_with(issuer), "jwks_uri {jwks_uri}");
    let jwks = get_json(jwks_uri).await;
    assert!(
        jwks["keys"].as_array().is_some_and(|k| !k.is_empty()),
        "{jwks}"
    );
}
