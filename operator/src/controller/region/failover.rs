//! Declarative regional failover (ADR 0011). A Region reconciled as a Replica whose role
//! becomes Primary is promoted (`pg_promote`) once it holds its lineage's claim (first
//! promoted wins, a Secret created atomically in the operator's namespace); its old primary
//! is then fenced (marker, read-only, data plane logins disabled), by the promoted Region's
//! reconcile or, when the old server was unreachable then, by the old Region's own reconcile
//! before anything else there. The old Region then reports `Superseded` and never undoes
//! the fence; its Tenants are served by the promoted Region ([`serving_region`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use kube::ResourceExt;
use phoenix_crds::region::RegionFailoverStatus;
use phoenix_crds::{Region, RegionRole};

use super::deref;
use crate::conditions::{NewCondition, Status, types};
use crate::controller::context::EventSpec;
use crate::controller::error::{ApplyError, Error, PlanError};
use crate::controller::providers::Database;
use crate::controller::world::World;
use crate::db::DbError;
use crate::db::failover::{Fenced, Lineage};
use crate::db::owned;
use crate::reason::Reason;

/// How long one pass waits for `pg_promote` to finish.
pub const PROMOTE_WAIT_SECONDS: i32 = 60;

/// Prefix of the Secrets holding lineage claims (in the operator's namespace).
pub const CLAIM_PREFIX: &str = "phoenix-lineage-";

/// The schema version that made `catalog.superseded`.
pub const FENCE_SCHEMA_VERSION: i32 = 16;

/// The record a Region keeps in `status.failover`.
pub fn record_of(region: &Region) -> RegionFailoverStatus {
    region
        .status
        .as_ref()
        .and_then(|s| s.failover.clone())
        .unwrap_or_default()
}

/// The promotion in `region`'s place that it has not outlived: the Primary Region promoted
/// from it most recently, after `region`'s own promotion (a failback promotes the old
/// region again, later). Returns that Region and its record.
pub fn superseder(
    regions: &[Arc<Region>],
    region: &str,
    own: &RegionFailoverStatus,
) -> Option<(Arc<Region>, RegionFailoverStatus)> {
    regions
        .iter()
        .filter(|r| r.name_any() != region && r.spec.role == RegionRole::Primary)
        .filter_map(|r| {
            let rec = record_of(r);
            let at = rec.promoted_at.clone()?;
            (rec.promoted_from.as_deref() == Some(region)
                && own.promoted_at.as_ref().is_none_or(|mine| &at > mine))
            .then(|| (r.clone(), rec))
        })
        .max_by(|a, b| a.1.promoted_at.cmp(&b.1.promoted_at))
}

/// The Region serving the tenants whose home is `home`, when a failover moved them: the
/// end of the chain of promotions from it. `None` when the home serves them itself.
pub fn serving_region(regions: &[Arc<Region>], home: &Region) -> Option<Arc<Region>> {
    let mut current: Option<Arc<Region>> = None;
    let mut name = home.name_any();
    let mut own = record_of(home);
    // A chain longer than the Regions is a cycle of stale records.
    for _ in 0..regions.len() {
        match superseder(regions, &name, &own) {
            Some((next, rec)) => {
                name = next.name_any();
                own = rec;
                current = Some(next);
            }
            None => break,
        }
    }
    current
}

/// For `plan`: what a pass would do about a Primary whose writer is a standby
/// (`standby`), when that is a promotion (the Region was Ready as a Replica).
pub fn would_promote(region: &Region, standby: Option<bool>) -> Option<String> {
    let rec = record_of(region);
    let source = rec.replica_of.as_ref()?;
    (region.spec.role == RegionRole::Primary && standby == Some(true)).then(|| {
        format!(
            "pg_promote() in place of region {source} once the lineage claim {}-tl{} is held (first promoted wins), then fence {source}'s writer",
            rec.system_identifier.as_deref().unwrap_or("?"),
            rec.timeline.map_or_else(|| "?".to_owned(), |t| t.to_string())
        )
    })
}

/// What the failover step before the normal pass found or did; the record is written to
/// `status.failover` whatever the pass's outcome.
#[derive(Default)]
pub struct Step {
    /// The record, updated.
    pub record: RegionFailoverStatus,
    /// Events (a promotion, a fence).
    pub events: Vec<EventSpec>,
}

fn claim_labels(region: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "app.kubernetes.io/managed-by".to_owned(),
            "phoenix-operator".to_owned(),
        ),
        (
            "phoenixguardian.io/lineage-claim".to_owned(),
            "true".to_owned(),
        ),
        ("phoenixguardian.io/region".to_owned(), region.to_owned()),
    ])
}

