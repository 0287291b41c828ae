//! What a SCIM user is here: the checks of a User a client sends, its rendering with the
//! groups it belongs to, and its row.

use serde_json::{Value, json};

use super::USER_SCHEMA;
use crate::db::tenant_tx::TenantTx;
use crate::scim::path::{self, AttrPath};
use crate::scim::store::{self, RESOURCE_COLUMNS, Stored};
use crate::scim::{ScimError, is_uuid};

/// Attributes whose strings compare exactly; all others ignore case.
pub fn case_exact(path: &AttrPath) -> bool {
    let name = path.name.to_ascii_lowercase();
    matches!(name.as_str(), "id" | "externalid" | "$ref")
        || path.sub.as_deref().is_some_and(|s| s == "$ref")
        || (name == "groups" && path.sub.as_deref() == Some("value"))
}

pub(super) fn read_only(path: &AttrPath) -> bool {
    ["id", "meta", "groups"]
        .iter()
        .any(|n| path.name.eq_ignore_ascii_case(n))
}

/// A user as a client sent it, checked.
#[derive(Debug)]
pub(super) struct UserInput {
    pub(super) user_name: String,
    pub(super) external_id: Option<String>,
    pub(super) active: bool,
    pub(super) resource: Value,
}

pub(super) fn normalize(body: Value) -> Result<UserInput, ScimError> {
    let Value::Object(mut object) = body else {
        return Err(ScimError::bad("invalidSyntax", "a User is a JSON object"));
    };
    // Read-only attributes are the server's; a password is never stored.
    object.retain(|k, _| {
        !["id", "meta", "groups", "password"]
            .iter()
            .any(|n| k.eq_ignore_ascii_case(n))
    });
    let schemas_ok = object
        .get("schemas")
        .and_then(Value::as_array)
        .is_some_and(|s| {
            s.iter().any(|v| {
                v.as_str()
                    .is_some_and(|v| v.eq_ignore_ascii_case(USER_SCHEMA))
            })
        });
    if !schemas_ok {
        return Err(ScimError::bad(
            "invalidSyntax",
            format!("schemas must include {USER_SCHEMA}"),
        ));
    }
    let resource = Value::Object(object);
    let user_name = match path::get(&resource, "userName") {
        Some(Value::String(name)) if !name.trim().is_empty() => name.clone(),
        _ => {
            return Err(ScimError::bad(
                "invalidValue",
                "userName is required and must be a non-empty string",
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
    let mut resource = resource;
    let active = match path::get(&resource, "active").cloned() {
        None | Some(Value::Null) => true,
        Some(Value::Bool(active)) => active,
        // Some identity providers send "True"/"False".
        Some(Value::String(text))
            if text.eq_ignore_ascii_case("true") || text.eq_ignore_ascii_case("false") =>
        {
            let active = text.eq_ignore_ascii_case("true");
            if let Some(key) = resource
                .as_object()
                .and_then(|o| path::key_of(o, "active"))
                .cloned()
            {
                resource[key] = Value::Bool(active);
            }
            active
        }
        Some(_) => return Err(ScimError::bad("invalidValue", "active must be a boolean")),
    };
    Ok(UserInput {
        user_name,
        external_id,
        active,
        resource,
    })
}

/// The groups of each of `ids`: `(user id, group id, group displayName)`.
pub(super) async fn groups_of(
    tx: &mut TenantTx,
    ids: &[String],
) -> Result<Vec<(String, String, String)>, ScimError> {
    let rows = tx
        .query(
            "SELECT m.user_id::text, g.id::text, g.display_name FROM scim_group_members m \
             JOIN scim_groups g ON g.tenant_id = m.tenant_id AND g.id = m.group_id \
             WHERE m.user_id = ANY($1::text[]::uuid[]) ORDER BY g.display_name, g.id",
            &[&ids],
        )
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        out.push((
            row.get::<_, String>(0),
            row.get::<_, String>(1),
            row.get::<_, String>(2),
        ));
    }
    Ok(out)
}

pub(super) async fn render_all(
    tx: &mut TenantTx,
    users: Vec<Stored>,
    base: &str,
) -> Result<Vec<Value>, ScimError> {
    let ids: Vec<String> = users.iter().map(|u| u.id.clone()).collect();
    let memberships = groups_of(tx, &ids).await?;
    Ok(users
        .iter()
        .map(|user| {
            let mut rendered = user.render("User", USER_SCHEMA, base);
            let groups: Vec<Value> = memberships
                .iter()
                .filter(|(uid, _, _)| *uid == user.id)
                .map(|(_, gid, name)| {
                    json!({"value": gid, "$ref": format!("{base}/Groups/{gid}"), "display": name, "type": "direct"})
                })
                .collect();
            if !groups.is_empty() {
                rendered["groups"] = Value::Array(groups);
            }
            rendered
        })
        .collect())
}

pub(super) async fn one(tx: &mut TenantTx, id: &str, lock: bool) -> Result<Stored, ScimError> {
    let not_found = || ScimError::NotFound(format!("User {id}"));
    if !is_uuid(id) {
        return Err(not_found());
    }
    let sql = format!(
        "SELECT {RESOURCE_COLUMNS} FROM scim_users WHERE id = $1::text::uuid{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    store::query_stored(tx, &sql, &[&id])
        .await?
        .pop()
        .ok_or_else(not_found)
}

pub(super) fn taken(error: ScimError, user_name: &str) -> ScimError {
    if store::is_unique_violation(&error) {
        ScimError::Uniqueness(format!(
            "userName {user_name:?} is already taken in this tenant"
        ))
    } else {
        error
    }
}
