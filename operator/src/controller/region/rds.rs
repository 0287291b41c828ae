//! The writer of a Region that declares `spec.database.rds`: its master password (read
//! from its Secret, else generated into it), its RDS instance made to exist and found
//! `available` (a later pass checks again: nothing waits here), and the connection to
//! it as the master user with TLS `verify-full` against `caSecretRef`. The endpoint RDS
//! reports goes through the operator's endpoint map (a test and development facility,
//! docs/adr/0012-rds-regions.md).
//!
//! This step writes (the Secret, the instance) before the Region's dereference reads the
//! database: there is no database to read until it exists.

use std::collections::BTreeMap;

use kube::ResourceExt;
use phoenix_catalog::connect::{PgTarget, SslMode};
use phoenix_crds::Region;
use phoenix_crds::region::RdsInstance;

use crate::controller::error::DerefError;
use crate::controller::providers::DbTarget;
use crate::controller::world::World;
use crate::rds::{self, Ensured, InstanceSpec};
use crate::secrets::{SecretError, generate_password};

/// Purpose tag of a Region's writer instance.
pub const WRITER_PURPOSE: &str = "region-writer";

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

/// How the writer of `region` (declaring `rds`) is reached, once its instance exists and
/// is available.
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
    let (password, ensured) = match mode {
        Mode::Ensure => {
            let password = master_password(world, &name, rds).await?;
            let ensured = rds::ensure_instance(provider, aws_region, &spec, &password).await?;
            (password, ensured)
        }
        Mode::Existing => {
            let found = provider
                .describe(aws_region, &spec.identifier)
                .await?
                .ok_or_else(|| rds::RdsError::NotFound {
                    identifier: spec.identifier.clone(),
                    aws_region: aws_region.clone(),
                })?;
            // Never connect to (let alone act on) an instance that is not ours.
            let found = rds::check_owned(found, aws_region, &spec.tags)?;
            let password = world
                .providers
                .secrets
                .get(&rds.master_password_secret_ref)
                .await?;
            (password, Ensured::Existing(found))
        }
    };
    if let Ensured::Created(_) = &ensured {
        tracing::info!(region = %name, instance = %spec.identifier, "RDS instance created");
    }
    let instance = ensured.instance();
    let (host, port) = connectable(instance, &world.settings.rds_endpoints)
        .ok_or_else(|| not_available(instance))?;
    let ca = world.providers.secrets.get(&rds.ca_secret_ref).await?;
    let origin = format!(
        "secret {}/{} key {} (spec.database.rds.caSecretRef)",
        rds.ca_secret_ref.namespace, rds.ca_secret_ref.name, rds.ca_secret_ref.key
    );
    let mut config = tokio_postgres::Config::new();
    config
        .host(&host)
        .port(port)
        .user(&rds.master_username)
        .password(password.as_bytes())
        .dbname(&region.spec.database.database_name);
    let pg = PgTarget::from(config)
        .with_ssl_mode(SslMode::VerifyFull)
        .with_ca_pem(ca.as_bytes(), &origin)
        .map_err(|e| DerefError::InvalidConnectionString(e.to_string()))?;
    Ok(DbTarget {
        pg,
        fingerprint: format!(
            "rds:{}:{host}:{port}:{}:{password}#ca={ca}#{}",
            instance.identifier, rds.master_username, region.spec.database.database_name
        ),
        ca_pem: Some(ca),
    })
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
