//! The handlers of every served resource type (`/fhir/{type}`): create, read, versioned
//! update, delete, `_history/{vid}` and search with `_sort` and `_include`, written once
//! over a [`ResourceKind`]. Every statement runs in the tenant's transaction (reads on the
//! reader pool, writes on the writer). An id of another tenant, a malformed id and a
//! missing id all answer 404; a reference to another tenant's resource is refused exactly
//! like a reference to a missing one (422).
//!
//! Every interaction that reaches the database is audited in its own transaction
//! ([`crate::db::Database::audited_tx`]): the resource's id, or for a search the ids of
//! the page's matches and, type-qualified (`Patient/{id}`), of the resources it included.

use std::collections::BTreeSet;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, RawQuery, State};
use axum::http::header::LOCATION;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde_json::Value;
use serde_json::value::RawValue;
use tokio_postgres::types::ToSql;

use super::wire::{json_body, new_id, now, resource};
use crate::app::AppState;
use crate::audit::{Action, AuditEntry, Requester};
use crate::db::audited_read::AuditedRead;
use crate::db::tenant_tx::{Access, TenantTx};
use crate::fhir::FhirJson;
use crate::fhir::bundle::{Entry, SearchSet};
use crate::fhir::cursor::{self, Key, is_uuid};
use crate::fhir::element::stamp;
use crate::fhir::error::FhirError;
use crate::fhir::kind::{LocalReference, ResourceKind, Validated};
use crate::fhir::search::{self, CURSOR_PARAM, Handling, Search};
use crate::fhir::store::{self, Lookup};
use crate::tenant::Tenant;

/// The interactions served for every kind (FHIR `TypeRestfulInteraction` codes).
pub const INTERACTIONS: [&str; 6] = ["read", "vread", "update", "delete", "create", "search-type"];

type IdPath = Result<Path<String>, PathRejection>;
type Body = Result<Bytes, BytesRejection>;

/// The routes of `kind` that only read (`Permission::ReadClinical`).
pub fn read_router(kind: &'static ResourceKind) -> Router<AppState> {
    let base = format!("/{}", kind.resource_type);
    Router::new()
        .route(
            &base,
            get(move |state, tenant, requester, headers, query| {
                search(kind, state, tenant, requester, headers, query)
            }),
        )
        .route(
            &format!("{base}/{{id}}"),
            get(move |state, tenant, requester, id| read(kind, state, tenant, requester, id)),
        )
        .route(
            &format!("{base}/{{id}}/_history/{{vid}}"),
            get(move |state, tenant, requester, ids| vread(kind, state, tenant, requester, ids)),
        )
}

/// The routes of `kind` that write (`Permission::WriteClinical`).
pub fn write_router(kind: &'static ResourceKind) -> Router<AppState> {
    let base = format!("/{}", kind.resource_type);
    Router::new()
        .route(
            &base,
            post(move |state, tenant, requester, headers, body| {
                create(kind, state, tenant, requester, headers, body)
            }),
        )
        .route(
            &format!("{base}/{{id}}"),
            put(move |state, tenant, requester, id, headers, body| {
                update(kind, state, tenant, requester, id, headers, body)
            })
            .delete(move |state, tenant, requester, id| remove(kind, state, tenant, requester, id)),
        )
}

/// The tenant's FHIR base URL.
pub fn base(tenant: &Tenant) -> String {
    format!("https://{}/fhir", tenant.hostname)
}

/// The 404 of resource `id` of `kind`.
pub fn not_found(kind: &ResourceKind, id: &str) -> FhirError {
    FhirError::NotFound {
        resource_type: kind.resource_type,
        id: id.to_owned(),
    }
}

fn gone(kind: &ResourceKind, id: &str) -> FhirError {
    FhirError::Gone {
        resource_type: kind.resource_type,
        id: id.to_owned(),
    }
}

/// The `{id}` of the path; one that does not even decode (not UTF-8) is unknown like any
/// other id, not a routing error.
fn path_id(kind: &ResourceKind, id: IdPath) -> Result<String, FhirError> {
    id.map(|Path(id)| id).map_err(|_| not_found(kind, "?"))
}

/// Fails with the first of `references` that is not a resource of the tenant.
async fn resolve(
    tx: &mut TenantTx,
    tenant_id: i64,
    references: &[LocalReference],
) -> Result<(), FhirError> {
    match store::unresolved(tx, tenant_id, references).await? {
        None => Ok(()),
        Some(reference) => Err(FhirError::UnresolvedReference {
            expression: reference.expression.clone(),
            target: reference.target,
            id: reference.id.clone(),
        }),
    }
}

