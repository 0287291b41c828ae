//! Dereference of a Tenant: its Region and, once that is Ready, what the region's catalog
//! holds about it and the state of RLS on the shared tables. Reads only.

use std::sync::Arc;

use kube::ResourceExt;
use phoenix_catalog::TenantRow;
use phoenix_crds::{Placement, Region};

use crate::conditions::{self, types};
use crate::controller::error::DerefError;
use crate::controller::providers::{Database, RowsSeen};
use crate::controller::region::deref::{writer, writer_target};
use crate::controller::world::World;
use crate::db::rls::TableState;
use crate::db::tenant_database::DatabaseSeen;
use crate::db::tenant_schema::SchemaSeen;

/// What the region database shows.
#[derive(Clone, Debug, PartialEq)]
pub struct Seen {
    /// Applied schema version.
    pub schema_version: i32,
    /// RLS of the shared tables.
    pub rls: Vec<TableState>,
    /// The tenant's row and rows claiming its names.
    pub rows: RowsSeen,
    /// A `Schema` tenant's schema, role and the clinical template.
    pub schema: Option<SchemaSeen>,
    /// A `Dedicated` tenant's database and role on the server, and the clinical template.
    pub database: Option<DatabaseSeen>,
}

/// Everything a Tenant's plan needs besides the tenant itself.
#[derive(Clone, Debug)]
pub struct TenantRefs {
    /// The Region whose database serves the tenant: its home, or the Region promoted in
    /// the home's place by a failover.
    pub region: Arc<Region>,
    /// Why the Region is not Ready, if it is not.
    pub region_not_ready: Option<String>,
    /// The region database, when the Region is Ready.
    pub seen: Option<Seen>,
    /// A `Dedicated` tenant's own database (a bounded pool, opened lazily), for apply.
    pub tenant_db: Option<TenantDb>,
    /// A `Dedicated` tenant's own RDS instance (on an RDS Region): where its database
    /// lives instead of the region's server, for apply.
    pub server: Option<TenantServer>,
}

/// The server of a `Dedicated` tenant's own RDS instance, as apply reaches it.
#[derive(Clone, Debug)]
pub struct TenantServer {
    /// Its `postgres` database as the master user (role and database work).
    pub db: TenantDb,
    /// The region's data plane logins, made there with their region passwords.
    pub logins: Vec<super::rds::Login>,
    /// The instance's identifier.
    pub identifier: String,
    /// Where the operator and the data plane reach it (the endpoint RDS reports, through
    /// the endpoint map), published in the catalog row.
    pub endpoint: (String, u16),
}

/// A `Dedicated` tenant's own database, as apply reaches it.
#[derive(Clone)]
pub struct TenantDb(pub Arc<dyn Database>);

impl std::fmt::Debug for TenantDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("TenantDb").field(&self.0.endpoint()).finish()
    }
}

/// Reads what the plan needs; returns the region database too, for apply.
pub async fn dereference(
    placement: &Placement,
    desired: &TenantRow,
    world: &World<'_>,
) -> Result<(Option<Arc<dyn Database>>, TenantRefs), DerefError> {
    let name = &placement.region;
    let home = world.region(name).ok_or_else(|| {
        DerefError::RegionNotFound(format!(
            "region {name} is not declared; create a Region named {name}"
        ))
    })?;
    // After a failover the promoted Region's database (a copy of the home's) serves it.
    let region = crate::controller::region::failover::serving_region(&world.regions, &home)
        .unwrap_or_else(|| home.clone());
    let status = region.status.as_ref();
    if !status.is_some_and(|s| conditions::is_true(&s.conditions, types::READY)) {
        let why = status
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == types::READY))
            .map(|c| c.message.clone())
            .unwrap_or_else(|| "not reconciled yet".to_owned());
        let refs = TenantRefs {
            region,
            region_not_ready: Some(why),
            seen: None,
            tenant_db: None,
            server: None,
        };
        return Ok((None, refs));
    }
    let db = writer(world, &region).await?;
    let schema_version = db.schema_version().await?;
    let role = phoenix_catalog::schemas::tenant_role(&desired.uid);
    let mut database = None;
    let mut tenant_db = None;
    let mut server = None;
    if let Some(name) = &desired.database
        && schema_version >= phoenix_catalog::latest_version()
    {
        let on_region = db.tenant_database(name, &role).await?;
        let databases = &world.providers.databases;
        // A tenant's own RDS instance belongs to its home Region (its tags, AWS region,
        // shape and CA), whichever Region's database serves the catalog after a failover.
        match &home.spec.database.rds {
            None => {
                let target = writer_target(world, &region).await?;
                tenant_db = Some(TenantDb(databases.open_tenant_database(
                    &placement.region,
                    &target,
                    name,
                )?));
                database = Some(on_region);
            }
            Some(rds_spec) => {
                // Its own instance: the server work is read there, the template (the
                // clinical tables, the logins' grants) stays the region's.
                let (target, instance, endpoint) = super::rds::server_target(
                    world,
                    &home,
                    rds_spec,
                    &desired.name,
                    &desired.uid,
                    crate::controller::region::rds::Mode::Ensure,
                )
                .await?;
                let admin = databases.open_tenant_database(
                    &placement.region,
                    &target,
                    super::rds::ADMIN_DATABASE,
                )?;
                let mut seen = admin.tenant_database(name, &role).await?;
                let logins = super::rds::region_logins(
                    world,
                    &region.name_any(),
                    crate::db::tenant_database::logins(&on_region.template),
                )
                .await?;
                seen.template = on_region.template;
                database = Some(seen);
                tenant_db = Some(TenantDb(databases.open_tenant_database(
                    &placement.region,
                    &target,
                    name,
                )?));
                server = Some(TenantServer {
                    db: TenantDb(admin),
                    logins,
                    endpoint,
                    identifier: instance.identifier,
                });
            }
        }
    }
    let (rls, rows, schema) = if schema_version >= phoenix_catalog::latest_version() {
        let schema = match &desired.schema {
            Some(name) => Some(
                db.tenant_schema(name, &phoenix_catalog::schemas::tenant_role(&desired.uid))
                    .await?,
            ),
            None => None,
        };
        (
            db.rls_state().await?,
            db.tenant_rows(desired).await?,
            schema,
        )
    } else {
        (Vec::new(), RowsSeen::default(), None)
    };
    let refs = TenantRefs {
        region,
        region_not_ready: None,
        seen: Some(Seen {
            schema_version,
            rls,
            rows,
            schema,
            database,
        }),
        tenant_db,
        server,
    };
    Ok((Some(db), refs))
}
