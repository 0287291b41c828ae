//! Bearer tokens this process has already verified, so that a client's next request with
//! the same token skips the signature check (ADR 0015).
//!
//! A client sends the same access token on every request until it expires; checking its
//! RSA signature and parsing its claims again each time was about half of the data plane's
//! CPU for a Patient read. An entry is found by the tenant and the SHA-256 of the whole
//! token (collision-resistant: no other token, however crafted, finds it), and it answers
//! only while:
//! - the token has not expired (`exp` plus the same leeway [`super::token::verify`] allows),
//! - it is younger than the cache's time to live (so a key the issuer withdrew stops
//!   admitting its tokens within that time, as a refetched JWKS would), and
//! - the tenant's SSO settings are still those the token was verified against (a changed
//!   issuer, audience, claim name, role mapping or email domain list verifies again).
//!
//! Only tokens that passed every check are kept; a refused token is checked in full every
//! time. The token itself is never stored, only its digest and the identity it proved.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::token::{Identity, LEEWAY_SECONDS};
use crate::catalog::SsoRow;

/// How long a verified token is taken on trust unless configured.
pub const DEFAULT_TTL: Duration = Duration::from_secs(60);
/// Most tokens kept unless configured.
pub const DEFAULT_CAPACITY: usize = 65_536;

const SHARDS: usize = 16;

type Key = (i64, [u8; 32]);

struct Entry {
    sso: Arc<SsoRow>,
    identity: Identity,
    // Unix seconds after which the entry answers no more.
    until: i64,
}

/// The verified tokens, by tenant and digest. Cloning shares them.
#[derive(Clone)]
pub struct VerifiedTokens(Arc<Inner>);

struct Inner {
    shards: Vec<Mutex<HashMap<Key, Entry>>>,
    per_shard: usize,
    ttl_seconds: i64,
}

impl std::fmt::Debug for VerifiedTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifiedTokens")
            .field("ttl_seconds", &self.0.ttl_seconds)
            .field("capacity", &(self.0.per_shard * self.0.shards.len()))
            .finish_non_exhaustive()
    }
}

impl Default for VerifiedTokens {
    fn default() -> Self {
        Self::new(DEFAULT_TTL, DEFAULT_CAPACITY)
    }
}

/// A token's key in the cache: the tenant and the SHA-256 of the token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenKey(Key);

impl TokenKey {
    /// The key of `token` presented to tenant `tenant_id`.
    pub fn new(tenant_id: i64, token: &str) -> Self {
        Self((tenant_id, Sha256::digest(token.as_bytes()).into()))
    }
}

