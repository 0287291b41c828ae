//! A `transaction` or `batch` Bundle posted to `/fhir`: its entries read into the
//! interactions they ask for, and a transaction's `urn:uuid:` references between entries
//! resolved to the ids the server assigns. Pure.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::KINDS;
use super::error::FhirError;
use super::kind::ResourceKind;

/// Entries accepted in one Bundle unless configured (`FHIR_BUNDLE_MAX_ENTRIES`).
pub const DEFAULT_MAX_ENTRIES: usize = 1000;

/// How the entries of a Bundle are applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BundleType {
    /// All or nothing, in one database transaction.
    Transaction,
    /// Each entry on its own.
    Batch,
}

impl BundleType {
    /// The type of the Bundle answered.
    pub fn response_type(self) -> &'static str {
        match self {
            Self::Transaction => "transaction-response",
            Self::Batch => "batch-response",
        }
    }
}

/// What an entry asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// Read `Type/id` (no search).
    Get,
    /// Create at `Type`.
    Post,
    /// Update `Type/id`.
    Put,
    /// Delete `Type/id`.
    Delete,
}

/// One entry of a request Bundle, checked for shape (its resource is validated later, as
/// its kind's create or update validates it).
#[derive(Debug)]
pub struct RequestEntry {
    /// The entry's `fullUrl`.
    pub full_url: Option<String>,
    /// Its `request.method`.
    pub method: Method,
    /// The kind `request.url` names.
    pub kind: &'static ResourceKind,
    /// The id `request.url` names (PUT, DELETE, GET).
    pub id: Option<String>,
    /// Its `resource` (POST, PUT).
    pub resource: Option<Value>,
    /// The version `request.ifMatch` names.
    pub if_match: Option<String>,
}

/// The version an ETag (`W/"3"` or `"3"`) names.
pub fn etag_version(text: &str) -> Result<String, FhirError> {
    let text = text.trim();
    let quoted = text.strip_prefix("W/").unwrap_or(text);
    match quoted.strip_prefix('"').and_then(|q| q.strip_suffix('"')) {
        Some(version) if !version.is_empty() && version.bytes().all(|b| b.is_ascii_digit()) => {
            Ok(version.to_owned())
        }
        _ => Err(FhirError::BadIfMatch),
    }
}

/// The Bundle's type and each entry (or why it cannot be applied), in order. Fails as a
/// whole when `body` is no transaction or batch Bundle or has more than `max` entries.
#[allow(clippy::type_complexity)]
pub fn parse(
    body: Value,
    max: usize,
) -> Result<(BundleType, Vec<Result<RequestEntry, FhirError>>), FhirError> {
    let Value::Object(mut bundle) = body else {
        return Err(FhirError::NotJson("a Bundle must be a JSON object".into()));
    };
    if bundle.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
        return Err(FhirError::invalid(
            "Bundle.resourceType",
            "POST /fhir takes a Bundle of type transaction or batch",
        ));
    }
    let kind = match bundle.get("type").and_then(Value::as_str) {
        Some("transaction") => BundleType::Transaction,
        Some("batch") => BundleType::Batch,
        _ => {
            return Err(FhirError::invalid(
                "Bundle.type",
                "Bundle.type must be transaction or batch",
            ));
        }
    };
    let entries = match bundle.remove("entry") {
        None => Vec::new(),
        Some(Value::Array(entries)) => entries,
        Some(_) => {
            return Err(FhirError::invalid(
                "Bundle.entry",
                "Bundle.entry must be an array",
            ));
        }
    };
    if entries.len() > max {
        return Err(FhirError::TooManyEntries {
            count: entries.len(),
            max,
        });
    }
    let parsed = entries
        .into_iter()
        .enumerate()
        .map(|(index, entry)| entry_of(index, entry))
        .collect();
    Ok((kind, parsed))
}

