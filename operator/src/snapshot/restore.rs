//! Loading a snapshot into another tenant of a region database, in one transaction: each
//! table's rows are copied into a temporary table and inserted with the target tenant's id
//! (uuids and versions kept), parents first. A target that already has rows is refused.
//!
//! Snapshots of `Shared` and `Schema` tenants have the same tables and columns, so either
//! restores into a `Shared` tenant (rows into the `clinical` tables) or a `Schema` tenant
//! (rows into its schema's copies, with its own copies of the audit functions and trigger).
//!
//! The audit trail is a hash chain whose entries cover their `tenant_id`
//! (`clinical.audit_canonical`, migration 0010), so its stored hashes cannot verify under
//! another id. The restore first verifies the snapshot's chain under its original id
//! (refusing an altered one), then writes the same entries (same `seq`, time, actor, ...)
//! chained again under the new id, with the chain trigger (which would stamp the current
//! time) disabled for the transaction. `phoenix-dataplane audit verify` then passes for the
//! restored tenant; the original chain stays provable from the snapshot object.

use bytes::Bytes;
use futures::SinkExt;
use phoenix_catalog::rls::TENANT_TABLES;
use sha2::{Digest, Sha256};
use tokio_postgres::{Client, Transaction};

use super::dump::{columns, load_order, physical, rows_schema};
use super::format::Snapshot;
use crate::db::rls::quote_ident;
use crate::db::{DbError, col};

/// Tenant tables a restore leaves empty: login attempts and browser sessions are
/// credentials of the old tenant (a session's hash authenticates its cookie), not data.
/// Their rows are in the snapshot; users sign in again.
pub const NOT_RESTORED: [&str; 2] = ["clinical.login_attempts", "clinical.sessions"];

/// The audit trail's table.
const AUDIT: &str = "clinical.audit_events";

/// Why a restore did not happen. Nothing was written in any case.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// A statement failed.
    #[error(transparent)]
    Database(#[from] DbError),
    /// The snapshot or the target is not fit; the message says what to do.
    #[error("{0}")]
    Refused(String),
}

/// What a restore loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Restored {
    /// The target tenant's catalog id.
    pub tenant_id: i64,
    /// Rows inserted, by table.
    pub loaded: Vec<(String, u64)>,
    /// Rows of the snapshot left out ([`NOT_RESTORED`]), by table.
    pub skipped: Vec<(String, u64)>,
    /// Audit entries verified under the original id and chained again under the new one.
    pub audit_rechained: u64,
}

fn refused(message: impl Into<String>) -> RestoreError {
    RestoreError::Refused(message.into())
}

