//! `phoenix-operator snapshot list|show|restore`: the runbook's commands for tenant
//! snapshots. Output goes to stdout, errors to stderr; exit code 0 on success, 1 on any
//! failure or refusal (nothing is written then).

use super::format::{Snapshot, describe_counts};
use super::restore::{RestoreError, restore};
use super::store::{ObjectLocation, S3Store, SnapshotStore};

/// Lists the snapshot objects under `prefix`.
pub async fn list(aws_region: &str, bucket: &str, prefix: &str) -> Result<String, String> {
    let store = S3Store::from_env().await;
    let found = store
        .list(aws_region, bucket, prefix)
        .await
        .map_err(|e| e.to_string())?;
    let mut out = String::new();
    for o in found {
        out.push_str(&format!(
            "{}\t{}\t{}\n",
            o.last_modified.as_deref().unwrap_or("-"),
            o.size,
            o.key
        ));
    }
    Ok(out)
}

async fn fetch(at: &ObjectLocation) -> Result<Snapshot, String> {
    let store = S3Store::from_env().await;
    let bytes = store.get(at).await.map_err(|e| e.to_string())?;
    Snapshot::decode(&bytes).map_err(|e| format!("{at}: {e}"))
}

/// The snapshot's manifest (every section checked), as pretty JSON.
pub async fn show(at: &ObjectLocation) -> Result<String, String> {
    let snap = fetch(at).await?;
    serde_json::to_string_pretty(&snap.manifest()).map_err(|e| e.to_string())
}

/// Restores the snapshot at `at` into the live `Shared` or `Schema` tenant `into` of the
/// region database `dsn` (an admin DSN: never printed).
pub async fn restore_into(at: &ObjectLocation, dsn: &str, into: &str) -> Result<String, String> {
    let snap = fetch(at).await?;
    let target = phoenix_catalog::connect::parse(dsn)
        .map_err(|e| format!("the database URL is not usable: {e}"))?;
    let mut client = target
        .connect()
        .await
        .map_err(|e| format!("cannot connect to the region database: {e}"))?;
    let restored = restore(&mut client, &snap, into)
        .await
        .map_err(|e| match e {
            RestoreError::Refused(m) => format!("refused, nothing restored: {m}"),
            RestoreError::Database(d) => format!("failed, nothing restored: {d}"),
        })?;
    let mut out = format!(
        "restored {at} (tenant {} uid {}, catalog id {}, taken {}, schema version {}) into tenant {into} (catalog id {})\n",
        snap.tenant.name,
        snap.tenant.uid,
        snap.tenant.catalog_id,
        snap.taken_at,
        snap.schema_version,
        restored.tenant_id
    );
    out.push_str(&format!("loaded: {}\n", describe_counts(&restored.loaded)));
    if !restored.skipped.is_empty() {
        out.push_str(&format!(
            "not restored (sign-in state of the old tenant): {}\n",
            describe_counts(&restored.skipped)
        ));
    }
    out.push_str(&format!(
        "audit trail: {} entries verified under catalog id {} and chained again under {}\n",
        restored.audit_rechained, snap.tenant.catalog_id, restored.tenant_id
    ));
    Ok(out)
}
