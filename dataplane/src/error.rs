//! The one error type of the HTTP API, and what of it a client may see ([`PublicError`]),
//! rendered per API: a FHIR `OperationOutcome` under `/fhir`, plain JSON elsewhere.

use std::fmt;

use axum::Json;
use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::db::DbError;
use crate::db::tenant_tx::TxError;
use crate::fhir::{IssueSeverity, IssueType};

/// Everything a request can fail with. Its response never carries database text.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Neither a Host header nor an absolute request URI names the host.
    #[error("the request names no host; send the tenant's host name in the Host header")]
    MissingHost,
    /// The Host header is not `host[:port]`.
    #[error("the Host header is not a valid host[:port]")]
    InvalidHost,
    /// No live tenant is served at this host.
    #[error("no tenant is served at host {host}")]
    UnknownTenant {
        /// The requested host, lowercased and without port.
        host: String,
    },
    /// The tenant at this host is suspended.
    #[error("the tenant served at host {host} is suspended")]
    TenantSuspended {
        /// The requested host, lowercased and without port.
        host: String,
    },
    /// The tenant is over its request rate (`spec.limits.requestsPerSecond`).
    #[error(
        "tenant {tenant} is over its limit of {per_second} requests per second; retry after {retry_after_seconds} s"
    )]
    RateLimited {
        /// The tenant's name.
        tenant: String,
        /// Its sustained rate.
        per_second: u32,
        /// Whole seconds until a request would be admitted (`Retry-After`).
        retry_after_seconds: u64,
    },
    /// No route matches the path.
    #[error("no route for {method} {path}")]
    RouteNotFound {
        /// Request method.
        method: Method,
        /// Request path, without query.
        path: String,
    },
    /// The route exists but not with this method.
    #[error("{method} is not supported on {path}")]
    MethodNotAllowed {
        /// Request method.
        method: Method,
        /// Request path, without query.
        path: String,
    },
    /// `X-Consistency-Token` is not a token a write returned.
    #[error(transparent)]
    InvalidConsistencyToken(#[from] crate::db::consistency::InvalidToken),
    /// No valid bearer token; the text says why, never what the token was.
    #[error("{0}")]
    Unauthenticated(crate::auth::TokenError),
    /// The database failed; details go to the log only.
    #[error("database unavailable")]
    Database(#[source] DbError),
    /// A tenant transaction failed; details go to the log only.
    #[error("tenant transaction failed")]
    Transaction(#[source] TxError),
    /// The request took longer than `REQUEST_TIMEOUT_MS` (a slow body upload included).
    #[error("the request did not complete within {after_ms} ms; retry later")]
    TimedOut {
        /// The timeout.
        after_ms: u64,
    },
    /// A bug or an impossible state; the message goes to the log only.
    #[error("internal error: {0}")]
    Internal(&'static str),
}

/// Shows an error with its chain of sources (`a: b: c`), for log lines.
#[derive(Debug)]
pub struct Report<'a>(pub &'a (dyn std::error::Error + 'static));

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = self.0.to_string();
        let mut source = self.0.source();
        while let Some(error) = source {
            let part = error.to_string();
            // Some errors repeat their source in their own message: say it once.
            if !text.ends_with(&part) {
                text.push_str(": ");
                text.push_str(&part);
            }
            source = error.source();
        }
        f.write_str(&text)
    }
}

impl From<TxError> for ApiError {
    fn from(error: TxError) -> Self {
        Self::Transaction(error)
    }
}

impl From<DbError> for ApiError {
    fn from(error: DbError) -> Self {
        Self::Database(error)
    }
}

impl ApiError {
    /// The HTTP status this error answers with, whatever API renders it.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::MissingHost | Self::InvalidHost | Self::InvalidConsistencyToken(_) => {
                StatusCode::BAD_REQUEST
            }
            Self::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            Self::UnknownTenant { .. } | Self::RouteNotFound { .. } => StatusCode::NOT_FOUND,
            Self::TenantSuspended { .. } | Self::Transaction(TxError::OtherTenant(_)) => {
                StatusCode::FORBIDDEN
            }
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Database(_)
            | Self::Transaction(TxError::Pool(_) | TxError::Dedicated(_))
            | Self::TimedOut { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Transaction(TxError::Query(error)) if error.is_closed() => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::Transaction(TxError::Query(_)) | Self::Internal(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    /// A stable machine-readable code (the `error` of the plain JSON body).
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingHost => "missing_host",
            Self::InvalidHost => "invalid_host",
            Self::InvalidConsistencyToken(_) => "invalid_consistency_token",
            Self::Unauthenticated(crate::auth::TokenError::Missing) => "unauthenticated",
            Self::Unauthenticated(crate::auth::TokenError::Session) => "invalid_session",
            Self::Unauthenticated(_) => "invalid_token",
            Self::UnknownTenant { .. } => "unknown_tenant",
            Self::TenantSuspended { .. } => "tenant_suspended",
            Self::RouteNotFound { .. } => "not_found",
            Self::MethodNotAllowed { .. } => "method_not_allowed",
            Self::RateLimited { .. } => "rate_limited",
            Self::Transaction(TxError::OtherTenant(_)) => "other_tenant",
            Self::TimedOut { .. } => "timeout",
            _ if self.status() == StatusCode::SERVICE_UNAVAILABLE => "database_unavailable",
            Self::Database(_) | Self::Transaction(_) | Self::Internal(_) => "internal",
        }
    }

    fn issue(&self) -> (IssueSeverity, IssueType) {
        match self {
            Self::MissingHost => (IssueSeverity::Error, IssueType::Required),
            Self::InvalidHost | Self::InvalidConsistencyToken(_) => {
                (IssueSeverity::Error, IssueType::Value)
            }
            Self::Unauthenticated(_) => (IssueSeverity::Error, IssueType::Login),
            Self::UnknownTenant { .. } | Self::RouteNotFound { .. } => {
                (IssueSeverity::Error, IssueType::NotFound)
            }
            Self::TenantSuspended { .. } => (IssueSeverity::Error, IssueType::Suspended),
            Self::MethodNotAllowed { .. } => (IssueSeverity::Error, IssueType::NotSupported),
            Self::RateLimited { .. } => (IssueSeverity::Error, IssueType::Throttled),
            Self::Transaction(TxError::OtherTenant(_)) => {
                (IssueSeverity::Error, IssueType::Forbidden)
            }
            Self::TimedOut { .. } => (IssueSeverity::Error, IssueType::Timeout),
            _ if self.status() == StatusCode::SERVICE_UNAVAILABLE => {
                (IssueSeverity::Error, IssueType::Transient)
            }
            Self::Database(_) | Self::Transaction(_) | Self::Internal(_) => {
                (IssueSeverity::Fatal, IssueType::Exception)
            }
        }
    }

    // What the client may read. Server-side failures say only that they happened; no
    // database text ever reaches a client.
    fn message(&self) -> String {
        match self {
            Self::Transaction(TxError::OtherTenant(_)) => {
                "the request touches data of another tenant; refused".to_owned()
            }
            Self::TimedOut { .. } => self.to_string(),
            _ if self.status() == StatusCode::SERVICE_UNAVAILABLE => {
                "the database is unavailable; retry later".to_owned()
            }
            Self::Database(_) | Self::Transaction(_) | Self::Internal(_) => {
                "internal server error".to_owned()
            }
            client_error => client_error.to_string(),
        }
    }

    /// What this error may tell a client.
    pub fn public(&self) -> PublicError {
        let (severity, issue) = self.issue();
        PublicError {
            status: self.status(),
            code: self.code(),
            severity,
            issue,
            message: self.message(),
        }
    }
}

/// What an error may tell a client, free of database text, ready for any API's format.
///
/// [`ApiError`]'s response carries it in its extensions with a plain JSON body; each API
/// renders it its own way in a layer over its routes (`/fhir`: [`crate::fhir::render_errors`];
/// `/scim` will add its `urn:ietf:params:scim:api:messages:2.0:Error` the same way), and
/// everything else keeps the plain JSON.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code.
    pub code: &'static str,
    /// FHIR issue severity.
    pub severity: IssueSeverity,
    /// FHIR issue type.
    pub issue: IssueType,
    /// Human-readable text, safe to show.
    pub message: String,
}

