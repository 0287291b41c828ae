//! A `Dedicated` tenant on a Region that declares `spec.database.rds`: an RDS instance of
//! its own (identifier derived from the Tenant's UID, tagged as the tenant's, its master
//! password generated into a per-tenant Secret in the operator's namespace), found
//! `available` before anything connects to it (a later pass checks again: nothing
//! waits), then reached as its master user with TLS `verify-full` against the Region's
//! CA. The region's data plane logins are made there with the password they have on the
//! region writer, so a data plane reaches the tenant's database with its own credentials
//! (docs/adr/0013-dedicated-tenants-on-rds.md).
//!
//! Like the Region's writer (`region::rds`), this step writes (the Secret, the instance)
//! before the tenant's dereference reads the server: there is nothing to read before.

use std::collections::BTreeMap;

use phoenix_crds::Region;
use phoenix_crds::region::RdsInstance;

use crate::controller::error::DerefError;
use crate::controller::providers::DbTarget;
use crate::controller::region::rds::{Mode, Verified, verify_full};
use crate::controller::world::World;
use crate::db::owned::mark_sql;
use crate::db::rls::quote_ident;
use crate::db::roles::set_password_sql;
use crate::db::scram;
use crate::rds::{self, InstanceSpec};
use crate::secrets::{SecretError, generate_password};

/// Purpose tag of a `Dedicated` tenant's instance.
pub const TENANT_PURPOSE: &str = "tenant-dedicated";
/// Tag naming the Tenant (object name) whose instance it is.
pub const TENANT_TAG: &str = "phoenixguardian.io/tenant";
/// Tag naming the Tenant's UID (a re-created Tenant of the same name gets another one).
pub const TENANT_UID_TAG: &str = "phoenixguardian.io/tenant-uid";
/// The key of the per-tenant master password Secret.
pub const PASSWORD_KEY: &str = "password";
/// The database the master user connects to for server work (RDS always has it).
pub const ADMIN_DATABASE: &str = "postgres";

/// Length of a generated master password (alphanumerics only, as RDS wants).
const PASSWORD_LEN: usize = 40;

/// The instance identifier of the Tenant with UID `uid`: `phoenix-tenant-` and the 16 hex
/// of its database name (ADR 0010): 31 characters, a letter first, letters, digits and
/// single hyphens, no trailing hyphen — what RDS accepts (1–63).
pub fn instance_identifier(uid: &str) -> String {
    let database = phoenix_catalog::schemas::tenant_database(uid);
    let hex = database.trim_start_matches("tdb_");
    format!("phoenix-tenant-{hex}")
}

/// The master user of the instance of the Tenant with UID `uid`: `phoenix_master_` and
/// the same 16 hex (31 characters; RDS wants a letter first, then letters, digits and
/// underscores, at most 63). Per tenant rather than the Region's `masterUsername`, so a
/// session on any server names the tenant it works for.
pub fn master_username(uid: &str) -> String {
    let database = phoenix_catalog::schemas::tenant_database(uid);
    format!("phoenix_master_{}", database.trim_start_matches("tdb_"))
}

/// The Secret (in the operator's namespace) holding the master password of `identifier`.
pub fn secret_name(identifier: &str) -> String {
    format!("{identifier}-master")
}

/// The tags that mark an instance as tenant `tenant`'s (UID `uid`) in Region `region`.
pub fn tenant_tags(region: &str, tenant: &str, uid: &str) -> BTreeMap<String, String> {
    let mut tags = rds::region_tags(region, TENANT_PURPOSE);
    tags.insert(TENANT_TAG.to_owned(), tenant.to_owned());
    tags.insert(TENANT_UID_TAG.to_owned(), uid.to_owned());
    tags
}

/// What the operator asks RDS for, for tenant `tenant` (UID `uid`) in Region `region`:
/// the Region's class, storage, version and Multi-AZ, the tenant's master user.
pub fn instance_spec(region: &str, tenant: &str, uid: &str, rds: &RdsInstance) -> InstanceSpec {
    InstanceSpec {
        identifier: instance_identifier(uid),
        instance_class: rds.instance_class.clone(),
        engine_version: rds.engine_version.clone(),
        allocated_storage_gib: rds.allocated_storage_gib,
        multi_az: rds.multi_az,
        master_username: master_username(uid),
        tags: tenant_tags(region, tenant, uid),
    }
}

