//! What every resource's validation shares. Pure.
//!
//! The elements of every served resource are known; an unknown element is refused (400)
//! rather than silently dropped, so that a client's typo never loses data. The elements the
//! server searches on or relies on are checked by each resource's module, by type and
//! value; the others are checked here for shape (array, object, primitive) and for what
//! FHIR JSON forbids everywhere (null, empty strings, arrays or objects). Every refusal names
//! the element as a FHIRPath.

use jiff::Timestamp;
use serde_json::{Map, Value};

use super::date::date_range;
use super::error::FhirError;

/// Elements every resource may carry (Resource and DomainResource).
const RESOURCE_ELEMENTS: [&str; 9] = [
    "resourceType",
    "id",
    "meta",
    "implicitRules",
    "language",
    "text",
    "contained",
    "extension",
    "modifierExtension",
];

/// The JSON shape an element must have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// An array of objects (a repeating complex element).
    Array,
    /// An object (a complex element).
    Object,
    /// A string primitive (string, code, date, dateTime, instant, ...).
    String,
    /// A boolean primitive.
    Boolean,
    /// An integer primitive.
    Integer,
    /// An array of string primitives (`instantiatesCanonical`).
    Strings,
}

/// Checks `body` as a `resource_type` whose own elements are `elements`: a JSON object of
/// that type, with no unknown, empty or wrongly shaped element. Returns it as an object.
pub fn check(
    body: Value,
    resource_type: &str,
    elements: &[(&str, Shape)],
) -> Result<Map<String, Value>, FhirError> {
    let Value::Object(resource) = body else {
        return Err(FhirError::NotJson("expected a JSON object".into()));
    };
    match resource.get("resourceType") {
        Some(Value::String(t)) if t == resource_type => {}
        _ => {
            return Err(FhirError::invalid(
                format!("{resource_type}.resourceType"),
                format!("resourceType must be \"{resource_type}\" on this endpoint"),
            ));
        }
    }
    let unknown = |path: &str| {
        FhirError::invalid(
            path,
            format!("{path} is not an element of a FHIR R4 {resource_type}"),
        )
    };
    for (name, value) in &resource {
        let path = format!("{resource_type}.{}", name.trim_start_matches('_'));
        no_empty_values(value, &path)?;
        let base = name.strip_prefix('_').unwrap_or(name);
        let shape = elements.iter().find(|(n, _)| *n == base).map(|(_, s)| *s);
        if name.starts_with('_') {
            // A primitive's id/extension sibling (`_birthDate`): only beside known primitives.
            if !matches!(
                shape,
                Some(Shape::String | Shape::Boolean | Shape::Integer | Shape::Strings)
            ) {
                return Err(unknown(&path));
            }
            continue;
        }
        match shape {
            Some(shape) => check_shape(value, shape, &path)?,
            None if RESOURCE_ELEMENTS.contains(&name.as_str()) => {
                check_resource_element(name, value, &path)?
            }
            None => return Err(unknown(&path)),
        }
    }
    Ok(resource)
}

/// Sets the server-owned elements: `id` and `meta.versionId` / `meta.lastUpdated` (the
/// other elements of a client's `meta`, such as tags, are kept).
pub fn stamp(resource: &mut Map<String, Value>, id: &str, version: i32, last_updated: &str) {
    resource.insert("id".into(), Value::String(id.to_owned()));
    let mut meta = match resource.remove("meta") {
        Some(Value::Object(meta)) => meta,
        _ => Map::new(),
    };
    meta.insert("versionId".into(), Value::String(version.to_string()));
    meta.insert("lastUpdated".into(), Value::String(last_updated.to_owned()));
    resource.insert("meta".into(), Value::Object(meta));
}

