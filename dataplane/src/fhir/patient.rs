//! Validation of a FHIR R4 `Patient` and the search columns drawn from it. Pure.
//!
//! The elements of Patient (and of every resource) are known; an unknown element is refused
//! (400) rather than silently dropped, so that a client's typo never loses data. The
//! elements the server searches on or relies on are checked by type and value; the others
//! are checked for shape (array or object) and for what FHIR JSON forbids everywhere (null,
//! empty strings, arrays or objects). Every refusal names the element as a FHIRPath.

use serde_json::{Map, Value};

use super::date::date_range;
use super::error::FhirError;

/// The resource type served by this module.
pub const RESOURCE_TYPE: &str = "Patient";

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

/// Patient's own elements, with the JSON shape each must have.
const PATIENT_ELEMENTS: [(&str, Shape); 18] = [
    ("identifier", Shape::Array),
    ("active", Shape::Boolean),
    ("name", Shape::Array),
    ("telecom", Shape::Array),
    ("gender", Shape::String),
    ("birthDate", Shape::String),
    ("deceasedBoolean", Shape::Boolean),
    ("deceasedDateTime", Shape::String),
    ("address", Shape::Array),
    ("maritalStatus", Shape::Object),
    ("multipleBirthBoolean", Shape::Boolean),
    ("multipleBirthInteger", Shape::Integer),
    ("photo", Shape::Array),
    ("contact", Shape::Array),
    ("communication", Shape::Array),
    ("generalPractitioner", Shape::Array),
    ("managingOrganization", Shape::Object),
    ("link", Shape::Array),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    Array,
    Object,
    String,
    Boolean,
    Integer,
}

/// The search columns of a Patient.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PatientColumns {
    /// Family name of the first HumanName.
    pub family: Option<String>,
    /// Given names of the first HumanName, space-separated.
    pub given: Option<String>,
    /// The first day `birthDate` covers (`YYYY-MM-DD`), for range searches.
    pub birth_date: Option<String>,
}

/// Checks `body` as a Patient; returns it as an object and its search columns.
pub fn validate(body: Value) -> Result<(Map<String, Value>, PatientColumns), FhirError> {
    let Value::Object(resource) = body else {
        return Err(FhirError::NotJson("expected a JSON object".into()));
    };
    match resource.get("resourceType") {
        Some(Value::String(t)) if t == RESOURCE_TYPE => {}
        _ => {
            return Err(FhirError::invalid(
                "Patient.resourceType",
                "resourceType must be \"Patient\" on this endpoint",
            ));
        }
    }
    for (name, value) in &resource {
        let path = format!("Patient.{}", name.trim_start_matches('_'));
        no_empty_values(value, &path)?;
        let base = name.strip_prefix('_').unwrap_or(name);
        let shape = PATIENT_ELEMENTS
            .iter()
            .find(|(n, _)| *n == base)
            .map(|(_, s)| *s);
        if name.starts_with('_') {
            // A primitive's id/extension sibling (`_birthDate`): only beside known primitives.
            if !matches!(shape, Some(Shape::String | Shape::Boolean | Shape::Integer)) {
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
    if resource.contains_key("deceasedBoolean") && resource.contains_key("deceasedDateTime") {
        return Err(FhirError::invalid(
            "Patient.deceased[x]",
            "give deceasedBoolean or deceasedDateTime, not both",
        ));
    }
    if let Some(Value::String(gender)) = resource.get("gender")
        && !["male", "female", "other", "unknown"].contains(&gender.as_str())
    {
        return Err(FhirError::invalid(
            "Patient.gender",
            "gender must be one of male, female, other, unknown",
        ));
    }
    let birth_date = match resource.get("birthDate") {
        Some(Value::String(date)) => match date_range(date) {
            Some((first, _)) => Some(first.to_string()),
            None => {
                return Err(FhirError::invalid(
                    "Patient.birthDate",
                    "birthDate must be a date: YYYY, YYYY-MM or YYYY-MM-DD",
                ));
            }
        },
        _ => None,
    };
    check_identifiers(resource.get("identifier"))?;
    let (family, given) = names(resource.get("name"))?;
    Ok((
        resource,
        PatientColumns {
            family,
            given,
            birth_date,
        },
    ))
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

fn unknown(path: &str) -> FhirError {
    FhirError::invalid(
        path,
        format!("{path} is not an element of a FHIR R4 Patient"),
    )
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

/// Whether `id` is a FHIR id (`[A-Za-z0-9\-\.]{1,64}`).
pub fn is_fhir_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

fn check_shape(value: &Value, shape: Shape, path: &str) -> Result<(), FhirError> {
    let ok = match shape {
        Shape::Array => value
            .as_array()
            .is_some_and(|items| items.iter().all(Value::is_object)),
        Shape::Object => value.is_object(),
        Shape::String => value.is_string(),
        Shape::Boolean => value.is_boolean(),
        Shape::Integer => value.is_i64(),
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

fn check_identifiers(identifiers: Option<&Value>) -> Result<(), FhirError> {
    for identifier in identifiers.and_then(Value::as_array).into_iter().flatten() {
        for element in ["system", "value"] {
            if identifier.get(element).is_some_and(|v| !v.is_string()) {
                return Err(FhirError::invalid(
                    format!("Patient.identifier.{element}"),
                    format!("Patient.identifier.{element} must be a string"),
                ));
            }
        }
    }
    Ok(())
}

// The family and given names of the first HumanName.
fn names(names: Option<&Value>) -> Result<(Option<String>, Option<String>), FhirError> {
    let mut first = None;
    for name in names.and_then(Value::as_array).into_iter().flatten() {
        if name.get("family").is_some_and(|f| !f.is_string()) {
            return Err(FhirError::invalid(
                "Patient.name.family",
                "Patient.name.family must be a string",
            ));
        }
        let given = match name.get("given") {
            None => Vec::new(),
            Some(Value::Array(given)) if given.iter().all(Value::is_string) => {
                given.iter().filter_map(Value::as_str).collect()
            }
            Some(_) => {
                return Err(FhirError::invalid(
                    "Patient.name.given",
                    "Patient.name.given must be an array of strings",
                ));
            }
        };
        if first.is_none() {
            let family = name
                .get("family")
                .and_then(Value::as_str)
                .map(str::to_owned);
            let given = (!given.is_empty()).then(|| given.join(" "));
            first = Some((family, given));
        }
    }
    Ok(first.unwrap_or_default())
}

#[cfg(test)]
#[path = "patient_tests.rs"]
mod tests;
