//! What `plan` says about a Region whose RDS instance does not exist yet: the instance
//! (and the master password) the operator would create, instead of the read-only
//! providers' refusal. An existing instance is planned like any writer.

use phoenix_crds::Region;
use phoenix_crds::region::RdsInstance;

use super::report::Change;
use crate::controller::error::DerefError;
use crate::controller::world::World;
use crate::secrets::SecretError;

/// The changes creating the instance of `region` would make, or `None` when it exists.
pub async fn missing_instance(
    world: &World<'_>,
    region: &Region,
    rds: &RdsInstance,
) -> Result<Option<Vec<Change>>, DerefError> {
    let aws_region = &region.spec.aws_region;
    if world
        .providers
        .rds
        .describe(aws_region, &rds.instance_identifier)
        .await?
        .is_some()
    {
        return Ok(None);
    }
    let mut out = Vec::new();
    // A Replica's instance is a read replica of its source's, with its password (ADR 0014).
    if let (phoenix_crds::RegionRole::Replica, Some(source)) =
        (region.spec.role, region.spec.replica_of.as_deref())
    {
        out.push(Change::new(
            "create",
            format!(
                "RDS read replica {} in {aws_region} of region {source}'s instance",
                rds.instance_identifier
            ),
            format!(
                "{}, tagged as the operator's (purpose region-replica); the master password is region {source}'s, copied to secret {}/{} key {} when missing",
                rds.instance_class,
                rds.master_password_secret_ref.namespace,
                rds.master_password_secret_ref.name,
                rds.master_password_secret_ref.key
            ),
        ));
        return Ok(Some(out));
    }
    let r = &rds.master_password_secret_ref;
    match world.providers.secrets.get(r).await {
        Ok(_) => {}
        Err(SecretError::NotFound { .. } | SecretError::MissingKey { .. }) => {
            out.push(Change::new(
                "generate",
                format!(
                    "master password in secret {}/{} key {}",
                    r.namespace, r.name, r.key
                ),
                "the key does not exist yet",
            ));
        }
        Err(e) => return Err(e.into()),
    }
    out.push(Change::new(
        "create",
        format!("RDS instance {} in {aws_region}", rds.instance_identifier),
        format!(
            "{}, PostgreSQL {}, {} GiB{}, master user {}, tagged as the operator's; then the region database {} on it",
            rds.instance_class,
            rds.engine_version,
            rds.allocated_storage_gib,
            if rds.multi_az { ", Multi-AZ" } else { "" },
            rds.master_username,
            region.spec.database.database_name
        ),
    ));
    Ok(Some(out))
}
