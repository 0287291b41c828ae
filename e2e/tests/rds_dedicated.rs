//! A `Dedicated` tenant on an RDS Region end to end: the operator creates the tenant's own
//! instance in the stack's moto (identifier from the Tenant's UID, tags naming the tenant),
//! generates its master password into a per-tenant Secret, and — through the endpoint map
//! (moto's endpoints cannot be connected) — makes the tenant's database on the stack's
//! TLS-only eu-west-1 PostgreSQL as that master user (CREATEROLE, CREATEDB, not a
//! superuser), verified with `verify-full` against the Region's CA: forced RLS, the
//! region's data plane login reaching it with its own password and no BYPASSRLS. The
//! password never shows in the Tenant's status, an Event or the operator's log. Deleting
//! with `Snapshot` leaves a final snapshot in moto and no instance; `Delete` leaves
//! neither.
//!
//! The instance identifier is known only once the Tenant has its UID, and the endpoint
//! map is read at the operator's start: a first operator creates the instances (and
//! cannot reach them), a second one started with the map finishes the work.

use std::time::Duration;

use kube::Api;
use phoenix_crds::Region;
use phoenix_e2e::guard::ScenarioGuard;
use phoenix_e2e::scenario::*;
use phoenix_e2e::*;

const WITHIN: Duration = Duration::from_secs(120);
const AWS_REGION: &str = "eu-west-1";
const RESIDENCY: &str = "ZZRDSDED";

fn region_yaml(name: &str, identifier: &str, dbname: &str, master: &str) -> String {
    format!(
        "apiVersion: phoenixguardian.io/v1alpha1
kind: Region
metadata:
  name: {name}
spec:
  awsRegion: {AWS_REGION}
  role: Primary
  dataResidency: [{RESIDENCY}]
  capacity: {{maxTenants: 4}}
  database:
    databaseName: {dbname}
    rds:
      instanceIdentifier: {identifier}
      instanceClass: db.t3.micro
      allocatedStorageGib: 20
      masterUsername: {master}
      masterPasswordSecretRef: {{namespace: {NAMESPACE}, name: {name}-master, key: password}}
      caSecretRef: {{namespace: {NAMESPACE}, name: {name}-ca, key: ca.crt}}
"
    )
}

/// The 16 hex naming a tenant's database, role, instance and master user.
fn hex_of(uid: &str) -> String {
    phoenix_catalog::schemas::tenant_database(uid)
        .trim_start_matches("tdb_")
        .to_owned()
}

async fn region_ready(regions: &Api<Region>, name: &str) -> bool {
    regions
        .get(name)
        .await
        .ok()
        .and_then(|r| r.status)
        .is_some_and(|s| {
            s.conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        })
}

/// The tags of instance `identifier` in moto.
async fn tags_of(client: &aws_sdk_rds::Client, identifier: &str) -> Vec<(String, String)> {
    let found = client
        .describe_db_instances()
        .db_instance_identifier(identifier)
        .send()
        .await
        .unwrap_or_else(|e| panic!("instance {identifier} in moto: {e:?}"));
    let arn = found
        .db_instances()
        .first()
        .and_then(|i| i.db_instance_arn())
        .expect("an ARN")
        .to_owned();
    rds::tags(client, &arn).await
}

async fn instance_gone(client: &aws_sdk_rds::Client, identifier: &str) -> bool {
    let described = client
        .describe_db_instances()
        .db_instance_identifier(identifier)
        .send()
        .await;
    described
        .err()
        .and_then(|e| aws_sdk_rds::error::ProvideErrorMetadata::code(&e).map(str::to_owned))
        .as_deref()
        == Some("DBInstanceNotFound")
}

async fn snapshots_of(client: &aws_sdk_rds::Client, identifier: &str) -> Vec<String> {
    client
        .describe_db_snapshots()
        .db_instance_identifier(identifier)
        .send()
        .await
        .expect("DescribeDBSnapshots")
        .db_snapshots()
        .iter()
        .filter_map(|s| s.db_snapshot_identifier().map(str::to_owned))
        .collect()
}

