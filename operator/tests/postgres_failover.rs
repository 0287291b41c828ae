//! The failover fence against a real PostgreSQL (ADR 0011): a provisioned region database
//! reports its lineage; fencing it writes the marker, disables the old region's data plane
//! login and ends its sessions, and makes every new session read-only; the Region's own
//! repair cannot undo it; a second fence changes nothing. Promotion of a real standby is
//! end to end (e2e/tests/failover.rs): a primary is "promoted" without any change.

mod support;

use phoenix_operator::controller::region::apply::provision_for;
use phoenix_operator::controller::region::failover::fence_database;
use phoenix_operator::db::owned::dataplane_role;
use support::{TestDb, rand_suffix};
use tokio_postgres::Client;

async fn login(db: &TestDb, user: &str, password: &str) -> Result<Client, String> {
    let mut target = db.target.clone();
    target.config.user(user).password(password);
    target.connect().await.map_err(|e| e.to_string())
}

#[tokio::test]
async fn a_fenced_primary_accepts_no_write_and_its_region_cannot_undo_the_fence() {
    let test = TestDb::new("failover").await;
    let db = test.region();
    let old = format!("fo-{}", rand_suffix());
    let dp = dataplane_role(&old);
    provision_for(db.as_ref(), &dp, Some("pw-old"))
        .await
        .expect("provision the old primary");

    let lineage = db.lineage().await.expect("lineage");
    assert!(!lineage.in_recovery);
    assert!(lineage.timeline >= 1, "{lineage:?}");
    assert!(
        lineage.system_identifier.len() >= 15
            && lineage
                .system_identifier
                .chars()
                .all(|c| c.is_ascii_digit()),
        "{lineage:?}"
    );
    assert!(
        db.promote(5).await.expect("promote a primary"),
        "a primary is already writable"
    );
    assert_eq!(
        db.lineage().await.expect("lineage"),
        lineage,
        "nothing changed"
    );
    assert_eq!(db.superseded().await.expect("marker"), None);

    // The data plane writes before the fence.
    let session = login(&test, &dp, "pw-old").await.expect("data plane login");
    session
        .batch_execute("BEGIN; SELECT 1; COMMIT")
        .await
        .expect("a data plane session");

    let claim = lineage.claim_key();
    let fenced = fence_database(db.as_ref(), &old, "fo-new", &claim)
        .await
        .expect("fence");
    assert!(fenced.marked);
    assert_eq!(fenced.logins_retired, vec![dp.clone()]);
    assert!(fenced.sessions_ended >= 1, "{fenced:?}");

    // Its session was ended, and it may not log in again.
    let ended = session.simple_query("SELECT 1").await;
    assert!(ended.is_err(), "the data plane session survived the fence");
    let refused = login(&test, &dp, "pw-old")
        .await
        .expect_err("login refused");
    assert!(refused.contains("not permitted to log in"), "{refused}");

    // Every new session is read-only, even the superuser's (unless it asks otherwise).
    let admin = test.admin().await;
    let write = admin
        .batch_execute("CREATE TABLE public.after_fence (x int)")
        .await
        .expect_err("a write on the fenced database");
    assert!(
        write.to_string().contains("read-only transaction")
            || format!("{write:?}").contains("read-only transaction"),
        "{write:?}"
    );

    let marker = db.superseded().await.expect("marker").expect("a marker");
    assert_eq!(
        (marker.by.as_str(), marker.lineage.as_str()),
        ("fo-new", claim.as_str())
    );
    assert!(marker.at.ends_with('Z'), "{marker:?}");

    // The Region's repair (which would give the login back) fails on the fence.
    // Its pooled sessions were ended with the others: the first use may see that.
    let mut text = String::new();
    for _ in 0..2 {
        text = provision_for(db.as_ref(), &dp, Some("pw-old"))
            .await
            .expect_err("repair refused")
            .to_string();
        if text.contains("read-only") {
            break;
        }
    }
    assert!(text.contains("read-only"), "{text}");
    let can_login: bool = admin
        .query_one(
            "SELECT rolcanlogin FROM pg_roles WHERE rolname = $1",
            &[&dp],
        )
        .await
        .expect("role")
        .get(0);
    assert!(!can_login, "the fence was undone");

    // Fencing again (a requeue, a crash after commit) changes nothing.
    let again = fence_database(db.as_ref(), &old, "fo-other", &claim)
        .await
        .expect("fence again");
    assert!(
        !again.marked && again.logins_retired.is_empty(),
        "{again:?}"
    );
    let marker = db.superseded().await.expect("marker").expect("a marker");
    assert_eq!(marker.by, "fo-new", "the first fence's marker stays");
}
