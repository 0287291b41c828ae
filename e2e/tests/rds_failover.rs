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

async fn in_recovery(client: &tokio_postgres::Client) -> bool {
    client
        .query_one("SELECT pg_is_in_recovery()", &[])
        .await
        .expect("pg_is_in_recovery")
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flipping_rds_replicas_promotes_one_read_replica_and_fences_the_source() {
    let _serial = SERIAL.lock().await;
    install_platform();
    let lineage = PgLineage::start_tls("rds-failover", 2).await;
    let scenario = RdsScenario::new(&lineage, "rfo");
    scenario.prepare_master(&lineage).await;
    let _operator = Process::operator_with(
        "e2e-operator",
        5,
        &[
            ("PHOENIX_RDS_ENDPOINT_MAP", scenario.endpoint_map.as_str()),
            ("REGION_RESYNC_SECONDS", "2"),
        ],
    )
    .await;
    let guard = ScenarioGuard::new("rds-failover");
    let (old, replicas) = (scenario.primary.clone(), scenario.replicas.clone());
    forget_claims(&replicas);
    scenario.forget_secrets();
    scenario.declare(&guard, RESIDENCY);
    region_where(&old, "Ready", region_ready).await;
    for r in &replicas {
        region_where(r, "Ready as a replica of the source", |reg| {
            region_ready(reg)
                && reg
                    .status
                    .as_ref()
                    .and_then(|s| s.failover.as_ref())
                    .is_some_and(|f| f.replica_of.as_deref() == Some(old.as_str()))
        })
        .await;
    }

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
        let tags = client
            .list_tags_for_resource()
            .resource_name(instance.db_instance_arn().expect("an ARN"))
            .send()
            .await
            .expect("tags");
        let tag = |k: &str| {
            tags.tag_list()
                .iter()
                .find(|t| t.key() == Some(k))
                .and_then(|t| t.value())
                .map(str::to_owned)
        };
        assert_eq!(
            tag("phoenixguardian.io/managed-by").as_deref(),
            Some("phoenix-operator")
        );
        assert_eq!(
            tag("phoenixguardian.io/region").as_deref(),
            Some(r.as_str())
        );
        assert_eq!(
            tag("phoenixguardian.io/purpose").as_deref(),
            Some("region-replica")
        );
        assert!(!moto_promoted(id, aws).await, "{id} is a read replica");
    }

    let tenants = declare_tenants(&guard, "rfo", RESIDENCY, 2);
    let mut catalog_ids = Vec::new();
    for t in &tenants {
        let t = tenant_where(t, "Ready in the source region", |t| {
            condition(t, "Ready").is_some_and(|(s, _, _)| s == "True")
        })
        .await;
        let status = t.status.expect("status");
        assert_eq!(status.placement.expect("placement").region, old);
        catalog_ids.push(status.endpoints.expect("endpoints").catalog_id);
    }
    let (old_user, old_password) = dataplane_login(&old).await;
    let old_session = login(&lineage.primary, &old_user, &old_password)
        .await
        .expect("the old data plane logs in");
    write_patient(&old_session, catalog_ids[0], "before-failover")
        .await
        .expect("a write before the failover");
    lineage.caught_up().await;

    let start = flip(&replicas);

    let winner = eventually("one replica promoted", WITHIN, || async {
        for r in &replicas {
            let reg = region_where(r, "exists", |_| true).await;
            let f = reg.status.and_then(|s| s.failover).unwrap_or_default();
            if f.promoted_from.as_deref() == Some(old.as_str()) {
                return Some(r.clone());
            }
        }
        None
    })
    .await;
    let winner_i = usize::from(winner != replicas[0]);
    let (loser_i, loser) = (1 - winner_i, replicas[1 - winner_i].clone());
    let elapsed = first_write(&winner, &lineage.standbys[winner_i], catalog_ids[1], start).await;
    println!("RDS failover: spec change to first accepted write {elapsed:?}");
    assert!(!in_recovery(&lineage.standbys[winner_i].admin().await).await);
    let (user, password) = dataplane_login(&winner).await;
    assert_ne!(user, old_user, "the promoted region has its own login");
    let promoted = login(&lineage.standbys[winner_i], &user, &password)
        .await
        .expect("login on the promoted server");
    promoted
        .batch_execute(&format!(
            "SELECT set_config('app.tenant_id', '{}', false)",
            catalog_ids[0]
        ))
        .await
        .expect("set tenant");
    let before: i64 = promoted
        .query_one(
            "SELECT count(*) FROM clinical.patients WHERE family_name = 'before-failover'",
            &[],
        )
        .await
        .expect("read the replicated write")
        .get(0);
    assert_eq!(before, 1);

    // The loser: refused with the same claim, neither its instance nor its server promoted.
    let refused = region_where(&loser, "refused as a split brain", |r| {
        region_condition(r, "Ready")
            .is_some_and(|(s, reason, _)| s == "False" && reason == "SplitBrainRefused")
    })
    .await;
    let (_, _, message) = region_condition(&refused, "Ready").expect("Ready");
    assert!(
        message.contains(&format!("region {winner} was already promoted")),
        "{message}"
    );
    assert!(
        in_recovery(&lineage.standbys[loser_i].admin().await).await,
        "the refused replica's server was promoted: split brain"
    );
    assert!(
        !moto_promoted(
            &scenario.identifiers[loser_i + 1],
            &scenario.aws_regions[loser_i + 1]
        )
        .await,
        "the refused replica's instance was promoted (PromoteReadReplica before the claim)"
    );

    // Tenants follow the promoted Region.
    for t in &tenants {
        let t = tenant_where(t, "served by the promoted region", |t| {
            t.status.as_ref().and_then(|s| s.serving_region.as_deref()) == Some(winner.as_str())
        })
        .await;
        let (status, reason, _) = condition(&t, "DatabaseReady").expect("DatabaseReady");
        assert_eq!((status.as_str(), reason.as_str()), ("True", "FailedOver"));
    }

    // The old primary is fenced and its Region knows it.
    region_where(&winner, "old primary fenced", |r| {
        region_condition(r, "OldPrimaryFenced")
            .is_some_and(|(s, reason, _)| s == "True" && reason == "Fenced")
    })
    .await;
    let superseded = region_where(&old, "Superseded", |r| {
        region_condition(r, "Ready")
            .is_some_and(|(s, reason, _)| s == "False" && reason == "Superseded")
    })
    .await;
    let (_, _, message) = region_condition(&superseded, "Ready").expect("Ready");
    assert!(
        message.contains(&format!("region {winner} was promoted")),
        "{message}"
    );
    let error = write_patient(&old_session, catalog_ids[0], "split-brain")
        .await
        .expect_err("the old data plane's open session wrote on the old primary");
    assert!(
        error.contains("terminating connection")
            || error.contains("closed")
            || error.contains("read-only"),
        "{error}"
    );
    let error = login(&lineage.primary, &old_user, &old_password)
        .await
        .map(|_| ())
        .expect_err("the old data plane logged in again");
    assert!(error.contains("not permitted to log in"), "{error}");

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
    let _operator = Process::operator_with(
        "e2e-operator",
        5,
        &[
            ("PHOENIX_RDS_ENDPOINT_MAP", scenario.endpoint_map.as_str()),
            ("REGION_RESYNC_SECONDS", "2"),
        ],
    )
    .await;
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
    let failed_with = |reason: &'static str| {
        move |r: &phoenix_crds::Region| {
            region_condition(r, "Ready").is_some_and(|(s, why, _)| s == "False" && why == reason)
        }
    };
    let foreign = region_where(
        &scenario.replicas[0],
        "refused the foreign instance",
        failed_with("RdsInstanceNotOwned"),
    )
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
        failed_with("RdsReplicaRefused")(r)
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
    let _operator = Process::operator_with(
        "e2e-operator",
        5,
        &[
            ("PHOENIX_RDS_ENDPOINT_MAP", scenario.endpoint_map.as_str()),
            ("REGION_RESYNC_SECONDS", "2"),
        ],
    )
    .await;
    let guard = ScenarioGuard::new("rds-failover-crash");
    let (old, replicas) = (scenario.primary.clone(), scenario.replicas.clone());
    forget_claims(&replicas);
    scenario.forget_secrets();
    scenario.declare(&guard, "FRC");
    region_where(&old, "Ready", region_ready).await;
    region_where(&replicas[0], "Ready as a replica", |r| {
        region_ready(r)
            && r.status
                .as_ref()
                .and_then(|s| s.failover.as_ref())
                .is_some_and(|f| f.replica_of.as_deref() == Some(old.as_str()))
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
        region_condition(r, "Ready")
            .is_some_and(|(s, reason, _)| s == "False" && reason == "ReplicaNotInRecovery")
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
        region_condition(r, "Ready")
            .is_some_and(|(s, reason, _)| s == "False" && reason == "Superseded")
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
