//! The errors of the FHIR resource API, each answered as an `OperationOutcome` whose issue
//! names the element at fault (`expression`) when there is one.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tokio_postgres::error::SqlState;

use super::{FhirJson, IssueType, OperationOutcome};
use crate::db::tenant_tx::TxError;
use crate::error::ApiError;

/// Why a FHIR interaction failed. Messages are safe to show: they never carry resource
/// content beyond the element's path, nor database text.
#[derive(Debug, thiserror::Error)]
pub enum FhirError {
    /// The resource is invalid at `expression` (a FHIRPath such as `Patient.birthDate`).
    #[error("{message}")]
    Invalid {
        /// The element at fault.
        expression: String,
        /// What is wrong with it and what is expected.
        message: String,
    },
    /// A reference to a resource that is not in this tenant (missing, deleted, or another
    /// tenant's: all answered alike) at `expression`.
    #[error("{expression} references {target}/{id}, which is not known")]
    UnresolvedReference {
        /// The element holding the reference.
        expression: String,
        /// The type referenced.
        target: &'static str,
        /// The id referenced.
        id: String,
    },
    /// The body is not a JSON object.
    #[error("the body is not a JSON object: {0}")]
    NotJson(String),
    /// The body is larger than the server accepts.
    #[error("the body is larger than this server accepts")]
    TooLarge,
    /// The body is not sent as FHIR JSON.
    #[error("send the resource as application/fhir+json (or application/json), not {0}")]
    UnsupportedMediaType(String),
    /// No such resource in this tenant (also: another tenant's id, or a malformed id).
    #[error("{resource_type}/{id} is not known")]
    NotFound {
        /// The resource type asked for.
        resource_type: &'static str,
        /// The id asked for.
        id: String,
    },
    /// The resource existed and was deleted.
    #[error("{resource_type}/{id} has been deleted")]
    Gone {
        /// The resource type asked for.
        resource_type: &'static str,
        /// The id asked for.
        id: String,
    },
    /// `If-Match` names another version than the current one.
    #[error("If-Match names version {expected} but the current version is {current}")]
    VersionConflict {
        /// The version in `If-Match`.
        expected: String,
        /// The current version.
        current: i32,
    },
    /// `If-Match` is not an ETag (`W/"<version>"`).
    #[error("If-Match must be a version ETag such as W/\"1\"")]
    BadIfMatch,
    /// A search parameter is unknown or not supported, under `Prefer: handling=strict`.
    #[error("search parameter {0} is not supported here (see /fhir/metadata)")]
    UnknownSearchParameter(String),
    /// A search parameter's value cannot be used.
    #[error("search parameter {parameter}: {message}")]
    BadSearch {
        /// The parameter as sent.
        parameter: String,
        /// What is wrong and what is expected.
        message: String,
    },
    /// A paging cursor that this server did not issue for this search.
    #[error("the paging cursor is not valid for this search; start again from the first page")]
    BadCursor,
    /// The resource is still referenced (e.g. a Patient by Encounters).
    #[error("{0}")]
    Conflict(&'static str),
    /// A Bundle holds more entries than the server accepts in one request.
    #[error("the Bundle has {count} entries; this server accepts at most {max} per Bundle")]
    TooManyEntries {
        /// Entries sent.
        count: usize,
        /// The limit (`FHIR_BUNDLE_MAX_ENTRIES`).
        max: usize,
    },
    /// Entry `index` of a transaction or batch Bundle failed with `error`: the outcome
    /// names `Bundle.entry[index]` (and the element within its resource).
    #[error("Bundle.entry[{index}]: {error}")]
    InEntry {
        /// The entry's index in `Bundle.entry`.
        index: usize,
        /// Why it failed.
        error: Box<FhirError>,
    },
    /// Anything the rest of the data plane fails with (database, internal).
    #[error(transparent)]
    Api(#[from] ApiError),
}

impl From<TxError> for FhirError {
    fn from(error: TxError) -> Self {
        if let TxError::Query(query) = &error
            && query.code() == Some(&SqlState::FOREIGN_KEY_VIOLATION)
        {
            return Self::Conflict("the resource is still referenced by other resources");
        }
        Self::Api(ApiError::from(error))
    }
}

impl FhirError {
    /// An invalid element.
    pub fn invalid(expression: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            expression: expression.into(),
            message: message.into(),
        }
    }

    /// The HTTP status answered.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Invalid { .. }
            | Self::NotJson(_)
            | Self::BadIfMatch
            | Self::UnknownSearchParameter(_)
            | Self::BadSearch { .. }
            | Self::BadCursor => StatusCode::BAD_REQUEST,
            Self::UnresolvedReference { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::NotFound { .. } => StatusCode::NOT_FOUND,
            Self::Gone { .. } => StatusCode::GONE,
            Self::VersionConflict { .. } => StatusCode::PRECONDITION_FAILED,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::TooManyEntries { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::InEntry { error, .. } => error.status(),
            Self::Api(api) => api.status(),
        }
    }

    /// Entry `index` of a Bundle failed with this.
    pub fn in_entry(self, index: usize) -> Self {
        match self {
            // Internal errors keep their own rendering (and stay out of the message).
            Self::Api(api) => Self::Api(api),
            error => Self::InEntry {
                index,
                error: Box::new(error),
            },
        }
    }

    /// The `OperationOutcome` answered (also inside a `batch-response` entry).
    pub fn outcome(&self) -> OperationOutcome {
        let error = super::IssueSeverity::Error;
        match self {
            Self::Invalid { expression, .. } => {
                OperationOutcome::about(IssueType::Invalid, expression, self.to_string())
            }
            Self::UnresolvedReference { expression, .. } => {
                OperationOutcome::about(IssueType::NotFound, expression, self.to_string())
            }
            Self::BadSearch { parameter, .. } => {
                OperationOutcome::about(IssueType::Value, parameter, self.to_string())
            }
            Self::TooLarge => OperationOutcome::single(error, IssueType::TooLong, self.to_string()),
            Self::NotJson(_) | Self::UnsupportedMediaType(_) => {
                OperationOutcome::single(error, IssueType::Structure, self.to_string())
            }
            Self::NotFound { .. } => {
                OperationOutcome::single(error, IssueType::NotFound, self.to_string())
            }
            Self::Gone { .. } => {
                OperationOutcome::single(error, IssueType::Deleted, self.to_string())
            }
            Self::VersionConflict { .. } | Self::Conflict(_) => {
                OperationOutcome::single(error, IssueType::Conflict, self.to_string())
            }
            Self::BadIfMatch | Self::BadCursor => {
                OperationOutcome::single(error, IssueType::Value, self.to_string())
            }
            Self::UnknownSearchParameter(_) => {
                OperationOutcome::single(error, IssueType::NotSupported, self.to_string())
            }
            Self::TooManyEntries { .. } => {
                OperationOutcome::single(error, IssueType::TooLong, self.to_string())
            }
            Self::InEntry { index, error } => {
                // `Encounter.subject` of entry 1 is `Bundle.entry[1].resource.subject`.
                let entry = format!("Bundle.entry[{index}]");
                let mut outcome = error.outcome();
                for issue in &mut outcome.issue {
                    issue.diagnostics = format!("{entry}: {}", issue.diagnostics);
                    if issue.expression.is_empty() {
                        issue.expression.push(entry.clone());
                    }
                    for expression in &mut issue.expression {
                        if !expression.starts_with("Bundle.") {
                            let within = expression.split_once('.').map_or("", |(_, rest)| rest);
                            *expression = if within.is_empty() {
                                format!("{entry}.resource")
                            } else {
                                format!("{entry}.resource.{within}")
                            };
                        }
                    }
                }
                outcome
            }
            // Rendered by the FHIR router's error layer from the ApiError's PublicError.
            Self::Api(_) => OperationOutcome::single(error, IssueType::Exception, "internal"),
        }
    }
}

impl IntoResponse for FhirError {
    fn into_response(self) -> Response {
        match self {
            // Its response carries its PublicError; `render_errors` makes it an outcome.
            Self::Api(api) => api.into_response(),
            other => (other.status(), FhirJson(other.outcome())).into_response(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invalid_element_is_named_in_the_outcome() {
        let error = FhirError::invalid("Patient.birthDate", "not a date");
        assert_eq!(error.status(), StatusCode::BAD_REQUEST);
        let outcome = serde_json::to_value(error.outcome()).expect("serializes");
        assert_eq!(outcome["issue"][0]["expression"][0], "Patient.birthDate");
        assert_eq!(outcome["issue"][0]["code"], "invalid");
    }

    #[test]
    fn an_entry_error_names_the_entry_and_the_element_within_its_resource() {
        let invalid = FhirError::invalid("Encounter.subject", "bad").in_entry(2);
        assert_eq!(invalid.status(), StatusCode::BAD_REQUEST);
        let outcome = serde_json::to_value(invalid.outcome()).expect("serializes");
        assert_eq!(
            outcome["issue"][0]["expression"][0],
            "Bundle.entry[2].resource.subject"
        );
        assert!(
            outcome["issue"][0]["diagnostics"]
                .as_str()
                .is_some_and(|d| d.starts_with("Bundle.entry[2]: "))
        );
        let request = FhirError::invalid("Bundle.entry[1].request.url", "bad").in_entry(1);
        let outcome = serde_json::to_value(request.outcome()).expect("serializes");
        assert_eq!(
            outcome["issue"][0]["expression"][0],
            "Bundle.entry[1].request.url"
        );
        let gone = FhirError::Gone {
            resource_type: "Patient",
            id: "x".into(),
        }
        .in_entry(0);
        assert_eq!(gone.status(), StatusCode::GONE);
        let outcome = serde_json::to_value(gone.outcome()).expect("serializes");
        assert_eq!(outcome["issue"][0]["expression"][0], "Bundle.entry[0]");
    }

    #[test]
    fn statuses_follow_fhir_http() {
        let gone = FhirError::Gone {
            resource_type: "Patient",
            id: "x".into(),
        };
        assert_eq!(gone.status(), StatusCode::GONE);
        let conflict = FhirError::VersionConflict {
            expected: "1".into(),
            current: 2,
        };
        assert_eq!(conflict.status(), StatusCode::PRECONDITION_FAILED);
        assert_eq!(FhirError::BadCursor.status(), StatusCode::BAD_REQUEST);
    }
}
