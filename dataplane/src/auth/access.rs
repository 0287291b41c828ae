//! Whether an authenticated identity may use the platform now: the one rule every way of
//! authenticating (bearer tokens today, browser sessions next) applies on every request.
//!
//! When the tenant's IdP provisions users through SCIM (`scim_enabled` in its SSO
//! settings), an identity is admitted only while it is a provisioned SCIM user of the
//! tenant with `active = true`: matched by `externalId` equal to the token's subject, or
//! else by `userName` equal to its email, case-insensitively. It is checked in the database
//! on every request, on the primary (a replica might lag behind a deactivation), without
//! any cache, so deactivating or deleting a user takes effect at the user's next request.
//!
//! A refused identity is treated as no longer authenticated (401 `invalid_token`, the same
//! answer for deactivated, deleted and never provisioned users, naming no internals): the
//! IdP has taken the account away, so the credential no longer speaks for anyone here.

use crate::app::AppState;
use crate::auth::Identity;
use crate::catalog::TenantRecord;
use crate::db::tenant_tx::{Access, TxError};

/// Why an identity is not admitted.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// The tenant provisions users through SCIM and this one is not an active user.
    #[error("the user is not an active user of this tenant")]
    NotProvisioned,
    /// The check could not be made (the database failed); the request is refused.
    #[error("the user's access could not be checked")]
    Unavailable(#[source] TxError),
}

/// Admits `identity` to `tenant` now, or says why not (see the module documentation).
pub async fn admit(
    state: &AppState,
    tenant: &TenantRecord,
    identity: &Identity,
) -> Result<(), AccessError> {
    let scim_enabled = state
        .catalog
        .sso(tenant)
        .is_some_and(|sso| sso.scim_enabled);
    if !scim_enabled {
        return Ok(());
    }
    let subject = identity.subject.clone();
    let email = identity.email.clone().unwrap_or_default();
    let active = state
        .database
        .tenant_tx(Access::Primary, tenant.id, |tx| {
            Box::pin(async move {
                // A match on the subject wins over one on the email.
                let row = tx
                    .query_opt(
                        "SELECT active FROM scim_users \
                         WHERE external_id = $1 OR ($2 <> '' AND lower(user_name) = lower($2)) \
                         ORDER BY (external_id = $1) DESC NULLS LAST LIMIT 1",
                        &[&subject, &email],
                    )
                    .await?;
                Ok::<_, TxError>(row.map(|r| r.try_get::<_, bool>(0)).transpose()?)
            })
        })
        .await
        .map_err(AccessError::Unavailable)?;
    match active {
        Some(true) => Ok(()),
        _ => Err(AccessError::NotProvisioned),
    }
}
