//! Login attempts and sessions against a real PostgreSQL provisioned by the operator
//! (forced RLS, the data plane's NOBYPASSRLS role): session rows found by hash only, revoked,
//! idle and expired sessions refused, one tenant never seeing another's sessions or login
//! attempts, a state working once.
//!
//! Needs the stack: `e2e/stack up && source .stack/env` (sets PG_ADMIN_DSN_US_EAST_1).

mod support;

use std::time::Duration;

use phoenix_dataplane::auth::Identity;
use phoenix_dataplane::login::flow::sha256_hex;
use phoenix_dataplane::login::session::{self, StoredAttempt};
use support::TestDb;

const A_HOST: &str = "mercy.example.org";
const B_HOST: &str = "stjude.example.org";

fn identity(subject: &str, roles: &[&str]) -> Identity {
    Identity {
        subject: subject.to_owned(),
        email: Some(format!("{subject}@mercy.example")),
        name: Some(format!("<b>{subject}</b>")),
        roles: roles.iter().map(|r| (*r).to_owned()).collect(),
    }
}

fn attempt(verifier: &str) -> StoredAttempt {
    StoredAttempt {
        code_verifier: verifier.to_owned(),
        nonce: "nonce".to_owned(),
        redirect_uri: format!("https://{A_HOST}/auth/callback"),
        return_to: "/whoami".to_owned(),
    }
}

const HOUR: Duration = Duration::from_secs(3600);

#[tokio::test]
async fn sessions_are_found_by_hash_end_when_revoked_or_expired_and_stay_in_their_tenant() {
    let db = TestDb::create().await;
    let a = db.insert_tenant("mercy", A_HOST).await;
    let b = db.insert_tenant("stjude", B_HOST).await;
    let database = db.database(2);

    let expires = session::create(
        &database,
        a,
        sha256_hex("id-1"),
        identity("alice", &["physician"]),
        HOUR,
    )
    .await
    .expect("create");
    let found = session::lookup(&database, a, sha256_hex("id-1"), HOUR)
        .await
        .expect("lookup")
        .expect("live session");
    assert_eq!(found.identity, identity("alice", &["physician"]));
    assert_eq!(found.expires_at, expires);
    assert!(expires > jiff::Timestamp::now().as_second() + 3500);

    // Only the hash is stored.
    let stored: Vec<String> = db
        .admin()
        .query("SELECT id_sha256 FROM clinical.sessions", &[])
        .await
        .expect("admin reads")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(stored, [sha256_hex("id-1")]);

    // Tenant B sees nothing of A's, even naming A's row by its hash.
    assert_eq!(
        session::lookup(&database, b, sha256_hex("id-1"), HOUR)
            .await
            .expect("lookup"),
        None
    );
    assert!(
        session::list_active(&database, b, HOUR)
            .await
            .expect("list")
            .is_empty()
    );
    assert_eq!(
        session::revoke_subject(&database, b, "alice".into())
            .await
            .expect("revoke"),
        0
    );
    let listed = session::list_active(&database, a, HOUR)
        .await
        .expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].subject, "alice");

    // Revoked: gone at once.
    assert!(
        session::revoke(&database, a, sha256_hex("id-1"))
            .await
            .expect("revoke")
    );
    assert_eq!(
        session::lookup(&database, a, sha256_hex("id-1"), HOUR)
            .await
            .expect("lookup"),
        None
    );
    assert!(
        !session::revoke(&database, a, sha256_hex("id-1"))
            .await
            .expect("again")
    );

    // Past the absolute end, and past the idle timeout.
    session::create(
        &database,
        a,
        sha256_hex("id-2"),
        identity("bob", &["nurse"]),
        HOUR,
    )
    .await
    .expect("create");
    db.execute("UPDATE clinical.sessions SET last_seen_at = now() - interval '2 hours' WHERE subject = 'bob'")
        .await;
    assert_eq!(
        session::lookup(&database, a, sha256_hex("id-2"), HOUR)
            .await
            .expect("lookup"),
        None,
        "idle for longer than the idle timeout"
    );
    session::create(
        &database,
        a,
        sha256_hex("id-3"),
        identity("carol", &[]),
        Duration::ZERO,
    )
    .await
    .expect("create");
    assert_eq!(
        session::lookup(&database, a, sha256_hex("id-3"), HOUR)
            .await
            .expect("lookup"),
        None,
        "past its absolute end"
    );

    // The data plane's role cannot write a session into another tenant.
    let refused = database
        .tenant_tx(phoenix_dataplane::db::tenant_tx::Access::Write, a, move |tx| {
            Box::pin(async move {
                tx.execute(
                    "INSERT INTO clinical.sessions (tenant_id, id_sha256, subject, roles, expires_at)
                     VALUES ($1, 'x', 'mallory', '{}', now() + interval '1 hour')",
                    &[&b],
                )
                .await
            })
        })
        .await;
    assert!(
        matches!(
            refused,
            Err(phoenix_dataplane::db::tenant_tx::TxError::OtherTenant(_))
        ),
        "{refused:?}"
    );
}

