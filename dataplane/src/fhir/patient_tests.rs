use serde_json::json;

use super::*;
use crate::fhir::element::stamp;

fn expression(body: Value) -> String {
    match validate_patient(body) {
        Err(FhirError::Invalid { expression, .. }) => expression,
        other => panic!("expected an invalid element, got {other:?}"),
    }
}

#[test]
fn a_valid_patient_yields_its_search_columns() {
    let (_, columns) = validate_patient(json!({
        "resourceType": "Patient",
        "identifier": [{"system": "urn:mrn", "value": "1"}],
        "name": [{"family": "Chalmers", "given": ["Peter", "James"]}, {"family": "Other"}],
        "gender": "male",
        "birthDate": "1974-12",
        "_birthDate": {"extension": [{"url": "x", "valueString": "y"}]},
        "active": true,
    }))
    .expect("valid");
    assert_eq!(
        columns,
        PatientColumns {
            family: Some("Chalmers".into()),
            given: Some("Peter James".into()),
            birth_date: Some("1974-12-01".into()),
        }
    );
}

#[test]
fn errors_name_the_element() {
    let cases = [
        (
            json!({"resourceType": "Observation"}),
            "Patient.resourceType",
        ),
        (json!({"name": []}), "Patient.resourceType"),
        (
            json!({"resourceType": "Patient", "birthDate": "1974-13-01"}),
            "Patient.birthDate",
        ),
        (
            json!({"resourceType": "Patient", "birthDate": 1974}),
            "Patient.birthDate",
        ),
        (
            json!({"resourceType": "Patient", "gender": "m"}),
            "Patient.gender",
        ),
        (
            json!({"resourceType": "Patient", "favouriteColour": "red"}),
            "Patient.favouriteColour",
        ),
        (
            json!({"resourceType": "Patient", "_favouriteColour": {}}),
            "Patient.favouriteColour",
        ),
        (
            json!({"resourceType": "Patient", "name": {"family": "x"}}),
            "Patient.name",
        ),
        (
            json!({"resourceType": "Patient", "name": [{"family": 1}]}),
            "Patient.name.family",
        ),
        (
            json!({"resourceType": "Patient", "name": [{"given": "Peter"}]}),
            "Patient.name.given",
        ),
        (
            json!({"resourceType": "Patient", "name": [{"family": ""}]}),
            "Patient.name.family",
        ),
        (
            json!({"resourceType": "Patient", "telecom": null}),
            "Patient.telecom",
        ),
        (
            json!({"resourceType": "Patient", "identifier": [{"value": 7}]}),
            "Patient.identifier.value",
        ),
        (
            json!({"resourceType": "Patient", "active": "yes"}),
            "Patient.active",
        ),
        (
            json!({"resourceType": "Patient", "id": "a/b"}),
            "Patient.id",
        ),
        (
            json!({"resourceType": "Patient", "deceasedBoolean": true, "deceasedDateTime": "2020"}),
            "Patient.deceased[x]",
        ),
    ];
    for (body, path) in cases {
        assert_eq!(expression(body.clone()), path, "{body}");
    }
}

#[test]
fn a_body_that_is_not_an_object_is_a_structure_error() {
    for body in [json!([]), json!("Patient"), json!(null), json!(1)] {
        assert!(matches!(validate_patient(body), Err(FhirError::NotJson(_))));
    }
}

#[test]
fn stamping_sets_id_and_meta_keeping_client_tags() {
    let (mut patient, _) = validate_patient(json!({
        "resourceType": "Patient",
        "id": "client-chosen",
        "meta": {"versionId": "99", "tag": [{"code": "x"}]},
    }))
    .expect("valid");
    stamp(&mut patient, "server-id", 2, "2026-01-01T00:00:00Z");
    assert_eq!(patient["id"], "server-id");
    assert_eq!(patient["meta"]["versionId"], "2");
    assert_eq!(patient["meta"]["lastUpdated"], "2026-01-01T00:00:00Z");
    assert_eq!(patient["meta"]["tag"][0]["code"], "x");
}

#[test]
fn identifiers_keep_their_position_and_skip_those_without_system_or_value() {
    let valid = validate(json!({
        "resourceType": "Patient",
        "identifier": [
            {"use": "old"},
            {"system": "urn:mrn", "value": "1"},
            {"value": "2"},
            {"system": "urn:ssn"},
        ],
    }))
    .expect("valid");
    let found: Vec<(i32, Option<&str>, Option<&str>)> = valid
        .identifiers
        .iter()
        .map(|i| (i.position, i.system.as_deref(), i.value.as_deref()))
        .collect();
    assert_eq!(
        found,
        [
            (1, Some("urn:mrn"), Some("1")),
            (2, None, Some("2")),
            (3, Some("urn:ssn"), None)
        ]
    );
}