/// Whether `id` is a FHIR id (`[A-Za-z0-9\-\.]{1,64}`).
pub fn is_fhir_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// The string at `path` if `value` is one, else an error naming it.
pub fn string<'a>(value: &'a Value, path: &str) -> Result<&'a str, FhirError> {
    value
        .as_str()
        .ok_or_else(|| FhirError::invalid(path, format!("{path} must be a string")))
}

/// A required element: present, or an error naming it.
pub fn required<'a>(
    resource: &'a Map<String, Value>,
    name: &str,
    path: &str,
) -> Result<&'a Value, FhirError> {
    resource.get(name).ok_or_else(|| {
        FhirError::invalid(
            path,
            format!("{path} is required (cardinality 1..1 in FHIR R4)"),
        )
    })
}

/// A code that must be one of `codes`.
pub fn code<'a>(value: &'a Value, path: &str, codes: &[&str]) -> Result<&'a str, FhirError> {
    let code = string(value, path)?;
    if codes.contains(&code) {
        Ok(code)
    } else {
        Err(FhirError::invalid(
            path,
            format!("{path} must be one of {}", codes.join(", ")),
        ))
    }
}

/// The id of a `Reference` at `path` that must point at a `target` (`{"reference":
/// "Patient/<id>"}`, relative to this server). The id is returned as written: whether it
/// exists (in this tenant) is for the store to decide.
pub fn reference_id(value: &Value, path: &str, target: &str) -> Result<String, FhirError> {
    let reference = reference_text(value, path)?;
    match reference.split_once('/') {
        Some((kind, id)) if kind == target && !id.is_empty() && !id.contains('/') => {
            Ok(id.to_owned())
        }
        _ => Err(FhirError::invalid(
            format!("{path}.reference"),
            format!("{path} must reference a {target} of this server as \"{target}/<id>\""),
        )),
    }
}

/// The `reference` string of a `Reference` at `path`.
pub fn reference_text<'a>(value: &'a Value, path: &str) -> Result<&'a str, FhirError> {
    let expression = format!("{path}.reference");
    match value.get("reference") {
        Some(reference) => string(reference, &expression),
        None => Err(FhirError::invalid(
            expression,
            format!("{path} must carry a literal reference (reference)"),
        )),
    }
}

/// The instants a FHIR `dateTime` covers, first and last (inclusive): a partial date
/// (`YYYY`, `YYYY-MM`, `YYYY-MM-DD`) covers its days in UTC; a full date-time (with its
/// time zone, as FHIR requires once a time is given) is one instant.
pub fn date_time_bounds(text: &str) -> Option<(Timestamp, Timestamp)> {
    if text.contains('T') {
        let instant = instant(text)?;
        return Some((instant, instant));
    }
    let (first, next) = date_range(text)?;
    let first = first.to_zoned(jiff::tz::TimeZone::UTC).ok()?.timestamp();
    let next = next.to_zoned(jiff::tz::TimeZone::UTC).ok()?.timestamp();
    Some((
        first,
        next.checked_sub(jiff::SignedDuration::from_micros(1))
            .ok()?,
    ))
}

/// A FHIR `instant` (`YYYY-MM-DDThh:mm:ss[.fff](Z|±hh:mm)`), else `None`.
pub fn instant(text: &str) -> Option<Timestamp> {
    // jiff also accepts forms FHIR does not (a space for T, no seconds); FHIR's own shape
    // is checked first.
    let bytes = text.as_bytes();
    let shaped = bytes.len() >= 20
        && bytes.get(10) == Some(&b'T')
        && bytes.get(13) == Some(&b':')
        && bytes.get(16) == Some(&b':')
        && (text.ends_with('Z') || matches!(bytes.get(bytes.len() - 6), Some(b'+' | b'-')));
    if !shaped || date_range(&text[..10]).is_none() {
        return None;
    }
    text.parse().ok()
}

