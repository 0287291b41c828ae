//! Validation of a FHIR R4 `MedicationRequest` (the medication context of a note) and the
//! search columns drawn from it. Pure. This server requires `subject` to be a Patient of
//! the same tenant, and resolves `encounter` in the tenant when given.

use serde_json::Value;

use super::element::{self, Shape, date_time_bounds, reference_id};
use super::error::FhirError;
use super::kind::{Column, LocalReference, ResourceKind, Validated};
use super::search::{ParamType, SearchParam, Sql};
use super::{encounter, patient};

/// The resource type served by this module.
pub const RESOURCE_TYPE: &str = "MedicationRequest";

/// MedicationRequest as the API serves it.
pub const KIND: ResourceKind = ResourceKind {
    resource_type: RESOURCE_TYPE,
    table: "medication_requests",
    columns: &[
        Column {
            name: "patient_id",
            sql_type: "uuid",
        },
        Column {
            name: "encounter_id",
            sql_type: "uuid",
        },
        Column {
            name: "status",
            sql_type: "text",
        },
    ],
    search: SEARCH,
    sorts: &[],
    identifiers: None,
    includes: patient::SUBJECT_INCLUDES,
    validate,
};

/// The search parameters of MedicationRequest.
pub const SEARCH: &[SearchParam] = &[
    patient::SUBJECT_SEARCH,
    SearchParam {
        name: "status",
        kind: ParamType::Token,
        documentation: "The status code (active, completed, stopped, ...)",
        sql: Sql::Code("status"),
    },
    SearchParam {
        name: "encounter",
        kind: ParamType::Reference,
        documentation: "The encounter: Encounter/<id> or <id>",
        sql: Sql::Id {
            column: "encounter_id",
            target: encounter::RESOURCE_TYPE,
        },
    },
];

const ELEMENTS: [(&str, Shape); 34] = [
    ("identifier", Shape::Array),
    ("status", Shape::String),
    ("statusReason", Shape::Object),
    ("intent", Shape::String),
    ("category", Shape::Array),
    ("priority", Shape::String),
    ("doNotPerform", Shape::Boolean),
    ("reportedBoolean", Shape::Boolean),
    ("reportedReference", Shape::Object),
    ("medicationCodeableConcept", Shape::Object),
    ("medicationReference", Shape::Object),
    ("subject", Shape::Object),
    ("encounter", Shape::Object),
    ("supportingInformation", Shape::Array),
    ("authoredOn", Shape::String),
    ("requester", Shape::Object),
    ("performer", Shape::Object),
    ("performerType", Shape::Object),
    ("recorder", Shape::Object),
    ("reasonCode", Shape::Array),
    ("reasonReference", Shape::Array),
    ("instantiatesCanonical", Shape::Strings),
    ("instantiatesUri", Shape::Strings),
    ("basedOn", Shape::Array),
    ("groupIdentifier", Shape::Object),
    ("courseOfTherapyType", Shape::Object),
    ("insurance", Shape::Array),
    ("note", Shape::Array),
    ("dosageInstruction", Shape::Array),
    ("dispenseRequest", Shape::Object),
    ("substitution", Shape::Object),
    ("priorPrescription", Shape::Object),
    ("detectedIssue", Shape::Array),
    ("eventHistory", Shape::Array),
];

/// The codes of `MedicationRequest.status` (required binding).
pub const STATUSES: [&str; 8] = [
    "active",
    "on-hold",
    "cancelled",
    "completed",
    "entered-in-error",
    "stopped",
    "draft",
    "unknown",
];

const INTENTS: [&str; 8] = [
    "proposal",
    "plan",
    "order",
    "original-order",
    "reflex-order",
    "filler-order",
    "instance-order",
    "option",
];