#[tokio::test]
async fn a_login_state_works_once_in_its_tenant_until_it_expires() {
    let db = TestDb::create().await;
    let a = db.insert_tenant("mercy", A_HOST).await;
    let b = db.insert_tenant("stjude", B_HOST).await;
    let database = db.database(2);

    session::store_attempt(&database, a, sha256_hex("state-1"), attempt("v1"), HOUR)
        .await
        .expect("store");
    assert_eq!(
        session::take_attempt(&database, b, sha256_hex("state-1"))
            .await
            .expect("take"),
        None,
        "another tenant's state"
    );
    assert_eq!(
        session::take_attempt(&database, a, sha256_hex("state-1"))
            .await
            .expect("take"),
        Some(attempt("v1"))
    );
    assert_eq!(
        session::take_attempt(&database, a, sha256_hex("state-1"))
            .await
            .expect("take"),
        None,
        "a state works once"
    );
    session::store_attempt(
        &database,
        a,
        sha256_hex("state-2"),
        attempt("v2"),
        Duration::ZERO,
    )
    .await
    .expect("store");
    assert_eq!(
        session::take_attempt(&database, a, sha256_hex("state-2"))
            .await
            .expect("take"),
        None,
        "expired"
    );
}

#[tokio::test]
async fn a_new_login_deletes_the_tenants_sessions_ended_long_ago() {
    let db = TestDb::create().await;
    let a = db.insert_tenant("mercy", A_HOST).await;
    let b = db.insert_tenant("stjude", B_HOST).await;
    let database = db.database(2);
    for (tenant, id) in [
        (a, "old-a"),
        (a, "revoked-a"),
        (a, "recent-a"),
        (b, "old-b"),
    ] {
        session::create(&database, tenant, sha256_hex(id), identity(id, &[]), HOUR)
            .await
            .expect("create");
    }
    db.execute(
        "UPDATE clinical.sessions SET expires_at = now() - interval '8 days' WHERE subject IN ('old-a', 'old-b');
         UPDATE clinical.sessions SET revoked_at = now() - interval '8 days' WHERE subject = 'revoked-a';
         UPDATE clinical.sessions SET revoked_at = now() - interval '1 day' WHERE subject = 'recent-a'",
    )
    .await;
    session::create(
        &database,
        a,
        sha256_hex("new-a"),
        identity("new-a", &[]),
        HOUR,
    )
    .await
    .expect("create");
    let left: Vec<String> = db
        .admin()
        .query(
            "SELECT subject FROM clinical.sessions ORDER BY subject",
            &[],
        )
        .await
        .expect("sessions")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        left,
        ["new-a", "old-b", "recent-a"],
        "only tenant A's long-ended sessions go"
    );
}
