//! How one PATCH operation edits a resource as JSON: the containers (extensions), add and
//! replace (merging complex values, appending to multi-valued ones), remove, and the
//! value-filtered paths.

use serde_json::{Map, Value};

use super::{Kind, Operation, PatchError};
use crate::scim::filter::{self, Filter, Op as FilterOp};
use crate::scim::path::{self, AttrPath, PatchPath, key_of};

// The object holding the attribute (the resource, or its extension's object, created when
// `create`).
fn container<'v>(
    resource: &'v mut Value,
    attr: &AttrPath,
    create: bool,
) -> Option<&'v mut Map<String, Value>> {
    let object = resource.as_object_mut()?;
    match &attr.uri {
        Some(uri) if !attr.is_core() => {
            let key = match key_of(object, uri) {
                Some(key) => key.clone(),
                None if create => {
                    object.insert(uri.clone(), Value::Object(Map::new()));
                    uri.clone()
                }
                None => return None,
            };
            object.get_mut(&key)?.as_object_mut()
        }
        _ => Some(object),
    }
}

pub(super) fn apply_at(
    resource: &mut Value,
    operation: &Operation,
    path: &PatchPath,
    case_exact: &dyn Fn(&AttrPath) -> bool,
) -> Result<(), PatchError> {
    let create = operation.kind != Kind::Remove;
    let Some(object) = container(resource, &path.attr, create) else {
        return Ok(()); // removing from an extension that is not there
    };
    let key = key_of(object, &path.attr.name)
        .cloned()
        .unwrap_or_else(|| path.attr.name.clone());
    let value = operation.value.clone().unwrap_or(Value::Null);
    match (&path.filter, operation.kind) {
        (None, Kind::Remove) => {
            remove_plain(
                object,
                &key,
                path.attr.sub.as_deref(),
                operation.value.as_ref(),
            );
        }
        (None, kind) => set_plain(object, &key, path.attr.sub.as_deref(), value, kind),
        (Some(filter), kind) => {
            return filtered(
                object,
                &key,
                filter,
                path.sub.as_deref(),
                value,
                kind,
                case_exact,
            );
        }
    }
    Ok(())
}

fn set_plain(
    object: &mut Map<String, Value>,
    key: &str,
    sub: Option<&str>,
    value: Value,
    kind: Kind,
) {
    let slot = object.entry(key.to_owned()).or_insert(Value::Null);
    match sub {
        Some(sub) => match slot {
            Value::Array(items) => {
                for item in items.iter_mut().filter(|i| i.is_object()) {
                    set_field(item, sub, value.clone(), kind);
                }
            }
            _ => {
                if !slot.is_object() {
                    *slot = Value::Object(Map::new());
                }
                set_field(slot, sub, value, kind);
            }
        },
        None => merge(slot, value, kind),
    }
}

fn set_field(object: &mut Value, name: &str, value: Value, kind: Kind) {
    if let Value::Object(map) = object {
        let key = key_of(map, name)
            .cloned()
            .unwrap_or_else(|| name.to_owned());
        merge(map.entry(key).or_insert(Value::Null), value, kind);
    }
}

// add appends to multi-valued attributes and merges complex ones; replace replaces
// multi-valued attributes and merges complex ones (RFC 7644 3.5.2.1 and 3.5.2.3).
fn merge(slot: &mut Value, value: Value, kind: Kind) {
    match (slot, value) {
        (Value::Array(items), Value::Array(new)) if kind == Kind::Add => {
            for item in new {
                if !items.contains(&item) {
                    items.push(item);
                }
            }
        }
        (Value::Array(items), single) if kind == Kind::Add && !single.is_null() => {
            if !items.contains(&single) {
                items.push(single);
            }
        }
        (Value::Object(existing), Value::Object(new)) => {
            for (k, v) in new {
                let key = key_of(existing, &k).cloned().unwrap_or(k);
                existing.insert(key, v);
            }
        }
        (slot, value) => *slot = value,
    }
}

