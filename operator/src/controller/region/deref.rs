//! Dereference of a Region: the Secrets its spec points to, the Region it follows, its
//! data plane Secret, and what its databases look like now. Reads only.

use std::collections::BTreeMap;
use std::sync::Arc;

use kube::ResourceExt;
use phoenix_catalog::ReaderRow;
use phoenix_catalog::connect::{self, PgTarget, SslMode};
use phoenix_crds::region::DatabaseConnection;
use phoenix_crds::{Region, RegionRole};

use super::dataplane_secret_name;
use super::rotation::{self, LoginsSeen};
use crate::controller::error::DerefError;
use crate::controller::providers::{Database, DbTarget};
use crate::controller::world::World;
use crate::db::owned;
use crate::db::replication::{Lsn, Replay};
use crate::db::state::DbState;
use crate::secrets::SecretError;

/// Connections per reader pool (the operator only measures lag there).
const READER_POOL: usize = 2;

/// The schema version that made `catalog.readers`.
pub const READERS_SCHEMA_VERSION: i32 = 8;

/// What one reader looked like.
#[derive(Clone, Debug, PartialEq)]
pub enum ReaderSeen {
    /// A streaming standby: how far behind, and what it has replayed.
    Standby(Replay),
    /// Not a standby.
    NotStandby,
    /// Could not be measured.
    Failed(String),
}

/// One declared reader: where the data plane reaches it, and how it looked.
#[derive(Clone, Debug, PartialEq)]
pub struct Reader {
    /// Host, port, database and sslmode (its `healthy` not yet decided); `None` when its
    /// connection could not be resolved (a missing Secret, say).
    pub endpoint: Option<ReaderRow>,
    /// Its replication state.
    pub seen: ReaderSeen,
}

/// Where the data plane reaches the instance `target` points at, as reader `ordinal`.
fn reader_endpoint(ordinal: usize, target: &DbTarget, dbname: &str) -> ReaderRow {
    let config = &target.pg.config;
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".to_owned(),
    };
    ReaderRow {
        ordinal: i32::try_from(ordinal).unwrap_or(i32::MAX),
        host,
        port: i32::from(config.get_ports().first().copied().unwrap_or(5432)),
        dbname: dbname.to_owned(),
        sslmode: target.pg.tls.mode.to_string(),
        healthy: false,
    }
}

/// Everything a Region's plan needs.
pub struct RegionRefs {
    /// The writer's `host:port/dbname`.
    pub endpoint: String,
    /// How the writer's TLS is set (the data plane is told the same).
    pub sslmode: SslMode,
    /// The writer's CA bundle from a Secret, for the data plane.
    pub ca_pem: Option<String>,
    /// Whether the writer is a standby; `None` when its database does not exist yet.
    pub standby: Option<bool>,
    /// The writer's state (Primary regions whose database exists).
    pub state: Option<DbState>,
    /// Replay lag of the writer when it is a standby (Replica regions).
    pub own_lag: Option<f64>,
    /// The Region a Replica follows.
    pub source: Option<Arc<Region>>,
    /// The data plane Secret's data, if it exists.
    pub dataplane_secret: Option<BTreeMap<String, String>>,
    /// The declared readers, in order.
    pub readers: Vec<Reader>,
    /// The writer's WAL position, read after the readers' (a Primary's existing database).
    pub writer_lsn: Option<Lsn>,
    /// The readers published in the writer's catalog; `None` where there is no catalog
    /// table to read (a Replica, or a database not yet migrated to it).
    pub published_readers: Option<Vec<ReaderRow>>,
    /// Live tenants in the catalog whose home is this region.
    pub tenant_count: i64,
    /// The Region's two data plane logins, and the rotation requested and recorded.
    pub logins: LoginsSeen,
}

/// Which of the Region's logins the Secret `secret` names (the first when it names
/// neither, or there is no Secret), the other, and what the Secret recorded of rotations.
pub fn logins_seen(
    region: &Region,
    secret: Option<&BTreeMap<String, String>>,
    now: jiff::Timestamp,
    max_drain: std::time::Duration,
) -> LoginsSeen {
    let name = region.name_any();
    let first = owned::dataplane_role(&name);
    let second = owned::standby_role(&name);
    let named = secret.and_then(|d| d.get("username"));
    let (active, other) = if named == Some(&second) {
        (second, first)
    } else {
        (first, second)
    };
    LoginsSeen {
        active,
        other,
        other_sessions: None,
        recorded: secret.and_then(|d| d.get(rotation::ROTATION_KEY)).cloned(),
        rotated_at: secret
            .and_then(|d| d.get(rotation::ROTATED_AT_KEY))
            .and_then(|t| t.parse().ok()),
        requested: rotation::requested(region),
        now,
        max_drain,
    }
}

