//! The HTTP routes: process health (no tenant) and the tenant-scoped API.

pub mod admin;
pub mod analytics;
pub mod consistency;
pub mod fhir;
pub mod health;
pub mod me;

use axum::Router;
use axum::extract::OriginalUri;
use axum::http::Method;
use axum::middleware;

use crate::app::AppState;
use crate::auth::authenticate;
use crate::auth::permission::{Permission, require};
use crate::error::ApiError;
use crate::login;
use crate::tenant::resolve_tenant;

/// Every route served on behalf of a tenant, one nested router per API. Each route sits
/// behind tenant resolution, so an unknown or suspended host never reaches a handler; each
/// API renders its errors its own way (FHIR: `OperationOutcome`), including its unknown
/// paths and wrong methods.
///
/// Authenticated routes go through [`protected`], which names the permission they need;
/// `/fhir/metadata` and the login routes stay public; FHIR resources need
/// `ReadClinical` to read and `WriteClinical` to write, the audit export `Audit` (all
/// three through [`protected_phi`], which audits their refusals); `/scim/v2` authenticates
/// the tenant's identity provider by its SCIM token instead ([`crate::scim`]); `/analytics`
/// needs `ReadAnalytics` ([`analytics`]). The FHIR resource routes and the analytics read
/// on the reader pool with read-your-writes ([`consistency`]).
pub fn tenant_routes(state: AppState) -> Router<AppState> {
    let me = protected(me::router(), Permission::ViewSelf, &state);
    let whoami = protected(
        login::handlers::whoami_router(),
        Permission::ViewSelf,
        &state,
    );
    let admin = protected(admin::router(), Permission::Administer, &state);
    let login = login::handlers::public_router().route_layer(middleware::from_fn_with_state(
        state.clone(),
        resolve_tenant,
    ));
    let scim = crate::scim::router(state.clone());
    let fhir = fhir::router()
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            resolve_tenant,
        ))
        .merge(protected_phi(
            consistency::read_your_writes(fhir::read_router()),
            Permission::ReadClinical,
            &state,
        ))
        .merge(protected_phi(
            consistency::read_your_writes(fhir::write_router()),
            Permission::WriteClinical,
            &state,
        ))
        .merge(protected_phi(
            consistency::read_your_writes(fhir::audit_router()),
            Permission::Audit,
            &state,
        ))
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .layer(middleware::map_response(crate::fhir::render_errors));
    Router::new()
        .merge(me)
        .merge(whoami)
        .merge(admin)
        .merge(analytics::routes(&state))
        .merge(login)
        .nest("/fhir", fhir)
        .merge(scim)
}

/// `router` behind tenant resolution, authentication (bearer token or session) and
/// `permission`, in that order: the one way a route becomes authenticated, so none can
/// forget to say what it lets its caller do. 401 without a valid credential, 403 without
/// the permission.
pub fn protected(
    router: Router<AppState>,
    permission: Permission,
    state: &AppState,
) -> Router<AppState> {
    router
        .route_layer(middleware::from_fn_with_state(permission, require))
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            resolve_tenant,
        ))
}

/// [`protected`] for routes that serve PHI or the audit trail: requests refused by
/// authentication (401) or for want of `permission` (403) are audited too
/// ([`crate::audit::refusals`]); the handlers audit everything else.
pub fn protected_phi(
    router: Router<AppState>,
    permission: Permission,
    state: &AppState,
) -> Router<AppState> {
    router
        .route_layer(middleware::from_fn_with_state(permission, require))
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            crate::audit::refusals::audit_refusals,
        ))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            resolve_tenant,
        ))
}

/// Fallback for paths no route matches. Names the full path, also inside a nested router.
pub async fn not_found(method: Method, OriginalUri(uri): OriginalUri) -> ApiError {
    ApiError::RouteNotFound {
        method,
        path: uri.path().to_owned(),
    }
}

/// Fallback for a known path asked with a method it does not support.
pub async fn method_not_allowed(method: Method, OriginalUri(uri): OriginalUri) -> ApiError {
    ApiError::MethodNotAllowed {
        method,
        path: uri.path().to_owned(),
    }
}
