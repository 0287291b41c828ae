//! `catalog.tenants`: one row per tenant a region serves. The operator writes
//! [`TenantRow`]s; both sides read [`TenantRecord`]s.

/// A string the catalog holds that this version does not know (written by a newer
/// operator, or by hand).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{column} = {value:?} is not a value this version knows")]
pub struct UnknownValue {
    /// Column holding the value.
    pub column: &'static str,
    /// The value.
    pub value: String,
}

string_enum!(
    /// How a tenant's clinical rows are kept apart from other tenants'.
    Isolation, "isolation", {
        /// Rows in the shared clinical tables, separated by row-level security.
        Shared => "Shared",
        /// A schema of its own.
        Schema => "Schema",
        /// A database (or RDS instance) of its own.
        Dedicated => "Dedicated",
    }
);

string_enum!(
    /// Whether a tenant is served.
    TenantState, "state", {
        /// Served.
        Active => "active",
        /// Known, but refused until the operator reactivates it; data kept.
        Suspended => "suspended",
        /// Deleted with `deletionPolicy: Retain`: data kept, name and host name freed.
        Retired => "retired",
    }
);

/// The catalog row of a tenant as the operator wants it (the database assigns the id).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TenantRow {
    /// Kubernetes UID: the stable key, so a re-created Tenant never inherits retired data.
    pub uid: String,
    /// Tenant name (a DNS label).
    pub name: String,
    /// Human name of the hospital system.
    pub display_name: String,
    /// Host name the data plane resolves, lowercased.
    pub hostname: String,
    /// Region that holds the tenant's primary data.
    pub home_region: String,
    /// Jurisdictions the tenant's data may live in.
    pub data_residency: Vec<String>,
    /// How its rows are isolated.
    pub isolation: Isolation,
    /// Whether it is served.
    pub state: TenantState,
    /// Request rate limit.
    pub requests_per_second: i32,
    /// User limit.
    pub max_users: i32,
    /// `metadata.generation` of the Tenant the row was written from.
    pub generation: i64,
    /// The tenant's own schema (isolation `Schema`), `None` for the shared `clinical`
    /// schema; always a valid name ([`crate::schemas::valid_tenant_schema`]).
    pub schema: Option<String>,
    /// The tenant's own database on the region's server (isolation `Dedicated`), `None`
    /// for this database; always a valid name ([`crate::schemas::valid_tenant_database`]).
    pub database: Option<String>,
    /// Where that database is, when not on this database's server (a `Dedicated` tenant's
    /// own RDS instance): host and port; always valid ([`valid_database_host`]).
    pub database_server: Option<(String, u16)>,
}

/// Whether `host` may be published as a tenant database's host: a DNS name or an IPv4
/// address (letters, digits, dots and hyphens, at most 253), never anything a connection
/// string could read as an option.
pub fn valid_database_host(host: &str) -> bool {
    let b = host.as_bytes();
    !b.is_empty()
        && b.len() <= 253
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'.' || *c == b'-')
        && b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last().is_some_and(u8::is_ascii_alphanumeric)
}

impl TenantRow {
    /// The schema holding the tenant's clinical tables.
    pub fn schema_or_shared(&self) -> &str {
        self.schema
            .as_deref()
            .unwrap_or(crate::schemas::SHARED_SCHEMA)
    }
}

/// A row of `catalog.tenants` as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TenantRecord {
    /// Catalog id; the value of the tenant setting under row-level security.
    pub id: i64,
    /// Everything else.
    pub row: TenantRow,
}

impl std::ops::Deref for TenantRecord {
    type Target = TenantRow;

    fn deref(&self) -> &TenantRow {
        &self.row
    }
}

