//! Declarative failover end to end (ADR 0011) on a primary and two streaming standbys of
//! the test's own (never the stack's replica): both Replica Regions are flipped to Primary
//! through the apiserver at once. One is promoted and takes writes as its data plane login,
//! the tenants report it as their serving region; the other is refused with a condition
//! naming the winner and stays in recovery; the old primary accepts no write (its data
//! plane's open session and a new login both fail) and its Region reports Superseded
//! without undoing the fence over several reconciles.

use std::time::Duration;

use phoenix_e2e::failover::*;
use phoenix_e2e::guard::ScenarioGuard;
use phoenix_e2e::pg_lineage::PgLineage;
use phoenix_e2e::*;

const RESIDENCY: &str = "FOX";

async fn in_recovery(client: &tokio_postgres::Client) -> bool {
    client
        .query_one("SELECT pg_is_in_recovery()", &[])
        .await
        .expect("pg_is_in_recovery")
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flipping_two_replicas_promotes_one_fences_the_old_primary_and_moves_the_tenants() {
    let _serial = SERIAL.lock().await;
    install_platform();
    let lineage = PgLineage::start("failover", 2).await;
    let _operator =
        Process::operator_with("e2e-operator", 5, &[("REGION_RESYNC_SECONDS", "2")]).await;
    let (old, replicas) = names("fo", 2);
    // Declared before the scenario guard, so dropped after it: claims go once their
    // Regions are gone, also when the test fails.
    let _claims = ForgetClaims::new(&replicas);
    let guard = ScenarioGuard::new("failover");
    declare_regions(&guard, &lineage, "fo", RESIDENCY);
    region_where(&old, "Ready", region_ready).await;
    for r in &replicas {
        region_where(r, "Ready as a replica of the primary", |reg| {
            region_ready(reg)
                && reg
                    .status
                    .as_ref()
                    .and_then(|s| s.failover.as_ref())
                    .is_some_and(|f| f.replica_of.as_deref() == Some(old.as_str()))
        })
        .await;
    }
    let tenants = declare_tenants(&guard, "fo", RESIDENCY, 2);
    let mut catalog_ids = Vec::new();
    for t in &tenants {
        let t = tenant_where(t, "Ready in the primary region", |t| {
            condition(t, "Ready").is_some_and(|(s, _, _)| s == "True")
        })
        .await;
        let status = t.status.expect("status");
        assert_eq!(status.placement.expect("placement").region, old);
        assert_eq!(status.serving_region, None);
        catalog_ids.push(status.endpoints.expect("endpoints").catalog_id);
    }
    // The old data plane writes, and keeps a session open across the failover.
    let (old_user, old_password) = dataplane_login(&old).await;
    let old_session = login(&lineage.primary, &old_user, &old_password)
        .await
        .expect("the old data plane logs in");
    write_patient(&old_session, catalog_ids[0], "before-failover")
        .await
        .expect("a write before the failover");
    lineage.caught_up().await;

    let start = flip(&replicas);

    // Exactly one is promoted; the other names it and stays a standby.
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
    let (winner_i, loser) = if winner == replicas[0] {
        (0, replicas[1].clone())
    } else {
        (1, replicas[0].clone())
    };
    let elapsed = first_write(&winner, &lineage.standbys[winner_i], catalog_ids[1], start).await;
    println!("failover: spec change to first accepted write {elapsed:?}");
    assert!(!in_recovery(&lineage.standbys[winner_i].admin().await).await);
    // The write before the failover was replicated and is there.
    let (user, password) = dataplane_login(&winner).await;
    assert_ne!(
        user, old_user,
        "the promoted region has a data plane login of its own"
    );
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
    let loser_i = 1 - winner_i;
    assert!(
        in_recovery(&lineage.standbys[loser_i].admin().await).await,
        "the refused replica was promoted: split brain"
    );

    // Tenants report the region now serving them.
    for t in &tenants {
        let t = tenant_where(t, "served by the promoted region", |t| {
            t.status.as_ref().and_then(|s| s.serving_region.as_deref()) == Some(winner.as_str())
        })
        .await;
        let (status, reason, message) = condition(&t, "DatabaseReady").expect("DatabaseReady");
        assert_eq!((status.as_str(), reason.as_str()), ("True", "FailedOver"));
        assert!(
            message.contains(&format!("served by region {winner}")),
            "{message}"
        );
        assert_eq!(
            t.status
                .and_then(|s| s.placement)
                .expect("placement")
                .region,
            old,
            "home is immutable"
        );
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
    assert!(message.contains("replicaOf"), "says what to do: {message}");
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

    // Several reconciles later the fence holds (nothing re-enabled the login).
    tokio::time::sleep(Duration::from_secs(8)).await;
    let admin = lineage.primary.admin().await;
    let can_login: bool = admin
        .query_one(
            "SELECT rolcanlogin FROM pg_roles WHERE rolname = $1",
            &[&old_user],
        )
        .await
        .expect("role")
        .get(0);
    assert!(!can_login, "the old region's reconcile undid the fence");
    let refused = admin
        .batch_execute("CREATE TABLE public.after_failover (x int)")
        .await
        .expect_err("a write on the old primary");
    assert!(
        format!("{refused:?}").contains("read-only transaction"),
        "{refused:?}"
    );
    let still = region_where(&old, "still Superseded", |_| true).await;
    assert_eq!(
        region_condition(&still, "Ready").map(|c| c.1).as_deref(),
        Some("Superseded")
    );
    let superseded_by = still
        .status
        .and_then(|s| s.failover)
        .and_then(|f| f.superseded_by);
    assert_eq!(superseded_by.as_deref(), Some(winner.as_str()));

    drop(guard);
    forget_claims(&replicas);
}

/// The old primary is down when the replica is flipped: the promotion goes ahead, the
/// fence stays pending (a condition says so), and once the old server is back it is fenced
/// before anything else touches it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_old_primary_is_fenced_when_it_comes_back() {
    let _serial = SERIAL.lock().await;
    install_platform();
    let lineage = PgLineage::start("failover-down", 1).await;
    let _operator =
        Process::operator_with("e2e-operator", 5, &[("REGION_RESYNC_SECONDS", "2")]).await;
    let (old, replicas) = names("fd", 1);
    // Declared before the scenario guard, so dropped after it: claims go once their
    // Regions are gone, also when the test fails.
    let _claims = ForgetClaims::new(&replicas);
    let guard = ScenarioGuard::new("failover-down");
    declare_regions(&guard, &lineage, "fd", "FOD");
    region_where(&old, "Ready", region_ready).await;
    region_where(&replicas[0], "Ready as a replica", |r| {
        region_ready(r)
            && r.status
                .as_ref()
                .and_then(|s| s.failover.as_ref())
                .is_some_and(|f| f.replica_of.as_deref() == Some(old.as_str()))
    })
    .await;
    let tenant = declare_tenants(&guard, "fd", "FOD", 1).remove(0);
    let t = tenant_where(&tenant, "Ready", |t| {
        condition(t, "Ready").is_some_and(|(s, _, _)| s == "True")
    })
    .await;
    let catalog_id = t
        .status
        .and_then(|s| s.endpoints)
        .expect("endpoints")
        .catalog_id;
    let (old_user, old_password) = dataplane_login(&old).await;
    lineage.caught_up().await;

    lineage.stop_primary();
    let start = flip(&replicas);
    first_write(&replicas[0], &lineage.standbys[0], catalog_id, start).await;
    let pending = region_where(&replicas[0], "fence pending", |r| {
        region_condition(r, "OldPrimaryFenced")
            .is_some_and(|(s, reason, _)| s == "False" && reason == "FencePending")
    })
    .await;
    let (_, _, message) = region_condition(&pending, "OldPrimaryFenced").expect("condition");
    assert!(
        message.contains(&format!("region {old}'s old primary is not fenced yet")),
        "{message}"
    );
    tenant_where(&tenant, "served by the promoted region", |t| {
        t.status.as_ref().and_then(|s| s.serving_region.as_deref()) == Some(replicas[0].as_str())
    })
    .await;

    lineage.start_primary();
    region_where(&old, "Superseded", |r| {
        region_condition(r, "Ready")
            .is_some_and(|(s, reason, _)| s == "False" && reason == "Superseded")
    })
    .await;
    region_where(&replicas[0], "old primary fenced", |r| {
        region_condition(r, "OldPrimaryFenced").is_some_and(|(s, _, _)| s == "True")
    })
    .await;
    let error = login(&lineage.primary, &old_user, &old_password)
        .await
        .map(|_| ())
        .expect_err("the old data plane logged in on the returned primary");
    assert!(error.contains("not permitted to log in"), "{error}");
    let marker: String = lineage
        .primary
        .admin()
        .await
        .query_one("SELECT superseded_by FROM catalog.superseded", &[])
        .await
        .expect("the fence marker")
        .get(0);
    assert_eq!(marker, replicas[0]);

    drop(guard);
    forget_claims(&replicas);
}

/// A Primary pointed at a standby it never followed as a Replica is not promoted
/// (`WriterIsStandby`, the server stays in recovery); a Replica whose standby was promoted
/// before the flip (by hand, or an operator that crashed after `pg_promote`) is taken over
/// by the flip: claimed, recorded, the old primary fenced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_reconciled_replica_is_promoted_and_a_promotion_already_done_is_carried_on() {
    let _serial = SERIAL.lock().await;
    install_platform();
    let lineage = PgLineage::start("failover-hand", 2).await;
    let _operator =
        Process::operator_with("e2e-operator", 5, &[("REGION_RESYNC_SECONDS", "2")]).await;
    let (old, replicas) = names("fh", 1);
    // Declared before the scenario guard, so dropped after it: claims go once their
    // Regions are gone, also when the test fails.
    let _claims = ForgetClaims::new(&replicas);
    let guard = ScenarioGuard::new("failover-hand");
    declare_regions(&guard, &lineage, "fh", "FOH");
    // The second standby, declared Primary directly.
    let mistaken = "fh-x".to_owned();
    let dsn = serde_json::to_string(&lineage.standbys[1].dsn("phoenix")).expect("json");
    guard.apply(&format!(
        "---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: {mistaken}-db\n  namespace: {NAMESPACE}\nstringData:\n  dsn: {dsn}\n---\napiVersion: phoenixguardian.io/v1alpha1\nkind: Region\nmetadata:\n  name: {mistaken}\nspec:\n  awsRegion: us-east-1\n  role: Primary\n  dataResidency: [FOHX]\n  database:\n    writer:\n      connectionSecretRef: {{namespace: {NAMESPACE}, name: {mistaken}-db, key: dsn}}\n"
    ));
    region_where(&mistaken, "WriterIsStandby", |r| {
        region_condition(r, "Ready")
            .is_some_and(|(s, reason, _)| s == "False" && reason == "WriterIsStandby")
    })
    .await;
    region_where(&replicas[0], "Ready as a replica", |r| {
        region_ready(r)
            && r.status
                .as_ref()
                .and_then(|s| s.failover.as_ref())
                .is_some_and(|f| f.replica_of.as_deref() == Some(old.as_str()))
    })
    .await;
    let (old_user, old_password) = dataplane_login(&old).await;

    // Promoted by hand before the flip: the Replica Region says it is no standby.
    let standby = lineage.standbys[0].admin().await;
    let promoted: bool = standby
        .query_one("SELECT pg_promote(true, 60)", &[])
        .await
        .expect("pg_promote")
        .get(0);
    assert!(promoted);
    region_where(&replicas[0], "ReplicaNotInRecovery", |r| {
        region_condition(r, "Ready").is_some_and(|(_, reason, _)| reason == "ReplicaNotInRecovery")
    })
    .await;
    flip(&replicas);
    let taken = region_where(&replicas[0], "taken over and Ready", |r| {
        region_ready(r)
            && r.status
                .as_ref()
                .and_then(|s| s.failover.as_ref())
                .is_some_and(|f| {
                    f.promoted_from.as_deref() == Some(old.as_str()) && f.fenced_at.is_some()
                })
    })
    .await;
    assert!(
        taken
            .status
            .and_then(|s| s.failover)
            .and_then(|f| f.lineage_claim)
            .is_some()
    );
    region_where(&old, "Superseded", |r| {
        region_condition(r, "Ready").is_some_and(|(_, reason, _)| reason == "Superseded")
    })
    .await;
    let error = login(&lineage.primary, &old_user, &old_password)
        .await
        .map(|_| ())
        .expect_err("the old data plane logged in");
    assert!(error.contains("not permitted to log in"), "{error}");

    // Several passes later the mistaken Primary still refuses, and its server is a standby.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let still = region_where(&mistaken, "exists", |_| true).await;
    assert_eq!(
        region_condition(&still, "Ready").map(|c| c.1).as_deref(),
        Some("WriterIsStandby")
    );
    assert!(
        in_recovery(&lineage.standbys[1].admin().await).await,
        "promoted by mistake"
    );

    drop(guard);
    forget_claims(&replicas);
}
