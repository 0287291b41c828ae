//! The RDS provider against the stack's moto (`e2e/stack up && source .stack/env`): the
//! API conversation of RDS regions — identifiers, ownership tags, idempotent creation,
//! refusal of an instance the operator does not own, deletion with a final snapshot, read
//! replicas and their promotion. moto's endpoints cannot be connected (TESTBED.md); the
//! database work over them is in the e2e suite (`e2e/tests/rds_region.rs`).

mod support;

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use phoenix_operator::controller::providers::Rds;
use phoenix_operator::rds::aws::AwsRds;
use phoenix_operator::rds::{
    self, DbSnapshot, Deleted, Ensured, Instance, InstanceSpec, RdsError, ReplicaSpec,
};

const AWS_REGION: &str = "eu-west-1";
const PASSWORD: &str = "moto-master-password-0123456789";

async fn provider() -> AwsRds {
    support::stack_dsn("AWS_ENDPOINT_URL");
    AwsRds::from_env().await
}

fn identifier(prefix: &str) -> String {
    format!("{prefix}-{}", support::rand_suffix())
}

fn spec(id: &str, region: &str) -> InstanceSpec {
    InstanceSpec {
        identifier: id.to_owned(),
        instance_class: "db.t3.micro".to_owned(),
        engine_version: "15".to_owned(),
        allocated_storage_gib: 20,
        multi_az: false,
        master_username: "phoenix_admin".to_owned(),
        tags: rds::region_tags(region, "region-writer"),
    }
}

/// An instance created by someone else: same identifier, no operator tags.
async fn foreign_instance(rds: &AwsRds, id: &str) {
    rds.client(AWS_REGION)
        .create_db_instance()
        .db_instance_identifier(id)
        .db_instance_class("db.t3.micro")
        .engine("postgres")
        .allocated_storage(20)
        .master_username("someone")
        .master_user_password("someone-elses-password")
        .tags(
            aws_sdk_rds::types::Tag::builder()
                .key("team")
                .value("billing")
                .build(),
        )
        .send()
        .await
        .expect("a foreign instance");
}

#[tokio::test]
async fn an_instance_is_created_with_the_identifier_and_ownership_tags() {
    let rds = provider().await;
    let id = identifier("rds-create");
    let ensured = rds::ensure_instance(&rds, AWS_REGION, &spec(&id, "eu-west-1"), PASSWORD)
        .await
        .expect("created");
    assert!(matches!(ensured, Ensured::Created(_)), "{ensured:?}");
    let found = rds
        .describe(AWS_REGION, &id)
        .await
        .expect("describe")
        .expect("the instance exists");
    assert_eq!(found.identifier, id);
    assert_eq!(
        found.tags.get(rds::MANAGED_BY_TAG).map(String::as_str),
        Some("phoenix-operator")
    );
    assert_eq!(
        found.tags.get(rds::REGION_TAG).map(String::as_str),
        Some("eu-west-1")
    );
    assert_eq!(
        found.tags.get(rds::PURPOSE_TAG).map(String::as_str),
        Some("region-writer")
    );
    assert_eq!(found.master_username.as_deref(), Some("phoenix_admin"));
    assert!(
        found.available(),
        "moto: available at once ({})",
        found.status
    );
    let (host, port) = found.endpoint.clone().expect("an endpoint");
    assert!(host.starts_with(&id), "{host}");
    assert_eq!(port, 5432);
    assert!(
        rds.describe(AWS_REGION, &identifier("rds-none"))
            .await
            .expect("describe")
            .is_none(),
        "an unknown identifier is None, not an error"
    );
}

#[tokio::test]
async fn a_second_ensure_finds_the_same_instance_and_creates_nothing() {
    let rds = provider().await;
    let id = identifier("rds-twice");
    let first = rds::ensure_instance(&rds, AWS_REGION, &spec(&id, "eu-west-1"), PASSWORD)
        .await
        .expect("created");
    let second = rds::ensure_instance(&rds, AWS_REGION, &spec(&id, "eu-west-1"), PASSWORD)
        .await
        .expect("found");
    assert!(matches!(first, Ensured::Created(_)), "{first:?}");
    assert!(matches!(second, Ensured::Existing(_)), "{second:?}");
    assert_eq!(second.instance().identifier, id);
    // RDS itself refuses the duplicate; the provider says so in its own terms.
    let again = rds
        .create(AWS_REGION, &spec(&id, "eu-west-1"), PASSWORD)
        .await;
    assert_eq!(again, Err(RdsError::AlreadyExists(id.clone())));
    let listed = rds
        .client(AWS_REGION)
        .describe_db_instances()
        .send()
        .await
        .expect("list");
    let copies = listed
        .db_instances()
        .iter()
        .filter(|d| d.db_instance_identifier() == Some(id.as_str()))
        .count();
    assert_eq!(copies, 1);
}

