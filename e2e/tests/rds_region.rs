//! A Region with `spec.database.rds` end to end: the operator creates the instance in the
//! stack's moto, generates the master password into its Secret, and — through the
//! endpoint map (`PHOENIX_RDS_ENDPOINT_MAP`, moto's endpoints cannot be connected) —
//! provisions the Region's database on the stack's TLS-only eu-west-1 PostgreSQL, as
//! a master user that has CREATEROLE and CREATEDB but is not a superuser (what RDS gives:
//! `rds_superuser`), verified with `verify-full` against the CA Secret. The password
//! never shows in the Region's status, in an Event or in the operator's log. A wrong CA
//! gives a condition that says so.

use std::time::Duration;

use kube::Api;
use phoenix_crds::Region;
use phoenix_e2e::guard::ScenarioGuard;
use phoenix_e2e::scenario::*;
use phoenix_e2e::*;

const WITHIN: Duration = Duration::from_secs(120);
/// The AWS region of the instances and the stack server standing in for them.
const AWS_REGION: &str = "eu-west-1";

fn region_yaml(name: &str, identifier: &str, dbname: &str, master: &str, ca: &str) -> String {
    format!(
        "apiVersion: phoenixguardian.io/v1alpha1
kind: Region
metadata:
  name: {name}
spec:
  awsRegion: {AWS_REGION}
  role: Primary
  # A residency no tenant of the other suites asks for: nothing is placed here.
  dataResidency: [ZZRDS]
  capacity: {{maxTenants: 1}}
  database:
    databaseName: {dbname}
    rds:
      instanceIdentifier: {identifier}
      instanceClass: db.t3.micro
      allocatedStorageGib: 20
      masterUsername: {master}
      masterPasswordSecretRef: {{namespace: {NAMESPACE}, name: {name}-master, key: password}}
      caSecretRef: {{namespace: {NAMESPACE}, name: {ca}, key: ca.crt}}
"
    )
}

