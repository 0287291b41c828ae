//! What a SCIM group is here: the checks of a Group a client sends (members are users of
//! the same tenant), its rendering with its members, its rows.

use serde_json::{Value, json};

use super::GROUP_SCHEMA;
use crate::db::tenant_tx::TenantTx;
use crate::scim::path::{self, AttrPath};
use crate::scim::store::{self, RESOURCE_COLUMNS, Stored};
use crate::scim::{ScimError, is_uuid};

/// Attributes whose strings compare exactly; all others ignore case.
pub fn case_exact(path: &AttrPath) -> bool {
    let name = path.name.to_ascii_lowercase();
    matches!(name.as_str(), "id" | "externalid")
        || path.sub.as_deref().is_some_and(|s| s == "$ref")
        || (name == "members" && path.sub.as_deref() == Some("value"))
}

pub(super) fn read_only(path: &AttrPath) -> bool {
    ["id", "meta"]
        .iter()
        .any(|n| path.name.eq_ignore_ascii_case(n))
}

/// A member as the client described it.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Member {
    pub(super) value: String,
    pub(super) display: Option<String>,
    pub(super) kind: Option<String>,
}

#[derive(Debug)]
pub(super) struct GroupInput {
    pub(super) display_name: String,
    pub(super) external_id: Option<String>,
    pub(super) members: Vec<Member>,
    pub(super) resource: Value,
}

pub(super) fn normalize(body: Value) -> Result<GroupInput, ScimError> {
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

pub(super) async fn render_all(
    tx: &mut TenantTx,
    groups: Vec<Stored>,
    base: &str,
) -> Result<Vec<Value>, ScimError> {
    let ids: Vec<String> = groups.iter().map(|g| g.id.clone()).collect();
    let rows = tx
        .query(
            "SELECT group_id::text, user_id::text, display, type FROM scim_group_members \
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
pub(super) async fn set_members(
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
        "DELETE FROM scim_group_members WHERE group_id = $1::text::uuid",
        &[&group],
    )
    .await?;
    if members.is_empty() {
        return Ok(());
    }
    let displays: Vec<Option<String>> = members.iter().map(|m| m.display.clone()).collect();
    let kinds: Vec<Option<String>> = members.iter().map(|m| m.kind.clone()).collect();
    tx.execute(
        "INSERT INTO scim_group_members (tenant_id, group_id, user_id, ordinal, display, type) \
         SELECT $1, $2::text::uuid, m.user_id::uuid, m.ordinal::integer, m.display, m.type \
         FROM unnest($3::text[], $4::text[], $5::text[]) WITH ORDINALITY AS m(user_id, display, type, ordinal)",
        &[&tenant_id, &group, &ids, &displays, &kinds],
    )
    .await?;
    Ok(())
}

pub(super) async fn one(tx: &mut TenantTx, id: &str, lock: bool) -> Result<Stored, ScimError> {
    let not_found = || ScimError::NotFound(format!("Group {id}"));
    if !is_uuid(id) {
        return Err(not_found());
    }
    let sql = format!(
        "SELECT {RESOURCE_COLUMNS} FROM scim_groups WHERE id = $1::text::uuid{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    store::query_stored(tx, &sql, &[&id])
        .await?
        .pop()
        .ok_or_else(not_found)
}