/// Checks `body` as a MedicationRequest; returns it with its search columns and the
/// references to resolve.
pub fn validate(body: Value) -> Result<Validated, FhirError> {
    let resource = element::check(body, RESOURCE_TYPE, &ELEMENTS)?;
    let status = element::code(
        element::required(&resource, "status", "MedicationRequest.status")?,
        "MedicationRequest.status",
        &STATUSES,
    )?
    .to_owned();
    element::code(
        element::required(&resource, "intent", "MedicationRequest.intent")?,
        "MedicationRequest.intent",
        &INTENTS,
    )?;
    if let Some(priority) = resource.get("priority") {
        element::code(
            priority,
            "MedicationRequest.priority",
            &["routine", "urgent", "asap", "stat"],
        )?;
    }
    match (
        resource.contains_key("medicationCodeableConcept"),
        resource.contains_key("medicationReference"),
    ) {
        (true, false) | (false, true) => {}
        _ => {
            return Err(FhirError::invalid(
                "MedicationRequest.medication[x]",
                "give exactly one of medicationCodeableConcept or medicationReference",
            ));
        }
    }
    if resource.contains_key("reportedBoolean") && resource.contains_key("reportedReference") {
        return Err(FhirError::invalid(
            "MedicationRequest.reported[x]",
            "give reportedBoolean or reportedReference, not both",
        ));
    }
    if let Some(authored) = resource.get("authoredOn")
        && date_time_bounds(element::string(authored, "MedicationRequest.authoredOn")?).is_none()
    {
        return Err(FhirError::invalid(
            "MedicationRequest.authoredOn",
            "MedicationRequest.authoredOn must be a FHIR dateTime",
        ));
    }
    let subject = element::required(&resource, "subject", "MedicationRequest.subject")?;
    let patient_id = reference_id(subject, "MedicationRequest.subject", patient::RESOURCE_TYPE)?;
    let mut references = vec![LocalReference::to(
        "MedicationRequest.subject",
        &patient::KIND,
        patient_id.clone(),
    )];
    let encounter_id = match resource.get("encounter") {
        None => None,
        Some(reference) => {
            let id = reference_id(
                reference,
                "MedicationRequest.encounter",
                encounter::RESOURCE_TYPE,
            )?;
            references.push(LocalReference::to(
                "MedicationRequest.encounter",
                &encounter::KIND,
                id.clone(),
            ));
            Some(id)
        }
    };
    Ok(Validated {
        resource,
        values: vec![Some(patient_id), encounter_id, Some(status)],
        references,
        identifiers: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn request() -> Value {
        json!({
            "resourceType": "MedicationRequest",
            "status": "active",
            "intent": "order",
            "medicationCodeableConcept": {"text": "Amoxicillin 500 mg"},
            "subject": {"reference": "Patient/p1"},
            "encounter": {"reference": "Encounter/e1"},
            "authoredOn": "2024-05-01",
            "instantiatesCanonical": ["http://example.org/protocol"],
        })
    }

    #[test]
    fn a_valid_request_yields_its_columns_and_references() {
        let valid = validate(request()).expect("valid");
        assert_eq!(
            valid.values,
            [Some("p1".into()), Some("e1".into()), Some("active".into())]
        );
        assert_eq!(valid.references.len(), 2);
        assert_eq!(
            valid.references[1].expression,
            "MedicationRequest.encounter"
        );
    }

    #[test]
    fn errors_name_the_element() {
        let cases: [(&str, Value, &str); 7] = [
            ("status", json!("ordered"), "MedicationRequest.status"),
            ("intent", Value::Null, "MedicationRequest.intent"),
            (
                "medicationReference",
                json!({"reference": "Medication/m"}),
                "MedicationRequest.medication[x]",
            ),
            (
                "encounter",
                json!({"reference": "Encounter"}),
                "MedicationRequest.encounter.reference",
            ),
            (
                "authoredOn",
                json!("2024-05-01T10:00"),
                "MedicationRequest.authoredOn",
            ),
            (
                "instantiatesCanonical",
                json!([{"a": 1}]),
                "MedicationRequest.instantiatesCanonical",
            ),
            (
                "reportedString",
                json!("yes"),
                "MedicationRequest.reportedString",
            ),
        ];
        for (name, value, path) in cases {
            let mut body = request();
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
