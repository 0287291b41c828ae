//! Deleting a `Dedicated` tenant whose database is its own RDS instance, per
//! `deletionPolicy`: `Retain` keeps the instance (its tags say whose it was) and its
//! master password Secret; `Snapshot` deletes it with a final snapshot and removes the
//! tenant only once the instance is gone and the snapshot is listed; `Delete` deletes it
//! without one. The catalog row is retired first (the data plane stops serving the tenant
//! before its database goes), removed last. Waiting is requeueing: a pass that finds the
//! instance still deleting fails with a message and the tenant stays `Deleting`.

use kube::ResourceExt;
use phoenix_crds::{DeletionPolicy, Region, Tenant};

use super::rds::{ADMIN_DATABASE, instance_identifier, secret_name, tenant_tags};
use crate::controller::error::{ApplyError, DerefError, Error};
use crate::controller::providers::Database;
use crate::controller::world::World;
use crate::rds::{self, RdsError};

/// The final snapshot of a tenant's instance `identifier`: deterministic, so a pass after
/// the deletion started looks for the same one.
pub fn final_snapshot(identifier: &str) -> String {
    format!("{identifier}-final")
}

/// Handles the tenant's instance per its `deletionPolicy`; what was done, for the
/// `Deleted` Event. `db` is the region database (the catalog).
pub async fn release(
    tenant: &Tenant,
    region: &Region,
    db: &dyn Database,
    world: &World<'_>,
) -> Result<String, Error> {
    let uid = tenant.uid().unwrap_or_default();
    let region_name = region.name_any();
    let aws_region = &region.spec.aws_region;
    let identifier = instance_identifier(&uid);
    let tags = tenant_tags(&region_name, &tenant.name_any(), &uid);
    let namespace = &world.settings.namespace;
    let secret = secret_name(&identifier);
    let apply_err = ApplyError::from;
    let retired = db.retire_tenant(&uid).await.map_err(apply_err)?;
    let database = phoenix_catalog::schemas::tenant_database(&uid);
    let databases = &world.providers.databases;
    databases.close_tenant_database(&database);
    let policy = tenant.spec.database.deletion_policy;
    if policy == DeletionPolicy::Retain {
        return Ok(format!(
            "retained the tenant's RDS instance {identifier} in {aws_region} (database {database}; tagged {}={} and {}={uid}) and its master password Secret {namespace}/{secret}; catalog entry {} in region {region_name}",
            super::rds::TENANT_TAG,
            tenant.name_any(),
            super::rds::TENANT_UID_TAG,
            if retired {
                "marked retired"
            } else {
                "was already retired"
            }
        ));
    }
    // Its server-work pools go too (they reopen for other tenants on their next pass).
    databases.close_tenant_database(ADMIN_DATABASE);
    let provider = world.providers.rds.as_ref();
    let snapshot = final_snapshot(&identifier);
    if let Some(found) = provider
        .describe(aws_region, &identifier)
        .await
        .map_err(DerefError::from)?
    {
        // Never delete an instance that is not the tenant's.
        let found = rds::check_owned(found, aws_region, &tags).map_err(DerefError::from)?;
        if found.status != "deleting" {
            if policy == DeletionPolicy::Snapshot {
                rds::delete_with_final_snapshot(
                    provider,
                    aws_region,
                    &identifier,
                    &snapshot,
                    &tags,
                )
                .await
                .map_err(DerefError::from)?;
            } else {
                provider
                    .delete_without_snapshot(aws_region, &identifier)
                    .await
                    .map_err(DerefError::from)?;
            }
            tracing::info!(instance = %identifier, ?policy, "RDS instance deletion started");
        }
        if provider
            .describe(aws_region, &identifier)
            .await
            .map_err(DerefError::from)?
            .is_some()
        {
            let what = if policy == DeletionPolicy::Snapshot {
                format!(
                    "the tenant's RDS instance {identifier} is being deleted with final snapshot {snapshot}; the tenant is removed once the instance is gone and the snapshot is listed"
                )
            } else {
                format!("the tenant's RDS instance {identifier} is being deleted")
            };
            return Err(DerefError::RdsDeleting(what).into());
        }
    }
    let kept = if policy == DeletionPolicy::Snapshot {
        // Nothing else goes before the snapshot is listed.
        let listed = provider
            .snapshots(aws_region, &identifier)
            .await
            .map_err(DerefError::from)?
            .into_iter()
            .any(|s| s.identifier == snapshot);
        if !listed {
            return Err(DerefError::from(RdsError::SnapshotMissing {
                identifier: identifier.clone(),
                snapshot: snapshot.clone(),
            })
            .into());
        }
        format!(" with final snapshot {snapshot}")
    } else {
        " without a final snapshot".to_owned()
    };
    world
        .providers
        .secrets
        .delete(namespace, &secret)
        .await
        .map_err(DerefError::from)?;
    db.delete_tenant(&uid).await.map_err(apply_err)?;
    Ok(format!(
        "deleted the tenant's RDS instance {identifier} in {aws_region}{kept}, its master password Secret {namespace}/{secret} and the catalog entry in region {region_name}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_final_snapshot_is_the_same_on_every_pass_and_a_valid_rds_name() {
        let id = instance_identifier("uid-1");
        let s = final_snapshot(&id);
        assert_eq!(s, final_snapshot(&instance_identifier("uid-1")));
        assert_ne!(s, final_snapshot(&instance_identifier("uid-2")));
        assert!(s.len() <= 255 && s.starts_with("phoenix-tenant-"));
        assert!(s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
        assert!(!s.contains("--") && !s.ends_with('-'));
    }
}
