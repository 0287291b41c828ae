//! The pure parts of the browser login (OpenID Connect authorization code flow with PKCE,
//! `state` and `nonce`): random values, the PKCE challenge, where the browser is sent, which
//! return paths are allowed, and the checks of the ID token that go beyond a bearer token's.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use reqwest::Url;
use sha2::{Digest, Sha256};

use crate::catalog::SsoRow;

/// The scopes a login asks for.
pub const SCOPES: &str = "openid email profile";

/// Where the identity provider sends the browser back to.
pub const CALLBACK_PATH: &str = "/auth/callback";

/// Where a login goes when it names no (valid) return path.
pub const DEFAULT_RETURN: &str = "/whoami";

/// A random 256-bit value, base64url without padding (43 characters): session ids, states,
/// nonces and PKCE verifiers (RFC 7636 section 4.1 allows 43 to 128 such characters).
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The hex SHA-256 of `value`: how states and session ids are stored and looked up, so
/// that the database never holds the value itself and a lookup compares no secret bytes.
pub fn sha256_hex(value: &str) -> String {
    hex::encode(Sha256::digest(value.as_bytes()))
}

/// The PKCE `code_challenge` of `verifier` with method S256 (RFC 7636 section 4.2).
pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// The values of one login attempt, generated when it starts.
#[derive(Clone, PartialEq, Eq)]
pub struct Attempt {
    /// Sent to the provider and echoed back; only its hash is stored.
    pub state: String,
    /// Sent to the provider, which puts it in the ID token.
    pub nonce: String,
    /// Kept on the server; its challenge goes to the provider.
    pub code_verifier: String,
}

impl Attempt {
    /// A fresh attempt with random values.
    pub fn new() -> Self {
        Self {
            state: random_token(),
            nonce: random_token(),
            code_verifier: random_token(),
        }
    }
}

impl Default for Attempt {
    fn default() -> Self {
        Self::new()
    }
}

// Never print the values.
impl std::fmt::Debug for Attempt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Attempt { .. }")
    }
}

/// Why a login cannot start or finish. The text is shown to the user and logged; it never
/// contains a code, token, state or verifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoginError {
    /// The tenant has no SSO settings.
    #[error("this organisation has no single sign-on configured")]
    NoSso,
    /// The provider publishes no authorization or token endpoint (yet).
    #[error(
        "the organisation's identity provider publishes no {0}; ask your administrator to check its IdPConnection"
    )]
    NoEndpoint(&'static str),
    /// The callback carries no state, or one this tenant did not issue, or one used before.
    #[error("this login link is invalid, was already used or has expired; start the login again")]
    UnknownState,
    /// The callback carries no code.
    #[error("the identity provider returned no authorization code")]
    NoCode,
    /// The provider answered the authorization request with an error.
    #[error("the identity provider refused the login ({0})")]
    Provider(String),
    /// The code exchange failed.
    #[error("the identity provider did not accept the login's code ({0})")]
    Exchange(String),
    /// The ID token is not valid.
    #[error("the identity provider's ID token is not valid: {0}")]
    IdToken(String),
    /// The user's email domain is not allowed.
    #[error("your account's email domain is not allowed to sign in to this organisation")]
    EmailDomain,
    /// The tenant provisions its users through SCIM and this one is not an active one.
    #[error(
        "your account is not (or no longer) active in this organisation; ask your administrator"
    )]
    NotProvisioned,
    /// The client secret file exists but cannot be read.
    #[error("the client secret of this organisation's identity provider cannot be read")]
    Secret,
}

impl LoginError {
    /// Whether the user is refused (403) rather than the login having failed (400/502).
    pub fn refused(&self) -> bool {
        matches!(
            self,
            Self::EmailDomain | Self::Provider(_) | Self::NotProvisioned
        )
    }
}

/// The URL of the callback at `scheme://host`: `host` is the request's Host header (with its
/// port), already validated as the tenant's by tenant resolution.
pub fn redirect_uri(scheme: &str, host: &str) -> String {
    format!("{scheme}://{host}{CALLBACK_PATH}")
}

/// The URL the browser is sent to at the provider.
pub fn authorization_url(
    sso: &SsoRow,
    attempt: &Attempt,
    redirect_uri: &str,
) -> Result<Url, LoginError> {
    let endpoint = sso
        .authorization_endpoint
        .as_deref()
        .ok_or(LoginError::NoEndpoint("authorization endpoint"))?;
    let mut url =
        Url::parse(endpoint).map_err(|_| LoginError::NoEndpoint("valid authorization endpoint"))?;
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &sso.client_id)
        .append_pair("redirect_uri", redirect_uri)
        .append_pair("scope", SCOPES)
        .append_pair("state", &attempt.state)
        .append_pair("nonce", &attempt.nonce)
        .append_pair("code_challenge", &pkce_challenge(&attempt.code_verifier))
        .append_pair("code_challenge_method", "S256");
    Ok(url)
}

