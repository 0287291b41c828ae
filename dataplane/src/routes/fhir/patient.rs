//! `/fhir/Patient`: create, read, versioned update, delete, `_history/{vid}` and search,
//! every statement in the tenant's transaction (reads on the reader pool, writes on the
//! writer). An id of another tenant, a malformed id and a missing id all answer 404.
//! Every interaction that reaches the database is audited in its own transaction
//! ([`crate::db::Database::audited_tx`]).

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, RawQuery, State};
use axum::http::header::LOCATION;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::Value;
use serde_json::value::RawValue;

use super::ServedResource;
use super::wire::{json_body, new_id, now, resource};
use crate::app::AppState;
use crate::audit::{Action, AuditEntry, Requester};
use crate::db::tenant_tx::Access;
use crate::fhir::FhirJson;
use crate::fhir::bundle::{Entry, SearchSet};
use crate::fhir::cursor::{self, is_uuid};
use crate::fhir::error::FhirError;
use crate::fhir::patient::{RESOURCE_TYPE, stamp, validate};
use crate::fhir::search::{self, CURSOR_PARAM, Handling, PATIENT_SEARCH};
use crate::fhir::store::{self, Lookup};
use crate::tenant::Tenant;

/// What `/fhir/Patient` serves: the CapabilityStatement is written from it.
pub const SERVED: ServedResource = ServedResource {
    resource_type: RESOURCE_TYPE,
    interactions: &["read", "vread", "update", "delete", "create", "search-type"],
    search: PATIENT_SEARCH,
};

/// The routes that only read (`Permission::ReadClinical`).
pub fn read_router() -> Router<AppState> {
    Router::new()
        .route("/Patient", get(search_patients))
        .route("/Patient/{id}", get(read))
        .route("/Patient/{id}/_history/{vid}", get(vread))
}

/// The routes that write (`Permission::WriteClinical`).
pub fn write_router() -> Router<AppState> {
    Router::new()
        .route("/Patient", axum::routing::post(create))
        .route("/Patient/{id}", axum::routing::put(update).delete(remove))
}

fn base(tenant: &Tenant) -> String {
    format!("https://{}/fhir", tenant.hostname)
}

fn not_found(id: &str) -> FhirError {
    FhirError::NotFound {
        resource_type: RESOURCE_TYPE,
        id: id.to_owned(),
    }
}

fn gone(id: &str) -> FhirError {
    FhirError::Gone {
        resource_type: RESOURCE_TYPE,
        id: id.to_owned(),
    }
}

/// The `{id}` of the path; one that does not even decode (not UTF-8) is unknown like any
/// other id, not a routing error.
fn path_id(id: Result<Path<String>, PathRejection>) -> Result<String, FhirError> {
    id.map(|Path(id)| id).map_err(|_| not_found("?"))
}

