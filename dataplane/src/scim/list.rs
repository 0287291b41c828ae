//! Listing (RFC 7644 section 3.4.2): the query parameters (or a `.search` body), sorting,
//! pagination, and the `attributes` / `excludedAttributes` projection of resources.

use std::cmp::Ordering;
use std::collections::HashMap;

use serde_json::{Map, Value, json};

use super::ScimError;
use super::filter::{self, Filter};
use super::path::{self, AttrPath, parse_attr_path};

/// The schema of a list response.
pub const LIST_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
/// The schema of a `.search` request body.
pub const SEARCH_REQUEST: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";
/// Most resources one page holds (`count` is capped to it).
pub const MAX_RESULTS: usize = 1000;

/// What a list request asks for.
#[derive(Clone, Debug, Default)]
pub struct ListQuery {
    /// Which resources.
    pub filter: Option<Filter>,
    /// Sort key.
    pub sort_by: Option<AttrPath>,
    /// Descending instead of ascending.
    pub descending: bool,
    /// 1-based index of the first resource returned.
    pub start_index: usize,
    /// How many resources at most.
    pub count: usize,
    /// Which attributes to return.
    pub projection: Projection,
}

/// `attributes` / `excludedAttributes` of a request.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Projection {
    /// Only these (plus those always returned).
    pub attributes: Vec<AttrPath>,
    /// All but these.
    pub excluded: Vec<AttrPath>,
}

fn paths(text: &str) -> Result<Vec<AttrPath>, ScimError> {
    text.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| parse_attr_path(p).map_err(|e| ScimError::bad("invalidValue", e.to_string())))
        .collect()
}

impl Projection {
    /// From the `attributes` and `excludedAttributes` query parameters.
    pub fn from_params(params: &HashMap<String, String>) -> Result<Self, ScimError> {
        Ok(Self {
            attributes: param(params, "attributes")
                .map(paths)
                .transpose()?
                .unwrap_or_default(),
            excluded: param(params, "excludedAttributes")
                .map(paths)
                .transpose()?
                .unwrap_or_default(),
        })
    }

    /// `resource` with only the attributes asked for; `id` and `schemas` always stay.
    pub fn apply(&self, resource: Value) -> Value {
        let Value::Object(mut object) = resource else {
            return resource;
        };
        let always =
            |key: &str| key.eq_ignore_ascii_case("id") || key.eq_ignore_ascii_case("schemas");
        if !self.attributes.is_empty() {
            let mut kept = Map::new();
            for (key, value) in object {
                if always(&key) {
                    kept.insert(key, value);
                    continue;
                }
                let asked: Vec<&AttrPath> = self
                    .attributes
                    .iter()
                    .filter(|p| p.name.eq_ignore_ascii_case(&key))
                    .collect();
                if asked.is_empty() {
                    continue;
                }
                if asked.iter().any(|p| p.sub.is_none()) {
                    kept.insert(key, value);
                } else {
                    let subs: Vec<&str> = asked.iter().filter_map(|p| p.sub.as_deref()).collect();
                    kept.insert(key, keep_subs(value, &subs));
                }
            }
            object = kept;
        }
        for path in &self.excluded {
            if always(&path.name) {
                continue;
            }
            let Some(key) = path::key_of(&object, &path.name).cloned() else {
                continue;
            };
            match &path.sub {
                None => {
                    object.remove(&key);
                }
                Some(sub) => {
                    if let Some(value) = object.get_mut(&key) {
                        drop_sub(value, sub);
                    }
                }
            }
        }
        Value::Object(object)
    }
}

fn keep_subs(value: Value, subs: &[&str]) -> Value {
    match value {
        Value::Array(items) => {
            Value::Array(items.into_iter().map(|i| keep_subs(i, subs)).collect())
        }
        Value::Object(object) => Value::Object(
            object
                .into_iter()
                .filter(|(k, _)| subs.iter().any(|s| s.eq_ignore_ascii_case(k)))
                .collect(),
        ),
        other => other,
    }
}

fn drop_sub(value: &mut Value, sub: &str) {
    match value {
        Value::Array(items) => items.iter_mut().for_each(|i| drop_sub(i, sub)),
        Value::Object(object) => {
            if let Some(key) = path::key_of(object, sub).cloned() {
                object.remove(&key);
            }
        }
        _ => {}
    }
}

// A query parameter by name, ignoring case.
fn param<'p>(params: &'p HashMap<String, String>, name: &str) -> Option<&'p str> {
    params
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

