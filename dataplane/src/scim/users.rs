//! `/Users`: create, read, list and search, replace, PATCH and delete SCIM users of the
//! request's tenant. `userName` is unique per tenant, compared case-insensitively.

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
use model::{UserInput, normalize, one, read_only, render_all, taken};

/// Where the resources live, and their name index.
const USERS: store::Table = store::Table {
    table: "scim_users",
    name_attribute: "userName",
    name_column: "user_name",
};

/// The core User schema.
pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";

/// The `/Users` routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/Users", get(list_users).post(create))
        .route("/Users/.search", post(search))
        .route(
            "/Users/{id}",
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
    let name = input.user_name.clone();
    let rendered = state
        .database
        .tenant_tx(Access::Write, tenant_id, |tx| {
            Box::pin(async move {
                let sql = format!(
                    "INSERT INTO scim_users (tenant_id, user_name, external_id, active, resource) \
                     VALUES ($1, $2, $3, $4, $5::text::jsonb) RETURNING {RESOURCE_COLUMNS}"
                );
                let resource = input.resource.to_string();
                let stored = store::query_stored(
                    tx,
                    &sql,
                    &[
                        &tenant_id,
                        &input.user_name,
                        &input.external_id,
                        &input.active,
                        &resource,
                    ],
                )
                .await?;
                render_all(tx, stored, &base).await
            })
        })
        .await
        .map_err(|e| taken(e, &name))?;
    let user = rendered
        .into_iter()
        .next()
        .ok_or(ScimError::Api(crate::ApiError::Internal(
            "INSERT returned no row",
        )))?;
    let version = version_of(&user);
    Ok(scim_response(StatusCode::CREATED, &user, version))
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
    let user = state
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
    let version = version_of(&user);
    if version.is_some_and(|v| not_modified(&headers, v)) {
        return Ok(StatusCode::NOT_MODIFIED.into_response());
    }
    Ok(scim_response(
        StatusCode::OK,
        &projection.apply(user),
        version,
    ))
}

async fn list_users(
    State(state): State<AppState>,
    tenant: Tenant,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ScimError> {
    let query = ListQuery::from_params(&params)?;
    respond_list(state, tenant, headers, query).await
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
        .and_then(|f| super::filter::pushdown(f, &USERS.indexed()));
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
                let stored = USERS.candidates(tx, pushed.as_ref()).await?;
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
    Replace(UserInput),
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
    let user = state
        .database
        .tenant_tx(Access::Write, tenant.id, |tx| {
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
                    "UPDATE scim_users SET user_name = $2, external_id = $3, active = $4, \
                     resource = $5::text::jsonb, version = version + 1, updated_at = now() \
                     WHERE id = $1::text::uuid RETURNING {RESOURCE_COLUMNS}"
                );
                let resource = input.resource.to_string();
                let stored = store::query_stored(
                    tx,
                    &sql,
                    &[
                        &id,
                        &input.user_name,
                        &input.external_id,
                        &input.active,
                        &resource,
                    ],
                )
                .await
                .map_err(|e| taken(e, &input.user_name))?;
                render_all(tx, stored, &base).await
            })
        })
        .await?
        .pop()
        .unwrap_or_default();
    let version = version_of(&user);
    Ok(scim_response(StatusCode::OK, &user, version))
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
                tx.execute("DELETE FROM scim_users WHERE id = $1::text::uuid", &[&id])
                    .await?;
                Ok::<_, ScimError>(())
            })
        })
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
