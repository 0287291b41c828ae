//! Validation of a FHIR R4 `Encounter` and the search columns drawn from it. Pure.
//!
//! Beyond FHIR's own rules this server requires `subject` (a Patient of the same tenant:
//! the store resolves it) and `period.start` (encounters are sorted, paged and counted by
//! it). For the analytics it extracts the **department**, from `serviceType` (its first
//! coding's code, else its text; a `location` would be a reference to a Location this
//! server does not serve), and the **provider**, the first participant whose `individual`
//! references a Practitioner (`Practitioner/<id>`), which the `practitioner` search matches.

use serde_json::{Map, Value};

use super::element::{self, Shape, date_time_bounds, reference_id};
use super::error::FhirError;
use super::kind::{Column, LocalReference, ResourceKind, SortParam, Validated};
use super::patient;
use super::search::{ParamType, SearchParam, Sql};

/// The resource type served by this module.
pub const RESOURCE_TYPE: &str = "Encounter";

/// Encounter as the API serves it.
pub const KIND: ResourceKind = ResourceKind {
    resource_type: RESOURCE_TYPE,
    table: "encounters",
    columns: &[
        Column {
            name: "patient_id",
            sql_type: "uuid",
        },
        Column {
            name: "status",
            sql_type: "text",
        },
        Column {
            name: "department",
            sql_type: "text",
        },
        Column {
            name: "provider",
            sql_type: "text",
        },
        Column {
            name: "period_start",
            sql_type: "timestamptz",
        },
        Column {
            name: "period_end",
            sql_type: "timestamptz",
        },
    ],
    search: SEARCH,
    sorts: &[SortParam {
        name: "date",
        column: "period_start",
    }],
    identifiers: None,
    includes: patient::SUBJECT_INCLUDES,
    validate,
};

/// The search parameters of Encounter.
pub const SEARCH: &[SearchParam] = &[
    patient::SUBJECT_SEARCH,
    SearchParam {
        name: "date",
        kind: ParamType::Date,
        documentation: "The period (UTC days; an open end is ongoing); prefixes eq, gt, lt, ge, le",
        sql: Sql::Period {
            start: "period_start",
            end: "period_end",
        },
    },
    SearchParam {
        name: "status",
        kind: ParamType::Token,
        documentation: "The status code (planned, in-progress, finished, ...)",
        sql: Sql::Code("status"),
    },
    SearchParam {
        name: "practitioner",
        kind: ParamType::Reference,
        documentation: "The provider: the first participant individual that is a Practitioner, \
                        Practitioner/<id> or <id>",
        sql: Sql::Reference {
            column: "provider",
            target: "Practitioner",
        },
    },
];

/// The codes of `Encounter.status` (required binding).
pub const STATUSES: [&str; 9] = [
    "planned",
    "arrived",
    "triaged",
    "in-progress",
    "onleave",
    "finished",
    "cancelled",
    "entered-in-error",
    "unknown",
];

const ELEMENTS: [(&str, Shape); 23] = [
    ("identifier", Shape::Array),
    ("status", Shape::String),
    ("statusHistory", Shape::Array),
    ("class", Shape::Object),
    ("classHistory", Shape::Array),
    ("type", Shape::Array),
    ("serviceType", Shape::Object),
    ("priority", Shape::Object),
    ("subject", Shape::Object),
    ("episodeOfCare", Shape::Array),
    ("basedOn", Shape::Array),
    ("participant", Shape::Array),
    ("appointment", Shape::Array),
    ("period", Shape::Object),
    ("length", Shape::Object),
    ("reasonCode", Shape::Array),
    ("reasonReference", Shape::Array),
    ("diagnosis", Shape::Array),
    ("account", Shape::Array),
    ("hospitalization", Shape::Object),
    ("location", Shape::Array),
    ("serviceProvider", Shape::Object),
    ("partOf", Shape::Object),
];

/// Checks `body` as an Encounter; returns it with its search columns and its subject.
pub fn validate(body: Value) -> Result<Validated, FhirError> {
    let resource = element::check(body, RESOURCE_TYPE, &ELEMENTS)?;
    let status = element::code(
        element::required(&resource, "status", "Encounter.status")?,
        "Encounter.status",
        &STATUSES,
    )?
    .to_owned();
    element::required(&resource, "class", "Encounter.class")?;
    let subject = element::required(&resource, "subject", "Encounter.subject")?;
    let patient_id = reference_id(subject, "Encounter.subject", patient::RESOURCE_TYPE)?;
    let (start, end) = period(&resource)?;
    let department = department(resource.get("serviceType"))?;
    let provider = provider(resource.get("participant"))?;
    let references = vec![LocalReference::to(
        "Encounter.subject",
        &patient::KIND,
        patient_id.clone(),
    )];
    Ok(Validated {
        resource,
        values: vec![
            Some(patient_id),
            Some(status),
            department,
            provider,
            Some(start),
            end,
        ],
        references,
        identifiers: Vec::new(),
    })
}

