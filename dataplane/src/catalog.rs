//! The in-memory copy of `catalog.tenants`: which tenants this region serves, by host name.
//!
//! The operator writes the catalog; the [`follower`] keeps this copy current (LISTEN/NOTIFY
//! on a primary, polling the replay position on a hot standby). The row types are the
//! `phoenix-catalog` crate's, the contract both sides share. Request handling only ever reads the latest snapshot, so a reload never
//! blocks a request for longer than an `Arc` clone.

pub mod follower;
pub mod readers;
pub mod scim_tokens;

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use phoenix_catalog::tenants::COLUMNS;
pub use phoenix_catalog::{Isolation, RowError, SsoRow, TenantRecord, TenantRow, TenantState};
pub use scim_tokens::{ScimToken, load_scim_tokens, token_hash};

/// Why the catalog could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The query failed (connection lost, permission denied, schema missing).
    #[error(
        "reading the catalog (catalog.tenants, catalog.sso, catalog.scim_tokens, catalog.readers) failed"
    )]
    Query(#[from] tokio_postgres::Error),
    /// A column is missing or has another type than this version expects.
    #[error(transparent)]
    Row(RowError),
}

/// Reads every live (not retired) tenant from `catalog.tenants`.
///
/// A row with a value this version does not know (an isolation or state added by a newer
/// operator) is logged and left out, so that one such row cannot freeze the whole catalog.
pub async fn load_tenants(
    client: &tokio_postgres::Client,
) -> Result<Vec<TenantRecord>, CatalogError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM catalog.tenants WHERE state <> '{}' ORDER BY id",
        TenantState::Retired.as_str()
    );
    let rows = client.query(&sql, &[]).await?;
    let mut tenants = Vec::with_capacity(rows.len());
    for row in &rows {
        match TenantRecord::from_row(row) {
            Ok(tenant) => tenants.push(tenant),
            Err(error @ RowError::Unknown { .. }) => {
                tracing::error!(error = %crate::error::Report(&error), "tenant left out of the catalog");
            }
            Err(error) => return Err(CatalogError::Row(error)),
        }
    }
    Ok(tenants)
}

/// Reads the SSO settings of every live tenant from `catalog.sso`, by tenant id.
///
/// A row this version cannot read (a protocol added by a newer operator) is logged and left
/// out: that tenant then accepts no token, the safe side.
pub async fn load_sso(client: &tokio_postgres::Client) -> Result<Vec<(i64, SsoRow)>, CatalogError> {
    let sql = format!(
        "SELECT {} FROM catalog.sso WHERE tenant_id IN \
         (SELECT id FROM catalog.tenants WHERE state <> '{}') ORDER BY tenant_id",
        phoenix_catalog::sso::COLUMNS,
        TenantState::Retired.as_str()
    );
    let rows = match client.query(&sql, &[]).await {
        Ok(rows) => rows,
        // A catalog the operator has not migrated to catalog.sso yet (migration 3): tenants
        // are still served, none accepts a token until it is.
        Err(error) if error.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) => {
            tracing::warn!("catalog.sso does not exist yet; no tenant accepts bearer tokens");
            return Ok(Vec::new());
        }
        // Nor to its login endpoints (migration 6).
        Err(error) if error.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_COLUMN) => {
            tracing::warn!(
                "catalog.sso lacks the login endpoints (migration 6) yet; no tenant accepts bearer tokens or logins"
            );
            return Ok(Vec::new());
        }
        Err(error) => return Err(error.into()),
    };
    let mut sso = Vec::with_capacity(rows.len());
    for row in &rows {
        match SsoRow::from_row(row) {
            Ok(entry) => sso.push(entry),
            Err(error @ RowError::Unknown { .. }) => {
                tracing::error!(error = %crate::error::Report(&error), "SSO settings left out of the catalog");
            }
            Err(error) => return Err(CatalogError::Row(error)),
        }
    }
    Ok(sso)
}

#[derive(Debug, Default)]
struct Snapshot {
    by_host: HashMap<String, Arc<TenantRecord>>,
    sso: HashMap<i64, Arc<SsoRow>>,
    scim_tokens: HashMap<String, ScimToken>,
    loaded: bool,
}

/// The shared, swappable set of live tenants, keyed by lowercased host name.
///
/// Cloning is cheap and every clone sees the same tenants.
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    current: Arc<RwLock<Arc<Snapshot>>>,
    readers: readers::PublishedReaders,
}

impl Catalog {
    /// A catalog that has not loaded yet: it resolves no host and is not ready.
    pub fn new() -> Self {
        Self::default()
    }

    /// The Region's readers as published in `catalog.readers`.
    pub fn readers(&self) -> &readers::PublishedReaders {
        &self.readers
    }

    /// A catalog holding exactly `tenants`, already loaded (for tests and tools).
    pub fn with_tenants(tenants: impl IntoIterator<Item = TenantRecord>) -> Self {
        let catalog = Self::new();
        catalog.replace(tenants);
        catalog
    }

