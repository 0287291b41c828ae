//! The audit trail of PHI access (ADR 0006): every FHIR interaction appends one entry to
//! its tenant's hash chain in `clinical.audit_events`.
//!
//! Handlers describe the access with an [`AuditEntry`] and run their work through
//! [`crate::db::Database::audited_tx`], which appends the entry in the request's own tenant
//! transaction (pipelined with `COMMIT`), so a request that was answered has its entry
//! committed with it. A failed request's work rolls back; its entry, with the refusal's
//! status, is appended in a short transaction of its own. The database keeps the chain
//! (sequence, previous hash, hash: a trigger, see migration 0010); [`chain`] recomputes it
//! for `phoenix-dataplane audit verify`, and [`export`] turns entries into FHIR
//! `AuditEvent` resources. Entries carry ids, never names or resource bodies.

pub mod chain;
pub mod cli;
pub mod export;
pub mod refusals;
pub mod store;

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::StatusCode;
use axum::http::request::Parts;

use crate::auth::Principal;
use crate::error::ApiError;
use crate::request::RequestId;
use crate::tenant::Tenant;

/// What was done to PHI (the `action` column).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Read the current version of one resource.
    Read,
    /// Read one version of a resource.
    Vread,
    /// Searched a resource type.
    Search,
    /// Created a resource.
    Create,
    /// Updated a resource.
    Update,
    /// Deleted a resource.
    Delete,
    /// Read the version history of a resource.
    History,
    /// Exported audit entries (`GET /fhir/AuditEvent`).
    Export,
}

impl Action {
    /// Every action.
    pub const ALL: [Action; 8] = [
        Self::Read,
        Self::Vread,
        Self::Search,
        Self::Create,
        Self::Update,
        Self::Delete,
        Self::History,
        Self::Export,
    ];

    /// The stored form, the one the table's CHECK accepts.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Vread => "vread",
            Self::Search => "search",
            Self::Create => "create",
            Self::Update => "update",
            Self::Delete => "delete",
            Self::History => "history",
            Self::Export => "export",
        }
    }

    /// The stored form as a statement parameter.
    pub fn as_static(self) -> &'static &'static str {
        match self {
            Self::Read => &"read",
            Self::Vread => &"vread",
            Self::Search => &"search",
            Self::Create => &"create",
            Self::Update => &"update",
            Self::Delete => &"delete",
            Self::History => &"history",
            Self::Export => &"export",
        }
    }

    /// The action of a stored entry.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == text)
    }

    /// The status a successful interaction of this kind answers.
    pub fn success_status(self) -> StatusCode {
        match self {
            Self::Create => StatusCode::CREATED,
            Self::Delete => StatusCode::NO_CONTENT,
            _ => StatusCode::OK,
        }
    }
}

/// What one request did to PHI: the part of an audit entry a handler knows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEntry {
    /// The interaction.
    pub action: Action,
    /// The FHIR resource type.
    pub resource_type: &'static str,
    /// The resource's id (`id` or `id/_history/vid`), for interactions on one resource.
    pub resource_id: Option<String>,
    /// For searches: the parameter names used (never their values, which may be names).
    pub query: Option<String>,
    /// For searches and exports: the ids returned (this page's).
    pub result_ids: Option<Vec<String>>,
}

impl AuditEntry {
    /// An entry of `action` on `resource_type`.
    pub fn new(action: Action, resource_type: &'static str) -> Self {
        Self {
            action,
            resource_type,
            resource_id: None,
            query: None,
            result_ids: None,
        }
    }

    /// The same, on resource `id`.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.resource_id = Some(id.into());
        self
    }

    /// The same, for a search whose query string (`a=1&b=2`) was `query`: only the
    /// parameter names are kept, sorted, without duplicates.
    pub fn query(mut self, query: &str) -> Self {
        let mut names: Vec<&str> = query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| p.split_once('=').map_or(p, |(name, _)| name))
            .collect();
        names.sort_unstable();
        names.dedup();
        self.query = Some(names.join(","));
        self
    }
}

/// Who made a request, from where, under which request id: the part of an audit entry
/// the request carries. Extracted on authenticated routes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requester {
    /// The tenant's catalog id.
    pub tenant_id: i64,
    /// The authenticated subject (`sub`), or `anonymous` when none was authenticated.
    pub actor: String,
    /// The request's `X-Request-Id` when it sent a usable one, else a fresh one.
    pub request_id: String,
    /// The peer address of the connection, when the server knows it.
    pub source: Option<String>,
}

impl Requester {
    /// The requester of a request with these parts, in `tenant_id`, as `actor`.
    pub async fn from_parts(parts: &mut Parts, tenant_id: i64, actor: String) -> Self {
        // The id the request middleware gave the request (and echoes on its response).
        let request_id = parts
            .extensions
            .get::<RequestId>()
            .cloned()
            .unwrap_or_else(|| RequestId::from_headers(&parts.headers))
            .0;
        // The extractor, not the extension: it also finds a test's `MockConnectInfo`.
        let source = ConnectInfo::<SocketAddr>::from_request_parts(parts, &())
            .await
            .ok()
            .map(|ConnectInfo(addr)| addr.ip().to_string());
        Self {
            tenant_id,
            actor,
            request_id,
            source,
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Requester {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let tenant = Tenant::from_request_parts(parts, state).await?;
        let principal = Principal::from_request_parts(parts, state).await?;
        Ok(Self::from_parts(parts, tenant.id, principal.identity.subject.clone()).await)
    }
}

/// The HTTP status a failed request answers, recorded as its entry's outcome.
pub trait Outcome {
    /// The status.
    fn status(&self) -> StatusCode;
}

impl Outcome for ApiError {
    fn status(&self) -> StatusCode {
        ApiError::status(self)
    }
}

impl Outcome for crate::fhir::error::FhirError {
    fn status(&self) -> StatusCode {
        crate::fhir::error::FhirError::status(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_search_entry_keeps_parameter_names_never_values() {
        let entry = AuditEntry::new(Action::Search, "Patient")
            .query("family=Smith&birthdate=ge1970&family=Jones&_count=5&flag");
        assert_eq!(entry.query.as_deref(), Some("_count,birthdate,family,flag"));
    }

    #[test]
    fn actions_round_trip_and_match_the_schema_check() {
        let sql = phoenix_catalog::MIGRATIONS
            .iter()
            .find(|m| m.name == "audit")
            .map(|m| m.sql)
            .unwrap_or_default();
        let listed: Vec<String> = Action::ALL
            .iter()
            .map(|a| format!("'{}'", a.as_str()))
            .collect();
        assert!(sql.contains(&format!("action IN ({})", listed.join(", "))));
        for action in Action::ALL {
            assert_eq!(Action::parse(action.as_str()), Some(action));
        }
    }
}
