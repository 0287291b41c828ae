//! Declarative failover of RDS Regions end to end (ADR 0014): a source RDS Region and two
//! Replica RDS Regions of it (one in another AWS region: a cross-region read replica made
//! from the source's ARN), their instances in moto, their servers a TLS primary and two
//! streaming standbys of the test's own reached through the operator's endpoint map.
//! Both Replicas are flipped to Primary at once: exactly one holds the lineage claim, its
//! instance is promoted with `PromoteReadReplica` (moto shows it is no longer a read
//! replica) and its server out of recovery takes a write as its data plane login; the
//! other is refused as a split brain and neither its instance nor its server is
//! promoted. The old primary is fenced, its Region Superseded, the tenants served by the
//! promoted Region.

use phoenix_e2e::failover::*;
use phoenix_e2e::guard::ScenarioGuard;
use phoenix_e2e::pg_lineage::PgLineage;
use phoenix_e2e::rds_failover::{RdsScenario, moto_promoted};
use phoenix_e2e::*;

const RESIDENCY: &str = "FOR";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flipping_rds_replicas_promotes_one_read_replica_and_fences_the_source() {
    let _serial = SERIAL.lock().await;
    install_platform();
    let lineage = PgLineage::start_tls("rds-failover", 2).await;
    let scenario = RdsScenario::new(&lineage, "rfo");
    scenario.prepare_master(&lineage).await;
    let _operator = operator(&[("PHOENIX_RDS_ENDPOINT_MAP", scenario.endpoint_map.as_str())]).await;
    let guard = ScenarioGuard::new("rds-failover");
    let (old, replicas) = (scenario.primary.clone(), scenario.replicas.clone());
    forget_claims(&replicas);
    scenario.forget_secrets();
    scenario.declare(&guard, RESIDENCY);
    regions_ready(&old, &replicas).await;

    // The replicas' instances in moto: read replicas of the source (by ARN across AWS
    // regions, by identifier within one), tagged as the operator's.
    let source_client = rds::client(&scenario.aws_regions[0]).await;
    let source = source_client
        .describe_db_instances()
        .db_instance_identifier(&scenario.identifiers[0])
        .send()
        .await
        .expect("the source instance");
    let source_arn = source.db_instances()[0]
        .db_instance_arn()
        .expect("an ARN")
        .to_owned();
    for (i, r) in replicas.iter().enumerate() {
        let (id, aws) = (&scenario.identifiers[i + 1], &scenario.aws_regions[i + 1]);
        let client = rds::client(aws).await;
        let found = client
            .describe_db_instances()
            .db_instance_identifier(id)
            .send()
            .await
            .expect("the operator created the read replica");
        let instance = &found.db_instances()[0];
        let expected_source = if aws == &scenario.aws_regions[0] {
            scenario.identifiers[0].clone()
        } else {
            source_arn.clone()
        };
        let reported = instance.read_replica_source_db_instance_identifier();
        assert!(
            reported == Some(expected_source.as_str()) || reported == Some(source_arn.as_str()),
            "{id} replicates {reported:?}, not {expected_source}"
        );
        let tags = rds::tags(&client, instance.db_instance_arn().expect("an ARN")).await;
        let tag = |k: &str| rds::tag(&tags, k);
        assert_eq!(
            tag("phoenixguardian.io/managed-by"),
            Some("phoenix-operator")
        );
        assert_eq!(tag("phoenixguardian.io/region"), Some(r.as_str()));
        assert_eq!(tag("phoenixguardian.io/purpose"), Some("region-replica"));
        assert!(!moto_promoted(id, aws).await, "{id} is a read replica");
    }

    let tenants = declare_tenants(&guard, "rfo", RESIDENCY, 2);
    let catalog_ids: Vec<i64> = tenants_ready_in(&tenants, &old)
        .await
        .into_iter()
        .map(|status| status.endpoints.expect("endpoints").catalog_id)
        .collect();
    let old_dp = OldDataPlane::write_before_failover(&old, &lineage, catalog_ids[0]).await;

    let promotion = promote_and_wait(
        "RDS failover",
        &lineage,
        &old,
        &replicas,
        &old_dp.user,
        &catalog_ids,
    )
    .await;
    let (winner, winner_i, loser_i) = (
        promotion.winner.clone(),
        promotion.winner_i,
        promotion.loser_i,
    );

    // The loser: refused with the same claim, neither its instance nor its server promoted.
    assert_loser_refused(
        &lineage,
        &promotion,
        "the refused replica's server was promoted: split brain",
    )
    .await;
    assert!(
        !moto_promoted(
            &scenario.identifiers[loser_i + 1],
            &scenario.aws_regions[loser_i + 1]
        )
        .await,
        "the refused replica's instance was promoted (PromoteReadReplica before the claim)"
    );

    // Tenants follow the promoted Region.
    tenants_served_by(&tenants, &winner).await;

    // The old primary is fenced and its Region knows it.
    old_primary_superseded(&winner, &old).await;
    old_dp.assert_refused(&lineage, catalog_ids[0]).await;

    // moto: the winner's instance was promoted (PromoteReadReplica), and the Event says so.
    assert!(
        moto_promoted(
            &scenario.identifiers[winner_i + 1],
            &scenario.aws_regions[winner_i + 1]
        )
        .await,
        "the promoted Region's instance is still a read replica in moto"
    );
    let events = kubectl_ok(
        &[
            "get",
            "events",
            "-A",
            "--field-selector",
            &format!("involvedObject.name={winner},reason=Promoted"),
            "-o",
            "json",
        ],
        None,
    );
    assert!(
        events.contains("PromoteReadReplica accepted"),
        "no Promoted Event naming PromoteReadReplica: {events}"
    );
    // The promoted Region keeps its instance: a later pass still finds it its own.
    region_where(&winner, "Ready as the promoted primary", region_ready).await;

    drop(guard);
    forget_claims(&replicas);
    scenario.forget_secrets();
}