/// Runs before the Region's dereference: records a Replica's lineage, promotes a Region
/// whose role became Primary, and refuses (after fencing, if needed) a superseded one.
pub async fn before(
    region: &Region,
    world: &World<'_>,
    step: &mut Step,
    now: &str,
) -> Result<(), Error> {
    let db = deref::live_writer(world, region).await?;
    let standby = db.probe().await.map_err(|e| deref::untrusted(region, e))?;
    match (region.spec.role, standby) {
        (RegionRole::Replica, Some(true)) => {
            let l = db.lineage().await.map_err(ApplyError::from)?;
            step.record.system_identifier = Some(l.system_identifier);
            step.record.timeline = Some(l.timeline);
            Ok(())
        }
        (RegionRole::Primary, Some(true)) => promote(region, world, db.as_ref(), step, now).await,
        // Promoted already, but not recorded (a crash after pg_promote, or promoted by
        // hand before the flip): the same step claims, records and fences.
        (RegionRole::Primary, Some(false)) if step.record.replica_of.is_some() => {
            promote(region, world, db.as_ref(), step, now).await
        }
        (RegionRole::Primary, Some(false)) => refuse_if_superseded(region, world, db, step).await,
        _ => Ok(()),
    }
}

async fn promote(
    region: &Region,
    world: &World<'_>,
    db: &dyn Database,
    step: &mut Step,
    now: &str,
) -> Result<(), Error> {
    let name = region.name_any();
    // Never reconciled as a replica: the dereference refuses it (WriterIsStandby).
    let Some(source) = step.record.replica_of.clone() else {
        return Ok(());
    };
    // The writer must not be the source's own (the same data, but not a failover).
    if let Some(src) = world.region(&source)
        && let Ok(src_db) = deref::writer(world, &src).await
        && src_db.endpoint() == db.endpoint()
    {
        return Err(PlanError::PromotionRefused(format!(
            "spec.database.writer ({}) is region {source}'s writer, not this region's standby; point it back at the standby this region followed, or set role Replica",
            db.endpoint()
        ))
        .into());
    }
    let l = db.lineage().await.map_err(ApplyError::from)?;
    if let Some(seen) = &step.record.system_identifier
        && seen != &l.system_identifier
    {
        return Err(PlanError::PromotionRefused(format!(
            "the writer {} is not the standby this region was a replica of {source} on (system identifier {} now, {seen} then); point spec.database.writer back at that standby, or set role Replica",
            db.endpoint(),
            l.system_identifier
        ))
        .into());
    }
    let lineage = Lineage {
        timeline: step.record.timeline.unwrap_or(l.timeline),
        ..l
    };
    let claim = lineage.claim_key();
    let (data, _) = world
        .providers
        .secrets
        .create(
            &world.settings.namespace,
            &format!("{CLAIM_PREFIX}{claim}"),
            claim_labels(&name),
            BTreeMap::from([
                ("region".to_owned(), name.clone()),
                ("promotedFrom".to_owned(), source.clone()),
                ("lineage".to_owned(), claim.clone()),
                ("claimedAt".to_owned(), now.to_owned()),
            ]),
        )
        .await
        .map_err(ApplyError::from)?;
    let winner = data.get("region").cloned().unwrap_or_default();
    let claimed_at = data
        .get("claimedAt")
        .cloned()
        .unwrap_or_else(|| now.to_owned());
    if winner != name {
        return Err(PlanError::SplitBrain {
            winner,
            claim,
            at: claimed_at,
        }
        .into());
    }
    if !db
        .promote(PROMOTE_WAIT_SECONDS)
        .await
        .map_err(ApplyError::from)?
    {
        return Err(ApplyError::from(DbError::Query {
            context: "promoting the standby (pg_promote)",
            reason: format!(
                "the server did not finish its promotion within {PROMOTE_WAIT_SECONDS}s; retried"
            ),
        })
        .into());
    }
    step.record = RegionFailoverStatus {
        system_identifier: Some(lineage.system_identifier),
        timeline: None,
        replica_of: None,
        promoted_from: Some(source.clone()),
        promoted_at: Some(claimed_at),
        lineage_claim: Some(claim.clone()),
        fenced_at: None,
        superseded_by: None,
    };
    step.events.push(EventSpec::normal(
        Reason::Promoted,
        "Promote",
        format!(
            "promoted {} in place of region {source} (lineage {claim}); the old primary is fenced next",
            db.endpoint()
        ),
    ));
    Ok(())
}

/// Fences `db`, the writer of region `old`, for the promoted Region `by`: migrated first
/// when it predates the marker table (a fenced database refuses the migration).
pub async fn fence_database(
    db: &dyn Database,
    old: &str,
    by: &str,
    claim: &str,
) -> Result<Fenced, DbError> {
    if db.schema_version().await? < FENCE_SCHEMA_VERSION && db.superseded().await?.is_none() {
        db.migrate().await?;
    }
    let logins = [owned::dataplane_role(old), owned::standby_role(old)];
    let logins: Vec<&str> = logins.iter().map(String::as_str).collect();
    db.fence(by, claim, &logins).await
}

