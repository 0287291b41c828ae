//! The SSO rows of tenants in `catalog.sso`.

use phoenix_catalog::{SsoRow, TenantState};
use tokio_postgres::Client;

use super::{DbError, col};
use crate::controller::providers::{ScimConverged, SsoSeen};

/// The tenant's live catalog id and its SSO row.
pub async fn seen(client: &Client, tenant_uid: &str) -> Result<SsoSeen, DbError> {
    let id = client
        .query_opt(
            "SELECT id FROM catalog.tenants WHERE uid = $1 AND state <> $2",
            &[&tenant_uid, &TenantState::Retired.as_str()],
        )
        .await
        .map_err(DbError::query("finding the tenant's catalog id"))?;
    let Some(id) = id else {
        return Ok(SsoSeen::default());
    };
    let tenant_id: i64 = col(&id, 0)?;
    let row = client
        .query_opt(
            &format!(
                "SELECT {} FROM catalog.sso WHERE tenant_id = $1",
                phoenix_catalog::sso::COLUMNS
            ),
            &[&tenant_id],
        )
        .await
        .map_err(DbError::query("reading the tenant's SSO row"))?
        .map(|r| SsoRow::from_row(&r).map(|(_, row)| row))
        .transpose()
        .map_err(|e| DbError::Query {
            context: "reading the tenant's SSO row",
            reason: e.to_string(),
        })?;
    Ok(SsoSeen {
        tenant_id: Some(tenant_id),
        row,
    })
}

/// Writes the tenant's SSO row (one per tenant; the last IdPConnection published wins).
pub async fn upsert(client: &Client, tenant_id: i64, row: &SsoRow) -> Result<(), DbError> {
    let mapping = serde_json::to_string(&row.role_mapping).map_err(|e| DbError::Query {
        context: "encoding the role mapping",
        reason: e.to_string(),
    })?;
    client
        .execute(
            "INSERT INTO catalog.sso (tenant_id, idp_uid, idp_name, protocol, issuer, jwks_uri, client_id,
                 audiences, claim_subject, claim_email, claim_groups, claim_name, role_mapping,
                 allowed_email_domains, scim_enabled, generation, authorization_endpoint,
                 token_endpoint, end_session_endpoint)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13::text::jsonb, $14, $15, $16,
                 $17, $18, $19)
             ON CONFLICT (tenant_id) DO UPDATE SET
                 idp_uid = EXCLUDED.idp_uid, idp_name = EXCLUDED.idp_name, protocol = EXCLUDED.protocol,
                 issuer = EXCLUDED.issuer, jwks_uri = EXCLUDED.jwks_uri, client_id = EXCLUDED.client_id,
                 audiences = EXCLUDED.audiences, claim_subject = EXCLUDED.claim_subject,
                 claim_email = EXCLUDED.claim_email, claim_groups = EXCLUDED.claim_groups,
                 claim_name = EXCLUDED.claim_name, role_mapping = EXCLUDED.role_mapping,
                 allowed_email_domains = EXCLUDED.allowed_email_domains,
                 scim_enabled = EXCLUDED.scim_enabled, generation = EXCLUDED.generation,
                 authorization_endpoint = EXCLUDED.authorization_endpoint,
                 token_endpoint = EXCLUDED.token_endpoint,
                 end_session_endpoint = EXCLUDED.end_session_endpoint,
                 updated_at = now()",
            &[
                &tenant_id,
                &row.idp_uid,
                &row.idp_name,
                &row.protocol.as_str(),
                &row.issuer,
                &row.jwks_uri,
                &row.client_id,
                &row.audiences,
                &row.claim_subject,
                &row.claim_email,
                &row.claim_groups,
                &row.claim_name,
                &mapping,
                &row.allowed_email_domains,
                &row.scim_enabled,
                &row.generation,
                &row.authorization_endpoint,
                &row.token_endpoint,
                &row.end_session_endpoint,
            ],
        )
        .await
        .map_err(DbError::query("publishing the tenant's SSO settings"))?;
    Ok(())
}

/// Removes the row published from IdPConnection `idp_uid`.
pub async fn delete(client: &Client, idp_uid: &str) -> Result<u64, DbError> {
    client
        .execute("DELETE FROM catalog.sso WHERE idp_uid = $1", &[&idp_uid])
        .await
        .map_err(DbError::query("removing the SSO settings"))
}

/// See [`crate::controller::providers::Database::converge_scim`]; one transaction.
pub async fn converge_scim(
    client: &mut Client,
    tenant_id: i64,
    idp_uid: &str,
    current: Option<&str>,
    grace_seconds: i64,
) -> Result<ScimConverged, DbError> {
    let tx = client
        .transaction()
        .await
        .map_err(DbError::query("starting the SCIM token change"))?;
    let Some(current) = current else {
        let purged = tx
            .execute(
                "DELETE FROM catalog.scim_tokens WHERE idp_uid = $1",
                &[&idp_uid],
            )
            .await
            .map_err(DbError::query("removing SCIM token hashes"))?;
        tx.commit()
            .await
            .map_err(DbError::query("committing the SCIM token change"))?;
        return Ok(ScimConverged {
            purged,
            ..ScimConverged::default()
        });
    };
    let inserted = tx
        .execute(
            "INSERT INTO catalog.scim_tokens (token_sha256, tenant_id, idp_uid) VALUES ($1, $2, $3)
             ON CONFLICT (token_sha256) DO NOTHING",
            &[&current, &tenant_id, &idp_uid],
        )
        .await
        .map_err(DbError::query("recording the SCIM token hash"))?
        > 0;
    let retired = tx
        .execute(
            "UPDATE catalog.scim_tokens SET expires_at = now() + make_interval(secs => $3::float8)
             WHERE idp_uid = $1 AND token_sha256 <> $2 AND expires_at IS NULL",
            &[&idp_uid, &current, &(grace_seconds as f64)],
        )
        .await
        .map_err(DbError::query("starting the old SCIM tokens' grace period"))?;
    let purged = tx
        .execute(
            "DELETE FROM catalog.scim_tokens
             WHERE idp_uid = $1 AND token_sha256 <> $2 AND expires_at <= now()",
            &[&idp_uid, &current],
        )
        .await
        .map_err(DbError::query(
            "deleting SCIM tokens past their grace period",
        ))?;
    tx.commit()
        .await
        .map_err(DbError::query("committing the SCIM token change"))?;
    Ok(ScimConverged {
        inserted,
        retired,
        purged,
    })
}

/// Removes every SCIM token hash of IdPConnection `idp_uid`.
pub async fn delete_scim(client: &Client, idp_uid: &str) -> Result<u64, DbError> {
    client
        .execute(
            "DELETE FROM catalog.scim_tokens WHERE idp_uid = $1",
            &[&idp_uid],
        )
        .await
        .map_err(DbError::query("removing SCIM token hashes"))
}
