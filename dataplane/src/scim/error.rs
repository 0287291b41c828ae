//! SCIM errors (RFC 7644 section 3.12): `urn:ietf:params:scim:api:messages:2.0:Error`
//! bodies with `status` and `scimType`, for the SCIM handlers' own errors and for every
//! other error answered under `/scim` (unknown tenant, 401, unknown route, database).

use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::filter::FilterError;
use super::patch::PatchError;
use crate::db::tenant_tx::TxError;
use crate::error::{ApiError, PublicError, Report};

/// The schema of a SCIM error body.
pub const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
/// The media type of SCIM bodies.
pub const SCIM_JSON: &str = "application/scim+json";

/// Everything a SCIM handler can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ScimError {
    /// A 400 with its `scimType` (`invalidFilter`, `invalidPath`, `invalidValue`,
    /// `invalidSyntax`, `mutability`, `noTarget`, `tooMany`).
    #[error("{detail}")]
    BadRequest {
        /// The SCIM error type.
        scim_type: &'static str,
        /// What is wrong, safe to show.
        detail: String,
    },
    /// No such resource in this tenant (also: one of another tenant).
    #[error("{0} not found")]
    NotFound(String),
    /// A value that must be unique in the tenant is taken.
    #[error("{0}")]
    Uniqueness(String),
    /// `If-Match` names another version.
    #[error("the resource changed: its version is not the one in If-Match")]
    PreconditionFailed,
    /// The request's body is not JSON of an accepted media type.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// Not offered by this server.
    #[error("{0}")]
    NotImplemented(&'static str),
    /// Anything the rest of the API fails with (database, internal).
    #[error(transparent)]
    Api(#[from] ApiError),
}

impl From<TxError> for ScimError {
    fn from(error: TxError) -> Self {
        Self::Api(ApiError::from(error))
    }
}

impl From<FilterError> for ScimError {
    fn from(error: FilterError) -> Self {
        Self::bad("invalidFilter", error.to_string())
    }
}

impl From<PatchError> for ScimError {
    fn from(error: PatchError) -> Self {
        let scim_type = match &error {
            PatchError::InvalidSyntax(_) => "invalidSyntax",
            PatchError::InvalidPath(_) => "invalidPath",
            PatchError::InvalidValue(_) => "invalidValue",
            PatchError::NoTarget(_) => "noTarget",
            PatchError::Mutability(_) => "mutability",
        };
        Self::bad(scim_type, error.to_string())
    }
}

impl ScimError {
    /// A 400 of `scim_type`.
    pub fn bad(scim_type: &'static str, detail: impl Into<String>) -> Self {
        Self::BadRequest {
            scim_type,
            detail: detail.into(),
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Uniqueness(_) => StatusCode::CONFLICT,
            Self::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            Self::Api(error) => error.status(),
        }
    }

    fn scim_type(&self) -> Option<&'static str> {
        match self {
            Self::BadRequest { scim_type, .. } => Some(scim_type),
            Self::Uniqueness(_) => Some("uniqueness"),
            _ => None,
        }
    }
}

/// A SCIM error body of `status`, `scim_type` and `detail`.
pub fn error_response(status: StatusCode, scim_type: Option<&str>, detail: &str) -> Response {
    let mut body = json!({
        "schemas": [ERROR_SCHEMA],
        "status": status.as_u16().to_string(),
        "detail": detail,
    });
    if let Some(scim_type) = scim_type {
        body["scimType"] = json!(scim_type);
    }
    let mut response = (status, body.to_string()).into_response();
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(SCIM_JSON));
    response
}

impl IntoResponse for ScimError {
    fn into_response(self) -> Response {
        match self {
            // The API's own rendering logs and strips internals; the layer makes it SCIM.
            Self::Api(error) => error.into_response(),
            other => {
                if other.status().is_server_error() {
                    tracing::error!(error = %Report(&other), "SCIM request failed");
                }
                error_response(other.status(), other.scim_type(), &other.to_string())
            }
        }
    }
}

/// Renders every error response under `/scim` that the rest of the API produced (it
/// carries a [`PublicError`]) as a SCIM error with the same status, keeping its other
/// headers (`WWW-Authenticate`). Use as `map_response(render_errors)`.
pub async fn render_errors(response: Response) -> Response {
    let Some(error) = response.extensions().get::<PublicError>().cloned() else {
        return response;
    };
    let (parts, _) = response.into_parts();
    let mut rendered = error_response(error.status, None, &error.message);
    for (name, value) in &parts.headers {
        if name != CONTENT_TYPE && name != CONTENT_LENGTH {
            rendered.headers_mut().insert(name.clone(), value.clone());
        }
    }
    // The error's other extensions (the resolved tenant, for the request log) stay too.
    rendered.extensions_mut().extend(parts.extensions);
    rendered.extensions_mut().insert(error);
    rendered
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn body(response: Response) -> serde_json::Value {
        let bytes = response
            .into_body()
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        serde_json::from_slice(&bytes).unwrap_or_default()
    }

    #[tokio::test]
    async fn errors_render_as_scim_error_messages_with_status_as_string() {
        let response = ScimError::bad("invalidFilter", "bad").into_response();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(response.headers()[CONTENT_TYPE], SCIM_JSON);
        let body = body(response).await;
        assert_eq!(body["schemas"][0], ERROR_SCHEMA);
        assert_eq!(body["status"], "400");
        assert_eq!(body["scimType"], "invalidFilter");
        let conflict = body_of(ScimError::Uniqueness("taken".into())).await;
        assert_eq!(
            (conflict["status"].as_str(), conflict["scimType"].as_str()),
            (Some("409"), Some("uniqueness"))
        );
        let gone = body_of(ScimError::NotFound("User x".into())).await;
        assert!(gone.get("scimType").is_none());
    }

    async fn body_of(error: ScimError) -> serde_json::Value {
        body(error.into_response()).await
    }

    #[tokio::test]
    async fn api_errors_keep_their_status_and_headers_and_lose_internal_text() {
        let mut response = ApiError::Internal("secret pool detail").into_response();
        response.headers_mut().insert(
            "www-authenticate",
            HeaderValue::from_static("Bearer realm=\"x\""),
        );
        let rendered = render_errors(response).await;
        assert_eq!(rendered.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(rendered.headers()["www-authenticate"], "Bearer realm=\"x\"");
        let body = body(rendered).await;
        assert_eq!(body["schemas"][0], ERROR_SCHEMA);
        assert!(!body.to_string().contains("secret pool"), "{body}");
    }
}
