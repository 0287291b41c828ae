//! RDS for PostgreSQL instances the operator creates: what it asks RDS for, how it
//! recognises its own instances (tags), and the idempotent steps over the
//! [`Rds`](crate::controller::providers::Rds) provider (describe, create, read replica,
//! promotion, deletion with a final snapshot). An instance whose identifier the operator
//! wants but whose tags do not say it is the operator's is never adopted, changed or
//! deleted. Waiting is the caller's: nothing here sleeps.

pub mod aws;
pub mod endpoint_map;

use std::collections::BTreeMap;

use crate::controller::providers::Rds;

/// Tag naming the operator as the instance's manager.
pub const MANAGED_BY_TAG: &str = "phoenixguardian.io/managed-by";
/// Value of [`MANAGED_BY_TAG`].
pub const MANAGED_BY: &str = "phoenix-operator";
/// Tag naming the Region (object name) the instance belongs to.
pub const REGION_TAG: &str = "phoenixguardian.io/region";
/// Tag saying what the instance is for (`region-writer`, `region-replica`, ...).
pub const PURPOSE_TAG: &str = "phoenixguardian.io/purpose";

/// The status RDS reports for an instance that accepts connections.
pub const AVAILABLE: &str = "available";

/// The tags that mark an instance as the writer of Region `region`.
pub fn region_tags(region: &str, purpose: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (MANAGED_BY_TAG.to_owned(), MANAGED_BY.to_owned()),
        (REGION_TAG.to_owned(), region.to_owned()),
        (PURPOSE_TAG.to_owned(), purpose.to_owned()),
    ])
}

/// Whether an instance carrying `found` is the one `expected` describes: every expected
/// tag present with its value (other tags, e.g. a cost centre added by hand, are fine).
pub fn owned(found: &BTreeMap<String, String>, expected: &BTreeMap<String, String>) -> bool {
    expected.iter().all(|(k, v)| found.get(k) == Some(v))
}

/// What the operator asks RDS for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceSpec {
    /// DB instance identifier.
    pub identifier: String,
    /// e.g. `db.r6g.large`.
    pub instance_class: String,
    /// e.g. `15`.
    pub engine_version: String,
    /// GiB.
    pub allocated_storage_gib: i32,
    /// Across availability zones.
    pub multi_az: bool,
    /// The master user.
    pub master_username: String,
    /// Ownership tags ([`region_tags`]).
    pub tags: BTreeMap<String, String>,
}

/// A read replica the operator asks RDS for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaSpec {
    /// The replica's identifier.
    pub identifier: String,
    /// The source: its identifier in the same AWS region, its ARN across regions.
    pub source: String,
    /// e.g. `db.r6g.large`.
    pub instance_class: String,
    /// Ownership tags.
    pub tags: BTreeMap<String, String>,
}

/// An instance as RDS describes it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Instance {
    /// DB instance identifier.
    pub identifier: String,
    /// Its ARN.
    pub arn: Option<String>,
    /// `creating`, `available`, `deleting`, ...
    pub status: String,
    /// Where it accepts connections (host, port), once RDS says.
    pub endpoint: Option<(String, u16)>,
    /// Its tags.
    pub tags: BTreeMap<String, String>,
    /// The instance it replicates, if it is a read replica.
    pub replica_source: Option<String>,
    /// The master user.
    pub master_username: Option<String>,
}

impl Instance {
    /// Whether it accepts connections.
    pub fn available(&self) -> bool {
        self.status == AVAILABLE
    }
}

/// A DB snapshot as RDS lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DbSnapshot {
    /// Its identifier.
    pub identifier: String,
    /// The instance it was taken of.
    pub instance: String,
    /// `creating`, `available`, ...
    pub status: String,
}

