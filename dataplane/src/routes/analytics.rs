//! `GET /analytics/encounters` (permission `read_analytics`): the tenant's encounters over a
//! range, grouped by UTC day, department or provider ([`crate::analytics`]), as JSON or,
//! asked with `Accept: application/fhir+json` or `_format=fhir`, a FHIR `MeasureReport`.
//!
//! It reads in the request's tenant transaction on the reader pool, with read-your-writes
//! (`X-Consistency-Token`) like the FHIR reads; every error is an `OperationOutcome`.

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router, middleware};

use super::{consistency, protected};
use crate::analytics::{
    AnalyticsParams, EncounterAnalytics, ParamError, ResponseFormat, encounters, measure_report,
};
use crate::app::AppState;
use crate::auth::Principal;
use crate::auth::permission::Permission;
use crate::db::tenant_tx::Access;
use crate::error::ApiError;
use crate::fhir::{FHIR_JSON, FhirJson, IssueType, OperationOutcome};

/// The analytics routes, mounted by [`super::tenant_routes`]: behind tenant resolution,
/// authentication and `read_analytics`, with read-your-writes, errors as `OperationOutcome`.
pub fn routes(state: &AppState) -> Router<AppState> {
    let router = Router::new().route("/analytics/encounters", get(encounters_handler));
    protected(
        consistency::read_your_writes(router),
        Permission::ReadAnalytics,
        state,
    )
    .layer(middleware::map_response(crate::fhir::render_errors))
}

/// Why an analytics request failed.
#[derive(Debug, thiserror::Error)]
enum AnalyticsError {
    /// A parameter cannot be used: 400 naming it.
    #[error(transparent)]
    Param(#[from] ParamError),
    /// Anything else (the transaction): rendered like every API error.
    #[error(transparent)]
    Api(#[from] ApiError),
}

impl IntoResponse for AnalyticsError {
    fn into_response(self) -> Response {
        match self {
            Self::Param(error) => (
                StatusCode::BAD_REQUEST,
                FhirJson(OperationOutcome::about(
                    IssueType::Invalid,
                    error.parameter,
                    error.message,
                )),
            )
                .into_response(),
            // Its response carries its PublicError; `render_errors` makes it an outcome.
            Self::Api(error) => error.into_response(),
        }
    }
}

async fn encounters_handler(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, AnalyticsError> {
    let params = AnalyticsParams::parse(query.as_deref())?;
    let tenant_id = principal.tenant.id;
    let (from, to, group_by) = (params.from, params.to, params.group_by);
    let buckets = state
        .database
        .tenant_tx(Access::Read, tenant_id, |tx| {
            Box::pin(async move {
                Ok::<_, ApiError>(encounters(tx, tenant_id, from, to, group_by).await?)
            })
        })
        .await?;
    let format = params.format.unwrap_or_else(|| accepted(&headers));
    let mut response = match format {
        ResponseFormat::Json => Json(EncounterAnalytics::new(
            &principal.tenant.name,
            &params,
            &buckets,
        ))
        .into_response(),
        ResponseFormat::MeasureReport => {
            FhirJson(measure_report(&params, &buckets, jiff::Timestamp::now())).into_response()
        }
    };
    // The body depends on Accept: a cache must not answer one form for the other.
    response
        .headers_mut()
        .insert(header::VARY, HeaderValue::from_static("accept"));
    Ok(response)
}

// The format `Accept` asks for: a MeasureReport when it names application/fhir+json, else
// JSON.
fn accepted(headers: &HeaderMap) -> ResponseFormat {
    let fhir = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|range| {
            range
                .split(';')
                .next()
                .is_some_and(|media| media.trim().eq_ignore_ascii_case(FHIR_JSON))
        });
    if fhir {
        ResponseFormat::MeasureReport
    } else {
        ResponseFormat::Json
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_asks_for_the_measure_report_by_naming_fhir_json() {
        let mut headers = HeaderMap::new();
        assert_eq!(accepted(&headers), ResponseFormat::Json);
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_static("text/html, Application/FHIR+JSON;q=0.9"),
        );
        assert_eq!(accepted(&headers), ResponseFormat::MeasureReport);
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        assert_eq!(accepted(&headers), ResponseFormat::Json);
    }
}
