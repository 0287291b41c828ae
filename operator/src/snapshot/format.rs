//! The snapshot object: a first line naming the format, a manifest (one line of JSON:
//! format version, tenant, catalog schema version, each table's columns, row count, size
//! and SHA-256), then each table's rows in PostgreSQL's COPY text format (what `pg_dump`
//! writes for data), one section per table in manifest order. Pure.
//!
//! A tenant's data is a list of (table, columns, rows): a `Shared` tenant's rows are
//! selected by `tenant_id` from the `clinical` tables, a `Schema` tenant's from its
//! schema's copies of them (named `clinical.<table>` here too; `tenant.isolation` says
//! which), and both restore the same way, into a tenant of either isolation. `tenant_id`
//! is never in the rows: a restore writes the target tenant's own id.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// First line of every snapshot object (before the format version).
pub const MAGIC: &str = "phoenix-tenant-snapshot";

/// The format this operator writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// Who the snapshot is of.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotTenant {
    /// The Tenant object's UID.
    pub uid: String,
    /// The Tenant's name.
    pub name: String,
    /// Its `catalog.tenants.id` (the `tenant_id` of its rows) when the snapshot was taken.
    pub catalog_id: i64,
    /// Its home Region.
    pub home_region: String,
    /// Its isolation (`Shared` or `Schema`): where its rows were read from.
    pub isolation: String,
}

/// One table's section as the manifest describes it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TableManifest {
    /// Schema-qualified table name, e.g. `clinical.patients`.
    pub table: String,
    /// The columns of each row, in order (never `tenant_id`).
    pub columns: Vec<String>,
    /// Rows in the section.
    pub rows: u64,
    /// Bytes of the section.
    pub bytes: u64,
    /// SHA-256 of the section, hex.
    pub sha256: String,
}

/// The manifest line.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// [`FORMAT_VERSION`] of the writer.
    pub format: u32,
    /// Who.
    pub tenant: SnapshotTenant,
    /// Catalog schema version of the region database it was taken from.
    pub schema_version: i32,
    /// When (RFC 3339, UTC).
    pub taken_at: String,
    /// The sections, parents before children (the order a restore loads them in).
    pub tables: Vec<TableManifest>,
}

/// One table's rows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableData {
    /// Schema-qualified table name.
    pub table: String,
    /// Columns of each row, in order.
    pub columns: Vec<String>,
    /// Rows (COPY text format counts one line per row).
    pub rows: u64,
    /// The rows in COPY text format.
    pub data: Vec<u8>,
}

/// A snapshot in memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// Who.
    pub tenant: SnapshotTenant,
    /// Catalog schema version it was taken at.
    pub schema_version: i32,
    /// When (RFC 3339, UTC).
    pub taken_at: String,
    /// Tables, parents first.
    pub tables: Vec<TableData>,
}

/// Why bytes are not a snapshot this operator can read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// Not a snapshot at all.
    #[error("not a tenant snapshot (the first line is not `{MAGIC} <version>`)")]
    NotASnapshot,
    /// Written by a newer format.
    #[error(
        "snapshot format {found} is not known to this operator (it reads {FORMAT_VERSION}); use a newer phoenix-operator"
    )]
    UnknownFormat {
        /// The version found.
        found: u32,
    },
    /// The manifest does not parse.
    #[error("the snapshot's manifest is not valid: {0}")]
    Manifest(String),
    /// A section is not what the manifest says (truncated or altered object).
    #[error("section {table} of the snapshot is damaged: {why}")]
    Damaged {
        /// The table.
        table: String,
        /// What differs.
        why: String,
    },
}

impl Snapshot {
    /// Row counts by table, in manifest order.
    pub fn counts(&self) -> Vec<(String, u64)> {
        self.tables
            .iter()
            .map(|t| (t.table.clone(), t.rows))
            .collect()
    }

    /// Rows of all tables.
    pub fn total_rows(&self) -> u64 {
        self.tables.iter().map(|t| t.rows).sum()
    }