async fn create(
    kind: &'static ResourceKind,
    State(state): State<AppState>,
    tenant: Tenant,
    requester: Requester,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, FhirError> {
    let valid = (kind.validate)(json_body(&headers, body)?)?;
    let id = new_id();
    let tenant_id = tenant.id;
    let new = id.clone();
    let entry = AuditEntry::new(Action::Create, kind.resource_type).id(&id);
    let json = state
        .database
        .audited_tx(Access::Write, &requester, entry, |tx| {
            Box::pin(async move { create_in(tx, tenant_id, kind, &new, valid).await })
        })
        .await?;
    let location = format!("{}/{}/{id}/_history/1", base(&tenant), kind.resource_type);
    Ok(resource(
        StatusCode::CREATED,
        1,
        json,
        Some((LOCATION, location)),
    ))
}

/// Creates `valid` as version 1 of resource `id` in `tx`, after checking its references;
/// its stored JSON.
pub async fn create_in(
    tx: &mut TenantTx,
    tenant_id: i64,
    kind: &'static ResourceKind,
    id: &str,
    mut valid: Validated,
) -> Result<String, FhirError> {
    resolve(tx, tenant_id, &valid.references).await?;
    let at = now();
    stamp(&mut valid.resource, id, 1, &at);
    let json = Value::Object(valid.resource).to_string();
    store::create(tx, tenant_id, kind, id, &valid.values, &json, &at).await?;
    store::replace_identifiers(tx, tenant_id, kind, id, &valid.identifiers).await?;
    Ok(json)
}

async fn read(
    kind: &'static ResourceKind,
    State(state): State<AppState>,
    tenant: Tenant,
    requester: Requester,
    id: IdPath,
) -> Result<Response, FhirError> {
    let id = path_id(kind, id)?;
    if !is_uuid(&id) {
        return Err(not_found(kind, &id));
    }
    let tenant_id = tenant.id;
    let entry = AuditEntry::new(Action::Read, kind.resource_type).id(&id);
    // The read and its audit entry in one statement and one round trip; the outcome is
    // decided from the row, as `read_in` decides it.
    let sql = store::read_sql(kind);
    let params: [&(dyn ToSql + Sync); 3] = [&tenant_id, &id, &kind.resource_type];
    let read = AuditedRead {
        sql: &sql,
        params: &params,
        found: store::READ_FOUND,
    };
    let (json, version) = state
        .database
        .audited_read(
            Access::Read,
            &requester,
            entry,
            read,
            |row| match store::lookup(row)? {
                Lookup::Found(json, version) => Ok((json, version)),
                Lookup::Deleted => Err(gone(kind, &id)),
                Lookup::Missing => Err(not_found(kind, &id)),
            },
        )
        .await?;
    Ok(resource(StatusCode::OK, version, json, None))
}

/// The current version of resource `id` (a UUID): its stored JSON and version.
pub async fn read_in(
    tx: &mut TenantTx,
    tenant_id: i64,
    kind: &'static ResourceKind,
    id: &str,
) -> Result<(String, i32), FhirError> {
    match store::read(tx, tenant_id, kind, id).await? {
        Lookup::Found(json, version) => Ok((json, version)),
        Lookup::Deleted => Err(gone(kind, id)),
        Lookup::Missing => Err(not_found(kind, id)),
    }
}

async fn vread(
    kind: &'static ResourceKind,
    State(state): State<AppState>,
    tenant: Tenant,
    requester: Requester,
    ids: Result<Path<(String, String)>, PathRejection>,
) -> Result<Response, FhirError> {
    let Ok(Path((id, vid))) = ids else {
        return Err(not_found(kind, "?"));
    };
    let version = vid.parse::<i32>().ok().filter(|v| *v > 0);
    let (true, Some(version)) = (is_uuid(&id), version) else {
        return Err(not_found(kind, &format!("{id}/_history/{vid}")));
    };
    let tenant_id = tenant.id;
    let key = format!("{id}/_history/{vid}");
    let entry = AuditEntry::new(Action::Vread, kind.resource_type).id(&key);
    let (json, version) = state
        .database
        .audited_tx(Access::Read, &requester, entry, |tx| {
            Box::pin(async move {
                match store::version(tx, tenant_id, kind, &id, version).await? {
                    Lookup::Found(json, version) => Ok((json, version)),
                    Lookup::Deleted => Err(gone(kind, &key)),
                    Lookup::Missing => Err(not_found(kind, &key)),
                }
            })
        })
        .await?;
    Ok(resource(StatusCode::OK, version, json, None))
}

async fn update(
    kind: &'static ResourceKind,
    State(state): State<AppState>,
    tenant: Tenant,
    requester: Requester,
    id: IdPath,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, FhirError> {
    let id = path_id(kind, id)?;
    let valid = (kind.validate)(json_body(&headers, body)?)?;
    check_update_id(kind, &valid, &id)?;
    if !is_uuid(&id) {
        return Err(not_found(kind, &id));
    }
    let expected = super::wire::if_match(&headers)?;
    let tenant_id = tenant.id;
    let key = id.clone();
    let entry = AuditEntry::new(Action::Update, kind.resource_type).id(&id);
    let (version, json) = state
        .database
        .audited_tx(Access::Write, &requester, entry, |tx| {
            Box::pin(async move { update_in(tx, tenant_id, kind, &key, valid, expected).await })
        })
        .await?;
    Ok(resource(StatusCode::OK, version, json, None))
}

/// Fails unless the resource of an update carries the id it is updated at.
pub fn check_update_id(kind: &ResourceKind, valid: &Validated, id: &str) -> Result<(), FhirError> {
    if valid.resource.get("id").and_then(Value::as_str) == Some(id) {
        return Ok(());
    }
    let path = format!("{}.id", kind.resource_type);
    Err(FhirError::invalid(
        &path,
        format!("{path} must be present and equal the id in the URL"),
    ))
}

/// Replaces resource `id` (a UUID) with `valid` in `tx`, if its current version is
/// `expected` (when given); the new version and its stored JSON.
pub async fn update_in(
    tx: &mut TenantTx,
    tenant_id: i64,
    kind: &'static ResourceKind,
    id: &str,
    mut valid: Validated,
    expected: Option<String>,
) -> Result<(i32, String), FhirError> {
    let Some(current) = store::lock_current(tx, tenant_id, kind, id).await? else {
        return Err(match store::read(tx, tenant_id, kind, id).await? {
            Lookup::Deleted => gone(kind, id),
            _ => not_found(kind, id),
        });
    };
    if let Some(expected) = expected
        && expected != current.to_string()
    {
        return Err(FhirError::VersionConflict { expected, current });
    }
    resolve(tx, tenant_id, &valid.references).await?;
    let (version, at) = (current.saturating_add(1), now());
    stamp(&mut valid.resource, id, version, &at);
    let json = Value::Object(valid.resource).to_string();
    store::update(tx, tenant_id, kind, id, version, &valid.values, &json, &at).await?;
    store::replace_identifiers(tx, tenant_id, kind, id, &valid.identifiers).await?;
    Ok((version, json))
}

async fn remove(
    kind: &'static ResourceKind,
    State(state): State<AppState>,
    tenant: Tenant,
    requester: Requester,
    id: IdPath,
) -> Result<StatusCode, FhirError> {
    let id = path_id(kind, id)?;
    if !is_uuid(&id) {
        return Err(not_found(kind, &id));
    }
    let tenant_id = tenant.id;
    let entry = AuditEntry::new(Action::Delete, kind.resource_type).id(&id);
    state
        .database
        .audited_tx(Access::Write, &requester, entry, |tx| {
            Box::pin(async move { delete_in(tx, tenant_id, kind, &id).await })
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Deletes resource `id` (a UUID) in `tx`; deleting a deleted resource succeeds again
/// (FHIR: idempotent delete), a missing one is 404.
pub async fn delete_in(
    tx: &mut TenantTx,
    tenant_id: i64,
    kind: &'static ResourceKind,
    id: &str,
) -> Result<(), FhirError> {
    match store::lock_current(tx, tenant_id, kind, id).await? {
        Some(current) => {
            let version = current.saturating_add(1);
            store::delete(tx, tenant_id, kind, id, version, &now()).await?;
            Ok(())
        }
        None => match store::read(tx, tenant_id, kind, id).await? {
            Lookup::Deleted => Ok(()),
            _ => Err(not_found(kind, id)),
        },
    }
}

/// A page of matches and the resources they include.
struct Page {
    matches: Vec<store::Match>,
    more: bool,
    total: Option<i64>,
    included: Vec<(&'static str, String, String)>,
}

impl Page {
    /// The ids the page discloses, for its audit entry: the matches' (of the searched
    /// type) as they are, the included resources' qualified by their type
    /// (`Patient/{id}`). Never the extra row that only says more follow.
    fn accessed_ids(&self) -> Vec<String> {
        let matched = self.matches.iter().map(|m| m.id.clone());
        let included = self
            .included
            .iter()
            .map(|(resource_type, id, _)| format!("{resource_type}/{id}"));
        matched.chain(included).collect()
    }
}

async fn search(
    kind: &'static ResourceKind,
    State(state): State<AppState>,
    tenant: Tenant,
    requester: Requester,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, FhirError> {
    let prefer = headers.get("prefer").and_then(|v| v.to_str().ok());
    let search = search::parse(
        query.as_deref().unwrap_or(""),
        kind,
        Handling::from_prefer(prefer),
    )?;
    let applied = search.applied_query();
    let after = search
        .cursor
        .as_deref()
        .map(|c| cursor::decode_key(c, &applied, search.sort.is_some()))
        .transpose()?;
    let fhir = base(&tenant);
    let url = format!("{fhir}/{}", kind.resource_type);
    let self_url = if applied.is_empty() {
        url.clone()
    } else {
        format!("{url}?{applied}")
    };
    let tenant_id = tenant.id;
    let query = search.clone();
    let entry = AuditEntry::new(Action::Search, kind.resource_type).query(&applied);
    let page = state
        .database
        .audited_tx(Access::Read, &requester, entry, |tx| {
            Box::pin(async move {
                let page = page(tx, tenant_id, kind, &query, after).await?;
                tx.audit_results(page.accessed_ids());
                Ok::<_, FhirError>(page)
            })
        })
        .await?;
    let raw = |json: String| {
        RawValue::from_string(json)
            .map_err(|_| crate::error::ApiError::Internal("a stored resource is not JSON"))
    };
    let mut entries = Vec::with_capacity(page.matches.len() + page.included.len());
    let mut last = None;
    for found in page.matches {
        entries.push(Entry::matched(
            format!("{url}/{}", found.id),
            raw(found.json)?,
        ));
        last = Some(Key {
            sort: found.sort,
            id: found.id,
        });
    }
    let matched = entries.len() as u64;
    for (resource_type, id, json) in page.included {
        entries.push(Entry::included(
            format!("{fhir}/{resource_type}/{id}"),
            raw(json)?,
        ));
    }
    // The total is cheap when counted, or when the first page holds every match.
    let total = page
        .total
        .and_then(|t| u64::try_from(t).ok())
        .or_else(|| (search.cursor.is_none() && !page.more).then_some(matched));
    let next = match (page.more, last) {
        (true, Some(last)) => {
            let cursor = cursor::encode_key(&last, &applied);
            let separator = if applied.is_empty() { "" } else { "&" };
            Some(format!("{url}?{applied}{separator}{CURSOR_PARAM}={cursor}"))
        }
        _ => None,
    };
    Ok(FhirJson(SearchSet::page(entries, total, self_url, next)).into_response())
}

// One page of `search` after `after`, and the resources its matches include (each once).
async fn page(
    tx: &mut TenantTx,
    tenant_id: i64,
    kind: &'static ResourceKind,
    search: &Search,
    after: Option<Key>,
) -> Result<Page, FhirError> {
    if search.summary_count {
        let total = store::count(tx, tenant_id, kind, search).await?;
        return Ok(Page {
            matches: Vec::new(),
            more: false,
            total: Some(total),
            included: Vec::new(),
        });
    }
    let limit = i64::try_from(search.count).unwrap_or(100).saturating_add(1);
    let mut matches = store::search(tx, tenant_id, kind, search, after, limit).await?;
    let more = matches.len() > search.count;
    matches.truncate(search.count);
    let mut included = Vec::new();
    // Includes of the same target (`patient` and `subject`) are fetched together, once.
    let mut targets: Vec<&'static ResourceKind> = Vec::new();
    for include in &search.includes {
        if !targets
            .iter()
            .any(|t| t.resource_type == include.target.resource_type)
        {
            targets.push(include.target);
        }
    }
    for target in targets {
        let ids: BTreeSet<String> = search
            .includes
            .iter()
            .enumerate()
            .filter(|(_, include)| include.target.resource_type == target.resource_type)
            .flat_map(|(i, _)| matches.iter().filter_map(move |m| m.included[i].clone()))
            .collect();
        if ids.is_empty() {
            continue;
        }
        for (id, json) in store::fetch(tx, tenant_id, target, ids.into_iter().collect()).await? {
            included.push((target.resource_type, id, json));
        }
    }
    Ok(Page {
        matches,
        more,
        total: None,
        included,
    })
}