fn fenced_event(old: &str, by: &str, endpoint: &str, f: &Fenced) -> EventSpec {
    EventSpec::normal(
        Reason::Fenced,
        "Fence",
        format!(
            "fenced {endpoint}, the writer of region {old} superseded by {by}: read-only by default, logins [{}] disabled, {} session(s) ended",
            f.logins_retired.join(", "),
            f.sessions_ended
        ),
    )
}

async fn refuse_if_superseded(
    region: &Region,
    world: &World<'_>,
    db: Arc<dyn Database>,
    step: &mut Step,
) -> Result<(), Error> {
    let name = region.name_any();
    if let Some(m) = db.superseded().await.map_err(ApplyError::from)? {
        step.record.superseded_by = Some(m.by.clone());
        return Err(PlanError::Superseded { by: m.by, at: m.at }.into());
    }
    let Some((by, rec)) = superseder(&world.regions, &name, &step.record) else {
        step.record.superseded_by = None;
        return Ok(());
    };
    // Promoted in our place while this server was unreachable: the fence first, before
    // anything else touches it.
    let by = by.name_any();
    let claim = rec.lineage_claim.unwrap_or_default();
    let f = fence_database(db.as_ref(), &name, &by, &claim)
        .await
        .map_err(ApplyError::from)?;
    step.events
        .push(fenced_event(&name, &by, db.endpoint(), &f));
    step.record.superseded_by = Some(by.clone());
    Err(PlanError::Superseded {
        by,
        at: rec.promoted_at.unwrap_or_default(),
    }
    .into())
}

/// After a promoted Region's pass: fences its old primary if that is still pending.
/// Returns the `OldPrimaryFenced` condition (none for a Region never promoted) and whether
/// to look again soon.
pub async fn fence_old_primary(
    region: &Region,
    world: &World<'_>,
    step: &mut Step,
    now: &str,
) -> (Option<NewCondition>, bool) {
    let t = types::OLD_PRIMARY_FENCED;
    let Some(old) = step.record.promoted_from.clone() else {
        return (None, false);
    };
    if let Some(at) = &step.record.fenced_at {
        return (
            Some(NewCondition::new(
                t,
                Status::True,
                Reason::Fenced,
                format!("region {old}'s database accepts no writes since {at}"),
            )),
            false,
        );
    }
    let name = region.name_any();
    let claim = step.record.lineage_claim.clone().unwrap_or_default();
    let pending = |why: String| {
        (
            Some(NewCondition::new(
                t,
                Status::False,
                Reason::FencePending,
                format!(
                    "region {old}'s old primary is not fenced yet: {why}; retried, and fenced by region {old}'s own reconcile before anything else when it answers"
                ),
            )),
            true,
        )
    };
    let Some(old_region) = world.region(&old) else {
        return (
            Some(NewCondition::new(
                t,
                Status::False,
                Reason::FencePending,
                format!(
                    "region {old} is no longer declared, so the operator cannot reach its old primary: make sure that server accepts no writes (docs/runbooks.md)"
                ),
            )),
            false,
        );
    };
    let db = match deref::writer(world, &old_region).await {
        Ok(db) => db,
        Err(e) => return pending(e.to_string()),
    };
    let outcome = async {
        match db.probe().await? {
            // Already rebuilt as a standby (or never existed): nothing writable there.
            Some(true) | None => Ok(None),
            Some(false) => fence_database(db.as_ref(), &old, &name, &claim)
                .await
                .map(Some),
        }
    }
    .await;
    match outcome {
        Ok(fenced) => {
            if let Some(f) = &fenced {
                step.events
                    .push(fenced_event(&old, &name, db.endpoint(), f));
            }
            step.record.fenced_at = Some(now.to_owned());
            (
                Some(NewCondition::new(
                    t,
                    Status::True,
                    Reason::Fenced,
                    format!("region {old}'s database accepts no writes since {now}"),
                )),
                false,
            )
        }
        Err(e) => pending(e.to_string()),
    }
}

