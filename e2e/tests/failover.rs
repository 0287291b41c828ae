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
use phoenix_e2e::scenario::is_ready;
use phoenix_e2e::*;

const RESIDENCY: &str = "FOX";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flipping_two_replicas_promotes_one_fences_the_old_primary_and_moves_the_tenants() {
    let _serial = SERIAL.lock().await;
    install_platform();
    let lineage = PgLineage::start("failover", 2).await;
    let _operator = operator(&[]).await;
    let (old, replicas) = names("fo", 2);
    // Declared before the scenario guard, so dropped after it: claims go once their
    // Regions are gone, also when the test fails.
    let _claims = ForgetClaims::new(&replicas);
    let guard = ScenarioGuard::new("failover");
    declare_regions(&guard, &lineage, "fo", RESIDENCY);
    regions_ready(&old, &replicas).await;
    let tenants = declare_tenants(&guard, "fo", RESIDENCY, 2);
    let mut catalog_ids = Vec::new();
    for status in tenants_ready_in(&tenants, &old).await {
        assert_eq!(status.serving_region, None);
        catalog_ids.push(status.endpoints.expect("endpoints").catalog_id);
    }
    // The old data plane writes, and keeps a session open across the failover.
    let old_dp = OldDataPlane::write_before_failover(&old, &lineage, catalog_ids[0]).await;

    let promotion = promote_and_wait(
        "failover",
        &lineage,
        &old,
        &replicas,
        &old_dp.user,
        &catalog_ids,
    )
    .await;
    let winner = promotion.winner.clone();
    assert_loser_refused(
        &lineage,
        &promotion,
        "the refused replica was promoted: split brain",
    )
    .await;

    // Tenants report the region now serving them.
    for (t, message) in tenants_served_by(&tenants, &winner).await {
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
    let message = old_primary_superseded(&winner, &old).await;
    assert!(message.contains("replicaOf"), "says what to do: {message}");
    old_dp.assert_refused(&lineage, catalog_ids[0]).await;

    // Several reconciles later the fence holds (nothing re-enabled the login).
    tokio::time::sleep(Duration::from_secs(8)).await;
    let admin = lineage.primary.admin().await;
    let can_login: bool = admin
        .query_one(
            "SELECT rolcanlogin FROM pg_roles WHERE rolname = $1",
            &[&old_dp.user],
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
    let _operator = operator(&[]).await;
    let (old, replicas) = names("fd", 1);
    // Declared before the scenario guard, so dropped after it: claims go once their
    // Regions are gone, also when the test fails.
    let _claims = ForgetClaims::new(&replicas);
    let guard = ScenarioGuard::new("failover-down");
    declare_regions(&guard, &lineage, "fd", "FOD");
    regions_ready(&old, &replicas).await;
    let tenant = declare_tenants(&guard, "fd", "FOD", 1).remove(0);
    let t = tenant_where(&tenant, "Ready", is_ready).await;
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
        region_failed(r, "OldPrimaryFenced", "FencePending")
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
        region_failed(r, "Ready", "Superseded")
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
    let _operator = operator(&[]).await;
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
        region_failed(r, "Ready", "WriterIsStandby")
    })
    .await;
    region_where(&replicas[0], "Ready as a replica", |r| {
        ready_replica_of(r, &old)
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