/// A Replica RDS Region is never given an instance it does not own, nor one it cannot
/// have: the identifier held by a foreign (untagged) instance is refused
/// (`RdsInstanceNotOwned`, the instance untouched: not made a replica, not promoted), and
/// a Replica of a Region that is not on RDS is refused (`RdsReplicaRefused`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rds_replica_is_refused_a_foreign_instance_and_a_source_not_on_rds() {
    let _serial = SERIAL.lock().await;
    install_platform();
    let lineage = PgLineage::start_tls("rds-failover-refused", 1).await;
    let scenario = RdsScenario::new(&lineage, "rfx");
    let _operator = operator(&[("PHOENIX_RDS_ENDPOINT_MAP", scenario.endpoint_map.as_str())]).await;
    let guard = ScenarioGuard::new("rds-failover-refused");
    let (foreign_id, foreign_aws) = (&scenario.identifiers[1], &scenario.aws_regions[1]);
    let client = rds::client(foreign_aws).await;
    client
        .create_db_instance()
        .db_instance_identifier(foreign_id)
        .db_instance_class("db.t3.micro")
        .engine("postgres")
        .allocated_storage(20)
        .master_username("someone_else")
        .master_user_password("another-teams-password")
        .tags(
            aws_sdk_rds::types::Tag::builder()
                .key("team")
                .value("billing")
                .build(),
        )
        .send()
        .await
        .expect("a foreign instance on the replica's identifier");
    scenario.forget_secrets();
    scenario.declare(&guard, "FRX");
    // A Region on a writer connection, and an RDS Replica of it.
    guard.apply(&format!(
        "---
apiVersion: phoenixguardian.io/v1alpha1
kind: Region
metadata:
  name: rfx-w
spec:
  awsRegion: us-east-1
  dataResidency: [FRX]
  database:
    writer:
      connectionSecretRef: {{namespace: {NAMESPACE}, name: rfx-w-db, key: dsn}}
---
apiVersion: phoenixguardian.io/v1alpha1
kind: Region
metadata:
  name: rfx-r
spec:
  awsRegion: us-east-1
  role: Replica
  replicaOf: rfx-w
  dataResidency: [FRX]
  database:
    rds:
      instanceIdentifier: phoenix-rfx-r-never
      instanceClass: db.t3.micro
      masterPasswordSecretRef: {{namespace: {NAMESPACE}, name: rfx-r-master, key: password}}
      caSecretRef: {{namespace: {NAMESPACE}, name: rfx-a-ca, key: ca.crt}}
"
    ));
    let foreign = region_where(&scenario.replicas[0], "refused the foreign instance", |r| {
        region_failed(r, "Ready", "RdsInstanceNotOwned")
    })
    .await;
    let (_, _, message) = region_condition(&foreign, "Ready").expect("Ready");
    assert!(
        message.contains(foreign_id) && message.contains("never adopts"),
        "{message}"
    );
    let found = client
        .describe_db_instances()
        .db_instance_identifier(foreign_id)
        .send()
        .await
        .expect("the foreign instance");
    let instance = &found.db_instances()[0];
    assert_eq!(
        instance.read_replica_source_db_instance_identifier(),
        None,
        "the foreign instance was made a replica"
    );
    assert_eq!(instance.master_username(), Some("someone_else"));
    let not_rds = region_where("rfx-r", "refused: source not on RDS", |r| {
        region_failed(r, "Ready", "RdsReplicaRefused")
    })
    .await;
    let (_, _, message) = region_condition(&not_rds, "Ready").expect("Ready");
    assert!(
        message.contains("rfx-w") && message.contains("needs an RDS source"),
        "{message}"
    );
    let made = rds::client("us-east-1")
        .await
        .describe_db_instances()
        .db_instance_identifier("phoenix-rfx-r-never")
        .send()
        .await;
    assert!(
        made.is_err(),
        "an instance was made for the refused replica"
    );
    drop(guard);
    let _ = client
        .delete_db_instance()
        .db_instance_identifier(foreign_id)
        .skip_final_snapshot(true)
        .send()
        .await;
}

