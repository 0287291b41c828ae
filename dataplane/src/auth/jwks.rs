//! The signing keys of each issuer, fetched from its `jwks_uri` and kept per URI.
//!
//! Keys are refreshed when a token names a `kid` the cache does not hold (the IdP rotated its
//! keys), at most once per [`JwksCache::min_refresh`] per URI, so a flood of tokens with made-up
//! `kid`s costs the IdP one request per interval, not one per token.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use jsonwebtoken::jwk::Jwk;
use tokio::time::Instant;

/// The default shortest time between two fetches of one JWKS.
pub const MIN_REFRESH: Duration = Duration::from_secs(30);

/// How long a fetch of a JWKS may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a JWKS could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The request failed or answered a non-success status.
    #[error("fetching the JWKS failed")]
    Http(#[from] reqwest::Error),
    /// The body is not a JWK set.
    #[error("the JWKS is not a JSON JWK set")]
    Json(#[from] serde_json::Error),
}

/// Where keys come from: the issuer's JWKS endpoint, or a double in tests.
#[async_trait::async_trait]
pub trait JwksSource: Send + Sync {
    /// The JWKS document at `uri`.
    async fn fetch(&self, uri: &str) -> Result<Vec<u8>, FetchError>;
}

/// The real source: an HTTPS (rustls) GET.
#[derive(Debug, Clone, Default)]
pub struct HttpJwks {
    client: reqwest::Client,
}

impl HttpJwks {
    /// A source with a bounded request time.
    pub fn new() -> Self {
        let client = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            // A JWKS is served where it is; a redirect elsewhere is not followed.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            // Building fails only when no TLS backend initialises; then every fetch fails
            // (and is logged) instead of the process refusing to start.
            .unwrap_or_default();
        Self { client }
    }
}

#[async_trait::async_trait]
impl JwksSource for HttpJwks {
    async fn fetch(&self, uri: &str) -> Result<Vec<u8>, FetchError> {
        let response = self.client.get(uri).send().await?.error_for_status()?;
        Ok(response.bytes().await?.to_vec())
    }
}

/// The keys of a JWKS usable for signatures, by `kid`. Keys without a `kid`, for
/// encryption, or of a type this version does not read are left out.
pub fn parse_jwks(body: &[u8]) -> Result<HashMap<String, Jwk>, FetchError> {
    #[derive(serde::Deserialize)]
    struct Set {
        keys: Vec<serde_json::Value>,
    }
    let set: Set = serde_json::from_slice(body)?;
    let mut keys = HashMap::new();
    for value in set.keys {
        // One key this version cannot read must not hide the others.
        let Ok(jwk) = serde_json::from_value::<Jwk>(value) else {
            continue;
        };
        if matches!(
            jwk.algorithm,
            jsonwebtoken::jwk::AlgorithmParameters::Other(_)
        ) {
            continue;
        }
        let for_signing = !matches!(
            jwk.common.public_key_use,
            Some(ref usage) if *usage != jsonwebtoken::jwk::PublicKeyUse::Signature
        );
        if let (Some(kid), true) = (jwk.common.key_id.clone(), for_signing) {
            keys.entry(kid).or_insert(jwk);
        }
    }
    Ok(keys)
}

#[derive(Default)]
struct Entry {
    keys: Arc<HashMap<String, Jwk>>,
    fetched_at: Option<Instant>,
}

/// The keys of every issuer seen, by JWKS URI. Cloning shares the cache.
#[derive(Clone)]
pub struct JwksCache {
    source: Arc<dyn JwksSource>,
    entries: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<Entry>>>>>,
    min_refresh: Duration,
}

impl std::fmt::Debug for JwksCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksCache")
            .field("min_refresh", &self.min_refresh)
            .finish_non_exhaustive()
    }
}

impl JwksCache {
    /// A cache over `source` refreshing each URI at most once per `min_refresh`.
    pub fn new(source: Arc<dyn JwksSource>, min_refresh: Duration) -> Self {
        Self {
            source,
            entries: Arc::default(),
            min_refresh,
        }
    }

