//! Browser login with the tenant's OpenID provider: the authorization code flow with PKCE
//! (S256), `state` and `nonce`, ending in a server-side session behind an
//! `HttpOnly; Secure; SameSite=Lax` cookie; logout; and the who-am-I page.
//!
//! - `GET /login?return_to=/path` stores an attempt (state hash, verifier, nonce) and sends
//!   the browser to the provider's authorization endpoint.
//! - `GET /auth/callback` consumes the attempt (once), exchanges the code with the verifier
//!   (and the client secret from `OIDC_CLIENT_SECRETS_DIR`, if any), validates the ID token
//!   like a bearer token plus `nonce`, enforces allowed email domains, creates the session.
//! - `POST /logout` revokes the session and sends the browser to the provider's
//!   end-session endpoint, or to `/logged-out`.
//! - `GET /whoami` shows the principal (behind authentication, see [`crate::auth`]).
//!
//! The pure parts are in [`flow`], the rows in [`session`], the back channel in
//! [`exchange`], the HTML in [`pages`]. No code, token, state, verifier or cookie value is
//! ever logged or shown.

pub mod exchange;
pub mod flow;
pub mod handlers;
pub mod pages;
pub mod session;

use std::path::PathBuf;

use axum::http::header::HOST;
use axum::http::{HeaderMap, Uri};

pub use session::SessionSettings;

/// The name of the session cookie: `__Host-` makes browsers insist on `Secure`, `Path=/`
/// and no `Domain`, so no sibling host can set or read it.
pub const SESSION_COOKIE: &str = "__Host-phoenix_session";

/// What the login needs beyond the catalog.
#[derive(Clone, Debug)]
pub struct LoginSettings {
    /// The scheme browsers reach the data plane with (`https`; `http` only for local
    /// development, where the `Secure` cookie then is not sent back by browsers).
    pub scheme: String,
    /// Directory of client secrets, one file per IdPConnection name.
    pub client_secrets_dir: Option<PathBuf>,
    /// Session lifetimes.
    pub sessions: SessionSettings,
    /// The HTTP client of code exchanges.
    pub http: reqwest::Client,
}

impl Default for LoginSettings {
    fn default() -> Self {
        Self {
            scheme: "https".to_owned(),
            client_secrets_dir: None,
            sessions: SessionSettings::default(),
            http: exchange::http_client(),
        }
    }
}

/// The authority (`host[:port]`) the request was sent to, as the browser wrote it: the
/// absolute URI's, else the Host header's. Tenant resolution has validated it.
pub fn request_authority(uri: &Uri, headers: &HeaderMap) -> Option<String> {
    if let Some(authority) = uri.authority() {
        return Some(authority.as_str().to_ascii_lowercase());
    }
    headers
        .get(HOST)?
        .to_str()
        .ok()
        .map(str::to_ascii_lowercase)
}