/// A crash after the promotion, before its record: the instance was promoted
/// (`PromoteReadReplica`, moto still reporting the source) and its server is out of
/// recovery, but the Region is still recorded as a Replica. The flip takes it over — the
/// claim, a second `PromoteReadReplica` moto accepts, `pg_promote` that does nothing — and
/// fences the old primary, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_promoted_before_its_record_is_taken_over_by_the_flip() {
    let _serial = SERIAL.lock().await;
    install_platform();
    let lineage = PgLineage::start_tls("rds-failover-crash", 1).await;
    let scenario = RdsScenario::new(&lineage, "rfc");
    scenario.prepare_master(&lineage).await;
    let _operator = operator(&[("PHOENIX_RDS_ENDPOINT_MAP", scenario.endpoint_map.as_str())]).await;
    let guard = ScenarioGuard::new("rds-failover-crash");
    let (old, replicas) = (scenario.primary.clone(), scenario.replicas.clone());
    forget_claims(&replicas);
    scenario.forget_secrets();
    scenario.declare(&guard, "FRC");
    region_where(&old, "Ready", region_ready).await;
    region_where(&replicas[0], "Ready as a replica", |r| {
        ready_replica_of(r, &old)
    })
    .await;
    // What the crashed pass did: the API call, and RDS's promotion of the server.
    let (id, aws) = (&scenario.identifiers[1], &scenario.aws_regions[1]);
    rds::client(aws)
        .await
        .promote_read_replica()
        .db_instance_identifier(id)
        .send()
        .await
        .expect("PromoteReadReplica");
    let standby = lineage.standbys[0].admin().await;
    standby
        .batch_execute("SELECT pg_promote(true, 60)")
        .await
        .expect("promote the server");
    // Still recorded as a Replica, whose server is no longer a standby.
    region_where(&replicas[0], "not a standby any more", |r| {
        region_failed(r, "Ready", "ReplicaNotInRecovery")
    })
    .await;

    flip(&replicas);
    let promoted = region_where(&replicas[0], "promoted and Ready", |r| {
        region_ready(r)
            && r.status
                .as_ref()
                .and_then(|s| s.failover.as_ref())
                .is_some_and(|f| f.promoted_from.as_deref() == Some(old.as_str()))
    })
    .await;
    let record = promoted
        .status
        .and_then(|s| s.failover)
        .expect("failover record");
    assert_eq!(record.replica_of, None);
    assert!(record.lineage_claim.is_some());
    region_where(&replicas[0], "old primary fenced", |r| {
        region_condition(r, "OldPrimaryFenced")
            .is_some_and(|(s, reason, _)| s == "True" && reason == "Fenced")
    })
    .await;
    region_where(&old, "Superseded", |r| {
        region_failed(r, "Ready", "Superseded")
    })
    .await;
    assert!(moto_promoted(id, aws).await);
    let (user, password) = dataplane_login(&replicas[0]).await;
    let session = login(&lineage.standbys[0], &user, &password)
        .await
        .expect("the promoted Region's data plane logs in");
    session
        .batch_execute("SELECT 1")
        .await
        .expect("a session on the promoted server");
    drop(guard);
    forget_claims(&replicas);
    scenario.forget_secrets();
}
