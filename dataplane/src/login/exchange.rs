//! The back channel of the login: the client secret from its file, the code exchanged at
//! the provider's token endpoint, and the ID token validated with the tenant's JWKS.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::flow::LoginError;
use crate::app::AppState;
use crate::auth::{Identity, token};
use crate::catalog::SsoRow;

/// The HTTP client of code exchanges: short timeouts, no redirects (a token endpoint
/// answers, it does not redirect).
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("phoenix-dataplane/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_default()
}

/// The client secret of IdPConnection `idp_name`: the file of that name in `dir`, read on
/// every login so that a rotated secret needs no restart. `None` (a public client, PKCE
/// only) when no directory is configured or it holds no such file.
pub async fn client_secret(
    dir: Option<&Path>,
    idp_name: &str,
) -> Result<Option<String>, LoginError> {
    let Some(dir) = dir else {
        return Ok(None);
    };
    // Names come from the catalog (Kubernetes names); never let one leave the directory.
    if idp_name.is_empty() || idp_name.contains(['/', '\\']) || idp_name.starts_with('.') {
        return Err(LoginError::Secret);
    }
    match tokio::fs::read_to_string(dir.join(idp_name)).await {
        Ok(secret) => {
            let secret = secret.trim_end_matches(['\n', '\r']).to_owned();
            Ok((!secret.is_empty()).then_some(secret))
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => {
            tracing::error!(idp = idp_name, error = %error, "the client secret file cannot be read");
            Err(LoginError::Secret)
        }
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    id_token: Option<String>,
}

#[derive(Deserialize)]
struct ErrorResponse {
    error: Option<String>,
}

/// An OAuth error code as the provider sent it, if it is one (RFC 6749 section 5.2 allows
/// only printable ASCII without `"` and `\`); shown to the user, so nothing else passes.
pub fn error_code(code: Option<&str>) -> String {
    code.filter(|c| {
        !c.is_empty()
            && c.len() <= 64
            && c.chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-' || ch == '.')
    })
    .unwrap_or("unknown error")
    .to_owned()
}

/// Exchanges `code` for tokens (with the PKCE verifier and, when the client has one, its
/// secret as `client_secret_post`) and returns the identity of the validated ID token.
pub async fn finish(
    state: &AppState,
    sso: &SsoRow,
    code: &str,
    code_verifier: &str,
    redirect_uri: &str,
    nonce: &str,
) -> Result<Identity, LoginError> {
    let endpoint = sso
        .token_endpoint
        .as_deref()
        .ok_or(LoginError::NoEndpoint("token endpoint"))?;
    let secret = client_secret(state.login.client_secrets_dir.as_deref(), &sso.idp_name).await?;
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", redirect_uri),
        ("client_id", sso.client_id.as_str()),
        ("code_verifier", code_verifier),
    ];
    if let Some(secret) = secret.as_deref() {
        form.push(("client_secret", secret));
    }
    let response = state
        .login
        .http
        .post(endpoint)
        .form(&form)
        .send()
        .await
        .map_err(|error| {
            // reqwest's text names the URL, never the form.
            tracing::warn!(error = %crate::error::Report(&error), "the token endpoint did not answer");
            LoginError::Exchange("the token endpoint did not answer".into())
        })?;
    let status = response.status();
    let body = response.bytes().await.unwrap_or_default();
    if !status.is_success() {
        let code = serde_json::from_slice::<ErrorResponse>(&body)
            .ok()
            .and_then(|e| e.error);
        return Err(LoginError::Exchange(error_code(code.as_deref())));
    }
    let id_token = serde_json::from_slice::<TokenResponse>(&body)
        .ok()
        .and_then(|t| t.id_token)
        .ok_or_else(|| LoginError::IdToken("the token response holds no ID token".into()))?;
    validate_id_token(state, sso, &id_token, nonce).await
}

/// Validates `id_token` strictly: header rules and key from the tenant's JWKS as for bearer
/// tokens, then [`token::verify_id_token`].
pub async fn validate_id_token(
    state: &AppState,
    sso: &SsoRow,
    id_token: &str,
    nonce: &str,
) -> Result<Identity, LoginError> {
    let reject = |error: token::TokenError| match error {
        token::TokenError::EmailDomain => LoginError::EmailDomain,
        other => LoginError::IdToken(other.to_string()),
    };
    let (alg, kid) = token::inspect_header(id_token).map_err(reject)?;
    token::precheck_issuer(id_token, &sso.issuer).map_err(reject)?;
    let jwk = state
        .jwks
        .key(&sso.jwks_uri, &kid)
        .await
        .ok_or(token::TokenError::UnknownKey)
        .map_err(reject)?;
    let key = token::key_for(alg, &jwk).map_err(reject)?;
    token::verify_id_token(id_token, alg, &key, sso, nonce).map_err(reject)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_error_codes_are_shown() {
        assert_eq!(error_code(Some("invalid_grant")), "invalid_grant");
        assert_eq!(error_code(Some("<script>")), "unknown error");
        assert_eq!(error_code(Some("")), "unknown error");
        assert_eq!(error_code(None), "unknown error");
    }

    #[tokio::test]
    async fn a_missing_secret_file_is_a_public_client_and_names_cannot_escape() {
        let dir = std::env::temp_dir().join(format!("phoenix-secrets-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join("mercy"), "s3cret\n").expect("write");
        assert_eq!(
            client_secret(Some(&dir), "mercy").await,
            Ok(Some("s3cret".to_owned()))
        );
        assert_eq!(client_secret(Some(&dir), "other").await, Ok(None));
        assert_eq!(client_secret(None, "mercy").await, Ok(None));
        assert_eq!(
            client_secret(Some(&dir), "../etc").await,
            Err(LoginError::Secret)
        );
        std::fs::remove_dir_all(&dir).ok();
    }
}
