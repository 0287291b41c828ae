use serde_json::json;

use super::*;

fn entries(body: Value) -> Vec<Result<RequestEntry, FhirError>> {
    parse(body, 10).expect("a Bundle").1
}

fn expression(result: &Result<RequestEntry, FhirError>) -> String {
    match result {
        Err(FhirError::Invalid { expression, .. }) => expression.clone(),
        other => panic!("expected an invalid element, got {other:?}"),
    }
}

#[test]
fn only_transaction_and_batch_bundles_within_the_limit_are_taken() {
    assert!(matches!(
        parse(json!({"resourceType": "Patient"}), 10),
        Err(FhirError::Invalid { expression, .. }) if expression == "Bundle.resourceType"
    ));
    assert!(matches!(
        parse(json!({"resourceType": "Bundle", "type": "collection"}), 10),
        Err(FhirError::Invalid { expression, .. }) if expression == "Bundle.type"
    ));
    let three = json!({"resourceType": "Bundle", "type": "batch", "entry": [{}, {}, {}]});
    assert!(matches!(
        parse(three.clone(), 2),
        Err(FhirError::TooManyEntries { count: 3, max: 2 })
    ));
    let (kind, parsed) = parse(three, 3).expect("within the limit");
    assert_eq!((kind, parsed.len()), (BundleType::Batch, 3));
    let (kind, parsed) =
        parse(json!({"resourceType": "Bundle", "type": "transaction"}), 3).expect("empty");
    assert_eq!((kind, parsed.len()), (BundleType::Transaction, 0));
}

#[test]
fn entries_name_their_interaction_and_faults_their_element() {
    let parsed = entries(json!({"resourceType": "Bundle", "type": "batch", "entry": [
        {"fullUrl": "urn:uuid:1", "resource": {"resourceType": "Patient"},
         "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Patient"},
         "request": {"method": "PUT", "url": "Patient/abc", "ifMatch": "W/\"2\""}},
        {"request": {"method": "DELETE", "url": "/Encounter/xyz"}},
        {"request": {"method": "GET", "url": "Patient?name=x"}},
        {"request": {"method": "PATCH", "url": "Patient/abc"}},
        {"request": {"method": "POST", "url": "Observation"}, "resource": {}},
        {"request": {"method": "POST", "url": "Patient"}},
        {"request": {"method": "GET", "url": "Patient/abc/_history/1"}},
        {"resource": {}},
    ]}));
    let post = parsed[0].as_ref().expect("POST");
    assert_eq!(
        (post.method, post.kind.resource_type),
        (Method::Post, "Patient")
    );
    let put = parsed[1].as_ref().expect("PUT");
    assert_eq!(
        (put.id.as_deref(), put.if_match.as_deref()),
        (Some("abc"), Some("2"))
    );
    let delete = parsed[2].as_ref().expect("DELETE");
    assert_eq!(
        (delete.kind.resource_type, delete.id.as_deref()),
        ("Encounter", Some("xyz"))
    );
    assert_eq!(expression(&parsed[3]), "Bundle.entry[3].request.url");
    assert_eq!(expression(&parsed[4]), "Bundle.entry[4].request.method");
    assert_eq!(expression(&parsed[5]), "Bundle.entry[5].request.url");
    assert_eq!(expression(&parsed[6]), "Bundle.entry[6].resource");
    assert_eq!(expression(&parsed[7]), "Bundle.entry[7].request.url");
    assert_eq!(expression(&parsed[8]), "Bundle.entry[8].request");
}

#[test]
fn urn_uuid_references_resolve_to_the_created_ids() {
    let parsed: Vec<RequestEntry> = entries(
        json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"fullUrl": "urn:uuid:p", "resource": {"resourceType": "Patient"},
             "request": {"method": "POST", "url": "Patient"}},
            {"fullUrl": "urn:uuid:e", "resource": {"resourceType": "Encounter",
                "subject": {"reference": "urn:uuid:p"},
                "contained": [{"x": [{"reference": "urn:uuid:p"}]}],
                "basedOn": [{"reference": "urn:uuid:unknown"}]},
             "request": {"method": "POST", "url": "Encounter"}},
        ]}),
    )
    .into_iter()
    .collect::<Result<_, _>>()
    .expect("valid entries");
    let new_ids = HashMap::from([(0, "P1".to_owned()), (1, "E1".to_owned())]);
    let targets = urn_targets(&parsed, &new_ids);
    assert_eq!(targets["urn:uuid:p"], "Patient/P1");
    assert_eq!(targets["urn:uuid:e"], "Encounter/E1");
    let mut encounter = parsed[1].resource.clone().expect("resource");
    resolve_references(&mut encounter, &targets);
    assert_eq!(encounter["subject"]["reference"], "Patient/P1");
    assert_eq!(encounter["contained"][0]["x"][0]["reference"], "Patient/P1");
    assert_eq!(encounter["basedOn"][0]["reference"], "urn:uuid:unknown");
}

#[test]
fn etags_name_a_version() {
    assert_eq!(etag_version("W/\"3\"").ok().as_deref(), Some("3"));
    assert_eq!(etag_version("\"12\"").ok().as_deref(), Some("12"));
    for bad in ["3", "W/\"\"", "W/\"x\"", "*"] {
        assert!(etag_version(bad).is_err(), "{bad}");
    }
}