/// `return_to` if it is a path on this host, else [`DEFAULT_RETURN`]: it must start with
/// one `/` (not `//host` nor `/\host`, which browsers treat as another host), and carry no
/// control characters or backslashes. No open redirect.
pub fn safe_return_to(return_to: Option<&str>) -> String {
    match return_to {
        Some(path) if is_local_path(path) => path.to_owned(),
        _ => DEFAULT_RETURN.to_owned(),
    }
}

fn is_local_path(path: &str) -> bool {
    path.starts_with('/')
        && !path.starts_with("//")
        && !path.contains('\\')
        && !path.chars().any(|c| c.is_control() || c.is_whitespace())
        && path.len() <= 2048
}

/// Where logout sends the browser: the provider's end-session endpoint (RP-Initiated
/// Logout 1.0, with `client_id` and `post_logout_redirect_uri`), else `logged_out`.
pub fn logout_url(sso: Option<&SsoRow>, logged_out: &str) -> String {
    let endpoint = sso.and_then(|s| Some((s, s.end_session_endpoint.as_deref()?)));
    match endpoint.and_then(|(sso, e)| Url::parse(e).ok().map(|u| (sso, u))) {
        Some((sso, mut url)) => {
            url.query_pairs_mut()
                .append_pair("client_id", &sso.client_id)
                .append_pair("post_logout_redirect_uri", logged_out);
            url.into()
        }
        None => logged_out.to_owned(),
    }
}

/// The cookie value (`name=value` and attributes) of a new session.
pub fn session_cookie(name: &str, id: &str, max_age_seconds: i64) -> String {
    format!("{name}={id}; HttpOnly; Secure; SameSite=Lax; Path=/; Max-Age={max_age_seconds}")
}

/// The cookie that removes the session cookie from the browser.
pub fn cleared_cookie(name: &str) -> String {
    format!("{name}=; HttpOnly; Secure; SameSite=Lax; Path=/; Max-Age=0")
}

/// The value of cookie `name` in the `Cookie` headers, if exactly one is present.
pub fn cookie_value<'h>(headers: &'h axum::http::HeaderMap, name: &str) -> Option<&'h str> {
    let mut found = headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(n, _)| *n == name)
        .map(|(_, v)| v);
    let value = found.next()?;
    // Two cookies of one name (one planted by a sibling host): trust neither.
    if found.next().is_some() || value.is_empty() {
        return None;
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderMap, HeaderValue};

    #[test]
    fn the_pkce_challenge_is_the_rfc_7636_appendix_b_vector() {
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn random_tokens_are_256_bit_and_distinct() {
        let a = random_token();
        assert_eq!(a.len(), 43);
        assert_eq!(URL_SAFE_NO_PAD.decode(&a).expect("base64url").len(), 32);
        assert_ne!(a, random_token());
        let attempt = Attempt::new();
        assert_ne!(attempt.state, attempt.nonce);
        assert_eq!(format!("{attempt:?}"), "Attempt { .. }");
    }

    #[test]
    fn only_local_paths_are_returned_to() {
        for good in ["/whoami", "/fhir/Patient?name=x", "/"] {
            assert_eq!(safe_return_to(Some(good)), good);
        }
        for bad in [
            "https://evil.example/",
            "//evil.example/x",
            "/\\evil.example",
            "evil",
            "/a\nb",
            "/a b",
            "",
        ] {
            assert_eq!(safe_return_to(Some(bad)), DEFAULT_RETURN, "{bad:?}");
        }
        assert_eq!(safe_return_to(None), DEFAULT_RETURN);
    }

    #[test]
    fn session_cookies_are_host_only_http_only_secure_and_lax() {
        let cookie = session_cookie("__Host-phoenix_session", "abc", 60);
        for attribute in ["HttpOnly", "Secure", "SameSite=Lax", "Path=/", "Max-Age=60"] {
            assert!(cookie.contains(attribute), "{cookie} lacks {attribute}");
        }
        assert!(
            !cookie.contains("Domain"),
            "a __Host- cookie names no domain"
        );
        assert!(cleared_cookie("__Host-x").contains("Max-Age=0"));
    }

    #[test]
    fn a_cookie_is_read_only_when_it_is_present_once() {
        let mut headers = HeaderMap::new();
        headers.append("cookie", HeaderValue::from_static("a=1; s=abc"));
        assert_eq!(cookie_value(&headers, "s"), Some("abc"));
        assert_eq!(cookie_value(&headers, "t"), None);
        headers.append("cookie", HeaderValue::from_static("s=other"));
        assert_eq!(cookie_value(&headers, "s"), None);
    }

    #[test]
    fn the_redirect_uri_keeps_the_hosts_port() {
        assert_eq!(
            redirect_uri("https", "mercy.example:8443"),
            "https://mercy.example:8443/auth/callback"
        );
    }
}