/// The real provider, except that the first describe answers "none" (a describe that
/// lagged behind another operator's create): the create then meets
/// `DBInstanceAlreadyExists`.
struct LaggingDescribe<'a> {
    inner: &'a AwsRds,
    lagged: Mutex<bool>,
}

#[async_trait]
impl Rds for LaggingDescribe<'_> {
    async fn describe(&self, r: &str, id: &str) -> Result<Option<Instance>, RdsError> {
        let first = !std::mem::replace(&mut *self.lagged.lock().expect("lock"), true);
        if first {
            return Ok(None);
        }
        self.inner.describe(r, id).await
    }
    async fn create(&self, r: &str, s: &InstanceSpec, p: &str) -> Result<Instance, RdsError> {
        self.inner.create(r, s, p).await
    }
    async fn create_read_replica(&self, r: &str, s: &ReplicaSpec) -> Result<Instance, RdsError> {
        self.inner.create_read_replica(r, s).await
    }
    async fn promote(&self, r: &str, id: &str) -> Result<Instance, RdsError> {
        self.inner.promote(r, id).await
    }
    async fn delete(&self, r: &str, id: &str, s: &str) -> Result<(), RdsError> {
        self.inner.delete(r, id, s).await
    }
    async fn snapshots(&self, r: &str, id: &str) -> Result<Vec<DbSnapshot>, RdsError> {
        self.inner.snapshots(r, id).await
    }
}

#[tokio::test]
async fn an_instance_of_the_same_identifier_not_owned_is_refused_and_left_alone() {
    let rds = provider().await;
    let id = identifier("rds-foreign");
    foreign_instance(&rds, &id).await;
    let refused = rds::ensure_instance(&rds, AWS_REGION, &spec(&id, "eu-west-1"), PASSWORD)
        .await
        .expect_err("never adopted");
    assert!(
        matches!(&refused, RdsError::NotOwned { identifier, .. } if *identifier == id),
        "{refused:?}"
    );
    let message = refused.to_string();
    assert!(message.contains("not the operator's"), "{message}");
    assert!(!message.contains(PASSWORD), "{message}");
    // Through the DBInstanceAlreadyExists path too.
    let lagging = LaggingDescribe {
        inner: &rds,
        lagged: Mutex::new(false),
    };
    let raced = rds::ensure_instance(&lagging, AWS_REGION, &spec(&id, "eu-west-1"), PASSWORD)
        .await
        .expect_err("never adopted after a duplicate either");
    assert!(matches!(raced, RdsError::NotOwned { .. }), "{raced:?}");
    // Another Region's instance is not this Region's.
    let other = identifier("rds-other-region");
    rds::ensure_instance(&rds, AWS_REGION, &spec(&other, "us-east-1"), PASSWORD)
        .await
        .expect("us-east-1's instance");
    let refused = rds::ensure_instance(&rds, AWS_REGION, &spec(&other, "eu-west-1"), PASSWORD)
        .await
        .expect_err("eu-west-1 does not take us-east-1's instance");
    assert!(matches!(refused, RdsError::NotOwned { .. }), "{refused:?}");
    // Deleting or promoting it is refused, and it is still there with its own tags.
    let tags = rds::region_tags("eu-west-1", "region-writer");
    let delete = rds::delete_with_final_snapshot(&rds, AWS_REGION, &id, "x-final", &tags).await;
    assert!(
        matches!(delete, Err(RdsError::NotOwned { .. })),
        "{delete:?}"
    );
    let promote = rds::promote_read_replica(&rds, AWS_REGION, &id, &tags).await;
    assert!(
        matches!(promote, Err(RdsError::NotOwned { .. })),
        "{promote:?}"
    );
    let still = rds
        .describe(AWS_REGION, &id)
        .await
        .expect("describe")
        .expect("still there");
    assert_eq!(
        still.tags,
        BTreeMap::from([("team".to_owned(), "billing".to_owned())])
    );
}

