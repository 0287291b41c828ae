//! The HTTP routes: process health (no tenant) and the tenant-scoped API.

pub mod fhir;
pub mod health;
pub mod me;

use axum::Router;
use axum::extract::OriginalUri;
use axum::http::Method;
use axum::middleware;

use crate::app::AppState;
use crate::auth::authenticate;
use crate::error::ApiError;
use crate::tenant::resolve_tenant;

/// Every route served on behalf of a tenant, one nested router per API. Each route sits
/// behind tenant resolution, so an unknown or suspended host never reaches a handler; each
/// API renders its errors its own way (FHIR: `OperationOutcome`), including its unknown
/// paths and wrong methods.
///
/// Authenticated routes add [`authenticate`] as a `route_layer` before tenant resolution
/// (so it runs after it); `/fhir/metadata` stays public, as FHIR requires.
pub fn tenant_routes(state: AppState) -> Router<AppState> {
    let state_for_scim = state.clone();
    let me = me::router()
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            resolve_tenant,
        ));
    let fhir = fhir::router()
        .route_layer(middleware::from_fn_with_state(state, resolve_tenant))
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .layer(middleware::map_response(crate::fhir::render_errors));
    Router::new()
        .merge(me)
        .nest("/fhir", fhir)
        .merge(crate::scim::router(state_for_scim))
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
