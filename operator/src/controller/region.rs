//! The Region controller: connects to the region's database, migrates it, keeps its roles
//! and row-level security in place and reports reachability, replication and tenant count.

use std::collections::BTreeMap;
use std::sync::Arc;

use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::{Api, ResourceExt};
use phoenix_crds::region::DatabaseConnection;
use phoenix_crds::{Region, RegionRole, RegionStatus};
use tracing::Instrument;

use super::context::Context;
use super::error::Error;
use crate::conditions::{self, NewCondition, Status, types};
use crate::db::{RegionDatabase, roles};
use crate::secrets::generate_password;

/// Finalizer guarding the region's pools and the data plane Secret.
pub const FINALIZER: &str = "phoenixguardian.io/region-cleanup";

/// Name of the Secret with the data plane's credentials for `region`.
pub fn dataplane_secret_name(region: &str) -> String {
    format!("phoenix-dataplane-{region}")
}

/// The Regions a change of Secret `namespace/name` concerns: those whose spec references it,
/// and the one whose data plane credentials it holds.
pub fn regions_using_secret(
    regions: &[Arc<Region>],
    namespace: &str,
    name: &str,
    operator_namespace: &str,
) -> Vec<kube::runtime::reflector::ObjectRef<Region>> {
    let is_it = |r: &phoenix_crds::SecretKeyRef| r.namespace == namespace && r.name == name;
    regions
        .iter()
        .filter(|region| {
            let db = &region.spec.database;
            let connections = db.writer.iter().chain(db.readers.iter());
            let referenced = connections
                .flat_map(|c| {
                    c.connection_secret_ref
                        .iter()
                        .chain(c.credentials_secret_ref.iter())
                })
                .chain(db.rds.iter().map(|r| &r.master_password_secret_ref))
                .any(is_it);
            let generated = namespace == operator_namespace
                && name == dataplane_secret_name(&region.name_any());
            referenced || generated
        })
        .map(|region| kube::runtime::reflector::ObjectRef::from_obj(region.as_ref()))
        .collect()
}

/// Resolves the connection settings of one database connection of a Region.
async fn connection_config(
    ctx: &Context,
    conn: &DatabaseConnection,
    database_name: &str,
) -> Result<(tokio_postgres::Config, String), Error> {
    let (mut config, fingerprint) = if let Some(r) = &conn.connection_secret_ref {
        let dsn = ctx.secrets.get(r).await?;
        let config: tokio_postgres::Config = dsn.parse().map_err(|_| Error::Reference {
            reason: "InvalidConnectionString",
            message: format!(
                "secret {}/{} key {} is not a valid PostgreSQL connection string",
                r.namespace, r.name, r.key
            ),
        })?;
        (config, dsn)
    } else {
        let host = conn.host.clone().unwrap_or_default();
        let password = match &conn.credentials_secret_ref {
            Some(r) => ctx.secrets.get(r).await?,
            None => String::new(),
        };
        let port = u16::try_from(conn.port).map_err(|_| Error::Reference {
            reason: "InvalidPort",
            message: format!("port {} is not a TCP port", conn.port),
        })?;
        let mut config = tokio_postgres::Config::new();
        config
            .host(&host)
            .port(port)
            .user(&conn.user)
            .password(password.as_bytes());
        (
            config,
            format!("{host}:{}:{}:{password}", conn.port, conn.user),
        )
    };
    config.dbname(database_name);
    Ok((config, format!("{fingerprint}#{database_name}")))
}

/// The writer database of `region`.
pub async fn writer_database(ctx: &Context, region: &Region) -> Result<RegionDatabase, Error> {
    let db = &region.spec.database;
    let Some(writer) = &db.writer else {
        return Err(Error::NotImplemented(
            "creating the region database through RDS (spec.database.rds)",
        ));
    };
    let (config, fingerprint) = connection_config(ctx, writer, &db.database_name).await?;
    Ok(ctx.databases.get(
        &region.name_any(),
        &fingerprint,
        config,
        ctx.settings.db_max_connections,
    )?)
}

