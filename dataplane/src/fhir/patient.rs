//! Validation of a FHIR R4 `Patient` and the search columns drawn from it. Pure.

use serde_json::{Map, Value};

use super::date::date_range;
use super::element::{self, Shape};
use super::error::FhirError;
use super::kind::{Column, Identifier, IdentifierTable, IncludeParam, ResourceKind, Validated};
use super::search::{ParamType, SearchParam, Sql};

/// The resource type served by this module.
pub const RESOURCE_TYPE: &str = "Patient";

/// `_include` of the patient a clinical resource is about (`X:patient` and `X:subject`),
/// for every kind whose `patient_id` column holds it.
pub const SUBJECT_INCLUDES: &[IncludeParam] = &[
    IncludeParam {
        name: "patient",
        column: "patient_id",
        target: &KIND,
    },
    IncludeParam {
        name: "subject",
        column: "patient_id",
        target: &KIND,
    },
];

/// The `patient` search parameter of every kind whose `patient_id` column holds its subject.
pub const SUBJECT_SEARCH: SearchParam = SearchParam {
    name: "patient",
    kind: ParamType::Reference,
    documentation: "The patient (subject): Patient/<id> or <id>",
    sql: Sql::Id {
        column: "patient_id",
        target: RESOURCE_TYPE,
    },
};

/// Patient as the API serves it.
pub const KIND: ResourceKind = ResourceKind {
    resource_type: RESOURCE_TYPE,
    table: "patients",
    columns: &[
        Column {
            name: "family_name",
            sql_type: "text",
        },
        Column {
            name: "given_name",
            sql_type: "text",
        },
        Column {
            name: "birth_date",
            sql_type: "date",
        },
    ],
    search: SEARCH,
    sorts: &[],
    includes: &[],
    identifiers: Some(IDENTIFIERS),
    validate,
};

/// Where Patient's identifiers are indexed for `identifier` search (migration 0014).
pub const IDENTIFIERS: IdentifierTable = IdentifierTable {
    table: "patient_identifiers",
    owner: "patient_id",
};

/// The search parameters of Patient.
pub const SEARCH: &[SearchParam] = &[
    SearchParam {
        name: "identifier",
        kind: ParamType::Token,
        documentation: "A patient identifier: value, system|value, |value or system|",
        sql: Sql::Identifier(IDENTIFIERS),
    },
    SearchParam {
        name: "name",
        kind: ParamType::String,
        documentation: "Start of the family or of a given name of the first HumanName, any case",
        sql: Sql::AnyName,
    },
    SearchParam {
        name: "family",
        kind: ParamType::String,
        documentation: "Start of the family name of the first HumanName, any case",
        sql: Sql::FamilyName,
    },
    SearchParam {
        name: "birthdate",
        kind: ParamType::Date,
        documentation: "The date of birth; prefixes eq, gt, lt, ge, le",
        sql: Sql::Day("birth_date"),
    },
];

/// Patient's own elements, with the JSON shape each must have.
const ELEMENTS: [(&str, Shape); 18] = [
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

/// Checks `body` as a Patient; returns it with its search columns.
pub fn validate(body: Value) -> Result<Validated, FhirError> {
    let (resource, columns) = validate_patient(body)?;
    let identifiers = identifiers(resource.get("identifier"));
    Ok(Validated {
        resource,
        values: vec![columns.family, columns.given, columns.birth_date],
        references: Vec::new(),
        identifiers,
    })
}

/// Checks `body` as a Patient; returns it as an object and its search columns.
pub fn validate_patient(body: Value) -> Result<(Map<String, Value>, PatientColumns), FhirError> {
    let resource = element::check(body, RESOURCE_TYPE, &ELEMENTS)?;
    if resource.contains_key("deceasedBoolean") && resource.contains_key("deceasedDateTime") {
        return Err(FhirError::invalid(
            "Patient.deceased[x]",
            "give deceasedBoolean or deceasedDateTime, not both",
        ));
    }
    if let Some(gender) = resource.get("gender") {
        element::code(
            gender,
            "Patient.gender",
            &["male", "female", "other", "unknown"],
        )?;
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

/// The identifiers of a checked Patient's `identifier` with a system or a value, each with
/// its index in the array (the backfill of migration 0014 follows the same rule).
pub fn identifiers(identifiers: Option<&Value>) -> Vec<Identifier> {
    let text = |identifier: &Value, element: &str| {
        identifier
            .get(element)
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    identifiers
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
        .filter_map(|(position, identifier)| {
            let (system, value) = (text(identifier, "system"), text(identifier, "value"));
            (system.is_some() || value.is_some()).then(|| Identifier {
                position: i32::try_from(position).unwrap_or(i32::MAX),
                system,
                value,
            })
        })
        .collect()
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