    /// The manifest of this snapshot.
    pub fn manifest(&self) -> Manifest {
        Manifest {
            format: FORMAT_VERSION,
            tenant: self.tenant.clone(),
            schema_version: self.schema_version,
            taken_at: self.taken_at.clone(),
            tables: self
                .tables
                .iter()
                .map(|t| TableManifest {
                    table: t.table.clone(),
                    columns: t.columns.clone(),
                    rows: t.rows,
                    bytes: t.data.len() as u64,
                    sha256: hex::encode(Sha256::digest(&t.data)),
                })
                .collect(),
        }
    }

    /// The object's bytes.
    pub fn encode(&self) -> Vec<u8> {
        // A manifest of strings and integers always serialises.
        let manifest = serde_json::to_string(&self.manifest()).unwrap_or_default();
        let size: usize = self.tables.iter().map(|t| t.data.len()).sum();
        let mut out = Vec::with_capacity(MAGIC.len() + manifest.len() + size + 8);
        out.extend_from_slice(format!("{MAGIC} {FORMAT_VERSION}\n").as_bytes());
        out.extend_from_slice(manifest.as_bytes());
        out.push(b'\n');
        for t in &self.tables {
            out.extend_from_slice(&t.data);
        }
        out
    }

    /// Reads an object, checking every section against the manifest.
    pub fn decode(bytes: &[u8]) -> Result<Snapshot, FormatError> {
        let (first, rest) = split_line(bytes).ok_or(FormatError::NotASnapshot)?;
        let first = std::str::from_utf8(first).map_err(|_| FormatError::NotASnapshot)?;
        let version = first
            .strip_prefix(MAGIC)
            .and_then(|v| v.strip_prefix(' '))
            .and_then(|v| v.parse::<u32>().ok())
            .ok_or(FormatError::NotASnapshot)?;
        if version != FORMAT_VERSION {
            return Err(FormatError::UnknownFormat { found: version });
        }
        let (line, mut body) =
            split_line(rest).ok_or_else(|| FormatError::Manifest("no manifest line".into()))?;
        let manifest: Manifest =
            serde_json::from_slice(line).map_err(|e| FormatError::Manifest(e.to_string()))?;
        if manifest.format != FORMAT_VERSION {
            return Err(FormatError::UnknownFormat {
                found: manifest.format,
            });
        }
        let mut tables = Vec::with_capacity(manifest.tables.len());
        for t in &manifest.tables {
            let damaged = |why: String| FormatError::Damaged {
                table: t.table.clone(),
                why,
            };
            let len = usize::try_from(t.bytes).map_err(|_| damaged("too large".into()))?;
            if body.len() < len {
                return Err(damaged(format!(
                    "{} byte(s) expected, {} left in the object (truncated)",
                    t.bytes,
                    body.len()
                )));
            }
            let (data, next) = body.split_at(len);
            body = next;
            if hex::encode(Sha256::digest(data)) != t.sha256 {
                return Err(damaged("its SHA-256 differs from the manifest's".into()));
            }
            let lines = data.iter().filter(|b| **b == b'\n').count() as u64;
            if lines != t.rows {
                return Err(damaged(format!(
                    "{lines} row(s), the manifest says {}",
                    t.rows
                )));
            }
            tables.push(TableData {
                table: t.table.clone(),
                columns: t.columns.clone(),
                rows: t.rows,
                data: data.to_vec(),
            });
        }
        if !body.is_empty() {
            return Err(FormatError::Manifest(format!(
                "{} byte(s) after the last section",
                body.len()
            )));
        }
        Ok(Snapshot {
            tenant: manifest.tenant,
            schema_version: manifest.schema_version,
            taken_at: manifest.taken_at,
            tables,
        })
    }
}

fn split_line(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let at = bytes.iter().position(|b| *b == b'\n')?;
    Some((&bytes[..at], &bytes[at + 1..]))
}