/// Connects to `database` on the stand-in server with `dsn`'s login and TLS settings.
async fn connect_to(dsn: &str, database: &str) -> tokio_postgres::Client {
    let mut target = phoenix_catalog::connect::parse(dsn).expect("a DSN");
    target.config.dbname(database);
    target
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connect to {database}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dedicated_tenant_on_an_rds_region_gets_its_own_instance_and_deletion_follows_its_policy()
{
    let _serial = SERIAL.lock().await;
    install_platform();
    let id = rds::unique_suffix();
    let name = format!("rds-ded-{id}");
    let identifier = format!("phoenix-e2e-ded-{id}");
    let dbname = format!("rds_ded_{id}");
    let master = format!("rds_master_ded_{id}");
    let extra = [("REGION_RESYNC_SECONDS", "2")];
    let first_map = rds::stack_endpoint_map(std::slice::from_ref(&identifier), AWS_REGION);
    let mut operator = Some(rds::operator(3, &first_map, &extra).await);
    let mut cleanup = rds::RegionCleanup::new(AWS_REGION, &name, &dbname, &master);
    rds::apply_stack_ca(&name);
    kubectl_ok(
        &["apply", "-f", "-"],
        Some(&region_yaml(&name, &identifier, &dbname, &master)),
    );
    let region_password = eventually("the Region's master password", WITHIN, || async {
        secret_value(&format!("{name}-master"), "password").await
    })
    .await;
    rds::create_master_user(AWS_REGION, &master, &region_password).await;
    let db = pg(AWS_REGION).await;
    let regions: Api<Region> = Api::all(kube_client().await);
    eventually("the RDS region Ready", WITHIN, || async {
        region_ready(&regions, &name).await.then_some(())
    })
    .await;

    // Two Dedicated tenants: their instances are created (and cannot be reached yet).
    let scenario = ScenarioGuard::new(&format!("rds-ded-{id}"));
    let snap = format!("e2e-rdsded-snap-{id}");
    let del = format!("e2e-rdsded-del-{id}");
    scenario.apply(
        &(tenant_yaml(
            &snap,
            RESIDENCY,
            "  database: {isolation: Dedicated, deletionPolicy: Snapshot}\n",
        ) + &tenant_yaml(
            &del,
            RESIDENCY,
            "  database: {isolation: Dedicated, deletionPolicy: Delete}\n",
        )),
    );
    let rds_client = rds::client(AWS_REGION).await;
    let mut tenants = Vec::new();
    for tenant in [&snap, &del] {
        let t = wait_tenant(tenant, "a UID", WITHIN, |t| t.metadata.uid.is_some()).await;
        let uid = t.metadata.uid.clone().expect("uid");
        let hex = hex_of(&uid);
        cleanup.hexes.push(hex.clone());
        let instance = format!("phoenix-tenant-{hex}");
        let password = eventually("the tenant's master password", WITHIN, || async {
            secret_value(&format!("{instance}-master"), "password").await
        })
        .await;
        assert!(password.len() >= 32, "a strong password");
        // What RDS does for the instance's master user, on the stand-in server.
        rds::create_master_user(AWS_REGION, &format!("phoenix_master_{hex}"), &password).await;
        eventually("the tenant's instance in moto", WITHIN, || async {
            (!instance_gone(&rds_client, &instance).await).then_some(())
        })
        .await;
        let tags = tags_of(&rds_client, &instance).await;
        for (k, v) in [
            ("phoenixguardian.io/managed-by", "phoenix-operator"),
            ("phoenixguardian.io/region", name.as_str()),
            ("phoenixguardian.io/purpose", "tenant-dedicated"),
            ("phoenixguardian.io/tenant", tenant.as_str()),
            ("phoenixguardian.io/tenant-uid", uid.as_str()),
        ] {
            assert!(
                tags.contains(&(k.to_owned(), v.to_owned())),
                "{instance} lacks tag {k}={v}: {tags:?}"
            );
        }
        tenants.push((tenant.clone(), uid, hex, instance, password));
    }

    // A second operator, with the tenants' endpoints mapped, finishes the work.
    let first_log = operator.as_ref().map(Process::own_log).unwrap_or_default();
    drop(operator.take());
    let mut ids = vec![identifier.clone()];
    ids.extend(tenants.iter().map(|t| t.3.clone()));
    let map = rds::stack_endpoint_map(&ids, AWS_REGION);
    operator = Some(rds::operator(3, &map, &extra).await);
    let dataplane_url = secret_value(&format!("phoenix-dataplane-{name}"), "databaseUrl")
        .await
        .expect("the data plane Secret");
    let ca_file = stack_var("PG_CA_FILE");
    let dataplane_dsn = if dataplane_url.contains('?') {
        format!("{dataplane_url}&sslrootcert={ca_file}")
    } else {
        format!("{dataplane_url}?sslmode=verify-full&sslrootcert={ca_file}")
    };
    let admin_dsn = stack_var("PG_ADMIN_DSN_EU_WEST_1");
    for (tenant, uid, hex, _, _) in &tenants {
        let t = wait_tenant(tenant, "DatabaseReady", READY_TIMEOUT, |t| {
            condition(t, "DatabaseReady").is_some_and(|c| c.0 == "True")
        })
        .await;
        let (_, _, message) = condition(&t, "DatabaseReady").expect("DatabaseReady");
        let database = format!("tdb_{hex}");
        assert!(message.contains(&database), "{message}");
        // The database on the mapped server, owned by the tenant's role, RLS forced.
        let owner: String = db
            .query_one(
                "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = $1",
                &[&database],
            )
            .await
            .expect("the tenant's database exists on the mapped server")
            .get(0);
        assert_eq!(owner, format!("phoenix_tenant_{hex}"));
        // Made by the instance's own master user (not the Region's): it was granted the
        // tenant's role to create what that role owns.
        let member: bool = db
            .query_one(
                "SELECT pg_has_role($1, $2, 'MEMBER')",
                &[
                    &format!("phoenix_master_{hex}"),
                    &format!("phoenix_tenant_{hex}"),
                ],
            )
            .await
            .expect("membership")
            .get(0);
        assert!(member, "the tenant's master user did the server work");
        let inside = connect_to(&admin_dsn, &database).await;
        let forced: bool = inside
            .query_one(
                "SELECT relforcerowsecurity AND relrowsecurity FROM pg_class WHERE oid = 'clinical.patients'::regclass",
                &[],
            )
            .await
            .expect("clinical.patients")
            .get(0);
        assert!(forced, "RLS forced on the tenant's clinical tables");
        // The region's data plane login reaches it with its own credentials, bound by RLS.
        let dataplane = connect_to(&dataplane_dsn, &database).await;
        let (bypass, visible): (bool, i64) = dataplane
            .query_one(
                "SELECT (SELECT rolbypassrls FROM pg_roles WHERE rolname = current_user), (SELECT count(*) FROM clinical.patients)",
                &[],
            )
            .await
            .map(|r| (r.get(0), r.get(1)))
            .expect("the data plane reads the tenant's tables");
        assert!(!bypass, "the data plane login never bypasses RLS");
        assert_eq!(visible, 0, "no tenant set: no row visible");
        let catalog = connect_to(&admin_dsn, &dbname).await;
        let (published, host, port): (Option<String>, Option<String>, Option<i32>) = catalog
            .query_one(
                "SELECT database_name, database_host, database_port FROM catalog.tenants WHERE uid = $1",
                &[uid],
            )
            .await
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .expect("the tenant's catalog row");
        assert_eq!(published, Some(database));
        // Where the data plane reaches it: the instance's endpoint through the map.
        assert_eq!(host.as_deref(), Some("127.0.0.1"));
        assert_eq!(
            port.map(|p| p.to_string()),
            Some(stack_var("PG_PORT_EU_WEST_1"))
        );
    }

    // No password anywhere it must not be.
    let events = kubectl_ok(&["get", "events", "-A", "-o", "json"], None);
    let log = first_log + &operator.as_ref().map(Process::own_log).unwrap_or_default();
    assert!(
        log.contains(&tenants[0].3),
        "the operator logged the instance"
    );
    for (tenant, _, _, _, password) in &tenants {
        let status = kubectl_ok(&["get", "tenant", tenant, "-o", "json"], None);
        assert!(!status.contains(password), "the password is in {tenant}");
        assert!(!events.contains(password), "the password is in an Event");
        assert!(!log.contains(password), "the password is in the log");
    }

    // Snapshot: the instance goes with a final snapshot; Delete: without one.
    for (tenant, uid, _, instance, _) in &tenants {
        kubectl_ok(&["delete", "tenant", tenant, "--timeout=120s"], None);
        assert!(
            instance_gone(&rds_client, instance).await,
            "{instance} deleted"
        );
        let snapshots = snapshots_of(&rds_client, instance).await;
        if tenant == &snap {
            assert_eq!(snapshots, vec![format!("{instance}-final")]);
        } else {
            assert!(snapshots.is_empty(), "{snapshots:?}");
        }
        assert_eq!(
            secret_value(&format!("{instance}-master"), "password").await,
            None,
            "the master password Secret goes with the instance"
        );
        let rows: i64 = connect_to(&admin_dsn, &dbname)
            .await
            .query_one(
                "SELECT count(*) FROM catalog.tenants WHERE uid = $1",
                &[uid],
            )
            .await
            .expect("catalog")
            .get(0);
        assert_eq!(rows, 0, "the catalog row is gone");
    }
    drop(scenario);
    drop(cleanup);
    drop(operator);
}