fn ssl_mode(mode: phoenix_crds::region::SslMode) -> SslMode {
    use phoenix_crds::region::SslMode as Crd;
    match mode {
        Crd::Disable => SslMode::Disable,
        Crd::Prefer => SslMode::Prefer,
        Crd::Require => SslMode::Require,
        Crd::VerifyCa => SslMode::VerifyCa,
        Crd::VerifyFull => SslMode::VerifyFull,
    }
}

/// Resolves the connection settings of one database connection of a Region: the
/// connection string (with libpq's sslmode/sslrootcert) or host/port/user and password,
/// then `sslMode` and the CA of `caSecretRef` over them.
pub async fn target(
    world: &World<'_>,
    conn: &DatabaseConnection,
    database_name: &str,
) -> Result<DbTarget, DerefError> {
    let secrets = &world.providers.secrets;
    let (mut pg, mut fingerprint) = if let Some(r) = &conn.connection_secret_ref {
        let dsn = secrets.get(r).await?;
        let pg = connect::parse(&dsn).map_err(|e| {
            DerefError::InvalidConnectionString(format!(
                "secret {}/{} key {} is not a usable PostgreSQL connection string: {e}",
                r.namespace, r.name, r.key
            ))
        })?;
        (pg, dsn)
    } else {
        let host = conn.host.clone().unwrap_or_default();
        let password = match &conn.credentials_secret_ref {
            Some(r) => secrets.get(r).await?,
            None => String::new(),
        };
        let port = u16::try_from(conn.port).map_err(|_| DerefError::InvalidPort(conn.port))?;
        let mut config = tokio_postgres::Config::new();
        config
            .host(&host)
            .port(port)
            .user(&conn.user)
            .password(password.as_bytes());
        (
            PgTarget::from(config),
            format!("{host}:{}:{}:{password}", conn.port, conn.user),
        )
    };
    if let Some(mode) = conn.ssl_mode {
        pg = pg.with_ssl_mode(ssl_mode(mode));
        fingerprint.push_str(&format!("#sslmode={}", pg.tls.mode));
    }
    let mut ca_pem = None;
    if let Some(r) = &conn.ca_secret_ref {
        let pem = secrets.get(r).await?;
        let origin = format!("secret {}/{} key {}", r.namespace, r.name, r.key);
        pg = pg
            .with_ca_pem(pem.as_bytes(), &origin)
            .map_err(|e| DerefError::InvalidConnectionString(e.to_string()))?;
        fingerprint.push_str(&format!("#ca={pem}"));
        ca_pem = Some(pem);
    }
    pg.config.dbname(database_name);
    Ok(DbTarget {
        pg,
        fingerprint: format!("{fingerprint}#{database_name}"),
        ca_pem,
    })
}

/// How the writer of `region` is reached: its `writer` connection, or its RDS instance
/// (created when missing).
pub async fn writer_target(world: &World<'_>, region: &Region) -> Result<DbTarget, DerefError> {
    writer_target_in(world, region, super::rds::Mode::Ensure).await
}

async fn writer_target_in(
    world: &World<'_>,
    region: &Region,
    mode: super::rds::Mode,
) -> Result<DbTarget, DerefError> {
    let db = &region.spec.database;
    match (&db.writer, &db.rds) {
        (Some(writer), _) => target(world, writer, &db.database_name).await,
        (None, Some(rds)) => super::rds::writer_target(world, region, rds, mode).await,
        // Admission refuses it (CEL); an object that got past it says so.
        (None, None) => Err(DerefError::InvalidConnectionString(
            "spec.database sets neither writer nor rds; set exactly one".to_owned(),
        )),
    }
}

/// The writer database of `region` as it exists: an RDS instance is not created (a
/// Region being deleted).
pub async fn writer(world: &World<'_>, region: &Region) -> Result<Arc<dyn Database>, DerefError> {
    let target = writer_target_in(world, region, super::rds::Mode::Existing).await?;
    Ok(world.providers.databases.open(
        &region.name_any(),
        &target,
        world.settings.db_max_connections,
    )?)
}

/// The writer database of a live `region`: an RDS instance is created when missing
/// (what runs before the Region's dereference must not wait for an instance only the
/// dereference would create).
pub async fn live_writer(
    world: &World<'_>,
    region: &Region,
) -> Result<Arc<dyn Database>, DerefError> {
    let target = writer_target(world, region).await?;
    Ok(world.providers.databases.open(
        &region.name_any(),
        &target,
        world.settings.db_max_connections,
    )?)
}