/// `patients=3, encounters=2, ...` (tables without their schema), for Events and output.
pub fn describe_counts(counts: &[(String, u64)]) -> String {
    counts
        .iter()
        .map(|(t, n)| format!("{}={n}", t.rsplit('.').next().unwrap_or(t)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The object key of a snapshot: `<prefix>/<region>/<tenant>/<uid>/<time>.snapshot`, with
/// `time` as `YYYYMMDDTHHMMSSZ` from `taken_at` (RFC 3339), so that keys of one tenant sort
/// by time. Deterministic in its inputs.
pub fn object_key(
    prefix: Option<&str>,
    region: &str,
    tenant: &str,
    uid: &str,
    taken_at: &str,
) -> String {
    let stamp: String = taken_at
        .chars()
        .take(19)
        .filter(|c| c.is_ascii_digit() || *c == 'T')
        .collect();
    let mut key = String::new();
    if let Some(p) = prefix
        .map(|p| p.trim_matches('/'))
        .filter(|p| !p.is_empty())
    {
        key.push_str(p);
        key.push('/');
    }
    key.push_str(&format!("{region}/{tenant}/{uid}/{stamp}Z.snapshot"));
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Snapshot {
        Snapshot {
            tenant: SnapshotTenant {
                uid: "u-1".into(),
                name: "mercy".into(),
                catalog_id: 7,
                home_region: "us-east-1".into(),
                isolation: "Shared".into(),
            },
            schema_version: 12,
            taken_at: "2026-11-24T05:38:29.123Z".into(),
            tables: vec![
                TableData {
                    table: "clinical.patients".into(),
                    columns: vec!["id".into(), "resource".into()],
                    rows: 2,
                    data: b"a\t{}\nb\t{\"x\": \"l1\\\\nl2\"}\n".to_vec(),
                },
                TableData {
                    table: "clinical.encounters".into(),
                    columns: vec!["id".into()],
                    rows: 0,
                    data: Vec::new(),
                },
            ],
        }
    }

    #[test]
    fn an_encoded_snapshot_decodes_to_itself() {
        let s = sample();
        assert_eq!(Snapshot::decode(&s.encode()), Ok(s));
    }

    #[test]
    fn a_truncated_or_altered_object_is_refused_naming_the_table() {
        let bytes = sample().encode();
        let cut = &bytes[..bytes.len() - 3];
        assert!(matches!(
            Snapshot::decode(cut),
            Err(FormatError::Damaged { table, .. }) if table == "clinical.patients"
        ));
        let mut altered = bytes.clone();
        let last = altered.len() - 2;
        altered[last] = b'X';
        assert!(matches!(
            Snapshot::decode(&altered),
            Err(FormatError::Damaged { why, .. }) if why.contains("SHA-256")
        ));
        let mut longer = bytes;
        longer.extend_from_slice(b"extra\n");
        assert!(matches!(
            Snapshot::decode(&longer),
            Err(FormatError::Manifest(_))
        ));
    }

    #[test]
    fn another_format_or_file_is_refused() {
        assert_eq!(
            Snapshot::decode(b"PGDMP\x01\x0e"),
            Err(FormatError::NotASnapshot)
        );
        let bytes = sample().encode();
        let text = String::from_utf8(bytes).expect("utf-8 sample");
        let newer = text.replacen(&format!("{MAGIC} 1"), &format!("{MAGIC} 2"), 1);
        assert_eq!(
            Snapshot::decode(newer.as_bytes()),
            Err(FormatError::UnknownFormat { found: 2 })
        );
    }

    #[test]
    fn keys_sort_by_time_under_the_prefix() {
        let k = object_key(
            Some("tenants/"),
            "us-east-1",
            "mercy",
            "u-1",
            "2026-11-24T05:38:29.123456Z",
        );
        assert_eq!(k, "tenants/us-east-1/mercy/u-1/20261124T053829Z.snapshot");
        let k = object_key(None, "r", "t", "u", "2026-01-02T03:04:05Z");
        assert_eq!(k, "r/t/u/20260102T030405Z.snapshot");
    }

    #[test]
    fn counts_are_described_without_the_schema() {
        assert_eq!(
            describe_counts(&sample().counts()),
            "patients=2, encounters=0"
        );
    }
}