#[tokio::test]
async fn deletion_takes_a_final_snapshot_and_the_instance_goes() {
    let rds = provider().await;
    let id = identifier("rds-delete");
    let spec = spec(&id, "eu-west-1");
    rds::ensure_instance(&rds, AWS_REGION, &spec, PASSWORD)
        .await
        .expect("created");
    let at: jiff::Timestamp = "2026-11-24T10:00:00Z".parse().expect("time");
    let snapshot = rds::final_snapshot_identifier(&id, at);
    let deleted = rds::delete_with_final_snapshot(&rds, AWS_REGION, &id, &snapshot, &spec.tags)
        .await
        .expect("deleted");
    assert_eq!(
        deleted,
        Deleted::Deleting {
            snapshot: snapshot.clone()
        }
    );
    let snapshots = rds.snapshots(AWS_REGION, &id).await.expect("snapshots");
    assert!(
        snapshots
            .iter()
            .any(|s| s.identifier == snapshot && s.instance == id),
        "{snapshots:?}"
    );
    assert_eq!(
        rds.describe(AWS_REGION, &id).await.expect("describe"),
        None,
        "the instance is gone"
    );
    // Idempotent: gone, with its snapshot listed.
    let again = rds::delete_with_final_snapshot(&rds, AWS_REGION, &id, &snapshot, &spec.tags)
        .await
        .expect("already gone");
    assert_eq!(again, Deleted::Gone { snapshot });
    // Gone without the snapshot asked for is an error, never success.
    let missing =
        rds::delete_with_final_snapshot(&rds, AWS_REGION, &id, "rds-delete-other", &spec.tags)
            .await
            .expect_err("no such snapshot");
    assert!(
        matches!(missing, RdsError::SnapshotMissing { .. }),
        "{missing:?}"
    );
}

#[tokio::test]
async fn a_read_replica_is_created_once_and_promoted() {
    let rds = provider().await;
    let source = identifier("rds-source");
    rds::ensure_instance(&rds, AWS_REGION, &spec(&source, "eu-west-1"), PASSWORD)
        .await
        .expect("source");
    let replica = ReplicaSpec {
        identifier: identifier("rds-replica"),
        source: source.clone(),
        instance_class: "db.t3.micro".to_owned(),
        tags: rds::region_tags("eu-central-1", "region-replica"),
    };
    let created = rds::ensure_read_replica(&rds, AWS_REGION, &replica)
        .await
        .expect("replica");
    assert!(matches!(created, Ensured::Created(_)), "{created:?}");
    let found = rds
        .describe(AWS_REGION, &replica.identifier)
        .await
        .expect("describe")
        .expect("the replica exists");
    assert_eq!(found.replica_source.as_deref(), Some(source.as_str()));
    assert_eq!(
        found.tags.get(rds::REGION_TAG).map(String::as_str),
        Some("eu-central-1")
    );
    let again = rds::ensure_read_replica(&rds, AWS_REGION, &replica)
        .await
        .expect("found");
    assert!(matches!(again, Ensured::Existing(_)), "{again:?}");
    // Promotion is refused with the wrong owner, done with the right one.
    let wrong = rds::promote_read_replica(
        &rds,
        AWS_REGION,
        &replica.identifier,
        &rds::region_tags("eu-west-1", "region-replica"),
    )
    .await;
    assert!(matches!(wrong, Err(RdsError::NotOwned { .. })), "{wrong:?}");
    let promoted = rds::promote_read_replica(&rds, AWS_REGION, &replica.identifier, &replica.tags)
        .await
        .expect("promoted");
    assert_eq!(promoted.identifier, replica.identifier);
    let missing = rds::promote_read_replica(
        &rds,
        AWS_REGION,
        &identifier("rds-no-replica"),
        &replica.tags,
    )
    .await;
    assert!(
        matches!(missing, Err(RdsError::NotFound { .. })),
        "{missing:?}"
    );
}

#[tokio::test]
async fn a_cross_region_read_replica_is_created_from_the_source_arn() {
    let rds = provider().await;
    let source = identifier("rds-xsource");
    let created = rds::ensure_instance(&rds, AWS_REGION, &spec(&source, "eu-west-1"), PASSWORD)
        .await
        .expect("source");
    let arn = created.instance().arn.clone().expect("the source's ARN");
    assert!(arn.contains(AWS_REGION) && arn.ends_with(&source), "{arn}");
    let replica = ReplicaSpec {
        identifier: identifier("rds-xreplica"),
        source: arn,
        instance_class: "db.t3.micro".to_owned(),
        tags: rds::region_tags("eu-central-1", "region-replica"),
    };
    rds::ensure_read_replica(&rds, "eu-central-1", &replica)
        .await
        .expect("replica in eu-central-1");
    let found = rds
        .describe("eu-central-1", &replica.identifier)
        .await
        .expect("describe")
        .expect("the replica is in eu-central-1");
    assert!(found.replica_source.is_some(), "{found:?}");
    assert!(
        rds.describe(AWS_REGION, &replica.identifier)
            .await
            .expect("describe")
            .is_none(),
        "not in the source's region"
    );
    rds::promote_read_replica(&rds, "eu-central-1", &replica.identifier, &replica.tags)
        .await
        .expect("promoted in its own region");
}
