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
use serde_json::{Value, json};

use super::list::{self, ListQuery, Projection};
use super::path::{self, AttrPath};
use super::store::{self, RESOURCE_COLUMNS, Stored};
use super::{
    ScimError, base_url, check_if_match, is_uuid, json_body, not_modified, patch, scim_response,
};
use crate::app::AppState;
use crate::db::tenant_tx::{Access, TenantTx};
use crate::tenant::Tenant;

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

/// Attributes whose strings compare exactly; all others ignore case.
pub fn case_exact(path: &AttrPath) -> bool {
    let name = path.name.to_ascii_lowercase();
    matches!(name.as_str(), "id" | "externalid")
        || path.sub.as_deref().is_some_and(|s| s == "$ref")
        || (name == "members" && path.sub.as_deref() == Some("value"))
}

fn read_only(path: &AttrPath) -> bool {
    ["id", "meta"]
        .iter()
        .any(|n| path.name.eq_ignore_ascii_case(n))
}

/// A member as the client described it.
#[derive(Debug, Clone, PartialEq)]
struct Member {
    value: String,
    display: Option<String>,
    kind: Option<String>,
}

#[derive(Debug)]
struct GroupInput {
    display_name: String,
    external_id: Option<String>,
    members: Vec<Member>,
    resource: Value,
}

fn normalize(body: Value) -> Result<GroupInput, ScimError> {
    let Value::Object(mut object) = body else {
        return Err(ScimError::bad("invalidSyntax", "a Group is a JSON object"));
    };
    let members_key = path::key_of(&object, "members").cloned();
    let members_value = members_key
        .and_then(|k| object.remove(&k))
        .unwrap_or(Value::Null);
    object.retain(|k, _| !["id", "meta"].iter().any(|n| k.eq_ignore_ascii_case(n)));
    let schemas_ok = object
        .get("schemas")
        .and_then(Value::as_array)
        .is_some_and(|s| {
            s.iter().any(|v| {
                v.as_str()
                    .is_some_and(|v| v.eq_ignore_ascii_case(GROUP_SCHEMA))
            })
        });
    if !schemas_ok {
        return Err(ScimError::bad(
            "invalidSyntax",
            format!("schemas must include {GROUP_SCHEMA}"),
        ));
    }
    let resource = Value::Object(object);
    let display_name = match path::get(&resource, "displayName") {
        Some(Value::String(name)) if !name.trim().is_empty() => name.clone(),
        _ => {
            return Err(ScimError::bad(
                "invalidValue",
                "displayName is required and must be a non-empty string",
            ));
        }
    };
    let external_id = match path::get(&resource, "externalId") {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) => Some(id.clone()),
        Some(_) => {
            return Err(ScimError::bad(
                "invalidValue",
                "externalId must be a string",
            ));
        }
    };
    let items = match members_value {
        Value::Null => Vec::new(),
        Value::Array(items) => items,
        _ => return Err(ScimError::bad("invalidValue", "members must be an array")),
    };
    let mut members: Vec<Member> = Vec::with_capacity(items.len());
    for item in &items {
        let text = |name| {
            path::get(item, name)
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let Some(value) = text("value") else {
            return Err(ScimError::bad(
                "invalidValue",
                "every member needs a value (a user id)",
            ));
        };
        if !members.iter().any(|m| m.value.eq_ignore_ascii_case(&value)) {
            members.push(Member {
                value: value.to_ascii_lowercase(),
                display: text("display"),
                kind: text("type"),
            });
        }
    }
    Ok(GroupInput {
        display_name,
        external_id,
        members,
        resource,
    })
}

async fn render_all(
    tx: &mut TenantTx,
    groups: Vec<Stored>,
    base: &str,
) -> Result<Vec<Value>, ScimError> {
    let ids: Vec<String> = groups.iter().map(|g| g.id.clone()).collect();
    let rows = tx
        .query(
            "SELECT group_id::text, user_id::text, display, type FROM clinical.scim_group_members \
             WHERE group_id = ANY($1::text[]::uuid[]) ORDER BY group_id, ordinal",
            &[&ids],
        )
        .await?;
    Ok(groups
        .iter()
        .map(|group| {
            let mut rendered = group.render("Group", GROUP_SCHEMA, base);
            let members: Vec<Value> = rows
                .iter()
                .filter(|r| r.get::<_, String>(0) == group.id)
                .map(|r| {
                    let user: String = r.get(1);
                    let mut member = json!({"value": user, "$ref": format!("{base}/Users/{user}")});
                    if let Some(display) = r.get::<_, Option<String>>(2) {
                        member["display"] = json!(display);
                    }
                    if let Some(kind) = r.get::<_, Option<String>>(3) {
                        member["type"] = json!(kind);
                    }
                    member
                })
                .collect();
            if !members.is_empty() {
                rendered["members"] = Value::Array(members);
            }
            rendered
        })
        .collect())
}

