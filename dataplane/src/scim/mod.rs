//! The SCIM 2.0 server of each tenant (RFC 7643/7644) under `/scim/v2`: Users, Groups and
//! the discovery endpoints, authenticated with the tenant's SCIM token ([`auth`]), every
//! read and write in the tenant's transaction under row-level security.
//!
//! Resources are stored as JSON (`clinical.scim_users`, `clinical.scim_groups`) with the
//! indexed attributes in columns; filters ([`filter`]) push `eq` on indexed attributes
//! down to SQL and evaluate the rest over the candidate rows; PATCH ([`patch`]) edits the
//! rendered resource, which is then validated and stored like a PUT.
//!
//! Reads stay on the primary (`Access::Primary`), not the reader pool: identity providers
//! read right after they write (Okta and Entra ID look a user up by filter before
//! creating it) without our consistency token, and a lagging replica would make them
//! create duplicates or miss a deactivation. SCIM traffic is small; correctness wins.

pub mod auth;
pub mod discovery;
pub mod error;
pub mod filter;
pub mod groups;
pub mod list;
pub mod patch;
pub mod path;
pub mod store;
pub mod users;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::{CONTENT_TYPE, ETAG, HOST, IF_MATCH, LOCATION};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use serde_json::Value;

use crate::app::AppState;
use crate::tenant::{Tenant, resolve_tenant};
pub use error::{SCIM_JSON, ScimError};

/// Where the SCIM API is mounted.
pub const PREFIX: &str = "/scim/v2";

/// The SCIM routes under [`PREFIX`], behind tenant resolution and SCIM token
/// authentication, with SCIM error bodies for every error (unknown routes included).
pub fn router(state: AppState) -> Router<AppState> {
    let routes = Router::new()
        .merge(users::router())
        .merge(groups::router())
        .merge(discovery::router())
        .route("/.search", post(search_everything))
        .route("/Bulk", post(bulk))
        .route("/Me", any(me))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_scim_token,
        ))
        .layer(middleware::from_fn_with_state(state, resolve_tenant))
        .layer(middleware::map_response(error::render_errors));
    Router::new().nest(PREFIX, routes)
}

// `POST /Bulk`: advertised as unsupported in the ServiceProviderConfig (RFC 7644 3.7).
async fn bulk() -> ScimError {
    ScimError::NotImplemented(
        "bulk operations are not supported (ServiceProviderConfig: bulk.supported = false)",
    )
}

// `/Me`: a SCIM token speaks for the IdP, not for a user (RFC 7644 3.11 allows 501).
async fn me() -> ScimError {
    ScimError::NotImplemented(
        "/Me is not supported: the SCIM token authenticates the identity provider, not a user",
    )
}

// `POST /.search`: users and groups of the tenant together (RFC 7644 3.4.3).
async fn search_everything(
    State(state): State<AppState>,
    tenant: Tenant,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ScimError> {
    let query = list::ListQuery::from_search(&json_body(&headers, &body)?)?;
    let base = base_url(&headers);
    let mut all = users::candidates(&state, &tenant, &base, None).await?;
    all.extend(groups::candidates(&state, &tenant, &base, None).await?);
    let case_exact = |p: &path::AttrPath| users::case_exact(p) || groups::case_exact(p);
    Ok(scim_response(
        StatusCode::OK,
        &list::respond(all, &query, &case_exact),
        None,
    ))
}

async fn not_found() -> ScimError {
    ScimError::NotFound("resource endpoint".into())
}

async fn method_not_allowed() -> Response {
    error::error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        None,
        "this endpoint does not support the method",
    )
}

/// The absolute URL of the SCIM API as the client addressed it: its Host, and https when
/// a proxy in front says so (`X-Forwarded-Proto`), else http.
pub fn base_url(headers: &HeaderMap) -> String {
    let host = headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty() && !h.contains(['/', '@', ' ']))
        .unwrap_or("localhost");
    let scheme = match headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
    {
        Some(p) if p.eq_ignore_ascii_case("https") => "https",
        _ => "http",
    };
    format!("{scheme}://{host}{PREFIX}")
}

/// The weak entity tag of a resource version.
pub fn etag(version: i32) -> String {
    format!("W/\"{version}\"")
}

/// Checks `If-Match` against the resource's current `version`: absent or `*` passes, a
/// list passes when it names the version (weak or strong form).
pub fn check_if_match(headers: &HeaderMap, version: i32) -> Result<(), ScimError> {
    let Some(value) = headers.get(IF_MATCH) else {
        return Ok(());
    };
    let value = value.to_str().map_err(|_| ScimError::PreconditionFailed)?;
    let wanted = version.to_string();
    let matches = value
        .split(',')
        .map(str::trim)
        .any(|tag| tag == "*" || tag.trim_start_matches("W/").trim_matches('"') == wanted);
    if matches {
        Ok(())
    } else {
        Err(ScimError::PreconditionFailed)
    }
}