/// The endpoint map sending `identifiers`' moto endpoints to the stack's eu-west-1 server.
async fn ready_condition(regions: &Api<Region>, name: &str) -> Option<(String, String, String)> {
    let region = regions.get(name).await.ok()?;
    let c = region
        .status?
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Ready")?;
    Some((c.status, c.reason, c.message))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rds_region_creates_its_instance_and_becomes_ready_through_the_endpoint_map() {
    let _serial = SERIAL.lock().await;
    install_platform();
    let id = rds::unique_suffix();
    let name = format!("rds-e2e-{id}");
    let identifier = format!("phoenix-e2e-{id}");
    let dbname = format!("rds_e2e_{id}");
    let master = format!("rds_master_{id}");
    let map = rds::stack_endpoint_map(&[&identifier], AWS_REGION);
    let operator = rds::operator(3600, &map, &[("REGION_RESYNC_SECONDS", "2")]).await;
    let _cleanup = rds::RegionCleanup::new(AWS_REGION, &name, &dbname, &master);
    rds::apply_stack_ca(&name);
    // No master password Secret: the operator generates it.
    kubectl_ok(
        &["apply", "-f", "-"],
        Some(&region_yaml(
            &name,
            &identifier,
            &dbname,
            &master,
            &format!("{name}-ca"),
        )),
    );
    let password = eventually("the generated master password", WITHIN, || async {
        secret_value(&format!("{name}-master"), "password").await
    })
    .await;
    assert!(password.len() >= 32, "a strong password");

    // The instance in moto: the identifier asked for, tagged as the operator's.
    let rds = rds::client(AWS_REGION).await;
    let found = rds
        .describe_db_instances()
        .db_instance_identifier(&identifier)
        .send()
        .await
        .expect("the operator created the instance");
    let instance = found.db_instances().first().expect("one instance");
    assert_eq!(instance.master_username(), Some(master.as_str()));
    let tags = rds::tags(&rds, instance.db_instance_arn().expect("an ARN")).await;
    let tag = |k: &str| rds::tag(&tags, k);
    assert_eq!(
        tag("phoenixguardian.io/managed-by"),
        Some("phoenix-operator")
    );
    assert_eq!(tag("phoenixguardian.io/region"), Some(name.as_str()));

    // What RDS does for the master user, done on the stand-in server: a login with
    // CREATEROLE and CREATEDB, not a superuser, with the generated password.
    rds::create_master_user(AWS_REGION, &master, &password).await;
    let db = pg(AWS_REGION).await;

    let regions: Api<Region> = Api::all(kube_client().await);
    let (_, reason, message) = eventually("the RDS region Ready", WITHIN, || async {
        ready_condition(&regions, &name)
            .await
            .filter(|(status, _, _)| status == "True")
    })
    .await;
    assert_eq!(reason, "Reconciled", "{message}");

    // Its database was made and migrated by the master user, and the data plane logs in.
    let owner: String = db
        .query_one(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = $1",
            &[&dbname],
        )
        .await
        .expect("the region database exists")
        .get(0);
    assert_eq!(owner, master);
    let url = secret_value(&format!("phoenix-dataplane-{name}"), "databaseUrl")
        .await
        .expect("the data plane Secret");
    assert!(
        url.contains(&format!("127.0.0.1:{}", stack_var("PG_PORT_EU_WEST_1"))),
        "the data plane is told the mapped endpoint"
    );
    let ca_file = stack_var("PG_CA_FILE");
    let dataplane_dsn = if url.contains('?') {
        format!("{url}&sslrootcert={ca_file}")
    } else {
        format!("{url}?sslmode=verify-full&sslrootcert={ca_file}")
    };
    let dataplane = pg_connect(&dataplane_dsn)
        .await
        .expect("the data plane role logs in");
    let bypass: bool = dataplane
        .query_one(
            "SELECT rolbypassrls FROM pg_roles WHERE rolname = current_user",
            &[],
        )
        .await
        .expect("its attributes")
        .get(0);
    assert!(!bypass, "the data plane role never bypasses RLS");

    // A tenant placed there is provisioned through the same instance (tenants look it up,
    // never create it), by the same master user.
    let scenario = ScenarioGuard::new(&format!("rds-{id}"));
    let tenant = format!("e2e-rds-{id}");
    scenario.apply(&tenant_yaml(&tenant, "ZZRDS", ""));
    let placed = wait_tenant(&tenant, "DatabaseReady", READY_TIMEOUT, |t| {
        condition(t, "DatabaseReady").is_some_and(|c| c.0 == "True")
    })
    .await;
    let uid = placed.metadata.uid.clone().expect("uid");
    let admin_dsn =
        stack_var("PG_ADMIN_DSN_EU_WEST_1").replace("/phoenix?", &format!("/{dbname}?"));
    let rows: i64 = pg_connect(&admin_dsn)
        .await
        .expect("the RDS region's database")
        .query_one(
            "SELECT count(*) FROM catalog.tenants WHERE uid = $1",
            &[&uid],
        )
        .await
        .expect("its catalog")
        .get(0);
    assert_eq!(rows, 1, "the tenant's row is in the RDS region's catalog");

    // The password is nowhere it must not be.
    let status = kubectl_ok(&["get", "region", &name, "-o", "json"], None);
    assert!(!status.contains(&password), "the password is in the Region");
    let events = kubectl_ok(&["get", "events", "-A", "-o", "json"], None);
    assert!(events.contains(&name), "the Region has Events to look at");
    assert!(!events.contains(&password), "the password is in an Event");
    let log = operator.own_log();
    assert!(log.contains(&name), "the operator logged about the Region");
    assert!(!log.contains(&password), "the password is in the log");

    // The master user cannot take BYPASSRLS away (only a superuser can, and on RDS nobody
    // is one): a data plane role someone gave it is refused, not used.
    let role = secret_value(&format!("phoenix-dataplane-{name}"), "username")
        .await
        .expect("the data plane login");
    db.batch_execute(&format!("ALTER ROLE {role} BYPASSRLS"))
        .await
        .expect("a superuser of the stand-in server grants BYPASSRLS");
    let (status, _, message) = eventually("the unsafe role refused", WITHIN, || async {
        ready_condition(&regions, &name)
            .await
            .filter(|(_, reason, _)| reason == "UnsafeDataplaneRole")
    })
    .await;
    assert_eq!(status, "False");
    assert!(
        message.contains(&role) && message.contains("BYPASSRLS"),
        "{message}"
    );
    // Taken away again (as a superuser would), the Region recovers; its tenant is then
    // deleted by the scenario guard before the Region.
    db.batch_execute(&format!("ALTER ROLE {role} NOBYPASSRLS"))
        .await
        .expect("NOBYPASSRLS");
    eventually("the RDS region Ready again", WITHIN, || async {
        ready_condition(&regions, &name)
            .await
            .filter(|(status, _, _)| status == "True")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rds_region_verified_against_the_wrong_ca_says_so() {
    let _serial = SERIAL.lock().await;
    install_platform();
    let id = rds::unique_suffix();
    let name = format!("rds-e2e-ca-{id}");
    let identifier = format!("phoenix-e2e-ca-{id}");
    let dbname = format!("rds_e2e_ca_{id}");
    let master = format!("rds_master_ca_{id}");
    let map = rds::stack_endpoint_map(&[&identifier], AWS_REGION);
    let _operator = rds::operator(3600, &map, &[("REGION_RESYNC_SECONDS", "2")]).await;
    let _cleanup = rds::RegionCleanup::new(AWS_REGION, &name, &dbname, &master);
    let password = format!("pw-{id}-0123456789abcdef");
    rds::create_master_user(AWS_REGION, &master, &password).await;
    let unrelated = include_str!("../../catalog/tests/fixtures/unrelated-ca.crt");
    let secrets = secret_yaml(&format!("{name}-ca"), "ca.crt", unrelated)
        + &secret_yaml(&format!("{name}-master"), "password", &password);
    kubectl_ok(&["apply", "-f", "-"], Some(&secrets));
    kubectl_ok(
        &["apply", "-f", "-"],
        Some(&region_yaml(
            &name,
            &identifier,
            &format!("rds_e2e_ca_{id}"),
            &master,
            &format!("{name}-ca"),
        )),
    );
    let regions: Api<Region> = Api::all(kube_client().await);
    let (status, _, message) = eventually("the untrusted certificate reported", WITHIN, || async {
        ready_condition(&regions, &name)
            .await
            .filter(|(_, reason, _)| reason == "DatabaseCertificateUntrusted")
    })
    .await;
    assert_eq!(status, "False");
    assert!(
        message.contains("spec.database.rds.caSecretRef")
            && message.contains(&format!("{name}-ca"))
            && message.contains("certificate"),
        "{message}"
    );
    assert!(!message.contains(&password), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_password_secret_without_the_key_gets_it_and_keeps_its_other_keys() {
    let _serial = SERIAL.lock().await;
    install_platform();
    let id = rds::unique_suffix();
    let name = format!("rds-e2e-key-{id}");
    let identifier = format!("phoenix-e2e-key-{id}");
    let map = rds::stack_endpoint_map(&[&identifier], AWS_REGION);
    let _operator = rds::operator(3600, &map, &[]).await;
    let _cleanup = rds::RegionCleanup::new(
        AWS_REGION,
        &name,
        &format!("rds_e2e_key_{id}"),
        &format!("rds_master_key_{id}"),
    );
    let ca = std::fs::read_to_string(stack_var("PG_CA_FILE")).expect("read PG_CA_FILE");
    let secrets = secret_yaml(&format!("{name}-ca"), "ca.crt", &ca)
        + &secret_yaml(&format!("{name}-master"), "note", "kept by its owner");
    kubectl_ok(&["apply", "-f", "-"], Some(&secrets));
    kubectl_ok(
        &["apply", "-f", "-"],
        Some(&region_yaml(
            &name,
            &identifier,
            &format!("rds_e2e_key_{id}"),
            &format!("rds_master_key_{id}"),
            &format!("{name}-ca"),
        )),
    );
    let password = eventually("the generated master password", WITHIN, || async {
        secret_value(&format!("{name}-master"), "password").await
    })
    .await;
    assert!(password.len() >= 32);
    assert_eq!(
        secret_value(&format!("{name}-master"), "note")
            .await
            .as_deref(),
        Some("kept by its owner")
    );
    // The next passes read it back rather than generating another.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        secret_value(&format!("{name}-master"), "password").await,
        Some(password)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_shows_the_instance_it_would_create_and_creates_nothing() {
    let _serial = SERIAL.lock().await;
    install_platform();
    let id = rds::unique_suffix();
    let name = format!("rds-e2e-plan-{id}");
    let identifier = format!("phoenix-e2e-plan-{id}");
    let manifest = std::env::temp_dir().join(format!("{name}.yaml"));
    std::fs::write(
        &manifest,
        region_yaml(
            &name,
            &identifier,
            &format!("rds_e2e_plan_{id}"),
            "phoenix_admin",
            &format!("{name}-ca"),
        ),
    )
    .expect("write the manifest");
    let out = std::process::Command::new(binary("phoenix-operator"))
        .args(["plan", "-f"])
        .arg(&manifest)
        .env("KUBECONFIG", stack_var("KUBECONFIG"))
        .env("OPERATOR_NAMESPACE", NAMESPACE)
        .output()
        .expect("phoenix-operator plan runs");
    let _ = std::fs::remove_file(&manifest);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("create RDS instance {identifier} in {AWS_REGION}")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "generate master password in secret {NAMESPACE}/{name}-master"
        )),
        "{stdout}"
    );
    // Nothing was written: no instance, no Secret.
    let described = rds::client(AWS_REGION)
        .await
        .describe_db_instances()
        .db_instance_identifier(&identifier)
        .send()
        .await;
    let code = described
        .err()
        .and_then(|e| aws_sdk_rds::error::ProvideErrorMetadata::code(&e).map(str::to_owned));
    assert_eq!(
        code.as_deref(),
        Some("DBInstanceNotFound"),
        "plan created {identifier}"
    );
    assert_eq!(
        secret_value(&format!("{name}-master"), "password").await,
        None
    );
}
