//! The OpenID Connect metadata provider: discovery documents and JWKS fetched over HTTPS
//! (rustls, the Web PKI roots), with short timeouts and no redirects to other schemes.

use std::time::Duration;

use async_trait::async_trait;

use crate::controller::providers::{FetchError, OidcMetadata};

/// Fetches with one shared HTTP client.
#[derive(Clone)]
pub struct HttpOidc {
    client: reqwest::Client,
}

impl HttpOidc {
    /// A provider whose requests time out after 10 s.
    pub fn new() -> Result<Self, reqwest::Error> {
        Ok(Self {
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .connect_timeout(Duration::from_secs(5))
                .https_only(false)
                .redirect(reqwest::redirect::Policy::limited(3))
                .user_agent(concat!("phoenix-operator/", env!("CARGO_PKG_VERSION")))
                .build()?,
        })
    }

    async fn get(&self, url: &str, what: &'static str) -> Result<serde_json::Value, FetchError> {
        let response = self.client.get(url).send().await.map_err(|e| {
            let reason = chain(&e);
            if reason.contains("certificate") || reason.contains("tls") || reason.contains("TLS") {
                FetchError::Tls {
                    url: url.to_owned(),
                    reason,
                }
            } else {
                FetchError::Unreachable {
                    url: url.to_owned(),
                    reason,
                }
            }
        })?;
        if !response.status().is_success() {
            return Err(FetchError::Status {
                url: url.to_owned(),
                status: response.status().as_u16(),
            });
        }
        response
            .json::<serde_json::Value>()
            .await
            .map_err(|e| FetchError::Invalid {
                url: url.to_owned(),
                what,
                reason: e.to_string(),
            })
    }
}

// An error with its causes, `a: b: c` (reqwest keeps the interesting part in sources).
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The discovery URL of `issuer` (OpenID Connect Discovery 1.0, section 4).
pub fn discovery_url(issuer: &str) -> String {
    format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    )
}

#[async_trait]
impl OidcMetadata for HttpOidc {
    async fn discovery(&self, issuer_url: &str) -> Result<serde_json::Value, FetchError> {
        self.get(&discovery_url(issuer_url), "discovery document")
            .await
    }

    async fn jwks(&self, jwks_uri: &str) -> Result<serde_json::Value, FetchError> {
        self.get(jwks_uri, "JWKS").await
    }
}