impl VerifiedTokens {
    /// A cache keeping tokens at most `ttl` (a zero `ttl` or `capacity` keeps none).
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        let per_shard = capacity.div_ceil(SHARDS);
        Self(Arc::new(Inner {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            per_shard,
            ttl_seconds: i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX),
        }))
    }

    /// Whether the cache keeps anything at all.
    pub fn enabled(&self) -> bool {
        self.0.per_shard > 0 && self.0.ttl_seconds > 0
    }

    /// The identity `key`'s token proved, if it was verified against `sso` and is still
    /// good at `now` (Unix seconds).
    pub fn get(&self, key: &TokenKey, sso: &Arc<SsoRow>, now: i64) -> Option<Identity> {
        if !self.enabled() {
            return None;
        }
        let mut shard = self.shard(key);
        let entry = shard.get(&key.0)?;
        if now > entry.until || !(Arc::ptr_eq(&entry.sso, sso) || *entry.sso == **sso) {
            shard.remove(&key.0);
            return None;
        }
        Some(entry.identity.clone())
    }

    /// Keeps `identity`, proved at `now` by a token verified against `sso` that expires at
    /// `expires_at` (its `exp`).
    pub fn insert(
        &self,
        key: TokenKey,
        sso: Arc<SsoRow>,
        identity: Identity,
        expires_at: i64,
        now: i64,
    ) {
        if !self.enabled() {
            return;
        }
        let until = expires_at
            .saturating_add(i64::try_from(LEEWAY_SECONDS).unwrap_or(0))
            .min(now.saturating_add(self.0.ttl_seconds));
        if until < now {
            return;
        }
        let per_shard = self.0.per_shard;
        let mut shard = self.shard(&key);
        if shard.len() >= per_shard && !shard.contains_key(&key.0) {
            shard.retain(|_, entry| entry.until >= now);
            // Still full of live tokens: start the shard afresh rather than scan for the
            // oldest on every insert; its clients verify once more.
            if shard.len() >= per_shard {
                shard.clear();
            }
        }
        shard.insert(
            key.0,
            Entry {
                sso,
                identity,
                until,
            },
        );
    }

    /// How many tokens are kept.
    pub fn len(&self) -> usize {
        self.0
            .shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }

    /// Whether no token is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn shard(&self, key: &TokenKey) -> std::sync::MutexGuard<'_, HashMap<Key, Entry>> {
        let index = usize::from(key.0.1[0]) % self.0.shards.len();
        // A panic while holding a shard leaves a map that is still consistent.
        self.0.shards[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sso(issuer: &str) -> Arc<SsoRow> {
        Arc::new(crate::catalog::test_sso(issuer))
    }

    fn alice() -> Identity {
        Identity {
            subject: "alice".into(),
            email: None,
            name: None,
            roles: vec!["physician".into()],
        }
    }

    const NOW: i64 = 1_800_000_000;

    #[test]
    fn a_kept_token_answers_for_its_tenant_only() {
        let cache = VerifiedTokens::default();
        let settings = sso("https://idp.example.org/realms/a");
        cache.insert(
            TokenKey::new(1, "token"),
            settings.clone(),
            alice(),
            NOW + 300,
            NOW,
        );
        assert_eq!(
            cache.get(&TokenKey::new(1, "token"), &settings, NOW),
            Some(alice())
        );
        assert_eq!(cache.get(&TokenKey::new(2, "token"), &settings, NOW), None);
        assert_eq!(cache.get(&TokenKey::new(1, "tokem"), &settings, NOW), None);
    }

    #[test]
    fn an_entry_ends_at_expiry_plus_leeway_or_its_time_to_live() {
        let cache = VerifiedTokens::new(Duration::from_secs(60), 100);
        let settings = sso("https://idp.example.org/realms/a");
        let leeway = i64::try_from(LEEWAY_SECONDS).expect("small");
        // Expires before the time to live ends: good until exp + leeway.
        let soon = TokenKey::new(1, "soon");
        cache.insert(soon, settings.clone(), alice(), NOW + 10, NOW);
        assert!(cache.get(&soon, &settings, NOW + 10 + leeway).is_some());
        assert!(cache.get(&soon, &settings, NOW + 11 + leeway).is_none());
        // Expires long after: good for the time to live only.
        let late = TokenKey::new(1, "late");
        cache.insert(late, settings.clone(), alice(), NOW + 3_600, NOW);
        assert!(cache.get(&late, &settings, NOW + 60).is_some());
        assert!(cache.get(&late, &settings, NOW + 61).is_none());
        // What ended is gone, not just hidden.
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn changed_sso_settings_verify_again() {
        let cache = VerifiedTokens::default();
        let settings = sso("https://idp.example.org/realms/a");
        let key = TokenKey::new(1, "token");
        cache.insert(key, settings.clone(), alice(), NOW + 300, NOW);
        // Equal settings of a reloaded catalog (another Arc) still match.
        let reloaded = sso("https://idp.example.org/realms/a");
        assert!(cache.get(&key, &reloaded, NOW).is_some());
        let mut changed = (*settings).clone();
        changed.audiences = vec!["other".into()];
        assert!(cache.get(&key, &Arc::new(changed), NOW).is_none());
        assert!(
            cache.get(&key, &settings, NOW).is_none(),
            "the entry is dropped"
        );
    }

    #[test]
    fn a_full_cache_stays_within_its_capacity() {
        let cache = VerifiedTokens::new(Duration::from_secs(60), 32);
        let settings = sso("https://idp.example.org/realms/a");
        for i in 0..1_000 {
            cache.insert(
                TokenKey::new(1, &format!("token-{i}")),
                settings.clone(),
                alice(),
                NOW + 300,
                NOW,
            );
        }
        assert!(cache.len() <= 32, "{} kept", cache.len());
        assert!(!cache.is_empty());
        // The newest is always kept.
        assert!(
            cache
                .get(&TokenKey::new(1, "token-999"), &settings, NOW)
                .is_some()
        );
    }

    #[test]
    fn a_disabled_cache_keeps_nothing() {
        let settings = sso("https://idp.example.org/realms/a");
        for cache in [
            VerifiedTokens::new(Duration::ZERO, 100),
            VerifiedTokens::new(Duration::from_secs(60), 0),
        ] {
            let key = TokenKey::new(1, "token");
            cache.insert(key, settings.clone(), alice(), NOW + 300, NOW);
            assert!(cache.get(&key, &settings, NOW).is_none());
        }
    }
}