/// Why a row could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RowError {
    /// A column is missing or has another type than this version expects.
    #[error("catalog.tenants has an unexpected column: {0}")]
    Column(#[from] tokio_postgres::Error),
    /// A schema name that is not a plain identifier (a hand-edited row): never used.
    #[error("catalog.tenants row {id}: schema_name {name:?} is not a valid tenant schema name")]
    InvalidSchema {
        /// Catalog id of the row.
        id: i64,
        /// The name found.
        name: String,
    },
    /// A database name that is not a plain identifier (a hand-edited row): never used.
    #[error("catalog.tenants row {id}: database_name {name:?} is not a valid tenant database name")]
    InvalidDatabase {
        /// Catalog id of the row.
        id: i64,
        /// The name found.
        name: String,
    },
    /// A database server (host, port) that is not valid or only half there.
    #[error(
        "catalog.tenants row {id}: database_host {host:?} / database_port {port:?} is not a valid server"
    )]
    InvalidDatabaseServer {
        /// Catalog id of the row.
        id: i64,
        /// The host found.
        host: Option<String>,
        /// The port found.
        port: Option<i32>,
    },
    /// A value this version does not know.
    #[error("catalog.tenants row {id}: {source}")]
    Unknown {
        /// Catalog id of the row.
        id: i64,
        /// The value.
        #[source]
        source: UnknownValue,
    },
}

/// The columns [`TenantRecord::from_row`] reads, for `SELECT {COLUMNS} FROM catalog.tenants`.
pub const COLUMNS: &str = "id, uid, name, display_name, hostname, home_region, data_residency, \
     isolation, state, requests_per_second, max_users, generation, schema_name, database_name, \
     database_host, database_port";

impl TenantRecord {
    /// Reads a row selected with [`COLUMNS`]; every column with `try_get`, so a schema
    /// surprise is an error, never a panic.
    pub fn from_row(row: &tokio_postgres::Row) -> Result<Self, RowError> {
        let id: i64 = row.try_get("id")?;
        let parse = |column: &str| -> Result<String, RowError> { Ok(row.try_get(column)?) };
        let isolation = parse("isolation")?
            .parse()
            .map_err(|source| RowError::Unknown { id, source })?;
        let state = parse("state")?
            .parse()
            .map_err(|source| RowError::Unknown { id, source })?;
        let schema: Option<String> = row.try_get("schema_name")?;
        if let Some(name) = &schema
            && !crate::schemas::valid_tenant_schema(name)
        {
            return Err(RowError::InvalidSchema {
                id,
                name: name.clone(),
            });
        }
        let database: Option<String> = row.try_get("database_name")?;
        if let Some(name) = &database
            && !crate::schemas::valid_tenant_database(name)
        {
            return Err(RowError::InvalidDatabase {
                id,
                name: name.clone(),
            });
        }
        let host: Option<String> = row.try_get("database_host")?;
        let port: Option<i32> = row.try_get("database_port")?;
        let database_server = match (&host, port) {
            (None, None) => None,
            (Some(h), Some(p)) if valid_database_host(h) && database.is_some() => {
                match u16::try_from(p) {
                    Ok(p) if p > 0 => Some((h.clone(), p)),
                    _ => return Err(RowError::InvalidDatabaseServer { id, host, port }),
                }
            }
            _ => return Err(RowError::InvalidDatabaseServer { id, host, port }),
        };
        Ok(TenantRecord {
            id,
            row: TenantRow {
                uid: row.try_get("uid")?,
                name: row.try_get("name")?,
                display_name: row.try_get("display_name")?,
                hostname: row.try_get("hostname")?,
                home_region: row.try_get("home_region")?,
                data_residency: row.try_get("data_residency")?,
                isolation,
                state,
                requests_per_second: row.try_get("requests_per_second")?,
                max_users: row.try_get("max_users")?,
                generation: row.try_get("generation")?,
                schema,
                database,
                database_server,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_forms_round_trip_and_unknown_values_are_named() {
        for i in Isolation::ALL {
            assert_eq!(i.as_str().parse::<Isolation>(), Ok(*i));
        }
        for s in TenantState::ALL {
            assert_eq!(s.as_str().parse::<TenantState>(), Ok(*s));
        }
        let err = "Partitioned".parse::<Isolation>().unwrap_err();
        assert_eq!(err.column, "isolation");
        assert!(err.to_string().contains("\"Partitioned\""), "{err}");
        assert!("Active".parse::<TenantState>().is_err(), "case matters");
    }

    #[test]
    fn string_forms_are_the_stored_contract() {
        // These strings are in databases in production: changing one is a migration.
        assert_eq!(
            Isolation::ALL
                .iter()
                .map(|i| i.as_str())
                .collect::<Vec<_>>(),
            ["Shared", "Schema", "Dedicated"]
        );
        assert_eq!(
            TenantState::ALL
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>(),
            ["active", "suspended", "retired"]
        );
    }
}