/// A connection failure because the writer's certificate was refused, said as such with
/// the CA Secret to look at; any other error as it is.
pub(crate) fn untrusted(region: &Region, e: crate::db::DbError) -> DerefError {
    use crate::db::DbError;
    let DbError::Connect { endpoint, reason } = &e else {
        return e.into();
    };
    if !crate::controller::error::untrusted_certificate(reason) {
        return e.into();
    }
    let db = &region.spec.database;
    let ca = match (
        &db.rds,
        db.writer.as_ref().and_then(|w| w.ca_secret_ref.as_ref()),
    ) {
        (Some(rds), _) => format!(
            "the CA in secret {}/{} key {} (spec.database.rds.caSecretRef)",
            rds.ca_secret_ref.namespace, rds.ca_secret_ref.name, rds.ca_secret_ref.key
        ),
        (None, Some(r)) => format!(
            "the CA in secret {}/{} key {} (spec.database.writer.caSecretRef)",
            r.namespace, r.name, r.key
        ),
        (None, None) => "the CA of the connection string (sslrootcert)".to_owned(),
    };
    DerefError::CertificateUntrusted(format!(
        "the TLS certificate of {endpoint} was refused ({reason}): it does not lead to {ca}, or does not name the host; put the server's CA bundle there"
    ))
}

/// Reads everything the Region's plan needs; returns the writer too, for apply.
pub async fn dereference(
    region: &Region,
    world: &World<'_>,
) -> Result<(Arc<dyn Database>, RegionRefs), DerefError> {
    let name = region.name_any();
    let writer_at = writer_target(world, region).await?;
    let writer =
        world
            .providers
            .databases
            .open(&name, &writer_at, world.settings.db_max_connections)?;
    let standby = writer.probe().await.map_err(|e| untrusted(region, e))?;
    let source = match (&region.spec.role, &region.spec.replica_of) {
        (RegionRole::Replica, Some(source)) => Some(world.region(source).ok_or_else(|| {
            DerefError::RegionNotFound(format!(
                "spec.replicaOf names region {source}, which is not declared; create it or fix spec.replicaOf"
            ))
        })?),
        _ => None,
    };
    let secret_name = dataplane_secret_name(&name);
    let dataplane_secret = world
        .providers
        .secrets
        .read(&world.settings.namespace, &secret_name)
        .await?;
    if let Some(data) = &dataplane_secret
        && !data.contains_key("password")
    {
        return Err(SecretError::MissingKey {
            namespace: world.settings.namespace.clone(),
            name: format!("{secret_name} (delete it and the operator generates a new one)"),
            key: "password".to_owned(),
        }
        .into());
    }
    let mut logins = logins_seen(
        region,
        dataplane_secret.as_ref(),
        jiff::Timestamp::now(),
        world.settings.rotation_drain,
    );
    let (state, tenant_count) = match (region.spec.role, standby) {
        (RegionRole::Primary, Some(false)) => {
            let state = writer.state(&[&logins.active, &logins.other]).await?;
            if state.role(&logins.other).is_some_and(|r| r.login) {
                logins.other_sessions = Some(writer.sessions(&logins.other).await?);
            }
            let count = if state.schema_version > 0 {
                writer.tenant_count(&name).await?
            } else {
                0
            };
            (Some(state), count)
        }
        _ => (None, 0),
    };
    let own_lag = match standby {
        Some(true) => writer.replay().await?.map(|r| r.lag_seconds),
        _ => None,
    };
    let database_name = &region.spec.database.database_name;
    let mut readers = Vec::new();
    for (i, reader) in region.spec.database.readers.iter().enumerate() {
        let target = match target(world, reader, database_name).await {
            Ok(t) => t,
            Err(e) => {
                readers.push(Reader {
                    endpoint: None,
                    seen: ReaderSeen::Failed(e.to_string()),
                });
                continue;
            }
        };
        let endpoint = Some(reader_endpoint(i, &target, database_name));
        let measured = async {
            let db = world.providers.databases.open(
                &format!("{name}#reader-{i}"),
                &target,
                READER_POOL,
            )?;
            Ok::<_, DerefError>(db.replay().await?)
        };
        let seen = match measured.await {
            Ok(Some(replay)) => ReaderSeen::Standby(replay),
            Ok(None) => ReaderSeen::NotStandby,
            Err(e) => ReaderSeen::Failed(e.to_string()),
        };
        readers.push(Reader { endpoint, seen });
    }
    // After the readers: the writer is never behind what they replayed, so the distance
    // is never negative.
    let primary_state = state.as_ref().filter(|_| standby == Some(false));
    let writer_lsn = match primary_state {
        Some(_) if !readers.is_empty() => Some(writer.wal_position().await?),
        _ => None,
    };
    let published_readers = match primary_state {
        Some(s) if s.schema_version >= READERS_SCHEMA_VERSION => {
            Some(writer.published_readers().await?)
        }
        _ => None,
    };
    let refs = RegionRefs {
        endpoint: writer.endpoint().to_owned(),
        sslmode: writer_at.pg.tls.mode,
        ca_pem: writer_at.ca_pem,
        standby,
        state,
        own_lag,
        source,
        dataplane_secret,
        readers,
        writer_lsn,
        published_readers,
        tenant_count,
        logins,
    };
    Ok((writer, refs))
}
