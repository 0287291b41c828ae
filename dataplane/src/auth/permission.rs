//! What a principal may do: one table from platform roles to permissions, and the route
//! layer every authenticated route declares its permission with.
//!
//! ```text
//!              ViewSelf  ReadClinical  WriteClinical  ReadAnalytics  Administer  Audit
//! physician       x           x             x              x
//! nurse           x           x             x              x
//! scribe          x           x             x              x
//! readonly        x           x                            x
//! admin           x                                        x             x          x
//! auditor         x                                                                 x
//! (no role)       x
//! ```
//!
//! Administrators manage users and sessions but read no PHI by virtue of the role; a
//! person who needs both holds both roles. They do see the encounter analytics: counts and
//! durations per day, department or provider, which name no patient, are what running a
//! service takes. Auditors read the audit trail only. Unknown role names grant nothing.

use axum::Json;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::Principal;
use crate::error::PublicError;
use crate::fhir::{IssueSeverity, IssueType};

/// Something a route lets a principal do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    /// See who one is (`/me`, `/whoami`): every authenticated principal.
    ViewSelf,
    /// Read clinical data.
    ReadClinical,
    /// Write clinical data.
    WriteClinical,
    /// See aggregate encounter analytics (counts and durations; no patient is named).
    ReadAnalytics,
    /// Manage the tenant's users and sessions.
    Administer,
    /// Read the audit trail.
    Audit,
}

impl Permission {
    /// Every permission.
    pub const ALL: [Permission; 6] = [
        Self::ViewSelf,
        Self::ReadClinical,
        Self::WriteClinical,
        Self::ReadAnalytics,
        Self::Administer,
        Self::Audit,
    ];

    /// The name clients see (`read_clinical`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ViewSelf => "view_self",
            Self::ReadClinical => "read_clinical",
            Self::WriteClinical => "write_clinical",
            Self::ReadAnalytics => "read_analytics",
            Self::Administer => "administer",
            Self::Audit => "audit",
        }
    }
}

/// The permissions platform role `role` grants (beyond [`Permission::ViewSelf`]).
pub fn granted_by(role: &str) -> &'static [Permission] {
    use Permission::*;
    match role {
        "physician" | "nurse" | "scribe" => &[ReadClinical, WriteClinical, ReadAnalytics],
        "readonly" => &[ReadClinical, ReadAnalytics],
        "admin" => &[ReadAnalytics, Administer, Audit],
        "auditor" => &[Audit],
        _ => &[],
    }
}

/// Whether a principal holding `roles` has `permission`.
pub fn allows(roles: &[String], permission: Permission) -> bool {
    permission == Permission::ViewSelf
        || roles
            .iter()
            .any(|role| granted_by(role).contains(&permission))
}

/// The 403 body: which permission is missing; nothing about the credential.
#[derive(Debug, Serialize)]
struct Forbidden {
    error: &'static str,
    message: String,
    missing_permission: &'static str,
}

/// The 403 answer for a principal lacking `permission`. It carries its [`PublicError`] in
/// its extensions, so an API with its own error format (FHIR: `OperationOutcome`)
/// renders it like any other error.
pub fn forbidden(permission: Permission) -> Response {
    let message = format!(
        "your roles do not grant the permission {}",
        permission.as_str()
    );
    let public = PublicError {
        status: StatusCode::FORBIDDEN,
        code: "forbidden",
        severity: IssueSeverity::Error,
        issue: IssueType::Forbidden,
        message: message.clone(),
    };
    let mut response = (
        StatusCode::FORBIDDEN,
        Json(Forbidden {
            error: "forbidden",
            message,
            missing_permission: permission.as_str(),
        }),
    )
        .into_response();
    response.extensions_mut().insert(public);
    response
}

/// Route layer behind [`super::authenticate`]: lets the request through only if its
/// principal has the permission in the state. Use through [`crate::routes::protected`]:
///
/// `middleware::from_fn_with_state(Permission::Administer, require)`
pub async fn require(
    State(permission): State<Permission>,
    request: Request,
    next: Next,
) -> Response {
    let Some(principal) = request.extensions().get::<Principal>() else {
        // A route wired without authentication: fail closed.
        tracing::error!("a route requires a permission but has no authentication layer");
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    if allows(&principal.identity.roles, permission) {
        next.run(request).await
    } else {
        tracing::info!(
            tenant = %principal.tenant.name,
            permission = permission.as_str(),
            "request refused: missing permission"
        );
        let mut response = forbidden(permission);
        // Who was refused, for the audit trail of refusals.
        response.extensions_mut().insert(principal.clone());
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Permission::*;

    fn roles(names: &[&str]) -> Vec<String> {
        names.iter().map(|r| (*r).to_owned()).collect()
    }

    #[test]
    fn the_matrix_is_the_documented_one() {
        let expected: [(&str, &[Permission]); 7] = [
            (
                "physician",
                &[ViewSelf, ReadClinical, WriteClinical, ReadAnalytics],
            ),
            (
                "nurse",
                &[ViewSelf, ReadClinical, WriteClinical, ReadAnalytics],
            ),
            (
                "scribe",
                &[ViewSelf, ReadClinical, WriteClinical, ReadAnalytics],
            ),
            ("readonly", &[ViewSelf, ReadClinical, ReadAnalytics]),
            ("admin", &[ViewSelf, ReadAnalytics, Administer, Audit]),
            ("auditor", &[ViewSelf, Audit]),
            ("superuser", &[ViewSelf]),
        ];
        for (role, granted) in expected {
            for permission in Permission::ALL {
                assert_eq!(
                    allows(&roles(&[role]), permission),
                    granted.contains(&permission),
                    "{role} / {permission:?}"
                );
            }
        }
    }

    #[test]
    fn roles_add_up_and_no_role_only_views_itself() {
        let both = roles(&["nurse", "admin"]);
        assert!(Permission::ALL.iter().all(|p| allows(&both, *p)));
        for permission in Permission::ALL {
            assert_eq!(allows(&[], permission), permission == ViewSelf);
        }
    }

    #[tokio::test]
    async fn the_forbidden_body_names_the_missing_permission() {
        let response = forbidden(Administer);
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        let body = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .expect("body");
        let body: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(body["error"], "forbidden");
        assert_eq!(body["missing_permission"], "administer");
    }
}