/// The master password of the tenant's instance, generated into its Secret the first
/// time (`mode` [`Mode::Ensure`]); a concurrent creator's Secret wins.
async fn master_password(
    world: &World<'_>,
    spec: &InstanceSpec,
    region: &str,
    tenant: &str,
    mode: Mode,
) -> Result<String, DerefError> {
    let secrets = &world.providers.secrets;
    let namespace = &world.settings.namespace;
    let name = secret_name(&spec.identifier);
    let missing = || SecretError::MissingKey {
        namespace: namespace.clone(),
        name: name.clone(),
        key: PASSWORD_KEY.to_owned(),
    };
    if let Some(data) = secrets.read(namespace, &name).await? {
        return data
            .get(PASSWORD_KEY)
            .cloned()
            .ok_or_else(|| missing().into());
    }
    if mode == Mode::Existing {
        return Err(SecretError::NotFound {
            namespace: namespace.clone(),
            name: name.clone(),
        }
        .into());
    }
    let labels = BTreeMap::from([
        (
            "app.kubernetes.io/managed-by".to_owned(),
            "phoenix-operator".to_owned(),
        ),
        ("phoenixguardian.io/region".to_owned(), region.to_owned()),
        (TENANT_TAG.to_owned(), tenant.to_owned()),
    ]);
    let data = BTreeMap::from([(PASSWORD_KEY.to_owned(), generate_password(PASSWORD_LEN))]);
    let (theirs, _) = secrets.create(namespace, &name, labels, data).await?;
    theirs
        .get(PASSWORD_KEY)
        .cloned()
        .ok_or_else(|| missing().into())
}

/// The tenant's instance, how its server is reached (the master user, TLS `verify-full`
/// against the Region's CA, database [`ADMIN_DATABASE`]) and where (its endpoint through
/// the endpoint map: what the catalog publishes), once it exists and is available. [`Mode::Ensure`] creates the Secret and the instance when missing;
/// [`Mode::Existing`] never does. An instance that is not the tenant's is refused.
pub async fn server_target(
    world: &World<'_>,
    region: &Region,
    rds_spec: &RdsInstance,
    tenant: &str,
    uid: &str,
    mode: Mode,
) -> Result<(DbTarget, rds::Instance, (String, u16)), DerefError> {
    let region_name = kube::ResourceExt::name_any(region);
    let spec = instance_spec(&region_name, tenant, uid, rds_spec);
    let aws_region = &region.spec.aws_region;
    let provider = world.providers.rds.as_ref();
    let password = master_password(world, &spec, &region_name, tenant, mode).await?;
    let instance = match mode {
        Mode::Ensure => {
            let ensured = rds::ensure_instance(provider, aws_region, &spec, &password).await?;
            if let rds::Ensured::Created(_) = &ensured {
                tracing::info!(instance = %spec.identifier, "RDS instance created for the tenant");
            }
            ensured.instance().clone()
        }
        Mode::Existing => {
            let found = provider
                .describe(aws_region, &spec.identifier)
                .await?
                .ok_or_else(|| rds::RdsError::NotFound {
                    identifier: spec.identifier.clone(),
                    aws_region: aws_region.clone(),
                })?;
            rds::check_owned(found, aws_region, &spec.tags)?
        }
    };
    let Verified { pg, host, port, ca } = verify_full(
        world,
        &instance,
        rds_spec,
        &format!(" of region {region_name}"),
        &spec.master_username,
        &password,
        ADMIN_DATABASE,
    )
    .await?;
    let target = DbTarget {
        pg,
        fingerprint: format!(
            "rds-tenant:{}:{host}:{port}:{}:{password}#ca={ca}",
            instance.identifier, spec.master_username
        ),
        ca_pem: Some(ca),
    };
    Ok((target, instance, (host, port)))
}

