//! `/Groups`: create, read, list and search, replace, PATCH and delete SCIM groups of the
//! request's tenant. Members are users of the same tenant: an id that names no user here
//! (missing, or another tenant's, which row-level security hides) is refused alike.

use std::collections::HashMap;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::Value;

use super::list::{self, ListQuery, Projection};
use super::store::{self, RESOURCE_COLUMNS};
use super::{
    ScimError, base_url, check_if_match, json_body, not_modified, patch, scim_response, version_of,
};
use crate::app::AppState;
use crate::db::tenant_tx::Access;
use crate::tenant::Tenant;

mod model;

pub use model::case_exact;
use model::{GroupInput, normalize, one, read_only, render_all, set_members};

/// Where the resources live, and their name index.
const GROUPS: store::Table = store::Table {
    table: "scim_groups",
    name_attribute: "displayName",
    name_column: "display_name",
};

/// The core Group schema.
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";

/// The `/Groups` routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/Groups", get(list_groups).post(create))
        .route("/Groups/.search", post(search))
        .route(
            "/Groups/{id}",
            get(read).put(replace).patch(modify).delete(remove),
        )
}

async fn create(
    State(state): State<AppState>,
    tenant: Tenant,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ScimError> {
    let input = normalize(json_body(&headers, &body)?)?;
    let base = base_url(&headers);
    let tenant_id = tenant.id;
    let group = state
        .database
        .tenant_tx(Access::Write, tenant_id, |tx| {
            Box::pin(async move {
                let sql = format!(
                    "INSERT INTO scim_groups (tenant_id, display_name, external_id, resource) \
                     VALUES ($1, $2, $3, $4::text::jsonb) RETURNING {RESOURCE_COLUMNS}"
                );
                let resource = input.resource.to_string();
                let stored = store::query_stored(
                    tx,
                    &sql,
                    &[
                        &tenant_id,
                        &input.display_name,
                        &input.external_id,
                        &resource,
                    ],
                )
                .await?;
                let id = stored.first().map(|s| s.id.clone()).unwrap_or_default();
                set_members(tx, tenant_id, &id, &input.members).await?;
                render_all(tx, stored, &base).await
            })
        })
        .await?
        .pop()
        .unwrap_or_default();
    let version = version_of(&group);
    Ok(scim_response(StatusCode::CREATED, &group, version))
}

async fn read(
    State(state): State<AppState>,
    tenant: Tenant,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ScimError> {
    let projection = Projection::from_params(&params)?;
    let base = base_url(&headers);
    let group = state
        .database
        .tenant_tx(Access::Primary, tenant.id, |tx| {
            Box::pin(async move {
                let stored = one(tx, &id, false).await?;
                render_all(tx, vec![stored], &base).await
            })
        })
        .await?
        .pop()
        .unwrap_or_default();
    let version = version_of(&group);
    if version.is_some_and(|v| not_modified(&headers, v)) {
        return Ok(StatusCode::NOT_MODIFIED.into_response());
    }
    Ok(scim_response(
        StatusCode::OK,
        &projection.apply(group),
        version,
    ))
}

async fn list_groups(
    State(state): State<AppState>,
    tenant: Tenant,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ScimError> {
    respond_list(state, tenant, headers, ListQuery::from_params(&params)?).await
}

async fn search(
    State(state): State<AppState>,
    tenant: Tenant,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ScimError> {
    let query = ListQuery::from_search(&json_body(&headers, &body)?)?;
    respond_list(state, tenant, headers, query).await
}

async fn respond_list(
    state: AppState,
    tenant: Tenant,
    headers: HeaderMap,
    query: ListQuery,
) -> Result<Response, ScimError> {
    let pushed = query
        .filter
        .as_ref()
        .and_then(|f| super::filter::pushdown(f, &GROUPS.indexed()));
    let candidates = candidates(&state, &tenant, &base_url(&headers), pushed).await?;
    Ok(scim_response(
        StatusCode::OK,
        &list::respond(candidates, &query, &case_exact),
        None,
    ))
}

/// Every resource of the tenant that the indexed equality `pushed` (if any) allows,
/// rendered; the caller evaluates the whole filter over them.
pub async fn candidates(
    state: &AppState,
    tenant: &Tenant,
    base: &str,
    pushed: Option<(&'static str, &str)>,
) -> Result<Vec<Value>, ScimError> {
    let pushed = pushed.map(|(name, value)| (name, value.to_owned()));
    let base = base.to_owned();
    state
        .database
        .tenant_tx(Access::Primary, tenant.id, |tx| {
            Box::pin(async move {
                let stored = GROUPS.candidates(tx, pushed.as_ref()).await?;
                render_all(tx, stored, &base).await
            })
        })
        .await
}

async fn replace(
    State(state): State<AppState>,
    tenant: Tenant,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ScimError> {
    let input = normalize(json_body(&headers, &body)?)?;
    write(state, tenant, headers, id, Edit::Replace(input)).await
}

async fn modify(
    State(state): State<AppState>,
    tenant: Tenant,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ScimError> {
    let operations = patch::parse_request(&json_body(&headers, &body)?)?;
    write(state, tenant, headers, id, Edit::Patch(operations)).await
}

enum Edit {
    Replace(GroupInput),
    Patch(Vec<patch::Operation>),
}

async fn write(
    state: AppState,
    tenant: Tenant,
    headers: HeaderMap,
    id: String,
    edit: Edit,
) -> Result<Response, ScimError> {
    let base = base_url(&headers);
    let tenant_id = tenant.id;
    let group = state
        .database
        .tenant_tx(Access::Write, tenant_id, |tx| {
            Box::pin(async move {
                let current = one(tx, &id, true).await?;
                check_if_match(&headers, current.version)?;
                let input = match edit {
                    Edit::Replace(input) => input,
                    Edit::Patch(operations) => {
                        let mut resource = render_all(tx, vec![current.clone()], &base)
                            .await?
                            .pop()
                            .unwrap_or_default();
                        patch::apply(&mut resource, &operations, &read_only, &case_exact)?;
                        normalize(resource)?
                    }
                };
                let sql = format!(
                    "UPDATE scim_groups SET display_name = $2, external_id = $3, \
                     resource = $4::text::jsonb, version = version + 1, updated_at = now() \
                     WHERE id = $1::text::uuid RETURNING {RESOURCE_COLUMNS}"
                );
                let resource = input.resource.to_string();
                let stored = store::query_stored(
                    tx,
                    &sql,
                    &[&id, &input.display_name, &input.external_id, &resource],
                )
                .await?;
                set_members(tx, tenant_id, &id, &input.members).await?;
                render_all(tx, stored, &base).await
            })
        })
        .await?
        .pop()
        .unwrap_or_default();
    let version = version_of(&group);
    Ok(scim_response(StatusCode::OK, &group, version))
}

async fn remove(
    State(state): State<AppState>,
    tenant: Tenant,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ScimError> {
    state
        .database
        .tenant_tx(Access::Write, tenant.id, |tx| {
            Box::pin(async move {
                let current = one(tx, &id, true).await?;
                check_if_match(&headers, current.version)?;
                tx.execute("DELETE FROM scim_groups WHERE id = $1::text::uuid", &[&id])
                    .await?;
                Ok::<_, ScimError>(())
            })
        })
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