    /// Replaces every tenant at once and marks the catalog loaded; returns how many it holds.
    ///
    /// Host names are compared lowercased. Should two live rows differ only in case, the
    /// one with the lower id (the first given) wins.
    pub fn replace(&self, tenants: impl IntoIterator<Item = TenantRecord>) -> usize {
        self.replace_with_sso(tenants, [])
    }

    /// Replaces every tenant and every tenant's SSO settings at once (see [`Catalog::replace`]).
    ///
    /// SSO settings of a tenant not held are dropped.
    pub fn replace_with_sso(
        &self,
        tenants: impl IntoIterator<Item = TenantRecord>,
        sso: impl IntoIterator<Item = (i64, SsoRow)>,
    ) -> usize {
        self.replace_all(tenants, sso, [])
    }

    /// Replaces tenants, SSO settings and SCIM token hashes at once (see
    /// [`Catalog::replace`]); settings and tokens of a tenant not held are dropped.
    pub fn replace_all(
        &self,
        tenants: impl IntoIterator<Item = TenantRecord>,
        sso: impl IntoIterator<Item = (i64, SsoRow)>,
        scim_tokens: impl IntoIterator<Item = (String, ScimToken)>,
    ) -> usize {
        let mut by_host = HashMap::new();
        // A retired tenant is never served, whoever hands it over.
        let live = tenants
            .into_iter()
            .filter(|tenant| tenant.state != TenantState::Retired);
        for mut tenant in live {
            tenant.row.hostname = normalize_host(&tenant.hostname);
            let host = tenant.hostname.clone();
            if let Some(kept) = by_host.get(&host) {
                let kept: &Arc<TenantRecord> = kept;
                tracing::warn!(
                    hostname = %host,
                    kept = %kept.name,
                    ignored = %tenant.name,
                    "two live tenants claim the same host name; ignoring the newer one"
                );
                continue;
            }
            by_host.insert(host, Arc::new(tenant));
        }
        let len = by_host.len();
        let held: std::collections::HashSet<i64> = by_host.values().map(|t| t.id).collect();
        let sso = sso
            .into_iter()
            .filter(|(id, _)| held.contains(id))
            .map(|(id, row)| (id, Arc::new(row)))
            .collect();
        let scim_tokens = scim_tokens
            .into_iter()
            .filter(|(_, token)| held.contains(&token.tenant_id))
            .collect();
        let snapshot = Arc::new(Snapshot {
            by_host,
            sso,
            scim_tokens,
            loaded: true,
        });
        // Nothing can panic while the lock is held, so a poisoned lock still holds a
        // consistent snapshot: carry on with it rather than take the process down.
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = snapshot;
        len
    }

    /// The live tenant served at `host` (already stripped of its port and lowercased).
    pub fn get(&self, host: &str) -> Option<Arc<TenantRecord>> {
        self.snapshot().by_host.get(host).cloned()
    }

    /// The SSO settings of the held tenant `tenant` (by its catalog id), if it has any.
    pub fn sso(&self, tenant: &TenantRecord) -> Option<Arc<SsoRow>> {
        self.snapshot().sso.get(&tenant.id).cloned()
    }

    /// Whether `token` is a SCIM token of `tenant` that works at `now_ms` (Unix
    /// milliseconds). Looked up by its SHA-256 only: the token itself is never compared, so
    /// no timing tells how much of it was right. Another tenant's token is no token.
    pub fn scim_token_valid(&self, tenant: &TenantRecord, token: &str, now_ms: i64) -> bool {
        self.snapshot()
            .scim_tokens
            .get(&token_hash(token))
            .is_some_and(|found| found.tenant_id == tenant.id && found.valid_at(now_ms))
    }

    /// Whether the catalog has been loaded from the database at least once.
    pub fn is_loaded(&self) -> bool {
        self.snapshot().loaded
    }

    /// Number of live tenants (active and suspended).
    pub fn len(&self) -> usize {
        self.snapshot().by_host.len()
    }

    /// Whether no tenant is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }
}

/// Lowercases a host name and drops a trailing root dot (`Example.org.` -> `example.org`).
pub fn normalize_host(host: &str) -> String {
    host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase()
}