fn check_resource_element(name: &str, value: &Value, path: &str) -> Result<(), FhirError> {
    let shape = match name {
        "id" | "implicitRules" | "language" => Shape::String,
        "meta" | "text" => Shape::Object,
        "contained" | "extension" | "modifierExtension" => Shape::Array,
        _ => return Ok(()), // resourceType, checked above
    };
    check_shape(value, shape, path)?;
    if name == "id" && !is_fhir_id(value.as_str().unwrap_or_default()) {
        return Err(FhirError::invalid(
            path,
            "id must be 1-64 of A-Z a-z 0-9 - .",
        ));
    }
    Ok(())
}

/// Fails unless `value` has `shape`, naming `path`.
pub fn check_shape(value: &Value, shape: Shape, path: &str) -> Result<(), FhirError> {
    let ok = match shape {
        Shape::Array => value
            .as_array()
            .is_some_and(|items| items.iter().all(Value::is_object)),
        Shape::Object => value.is_object(),
        Shape::String => value.is_string(),
        Shape::Boolean => value.is_boolean(),
        Shape::Integer => value.is_i64(),
        Shape::Strings => value
            .as_array()
            .is_some_and(|items| items.iter().all(Value::is_string)),
    };
    if ok {
        return Ok(());
    }
    let expected = match shape {
        Shape::Array => "an array of objects",
        Shape::Object => "an object",
        Shape::String => "a string",
        Shape::Boolean => "true or false",
        Shape::Integer => "an integer",
        Shape::Strings => "an array of strings",
    };
    Err(FhirError::invalid(
        path,
        format!("{path} must be {expected}"),
    ))
}

// FHIR JSON has no nulls (outside arrays of primitives' extensions), no empty strings, no
// empty arrays or objects.
fn no_empty_values(value: &Value, path: &str) -> Result<(), FhirError> {
    let empty = match value {
        Value::Null => true,
        Value::String(s) => s.trim().is_empty(),
        Value::Array(items) => items.is_empty(),
        Value::Object(map) => map.is_empty(),
        Value::Bool(_) | Value::Number(_) => false,
    };
    if empty {
        return Err(FhirError::invalid(
            path,
            format!("{path} is empty or null; leave the element out instead"),
        ));
    }
    match value {
        Value::Array(items) => items.iter().try_for_each(|v| no_empty_values(v, path)),
        Value::Object(map) => map.iter().try_for_each(|(k, v)| {
            no_empty_values(v, &format!("{path}.{}", k.trim_start_matches('_')))
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_times_cover_their_precision() {
        let (first, last) = date_time_bounds("2024-05").expect("a month");
        assert_eq!(first.to_string(), "2024-05-01T00:00:00Z");
        assert_eq!(last.to_string(), "2024-05-31T23:59:59.999999Z");
        let (first, last) = date_time_bounds("2024-05-01T10:30:00+02:00").expect("instant");
        assert_eq!(
            (first, first.to_string()),
            (last, "2024-05-01T08:30:00Z".into())
        );
        for bad in [
            "2024-05-01T10:30:00",
            "2024-05-01 10:30:00Z",
            "2024-02-30T10:00:00Z",
            "2024-13",
            "yesterday",
            "2024-05-01T25:00:00Z",
        ] {
            assert!(date_time_bounds(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn references_must_name_the_target_type() {
        let ok = serde_json::json!({"reference": "Patient/abc"});
        assert_eq!(
            reference_id(&ok, "E.subject", "Patient").ok().as_deref(),
            Some("abc")
        );
        for bad in [
            serde_json::json!({"reference": "Group/abc"}),
            serde_json::json!({"reference": "Patient/"}),
            serde_json::json!({"reference": "https://x/fhir/Patient/a/b"}),
            serde_json::json!({"display": "Peter"}),
            serde_json::json!({"reference": 1}),
        ] {
            assert!(
                matches!(reference_id(&bad, "E.subject", "Patient"),
                    Err(FhirError::Invalid { expression, .. }) if expression == "E.subject.reference"),
                "{bad}"
            );
        }
    }
}
