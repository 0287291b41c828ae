//! Attribute paths (RFC 7644 section 3.10): `[URN ":"] attr ["." subAttr]` as filters and
//! sorting use them, and PATCH paths, which may add a value filter and a sub-attribute
//! (`emails[type eq "work"].value`, `members[value eq "..."]`).

use serde_json::{Map, Value};

use super::filter::{self, Filter};

/// Why a path does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid path: {0}")]
pub struct PathError(pub String);

/// A path to an attribute or one of its sub-attributes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttrPath {
    /// The schema URN, when the path names one (`urn:...:User:userName`).
    pub uri: Option<String>,
    /// The attribute.
    pub name: String,
    /// The sub-attribute of a complex attribute.
    pub sub: Option<String>,
}

/// Prefix of the core schemas, whose attributes sit at the top of a resource.
const CORE_PREFIX: &str = "urn:ietf:params:scim:schemas:core:";

/// How many bytes at the start of `text` can belong to an attribute path.
pub fn attr_path_end(text: &str) -> usize {
    text.find(|c: char| !(c.is_ascii_alphanumeric() || "-_$.:".contains(c)))
        .unwrap_or(text.len())
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '$')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Parses `[URN ":"] attr ["." sub]`.
pub fn parse_attr_path(text: &str) -> Result<AttrPath, PathError> {
    let (uri, rest) = match text.rfind(':') {
        Some(colon) => (Some(text[..colon].to_owned()), &text[colon + 1..]),
        None => (None, text),
    };
    if uri
        .as_deref()
        .is_some_and(|u| !u.to_ascii_lowercase().starts_with("urn:"))
    {
        return Err(PathError(format!("`{text}` is not an attribute path")));
    }
    let mut parts = rest.split('.');
    let name = parts.next().unwrap_or_default();
    let sub = parts.next();
    if parts.next().is_some() || !valid_name(name) || sub.is_some_and(|s| !valid_name(s)) {
        return Err(PathError(format!("`{text}` is not an attribute path")));
    }
    Ok(AttrPath {
        uri,
        name: name.to_owned(),
        sub: sub.map(str::to_owned),
    })
}

/// The key of `object` equal to `name` ignoring case (attribute names are case-insensitive).
pub fn key_of<'m>(object: &'m Map<String, Value>, name: &str) -> Option<&'m String> {
    object.keys().find(|k| k.eq_ignore_ascii_case(name))
}

/// The value of attribute `name` of `value` (an object), ignoring case.
pub fn get<'v>(value: &'v Value, name: &str) -> Option<&'v Value> {
    let object = value.as_object()?;
    key_of(object, name).and_then(|k| object.get(k))
}

impl AttrPath {
    /// A path of one top-level attribute.
    pub fn simple(name: &str) -> Self {
        Self {
            uri: None,
            name: name.to_owned(),
            sub: None,
        }
    }

    /// Whether the URN (if any) names a core schema, whose attributes are top-level.
    pub fn is_core(&self) -> bool {
        self.uri
            .as_deref()
            .is_none_or(|u| u.to_ascii_lowercase().starts_with(CORE_PREFIX))
    }

    /// The object the attribute lives in: the resource, or its extension's object.
    pub fn container<'v>(&self, resource: &'v Value) -> Option<&'v Value> {
        match &self.uri {
            Some(uri) if !self.is_core() => get(resource, uri),
            _ => Some(resource),
        }
    }

    /// Every value the path reaches in `resource`, multi-valued attributes flattened.
    pub fn values<'v>(&self, resource: &'v Value) -> Vec<&'v Value> {
        let Some(top) = self.container(resource).and_then(|c| get(c, &self.name)) else {
            return Vec::new();
        };
        let elements: Vec<&Value> = match top {
            Value::Array(items) => items.iter().collect(),
            other => vec![other],
        };
        match &self.sub {
            None => elements,
            Some(sub) => elements
                .into_iter()
                .filter_map(|e| get(e, sub))
                .flat_map(|v| match v {
                    Value::Array(items) => items.iter().collect::<Vec<_>>(),
                    other => vec![other],
                })
                .collect(),
        }
    }

    /// The attribute's name with its sub-attribute, lowercased (`emails.value`).
    pub fn dotted_lower(&self) -> String {
        match &self.sub {
            Some(sub) => format!("{}.{}", self.name, sub).to_ascii_lowercase(),
            None => self.name.to_ascii_lowercase(),
        }
    }
}

/// A PATCH path: an attribute path, optionally with a value filter and then a
/// sub-attribute of the matching elements.
#[derive(Clone, Debug, PartialEq)]
pub struct PatchPath {
    /// The attribute (with its sub-attribute when there is no filter).
    pub attr: AttrPath,
    /// Which elements of a multi-valued attribute the operation targets.
    pub filter: Option<Filter>,
    /// The sub-attribute of the filtered elements (`emails[type eq "work"].value`).
    pub sub: Option<String>,
}

/// Parses a PATCH path.
pub fn parse_patch_path(text: &str) -> Result<PatchPath, PathError> {
    let text = text.trim();
    let Some(open) = text.find('[') else {
        return Ok(PatchPath {
            attr: parse_attr_path(text)?,
            filter: None,
            sub: None,
        });
    };
    let close = text
        .rfind(']')
        .filter(|close| *close > open)
        .ok_or_else(|| PathError("missing `]`".into()))?;
    let attr = parse_attr_path(&text[..open])?;
    if attr.sub.is_some() {
        return Err(PathError(
            "a value filter applies to an attribute, not a sub-attribute".into(),
        ));
    }
    let filter = filter::parse(&text[open + 1..close]).map_err(|e| PathError(e.0))?;
    let after = &text[close + 1..];
    let sub = match after.strip_prefix('.') {
        Some(sub) if valid_name(sub) => Some(sub.to_owned()),
        None if after.is_empty() => None,
        _ => return Err(PathError(format!("unexpected `{after}` after `]`"))),
    };
    Ok(PatchPath {
        attr,
        filter: Some(filter),
        sub,
    })
}