/// OIDC settings of an IdP at `issuer` for the crate's unit tests: keys at
/// `<issuer>/certs`, client and audience `phoenix-dataplane`, standard claims, no role
/// mapping or domain rule, SCIM off. Tests change what they need with struct update syntax.
#[cfg(test)]
pub(crate) fn test_sso(issuer: &str) -> SsoRow {
    SsoRow {
        idp_uid: "idp-uid".into(),
        idp_name: "idp".into(),
        protocol: phoenix_catalog::sso::Protocol::Oidc,
        issuer: issuer.into(),
        jwks_uri: format!("{issuer}/certs"),
        client_id: "phoenix-dataplane".into(),
        audiences: vec!["phoenix-dataplane".into()],
        claim_subject: "sub".into(),
        claim_email: "email".into(),
        claim_groups: "groups".into(),
        claim_name: "name".into(),
        role_mapping: vec![],
        allowed_email_domains: vec![],
        scim_enabled: false,
        generation: 1,
        authorization_endpoint: None,
        token_endpoint: None,
        end_session_endpoint: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(name: &str, hostname: &str, state: TenantState) -> TenantRecord {
        TenantRecord {
            id: i64::from(name.bytes().map(u32::from).sum::<u32>()),
            row: TenantRow {
                uid: format!("uid-{name}"),
                name: name.into(),
                display_name: format!("{name} hospital"),
                hostname: hostname.into(),
                home_region: "us-east-1".into(),
                data_residency: vec!["US".into()],
                isolation: Isolation::Shared,
                state,
                requests_per_second: 100,
                max_users: 1000,
                generation: 1,
                schema: None,
                database: None,
                database_server: None,
            },
        }
    }

    #[test]
    fn a_new_catalog_is_not_loaded_and_resolves_nothing() {
        let catalog = Catalog::new();
        assert!(!catalog.is_loaded());
        assert!(catalog.get("a.example.org").is_none());
    }

    #[test]
    fn hosts_are_keyed_lowercased_without_the_root_dot() {
        let catalog =
            Catalog::with_tenants([tenant("mercy", "Mercy.Example.ORG.", TenantState::Active)]);
        assert!(catalog.is_loaded());
        let found = catalog
            .get("mercy.example.org")
            .expect("tenant by lowercased host");
        assert_eq!(found.name, "mercy");
        assert_eq!(found.hostname, "mercy.example.org");
    }

    #[test]
    fn replace_drops_tenants_that_are_gone_and_keeps_the_first_of_a_duplicate_host() {
        let catalog = Catalog::with_tenants([tenant("a", "a.example.org", TenantState::Active)]);
        let len = catalog.replace([
            tenant("b", "b.example.org", TenantState::Active),
            tenant("c", "B.example.org", TenantState::Active),
        ]);
        assert_eq!(len, 1);
        assert!(catalog.get("a.example.org").is_none());
        assert_eq!(
            catalog.get("b.example.org").map(|t| t.name.clone()),
            Some("b".into())
        );
    }

    #[test]
    fn a_retired_tenant_is_never_held() {
        let catalog = Catalog::with_tenants([
            tenant("gone", "gone.example.org", TenantState::Retired),
            tenant("here", "here.example.org", TenantState::Active),
        ]);
        assert_eq!(catalog.len(), 1);
        assert!(catalog.get("gone.example.org").is_none());
    }

    fn sso(issuer: &str) -> SsoRow {
        test_sso(issuer)
    }

    #[test]
    fn sso_settings_are_found_by_tenant_and_only_for_held_tenants() {
        let a = tenant("a", "a.example.org", TenantState::Active);
        let b = tenant("b", "b.example.org", TenantState::Active);
        let gone = tenant("gone", "gone.example.org", TenantState::Retired);
        let catalog = Catalog::new();
        catalog.replace_with_sso(
            [a.clone(), b.clone(), gone.clone()],
            [
                (a.id, sso("https://idp/a")),
                (gone.id, sso("https://idp/gone")),
            ],
        );
        assert_eq!(
            catalog.sso(&a).map(|s| s.issuer.clone()),
            Some("https://idp/a".into())
        );
        assert!(catalog.sso(&b).is_none());
        assert!(catalog.sso(&gone).is_none());
        // A reload without the row removes it.
        catalog.replace_with_sso([a.clone()], []);
        assert!(catalog.sso(&a).is_none());
    }

    #[test]
    fn a_scim_token_opens_only_its_own_tenant_and_only_until_it_expires() {
        let a = tenant("a", "a.example.org", TenantState::Active);
        let b = tenant("b", "b.example.org", TenantState::Active);
        let catalog = Catalog::new();
        let token = |tenant_id, expires_at_ms| ScimToken {
            tenant_id,
            expires_at_ms,
        };
        catalog.replace_all(
            [a.clone(), b.clone()],
            [],
            [
                (token_hash("current"), token(a.id, None)),
                (token_hash("old"), token(a.id, Some(2_000))),
                (token_hash("gone"), token(9_999, None)),
            ],
        );
        assert!(catalog.scim_token_valid(&a, "current", 5_000));
        assert!(catalog.scim_token_valid(&a, "old", 1_999));
        assert!(!catalog.scim_token_valid(&a, "old", 2_000));
        assert!(!catalog.scim_token_valid(&b, "current", 0));
        assert!(!catalog.scim_token_valid(&a, "unknown", 0));
    }

    #[test]
    fn clones_share_the_same_tenants() {
        let catalog = Catalog::new();
        let clone = catalog.clone();
        catalog.replace([tenant("a", "a.example.org", TenantState::Suspended)]);
        assert!(clone.is_loaded());
        assert_eq!(clone.len(), 1);
    }
}