/// Loads `snap` (of a `Shared` or `Schema` tenant) into the live `Shared` or `Schema`
/// tenant named `into`.
pub async fn restore(
    client: &mut Client,
    snap: &Snapshot,
    into: &str,
) -> Result<Restored, RestoreError> {
    if !["Shared", "Schema", "Dedicated"].contains(&snap.tenant.isolation.as_str()) {
        return Err(refused(format!(
            "the snapshot is of a tenant with isolation {}; this version restores snapshots of Shared, Schema and Dedicated tenants only",
            snap.tenant.isolation
        )));
    }
    for t in &snap.tables {
        if !TENANT_TABLES.contains(&t.table.as_str()) {
            return Err(refused(format!(
                "the snapshot holds table {}, which is not a tenant table of this operator",
                t.table
            )));
        }
    }
    let tx = client
        .transaction()
        .await
        .map_err(DbError::query("starting the restore"))?;
    // Waiting long for the audit trail's lock would queue the region's requests behind it.
    tx.batch_execute("SET LOCAL lock_timeout = '10s'")
        .await
        .map_err(DbError::query("starting the restore"))?;
    let version = tx
        .query_one(
            "SELECT coalesce(max(version), 0) FROM phoenix_meta.schema_migrations",
            &[],
        )
        .await
        .map_err(DbError::query("reading the schema version"))?;
    let version: i32 = col(&version, 0)?;
    if version < snap.schema_version {
        return Err(refused(format!(
            "the region database is at catalog schema version {version}, older than the snapshot's {}; let an operator that knows version {} migrate it first",
            snap.schema_version, snap.schema_version
        )));
    }
    let target = tx
        .query_opt(
            "SELECT id, isolation, schema_name FROM catalog.tenants
             WHERE name = $1 AND state <> 'retired' FOR UPDATE",
            &[&into],
        )
        .await
        .map_err(DbError::query("finding the target tenant"))?
        .ok_or_else(|| {
            refused(format!(
                "no live tenant named {into} in this region database; apply a Tenant of that name (isolation Shared or Schema, spec.suspended true) and wait until it is Ready"
            ))
        })?;
    let (id, isolation): (i64, String) = (col(&target, 0)?, col(&target, 1)?);
    let schema = rows_schema(&isolation, col(&target, 2)?, into).map_err(refused)?;
    let schema = schema.as_deref();
    tx.execute(
        "SELECT set_config('app.tenant_id', $1::bigint::text, true)",
        &[&id],
    )
    .await
    .map_err(DbError::query("scoping the restore to the tenant"))?;
    for table in TENANT_TABLES {
        let n = tx
            .query_one(
                &format!(
                    "SELECT count(*) FROM {} WHERE tenant_id = $1",
                    physical(table, schema)
                ),
                &[&id],
            )
            .await
            .map_err(DbError::query("checking the target tenant is empty"))?;
        let n: i64 = col(&n, 0)?;
        if n > 0 && !NOT_RESTORED.contains(&table) {
            return Err(refused(format!(
                "tenant {into} already has {n} row(s) in {table}; restore only into a tenant that holds no data (create a new one, suspended so no request writes to it)"
            )));
        }
    }
    let mut restored = Restored {
        tenant_id: id,
        loaded: Vec::new(),
        skipped: Vec::new(),
        audit_rechained: 0,
    };
    for (i, table) in load_order().enumerate() {
        let Some(data) = snap.tables.iter().find(|t| t.table == table) else {
            continue;
        };
        if NOT_RESTORED.contains(&table) {
            restored.skipped.push((table.to_owned(), data.rows));
            continue;
        }
        let target = physical(table, schema);
        let have = columns(&tx, &target).await?;
        if let Some(missing) = data.columns.iter().find(|c| !have.contains(c)) {
            return Err(refused(format!(
                "column {missing} of {table} in the snapshot does not exist in the region database (schema version {version}, the snapshot's {})",
                snap.schema_version
            )));
        }
        let list = data
            .columns
            .iter()
            .map(|c| quote_ident(c))
            .collect::<Vec<_>>()
            .join(", ");
        let load = format!("snapshot_load_{i}");
        tx.batch_execute(&format!(
            "CREATE TEMPORARY TABLE {load} ON COMMIT DROP AS SELECT {list} FROM {target} WITH NO DATA"
        ))
        .await
        .map_err(DbError::query("preparing to load a table"))?;
        let sink = tx
            .copy_in(&format!("COPY {load} ({list}) FROM STDIN"))
            .await
            .map_err(DbError::query("loading a table of the snapshot"))?;
        futures::pin_mut!(sink);
        sink.send(Bytes::from(data.data.clone()))
            .await
            .map_err(DbError::query("loading a table of the snapshot"))?;
        let copied = sink
            .as_mut()
            .finish()
            .await
            .map_err(DbError::query("loading a table of the snapshot"))?;
        if copied != data.rows {
            return Err(refused(format!(
                "{table}: {copied} row(s) loaded, the snapshot says {}",
                data.rows
            )));
        }
        let insert =
            format!("INSERT INTO {target} (tenant_id, {list}) SELECT $1, {list} FROM {load}");
        let n = if table == AUDIT {
            let ns = schema.map_or_else(|| "clinical".to_owned(), quote_ident);
            restored.audit_rechained = rechain(&tx, &ns, &load, &data.columns, snap, id).await?;
            tx.batch_execute(&format!(
                "ALTER TABLE {target} DISABLE TRIGGER audit_events_chain"
            ))
            .await
            .map_err(DbError::query("pausing the audit chain trigger"))?;
            let n = tx
                .execute(&insert, &[&id])
                .await
                .map_err(DbError::query("inserting the audit trail"))?;
            tx.batch_execute(&format!(
                "ALTER TABLE {target} ENABLE TRIGGER audit_events_chain"
            ))
            .await
            .map_err(DbError::query("resuming the audit chain trigger"))?;
            n
        } else {
            tx.execute(&insert, &[&id])
                .await
                .map_err(DbError::query("inserting a table of the snapshot"))?
        };
        restored.loaded.push((table.to_owned(), n));
    }
    tx.commit()
        .await
        .map_err(DbError::query("committing the restore"))?;
    Ok(restored)
}

