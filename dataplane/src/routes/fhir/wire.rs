//! FHIR resources on HTTP: request bodies, `If-Match`, the stored resource answered with
//! its ETag, and the server-assigned id and time of a write.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::header::{CONTENT_TYPE, ETAG, IF_MATCH};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::fhir::FHIR_JSON;
use crate::fhir::error::FhirError;

/// A version 4 UUID for a new resource.
pub fn new_id() -> String {
    let bits = (rand::random::<u128>() & !(0xF000_u128 << 64) & !(0xC_u128 << 60))
        | (0x4000_u128 << 64)
        | (0x8_u128 << 60);
    let hex = format!("{bits:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// Now, as a FHIR instant in milliseconds.
pub fn now() -> String {
    let now = jiff::Timestamp::now();
    now.round(jiff::Unit::Millisecond)
        .unwrap_or(now)
        .to_string()
}

/// A stored resource answered with its ETag (and `extra` headers).
pub fn resource(
    status: StatusCode,
    version: i32,
    json: String,
    extra: Option<(HeaderName, String)>,
) -> Response {
    let mut response = (
        status,
        [(CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON))],
        json,
    )
        .into_response();
    let headers = response.headers_mut();
    if let Ok(etag) = HeaderValue::from_str(&format!("W/\"{version}\"")) {
        headers.insert(ETAG, etag);
    }
    if let Some((name, value)) = extra
        && let Ok(value) = HeaderValue::from_str(&value)
    {
        headers.insert(name, value);
    }
    response
}

/// The body as JSON, if it is sent as FHIR JSON (or plain JSON).
pub fn json_body(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Value, FhirError> {
    let media = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("none");
    let essence = media.split(';').next().unwrap_or_default().trim();
    if !essence.eq_ignore_ascii_case(FHIR_JSON) && !essence.eq_ignore_ascii_case("application/json")
    {
        return Err(FhirError::UnsupportedMediaType(
            essence.chars().take(100).collect(),
        ));
    }
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            FhirError::TooLarge
        } else {
            FhirError::NotJson("the body could not be read".into())
        }
    })?;
    serde_json::from_slice(&body).map_err(|error| FhirError::NotJson(error.to_string()))
}

/// The version an `If-Match` header names, if there is one.
pub fn if_match(headers: &HeaderMap) -> Result<Option<String>, FhirError> {
    let Some(value) = headers.get(IF_MATCH) else {
        return Ok(None);
    };
    let text = value.to_str().map_err(|_| FhirError::BadIfMatch)?;
    crate::fhir::bundle_request::etag_version(text).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fhir::cursor::is_uuid;

    #[test]
    fn new_ids_are_version_4_uuids() {
        for _ in 0..100 {
            let id = new_id();
            assert!(is_uuid(&id), "{id}");
            assert_eq!(&id[14..15], "4", "{id}");
            assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"), "{id}");
        }
    }

    #[test]
    fn if_match_takes_weak_and_strong_version_etags_only() {
        let mut headers = HeaderMap::new();
        assert_eq!(if_match(&headers).ok(), Some(None));
        for (value, version) in [("W/\"3\"", Some("3")), ("\"12\"", Some("12"))] {
            headers.insert(IF_MATCH, HeaderValue::from_static(value));
            assert_eq!(if_match(&headers).ok().flatten().as_deref(), version);
        }
        for bad in ["3", "W/\"\"", "W/\"x\"", "*"] {
            headers.insert(IF_MATCH, HeaderValue::from_static(bad));
            assert!(
                matches!(if_match(&headers), Err(FhirError::BadIfMatch)),
                "{bad}"
            );
        }
    }
}
