//! `catalog.scim_tokens`: the SHA-256 of each tenant's SCIM bearer tokens, as the operator
//! publishes them (the token itself lives only in a Kubernetes Secret). The data plane holds
//! them in memory, keyed by hash, beside the tenants and their SSO settings.

use sha2::{Digest, Sha256};

use super::CatalogError;

/// A SCIM token of a tenant, as loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScimToken {
    /// The tenant it opens `/scim/v2` for.
    pub tenant_id: i64,
    /// When it stops working (a rotated-out token), in Unix milliseconds; `None`: never.
    pub expires_at_ms: Option<i64>,
}

impl ScimToken {
    /// Whether the token still works at `now_ms` (Unix milliseconds).
    pub fn valid_at(&self, now_ms: i64) -> bool {
        self.expires_at_ms.is_none_or(|expiry| now_ms < expiry)
    }
}

/// SHA-256 of a presented token, lowercase hex: the form the catalog holds (the operator
/// hashes the same way).
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Reads every SCIM token hash of a live tenant, expired ones left out at load (they are
/// also checked per request, as they expire between loads).
pub async fn load_scim_tokens(
    client: &tokio_postgres::Client,
) -> Result<Vec<(String, ScimToken)>, CatalogError> {
    let sql = "SELECT token_sha256, tenant_id, \
               (extract(epoch FROM expires_at) * 1000)::bigint AS expires_at_ms \
               FROM catalog.scim_tokens \
               WHERE expires_at IS NULL OR expires_at > now()";
    let rows = match client.query(sql, &[]).await {
        Ok(rows) => rows,
        // A catalog not migrated to catalog.scim_tokens yet (migration 4): no SCIM access.
        Err(error) if error.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) => {
            tracing::warn!("catalog.scim_tokens does not exist yet; SCIM refuses every token");
            return Ok(Vec::new());
        }
        Err(error) => return Err(error.into()),
    };
    let mut tokens = Vec::with_capacity(rows.len());
    for row in &rows {
        let hash: String = row.try_get("token_sha256")?;
        tokens.push((
            hash.to_ascii_lowercase(),
            ScimToken {
                tenant_id: row.try_get("tenant_id")?,
                expires_at_ms: row.try_get("expires_at_ms")?,
            },
        ));
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_lowercase_hex_sha256() {
        assert_eq!(
            token_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn a_token_works_until_its_expiry_only() {
        let forever = ScimToken {
            tenant_id: 1,
            expires_at_ms: None,
        };
        assert!(forever.valid_at(i64::MAX));
        let rotated = ScimToken {
            tenant_id: 1,
            expires_at_ms: Some(1_000),
        };
        assert!(rotated.valid_at(999));
        assert!(!rotated.valid_at(1_000));
    }
}
