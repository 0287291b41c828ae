//! Tenant snapshots (`deletionPolicy: Snapshot`): the object format ([`format`]), taking a
//! tenant's rows out ([`dump`]), loading them into another tenant ([`restore`]), and the
//! S3 store they go to ([`store`]).
//!
//! Order on deletion, so that nothing is dropped unsaved: the catalog row is retired (the
//! data plane stops serving the tenant), the rows are read at one moment, the object is
//! written and read back (`HeadObject`, same size), and only then are the rows deleted, in
//! a transaction that undoes itself if any table no longer holds the snapshot's count. A
//! `Schema` tenant's rows are read from its schema, and its schema and role are dropped in
//! that last transaction ([`delete`]).

pub mod cli;
pub mod delete;
pub mod dump;
pub mod format;
pub mod restore;
pub mod store;

pub use format::Snapshot;

use crate::controller::providers::Database;
use crate::db::{DbError, Deleted};
use store::{ObjectLocation, SnapshotStore, StoreError};

/// Where a region's snapshots go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Destination {
    /// AWS region of the bucket (the Region's `awsRegion`).
    pub aws_region: String,
    /// Bucket.
    pub bucket: String,
    /// Key prefix, if any.
    pub prefix: Option<String>,
    /// The Region's name (a level of the key).
    pub region: String,
}

/// A snapshot written and the rows deleted after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Taken {
    /// The object.
    pub at: ObjectLocation,
    /// Its size.
    pub bytes: u64,
    /// Rows saved, by table.
    pub counts: Vec<(String, u64)>,
    /// What the deletion after it did.
    pub deleted: Deleted,
}

/// Why a snapshot (and so the deletion) did not happen.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// Reading or deleting the rows failed.
    #[error(transparent)]
    Database(#[from] DbError),
    /// Writing or checking the object failed.
    #[error("cannot snapshot the tenant, so its data is kept: {0}")]
    Store(#[from] StoreError),
    /// The object is not what was written.
    #[error(
        "the snapshot {at} was written but reads back as {found}; the tenant's data is kept and the snapshot taken again"
    )]
    Unverified {
        /// The object.
        at: String,
        /// What HeadObject said.
        found: String,
    },
}

/// Snapshots the `Shared` or `Schema` tenant `uid` (named `name`) to `to`, then deletes
/// its rows (its schema and role) and catalog row. `None`: no catalog row has that UID
/// (already deleted), nothing to do.
pub async fn snapshot_then_delete(
    db: &dyn Database,
    store: &dyn SnapshotStore,
    to: &Destination,
    uid: &str,
    name: &str,
    taken_at: &str,
) -> Result<Option<Taken>, SnapshotError> {
    db.retire_tenant(uid).await?;
    let Some(snapshot) = db.snapshot_tenant(uid, taken_at).await? else {
        return Ok(None);
    };
    let at = ObjectLocation {
        aws_region: to.aws_region.clone(),
        bucket: to.bucket.clone(),
        key: format::object_key(to.prefix.as_deref(), &to.region, name, uid, taken_at),
    };
    let body = snapshot.encode();
    let bytes = body.len() as u64;
    store.put(&at, body).await?;
    match store.size(&at).await? {
        Some(n) if n == bytes => {}
        other => {
            return Err(SnapshotError::Unverified {
                at: at.to_string(),
                found: other.map_or_else(
                    || "missing".to_owned(),
                    |n| format!("{n} bytes, not {bytes}"),
                ),
            });
        }
    }
    let counts = snapshot.counts();
    let deleted = db.delete_snapshotted(uid, &counts).await?;
    Ok(Some(Taken {
        at,
        bytes,
        counts,
        deleted,
    }))
}