    /// The shortest time between two fetches of the same URI.
    pub fn min_refresh(&self) -> Duration {
        self.min_refresh
    }

    /// The key `kid` of the JWKS at `uri`: from the cache, else after one refresh if the last
    /// fetch is older than the interval. `None` when the issuer does not publish it.
    pub async fn key(&self, uri: &str, kid: &str) -> Option<Jwk> {
        let entry = {
            let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
            Arc::clone(entries.entry(uri.to_owned()).or_default())
        };
        // Held across the fetch: concurrent requests for the same issuer wait for one fetch.
        let mut entry = entry.lock().await;
        if let Some(key) = entry.keys.get(kid) {
            return Some(key.clone());
        }
        let due = entry
            .fetched_at
            .is_none_or(|at| at.elapsed() >= self.min_refresh);
        if !due {
            return None;
        }
        entry.fetched_at = Some(Instant::now());
        match self
            .source
            .fetch(uri)
            .await
            .and_then(|body| parse_jwks(&body))
        {
            Ok(keys) => {
                tracing::info!(jwks_uri = uri, keys = keys.len(), "JWKS fetched");
                entry.keys = Arc::new(keys);
            }
            // The keys held stay valid; the next unknown kid after the interval retries.
            Err(error) => tracing::warn!(
                jwks_uri = uri,
                error = %crate::error::Report(&error),
                "fetching the JWKS failed; keeping the keys held"
            ),
        }
        entry.keys.get(kid).cloned()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    struct Counting {
        fetches: AtomicUsize,
        body: Mutex<String>,
    }

    #[async_trait::async_trait]
    impl JwksSource for Counting {
        async fn fetch(&self, _uri: &str) -> Result<Vec<u8>, FetchError> {
            self.fetches.fetch_add(1, Ordering::SeqCst);
            Ok(self.body.lock().expect("lock").clone().into_bytes())
        }
    }

    fn jwks(kids: &[&str]) -> String {
        let keys: Vec<String> = kids
            .iter()
            .map(|kid| {
                format!(r#"{{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"{kid}","use":"sig"}}"#)
            })
            .collect();
        format!(r#"{{"keys":[{}]}}"#, keys.join(","))
    }

    #[tokio::test(start_paused = true)]
    async fn an_unknown_kid_refreshes_at_most_once_per_interval() {
        let source = Arc::new(Counting {
            fetches: AtomicUsize::new(0),
            body: Mutex::new(jwks(&["k1"])),
        });
        let cache = JwksCache::new(source.clone(), Duration::from_secs(30));
        let uri = "https://idp/certs";
        assert!(cache.key(uri, "k1").await.is_some());
        assert!(cache.key(uri, "k1").await.is_some());
        assert_eq!(source.fetches.load(Ordering::SeqCst), 1, "cached");
        // The IdP rotates; the first unknown kid refetches only once the interval passed.
        *source.body.lock().expect("lock") = jwks(&["k2"]);
        assert!(cache.key(uri, "k2").await.is_none());
        assert!(cache.key(uri, "bogus").await.is_none());
        assert_eq!(source.fetches.load(Ordering::SeqCst), 1, "rate limited");
        tokio::time::advance(Duration::from_secs(31)).await;
        assert!(cache.key(uri, "k2").await.is_some());
        assert_eq!(source.fetches.load(Ordering::SeqCst), 2);
        assert!(cache.key(uri, "bogus").await.is_none());
        assert_eq!(source.fetches.load(Ordering::SeqCst), 2, "rate limited");
    }

    #[test]
    fn encryption_keys_and_keys_without_kid_are_left_out() {
        let body = r#"{"keys":[
            {"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"enc","use":"enc"},
            {"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
            {"kty":"weird","kid":"odd"},
            {"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"sig"}
        ]}"#;
        let keys = parse_jwks(body.as_bytes()).expect("parsed");
        assert_eq!(keys.keys().collect::<Vec<_>>(), vec!["sig"]);
    }
}
