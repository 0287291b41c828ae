//! `catalog.readers`: the Region's readers (streaming replicas), published by the operator
//! from `Region.spec.database.readers` for the data plane's reader pool. Endpoints only:
//! the data plane logs in to a physical replica with its own credentials.

/// One published reader.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReaderRow {
    /// Its position in `spec.database.readers`.
    pub ordinal: i32,
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: i32,
    /// Database name (the Region's `databaseName`).
    pub dbname: String,
    /// libpq `sslmode` the data plane uses (the CA is the writer's, in its Secret).
    pub sslmode: String,
    /// Whether the operator last found it a streaming standby.
    pub healthy: bool,
}

/// The columns [`ReaderRow::from_row`] reads, in order, for `SELECT`s of the table.
pub const READER_COLUMNS: &str = "ordinal, host, port, dbname, sslmode, healthy";

impl ReaderRow {
    /// Reads a row selected with [`READER_COLUMNS`].
    pub fn from_row(row: &tokio_postgres::Row) -> Result<Self, tokio_postgres::Error> {
        Ok(Self {
            ordinal: row.try_get("ordinal")?,
            host: row.try_get("host")?,
            port: row.try_get("port")?,
            dbname: row.try_get("dbname")?,
            sslmode: row.try_get("sslmode")?,
            healthy: row.try_get("healthy")?,
        })
    }

    /// `host:port/dbname`, for messages and status.
    pub fn endpoint(&self) -> String {
        format!("{}:{}/{}", self.host, self.port, self.dbname)
    }
}