/// A data plane login of the region and the password it has on the region writer
/// (`None`: not known to the operator, the login is made without one and cannot log in).
#[derive(Clone, PartialEq, Eq)]
pub struct Login {
    /// The role name.
    pub name: String,
    /// Its password (never logged: `Debug` leaves it out).
    pub password: Option<String>,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login")
            .field("name", &self.name)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// The statements that make `logins` exist on the tenant's server as the region has them,
/// with no attribute a non-superuser cannot grant (SUPERUSER and BYPASSRLS are never
/// named; they are verified instead) and the operator's mark. The login the region's data
/// plane uses now gets LOGIN and its password's SCRAM verifier (the password itself is
/// never in a statement), reset on every pass; the other is made (NOLOGIN) when missing
/// and otherwise left as it is. Idempotent.
pub fn login_statements(logins: &[Login]) -> Vec<String> {
    let mut sql = Vec::new();
    for login in logins {
        let r = quote_ident(&login.name);
        let lit = login.name.replace('\'', "''");
        let attrs = if login.password.is_some() {
            "LOGIN"
        } else {
            "NOLOGIN"
        };
        sql.push(format!(
            "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{lit}') THEN CREATE ROLE {r} {attrs} NOCREATEDB NOCREATEROLE NOINHERIT; END IF; END $$"
        ));
        sql.push(mark_sql(&login.name));
        if let Some(password) = &login.password {
            sql.push(format!(
                "ALTER ROLE {r} LOGIN NOCREATEDB NOCREATEROLE NOINHERIT"
            ));
            sql.push(set_password_sql(&login.name, &scram::verifier(password)));
        }
    }
    sql
}

/// The region's data plane logins (`names`, from the grants on its clinical tables) with
/// the password of the one its data plane Secret names.
pub async fn region_logins(
    world: &World<'_>,
    region: &str,
    names: impl IntoIterator<Item = String>,
) -> Result<Vec<Login>, DerefError> {
    let secret = world
        .providers
        .secrets
        .read(
            &world.settings.namespace,
            &crate::controller::region::dataplane_secret_name(region),
        )
        .await?
        .unwrap_or_default();
    let active = secret.get("username");
    Ok(names
        .into_iter()
        .map(|name| Login {
            password: (active == Some(&name))
                .then(|| secret.get("password").cloned())
                .flatten(),
            name,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_identifier_is_deterministic_distinct_and_a_valid_rds_name() {
        let a = instance_identifier("0f7a1c2e-1111-2222-3333-444455556666");
        let b = instance_identifier("0f7a1c2e-1111-2222-3333-444455556667");
        assert_eq!(
            a,
            instance_identifier("0f7a1c2e-1111-2222-3333-444455556666")
        );
        assert_ne!(a, b);
        assert!(a.len() <= 63, "{a}");
        assert!(a.starts_with("phoenix-tenant-"), "{a}");
        assert!(
            a.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        );
        assert!(!a.contains("--") && !a.ends_with('-'), "{a}");
    }

    #[test]
    fn the_instance_is_the_regions_shape_tagged_as_the_tenants() {
        let rds: RdsInstance = serde_json::from_value(serde_json::json!({
            "instanceIdentifier": "phoenix-eu", "instanceClass": "db.r6g.large",
            "masterPasswordSecretRef": {"namespace": "ops", "name": "m", "key": "pw"},
            "caSecretRef": {"namespace": "ops", "name": "ca", "key": "ca.crt"}
        }))
        .expect("valid");
        let spec = instance_spec("eu-west-1", "st-olaf", "uid-1", &rds);
        assert_eq!(spec.identifier, instance_identifier("uid-1"));
        assert_eq!(spec.instance_class, "db.r6g.large");
        assert_eq!(spec.master_username, master_username("uid-1"));
        assert!(spec.master_username.len() <= 63);
        assert_ne!(master_username("uid-1"), master_username("uid-2"));
        let tag = |k: &str| spec.tags.get(k).map(String::as_str);
        assert_eq!(tag(TENANT_TAG), Some("st-olaf"));
        assert_eq!(tag(TENANT_UID_TAG), Some("uid-1"));
        assert_eq!(tag(rds::PURPOSE_TAG), Some(TENANT_PURPOSE));
        assert_eq!(tag(rds::MANAGED_BY_TAG), Some(rds::MANAGED_BY));
        // The Region's writer is not the tenant's instance, nor another tenant's.
        let writer = rds::region_tags("eu-west-1", "region-writer");
        assert!(!rds::owned(&writer, &spec.tags));
        assert!(!rds::owned(
            &tenant_tags("eu-west-1", "st-olaf", "uid-2"),
            &spec.tags
        ));
    }

    #[test]
    fn logins_are_made_without_superuser_clauses_and_with_the_verifier_only() {
        let sql = login_statements(&[
            Login {
                name: "phoenix_dataplane_eu".to_owned(),
                password: Some("s3cret".to_owned()),
            },
            Login {
                name: "phoenix_dataplane2_eu".to_owned(),
                password: None,
            },
        ]);
        let all = sql.join("\n");
        assert!(!all.contains("s3cret"), "the password itself is never sent");
        assert!(
            !all.contains("SUPERUSER") && !all.contains("BYPASSRLS"),
            "{all}"
        );
        assert_eq!(all.matches("PASSWORD 'SCRAM-SHA-256$").count(), 1, "{all}");
        assert!(all.contains("CREATE ROLE \"phoenix_dataplane2_eu\" NOLOGIN"));
        let shown = format!(
            "{:?}",
            Login {
                name: "x".to_owned(),
                password: Some("s3cret".to_owned())
            }
        );
        assert!(!shown.contains("s3cret"), "{shown}");
    }
}
