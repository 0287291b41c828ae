//! FHIR R4 JSON on the wire: the `application/fhir+json` response and `OperationOutcome`;
//! and, in its submodules, what the FHIR API decides without I/O (validation, search
//! parameters, paging cursors, Bundles) and the storage of resources.

pub mod bundle;
pub mod bundle_request;
pub mod cursor;
pub mod date;
pub mod document_reference;
pub mod element;
pub mod encounter;
pub mod error;
pub mod kind;
pub mod medication_request;
pub mod patient;
pub mod search;
pub mod search_sql;
pub mod store;

/// Every resource type the API serves, in the CapabilityStatement's order.
pub const KINDS: [&kind::ResourceKind; 4] = [
    &patient::KIND,
    &encounter::KIND,
    &document_reference::KIND,
    &medication_request::KIND,
];

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::error::PublicError;

/// Media type of FHIR JSON resources.
pub const FHIR_JSON: &str = "application/fhir+json";

/// A FHIR resource answered as `application/fhir+json`.
#[derive(Debug)]
pub struct FhirJson<T>(pub T);

impl<T: Serialize> IntoResponse for FhirJson<T> {
    fn into_response(self) -> Response {
        match serde_json::to_vec(&self.0) {
            Ok(body) => (
                [(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON))],
                body,
            )
                .into_response(),
            Err(error) => {
                tracing::error!(%error, "serializing a FHIR resource failed");
                crate::error::ApiError::Internal("serializing a FHIR resource failed")
                    .into_response()
            }
        }
    }
}

/// Renders an error response of any handler or fallback under `/fhir` as an
/// `OperationOutcome` with the same status; other responses pass unchanged. Use as
/// `axum::middleware::map_response(render_errors)` over the FHIR routes.
pub async fn render_errors(response: Response) -> Response {
    let Some(error) = response.extensions().get::<PublicError>().cloned() else {
        return response;
    };
    let outcome = OperationOutcome::single(error.severity, error.issue, error.message.clone());
    // The error's own headers (`WWW-Authenticate`, `Retry-After`) stay; only the body and
    // its type change.
    let (parts, _) = response.into_parts();
    let mut rendered = (error.status, FhirJson(outcome)).into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            rendered.headers_mut().append(name.clone(), value.clone());
        }
    }
    // The error's other extensions (the resolved tenant, for the request log) stay too.
    rendered.extensions_mut().extend(parts.extensions);
    rendered.extensions_mut().insert(error);
    rendered
}

/// How bad an `OperationOutcome` issue is (FHIR `IssueSeverity`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum IssueSeverity {
    /// The request failed.
    Error,
    /// The server failed.
    Fatal,
}

/// What went wrong, as a FHIR `IssueType` code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum IssueType {
    /// A required element (e.g. the Host header) is missing.
    Required,
    /// A value (e.g. the Host header) is malformed.
    Value,
    /// No valid credentials (bearer token).
    Login,
    /// The tenant or route does not exist.
    NotFound,
    /// The tenant exists but is suspended.
    Suspended,
    /// The method is not supported on this route.
    NotSupported,
    /// The request is refused (e.g. it touches another tenant's data).
    Forbidden,
    /// A temporary failure (e.g. the database is unreachable); retrying may succeed.
    Transient,
    /// An unexpected internal error.
    Exception,
    /// Content invalid against the specification or a profile.
    Invalid,
    /// A structural issue in the content (not JSON, not an object, wrong resourceType).
    Structure,
    /// An edit conflict (a version mismatch, or a resource still referenced).
    Conflict,
    /// The resource existed and has been deleted.
    Deleted,
    /// Content too long (the body exceeds the server's limit).
    TooLong,
    /// The tenant is over its request rate.
    Throttled,
    /// The request took longer than the server allows.
    Timeout,
}

/// One issue of an `OperationOutcome`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OutcomeIssue {
    /// How bad it is.
    pub severity: IssueSeverity,
    /// What kind of problem it is.
    pub code: IssueType,
    /// Human-readable detail, safe to show to the client.
    pub diagnostics: String,
    /// FHIRPath of the elements the issue is about (`Patient.birthDate`); often none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub expression: Vec<String>,
}

/// The FHIR resource that carries errors.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OperationOutcome {
    resource_type: &'static str,
    /// What went wrong; never empty.
    pub issue: Vec<OutcomeIssue>,
}

impl OperationOutcome {
    /// An outcome with a single issue.
    pub fn single(
        severity: IssueSeverity,
        code: IssueType,
        diagnostics: impl Into<String>,
    ) -> Self {
        Self {
            resource_type: "OperationOutcome",
            issue: vec![OutcomeIssue {
                severity,
                code,
                diagnostics: diagnostics.into(),
                expression: Vec::new(),
            }],
        }
    }

    /// An error about element `expression` (a FHIRPath such as `Patient.birthDate`).
    pub fn about(
        code: IssueType,
        expression: impl Into<String>,
        diagnostics: impl Into<String>,
    ) -> Self {
        Self {
            resource_type: "OperationOutcome",
            issue: vec![OutcomeIssue {
                severity: IssueSeverity::Error,
                code,
                diagnostics: diagnostics.into(),
                expression: vec![expression.into()],
            }],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_outcome_serializes_as_fhir_json() {
        let outcome = OperationOutcome::single(
            IssueSeverity::Error,
            IssueType::NotFound,
            "no tenant is served at a.example.org",
        );
        assert_eq!(
            serde_json::to_value(&outcome).expect("serializes"),
            serde_json::json!({
                "resourceType": "OperationOutcome",
                "issue": [{
                    "severity": "error",
                    "code": "not-found",
                    "diagnostics": "no tenant is served at a.example.org",
                }],
            })
        );
    }
}
