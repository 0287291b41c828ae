//! Validation of a FHIR R4 `DocumentReference` — the SOAP note — and the search columns
//! drawn from it. Pure.
//!
//! The note is carried in `content[].attachment.data` (base64): one attachment for the
//! whole note, or one content entry per section (Subjective, Objective, Assessment, Plan)
//! with the section's name as `attachment.title`. Every `data` must be valid base64 (FHIR
//! `base64Binary`), have a `contentType` (FHIR invariant att-1) and match its `size` when
//! one is given. This server requires `subject` (a Patient of the same tenant) and resolves
//! every `context.encounter` in the tenant too; the first one is the `encounter` searched.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value};

use super::element::{self, Shape, instant, reference_id};
use super::error::FhirError;
use super::kind::{Column, LocalReference, ResourceKind, Validated};
use super::search::{ParamType, SearchParam, Sql};
use super::{encounter, patient};

/// The resource type served by this module.
pub const RESOURCE_TYPE: &str = "DocumentReference";

/// DocumentReference as the API serves it.
pub const KIND: ResourceKind = ResourceKind {
    resource_type: RESOURCE_TYPE,
    table: "document_references",
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
        Column {
            name: "document_date",
            sql_type: "timestamptz",
        },
    ],
    search: SEARCH,
    sorts: &[],
    identifiers: None,
    includes: patient::SUBJECT_INCLUDES,
    validate,
};

/// The search parameters of DocumentReference.
pub const SEARCH: &[SearchParam] = &[
    patient::SUBJECT_SEARCH,
    SearchParam {
        name: "encounter",
        kind: ParamType::Reference,
        documentation: "The first context.encounter: Encounter/<id> or <id>",
        sql: Sql::Id {
            column: "encounter_id",
            target: encounter::RESOURCE_TYPE,
        },
    },
    SearchParam {
        name: "date",
        kind: ParamType::Date,
        documentation: "When the reference was created (date, UTC days); prefixes eq, gt, lt, ge, le",
        sql: Sql::Instant("document_date"),
    },
];

const ELEMENTS: [(&str, Shape); 16] = [
    ("masterIdentifier", Shape::Object),
    ("identifier", Shape::Array),
    ("status", Shape::String),
    ("docStatus", Shape::String),
    ("type", Shape::Object),
    ("category", Shape::Array),
    ("subject", Shape::Object),
    ("date", Shape::String),
    ("author", Shape::Array),
    ("authenticator", Shape::Object),
    ("custodian", Shape::Object),
    ("relatesTo", Shape::Array),
    ("description", Shape::String),
    ("securityLabel", Shape::Array),
    ("content", Shape::Array),
    ("context", Shape::Object),
];

/// Checks `body` as a DocumentReference; returns it with its search columns and the
/// references to resolve.
pub fn validate(body: Value) -> Result<Validated, FhirError> {
    let resource = element::check(body, RESOURCE_TYPE, &ELEMENTS)?;
    let status = element::code(
        element::required(&resource, "status", "DocumentReference.status")?,
        "DocumentReference.status",
        &["current", "superseded", "entered-in-error"],
    )?
    .to_owned();
    if let Some(doc_status) = resource.get("docStatus") {
        element::code(
            doc_status,
            "DocumentReference.docStatus",
            &["preliminary", "final", "amended", "entered-in-error"],
        )?;
    }
    let subject = element::required(&resource, "subject", "DocumentReference.subject")?;
    let patient_id = reference_id(subject, "DocumentReference.subject", patient::RESOURCE_TYPE)?;
    let date = match resource.get("date") {
        None => None,
        Some(date) => Some(
            instant(element::string(date, "DocumentReference.date")?)
                .ok_or_else(|| {
                    FhirError::invalid(
                        "DocumentReference.date",
                        "DocumentReference.date must be a FHIR instant: \
                         YYYY-MM-DDThh:mm:ss[.sss] with a time zone (Z or +hh:mm)",
                    )
                })?
                .to_string(),
        ),
    };
    content(&resource)?;
    let mut references = vec![LocalReference::to(
        "DocumentReference.subject",
        &patient::KIND,
        patient_id.clone(),
    )];
    let encounters = encounters(&resource)?;
    let encounter_id = encounters.first().cloned();
    references.extend(encounters.into_iter().enumerate().map(|(i, id)| {
        LocalReference::to(
            format!("DocumentReference.context.encounter[{i}]"),
            &encounter::KIND,
            id,
        )
    }));
    Ok(Validated {
        resource,
        values: vec![Some(patient_id), encounter_id, Some(status), date],
        references,
        identifiers: Vec::new(),
    })
}

