//! Cleanup of a `deletionPolicy: Snapshot` tenant: its rows go to the Region's snapshot
//! bucket, and are deleted only once the object is there ([`crate::snapshot`]).

use kube::ResourceExt;
use phoenix_crds::{Isolation, Region, Tenant};

use super::super::context::{Context, EventSpec};
use super::super::error::{ApplyError, DerefError, Error};
use crate::controller::providers::Database;
use crate::reason::Reason;
use crate::snapshot::{self, Destination, format::describe_counts};

/// Where the Region puts snapshots, or what the user must configure.
pub fn destination(tenant: &Tenant, region: &Region) -> Result<Destination, DerefError> {
    let Some(config) = &region.spec.database.snapshots else {
        return Err(DerefError::SnapshotNotConfigured(format!(
            "cannot delete tenant {} with deletionPolicy Snapshot: region {} declares no snapshot bucket; set spec.database.snapshots.bucket on the Region (or change the Tenant's spec.database.deletionPolicy); the tenant's data is kept until then",
            tenant.name_any(),
            region.name_any()
        )));
    };
    Ok(Destination {
        aws_region: region.spec.aws_region.clone(),
        bucket: config.bucket.clone(),
        prefix: config.prefix.clone(),
        region: region.name_any(),
    })
}

/// Snapshots the tenant, then deletes its data; the Deleted note and the SnapshotTaken
/// Event (none when nothing was left to snapshot).
pub async fn snapshot_then_delete(
    tenant: &Tenant,
    region: &Region,
    db: &dyn Database,
    ctx: &Context,
) -> Result<(String, Option<EventSpec>), Error> {
    if tenant.spec.database.isolation != Isolation::Shared {
        return Err(DerefError::NotImplemented(
            "deletionPolicy Snapshot of a tenant whose isolation is not Shared",
        )
        .into());
    }
    let to = destination(tenant, region)?;
    let uid = tenant.uid().unwrap_or_default();
    let taken_at = jiff::Timestamp::now().to_string();
    let taken = snapshot::snapshot_then_delete(
        db,
        ctx.providers.snapshots.as_ref(),
        &to,
        &uid,
        &tenant.name_any(),
        &taken_at,
    )
    .await
    .map_err(ApplyError::from)?;
    let Some(taken) = taken else {
        return Ok((
            format!(
                "no catalog entry of the tenant was left in region {}; nothing to snapshot",
                to.region
            ),
            None,
        ));
    };
    let counts = describe_counts(&taken.counts);
    let event = EventSpec::normal(
        Reason::SnapshotTaken,
        "Delete",
        format!("snapshot {} ({} bytes): {counts}", taken.at, taken.bytes),
    );
    let note = format!(
        "snapshot {} written and checked, then deleted {} row(s) and the catalog entry in region {}",
        taken.at, taken.deleted.rows, to.region
    );
    Ok((note, Some(event)))
}
