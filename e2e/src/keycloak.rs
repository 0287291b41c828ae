//! The stack's Keycloak (e2e/lib/keycloak.sh): one realm per example tenant with the
//! confidential client `phoenix-dataplane`, and the realm `e2e-mismatch` whose discovery
//! issuer differs from its URL. Read from the stack's env (`KEYCLOAK_*`).

use serde_json::Value;

use crate::stack_var;

/// The tenants of examples/tenants.yaml; each has a realm of the same name.
pub const EXAMPLE_TENANTS: [&str; 5] = [
    "mercy-general",
    "st-lukes",
    "charite-berlin",
    "nordic-care",
    "raffles-sg",
];

/// The realm whose `frontendUrl` (`http://localhost:<port>`, the same server) makes its
/// discovery issuer and endpoints differ from `$KEYCLOAK_URL` (`http://127.0.0.1:<port>`).
pub const MISMATCH_REALM: &str = "e2e-mismatch";

/// The client every realm has.
pub const CLIENT_ID: &str = "phoenix-dataplane";

/// `$KEYCLOAK_URL`, without a trailing slash.
pub fn keycloak_url() -> String {
    stack_var("KEYCLOAK_URL").trim_end_matches('/').to_owned()
}

/// An access token of the stack's Keycloak admin (master realm, `admin-cli`), for the
/// admin REST API.
pub async fn admin_token(http: &reqwest::Client) -> String {
    let user = std::env::var("KEYCLOAK_ADMIN_USER").unwrap_or_else(|_| "admin".to_owned());
    let body: Value = http
        .post(format!(
            "{}/realms/master/protocol/openid-connect/token",
            keycloak_url()
        ))
        .form(&[
            ("grant_type", "password"),
            ("client_id", "admin-cli"),
            ("username", user.as_str()),
            ("password", stack_var("KEYCLOAK_ADMIN_PASSWORD").as_str()),
        ])
        .send()
        .await
        .expect("Keycloak answers")
        .json()
        .await
        .expect("a token response");
    body["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no admin token: {body}"))
        .to_owned()
}

/// `$KEYCLOAK_URL/realms/<realm>`: the issuer Keycloak announces for `realm`.
pub fn realm_url(realm: &str) -> String {
    format!("{}/realms/{realm}", keycloak_url())
}

/// A test user's email: `alice` of `mercy-general` is `alice@mercy-general.example`.
pub fn user_email(user: &str, realm: &str) -> String {
    format!("{user}@{realm}.example")
}

/// GET `url` as JSON, panicking with the status and body on anything but 200.
pub async fn get_json(url: &str) -> Value {
    let res = reqwest::get(url)
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e} (is the stack's Keycloak up?)"));
    let status = res.status();
    let body = res.text().await.unwrap_or_default();
    assert!(status.is_success(), "GET {url}: {status}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {url}: not JSON ({e}): {body}"))
}

/// The realm's OpenID discovery document.
pub async fn discovery(realm: &str) -> Value {
    get_json(&format!(
        "{}/.well-known/openid-configuration",
        realm_url(realm)
    ))
    .await
}

/// A password grant for `user` of `realm` through `phoenix-dataplane` (the stack's
/// client secret and user password): the token endpoint's JSON answer.
pub async fn password_grant(realm: &str, user: &str) -> Value {
    let url = format!("{}/protocol/openid-connect/token", realm_url(realm));
    let secret = stack_var("KEYCLOAK_CLIENT_SECRET");
    let password = stack_var("KEYCLOAK_USER_PASSWORD");
    let res = reqwest::Client::new()
        .post(&url)
        .form(&[
            ("grant_type", "password"),
            ("client_id", CLIENT_ID),
            ("client_secret", secret.as_str()),
            ("username", user),
            ("password", password.as_str()),
            ("scope", "openid"),
        ])
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let status = res.status();
    let body = res.text().await.unwrap_or_default();
    assert!(
        status.is_success(),
        "password grant for {user} in {realm}: {status}: {body}"
    );
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("token answer not JSON ({e}): {body}"))
}

/// The decoded header and payload of a compact JWS (the signature is not checked).
pub fn jwt_parts(token: &str) -> (Value, Value) {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "not a compact JWS: {token}");
    let decode = |s: &str| -> Value {
        let bytes = base64url_decode(s).unwrap_or_else(|| panic!("bad base64url in JWT: {s}"));
        serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("JWT part is not JSON: {e}"))
    };
    (decode(parts[0]), decode(parts[1]))
}

/// Unpadded base64url (RFC 4648 §5), as JWTs use it; `None` on a bad character.
pub fn base64url_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.trim_end_matches('=').bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::base64url_decode;

    #[test]
    fn base64url_decodes_unpadded_and_url_safe_input() {
        assert_eq!(base64url_decode("eyJhIjoxfQ").unwrap(), b"{\"a\":1}");
        assert_eq!(base64url_decode("-_8").unwrap(), vec![0xfb, 0xff]);
        assert_eq!(base64url_decode("").unwrap(), Vec::<u8>::new());
        assert!(base64url_decode("a+b").is_none());
    }
}
