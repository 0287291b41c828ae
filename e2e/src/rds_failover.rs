//! A failover scenario of RDS Regions (ADR 0014): a [`PgLineage`] with TLS (the stack's
//! PostgreSQL certificate) stands in for an RDS source instance and its read replicas.
//! Region `<prefix>-a` (Primary, `spec.database.rds`, in [`SOURCE_AWS_REGION`]) and
//! Replicas `<prefix>-b`, `<prefix>-c`, … of it (`spec.database.rds`, the first in
//! another AWS region: a cross-region read replica made from the source's ARN; the others
//! in the source's). moto answers the RDS API; the operator's endpoint map sends each
//! instance's moto endpoint to its server of the lineage. On the primary the scenario
//! does what RDS does for the master user: a login with CREATEROLE and CREATEDB (not a
//! superuser), `pg_signal_backend` and `pg_monitor` (RDS's `rds_superuser` has both:
//! ending sessions, reading the standby's WAL receiver), owning the `phoenix`
//! database; and, because the operator promotes a mapped server as RDS would promote the
//! instance, EXECUTE on `pg_promote`. Shared by `tests/rds_failover.rs` and
//! `examples/failover_bench.rs --rds`.

use crate::failover::names;
use crate::guard::ScenarioGuard;
use crate::pg_lineage::PgLineage;
use crate::{NAMESPACE, rds, stack_var};

/// The AWS region of the source instance (and of the same-region replicas).
pub const SOURCE_AWS_REGION: &str = "us-east-1";
/// The AWS region of the first replica (cross-region, by the source's ARN).
pub const CROSS_AWS_REGION: &str = "eu-west-1";

/// An RDS failover scenario's names and the operator setting it needs.
#[derive(Debug)]
pub struct RdsScenario {
    /// The source (Primary) Region.
    pub primary: String,
    /// The Replica Regions, in the order of the lineage's standbys.
    pub replicas: Vec<String>,
    /// Instance identifier of each Region (primary first).
    pub identifiers: Vec<String>,
    /// AWS region of each Region (primary first).
    pub aws_regions: Vec<String>,
    /// The master user.
    pub master: String,
    /// Its password (the source Region's master password Secret holds it).
    pub password: String,
    /// `PHOENIX_RDS_ENDPOINT_MAP` for the operator.
    pub endpoint_map: String,
}

impl RdsScenario {
    /// Names for `lineage` under `prefix` (identifiers unique per run: moto keeps
    /// instances for the stack's life), and the map to its servers.
    pub fn new(lineage: &PgLineage, prefix: &str) -> Self {
        let (primary, replicas) = names(prefix, lineage.standbys.len());
        let id = rds::unique_suffix();
        let identifiers: Vec<String> = std::iter::once(&primary)
            .chain(&replicas)
            .map(|r| format!("phoenix-{r}-{id}"))
            .collect();
        let aws_regions: Vec<String> = (0..identifiers.len())
            .map(|i| match i {
                1 => CROSS_AWS_REGION,
                _ => SOURCE_AWS_REGION,
            })
            .map(str::to_owned)
            .collect();
        let ports =
            std::iter::once(lineage.primary.port).chain(lineage.standbys.iter().map(|s| s.port));
        let endpoint_map = identifiers
            .iter()
            .zip(&aws_regions)
            .zip(ports)
            .map(|((id, aws), port)| format!("{}=127.0.0.1:{port}", rds::moto_host(id, aws)))
            .collect::<Vec<_>>()
            .join(",");
        Self {
            primary,
            replicas,
            identifiers,
            aws_regions,
            master: format!("{}_master", prefix.replace('-', "_")),
            password: format!("Rfo{id}{}x", std::process::id()),
            endpoint_map,
        }
    }

