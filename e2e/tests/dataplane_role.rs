//! The Region's own data plane role end to end: a membership granted to it by hand is
//! revoked with a Warning Event, and a Secret left by an older operator (naming the shared
//! `phoenix_dataplane`) is moved to the Region's role while the old role keeps working.
//! Scenarios run one at a time (they share the API server and the operator they start).

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{Patch, PatchParams};
use phoenix_crds::Region;
use phoenix_e2e::events::{Regarding, instant, wait_event};
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