/// Why an RDS step failed. Messages never carry the master password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RdsError {
    /// An instance with the identifier exists but is not tagged as the operator's.
    #[error(
        "RDS instance {identifier} in {aws_region} exists but is not the operator's (its tags {found:?} lack {expected:?}); the operator never adopts an instance it did not create: choose another spec.database.rds.instanceIdentifier (a Dedicated tenant's phoenix-tenant-<hex> follows from its UID: remove or rename that instance), or tag that instance if it really is the operator's"
    )]
    NotOwned {
        /// The identifier.
        identifier: String,
        /// The AWS region.
        aws_region: String,
        /// The tags it has.
        found: BTreeMap<String, String>,
        /// The tags it lacks or has with other values.
        expected: BTreeMap<String, String>,
    },
    /// The instance does not exist.
    #[error("RDS instance {identifier} does not exist in {aws_region}")]
    NotFound {
        /// The identifier.
        identifier: String,
        /// The AWS region.
        aws_region: String,
    },
    /// RDS answered `DBInstanceAlreadyExists` (handled by [`ensure_instance`]).
    #[error("RDS instance {0} already exists")]
    AlreadyExists(String),
    /// The instance was deleted but its final snapshot is not listed.
    #[error(
        "RDS instance {identifier} is gone but its final snapshot {snapshot} is not listed; look for it in the RDS console before anything else"
    )]
    SnapshotMissing {
        /// The identifier.
        identifier: String,
        /// The snapshot expected.
        snapshot: String,
    },
    /// Any other failed request.
    #[error("RDS {operation} of {identifier} failed: {reason}")]
    Request {
        /// `CreateDBInstance`, ...
        operation: &'static str,
        /// The instance (or snapshot).
        identifier: String,
        /// What RDS (or the network) said.
        reason: String,
    },
    /// The spec asks for an instance RDS cannot make (a read replica of a Region that is
    /// not on RDS, say); the message says what to change.
    #[error("{0}")]
    Refused(String),
    /// A write was asked of a read-only provider (`plan`).
    #[error("{0} refused: this provider is read-only")]
    ReadOnly(&'static str),
    /// The operator's endpoint map setting does not parse.
    #[error(transparent)]
    InvalidEndpointMap(#[from] endpoint_map::InvalidMap),
}

/// What [`ensure_instance`] found or did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ensured {
    /// Created in this call.
    Created(Instance),
    /// It existed (created in an earlier pass, or by a concurrent one), and is ours.
    Existing(Instance),
}

impl Ensured {
    /// The instance.
    pub fn instance(&self) -> &Instance {
        match self {
            Ensured::Created(i) | Ensured::Existing(i) => i,
        }
    }
}