/// Whether `If-None-Match` names the version (a GET then answers 304).
pub fn not_modified(headers: &HeaderMap, version: i32) -> bool {
    let wanted = version.to_string();
    headers
        .get(axum::http::header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .map(str::trim)
                .any(|tag| tag == "*" || tag.trim_start_matches("W/").trim_matches('"') == wanted)
        })
}

/// The JSON object of a request body sent as `application/scim+json` or
/// `application/json` (or without a media type).
pub fn json_body(headers: &HeaderMap, body: &Bytes) -> Result<Value, ScimError> {
    if let Some(kind) = headers.get(CONTENT_TYPE) {
        let kind = kind.to_str().unwrap_or_default();
        let essence = kind.split(';').next().unwrap_or_default().trim();
        if !essence.eq_ignore_ascii_case(SCIM_JSON)
            && !essence.eq_ignore_ascii_case("application/json")
        {
            return Err(ScimError::UnsupportedMediaType(format!(
                "send the body as {SCIM_JSON} or application/json"
            )));
        }
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(value @ Value::Object(_)) => Ok(value),
        Ok(_) => Err(ScimError::bad(
            "invalidSyntax",
            "the body must be a JSON object",
        )),
        Err(_) => Err(ScimError::bad(
            "invalidSyntax",
            "the body is not valid JSON",
        )),
    }
}

/// A SCIM JSON response of `status`; with its ETag (and Location on 201) when `version`
/// and `location` are given.
pub fn scim_response(status: StatusCode, body: &Value, version: Option<i32>) -> Response {
    let mut response = (status, body.to_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(SCIM_JSON));
    if let Some(version) = version
        && let Ok(value) = HeaderValue::from_str(&etag(version))
    {
        headers.insert(ETAG, value);
    }
    if status == StatusCode::CREATED {
        let location = body
            .pointer("/meta/location")
            .and_then(Value::as_str)
            .and_then(|l| HeaderValue::from_str(l).ok());
        if let Some(location) = location {
            headers.insert(LOCATION, location);
        }
    }
    response
}

/// The version a rendered resource's `meta.version` (a weak ETag) carries.
pub fn version_of(resource: &Value) -> Option<i32> {
    resource
        .pointer("/meta/version")
        .and_then(Value::as_str)
        .and_then(|v| v.trim_start_matches("W/").trim_matches('"').parse().ok())
}

/// Whether `text` is a UUID in its hyphenated form (resource ids are; anything else names
/// no resource and must not reach a `::uuid` cast).
pub fn is_uuid(text: &str) -> bool {
    text.len() == 36
        && text.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_match_accepts_the_current_version_in_weak_or_strong_form_only() {
        let mut headers = HeaderMap::new();
        assert!(check_if_match(&headers, 3).is_ok());
        headers.insert(IF_MATCH, HeaderValue::from_static("W/\"3\""));
        assert!(check_if_match(&headers, 3).is_ok());
        assert!(matches!(
            check_if_match(&headers, 4),
            Err(ScimError::PreconditionFailed)
        ));
        headers.insert(IF_MATCH, HeaderValue::from_static("\"1\", \"4\""));
        assert!(check_if_match(&headers, 4).is_ok());
        headers.insert(IF_MATCH, HeaderValue::from_static("*"));
        assert!(check_if_match(&headers, 9).is_ok());
        assert_eq!(etag(7), "W/\"7\"");
    }

    #[test]
    fn uuids_are_recognised_and_garbage_is_not() {
        assert!(is_uuid("3f2504e0-4f89-41d3-9a0c-0305e82c3301"));
        for bad in [
            "",
            "x",
            "3f2504e0-4f89-41d3-9a0c-0305e82c330",
            "3f2504e0x4f89-41d3-9a0c-0305e82c3301",
            "'; DROP TABLE x; --",
        ] {
            assert!(!is_uuid(bad), "{bad}");
        }
    }

    #[test]
    fn bodies_must_be_json_objects_of_an_accepted_media_type() {
        let mut headers = HeaderMap::new();
        assert!(json_body(&headers, &Bytes::from_static(b"{}")).is_ok());
        assert!(json_body(&headers, &Bytes::from_static(b"[]")).is_err());
        assert!(json_body(&headers, &Bytes::from_static(b"{")).is_err());
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/scim+json; charset=utf-8"),
        );
        assert!(json_body(&headers, &Bytes::from_static(b"{}")).is_ok());
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        assert!(matches!(
            json_body(&headers, &Bytes::from_static(b"{}")),
            Err(ScimError::UnsupportedMediaType(_))
        ));
    }

    #[test]
    fn the_base_url_is_the_requests_host_and_scheme() {
        let mut headers = HeaderMap::new();
        headers.insert(HOST, HeaderValue::from_static("mercy.example:8443"));
        assert_eq!(base_url(&headers), "http://mercy.example:8443/scim/v2");
        headers.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        assert_eq!(base_url(&headers), "https://mercy.example:8443/scim/v2");
    }
}