impl ListQuery {
    /// From the query parameters of a GET.
    pub fn from_params(params: &HashMap<String, String>) -> Result<Self, ScimError> {
        let number = |name: &str| -> Result<Option<i64>, ScimError> {
            param(params, name)
                .map(|v| {
                    v.trim().parse::<i64>().map_err(|_| {
                        ScimError::bad("invalidValue", format!("{name} must be an integer"))
                    })
                })
                .transpose()
        };
        let filter = param(params, "filter").map(filter::parse).transpose()?;
        let sort_by = param(params, "sortBy")
            .map(|p| {
                parse_attr_path(p.trim()).map_err(|e| ScimError::bad("invalidValue", e.to_string()))
            })
            .transpose()?;
        let descending = match param(params, "sortOrder")
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("ascending") => false,
            Some("descending") => true,
            Some(_) => {
                return Err(ScimError::bad(
                    "invalidValue",
                    "sortOrder is ascending or descending",
                ));
            }
        };
        Ok(Self {
            filter,
            sort_by,
            descending,
            start_index: clamp_start(number("startIndex")?),
            count: clamp_count(number("count")?),
            projection: Projection::from_params(params)?,
        })
    }

    /// From a `.search` request body.
    pub fn from_search(body: &Value) -> Result<Self, ScimError> {
        let mut params = HashMap::new();
        for key in ["filter", "sortBy", "sortOrder"] {
            if let Some(value) = path::get(body, key).and_then(Value::as_str) {
                params.insert(key.to_owned(), value.to_owned());
            }
        }
        for key in ["startIndex", "count"] {
            if let Some(value) = path::get(body, key) {
                params.insert(key.to_owned(), value.to_string());
            }
        }
        for key in ["attributes", "excludedAttributes"] {
            match path::get(body, key) {
                Some(Value::Array(items)) => {
                    let joined: Vec<&str> = items.iter().filter_map(Value::as_str).collect();
                    params.insert(key.to_owned(), joined.join(","));
                }
                Some(Value::String(text)) => {
                    params.insert(key.to_owned(), text.clone());
                }
                _ => {}
            }
        }
        Self::from_params(&params)
    }
}

fn clamp_start(start: Option<i64>) -> usize {
    usize::try_from(start.unwrap_or(1).max(1)).unwrap_or(1)
}

fn clamp_count(count: Option<i64>) -> usize {
    usize::try_from(count.unwrap_or(100).max(0))
        .unwrap_or(0)
        .min(MAX_RESULTS)
}

/// The list response over `candidates`: filtered, sorted, paged and projected.
pub fn respond(
    mut candidates: Vec<Value>,
    query: &ListQuery,
    case_exact: &dyn Fn(&AttrPath) -> bool,
) -> Value {
    if let Some(filter) = &query.filter {
        candidates.retain(|r| filter::matches(filter, r, case_exact));
    }
    if let Some(sort_by) = &query.sort_by {
        let exact = case_exact(sort_by);
        candidates.sort_by(|a, b| {
            let order = sort_key(a, sort_by, exact).cmp_missing_last(&sort_key(b, sort_by, exact));
            if query.descending {
                order.reverse()
            } else {
                order
            }
        });
    }
    let total = candidates.len();
    let page: Vec<Value> = candidates
        .into_iter()
        .skip(query.start_index - 1)
        .take(query.count)
        .map(|r| query.projection.apply(r))
        .collect();
    json!({
        "schemas": [LIST_RESPONSE],
        "totalResults": total,
        "startIndex": query.start_index,
        "itemsPerPage": page.len(),
        "Resources": page,
    })
}

// The value a resource sorts by: for a multi-valued attribute its primary (else first) value.
#[derive(PartialEq, PartialOrd)]
enum SortKey {
    Missing,
    Number(f64),
    Text(String),
    Bool(bool),
}

impl SortKey {
    fn cmp_missing_last(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Self::Missing, Self::Missing) => Ordering::Equal,
            (Self::Missing, _) => Ordering::Greater,
            (_, Self::Missing) => Ordering::Less,
            (a, b) => a.partial_cmp(b).unwrap_or(Ordering::Equal),
        }
    }
}

fn sort_key(resource: &Value, path: &AttrPath, exact: bool) -> SortKey {
    let values = path.values(resource);
    let chosen = values
        .iter()
        .find(|v| path::get(v, "primary") == Some(&Value::Bool(true)))
        .or_else(|| values.first())
        .map(|v| match v {
            Value::Object(o) => o.get("value").unwrap_or(&Value::Null),
            other => other,
        });
    match chosen {
        Some(Value::String(s)) if exact => SortKey::Text(s.clone()),
        Some(Value::String(s)) => SortKey::Text(s.to_lowercase()),
        Some(Value::Number(n)) => n.as_f64().map_or(SortKey::Missing, SortKey::Number),
        Some(Value::Bool(b)) => SortKey::Bool(*b),
        _ => SortKey::Missing,
    }
}

#[cfg(test)]
#[path = "list_tests.rs"]
mod tests;
