//! The writer of a Region that declares `spec.database.rds`: its master password (read
//! from its Secret, else generated into it), its RDS instance made to exist and found
//! `available` (a later pass checks again: nothing waits here), and the connection to
//! it as the master user with TLS `verify-full` against `caSecretRef`. The endpoint RDS
//! reports goes through the operator's endpoint map (a test and development facility,
//! docs/adr/0012-rds-regions.md).
//!
//! A Replica Region's instance is a read replica of its source Region's (by ARN across AWS
//! regions), with the source's master password; flipped to Primary it is promoted with
//! `PromoteReadReplica` ([`promote_replica`], called by the failover step under the
//! lineage claim; docs/adr/0014).
//!
//! This step writes (the Secret, the instance) before the Region's dereference reads the
//! database: there is no database to read until it exists.

use std::collections::BTreeMap;

use kube::ResourceExt;
use phoenix_catalog::connect::{PgTarget, SslMode};
use phoenix_crds::Region;
use phoenix_crds::region::RdsInstance;

use crate::controller::error::{ApplyError, DerefError, Error};
use crate::controller::providers::{Database, DbTarget};
use crate::controller::world::World;
use crate::rds::{self, Ensured, InstanceSpec};
use crate::secrets::{SecretError, generate_password};

/// Purpose tag of a Region's writer instance.
pub const WRITER_PURPOSE: &str = "region-writer";

/// Purpose tag of a Replica Region's instance, a read replica of its source's.
pub const REPLICA_PURPOSE: &str = "region-replica";

/// Length of a generated master password (RDS allows 8–128 printable characters but
/// not `/`, `"`, `@` or space: alphanumerics only).
const PASSWORD_LEN: usize = 40;

/// What the operator asks RDS for, for Region `region`.
pub fn instance_spec(region: &str, rds: &RdsInstance) -> InstanceSpec {
    InstanceSpec {
        identifier: rds.instance_identifier.clone(),
        instance_class: rds.instance_class.clone(),
        engine_version: rds.engine_version.clone(),
        allocated_storage_gib: rds.allocated_storage_gib,
        multi_az: rds.multi_az,
        master_username: rds.master_username.clone(),
        tags: rds::region_tags(region, WRITER_PURPOSE),
    }
}