    /// What RDS does for the master user, done on the lineage's primary (replicated to
    /// the standbys).
    pub async fn prepare_master(&self, lineage: &PgLineage) {
        let m = &self.master;
        lineage
            .primary
            .admin()
            .await
            .batch_execute(&format!(
                "CREATE ROLE {m} LOGIN CREATEROLE CREATEDB NOSUPERUSER PASSWORD '{}';
                 GRANT pg_signal_backend, pg_monitor TO {m};
                 GRANT EXECUTE ON FUNCTION pg_promote(boolean, integer) TO {m};
                 ALTER DATABASE phoenix OWNER TO {m};",
                self.password
            ))
            .await
            .expect("the master user RDS would have made");
        lineage.caught_up().await;
    }

    fn region_yaml(&self, i: usize, residency: &str) -> String {
        let name = if i == 0 {
            &self.primary
        } else {
            &self.replicas[i - 1]
        };
        let role = if i == 0 {
            "Primary".to_owned()
        } else {
            format!("Replica\n  replicaOf: {}", self.primary)
        };
        format!(
            "---
apiVersion: phoenixguardian.io/v1alpha1
kind: Region
metadata:
  name: {name}
spec:
  awsRegion: {aws}
  role: {role}
  dataResidency: [{residency}]
  database:
    databaseName: phoenix
    rds:
      instanceIdentifier: {id}
      instanceClass: db.t3.micro
      allocatedStorageGib: 20
      masterUsername: {master}
      masterPasswordSecretRef: {{namespace: {NAMESPACE}, name: {name}-master, key: password}}
      caSecretRef: {{namespace: {NAMESPACE}, name: {primary}-ca, key: ca.crt}}
",
            aws = self.aws_regions[i],
            id = self.identifiers[i],
            master = self.master,
            primary = self.primary,
        )
    }

    /// Declares the source's master password and CA Secrets and the Regions (the replicas'
    /// master password Secrets are the operator's to fill: a read replica has its
    /// source's).
    pub fn declare(&self, guard: &ScenarioGuard, residency: &str) {
        let ca = std::fs::read_to_string(stack_var("PG_CA_FILE")).expect("read PG_CA_FILE");
        let secret = crate::secret_yaml;
        let mut manifest = secret(&format!("{}-ca", self.primary), "ca.crt", &ca);
        manifest.push_str(&secret(
            &format!("{}-master", self.primary),
            "password",
            &self.password,
        ));
        for i in 0..self.identifiers.len() {
            manifest.push_str(&self.region_yaml(i, residency));
        }
        guard.apply(&manifest);
    }

    /// Removes the master password Secrets the operator wrote for the replicas.
    pub fn forget_secrets(&self) {
        let names: Vec<String> = self
            .replicas
            .iter()
            .map(|r| format!("{r}-master"))
            .collect();
        let mut args = vec!["-n", NAMESPACE, "delete", "secret", "--ignore-not-found"];
        args.extend(names.iter().map(String::as_str));
        let _ = crate::try_kubectl(&args, None);
    }
}

/// Whether moto holds instance `identifier` (in `aws_region`) as promoted, i.e. no longer
/// a read replica. moto's `DescribeDBInstances` keeps reporting the source after
/// `PromoteReadReplica` (TESTBED.md) and its state dump fails on RDS instances, but it
/// refuses `StopDBInstance` on a read replica (`InvalidDBClusterStateFault`): a promoted
/// instance is stopped and started again at once (moto has no transitions).
pub async fn moto_promoted(identifier: &str, aws_region: &str) -> bool {
    use aws_sdk_rds::error::ProvideErrorMetadata;
    let client = rds::client(aws_region).await;
    match client
        .stop_db_instance()
        .db_instance_identifier(identifier)
        .send()
        .await
    {
        Ok(_) => {
            client
                .start_db_instance()
                .db_instance_identifier(identifier)
                .send()
                .await
                .expect("start the instance stopped to probe it");
            true
        }
        Err(e) if e.code() == Some("InvalidDBClusterStateFault") => false,
        Err(e) => panic!(
            "StopDBInstance {identifier}: {}",
            aws_sdk_rds::error::DisplayErrorContext(&e)
        ),
    }
}