// Replaces the members of `group` by `members`, all of which must be users of the tenant.
async fn set_members(
    tx: &mut TenantTx,
    tenant_id: i64,
    group: &str,
    members: &[Member],
) -> Result<(), ScimError> {
    let ids: Vec<String> = members.iter().map(|m| m.value.clone()).collect();
    let valid: Vec<String> = ids.iter().filter(|id| is_uuid(id)).cloned().collect();
    let found = store::existing_users(tx, &valid).await?;
    if let Some(missing) = ids.iter().find(|id| !found.contains(id)) {
        return Err(ScimError::bad(
            "invalidValue",
            format!("member {missing:?} is not a user of this tenant"),
        ));
    }
    tx.execute(
        "DELETE FROM clinical.scim_group_members WHERE group_id = $1::text::uuid",
        &[&group],
    )
    .await?;
    if members.is_empty() {
        return Ok(());
    }
    let displays: Vec<Option<String>> = members.iter().map(|m| m.display.clone()).collect();
    let kinds: Vec<Option<String>> = members.iter().map(|m| m.kind.clone()).collect();
    tx.execute(
        "INSERT INTO clinical.scim_group_members (tenant_id, group_id, user_id, ordinal, display, type) \
         SELECT $1, $2::text::uuid, m.user_id::uuid, m.ordinal::integer, m.display, m.type \
         FROM unnest($3::text[], $4::text[], $5::text[]) WITH ORDINALITY AS m(user_id, display, type, ordinal)",
        &[&tenant_id, &group, &ids, &displays, &kinds],
    )
    .await?;
    Ok(())
}

async fn one(tx: &mut TenantTx, id: &str, lock: bool) -> Result<Stored, ScimError> {
    let not_found = || ScimError::NotFound(format!("Group {id}"));
    if !is_uuid(id) {
        return Err(not_found());
    }
    let sql = format!(
        "SELECT {RESOURCE_COLUMNS} FROM clinical.scim_groups WHERE id = $1::text::uuid{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    store::query_stored(tx, &sql, &[&id])
        .await?
        .pop()
        .ok_or_else(not_found)
}

fn version_of(resource: &Value) -> Option<i32> {
    resource
        .pointer("/meta/version")
        .and_then(Value::as_str)
        .and_then(|v| v.trim_start_matches("W/").trim_matches('"').parse().ok())
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
                    "INSERT INTO clinical.scim_groups (tenant_id, display_name, external_id, resource) \
                     VALUES ($1, $2, $3, $4::text::jsonb) RETURNING {RESOURCE_COLUMNS}"
                );
                let resource = input.resource.to_string();
                let stored = store::query_stored(tx, &sql, &[&tenant_id, &input.display_name, &input.external_id, &resource]).await?;
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
        .tenant_tx(Access::Read, tenant.id, |tx| {
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
        .and_then(|f| super::filter::pushdown(f, &["id", "displayName", "externalId"]));
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
        .tenant_tx(Access::Read, tenant.id, |tx| {
            Box::pin(async move {
                let stored = match &pushed {
                    Some(("id", value)) if !is_uuid(value) => Vec::new(),
                    Some((name, value)) => {
                        let predicate = match *name {
                            "id" => "id = $1::text::uuid",
                            "displayName" => "lower(display_name) = lower($1)",
                            _ => "external_id = $1",
                        };
                        let sql = format!("SELECT {RESOURCE_COLUMNS} FROM clinical.scim_groups WHERE {predicate}");
                        store::query_stored(tx, &sql, &[value]).await?
                    }
                    None => {
                        let sql = format!("SELECT {RESOURCE_COLUMNS} FROM clinical.scim_groups ORDER BY created_at, id");
                        store::query_stored(tx, &sql, &[]).await?
                    }
                };
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
                    "UPDATE clinical.scim_groups SET display_name = $2, external_id = $3, \
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
                tx.execute(
                    "DELETE FROM clinical.scim_groups WHERE id = $1::text::uuid",
                    &[&id],
                )
                .await?;
                Ok::<_, ScimError>(())
            })
        })
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