fn entry_of(index: usize, entry: Value) -> Result<RequestEntry, FhirError> {
    let at = |element: &str| format!("Bundle.entry[{index}]{element}");
    let Value::Object(mut entry) = entry else {
        return Err(FhirError::invalid(at(""), "an entry must be a JSON object"));
    };
    let full_url = match entry.get("fullUrl") {
        None => None,
        Some(Value::String(url)) => Some(url.clone()),
        Some(_) => {
            return Err(FhirError::invalid(
                at(".fullUrl"),
                "fullUrl must be a string",
            ));
        }
    };
    let Some(Value::Object(request)) = entry.remove("request") else {
        return Err(FhirError::invalid(
            at(".request"),
            "each entry needs a request with method and url",
        ));
    };
    let method = match request.get("method").and_then(Value::as_str) {
        Some("GET") => Method::Get,
        Some("POST") => Method::Post,
        Some("PUT") => Method::Put,
        Some("DELETE") => Method::Delete,
        Some(other @ ("HEAD" | "PATCH")) => {
            return Err(FhirError::invalid(
                at(".request.method"),
                format!("{other} is not served in a Bundle; use GET, POST, PUT or DELETE"),
            ));
        }
        _ => {
            return Err(FhirError::invalid(
                at(".request.method"),
                "request.method must be GET, POST, PUT or DELETE",
            ));
        }
    };
    let Some(url) = request.get("url").and_then(Value::as_str) else {
        return Err(FhirError::invalid(
            at(".request.url"),
            "request.url must be a string",
        ));
    };
    let (kind, id) =
        target(url, method).map_err(|message| FhirError::invalid(at(".request.url"), message))?;
    let if_match = match request.get("ifMatch") {
        None => None,
        Some(Value::String(etag)) if method == Method::Put => Some(etag_version(etag)?),
        Some(_) => {
            return Err(FhirError::invalid(
                at(".request.ifMatch"),
                "request.ifMatch must be a version ETag such as W/\"1\", on a PUT",
            ));
        }
    };
    let resource = entry.remove("resource");
    match (method, &resource) {
        (Method::Post | Method::Put, None) => {
            return Err(FhirError::invalid(
                at(".resource"),
                "a POST or PUT entry needs its resource",
            ));
        }
        (Method::Get | Method::Delete, Some(_)) => {
            return Err(FhirError::invalid(
                at(".resource"),
                "a GET or DELETE entry carries no resource",
            ));
        }
        _ => {}
    }
    Ok(RequestEntry {
        full_url,
        method,
        kind,
        id,
        resource,
        if_match,
    })
}

// The kind and id a relative `request.url` names: `Type` for POST, `Type/id` otherwise.
fn target(url: &str, method: Method) -> Result<(&'static ResourceKind, Option<String>), String> {
    if url.contains('?') {
        return Err(
            "searches and conditional interactions are not served in a Bundle; name Type or Type/id"
                .to_owned(),
        );
    }
    let url = url.strip_prefix('/').unwrap_or(url);
    let (type_name, id) = match url.split_once('/') {
        Some((type_name, id)) => (type_name, Some(id)),
        None => (url, None),
    };
    let Some(kind) = KINDS.iter().copied().find(|k| k.resource_type == type_name) else {
        return Err(format!(
            "request.url must be a relative URL of a served type (Patient, Encounter, DocumentReference, MedicationRequest), not {}",
            url.chars().take(100).collect::<String>()
        ));
    };
    match (method, id) {
        (Method::Post, None) => Ok((kind, None)),
        (Method::Post, Some(_)) => Err(format!("a POST names the type only: {type_name}")),
        (_, Some(id)) if !id.is_empty() && !id.contains('/') => Ok((kind, Some(id.to_owned()))),
        _ => Err(format!(
            "a GET, PUT or DELETE names one resource: {type_name}/<id> (no _history, no search)"
        )),
    }
}

/// The `Type/id` each POST entry whose `fullUrl` is a `urn:uuid:` will be created as,
/// given the ids `new_ids` assigns to those entries (by index).
pub fn urn_targets(
    entries: &[RequestEntry],
    new_ids: &HashMap<usize, String>,
) -> HashMap<String, String> {
    entries
        .iter()
        .enumerate()
        .filter_map(|(index, entry)| {
            let url = entry.full_url.as_deref()?;
            let id = new_ids.get(&index)?;
            (entry.method == Method::Post && url.starts_with("urn:uuid:"))
                .then(|| (url.to_owned(), format!("{}/{id}", entry.kind.resource_type)))
        })
        .collect()
}

/// Replaces, anywhere in `value`, a `reference` that is a key of `targets` by its value.
pub fn resolve_references(value: &mut Value, targets: &HashMap<String, String>) {
    match value {
        Value::Object(object) => resolve_in_object(object, targets),
        Value::Array(items) => {
            for item in items {
                resolve_references(item, targets);
            }
        }
        _ => {}
    }
}

fn resolve_in_object(object: &mut Map<String, Value>, targets: &HashMap<String, String>) {
    for (key, value) in object.iter_mut() {
        match value {
            Value::String(reference) if key == "reference" => {
                if let Some(target) = targets.get(reference.as_str()) {
                    *reference = target.clone();
                }
            }
            other => resolve_references(other, targets),
        }
    }
}

#[cfg(test)]
#[path = "bundle_request_tests.rs"]
mod tests;
