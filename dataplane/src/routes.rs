//! The HTTP routes: process health (no tenant) and the tenant-scoped API.

pub mod fhir;
pub mod health;

use axum::Router;
use axum::http::{Method, Uri};
use axum::middleware;

use crate::app::AppState;
use crate::error::ApiError;
use crate::tenant::resolve_tenant;

/// Every route served on behalf of a tenant. Each one sits behind tenant resolution, so
/// an unknown or suspended host never reaches a handler.
///
/// Authentication goes here too, as a second `route_layer` after tenant resolution, before
/// any clinical route is added; `/fhir/metadata` stays public, as FHIR requires.
pub fn tenant_routes(state: AppState) -> Router<AppState> {
    Router::new()
        .nest("/fhir", fhir::router())
        .route_layer(middleware::from_fn_with_state(state, resolve_tenant))
}

/// Fallback for paths no route matches.
pub async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::RouteNotFound {
        method,
        path: uri.path().to_owned(),
    }
}

/// Fallback for a known path asked with a method it does not support.
pub async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::MethodNotAllowed {
        method,
        path: uri.path().to_owned(),
    }
}