/// Each entry of `load` (ordered by `seq`): its canonical bytes with `tenant_id` (by the
/// target's `audit_canonical` in schema `ns`, quoted), its stored `prev_hash` and `hash`.
async fn canonical(
    tx: &Transaction<'_>,
    ns: &str,
    load: &str,
    dumped: &[String],
    tenant_id: i64,
) -> Result<Vec<(i64, Vec<u8>, Vec<u8>, Vec<u8>)>, RestoreError> {
    for needed in ["seq", "prev_hash", "hash"] {
        if !dumped.iter().any(|c| c == needed) {
            return Err(refused(format!(
                "the snapshot's audit trail has no column {needed}; it cannot be verified"
            )));
        }
    }
    let all = tx
        .query(
            "SELECT attname::text FROM pg_attribute
             WHERE attrelid = ($1 || '.audit_events')::regclass AND attnum > 0 AND NOT attisdropped
             ORDER BY attnum",
            &[&ns],
        )
        .await
        .map_err(DbError::query("reading the audit trail's columns"))?;
    let mut fields = Vec::with_capacity(all.len());
    for r in &all {
        let name: String = col(r, 0)?;
        fields.push(if name == "tenant_id" {
            "$1::bigint".to_owned()
        } else if dumped.contains(&name) {
            format!("l.{}", quote_ident(&name))
        } else {
            "NULL".to_owned()
        });
    }
    let sql = format!(
        "SELECT l.seq, convert_to({ns}.audit_canonical(ROW({})::{ns}.audit_events), 'UTF8'), l.prev_hash, l.hash
         FROM {load} l ORDER BY l.seq",
        fields.join(", ")
    );
    let rows = tx
        .query(&sql, &[&tenant_id])
        .await
        .map_err(DbError::query("encoding the audit trail"))?;
    rows.iter()
        .map(|r| Ok((col(r, 0)?, col(r, 1)?, col(r, 2)?, col(r, 3)?)))
        .collect()
}

/// Verifies the loaded trail under the snapshot's tenant id, then rewrites its hashes in
/// `load` as a chain under `new_id`; how many entries.
async fn rechain(
    tx: &Transaction<'_>,
    ns: &str,
    load: &str,
    dumped: &[String],
    snap: &Snapshot,
    new_id: i64,
) -> Result<u64, RestoreError> {
    let original = canonical(tx, ns, load, dumped, snap.tenant.catalog_id).await?;
    let mut prev = vec![0u8; 32];
    for (i, (seq, bytes, prev_hash, hash)) in original.iter().enumerate() {
        let why = if *seq != i as i64 + 1 {
            Some(format!("entry {} has seq {seq}", i + 1))
        } else if *prev_hash != prev {
            Some("its prev_hash is not the previous entry's hash".to_owned())
        } else if hash_of(bytes, prev_hash) != *hash {
            Some("its hash does not match its content".to_owned())
        } else {
            None
        };
        if let Some(why) = why {
            return Err(refused(format!(
                "the snapshot's audit trail does not verify at seq {seq} ({why}): the object was altered or the trail was broken before the snapshot; nothing was restored"
            )));
        }
        prev.clone_from(hash);
    }
    let again = canonical(tx, ns, load, dumped, new_id).await?;
    let (mut seqs, mut prevs, mut hashes) = (Vec::new(), Vec::new(), Vec::new());
    let mut prev = vec![0u8; 32];
    for (seq, bytes, _, _) in &again {
        let hash = hash_of(bytes, &prev);
        seqs.push(*seq);
        prevs.push(prev.clone());
        hashes.push(hash.clone());
        prev = hash;
    }
    tx.execute(
        &format!(
            "UPDATE {load} l SET prev_hash = u.p, hash = u.h
             FROM unnest($1::bigint[], $2::bytea[], $3::bytea[]) AS u (s, p, h) WHERE l.seq = u.s"
        ),
        &[&seqs, &prevs, &hashes],
    )
    .await
    .map_err(DbError::query(
        "chaining the audit trail under the new tenant",
    ))?;
    Ok(again.len() as u64)
}

/// An entry's hash: SHA-256 of its canonical bytes followed by the previous hash.
fn hash_of(canonical: &[u8], prev: &[u8]) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(canonical);
    h.update(prev);
    h.finalize().to_vec()
}
