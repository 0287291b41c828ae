//! A data plane password rotation on a Region with a `Dedicated` tenant, through the real
//! operator: the tenant's database is made to look as it did before the Region's second
//! login existed (no CONNECT, no grants for it there), the tenant's own pass is kept away
//! (resync of an hour), and the moment the Secret names the new login, that login reaches
//! the tenant's database and reads its clinical tables (ADR 0010).

use phoenix_e2e::guard::ScenarioGuard;
use phoenix_e2e::scenario::*;
use phoenix_e2e::*;
use std::time::Duration;

fn url_user(url: &str) -> String {
    url.trim_start_matches("postgres://")
        .split_once(':')
        .map(|(u, _)| u.to_owned())
        .expect("a URL with credentials")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rotated_login_reaches_a_dedicated_tenant_database_once_the_secret_names_it() {
    let _serial = SERIAL.lock().await;
    install_platform();
    // Tenants resync hourly (their pass would grant the login too); Regions every 2 s.
    let _operator = Process::operator_with(
        "e2e-operator-rotation-dedicated",
        3600,
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
    let scenario = ScenarioGuard::new("rotation-dedicated");
    scenario.apply(&tenant_yaml(
        "e2e-rotd",
        "US",
        "  database: {isolation: Dedicated, deletionPolicy: Delete}\n",
    ));
    let t = wait_tenant("e2e-rotd", "Ready", READY_TIMEOUT, is_ready).await;
    let uid = t.metadata.uid.clone().expect("uid");
    let database = phoenix_catalog::schemas::tenant_database(&uid);
    let id = t
        .status
        .as_ref()
        .and_then(|s| s.endpoints.as_ref())
        .expect("endpoints")
        .catalog_id;

    let old_url = dataplane_url("us-east-1").await;
    let old_login = url_user(&old_url);
    let other = if old_login.starts_with("phoenix_dataplane2_") {
        old_login.replacen("phoenix_dataplane2_", "phoenix_dataplane_", 1)
    } else {
        old_login.replacen("phoenix_dataplane_", "phoenix_dataplane2_", 1)
    };
    // As before the other login existed: nothing of it in the tenant's database.
    let dsn = std::env::var("PG_ADMIN_DSN_US_EAST_1").expect("source the stack's env");
    let mut admin = phoenix_catalog::connect::parse(&dsn).expect("admin DSN");
    admin.config.dbname(&database);
    let inside = admin.connect().await.expect("the tenant's database");
    let exists: bool = inside
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)",
            &[&other],
        )
        .await
        .expect("role")
        .get(0);
    if exists {
        inside
            .batch_execute(&format!(
                "REVOKE ALL ON ALL TABLES IN SCHEMA clinical FROM \"{other}\";
                 REVOKE USAGE ON SCHEMA clinical FROM \"{other}\";
                 REVOKE SELECT ON catalog.tenants FROM \"{other}\";
                 REVOKE CONNECT ON DATABASE \"{database}\" FROM \"{other}\";"
            ))
            .await
            .expect("revoke the other login's grants");
    }

    let value = format!("e2e-rotd-{}", phoenix_e2e::events::instant().as_second());
    kubectl_ok(
        &[
            "annotate",
            "--overwrite",
            "region/us-east-1",
            &format!("phoenixguardian.io/rotate-dataplane-password={value}"),
        ],
        None,
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
    assert_eq!(url_user(&new_url), other);

    // At once (no tenant pass in between): the new login reaches the tenant's database.
    let mut target = phoenix_catalog::connect::parse(&new_url).expect("the new URL");
    target.config.dbname(&database);
    let client = target
        .connect()
        .await
        .expect("the new login connects to the tenant's database");
    client
        .batch_execute(&format!("SET app.tenant_id = '{id}'"))
        .await
        .expect("tenant");
    client
        .query_one("SELECT count(*) FROM clinical.patients", &[])
        .await
        .expect("the new login reads the tenant's clinical tables");
    client
        .query_one("SELECT count(*) FROM catalog.tenants", &[])
        .await
        .expect("and catalog.tenants there");
    drop(client);
    drop(inside);
    drop(scenario);
}
