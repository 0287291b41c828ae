//! SSO rows in a real region catalog: published, read back unchanged, updated, removed by
//! IdPConnection, gone with their tenant, and readable by the data plane role.

mod support;

use phoenix_catalog::sso::{Protocol, RoleGrant};
use phoenix_catalog::{SsoRow, TenantRow};
use phoenix_operator::controller::region::apply::provision;
use phoenix_operator::db::roles::DATAPLANE_ROLE;
use support::TestDb;

fn tenant() -> TenantRow {
    let s = support::rand_suffix();
    TenantRow {
        uid: format!("uid-{s}"),
        name: format!("sso-{s}"),
        display_name: "SSO hospital".into(),
        hostname: format!("sso-{s}.example.test"),
        home_region: "us-east-1".into(),
        data_residency: vec!["US".into()],
        isolation: phoenix_catalog::Isolation::Shared,
        state: phoenix_catalog::TenantState::Active,
        requests_per_second: 10,
        max_users: 10,
        generation: 1,
        schema: None,
        database: None,
        database_server: None,
    }
}

fn sso(idp_uid: &str) -> SsoRow {
    SsoRow {
        idp_uid: idp_uid.into(),
        idp_name: "mercy-idp".into(),
        protocol: Protocol::Oidc,
        issuer: "https://idp.example/realms/mercy".into(),
        jwks_uri: "https://idp.example/realms/mercy/certs".into(),
        client_id: "phoenix-dataplane".into(),
        audiences: vec!["phoenix-dataplane".into()],
        claim_subject: "sub".into(),
        claim_email: "email".into(),
        claim_groups: "groups".into(),
        claim_name: "name".into(),
        role_mapping: vec![RoleGrant {
            group: "physicians".into(),
            role: "physician".into(),
        }],
        allowed_email_domains: vec!["mercy.example".into()],
        scim_enabled: true,
        generation: 1,
        authorization_endpoint: Some("https://idp.example/realms/mercy/auth".into()),
        token_endpoint: Some("https://idp.example/realms/mercy/token".into()),
        end_session_endpoint: None,
    }
}

#[tokio::test]
async fn sso_rows_round_trip_update_and_go_with_their_idp_or_tenant() {
    let db = TestDb::new("sso").await;
    let region = db.region();
    provision(&*region, None).await.expect("provision");
    let t = tenant();
    let id = region.upsert_tenant(&t).await.expect("tenant");
    assert_eq!(
        region.sso_seen(&t.uid).await.expect("seen").tenant_id,
        Some(id)
    );
    assert_eq!(
        region
            .sso_seen("no-such-uid")
            .await
            .expect("seen")
            .tenant_id,
        None
    );

    let row = sso("idp-1");
    region.upsert_sso(id, &row).await.expect("publish");
    let seen = region.sso_seen(&t.uid).await.expect("seen");
    assert_eq!(seen.row.as_ref(), Some(&row), "the row read back differs");

    let mut changed = row.clone();
    changed.scim_enabled = false;
    changed
        .allowed_email_domains
        .push("mercy-staff.example".into());
    changed.end_session_endpoint = Some("https://idp.example/realms/mercy/logout".into());
    assert_eq!(
        row.differences(&changed),
        ["allowedEmailDomains", "scim", "endpoints"]
    );
    region.upsert_sso(id, &changed).await.expect("update");
    assert_eq!(
        region.sso_seen(&t.uid).await.expect("seen").row,
        Some(changed)
    );

    // The data plane reads it (its grant is part of the Region's provisioning).
    let admin = db.admin().await;
    admin
        .batch_execute(&format!("SET ROLE {DATAPLANE_ROLE}"))
        .await
        .expect("set role");
    let n: i64 = admin
        .query_one("SELECT count(*) FROM catalog.sso", &[])
        .await
        .expect("the data plane role reads catalog.sso")
        .get(0);
    assert_eq!(n, 1);

    assert_eq!(region.delete_sso("other-idp").await.expect("delete"), 0);
    assert_eq!(region.delete_sso("idp-1").await.expect("delete"), 1);
    assert_eq!(region.sso_seen(&t.uid).await.expect("seen").row, None);

    region.upsert_sso(id, &sso("idp-2")).await.expect("publish");
    region.delete_tenant(&t.uid).await.expect("delete tenant");
    let admin = db.admin().await;
    let left: i64 = admin
        .query_one("SELECT count(*) FROM catalog.sso", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(left, 0, "the SSO row outlived its tenant");
}

#[tokio::test]
async fn scim_token_hashes_rotate_with_a_grace_period_and_go_when_scim_is_off() {
    let db = TestDb::new("scim").await;
    let region = db.region();
    provision(&*region, None).await.expect("provision");
    let t = tenant();
    let id = region.upsert_tenant(&t).await.expect("tenant");
    let admin = db.admin().await;
    let hashes = || async {
        admin
            .query(
                "SELECT token_sha256, expires_at IS NOT NULL, expires_at > now() FROM catalog.scim_tokens
                 WHERE idp_uid = 'idp-1' ORDER BY created_at, token_sha256",
                &[],
            )
            .await
            .expect("hashes")
            .into_iter()
            .map(|r| (r.get::<_, String>(0), r.get::<_, bool>(1), r.get::<_, Option<bool>>(2)))
            .collect::<Vec<_>>()
    };

    let first = region
        .converge_scim(id, "idp-1", Some("aaa"), 3600)
        .await
        .expect("first");
    assert!(first.inserted && first.retired == 0);
    assert!(
        !region
            .converge_scim(id, "idp-1", Some("aaa"), 3600)
            .await
            .expect("again")
            .inserted
    );
    assert_eq!(hashes().await, [("aaa".to_owned(), false, None)]);

    // Rotation: the new hash is current, the old one lives out its grace period.
    let rotated = region
        .converge_scim(id, "idp-1", Some("bbb"), 3600)
        .await
        .expect("rotate");
    assert_eq!(
        (rotated.inserted, rotated.retired, rotated.purged),
        (true, 1, 0)
    );
    assert_eq!(
        hashes().await,
        [
            ("aaa".to_owned(), true, Some(true)),
            ("bbb".to_owned(), false, None)
        ]
    );
    // With no grace, the token rotated out now goes at once; the earlier one, still in
    // its grace period, stays.
    let rotated = region
        .converge_scim(id, "idp-1", Some("ccc"), 0)
        .await
        .expect("rotate");
    assert_eq!(
        (rotated.inserted, rotated.retired, rotated.purged),
        (true, 1, 1)
    );
    let left: Vec<String> = hashes().await.into_iter().map(|h| h.0).collect();
    assert_eq!(left, ["aaa", "ccc"]);
    let off = region
        .converge_scim(id, "idp-1", None, 3600)
        .await
        .expect("off");
    assert_eq!(off.purged, 2);
    assert!(hashes().await.is_empty());
}
