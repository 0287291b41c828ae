//! Deleting a `Dedicated` tenant whose database is its own RDS instance, per
//! `deletionPolicy`: `Retain` keeps the instance (its tags say whose it was) and its
//! master password Secret; `Snapshot` deletes it with a final snapshot and removes the
//! tenant only once the instance is gone and the snapshot is listed; `Delete` deletes it
//! without one. The catalog row is retired first (the data plane stops serving the tenant
//! before its database goes), removed last. Waiting is requeueing: a pass that finds the
//! instance still deleting fails with a message and the tenant stays `Deleting`.

use std::collections::BTreeMap;

use kube::ResourceExt;
use phoenix_crds::{DeletionPolicy, Region, Tenant};

use super::rds::{ADMIN_DATABASE, instance_identifier, secret_name, tenant_tags};
use crate::controller::error::{ApplyError, DerefError, Error};
use crate::controller::providers::{Database, Rds};
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
    // The Secret is written before CreateDBInstance and removed last.
    let ever_created = world
        .providers
        .secrets
        .read(namespace, &secret)
        .await
        .map_err(DerefError::from)?
        .is_some();
    let kept = instance_deleted(
        provider,
        aws_region,
        &identifier,
        &tags,
        policy,
        ever_created,
    )
    .await?;
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