/// The record after a successful pass: a Replica remembers whom it follows (what makes a
/// later role change a promotion) and forgets an earlier failover.
pub fn settled(region: &Region, mut record: RegionFailoverStatus) -> RegionFailoverStatus {
    if region.spec.role == RegionRole::Replica {
        record = RegionFailoverStatus {
            system_identifier: record.system_identifier,
            timeline: record.timeline,
            replica_of: region.spec.replica_of.clone(),
            ..RegionFailoverStatus::default()
        };
    }
    record
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(name: &str, role: RegionRole, rec: Option<RegionFailoverStatus>) -> Arc<Region> {
        let mut spec = serde_json::json!({
            "awsRegion": "eu-west-1", "dataResidency": ["EU"],
            "database": {"writer": {"connectionSecretRef": {"namespace": "ops", "name": "db", "key": "dsn"}}}
        });
        if role == RegionRole::Replica {
            spec["role"] = "Replica".into();
            spec["replicaOf"] = "a".into();
        }
        let mut r = Region::new(name, serde_json::from_value(spec).expect("spec"));
        r.status = Some(phoenix_crds::RegionStatus {
            failover: rec,
            ..Default::default()
        });
        Arc::new(r)
    }

    fn promoted(from: &str, at: &str) -> Option<RegionFailoverStatus> {
        Some(RegionFailoverStatus {
            promoted_from: Some(from.into()),
            promoted_at: Some(at.into()),
            lineage_claim: Some("1-tl1".into()),
            ..Default::default()
        })
    }

    #[test]
    fn tenants_follow_the_chain_of_promotions_and_a_failback_ends_it() {
        let a = region("a", RegionRole::Primary, None);
        let b = region(
            "b",
            RegionRole::Primary,
            promoted("a", "2026-11-24T09:00:00Z"),
        );
        let c = region("c", RegionRole::Replica, None);
        let regions = vec![a.clone(), b.clone(), c.clone()];
        let serving = serving_region(&regions, &a).map(|r| r.name_any());
        assert_eq!(serving.as_deref(), Some("b"));
        assert!(serving_region(&regions, &b).is_none());
        // b fails over to d later: a's tenants move on to d.
        let d = region(
            "d",
            RegionRole::Primary,
            promoted("b", "2026-11-24T10:00:00Z"),
        );
        let regions = vec![a.clone(), b.clone(), c, d];
        let serving = serving_region(&regions, &a).map(|r| r.name_any());
        assert_eq!(serving.as_deref(), Some("d"));
        // a rebuilt as b's replica and promoted back (after b's promotion): a serves.
        let a2 = region(
            "a",
            RegionRole::Primary,
            promoted("b", "2026-11-24T11:00:00Z"),
        );
        let regions = vec![a2.clone(), b.clone()];
        assert!(serving_region(&regions, &a2).is_none());
        assert_eq!(
            superseder(&regions, "b", &record_of(&b)).map(|(r, _)| r.name_any()),
            Some("a".to_owned()),
            "b is the superseded one now"
        );
        // A Replica that still carries a stale record supersedes nobody.
        let e = region(
            "e",
            RegionRole::Replica,
            promoted("a", "2026-11-24T12:00:00Z"),
        );
        assert!(superseder(&[a.clone(), e], "a", &record_of(&a)).is_none());
    }

    #[test]
    fn a_settled_replica_remembers_its_source_and_forgets_an_old_failover() {
        let r = region("b", RegionRole::Replica, None);
        let rec = RegionFailoverStatus {
            system_identifier: Some("7".into()),
            timeline: Some(2),
            promoted_from: Some("a".into()),
            fenced_at: Some("t".into()),
            ..Default::default()
        };
        let s = settled(&r, rec.clone());
        assert_eq!(s.replica_of.as_deref(), Some("a"));
        assert_eq!(
            (s.system_identifier.as_deref(), s.timeline),
            (Some("7"), Some(2))
        );
        assert_eq!((s.promoted_from, s.fenced_at), (None, None));
        // A Primary keeps its record.
        let p = region("b", RegionRole::Primary, None);
        assert_eq!(settled(&p, rec.clone()), rec);
    }

    #[test]
    fn only_a_region_reconciled_as_a_replica_would_be_promoted() {
        let rec = RegionFailoverStatus {
            replica_of: Some("a".into()),
            system_identifier: Some("7".into()),
            timeline: Some(1),
            ..Default::default()
        };
        let flipped = region("b", RegionRole::Primary, Some(rec.clone()));
        let what = would_promote(&flipped, Some(true)).expect("a promotion");
        assert!(
            what.contains("in place of region a") && what.contains("7-tl1"),
            "{what}"
        );
        assert_eq!(
            would_promote(&flipped, Some(false)),
            None,
            "already promoted"
        );
        let never = region("b", RegionRole::Primary, None);
        assert_eq!(
            would_promote(&never, Some(true)),
            None,
            "WriterIsStandby instead"
        );
        let replica = region("b", RegionRole::Replica, Some(rec));
        assert_eq!(would_promote(&replica, Some(true)), None);
    }

    #[test]
    fn a_lineage_claim_names_identifier_and_timeline() {
        let l = Lineage {
            system_identifier: "7312".into(),
            timeline: 3,
            in_recovery: true,
        };
        assert_eq!(l.claim_key(), "7312-tl3");
    }
}