/// The plain JSON error body: `{"error": "<code>", "message": "..."}`.
#[derive(Debug, Serialize)]
struct PlainError<'a> {
    error: &'static str,
    message: &'a str,
}

impl PublicError {
    /// The plain JSON response, carrying `self` in its extensions for API layers.
    pub fn into_plain_response(self) -> Response {
        let body = Json(PlainError {
            error: self.code,
            message: &self.message,
        });
        let mut response = (self.status, body).into_response();
        response.extensions_mut().insert(self);
        response
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() || matches!(self, Self::Transaction(TxError::OtherTenant(_))) {
            tracing::error!(error = %Report(&self), "request failed");
        }
        let retry_after = match &self {
            Self::RateLimited {
                retry_after_seconds,
                ..
            } => Some(HeaderValue::from(*retry_after_seconds)),
            _ => None,
        };
        let mut response = self.public().into_plain_response();
        if let Some(value) = retry_after {
            response.headers_mut().insert(RETRY_AFTER, value);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_errors_answer_503_without_their_text() {
        let source = "host=db port=not-a-port"
            .parse::<tokio_postgres::Config>()
            .expect_err("invalid port");
        let text = source.to_string();
        let error = ApiError::Database(DbError::InvalidUrl {
            setting: "DATABASE_URL",
            source,
        });
        assert_eq!(error.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(!error.message().contains(&text), "{}", error.message());
    }

    #[test]
    fn a_response_carries_the_public_error_for_api_layers_and_no_internal_text() {
        let response = ApiError::Internal("pool state machine broke").into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let public = response
            .extensions()
            .get::<PublicError>()
            .expect("carried in the extensions");
        assert_eq!(public.code, "internal");
        assert_eq!(public.issue, IssueType::Exception);
        assert!(!public.message.contains("pool state"), "{}", public.message);
    }

    #[test]
    fn report_shows_every_source_once() {
        let source = "host=db port=not-a-port"
            .parse::<tokio_postgres::Config>()
            .expect_err("invalid port");
        let error = ApiError::Database(DbError::InvalidUrl {
            setting: "DATABASE_URL",
            source,
        });
        assert_eq!(
            Report(&error).to_string(),
            "database unavailable: DATABASE_URL is not a valid libpq URL: \
             invalid connection string: invalid value for option `port`"
        );
    }

    #[test]
    fn a_rate_limited_request_is_429_with_retry_after_and_what_the_limit_is() {
        let response = ApiError::RateLimited {
            tenant: "mercy-general".into(),
            per_second: 50,
            retry_after_seconds: 1,
        }
        .into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[RETRY_AFTER], "1");
        let public = response.extensions().get::<PublicError>().expect("public");
        assert_eq!(public.issue, IssueType::Throttled);
        assert_eq!(public.code, "rate_limited");
        assert!(
            public.message.contains("50 requests per second"),
            "{}",
            public.message
        );
    }

    #[test]
    fn client_errors_say_what_to_fix() {
        let error = ApiError::UnknownTenant {
            host: "nowhere.example.org".into(),
        };
        assert_eq!(error.status(), StatusCode::NOT_FOUND);
        assert_eq!(error.issue().1, IssueType::NotFound);
        assert!(error.message().contains("nowhere.example.org"));
        assert_eq!(error.code(), "unknown_tenant");
    }
}