/// Makes the tenant's instance `identifier` (tagged `tags`) go per `policy` (`Snapshot`:
/// with its final snapshot, `Delete`: without); once it is gone, what was kept (for the
/// note). While RDS still describes it: [`DerefError::RdsDeleting`] (the tenant stays
/// `Deleting`, retried). Gone without its final snapshot listed: `SnapshotMissing`, so
/// nothing else is deleted — unless `ever_created` is false (no master password Secret:
/// the instance was never asked for). An instance that is not the tenant's is never
/// touched.
pub async fn instance_deleted(
    provider: &dyn Rds,
    aws_region: &str,
    identifier: &str,
    tags: &BTreeMap<String, String>,
    policy: DeletionPolicy,
    ever_created: bool,
) -> Result<String, DerefError> {
    let snapshot = final_snapshot(identifier);
    if let Some(found) = provider
        .describe(aws_region, identifier)
        .await
        .map_err(DerefError::from)?
    {
        // Never delete an instance that is not the tenant's.
        let found = rds::check_owned(found, aws_region, tags).map_err(DerefError::from)?;
        if found.status != "deleting" {
            if policy == DeletionPolicy::Snapshot {
                rds::delete_with_final_snapshot(provider, aws_region, identifier, &snapshot, tags)
                    .await
                    .map_err(DerefError::from)?;
            } else {
                provider
                    .delete_without_snapshot(aws_region, identifier)
                    .await
                    .map_err(DerefError::from)?;
            }
            tracing::info!(instance = %identifier, ?policy, "RDS instance deletion started");
        }
        if provider
            .describe(aws_region, identifier)
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
            return Err(DerefError::RdsDeleting(what));
        }
    }
    let kept = if policy == DeletionPolicy::Snapshot {
        // Nothing else goes before the snapshot is listed.
        let listed = provider
            .snapshots(aws_region, identifier)
            .await
            .map_err(DerefError::from)?
            .into_iter()
            .any(|s| s.identifier == snapshot);
        if !listed && !ever_created {
            // Neither its Secret nor its instance: the tenant never had one (deleted
            // before its Region was ready, say); there is nothing to snapshot.
            return Ok(" (no instance had been created)".to_owned());
        }
        if !listed {
            return Err(RdsError::SnapshotMissing {
                identifier: identifier.to_owned(),
                snapshot,
            }
            .into());
        }
        format!(" with final snapshot {snapshot}")
    } else {
        " without a final snapshot".to_owned()
    };
    Ok(kept)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rds::{DbSnapshot, Instance, InstanceSpec, ReplicaSpec};
    use std::sync::Mutex;

    /// RDS in memory: an instance that stays `deleting` for `passes` describes after its
    /// deletion, and the snapshots deletion made.
    #[derive(Default)]
    struct Slow {
        instance: Mutex<Option<Instance>>,
        passes: Mutex<u32>,
        deletes: Mutex<Vec<Option<String>>>,
        snapshots: Mutex<Vec<String>>,
        snapshot_lost: bool,
    }

    impl Slow {
        fn with(tags: &BTreeMap<String, String>, passes: u32) -> Self {
            let s = Slow::default();
            *s.instance.lock().expect("lock") = Some(Instance {
                identifier: "phoenix-tenant-x".to_owned(),
                status: rds::AVAILABLE.to_owned(),
                tags: tags.clone(),
                ..Instance::default()
            });
            *s.passes.lock().expect("lock") = passes;
            s
        }

        fn start(&self, snapshot: Option<&str>) {
            self.deletes
                .lock()
                .expect("lock")
                .push(snapshot.map(str::to_owned));
            if let Some(i) = self.instance.lock().expect("lock").as_mut() {
                i.status = "deleting".to_owned();
            }
        }
    }

    #[async_trait::async_trait]
    impl Rds for Slow {
        async fn describe(&self, _: &str, _: &str) -> Result<Option<Instance>, RdsError> {
            let mut instance = self.instance.lock().expect("lock");
            let deleting = instance.as_ref().is_some_and(|i| i.status == "deleting");
            let mut passes = self.passes.lock().expect("lock");
            if deleting && *passes == 0 {
                *instance = None;
                let snapshot = self.deletes.lock().expect("lock").last().cloned().flatten();
                if let (Some(s), false) = (snapshot, self.snapshot_lost) {
                    self.snapshots.lock().expect("lock").push(s);
                }
            } else if deleting {
                *passes -= 1;
            }
            Ok(instance.clone())
        }
        async fn create(&self, _: &str, _: &InstanceSpec, _: &str) -> Result<Instance, RdsError> {
            Err(RdsError::ReadOnly("create"))
        }
        async fn create_read_replica(
            &self,
            _: &str,
            _: &ReplicaSpec,
        ) -> Result<Instance, RdsError> {
            Err(RdsError::ReadOnly("replica"))
        }
        async fn promote(&self, _: &str, _: &str) -> Result<Instance, RdsError> {
            Err(RdsError::ReadOnly("promote"))
        }
        async fn delete(&self, _: &str, _: &str, snapshot: &str) -> Result<(), RdsError> {
            self.start(Some(snapshot));
            Ok(())
        }
        async fn delete_without_snapshot(&self, _: &str, _: &str) -> Result<(), RdsError> {
            self.start(None);
            Ok(())
        }
        async fn snapshots(&self, _: &str, id: &str) -> Result<Vec<DbSnapshot>, RdsError> {
            Ok(self
                .snapshots
                .lock()
                .expect("lock")
                .iter()
                .map(|s| DbSnapshot {
                    identifier: s.clone(),
                    instance: id.to_owned(),
                    status: rds::AVAILABLE.to_owned(),
                })
                .collect())
        }
    }

    const ID: &str = "phoenix-tenant-x";

    #[tokio::test]
    async fn a_snapshot_deletion_waits_for_the_instance_to_go_and_its_snapshot_to_be_listed() {
        let tags = tenant_tags("eu-west-1", "st-olaf", "uid-1");
        let rds = Slow::with(&tags, 3);
        let snap = DeletionPolicy::Snapshot;
        // The first pass starts it; RDS still describes it: the tenant waits, once.
        let waiting = instance_deleted(&rds, "eu-west-1", ID, &tags, snap, true).await;
        match waiting {
            Err(DerefError::RdsDeleting(m)) => {
                assert!(m.contains("final snapshot phoenix-tenant-x-final"), "{m}");
            }
            other => panic!("expected to wait: {other:?}"),
        }
        let again = instance_deleted(&rds, "eu-west-1", ID, &tags, snap, true).await;
        assert!(
            matches!(again, Err(DerefError::RdsDeleting(_))),
            "{again:?}"
        );
        assert_eq!(
            rds.deletes.lock().expect("lock").len(),
            1,
            "a deleting instance is not deleted again"
        );
        let done = instance_deleted(&rds, "eu-west-1", ID, &tags, snap, true)
            .await
            .expect("gone, snapshot listed");
        assert!(done.contains("phoenix-tenant-x-final"), "{done}");
    }

    #[tokio::test]
    async fn an_instance_gone_without_its_snapshot_stops_the_deletion() {
        let tags = tenant_tags("eu-west-1", "st-olaf", "uid-1");
        let rds = Slow {
            snapshot_lost: true,
            ..Slow::with(&tags, 0)
        };
        let e = instance_deleted(&rds, "eu-west-1", ID, &tags, DeletionPolicy::Snapshot, true)
            .await
            .expect_err("no snapshot");
        assert!(
            matches!(&e, DerefError::Rds(RdsError::SnapshotMissing { .. })),
            "{e:?}"
        );
    }

    #[tokio::test]
    async fn a_tenant_that_never_had_an_instance_is_deleted_without_waiting_for_a_snapshot() {
        let tags = tenant_tags("eu-west-1", "st-olaf", "uid-1");
        let rds = Slow::default();
        let note = instance_deleted(
            &rds,
            "eu-west-1",
            ID,
            &tags,
            DeletionPolicy::Snapshot,
            false,
        )
        .await
        .expect("nothing to snapshot");
        assert!(note.contains("no instance had been created"), "{note}");
        assert!(rds.deletes.lock().expect("lock").is_empty());
    }

    #[tokio::test]
    async fn delete_takes_no_snapshot_and_a_foreign_instance_is_never_deleted() {
        let tags = tenant_tags("eu-west-1", "st-olaf", "uid-1");
        let rds = Slow::with(&tags, 0);
        let note = instance_deleted(&rds, "eu-west-1", ID, &tags, DeletionPolicy::Delete, true)
            .await
            .expect("deleted");
        assert!(note.contains("without a final snapshot"), "{note}");
        assert_eq!(*rds.deletes.lock().expect("lock"), vec![None]);
        assert!(rds.snapshots.lock().expect("lock").is_empty());

        let other = tenant_tags("eu-west-1", "st-olaf", "uid-2");
        let foreign = Slow::with(&other, 0);
        let e = instance_deleted(
            &foreign,
            "eu-west-1",
            ID,
            &tags,
            DeletionPolicy::Delete,
            true,
        )
        .await
        .expect_err("not the tenant's");
        assert!(
            matches!(&e, DerefError::Rds(RdsError::NotOwned { .. })),
            "{e:?}"
        );
        assert!(foreign.deletes.lock().expect("lock").is_empty());
    }

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
