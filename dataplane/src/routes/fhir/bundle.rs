//! `POST /fhir`: a `transaction` or `batch` Bundle of creates, updates, deletes and reads
//! of the served kinds, for onboarding imports. Each entry goes through the same
//! validation, same-tenant reference checks and store as its own interaction
//! ([`super::resource`]), and is audited as one (one audit event per entry, appended in
//! the Bundle's transaction).
//!
//! - A transaction is all or nothing, in one tenant transaction: entries are applied
//!   DELETE first, then POST and PUT in the order of [`KINDS`] (a Patient before the
//!   Encounter that references it), then GET; `urn:uuid:` `fullUrl`s of POST entries are
//!   assigned their ids first and references to them rewritten. The first failing entry
//!   rolls everything back and is answered as its own error, the `OperationOutcome` naming
//!   `Bundle.entry[i]` (and the element within its resource); its audit event records the
//!   failure.
//! - A batch applies each entry in bundle order in a savepoint of one tenant transaction:
//!   a failing entry is rolled back to its savepoint and answered in its `response`
//!   (status and `outcome`), the others stand.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::resource::{base, check_update_id, create_in, delete_in, not_found, read_in, update_in};
use super::wire::{json_body, new_id};
use crate::app::AppState;
use crate::audit::store::{APPEND_SQL, Record};
use crate::audit::{Action, AuditEntry, Requester};
use crate::db::tenant_tx::{Access, TenantTx, TxError};
use crate::fhir::bundle_request::{
    self, BundleType, Method, RequestEntry, resolve_references, urn_targets,
};
use crate::fhir::cursor::is_uuid;
use crate::fhir::error::FhirError;
use crate::fhir::kind::{ResourceKind, Validated};
use crate::fhir::{FhirJson, KINDS};
use crate::tenant::Tenant;

