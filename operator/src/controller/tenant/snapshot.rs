//! Cleanup of a `deletionPolicy: Snapshot` tenant: its rows go to the Region's snapshot
//! bucket, and are deleted (a `Schema` tenant's schema and role dropped) only once the
//! object is there ([`crate::snapshot`]).

use kube::ResourceExt;
use phoenix_crds::{DeletionPolicy, Isolation, Region, Tenant};

use super::super::context::{Context, EventSpec};
use super::super::error::{ApplyError, DerefError, Error};
use crate::controller::providers::Database;
use crate::reason::Reason;
use crate::snapshot::{self, Destination, format::describe_counts};

/// Where the Region puts snapshots, or what the user must configure
/// ([`DerefError::SnapshotNotConfigured`]'s message).
pub fn destination(tenant: &Tenant, region: &Region) -> Result<Destination, String> {
    let Some(config) = &region.spec.database.snapshots else {
        return Err(format!(
            "cannot delete tenant {} with deletionPolicy Snapshot: region {} declares no snapshot bucket; set spec.database.snapshots.bucket on the Region (or change the Tenant's spec.database.deletionPolicy); the tenant's data is kept until then",
            tenant.name_any(),
            region.name_any()
        ));
    };
    Ok(Destination {
        aws_region: region.spec.aws_region.clone(),
        bucket: config.bucket.clone(),
        prefix: config.prefix.clone(),
        region: region.name_any(),
    })
}

/// What `DatabaseReady` adds for a live Snapshot tenant whose Region declares no bucket, so
/// that it shows before a deletion waits on it.
pub fn unprotected_note(tenant: &Tenant, region: &Region) -> Option<String> {
    (tenant.spec.database.deletion_policy == DeletionPolicy::Snapshot
        && region.spec.database.snapshots.is_none())
    .then(|| {
        format!(
            "; deletionPolicy is Snapshot but region {} declares no snapshot bucket (spec.database.snapshots): deleting this tenant would wait, keeping its data, until one is declared",
            region.name_any()
        )
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
    if tenant.spec.database.isolation == Isolation::Dedicated {
        // Its operator pool is closed first: the deletion ends every session on it.
        ctx.providers
            .databases
            .close_tenant_database(&phoenix_catalog::schemas::tenant_database(
                &tenant.uid().unwrap_or_default(),
            ));
    }
    let to = destination(tenant, region).map_err(DerefError::SnapshotNotConfigured)?;
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
    let dropped = match taken.deleted.dropped {
        None => String::new(),
        Some(d) => format!(
            "; {} {} and role {} {}",
            if tenant.spec.database.isolation == Isolation::Dedicated {
                format!(
                    "database {}",
                    phoenix_catalog::schemas::tenant_database(&uid)
                )
            } else {
                format!("schema {}", phoenix_catalog::schemas::tenant_schema(&uid))
            },
            if d.schema {
                "dropped"
            } else {
                "was already gone"
            },
            phoenix_catalog::schemas::tenant_role(&uid),
            if d.role {
                "dropped"
            } else {
                "was already gone (or is not the operator's)"
            }
        ),
    };
    let note = format!(
        "snapshot {} written and checked, then deleted {} row(s) and the catalog entry in region {}{dropped}",
        taken.at, taken.deleted.rows, to.region
    );
    Ok((note, Some(event)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(snapshots: Option<serde_json::Value>) -> Region {
        let mut database = serde_json::json!({
            "writer": {"connectionSecretRef": {"namespace": "ns", "name": "db", "key": "dsn"}}
        });
        if let Some(s) = snapshots {
            database["snapshots"] = s;
        }
        let spec = serde_json::from_value(serde_json::json!({
            "awsRegion": "eu-west-1", "dataResidency": ["EU"], "database": database
        }))
        .expect("region spec");
        Region::new("eu-west-1", spec)
    }

    fn tenant() -> Tenant {
        let spec = serde_json::from_value(serde_json::json!({
            "displayName": "x", "dataResidency": ["EU"], "dns": {"hostname": "x.example.test"},
            "database": {"deletionPolicy": "Snapshot"}
        }))
        .expect("tenant spec");
        Tenant::new("st-mary", spec)
    }

    #[test]
    fn a_region_without_a_bucket_says_what_to_configure() {
        let message = destination(&tenant(), &region(None)).expect_err("no bucket");
        assert!(
            message.contains("region eu-west-1 declares no snapshot bucket")
                && message.contains("spec.database.snapshots.bucket")
                && message.contains("data is kept"),
            "{message}"
        );
        assert_eq!(
            Error::from(DerefError::SnapshotNotConfigured(message)).reason(),
            Reason::SnapshotNotConfigured,
            "the condition reason users wait on"
        );
    }

    #[test]
    fn a_live_snapshot_tenant_without_a_bucket_is_told_before_deletion() {
        let note = unprotected_note(&tenant(), &region(None)).expect("a note");
        assert!(
            note.contains("region eu-west-1 declares no snapshot bucket"),
            "{note}"
        );
        let configured = region(Some(serde_json::json!({"bucket": "b-1"})));
        assert_eq!(unprotected_note(&tenant(), &configured), None);
        let mut retain = tenant();
        retain.spec.database.deletion_policy = DeletionPolicy::Retain;
        assert_eq!(unprotected_note(&retain, &region(None)), None);
    }

    #[test]
    fn the_destination_is_the_region_s_bucket_in_its_aws_region() {
        let r = region(Some(
            serde_json::json!({"bucket": "phoenix-snapshots-eu", "prefix": "tenants"}),
        ));
        assert_eq!(
            destination(&tenant(), &r).expect("configured"),
            Destination {
                aws_region: "eu-west-1".into(),
                bucket: "phoenix-snapshots-eu".into(),
                prefix: Some("tenants".into()),
                region: "eu-west-1".into(),
            }
        );
    }
}
