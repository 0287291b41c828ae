//! PATCH (RFC 7644 section 3.5.2): the request parsed into operations, applied to a
//! resource as JSON. `add`, `replace`, `remove`, with or without a path; paths with value
//! filters and sub-attributes; a value without path may name attributes by URN or dotted
//! name. The caller validates the result as it validates a PUT.

use serde_json::Value;

mod edit;

use edit::apply_at;

use super::path::{self, AttrPath, PatchPath, parse_attr_path, parse_patch_path};

/// The schema of a PATCH request body.
pub const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// What a PATCH operation does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Adds values.
    Add,
    /// Replaces values.
    Replace,
    /// Removes values.
    Remove,
}

/// One operation of a PATCH request.
#[derive(Clone, Debug, PartialEq)]
pub struct Operation {
    /// add, replace or remove.
    pub kind: Kind,
    /// Where; `None`: the resource itself.
    pub path: Option<PatchPath>,
    /// The value, absent for most removes.
    pub value: Option<Value>,
}

/// Why a PATCH fails; each maps to a SCIM `scimType`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// The body is not a PATCH request.
    #[error("{0}")]
    InvalidSyntax(String),
    /// A path does not parse.
    #[error("{0}")]
    InvalidPath(String),
    /// A value does not fit its operation.
    #[error("{0}")]
    InvalidValue(String),
    /// The path matched nothing where something must match.
    #[error("{0}")]
    NoTarget(String),
    /// The operation targets an attribute clients may not change.
    #[error("attribute {0} is read-only")]
    Mutability(String),
}

/// Parses a PATCH request body.
pub fn parse_request(body: &Value) -> Result<Vec<Operation>, PatchError> {
    let syntax = |m: &str| PatchError::InvalidSyntax(m.to_owned());
    let schemas = path::get(body, "schemas").and_then(Value::as_array);
    if !schemas.is_some_and(|s| s.iter().any(|v| v.as_str() == Some(PATCH_OP))) {
        return Err(syntax("a PATCH request must carry the PatchOp schema"));
    }
    let operations = path::get(body, "Operations")
        .and_then(Value::as_array)
        .ok_or_else(|| syntax("a PATCH request needs an `Operations` array"))?;
    operations.iter().map(parse_operation).collect()
}

fn parse_operation(operation: &Value) -> Result<Operation, PatchError> {
    let op = path::get(operation, "op")
        .and_then(Value::as_str)
        .ok_or_else(|| PatchError::InvalidSyntax("an operation needs `op`".into()))?;
    let kind = match op.to_ascii_lowercase().as_str() {
        "add" => Kind::Add,
        "replace" => Kind::Replace,
        "remove" => Kind::Remove,
        other => {
            return Err(PatchError::InvalidSyntax(format!(
                "unknown operation `{other}`"
            )));
        }
    };
    let path = match path::get(operation, "path") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) if text.trim().is_empty() => None,
        Some(Value::String(text)) => {
            Some(parse_patch_path(text).map_err(|e| PatchError::InvalidPath(e.to_string()))?)
        }
        Some(_) => return Err(PatchError::InvalidPath("`path` must be a string".into())),
    };
    let value = path::get(operation, "value").cloned();
    if kind != Kind::Remove && value.is_none() {
        return Err(PatchError::InvalidValue(format!("`{op}` needs a value")));
    }
    if kind == Kind::Remove && path.is_none() {
        return Err(PatchError::NoTarget("`remove` needs a path".into()));
    }
    Ok(Operation { kind, path, value })
}

/// Applies `operations` in order to `resource` (an object). `read_only` names attributes
/// clients may not change; `case_exact` is the filters' string comparison.
pub fn apply(
    resource: &mut Value,
    operations: &[Operation],
    read_only: &dyn Fn(&AttrPath) -> bool,
    case_exact: &dyn Fn(&AttrPath) -> bool,
) -> Result<(), PatchError> {
    for operation in operations {
        match &operation.path {
            Some(path) => {
                if read_only(&path.attr) {
                    return Err(PatchError::Mutability(path.attr.name.clone()));
                }
                apply_at(resource, operation, path, case_exact)?;
            }
            None => {
                let Some(Value::Object(values)) = &operation.value else {
                    return Err(PatchError::InvalidValue(
                        "without a path, the value must be an object of attributes".into(),
                    ));
                };
                for (key, value) in values {
                    for (attr, value) in expand(key, value)? {
                        if read_only(&attr) {
                            // Clients echo read-only attributes (id, meta) back: skip them.
                            continue;
                        }
                        let op = Operation {
                            kind: operation.kind,
                            path: None,
                            value: Some(value),
                        };
                        let path = PatchPath {
                            attr,
                            filter: None,
                            sub: None,
                        };
                        apply_at(resource, &op, &path, case_exact)?;
                    }
                }
            }
        }
    }
    Ok(())
}

// The attributes a key of a path-less value names: an extension URN holding an object of
// attributes, or an attribute path.
fn expand(key: &str, value: &Value) -> Result<Vec<(AttrPath, Value)>, PatchError> {
    let invalid = |e: path::PathError| PatchError::InvalidPath(e.to_string());
    let lower = key.to_ascii_lowercase();
    let extension = lower.starts_with("urn:")
        && (!lower.starts_with("urn:ietf:params:scim:schemas:core:")
            || parse_attr_path(key).is_err());
    if extension && let Value::Object(inner) = value {
        return inner
            .iter()
            .map(|(k, v)| {
                let mut attr = parse_attr_path(k).map_err(invalid)?;
                attr.uri = Some(key.to_owned());
                Ok((attr, v.clone()))
            })
            .collect();
    }
    Ok(vec![(
        parse_attr_path(key).map_err(invalid)?,
        value.clone(),
    )])
}

#[cfg(test)]
#[path = "patch_tests.rs"]
mod tests;