/// The master password in `spec.database.rds.masterPasswordSecretRef`, generated into
/// that Secret (created when missing, the key added when absent) the first time.
async fn master_password(
    world: &World<'_>,
    region: &str,
    rds: &RdsInstance,
) -> Result<String, DerefError> {
    let secrets = &world.providers.secrets;
    let r = &rds.master_password_secret_ref;
    match secrets.get(r).await {
        Ok(password) => return Ok(password),
        Err(SecretError::NotFound { .. } | SecretError::MissingKey { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    let generated = generate_password(PASSWORD_LEN);
    match secrets.read(&r.namespace, &r.name).await? {
        None => {
            let labels = BTreeMap::from([
                (
                    "app.kubernetes.io/managed-by".to_owned(),
                    "phoenix-operator".to_owned(),
                ),
                ("phoenixguardian.io/region".to_owned(), region.to_owned()),
            ]);
            let data = BTreeMap::from([(r.key.clone(), generated)]);
            // Another writer may have created it first: theirs wins.
            let (theirs, _) = secrets.create(&r.namespace, &r.name, labels, data).await?;
            theirs.get(&r.key).cloned().ok_or_else(|| {
                SecretError::MissingKey {
                    namespace: r.namespace.clone(),
                    name: r.name.clone(),
                    key: r.key.clone(),
                }
                .into()
            })
        }
        Some(_) => {
            // Server-side apply of the one key: the Secret's other keys stay theirs.
            let data = BTreeMap::from([(r.key.clone(), generated.clone())]);
            secrets
                .put(&r.namespace, &r.name, BTreeMap::new(), None, data)
                .await?;
            Ok(generated)
        }
    }
}

/// Where `instance` is connected (its endpoint through `map`), once it is `available`;
/// until then `None`: the pass fails with [`not_available`] and is retried.
pub fn connectable(
    instance: &rds::Instance,
    map: &crate::rds::endpoint_map::EndpointMap,
) -> Option<(String, u16)> {
    match (&instance.endpoint, instance.available()) {
        (Some((host, port)), true) => Some(map.resolve(host, *port)),
        _ => None,
    }
}

/// The error of a pass that found `instance` not available yet.
pub fn not_available(instance: &rds::Instance) -> DerefError {
    DerefError::RdsNotAvailable {
        identifier: instance.identifier.clone(),
        status: instance.status.clone(),
    }
}

/// Whether finding the writer may create what is missing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Generate the password and create the instance when missing (a live Region).
    Ensure,
    /// Only what exists (a Region being deleted must not create an instance).
    Existing,
}

/// `instance` if it is Region `region`'s own: tagged as its writer, or as its read
/// replica (a Replica Region's instance keeps that tag after its promotion, ADR 0014).
pub fn check_region_owned(
    instance: rds::Instance,
    aws_region: &str,
    region: &str,
) -> Result<rds::Instance, rds::RdsError> {
    let purpose = match instance.tags.get(rds::PURPOSE_TAG).map(String::as_str) {
        Some(REPLICA_PURPOSE) => REPLICA_PURPOSE,
        _ => WRITER_PURPOSE,
    };
    rds::check_owned(instance, aws_region, &rds::region_tags(region, purpose))
}

/// The RDS settings of `source`, the Region that Replica `region` (declaring `rds`)
/// follows: an RDS Region with the same master user (a read replica has its source's
/// master user and password).
fn source_rds(
    region: &Region,
    source: &Region,
    rds: &RdsInstance,
) -> Result<RdsInstance, rds::RdsError> {
    let (name, src) = (region.name_any(), source.name_any());
    let Some(src_rds) = source.spec.database.rds.clone() else {
        return Err(rds::RdsError::Refused(format!(
            "region {name} declares spec.database.rds and is a Replica of region {src}, whose database is not an RDS instance (spec.database.writer): an RDS read replica needs an RDS source. Make {src} an RDS Region, or give {name} spec.database.writer pointing at a standby of {src}'s writer"
        )));
    };
    if src_rds.master_username != rds.master_username {
        return Err(rds::RdsError::Refused(format!(
            "region {name}'s masterUsername is {}, but a read replica has its source's master user: region {src}'s is {}; set spec.database.rds.masterUsername to it",
            rds.master_username, src_rds.master_username
        )));
    }
    Ok(src_rds)
}

/// The master password of a Replica: its source's (RDS copies it), written to the
/// Replica's own `masterPasswordSecretRef` when that is missing, so that the Region still
/// logs in once it is promoted. An own Secret holding another password is refused.
async fn replica_password(
    world: &World<'_>,
    region: &str,
    rds: &RdsInstance,
    source: &RdsInstance,
    mode: Mode,
) -> Result<String, DerefError> {
    let secrets = &world.providers.secrets;
    let password = secrets.get(&source.master_password_secret_ref).await?;
    let own = &rds.master_password_secret_ref;
    if own == &source.master_password_secret_ref {
        return Ok(password);
    }
    match secrets.get(own).await {
        Ok(p) if p == password => Ok(password),
        Ok(_) => Err(rds::RdsError::Refused(format!(
            "secret {}/{} key {} (spec.database.rds.masterPasswordSecretRef) holds another password than the source's ({}/{}); a read replica has its source's master password: remove the key and the operator copies it there",
            own.namespace, own.name, own.key, source.master_password_secret_ref.namespace, source.master_password_secret_ref.name
        ))
        .into()),
        Err(SecretError::NotFound { .. } | SecretError::MissingKey { .. })
            if mode == Mode::Ensure =>
        {
            let data = BTreeMap::from([(own.key.clone(), password.clone())]);
            if secrets.read(&own.namespace, &own.name).await?.is_none() {
                let labels = BTreeMap::from([
                    (
                        "app.kubernetes.io/managed-by".to_owned(),
                        "phoenix-operator".to_owned(),
                    ),
                    ("phoenixguardian.io/region".to_owned(), region.to_owned()),
                ]);
                secrets.create(&own.namespace, &own.name, labels, data).await?;
            } else {
                secrets
                    .put(&own.namespace, &own.name, BTreeMap::new(), None, data)
                    .await?;
            }
            Ok(password)
        }
        // Only reading: the source's password is the one that logs in.
        Err(SecretError::NotFound { .. } | SecretError::MissingKey { .. }) => Ok(password),
        Err(e) => Err(e.into()),
    }
}

/// Makes a Replica Region's instance exist: a read replica of its source's instance
/// (by identifier in the same AWS region, by ARN across regions), tagged `region-replica`.
async fn ensure_replica(
    world: &World<'_>,
    region: &Region,
    rds: &RdsInstance,
    source: &Region,
    source_rds: &RdsInstance,
) -> Result<Ensured, DerefError> {
    let name = region.name_any();
    let aws_region = &region.spec.aws_region;
    let provider = world.providers.rds.as_ref();
    if let Some(found) = provider
        .describe(aws_region, &rds.instance_identifier)
        .await?
    {
        return Ok(Ensured::Existing(check_region_owned(
            found, aws_region, &name,
        )?));
    }
    let src_aws = &source.spec.aws_region;
    let src = provider
        .describe(src_aws, &source_rds.instance_identifier)
        .await?
        .ok_or_else(|| rds::RdsError::NotFound {
            identifier: source_rds.instance_identifier.clone(),
            aws_region: src_aws.clone(),
        })?;
    let src = check_region_owned(src, src_aws, &source.name_any())?;
    let source_ref = if src_aws == aws_region {
        src.identifier.clone()
    } else {
        src.arn.clone().ok_or_else(|| rds::RdsError::Request {
            operation: "DescribeDBInstances",
            identifier: src.identifier.clone(),
            reason: "no ARN reported, which a cross-region read replica needs".to_owned(),
        })?
    };
    let spec = rds::ReplicaSpec {
        identifier: rds.instance_identifier.clone(),
        source: source_ref,
        instance_class: rds.instance_class.clone(),
        tags: rds::region_tags(&name, REPLICA_PURPOSE),
    };
    Ok(rds::ensure_read_replica(provider, aws_region, &spec).await?)
}

/// A `verify-full` connection to an RDS instance, and where it goes.
pub struct Verified {
    /// The connection settings.
    pub pg: PgTarget,
    /// The host connected to (the instance's endpoint, or where the endpoint map sends it).
    pub host: String,
    /// Its port.
    pub port: u16,
    /// The PEM CA the server's certificate is verified with.
    pub ca: String,
}

/// How the operator connects to `instance` as `user` into `dbname`: `verify-full` against
/// the CA of `rds.caSecretRef` (`whose` follows that name in errors, e.g. " of region x").
pub async fn verify_full(
    world: &World<'_>,
    instance: &rds::Instance,
    rds: &RdsInstance,
    whose: &str,
    user: &str,
    password: &str,
    dbname: &str,
) -> Result<Verified, DerefError> {
    let (host, port) = connectable(instance, &world.settings.rds_endpoints)
        .ok_or_else(|| not_available(instance))?;
    let ca = world.providers.secrets.get(&rds.ca_secret_ref).await?;
    let origin = format!(
        "secret {}/{} key {} (spec.database.rds.caSecretRef{whose})",
        rds.ca_secret_ref.namespace, rds.ca_secret_ref.name, rds.ca_secret_ref.key
    );
    let mut config = tokio_postgres::Config::new();
    config
        .host(&host)
        .port(port)
        .user(user)
        .password(password.as_bytes())
        .dbname(dbname);
    let pg = PgTarget::from(config)
        .with_ssl_mode(SslMode::VerifyFull)
        .with_ca_pem(ca.as_bytes(), &origin)
        .map_err(|e| DerefError::InvalidConnectionString(e.to_string()))?;
    Ok(Verified { pg, host, port, ca })
}

/// How the writer of `region` (declaring `rds`) is reached, once its instance exists and
/// is available. A Replica's instance is a read replica of its source's.
pub async fn writer_target(
    world: &World<'_>,
    region: &Region,
    rds: &RdsInstance,
    mode: Mode,
) -> Result<DbTarget, DerefError> {
    let name = region.name_any();
    let spec = instance_spec(&name, rds);
    let aws_region = &region.spec.aws_region;
    let provider = world.providers.rds.as_ref();
    let source = match (region.spec.role, region.spec.replica_of.as_deref()) {
        (phoenix_crds::RegionRole::Replica, Some(source)) => {
            let src = world.region(source).ok_or_else(|| {
                DerefError::RegionNotFound(format!(
                    "spec.replicaOf names region {source}, which is not declared; create it or fix spec.replicaOf"
                ))
            })?;
            let src_rds = source_rds(region, &src, rds)?;
            Some((src, src_rds))
        }
        _ => None,
    };
    let (password, ensured) = match (mode, &source) {
        (Mode::Ensure, Some((src, src_rds))) => {
            let password = replica_password(world, &name, rds, src_rds, mode).await?;
            let ensured = ensure_replica(world, region, rds, src, src_rds).await?;
            (password, ensured)
        }
        (Mode::Ensure, None) => {
            let password = master_password(world, &name, rds).await?;
            let ensured = match provider.describe(aws_region, &spec.identifier).await? {
                // Its writer, or its promoted read replica.
                Some(found) => Ensured::Existing(check_region_owned(found, aws_region, &name)?),
                None => rds::ensure_instance(provider, aws_region, &spec, &password).await?,
            };
            (password, ensured)
        }
        (Mode::Existing, _) => {
            let found = provider
                .describe(aws_region, &spec.identifier)
                .await?
                .ok_or_else(|| rds::RdsError::NotFound {
                    identifier: spec.identifier.clone(),
                    aws_region: aws_region.clone(),
                })?;
            // Never connect to (let alone act on) an instance that is not ours.
            let found = check_region_owned(found, aws_region, &name)?;
            let password = match &source {
                Some((_, src_rds)) => replica_password(world, &name, rds, src_rds, mode).await?,
                None => {
                    world
                        .providers
                        .secrets
                        .get(&rds.master_password_secret_ref)
                        .await?
                }
            };
            (password, Ensured::Existing(found))
        }
    };
    if let Ensured::Created(_) = &ensured {
        tracing::info!(region = %name, instance = %spec.identifier, "RDS instance created");
    }
    let instance = ensured.instance();
    let Verified { pg, host, port, ca } = verify_full(
        world,
        instance,
        rds,
        "",
        &rds.master_username,
        &password,
        &region.spec.database.database_name,
    )
    .await?;
    Ok(DbTarget {
        pg,
        fingerprint: format!(
            "rds:{}:{host}:{port}:{}:{password}#ca={ca}#{}",
            instance.identifier, rds.master_username, region.spec.database.database_name
        ),
        ca_pem: Some(ca),
    })
}

/// What a promotion pass does about `found` as RDS describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PromotionCall<'a> {
    /// Ask RDS to promote it: still a read replica of this source, and `available`.
    Ask(&'a str),
    /// Requeue: still a read replica but not `available` (a promotion in progress is
    /// `modifying`, and RDS refuses a second call then).
    Wait,
    /// Nothing to ask: a standalone instance (promoted already, or never a replica).
    Nothing,
}

/// What a promotion pass does about `found` ([`PromotionCall`]).
pub fn promotion_call(found: &rds::Instance) -> PromotionCall<'_> {
    match &found.replica_source {
        Some(_) if !found.available() => PromotionCall::Wait,
        Some(source) => PromotionCall::Ask(source),
        None => PromotionCall::Nothing,
    }
}

/// Whether `found`'s endpoint is mapped: the server there stands in for the instance, and
/// a promotion promotes it as RDS would promote the instance's.
pub fn stands_in(found: &rds::Instance, map: &crate::rds::endpoint_map::EndpointMap) -> bool {
    found
        .endpoint
        .as_ref()
        .is_some_and(|(host, port)| map.maps(host, *port))
}

/// The promotion of an RDS Region's read replica (ADR 0014): `PromoteReadReplica` through
/// the `Rds` provider while RDS still reports the instance as a replica of a source, then
/// done when the server itself is out of recovery — that, not the API, is what says the
/// promotion finished (moto keeps reporting the source after the promotion, and RDS
/// reports `available` with the source gone only minutes later). A server reached
/// through the endpoint map stands in for the instance and is promoted (`pg_promote`) as
/// RDS would promote it; a real instance is waited for (requeue, not sleep). Idempotent:
/// RDS refuses a second call while `modifying`, and the server answers for itself.
/// Returns what the Event says of it.
pub async fn promote_replica(
    region: &Region,
    rds: &RdsInstance,
    world: &World<'_>,
    db: &dyn Database,
) -> Result<String, Error> {
    let name = region.name_any();
    let aws_region = &region.spec.aws_region;
    let id = &rds.instance_identifier;
    let provider = world.providers.rds.as_ref();
    let found = provider
        .describe(aws_region, id)
        .await
        .map_err(DerefError::from)?
        .ok_or_else(|| {
            DerefError::from(rds::RdsError::NotFound {
                identifier: id.clone(),
                aws_region: aws_region.clone(),
            })
        })?;
    let found = check_region_owned(found, aws_region, &name).map_err(DerefError::from)?;
    let mut note = String::new();
    let call = promotion_call(&found);
    if call == PromotionCall::Wait {
        return Err(not_available(&found).into());
    }
    if let PromotionCall::Ask(source) = call {
        let after = provider
            .promote(aws_region, id)
            .await
            .map_err(DerefError::from)?;
        tracing::info!(region = %name, instance = %id, status = %after.status, "PromoteReadReplica accepted");
        note =
            format!(" (RDS instance {id}, read replica of {source}: PromoteReadReplica accepted)");
    }
    if stands_in(&found, &world.settings.rds_endpoints) {
        // The mapped server stands in for the instance: promote it as RDS does.
        db.promote(super::failover::PROMOTE_WAIT_SECONDS)
            .await
            .map_err(ApplyError::from)?;
    }
    match db.probe().await.map_err(ApplyError::from)? {
        Some(false) => Ok(note),
        _ => Err(DerefError::RdsNotAvailable {
            identifier: id.clone(),
            status: "being promoted (PromoteReadReplica accepted, the server is still in recovery)"
                .to_owned(),
        }
        .into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rds::endpoint_map::EndpointMap;

    #[test]
    fn an_instance_is_connected_only_once_available_and_through_the_map() {
        let host = "db1.aaaaaaaaaa.eu-west-1.rds.amazonaws.com";
        let mut instance = rds::Instance {
            identifier: "db1".to_owned(),
            status: "creating".to_owned(),
            endpoint: None,
            ..rds::Instance::default()
        };
        let map = EndpointMap::parse(&format!("{host}=127.0.0.1:6543")).expect("map");
        assert_eq!(connectable(&instance, &map), None, "creating");
        let waiting = not_available(&instance);
        assert!(
            matches!(&waiting, DerefError::RdsNotAvailable { status, .. } if status == "creating"),
            "{waiting:?}"
        );
        // RDS reports the endpoint before the instance is available (backing-up, ...).
        instance.endpoint = Some((host.to_owned(), 5432));
        instance.status = "backing-up".to_owned();
        assert_eq!(connectable(&instance, &map), None, "backing-up");
        instance.status = rds::AVAILABLE.to_owned();
        assert_eq!(
            connectable(&instance, &map).expect("available"),
            ("127.0.0.1".to_owned(), 6543)
        );
        assert_eq!(
            connectable(&instance, &EndpointMap::default()).expect("unmapped"),
            (host.to_owned(), 5432)
        );
        let reason = crate::controller::error::Error::from(waiting).reason();
        assert_eq!(reason, crate::reason::Reason::RdsInstanceNotAvailable);
    }

    #[test]
    fn promote_read_replica_is_asked_only_of_an_available_replica_and_waited_for_otherwise() {
        let host = "db1.aaaaaaaaaa.eu-west-1.rds.amazonaws.com";
        let mut found = rds::Instance {
            identifier: "db1".to_owned(),
            status: rds::AVAILABLE.to_owned(),
            endpoint: Some((host.to_owned(), 5432)),
            replica_source: Some("arn:aws:rds:us-east-1:1:db:src".to_owned()),
            ..rds::Instance::default()
        };
        assert_eq!(
            promotion_call(&found),
            PromotionCall::Ask("arn:aws:rds:us-east-1:1:db:src")
        );
        // RDS after the call: modifying, still reporting the source. Requeued, not asked
        // again (RDS would refuse it).
        found.status = "modifying".to_owned();
        assert_eq!(promotion_call(&found), PromotionCall::Wait);
        // Promoted (the source gone), or never a replica: nothing to ask.
        found.replica_source = None;
        found.status = rds::AVAILABLE.to_owned();
        assert_eq!(promotion_call(&found), PromotionCall::Nothing);
        // Only a mapped server is promoted by the operator (standing in for RDS).
        let map = EndpointMap::parse(&format!("{host}=127.0.0.1:6543")).expect("map");
        assert!(stands_in(&found, &map));
        assert!(!stands_in(&found, &EndpointMap::default()), "real RDS");
        found.endpoint = None;
        assert!(!stands_in(&found, &map), "no endpoint reported yet");
    }

    #[test]
    fn a_regions_instance_is_its_writer_or_its_read_replica_and_nothing_else() {
        let instance = |tags: BTreeMap<String, String>| rds::Instance {
            identifier: "db1".to_owned(),
            tags,
            ..rds::Instance::default()
        };
        for purpose in [WRITER_PURPOSE, REPLICA_PURPOSE] {
            let found = instance(rds::region_tags("eu", purpose));
            assert!(
                check_region_owned(found, "eu-west-1", "eu").is_ok(),
                "{purpose}"
            );
        }
        // Another Region's replica, a tenant's instance, an untagged one: not this Region's.
        for tags in [
            rds::region_tags("us", REPLICA_PURPOSE),
            rds::region_tags("eu", "tenant-database"),
            BTreeMap::new(),
        ] {
            let refused = check_region_owned(instance(tags.clone()), "eu-west-1", "eu");
            assert!(
                matches!(refused, Err(rds::RdsError::NotOwned { .. })),
                "{tags:?}: {refused:?}"
            );
        }
    }

    #[test]
    fn the_instance_asked_for_is_the_spec_tagged_as_the_regions_writer() {
        let rds: RdsInstance = serde_json::from_value(serde_json::json!({
            "instanceIdentifier": "phoenix-eu", "instanceClass": "db.r6g.large",
            "masterPasswordSecretRef": {"namespace": "ops", "name": "m", "key": "pw"},
            "caSecretRef": {"namespace": "ops", "name": "ca", "key": "ca.crt"}
        }))
        .expect("valid");
        let spec = instance_spec("eu-west-1", &rds);
        assert_eq!(spec.identifier, "phoenix-eu");
        assert_eq!(spec.master_username, "phoenix_admin");
        assert_eq!(spec.engine_version, "15");
        assert_eq!(
            spec.tags.get(rds::REGION_TAG).map(String::as_str),
            Some("eu-west-1")
        );
        assert_eq!(
            spec.tags.get(rds::MANAGED_BY_TAG).map(String::as_str),
            Some(rds::MANAGED_BY)
        );
    }
}