// The first and last instants of `period` (the end may be open).
fn period(resource: &Map<String, Value>) -> Result<(String, Option<String>), FhirError> {
    let period = element::required(resource, "period", "Encounter.period")?;
    let bound = |name: &str| -> Result<Option<(jiff::Timestamp, jiff::Timestamp)>, FhirError> {
        let path = format!("Encounter.period.{name}");
        match period.get(name) {
            None => Ok(None),
            Some(value) => date_time_bounds(element::string(value, &path)?)
                .map(Some)
                .ok_or_else(|| {
                    FhirError::invalid(
                        &path,
                        format!(
                            "{path} must be a FHIR dateTime: YYYY, YYYY-MM, YYYY-MM-DD or \
                             YYYY-MM-DDThh:mm:ss with a time zone"
                        ),
                    )
                }),
        }
    };
    let Some((start, _)) = bound("start")? else {
        return Err(FhirError::invalid(
            "Encounter.period.start",
            "Encounter.period.start is required by this server",
        ));
    };
    let end = bound("end")?.map(|(_, last)| last);
    if end.is_some_and(|end| end < start) {
        return Err(FhirError::invalid(
            "Encounter.period",
            "Encounter.period.end is before its start",
        ));
    }
    Ok((start.to_string(), end.map(|end| end.to_string())))
}

// The department: serviceType's first coding's code, else its text.
fn department(service_type: Option<&Value>) -> Result<Option<String>, FhirError> {
    let Some(service_type) = service_type else {
        return Ok(None);
    };
    let code = match service_type.get("coding") {
        None => None,
        Some(Value::Array(codings)) => match codings.first().and_then(|c| c.get("code")) {
            None => None,
            Some(code) => Some(element::string(code, "Encounter.serviceType.coding.code")?),
        },
        Some(_) => {
            return Err(FhirError::invalid(
                "Encounter.serviceType.coding",
                "Encounter.serviceType.coding must be an array of objects",
            ));
        }
    };
    let text = match service_type.get("text") {
        None => None,
        Some(text) => Some(element::string(text, "Encounter.serviceType.text")?),
    };
    Ok(code.or(text).map(str::to_owned))
}

// The provider: the first participant individual referencing a Practitioner.
fn provider(participants: Option<&Value>) -> Result<Option<String>, FhirError> {
    let mut provider = None;
    for participant in participants.and_then(Value::as_array).into_iter().flatten() {
        let Some(individual) = participant.get("individual") else {
            continue;
        };
        let path = "Encounter.participant.individual";
        element::check_shape(individual, Shape::Object, path)?;
        let Some(reference) = individual.get("reference") else {
            continue;
        };
        let reference = element::string(reference, &format!("{path}.reference"))?;
        if provider.is_none()
            && reference
                .strip_prefix("Practitioner/")
                .is_some_and(|id| !id.is_empty() && !id.contains('/'))
        {
            provider = Some(reference.to_owned());
        }
    }
    Ok(provider)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn encounter() -> Value {
        json!({
            "resourceType": "Encounter",
            "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "serviceType": {"coding": [{"code": "cardiology"}], "text": "Cardiology"},
            "subject": {"reference": "Patient/p1"},
            "participant": [
                {"individual": {"reference": "RelatedPerson/r"}},
                {"individual": {"reference": "Practitioner/dr-who"}},
                {"individual": {"reference": "Practitioner/dr-no"}},
            ],
            "period": {"start": "2024-05-01T09:00:00+02:00", "end": "2024-05-01"},
        })
    }

    #[test]
    fn a_valid_encounter_yields_its_columns_and_subject() {
        let valid = validate(encounter()).expect("valid");
        assert_eq!(
            valid.values,
            [
                Some("p1".into()),
                Some("finished".into()),
                Some("cardiology".into()),
                Some("Practitioner/dr-who".into()),
                Some("2024-05-01T07:00:00Z".into()),
                Some("2024-05-01T23:59:59.999999Z".into()),
            ]
        );
        assert_eq!(valid.references[0].expression, "Encounter.subject");
        assert_eq!(valid.references[0].table, "patients");
    }

    #[test]
    fn errors_name_the_element() {
        let cases: [(&str, Value, &str); 10] = [
            ("resourceType", json!("Patient"), "Encounter.resourceType"),
            ("status", json!("done"), "Encounter.status"),
            ("class", Value::Null, "Encounter.class"),
            (
                "subject",
                json!({"reference": "Group/g"}),
                "Encounter.subject.reference",
            ),
            (
                "subject",
                json!({"display": "x"}),
                "Encounter.subject.reference",
            ),
            (
                "period",
                json!({"start": "2024-13-01"}),
                "Encounter.period.start",
            ),
            (
                "period",
                json!({"end": "2024-05-01"}),
                "Encounter.period.start",
            ),
            (
                "period",
                json!({"start": "2024-05-02", "end": "2024-05-01"}),
                "Encounter.period",
            ),
            (
                "serviceType",
                json!({"coding": [{"code": 1}]}),
                "Encounter.serviceType.coding.code",
            ),
            ("location", json!("ward 3"), "Encounter.location"),
        ];
        for (name, value, path) in cases {
            let mut body = encounter();
            if value.is_null() {
                body.as_object_mut().expect("object").remove(name);
            } else {
                body[name] = value;
            }
            match validate(body) {
                Err(FhirError::Invalid { expression, .. }) => {
                    assert_eq!(expression, path, "{name}")
                }
                other => panic!("{name}: expected an invalid element, got {other:?}"),
            }
        }
    }
}