/// `instance` if its tags are `expected`'s, else [`RdsError::NotOwned`] naming what it
/// lacks.
pub fn check_owned(
    instance: Instance,
    aws_region: &str,
    expected: &BTreeMap<String, String>,
) -> Result<Instance, RdsError> {
    if owned(&instance.tags, expected) {
        return Ok(instance);
    }
    let missing = expected
        .iter()
        .filter(|(k, v)| instance.tags.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Err(RdsError::NotOwned {
        identifier: instance.identifier,
        aws_region: aws_region.to_owned(),
        found: instance.tags,
        expected: missing,
    })
}

/// Makes the instance `spec` describes exist: the operator's existing one as it is, else
/// a new one with `master_password`. A `DBInstanceAlreadyExists` (a create that raced
/// another, or a describe that lagged) is answered by describing it and checking its
/// tags; an instance that is not the operator's is refused, never adopted.
pub async fn ensure_instance(
    rds: &dyn Rds,
    aws_region: &str,
    spec: &InstanceSpec,
    master_password: &str,
) -> Result<Ensured, RdsError> {
    if let Some(found) = rds.describe(aws_region, &spec.identifier).await? {
        return check_owned(found, aws_region, &spec.tags).map(Ensured::Existing);
    }
    match rds.create(aws_region, spec, master_password).await {
        Ok(created) => Ok(Ensured::Created(created)),
        Err(RdsError::AlreadyExists(_)) => {
            let found =
                rds.describe(aws_region, &spec.identifier)
                    .await?
                    .ok_or(RdsError::NotFound {
                        identifier: spec.identifier.clone(),
                        aws_region: aws_region.to_owned(),
                    })?;
            check_owned(found, aws_region, &spec.tags).map(Ensured::Existing)
        }
        Err(e) => Err(e),
    }
}

/// Makes the read replica `spec` describes exist in `aws_region` (idempotent like
/// [`ensure_instance`]).
pub async fn ensure_read_replica(
    rds: &dyn Rds,
    aws_region: &str,
    spec: &ReplicaSpec,
) -> Result<Ensured, RdsError> {
    if let Some(found) = rds.describe(aws_region, &spec.identifier).await? {
        return check_owned(found, aws_region, &spec.tags).map(Ensured::Existing);
    }
    match rds.create_read_replica(aws_region, spec).await {
        Ok(created) => Ok(Ensured::Created(created)),
        Err(RdsError::AlreadyExists(_)) => {
            let found =
                rds.describe(aws_region, &spec.identifier)
                    .await?
                    .ok_or(RdsError::NotFound {
                        identifier: spec.identifier.clone(),
                        aws_region: aws_region.to_owned(),
                    })?;
            check_owned(found, aws_region, &spec.tags).map(Ensured::Existing)
        }
        Err(e) => Err(e),
    }
}

/// Promotes the operator's read replica `identifier` to a standalone instance. Only an
/// instance tagged `expected` is touched.
pub async fn promote_read_replica(
    rds: &dyn Rds,
    aws_region: &str,
    identifier: &str,
    expected: &BTreeMap<String, String>,
) -> Result<Instance, RdsError> {
    let found = rds
        .describe(aws_region, identifier)
        .await?
        .ok_or_else(|| RdsError::NotFound {
            identifier: identifier.to_owned(),
            aws_region: aws_region.to_owned(),
        })?;
    check_owned(found, aws_region, expected)?;
    rds.promote(aws_region, identifier).await
}

/// The identifier of the final snapshot of `identifier` taken at `now` (at most 255
/// characters, letters, digits and hyphens, as RDS wants).
pub fn final_snapshot_identifier(identifier: &str, now: jiff::Timestamp) -> String {
    format!("{identifier}-final-{}", now.strftime("%Y%m%d%H%M%S"))
}

/// What [`delete_with_final_snapshot`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Deleted {
    /// Deletion started now, with the final snapshot named.
    Deleting {
        /// The final snapshot.
        snapshot: String,
    },
    /// The instance was already gone and a final snapshot of it is listed.
    Gone {
        /// The final snapshot found.
        snapshot: String,
    },
}

/// Deletes the operator's instance `identifier` (tagged `expected`) with a final snapshot
/// `snapshot`. Idempotent: when the instance is already gone, the snapshot must be listed
/// (nothing is reported deleted without its snapshot).
pub async fn delete_with_final_snapshot(
    rds: &dyn Rds,
    aws_region: &str,
    identifier: &str,
    snapshot: &str,
    expected: &BTreeMap<String, String>,
) -> Result<Deleted, RdsError> {
    let listed = |snaps: Vec<DbSnapshot>| snaps.into_iter().any(|s| s.identifier == snapshot);
    match rds.describe(aws_region, identifier).await? {
        Some(found) => {
            check_owned(found, aws_region, expected)?;
            rds.delete(aws_region, identifier, snapshot).await?;
            Ok(Deleted::Deleting {
                snapshot: snapshot.to_owned(),
            })
        }
        None if listed(rds.snapshots(aws_region, identifier).await?) => Ok(Deleted::Gone {
            snapshot: snapshot.to_owned(),
        }),
        None => Err(RdsError::SnapshotMissing {
            identifier: identifier.to_owned(),
            snapshot: snapshot.to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ownership_needs_every_expected_tag_with_its_value() {
        let expected = region_tags("eu-west-1", "region-writer");
        let mut found = expected.clone();
        found.insert("cost-centre".to_owned(), "42".to_owned());
        assert!(owned(&found, &expected), "extra tags are fine");
        found.insert(REGION_TAG.to_owned(), "us-east-1".to_owned());
        assert!(!owned(&found, &expected), "another region's instance");
        assert!(!owned(&BTreeMap::new(), &expected), "an untagged instance");
    }

    #[test]
    fn final_snapshot_identifiers_are_valid_rds_names() {
        let at: jiff::Timestamp = "2026-11-24T09:30:05Z".parse().expect("time");
        let id = final_snapshot_identifier("phoenix-eu", at);
        assert_eq!(id, "phoenix-eu-final-20261124093005");
        assert!(id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
    }
}