async fn create(
    State(state): State<AppState>,
    tenant: Tenant,
    requester: Requester,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, FhirError> {
    let (mut patient, columns) = validate(json_body(&headers, body)?)?;
    let (id, at) = (new_id(), now());
    stamp(&mut patient, &id, 1, &at);
    let json = Value::Object(patient).to_string();
    let stored = json.clone();
    let tenant_id = tenant.id;
    let new = id.clone();
    let entry = AuditEntry::new(Action::Create, RESOURCE_TYPE).id(&id);
    state
        .database
        .audited_tx(Access::Write, &requester, entry, |tx| {
            Box::pin(async move {
                store::create(tx, tenant_id, &new, &columns, &stored, &at).await?;
                Ok::<_, FhirError>(())
            })
        })
        .await?;
    let location = format!("{}/Patient/{id}/_history/1", base(&tenant));
    Ok(resource(
        StatusCode::CREATED,
        1,
        json,
        Some((LOCATION, location)),
    ))
}

async fn read(
    State(state): State<AppState>,
    tenant: Tenant,
    requester: Requester,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, FhirError> {
    let id = path_id(id)?;
    if !is_uuid(&id) {
        return Err(not_found(&id));
    }
    let tenant_id = tenant.id;
    let entry = AuditEntry::new(Action::Read, RESOURCE_TYPE).id(&id);
    let (json, version) = state
        .database
        .audited_tx(Access::Read, &requester, entry, |tx| {
            Box::pin(async move {
                match store::read(tx, tenant_id, &id).await? {
                    Lookup::Found(json, version) => Ok((json, version)),
                    Lookup::Deleted => Err(gone(&id)),
                    Lookup::Missing => Err(not_found(&id)),
                }
            })
        })
        .await?;
    Ok(resource(StatusCode::OK, version, json, None))
}

async fn vread(
    State(state): State<AppState>,
    tenant: Tenant,
    requester: Requester,
    ids: Result<Path<(String, String)>, PathRejection>,
) -> Result<Response, FhirError> {
    let Ok(Path((id, vid))) = ids else {
        return Err(not_found("?"));
    };
    let version = vid.parse::<i32>().ok().filter(|v| *v > 0);
    let (true, Some(version)) = (is_uuid(&id), version) else {
        return Err(not_found(&format!("{id}/_history/{vid}")));
    };
    let tenant_id = tenant.id;
    let key = format!("{id}/_history/{vid}");
    let entry = AuditEntry::new(Action::Vread, RESOURCE_TYPE).id(&key);
    let (json, version) = state
        .database
        .audited_tx(Access::Read, &requester, entry, |tx| {
            Box::pin(async move {
                match store::version(tx, tenant_id, &id, version).await? {
                    Lookup::Found(json, version) => Ok((json, version)),
                    Lookup::Deleted => Err(gone(&key)),
                    Lookup::Missing => Err(not_found(&key)),
                }
            })
        })
        .await?;
    Ok(resource(StatusCode::OK, version, json, None))
}

async fn update(
    State(state): State<AppState>,
    tenant: Tenant,
    requester: Requester,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, FhirError> {
    let id = path_id(id)?;
    let (mut patient, columns) = validate(json_body(&headers, body)?)?;
    if patient.get("id").and_then(Value::as_str) != Some(id.as_str()) {
        return Err(FhirError::invalid(
            "Patient.id",
            "Patient.id must be present and equal the id in the URL",
        ));
    }
    if !is_uuid(&id) {
        return Err(not_found(&id));
    }
    let expected = super::wire::if_match(&headers)?;
    let tenant_id = tenant.id;
    let key = id.clone();
    let entry = AuditEntry::new(Action::Update, RESOURCE_TYPE).id(&id);
    let (version, json) = state
        .database
        .audited_tx(Access::Write, &requester, entry, |tx| {
            Box::pin(async move {
                let Some(current) = store::lock_current(tx, tenant_id, &key).await? else {
                    return Err(match store::read(tx, tenant_id, &key).await? {
                        Lookup::Deleted => gone(&key),
                        _ => not_found(&key),
                    });
                };
                if let Some(expected) = expected
                    && expected != current.to_string()
                {
                    return Err(FhirError::VersionConflict { expected, current });
                }
                let (version, at) = (current.saturating_add(1), now());
                stamp(&mut patient, &key, version, &at);
                let json = Value::Object(patient).to_string();
                store::update(tx, tenant_id, &key, version, &columns, &json, &at).await?;
                Ok((version, json))
            })
        })
        .await?;
    Ok(resource(StatusCode::OK, version, json, None))
}

async fn remove(
    State(state): State<AppState>,
    tenant: Tenant,
    requester: Requester,
    id: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, FhirError> {
    let id = path_id(id)?;
    if !is_uuid(&id) {
        return Err(not_found(&id));
    }
    let tenant_id = tenant.id;
    let entry = AuditEntry::new(Action::Delete, RESOURCE_TYPE).id(&id);
    state
        .database
        .audited_tx(Access::Write, &requester, entry, |tx| {
            Box::pin(async move {
                match store::lock_current(tx, tenant_id, &id).await? {
                    Some(current) => {
                        let version = current.saturating_add(1);
                        store::delete(tx, tenant_id, &id, version, &now()).await?;
                        Ok(())
                    }
                    // Deleting a deleted resource succeeds again (FHIR: idempotent delete).
                    None => match store::read(tx, tenant_id, &id).await? {
                        Lookup::Deleted => Ok(()),
                        _ => Err(not_found(&id)),
                    },
                }
            })
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn search_patients(
    State(state): State<AppState>,
    tenant: Tenant,
    requester: Requester,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, FhirError> {
    let prefer = headers.get("prefer").and_then(|v| v.to_str().ok());
    let search = search::parse(
        query.as_deref().unwrap_or(""),
        PATIENT_SEARCH,
        Handling::from_prefer(prefer),
    )?;
    let applied = search.applied_query();
    let after = search
        .cursor
        .as_deref()
        .map(|c| cursor::decode(c, &applied))
        .transpose()?;
    let url = format!("{}/Patient", base(&tenant));
    let self_url = if applied.is_empty() {
        url.clone()
    } else {
        format!("{url}?{applied}")
    };
    let tenant_id = tenant.id;
    let page = search.count;
    let query = search.clone();
    let entry = AuditEntry::new(Action::Search, RESOURCE_TYPE).query(&applied);
    let (rows, total) = state
        .database
        .audited_tx(Access::Read, &requester, entry, |tx| {
            Box::pin(async move {
                if query.summary_count {
                    let total = store::count(tx, tenant_id, &query).await?;
                    return Ok::<_, FhirError>((Vec::new(), Some(total)));
                }
                let limit = i64::try_from(page).unwrap_or(100).saturating_add(1);
                let rows = store::search(tx, tenant_id, &query, after, limit).await?;
                // The ids this page returns (not the one extra row that only says more
                // follow).
                tx.audit_results(rows.iter().take(page).map(|(id, _)| id.clone()).collect());
                Ok((rows, None))
            })
        })
        .await?;
    let more = rows.len() > page;
    let mut entries = Vec::with_capacity(page.min(rows.len()));
    let mut last = None;
    for (id, json) in rows.into_iter().take(page) {
        let raw = RawValue::from_string(json)
            .map_err(|_| crate::error::ApiError::Internal("a stored resource is not JSON"))?;
        entries.push(Entry::matched(format!("{url}/{id}"), raw));
        last = Some(id);
    }
    // The total is cheap when counted, or when the first page holds every match.
    let total = total
        .and_then(|t| u64::try_from(t).ok())
        .or_else(|| (search.cursor.is_none() && !more).then_some(entries.len() as u64));
    let next = match (more, last) {
        (true, Some(last)) => {
            let cursor = cursor::encode(&last, &applied);
            let separator = if applied.is_empty() { "" } else { "&" };
            Some(format!("{url}?{applied}{separator}{CURSOR_PARAM}={cursor}"))
        }
        _ => None,
    };
    Ok(FhirJson(SearchSet::page(entries, total, self_url, next)).into_response())
}
