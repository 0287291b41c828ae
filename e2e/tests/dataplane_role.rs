//! The Region's own data plane role end to end: a membership granted to it by hand is
//! revoked with a Warning Event, and a Secret left by an older operator (naming the shared
//! `phoenix_dataplane`) is moved to the Region's role while the old role keeps working.
//! A password rotation requested with an annotation moves the Secret to the Region's other
//! login while a data plane on the old one keeps serving, and retires the old login once
//! that data plane has gone. Scenarios run one at a time (they share the API server and
//! the operator they start).

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{Patch, PatchParams};
use phoenix_crds::Region;
use phoenix_e2e::events::{Regarding, events_about, instant, wait_event};
use phoenix_e2e::scenario::*;
use phoenix_e2e::*;

const ROLE: &str = "phoenix_dataplane_us_east_1";

async fn ready_operator() -> Process {
    install_platform();
    let operator = Process::operator(10).await;
    let out = kubectl(
        &[
            "wait",
            "--for=condition=Ready",
            "region/us-east-1",
            "--timeout=120s",
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    operator
}

async fn us_east_1() -> Regarding {
    let regions: Api<Region> = Api::all(kube_client().await);
    Regarding::of(&regions.get("us-east-1").await.expect("region us-east-1"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_privileged_membership_granted_to_the_dataplane_role_is_revoked_with_an_event() {
    let _serial = SERIAL.lock().await;
    let _operator = ready_operator().await;
    let region = us_east_1().await;
    let db = pg("us-east-1").await;
    let since = instant();
    db.batch_execute(&format!("GRANT pg_write_all_data TO {ROLE}"))
        .await
        .expect("a membership granted by hand");
    eventually(
        "the membership revoked",
        Duration::from_secs(90),
        || async {
            let member: bool = db
                .query_one(
                    "SELECT pg_has_role($1, 'pg_write_all_data', 'MEMBER')",
                    &[&ROLE],
                )
                .await
                .ok()?
                .get(0);
            (!member).then_some(())
        },
    )
    .await;
    let event = wait_event(&region, "DatabaseDriftRepaired", since).await;
    let note = event.note.unwrap_or_default();
    assert!(
        note.contains("pg_write_all_data") && note.contains(ROLE),
        "{note}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_naming_the_shared_role_moves_to_the_regions_own_and_the_old_keeps_working() {
    let _serial = SERIAL.lock().await;
    let _operator = ready_operator().await;
    let region = us_east_1().await;
    let own_url = dataplane_url("us-east-1").await;
    // What an older operator left: the shared role with a password, its grants, and the
    // Region's Secret naming it.
    let password = "legacy-pw-0123456789";
    let db = pg("us-east-1").await;
    db.batch_execute(&format!(
        "DO $$ BEGIN CREATE ROLE phoenix_dataplane; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
         ALTER ROLE phoenix_dataplane LOGIN PASSWORD '{password}';
         GRANT USAGE ON SCHEMA catalog TO phoenix_dataplane;
         GRANT SELECT ON catalog.tenants TO phoenix_dataplane;"
    ))
    .await
    .expect("the shared role of an older operator");
    let (_, at) = own_url.split_once('@').expect("a URL with credentials");
    let legacy_url = format!("postgres://phoenix_dataplane:{password}@{at}");
    let secrets: Api<Secret> = Api::namespaced(kube_client().await, NAMESPACE);
    let since = instant();
    secrets
        .patch(
            "phoenix-dataplane-us-east-1",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"stringData": {
                "username": "phoenix_dataplane",
                "password": password,
                "databaseUrl": legacy_url,
            }})),
        )
        .await
        .expect("the Secret of an older operator");
    let moved = eventually(
        "the Secret moved to the Region's role",
        Duration::from_secs(60),
        || async {
            let url = dataplane_url("us-east-1").await;
            url.starts_with(&format!("postgres://{ROLE}:"))
                .then_some(url)
        },
    )
    .await;
    assert!(moved.contains(password), "the password is kept");
    wait_event(&region, "DataplaneRoleChanged", since).await;
    for (who, url) in [
        ("the Region's own role", &moved),
        ("the shared role", &legacy_url),
    ] {
        let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("{who} cannot log in: {e}"));
        tokio::spawn(conn);
        client
            .query_one("SELECT count(*) FROM catalog.tenants", &[])
            .await
            .unwrap_or_else(|e| panic!("{who} cannot read the catalog: {e}"));
    }
    // Leave the shared role as the other suites expect it: no password, no extra grants.
    db.batch_execute(
        "REVOKE SELECT ON catalog.tenants FROM phoenix_dataplane;
         REVOKE USAGE ON SCHEMA catalog FROM phoenix_dataplane;
         ALTER ROLE phoenix_dataplane PASSWORD NULL",
    )
    .await
    .expect("tidy");
}

/// The user of a `postgres://user:password@host/db` URL.
fn url_user(url: &str) -> String {
    url.trim_start_matches("postgres://")
        .split_once(':')
        .map(|(u, _)| u.to_owned())
        .expect("a URL with credentials")
}

async fn can_login(db: &tokio_postgres::Client, role: &str) -> bool {
    db.query_one(
        "SELECT rolcanlogin FROM pg_roles WHERE rolname = $1",
        &[&role],
    )
    .await
    .expect("the role exists")
    .get(0)
}

async fn ready(dataplane: &Process) -> bool {
    reqwest::get(format!("http://{}/readyz", dataplane.addr))
        .await
        .is_ok_and(|r| r.status().is_success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_moves_the_secret_to_the_other_login_and_retires_the_old_once_its_data_planes_left()
 {
    let _serial = SERIAL.lock().await;
    install_platform();
    // Region passes every 2 s, so draining is seen quickly.
    let _operator = Process::operator_with(
        "e2e-operator-rotation",
        10,
        &[("REGION_RESYNC_SECONDS", "2")],
    )
    .await;
    let out = kubectl(
        &[
            "wait",
            "--for=condition=Ready",
            "region/us-east-1",
            "--timeout=120s",
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let region = us_east_1().await;
    let db = pg("us-east-1").await;
    let old_url = dataplane_url("us-east-1").await;
    let old_login = url_user(&old_url);
    let ca = dataplane_ca_file("us-east-1").await;
    let mut old_dataplane = Process::dataplane("us-east-1", old_url.clone(), ca.clone()).await;

    let since = instant();
    let value = format!("e2e-{}", since.as_second());
    let out = kubectl(
        &[
            "annotate",
            "--overwrite",
            "region/us-east-1",
            &format!("phoenixguardian.io/rotate-dataplane-password={value}"),
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let new_url = eventually(
        "the Secret names the other login",
        Duration::from_secs(60),
        || async {
            let url = dataplane_url("us-east-1").await;
            (url_user(&url) != old_login).then_some(url)
        },
    )
    .await;
    let new_login = url_user(&new_url);
    assert!(
        [ROLE, "phoenix_dataplane2_us_east_1"].contains(&new_login.as_str()),
        "{new_login}"
    );
    assert_ne!(new_url, old_url);
    let rotating = wait_event(&region, "DataplanePasswordRotating", since).await;
    let note = rotating.note.unwrap_or_default();
    assert!(note.contains(&new_login) && note.contains(&value), "{note}");

    // Several Region passes later the old login still drains: the data plane started on
    // the old Secret keeps its pooled connections and serves.
    for _ in 0..4 {
        assert!(
            ready(&old_dataplane).await,
            "the old data plane stopped serving"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    assert!(
        can_login(&db, &old_login).await,
        "the old login was retired while in use"
    );
    let regions: Api<Region> = Api::all(kube_client().await);
    let credentials = regions
        .get("us-east-1")
        .await
        .expect("region")
        .status
        .and_then(|s| s.dataplane_credentials)
        .expect("status.dataplaneCredentials");
    assert_eq!(credentials.login.as_deref(), Some(new_login.as_str()));
    assert_eq!(credentials.draining.as_deref(), Some(old_login.as_str()));
    assert_eq!(credentials.rotation.as_deref(), Some(value.as_str()));
    assert!(
        credentials.draining_sessions.is_some_and(|n| n >= 1),
        "{credentials:?}"
    );
    assert!(
        events_about(&region, "DataplanePasswordRotated", since)
            .await
            .is_empty()
    );

    // The data plane moves: stop it, start one from the new Secret.
    old_dataplane.stop();
    let new_dataplane = Process::dataplane("us-east-1", new_url.clone(), ca).await;
    eventually("the old login retired", Duration::from_secs(60), || async {
        (!can_login(&db, &old_login).await).then_some(())
    })
    .await;
    let rotated = wait_event(&region, "DataplanePasswordRotated", since).await;
    let note = rotated.note.unwrap_or_default();
    assert!(note.contains(&old_login), "{note}");
    assert!(ready(&new_dataplane).await, "the new data plane serves");
    let credentials = eventually(
        "status without a draining login",
        Duration::from_secs(30),
        || async {
            let c = regions
                .get("us-east-1")
                .await
                .ok()?
                .status?
                .dataplane_credentials?;
            c.draining.is_none().then_some(c)
        },
    )
    .await;
    assert_eq!(credentials.login.as_deref(), Some(new_login.as_str()));
    let err = tokio_postgres::connect(&old_url, tokio_postgres::NoTls)
        .await
        .err()
        .expect("the old credentials no longer log in");
    let why = err
        .as_db_error()
        .map_or_else(|| err.to_string(), |d| d.message().to_owned());
    assert!(
        why.contains("password authentication failed") || why.contains("not permitted to log in"),
        "{why}"
    );
    let stored: Option<String> = db
        .query_one(
            "SELECT rolpassword FROM pg_authid WHERE rolname = $1",
            &[&old_login],
        )
        .await
        .expect("the old login")
        .get(0);
    assert_eq!(stored, None, "its password is gone");
}