/// One entry ready to apply: validated, its id known.
enum Prepared {
    Create(&'static ResourceKind, String, Validated),
    Update(&'static ResourceKind, String, Validated, Option<String>),
    Delete(&'static ResourceKind, String),
    Read(&'static ResourceKind, String),
}

impl Prepared {
    fn kind(&self) -> &'static ResourceKind {
        match self {
            Self::Create(kind, ..)
            | Self::Update(kind, ..)
            | Self::Delete(kind, _)
            | Self::Read(kind, _) => kind,
        }
    }

    fn audit(&self) -> AuditEntry {
        let (action, id) = match self {
            Self::Create(_, id, _) => (Action::Create, id),
            Self::Update(_, id, ..) => (Action::Update, id),
            Self::Delete(_, id) => (Action::Delete, id),
            Self::Read(_, id) => (Action::Read, id),
        };
        AuditEntry::new(action, self.kind().resource_type).id(id)
    }

    // Transaction order: DELETE, then POST and PUT by kind, then GET.
    fn rank(&self) -> usize {
        let kind = KINDS
            .iter()
            .position(|k| k.resource_type == self.kind().resource_type)
            .unwrap_or(KINDS.len());
        match self {
            Self::Delete(..) => 0,
            Self::Create(..) | Self::Update(..) => 1 + kind,
            Self::Read(..) => 2 + KINDS.len(),
        }
    }
}

/// What an applied entry answers.
struct Done {
    status: StatusCode,
    kind: &'static ResourceKind,
    id: String,
    // The version and stored JSON (none for a delete).
    stored: Option<(i32, String)>,
}

// Validates `entry` (with `id` for a POST) as its interaction would.
fn prepare(entry: RequestEntry, new: Option<String>) -> Result<Prepared, FhirError> {
    let kind = entry.kind;
    let id = entry.id.unwrap_or_default();
    let known = |id: String| {
        if is_uuid(&id) {
            Ok(id)
        } else {
            Err(not_found(kind, &id))
        }
    };
    Ok(match entry.method {
        Method::Post => {
            let valid = (kind.validate)(entry.resource.unwrap_or(Value::Null))?;
            Prepared::Create(kind, new.unwrap_or_else(new_id), valid)
        }
        Method::Put => {
            let valid = (kind.validate)(entry.resource.unwrap_or(Value::Null))?;
            check_update_id(kind, &valid, &id)?;
            Prepared::Update(kind, known(id)?, valid, entry.if_match)
        }
        Method::Delete => Prepared::Delete(kind, known(id)?),
        Method::Get => Prepared::Read(kind, known(id)?),
    })
}

async fn apply(tx: &mut TenantTx, tenant_id: i64, entry: Prepared) -> Result<Done, FhirError> {
    let kind = entry.kind();
    Ok(match entry {
        Prepared::Create(_, id, valid) => {
            let json = create_in(tx, tenant_id, kind, &id, valid).await?;
            Done {
                status: StatusCode::CREATED,
                kind,
                id,
                stored: Some((1, json)),
            }
        }
        Prepared::Update(_, id, valid, expected) => {
            let stored = update_in(tx, tenant_id, kind, &id, valid, expected).await?;
            Done {
                status: StatusCode::OK,
                kind,
                id,
                stored: Some(stored),
            }
        }
        Prepared::Delete(_, id) => {
            delete_in(tx, tenant_id, kind, &id).await?;
            Done {
                status: StatusCode::NO_CONTENT,
                kind,
                id,
                stored: None,
            }
        }
        Prepared::Read(_, id) => {
            let (json, version) = read_in(tx, tenant_id, kind, &id).await?;
            Done {
                status: StatusCode::OK,
                kind,
                id,
                stored: Some((version, json)),
            }
        }
    })
}

// Appends the audit event of one entry in `tx`.
async fn audit(
    tx: &mut TenantTx,
    requester: &Requester,
    entry: AuditEntry,
    status: StatusCode,
) -> Result<(), TxError> {
    let record = record(requester, entry, status);
    tx.execute(APPEND_SQL, &record.params()).await?;
    Ok(())
}

fn record(requester: &Requester, entry: AuditEntry, status: StatusCode) -> Record {
    Record {
        requester: requester.clone(),
        entry,
        status: i16::try_from(status.as_u16()).unwrap_or(i16::MAX),
    }
}

fn status_line(status: StatusCode) -> String {
    format!(
        "{} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or_default()
    )
}

// The `response` entry of an applied entry.
fn answered(fhir: &str, done: Done) -> Value {
    let url = format!("{fhir}/{}/{}", done.kind.resource_type, done.id);
    let mut response = json!({"status": status_line(done.status)});
    let mut entry = json!({});
    if let Some((version, json)) = done.stored {
        response["etag"] = json!(format!("W/\"{version}\""));
        let resource: Value = serde_json::from_str(&json).unwrap_or(Value::Null);
        if let Some(at) = resource.pointer("/meta/lastUpdated") {
            response["lastModified"] = at.clone();
        }
        if done.status == StatusCode::CREATED {
            response["location"] = json!(format!("{url}/_history/{version}"));
        }
        entry["fullUrl"] = json!(url);
        entry["resource"] = resource;
    }
    entry["response"] = response;
    entry
}

// The `response` entry of a failed batch entry.
fn failed(error: &FhirError) -> Value {
    json!({"response": {
        "status": status_line(error.status()),
        "outcome": error.outcome(),
    }})
}

fn response_bundle(kind: BundleType, entries: Vec<Value>) -> Response {
    let mut bundle = json!({"resourceType": "Bundle", "type": kind.response_type()});
    // FHIR JSON forbids empty arrays.
    if !entries.is_empty() {
        bundle["entry"] = Value::Array(entries);
    }
    FhirJson(bundle).into_response()
}

/// `POST /fhir`.
pub async fn bundle(
    State(state): State<AppState>,
    tenant: Tenant,
    requester: Requester,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, FhirError> {
    let max = state.request.max_bundle_entries;
    let (kind, entries) = bundle_request::parse(json_body(&headers, body)?, max)?;
    match kind {
        BundleType::Transaction => transaction(&state, &tenant, &requester, entries).await,
        BundleType::Batch => batch(&state, &tenant, &requester, entries).await,
    }
}

// Why a transaction failed, with the audit event of the entry that failed (if one did).
struct Refused(FhirError, Option<(AuditEntry, StatusCode)>);

impl From<TxError> for Refused {
    fn from(error: TxError) -> Self {
        Self(error.into(), None)
    }
}

async fn transaction(
    state: &AppState,
    tenant: &Tenant,
    requester: &Requester,
    entries: Vec<Result<RequestEntry, FhirError>>,
) -> Result<Response, FhirError> {
    let entries: Vec<RequestEntry> = entries
        .into_iter()
        .enumerate()
        .map(|(index, entry)| entry.map_err(|e| e.in_entry(index)))
        .collect::<Result<_, _>>()?;
    let new_ids: HashMap<usize, String> = entries
        .iter()
        .enumerate()
        .filter(|(_, entry)| entry.method == Method::Post)
        .map(|(index, _)| (index, new_id()))
        .collect();
    let targets = urn_targets(&entries, &new_ids);
    let mut order = Vec::with_capacity(entries.len());
    for (index, mut entry) in entries.into_iter().enumerate() {
        if let Some(resource) = &mut entry.resource {
            resolve_references(resource, &targets);
        }
        let prepared =
            prepare(entry, new_ids.get(&index).cloned()).map_err(|e| e.in_entry(index))?;
        order.push((index, prepared));
    }
    order.sort_by_key(|(_, prepared)| prepared.rank());
    let count = order.len();
    let tenant_id = tenant.id;
    let who = requester.clone();
    let result = state
        .database
        .tenant_tx(Access::Write, tenant_id, |tx| {
            Box::pin(async move {
                let mut done: Vec<Option<Done>> = (0..count).map(|_| None).collect();
                for (index, prepared) in order {
                    let entry = prepared.audit();
                    match apply(tx, tenant_id, prepared).await {
                        Ok(applied) => {
                            audit(tx, &who, entry, applied.status).await?;
                            done[index] = Some(applied);
                        }
                        Err(error) => {
                            let status = error.status();
                            return Err(Refused(error.in_entry(index), Some((entry, status))));
                        }
                    }
                }
                Ok::<_, Refused>(done)
            })
        })
        .await;
    let (result, refused) = match result {
        Ok(done) => (Ok(done), None),
        Err(Refused(error, refused)) => (Err(error), refused),
    };
    // The failing entry's audit event, written after the rollback (as a failed
    // interaction's is).
    if let Some((entry, status)) = refused
        && let Err(error) = state
            .database
            .append(&record(requester, entry, status))
            .await
    {
        tracing::error!(
            error = %crate::error::Report(&error),
            tenant_id,
            request_id = %requester.request_id,
            "appending the audit entry of a refused Bundle entry failed"
        );
    }
    let fhir = base(tenant);
    let entries = result?
        .into_iter()
        .flatten()
        .map(|done| answered(&fhir, done))
        .collect();
    Ok(response_bundle(BundleType::Transaction, entries))
}

async fn batch(
    state: &AppState,
    tenant: &Tenant,
    requester: &Requester,
    entries: Vec<Result<RequestEntry, FhirError>>,
) -> Result<Response, FhirError> {
    // Entries that cannot be applied are answered without reaching the database.
    let prepared: Vec<Result<Prepared, FhirError>> = entries
        .into_iter()
        .enumerate()
        .map(|(index, entry)| {
            entry
                .and_then(|entry| prepare(entry, None))
                .map_err(|e| e.in_entry(index))
        })
        .collect();
    let tenant_id = tenant.id;
    let who = requester.clone();
    let fhir = base(tenant);
    let answers = state
        .database
        .tenant_tx(Access::Write, tenant_id, |tx| {
            Box::pin(async move {
                let mut answers = Vec::with_capacity(prepared.len());
                for (index, entry) in prepared.into_iter().enumerate() {
                    let entry = match entry {
                        Ok(entry) => entry,
                        Err(error) => {
                            answers.push(failed(&error));
                            continue;
                        }
                    };
                    let audited = entry.audit();
                    tx.execute("SAVEPOINT bundle_entry", &[]).await?;
                    match apply(tx, tenant_id, entry).await {
                        Ok(done) => {
                            audit(tx, &who, audited, done.status).await?;
                            tx.execute("RELEASE SAVEPOINT bundle_entry", &[]).await?;
                            answers.push(answered(&fhir, done));
                        }
                        Err(error) => {
                            tx.execute("ROLLBACK TO SAVEPOINT bundle_entry", &[])
                                .await?;
                            audit(tx, &who, audited, error.status()).await?;
                            answers.push(failed(&error.in_entry(index)));
                        }
                    }
                }
                Ok::<_, FhirError>(answers)
            })
        })
        .await?;
    Ok(response_bundle(BundleType::Batch, answers))
}