/// Ensures the data plane's credentials Secret; returns its password.
async fn dataplane_credentials(
    ctx: &Context,
    region: &Region,
    db: &RegionDatabase,
) -> Result<(String, bool), Error> {
    let name = region.name_any();
    let labels = BTreeMap::from([
        (
            "app.kubernetes.io/managed-by".to_owned(),
            "phoenix-operator".to_owned(),
        ),
        ("phoenixguardian.io/region".to_owned(), name.clone()),
    ]);
    let endpoint = db.endpoint().to_owned();
    let generate = move || {
        let password = generate_password(32);
        BTreeMap::from([
            ("username".to_owned(), roles::DATAPLANE_ROLE.to_owned()),
            ("password".to_owned(), password.clone()),
            (
                "databaseUrl".to_owned(),
                format!("postgres://{}:{password}@{endpoint}", roles::DATAPLANE_ROLE),
            ),
        ])
    };
    let (data, created) = ctx
        .secrets
        .get_or_create(
            &ctx.settings.namespace,
            &dataplane_secret_name(&name),
            labels,
            &generate,
        )
        .await?;
    if created {
        ctx.event(
            region,
            EventType::Normal,
            "DataplaneCredentialsCreated",
            "CreateSecret",
            format!(
                "created secret {}/{}",
                ctx.settings.namespace,
                dataplane_secret_name(&name)
            ),
        )
        .await;
    }
    data.get("password")
        .cloned()
        .map(|p| (p, created))
        .ok_or_else(|| Error::Reference {
            reason: "SecretKeyMissing",
            message: format!(
                "secret {}/{} has no key password; delete it and the operator generates a new one",
                ctx.settings.namespace,
                dataplane_secret_name(&name)
            ),
        })
}

/// What a successful region reconcile observed.
struct Observed {
    /// Why a reader is unhealthy; the writer still serves, so the Region stays Ready.
    replication_error: Option<String>,
    schema_version: Option<i32>,
    tenant_count: i32,
    lag: Option<f64>,
    readers: usize,
    endpoint: String,
}