// Every content entry has an attachment; every attachment's data is base64 with a type.
fn content(resource: &Map<String, Value>) -> Result<(), FhirError> {
    let content = element::required(resource, "content", "DocumentReference.content")?;
    for (i, entry) in content.as_array().into_iter().flatten().enumerate() {
        let path = format!("DocumentReference.content[{i}].attachment");
        let Some(attachment) = entry.get("attachment") else {
            return Err(FhirError::invalid(
                &path,
                format!("{path} is required (cardinality 1..1 in FHIR R4)"),
            ));
        };
        element::check_shape(attachment, Shape::Object, &path)?;
        for name in ["contentType", "title", "url", "language"] {
            if let Some(value) = attachment.get(name) {
                element::string(value, &format!("{path}.{name}"))?;
            }
        }
        let Some(data) = attachment.get("data") else {
            continue;
        };
        let data_path = format!("{path}.data");
        let text = element::string(data, &data_path)?;
        let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
        let bytes = STANDARD.decode(compact.as_bytes()).map_err(|_| {
            FhirError::invalid(
                &data_path,
                format!("{data_path} is not valid base64 (FHIR base64Binary)"),
            )
        })?;
        if attachment.get("contentType").is_none() {
            return Err(FhirError::invalid(
                format!("{path}.contentType"),
                format!("{path}.contentType is required when data is given (att-1)"),
            ));
        }
        if let Some(size) = attachment.get("size")
            && size.as_u64() != Some(bytes.len() as u64)
        {
            return Err(FhirError::invalid(
                format!("{path}.size"),
                format!("{path}.size must be the number of bytes of data once decoded"),
            ));
        }
    }
    Ok(())
}

// The ids of context.encounter, in order.
fn encounters(resource: &Map<String, Value>) -> Result<Vec<String>, FhirError> {
    let Some(context) = resource.get("context") else {
        return Ok(Vec::new());
    };
    let Some(encounters) = context.get("encounter") else {
        return Ok(Vec::new());
    };
    element::check_shape(
        encounters,
        Shape::Array,
        "DocumentReference.context.encounter",
    )?;
    encounters
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(i, reference)| {
            reference_id(
                reference,
                &format!("DocumentReference.context.encounter[{i}]"),
                encounter::RESOURCE_TYPE,
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn note() -> Value {
        json!({
            "resourceType": "DocumentReference",
            "status": "current",
            "docStatus": "final",
            "subject": {"reference": "Patient/p1"},
            "date": "2024-05-01T10:00:00Z",
            "content": [
                {"attachment": {"contentType": "text/plain", "title": "Subjective",
                                "data": "Q2hlc3QgcGFpbg==", "size": 10}},
                {"attachment": {"contentType": "text/plain", "title": "Plan", "data": "UmVzdA=="}},
            ],
            "context": {"encounter": [{"reference": "Encounter/e1"}, {"reference": "Encounter/e2"}]},
        })
    }

    #[test]
    fn a_valid_note_yields_its_columns_and_every_reference() {
        let valid = validate(note()).expect("valid");
        assert_eq!(
            valid.values,
            [
                Some("p1".into()),
                Some("e1".into()),
                Some("current".into()),
                Some("2024-05-01T10:00:00Z".into()),
            ]
        );
        let paths: Vec<&str> = valid
            .references
            .iter()
            .map(|r| r.expression.as_str())
            .collect();
        assert_eq!(
            paths,
            [
                "DocumentReference.subject",
                "DocumentReference.context.encounter[0]",
                "DocumentReference.context.encounter[1]"
            ]
        );
    }

    #[test]
    fn errors_name_the_element() {
        let mut cases: Vec<(Value, &str)> = Vec::new();
        let mut bad = note();
        bad["content"][1]["attachment"]["data"] = json!("not base64!");
        cases.push((bad, "DocumentReference.content[1].attachment.data"));
        let mut bad = note();
        bad["content"][0]["attachment"]["size"] = json!(11);
        cases.push((bad, "DocumentReference.content[0].attachment.size"));
        let mut bad = note();
        bad["content"][0]["attachment"]
            .as_object_mut()
            .expect("o")
            .remove("contentType");
        cases.push((bad, "DocumentReference.content[0].attachment.contentType"));
        let mut bad = note();
        bad["content"][0] = json!({"format": {"code": "x"}});
        cases.push((bad, "DocumentReference.content[0].attachment"));
        let mut bad = note();
        bad["date"] = json!("2024-05-01");
        cases.push((bad, "DocumentReference.date"));
        let mut bad = note();
        bad["status"] = json!("draft");
        cases.push((bad, "DocumentReference.status"));
        let mut bad = note();
        bad["context"]["encounter"][1] = json!({"reference": "Patient/p1"});
        cases.push((bad, "DocumentReference.context.encounter[1].reference"));
        let mut bad = note();
        bad.as_object_mut().expect("o").remove("content");
        cases.push((bad, "DocumentReference.content"));
        let mut bad = note();
        bad["resourceType"] = json!("Encounter");
        cases.push((bad, "DocumentReference.resourceType"));
        for (body, path) in cases {
            match validate(body) {
                Err(FhirError::Invalid { expression, .. }) => assert_eq!(expression, path),
                other => panic!("{path}: expected an invalid element, got {other:?}"),
            }
        }
    }
}
