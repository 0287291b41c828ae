//! Read-your-writes over HTTP: the layer that reads a request's `X-Consistency-Token`,
//! runs the handler in its [`RequestConsistency`] scope, and answers with the token of
//! the request's writes (`X-Consistency-Token`, on a successful response) and the pool its
//! reads ran on (`X-Read-Pool: reader | writer`).
//!
//! It sits inside authentication, around the handlers only, so the writes of the
//! authentication itself (a session's `last_seen_at`) give no token.

use axum::Router;
use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::{self, Next};
use axum::response::Response;

use crate::app::AppState;
use crate::db::consistency::{Lsn, READ_POOL_HEADER, RequestConsistency, TOKEN_HEADER};
use crate::error::ApiError;

/// `router` with read-your-writes: every route of it carries the request's consistency.
pub fn read_your_writes(router: Router<AppState>) -> Router<AppState> {
    router.route_layer(middleware::from_fn(scope))
}

/// The middleware; a token that is not a WAL position is 400.
pub async fn scope(request: Request, next: Next) -> Result<Response, ApiError> {
    let token = match request.headers().get(TOKEN_HEADER) {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .map_err(|_| crate::db::consistency::InvalidToken)?
                .parse::<Lsn>()?,
        ),
    };
    let consistency = RequestConsistency::new(token);
    let mut response = consistency.clone().scope(next.run(request)).await;
    let headers = response.headers_mut();
    if let Some(pool) = consistency.served() {
        headers.insert(READ_POOL_HEADER, HeaderValue::from_static(pool.as_str()));
    }
    if response.status().is_success()
        && let Some(committed) = consistency.committed()
        && let Ok(value) = HeaderValue::from_str(&committed.to_string())
    {
        response.headers_mut().insert(TOKEN_HEADER, value);
    }
    Ok(response)
}