fn remove_plain(
    object: &mut Map<String, Value>,
    key: &str,
    sub: Option<&str>,
    value: Option<&Value>,
) {
    match (sub, object.get_mut(key)) {
        (Some(sub), Some(Value::Array(items))) => {
            for item in items.iter_mut() {
                remove_field(item, sub);
            }
        }
        (Some(sub), Some(slot)) => remove_field(slot, sub),
        // `remove members` with the members to remove as value (as Azure AD sends it).
        (None, Some(Value::Array(items))) if value.is_some_and(|v| !v.is_null()) => {
            let wanted: Vec<&Value> = match value {
                Some(Value::Array(values)) => values.iter().collect(),
                Some(single) => vec![single],
                None => Vec::new(),
            };
            let key_value = |v: &Value| path::get(v, "value").cloned().unwrap_or_else(|| v.clone());
            let wanted: Vec<Value> = wanted.into_iter().map(key_value).collect();
            items.retain(|item| !wanted.contains(&key_value(item)));
        }
        (None, Some(_)) => {
            object.remove(key);
        }
        (_, None) => {}
    }
    if matches!(object.get(key), Some(Value::Array(items)) if items.is_empty()) {
        object.remove(key);
    }
}

fn remove_field(object: &mut Value, name: &str) {
    if let Value::Object(map) = object
        && let Some(key) = key_of(map, name).cloned()
    {
        map.remove(&key);
    }
}

fn filtered(
    object: &mut Map<String, Value>,
    key: &str,
    filter: &Filter,
    sub: Option<&str>,
    value: Value,
    kind: Kind,
    case_exact: &dyn Fn(&AttrPath) -> bool,
) -> Result<(), PatchError> {
    let items = match object.get_mut(key) {
        Some(Value::Array(items)) => Some(items),
        Some(_) => {
            return Err(PatchError::InvalidPath(format!(
                "a value filter needs a multi-valued attribute; {key} is not"
            )));
        }
        None => None,
    };
    let mut matched = 0;
    if let Some(items) = items {
        if kind == Kind::Remove && sub.is_none() {
            let before = items.len();
            items.retain(|item| !filter::matches(filter, item, case_exact));
            matched = before - items.len();
        } else {
            for item in items.iter_mut() {
                if !filter::matches(filter, item, case_exact) {
                    continue;
                }
                matched += 1;
                match (kind, sub) {
                    (Kind::Remove, Some(sub)) => remove_field(item, sub),
                    (_, Some(sub)) => set_field(item, sub, value.clone(), Kind::Replace),
                    (_, None) => merge(item, value.clone(), Kind::Replace),
                }
            }
        }
    }
    if matches!(object.get(key), Some(Value::Array(items)) if items.is_empty()) {
        object.remove(key);
    }
    if matched > 0 || kind == Kind::Remove {
        return Ok(());
    }
    // `emails[type eq "work"].value` on a user without a work email: add that element, as
    // identity providers expect.
    if let (Some(sub), Some((name, selector))) = (sub, filter_eq(filter)) {
        let mut element = Map::new();
        element.insert(name, selector);
        element.insert(sub.to_owned(), value);
        let slot = object
            .entry(key.to_owned())
            .or_insert(Value::Array(Vec::new()));
        if let Value::Array(items) = slot {
            items.push(Value::Object(element));
            return Ok(());
        }
    }
    Err(PatchError::NoTarget(format!(
        "no value of {key} matches the filter"
    )))
}

// `name eq value` of a simple filter.
fn filter_eq(filter: &Filter) -> Option<(String, Value)> {
    match filter {
        Filter::Compare(attr, FilterOp::Eq, value) if attr.sub.is_none() && attr.uri.is_none() => {
            Some((attr.name.clone(), value.clone()))
        }
        _ => None,
    }
}