async fn observe(ctx: &Context, region: &Region) -> Result<Observed, Error> {
    let db = writer_database(ctx, region).await?;
    let standby = match db.ping().await {
        Err(e) if e.is_missing_database() && region.spec.role == RegionRole::Primary => {
            db.create_if_missing().await?;
            ctx.event(
                region,
                EventType::Normal,
                "DatabaseCreated",
                "CreateDatabase",
                format!("created database {}", db.endpoint()),
            )
            .await;
            db.ping().await?
        }
        other => other?,
    };
    let mut observed = Observed {
        replication_error: None,
        schema_version: None,
        tenant_count: 0,
        lag: None,
        readers: 0,
        endpoint: db.endpoint().to_owned(),
    };
    match region.spec.role {
        RegionRole::Primary => {
            if standby {
                return Err(Error::Reference {
                    reason: "WriterIsStandby",
                    message: format!(
                        "database {} is a standby in recovery but spec.role is Primary; point spec.database.writer at the primary or set role Replica",
                        db.endpoint()
                    ),
                });
            }
            let crate::db::Migrated {
                from: before,
                to: version,
            } = db.migrate().await?;
            if version != before {
                ctx.event(
                    region,
                    EventType::Normal,
                    "Migrated",
                    "Migrate",
                    format!(
                        "schema migrated from version {before} to {version} on {}",
                        db.endpoint()
                    ),
                )
                .await;
            }
            // Isolation before access: RLS is in place before the data plane role is granted
            // anything on the tables.
            let repairs = db.ensure_rls().await?;
            let (password, secret_created) = dataplane_credentials(ctx, region, &db).await?;
            let role_created = db.ensure_roles().await?;
            if secret_created || role_created {
                db.set_dataplane_password(&password).await?;
            }
            if !repairs.is_empty() && before != 0 {
                ctx.metrics.rls_repaired(repairs.len());
                let what: Vec<String> = repairs
                    .iter()
                    .map(|r| {
                        format!(
                            "{}: {}",
                            r.table,
                            r.drifts
                                .iter()
                                .map(ToString::to_string)
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    })
                    .collect();
                ctx.event(
                    region,
                    EventType::Warning,
                    "RLSRepaired",
                    "RepairRLS",
                    format!("row level security drift repaired: {}", what.join("; ")),
                )
                .await;
            }
            observed.schema_version = Some(version);
            observed.tenant_count =
                i32::try_from(db.tenant_count(&region.name_any()).await?).unwrap_or(i32::MAX);
        }
        RegionRole::Replica => {
            let source_name = region.spec.replica_of.clone().unwrap_or_default();
            let Some(source) = ctx
                .regions
                .get(&kube::runtime::reflector::ObjectRef::new(&source_name))
            else {
                return Err(Error::Reference {
                    reason: "RegionNotFound",
                    message: format!(
                        "spec.replicaOf names region {source_name}, which is not declared; create it or fix spec.replicaOf"
                    ),
                });
            };
            let outside = crate::placement::replica_residency_violations(
                &source.spec.data_residency,
                &region.spec.data_residency,
            );
            if !outside.is_empty() {
                return Err(Error::Reference {
                    reason: "ReplicaResidencyViolation",
                    message: format!(
                        "region {source_name} holds {outside:?} data, which region {} may not hold (spec.dataResidency {:?}); a replica would carry it out of its residency",
                        region.name_any(),
                        region.spec.data_residency
                    ),
                });
            }
            if !standby {
                return Err(Error::Reference {
                    reason: "ReplicaNotInRecovery",
                    message: format!(
                        "database {} is not a standby but spec.role is Replica; point spec.database.writer at the replica or set role Primary (failover)",
                        db.endpoint()
                    ),
                });
            }
            observed.lag = db.replay_lag_seconds().await?;
        }
    }
    for (i, reader) in region.spec.database.readers.iter().enumerate() {
        let measured = async {
            let (config, fingerprint) =
                connection_config(ctx, reader, &region.spec.database.database_name).await?;
            let db = ctx.databases.get(
                &format!("{}#reader-{i}", region.name_any()),
                &fingerprint,
                config,
                2,
            )?;
            Ok::<_, Error>(db.replay_lag_seconds().await?)
        };
        match measured.await {
            Ok(Some(lag)) => observed.lag = Some(observed.lag.map_or(lag, |l: f64| l.max(lag))),
            Ok(None) => {
                observed.replication_error = Some(format!(
                    "spec.database.readers[{i}] is not a standby (not in recovery)"
                ));
            }
            Err(e) => observed.replication_error = Some(format!("spec.database.readers[{i}]: {e}")),
        }
        observed.readers += 1;
    }
    Ok(observed)
}

async fn apply(region: Arc<Region>, ctx: Arc<Context>) -> Result<Action, Error> {
    let generation = region.metadata.generation;
    let now = conditions::now();
    let current = region.status.clone().unwrap_or_default();
    match observe(&ctx, &region).await {
        Ok(o) => {
            let replication = match (o.lag, region.spec.role) {
                _ if o.replication_error.is_some() => NewCondition::new(
                    types::REPLICATION_HEALTHY,
                    Status::False,
                    "ReplicaUnhealthy",
                    o.replication_error.clone().unwrap_or_default(),
                ),
                (Some(lag), _) if lag > ctx.settings.max_replication_lag.as_secs_f64() => {
                    NewCondition::new(
                        types::REPLICATION_HEALTHY,
                        Status::False,
                        "ReplicationLagging",
                        format!(
                            "replicas are {lag:.1}s behind (limit {}s)",
                            ctx.settings.max_replication_lag.as_secs()
                        ),
                    )
                }
                (Some(lag), _) => NewCondition::new(
                    types::REPLICATION_HEALTHY,
                    Status::True,
                    "ReplicaStreaming",
                    format!("{} reader(s) {lag:.1}s behind", o.readers.max(1)),
                ),
                (None, _) => NewCondition::new(
                    types::REPLICATION_HEALTHY,
                    Status::Unknown,
                    "NoReaders",
                    "no readers are declared in spec.database.readers",
                ),
            };
            let conds = conditions::merge(
                &current.conditions,
                &[
                    NewCondition::new(
                        types::DATABASE_REACHABLE,
                        Status::True,
                        "Connected",
                        format!("connected to {}", o.endpoint),
                    ),
                    replication,
                    NewCondition::new(
                        types::READY,
                        Status::True,
                        "Reconciled",
                        format!(
                            "schema version {}, {} tenant(s)",
                            o.schema_version.unwrap_or(0),
                            o.tenant_count
                        ),
                    ),
                ],
                generation,
                &now,
            );
            let became_ready = !conditions::is_true(&current.conditions, types::READY);
            let status = RegionStatus {
                phase: Some("Ready".to_owned()),
                conditions: conds,
                replication_lag_seconds: o.lag,
                tenant_count: o.tenant_count,
                schema_version: o.schema_version,
                observed_generation: generation,
            };
            ctx.patch_status(region.as_ref(), &status).await?;
            if became_ready {
                ctx.event(
                    region.as_ref(),
                    EventType::Normal,
                    "Ready",
                    "Reconcile",
                    format!("region database {} is ready", o.endpoint),
                )
                .await;
            }
            Ok(Action::requeue(
                ctx.settings.resync.min(std::time::Duration::from_secs(60)),
            ))
        }
        Err(e) => {
            let reachable = match &e {
                Error::Database(_)
                | Error::Secret(_)
                | Error::Reference { .. }
                | Error::NotImplemented(_) => Status::False,
                _ => Status::Unknown,
            };
            let conds = conditions::merge(
                &current.conditions,
                &[
                    NewCondition::new(
                        types::DATABASE_REACHABLE,
                        reachable,
                        e.reason(),
                        e.to_string(),
                    ),
                    NewCondition::new(types::READY, Status::False, e.reason(), e.to_string()),
                ],
                generation,
                &now,
            );
            let status = RegionStatus {
                phase: Some("Failed".to_owned()),
                conditions: conds,
                observed_generation: generation,
                ..current
            };
            ctx.report_failure(region.as_ref(), &status, "Reconcile", &e)
                .await;
            Err(e)
        }
    }
}

/// Refuses a Region's deletion with a Warning Event saying why.
async fn refuse_deletion(ctx: &Context, region: &Region, message: String) -> Error {
    ctx.event(
        region,
        EventType::Warning,
        "TenantsRemain",
        "Delete",
        message.clone(),
    )
    .await;
    Error::Reference {
        reason: "TenantsRemain",
        message,
    }
}

async fn cleanup(region: Arc<Region>, ctx: Arc<Context>) -> Result<Action, Error> {
    let name = region.name_any();
    let placed = ctx
        .tenants
        .state()
        .iter()
        .filter(|t| {
            t.status
                .as_ref()
                .and_then(|s| s.placement.as_ref())
                .is_some_and(|p| p.region == name)
        })
        .count();
    if placed > 0 {
        let message = format!(
            "region {name} still holds {placed} tenant(s); delete or migrate them before deleting the Region"
        );
        return Err(refuse_deletion(&ctx, &region, message).await);
    }
    // The database has the last word: a tenant placed there whose Tenant object is gone
    // without cleanup (finalizer removed by hand) still lives in the catalog.
    if let Ok(db) = writer_database(&ctx, &region).await
        && let Ok(live) = db.tenant_count(&name).await
        && live > 0
    {
        let message = format!(
            "region {name}'s catalog still holds {live} live tenant(s); retire or delete them (docs/runbooks.md) before deleting the Region"
        );
        return Err(refuse_deletion(&ctx, &region, message).await);
    }
    ctx.secrets
        .delete(&ctx.settings.namespace, &dataplane_secret_name(&name))
        .await?;
    ctx.databases.forget(&name);
    ctx.event(
        region.as_ref(),
        EventType::Normal,
        "Deleted",
        "Delete",
        format!("region {name} released; its database is left untouched and the data plane credentials Secret was deleted"),
    )
    .await;
    Ok(Action::await_change())
}

/// Reconciles one Region.
pub async fn reconcile(region: Arc<Region>, ctx: Arc<Context>) -> Result<Action, Error> {
    let span = tracing::info_span!("reconcile", kind = "Region", name = %region.name_any());
    reconcile_inner(region, ctx).instrument(span).await
}

async fn reconcile_inner(region: Arc<Region>, ctx: Arc<Context>) -> Result<Action, Error> {
    let timer = ctx.metrics.start("region");
    let api: Api<Region> = Api::all(ctx.client.clone());
    let result = finalizer(&api, FINALIZER, region.clone(), |event| async {
        match event {
            Finalizer::Apply(r) => apply(r, ctx.clone()).await,
            Finalizer::Cleanup(r) => cleanup(r, ctx.clone()).await,
        }
    })
    .await
    .map_err(Error::from);
    timer.finish(result.as_ref().err().map(Error::reason));
    if result.is_ok() {
        ctx.backoff.succeeded(&region.uid().unwrap_or_default());
    }
    result
}

/// Backs off a failed Region with jitter.
pub fn error_policy(region: Arc<Region>, error: &Error, ctx: Arc<Context>) -> Action {
    let delay = ctx.backoff.failed(&region.uid().unwrap_or_default());
    tracing::warn!(kind = "Region", region = %region.name_any(), reason = error.reason(), error = %error, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(name: &str, secret: &str) -> Arc<Region> {
        let spec: phoenix_crds::RegionSpec = serde_json::from_value(serde_json::json!({
            "awsRegion": "eu-west-1", "dataResidency": ["EU"],
            "database": {
                "writer": {"connectionSecretRef": {"namespace": "ops", "name": secret, "key": "dsn"}},
                "readers": [{"host": "replica", "credentialsSecretRef": {"namespace": "db", "name": "replica-pw", "key": "pw"}}]
            }
        }))
        .expect("valid spec");
        Arc::new(Region::new(name, spec))
    }

    #[test]
    fn a_secret_wakes_the_regions_that_reference_or_own_it() {
        let regions = vec![region("eu", "eu-db"), region("us", "us-db")];
        let names = |ns: &str, name: &str| {
            regions_using_secret(&regions, ns, name, "ops")
                .into_iter()
                .map(|r| r.name)
                .collect::<Vec<_>>()
        };
        assert_eq!(names("ops", "eu-db"), ["eu"]);
        assert_eq!(names("db", "replica-pw"), ["eu", "us"]);
        assert_eq!(names("ops", "phoenix-dataplane-us"), ["us"]);
        assert!(names("other", "eu-db").is_empty(), "namespace ignored");
        assert!(names("ops", "unrelated").is_empty());
    }
}
