//! `GET /fhir/AuditEvent`: the tenant's audit trail as a `searchset` Bundle of FHIR
//! `AuditEvent` resources, in time (= chain) order, paged by a keyset cursor on the
//! entry's `(recorded, seq)`;
//! `date` (with `ge`, `gt`, `le`, `lt`, `eq`) bounds `recorded`. Needs
//! `Permission::Audit`; the export is itself audited (action `export`).

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::Value;
use serde_json::value::RawValue;

use super::ServedResource;
use crate::app::AppState;
use crate::audit::export::{RESOURCE_TYPE, audit_event};
use crate::audit::store::{Window, export_page};
use crate::audit::{Action, AuditEntry, Requester};
use crate::db::tenant_tx::Access;
use crate::fhir::FhirJson;
use crate::fhir::bundle::{Entry as BundleEntry, SearchSet};
use crate::fhir::cursor;
use crate::fhir::error::FhirError;
use crate::fhir::kind::{ResourceKind, Validated};
use crate::fhir::search::{
    self, CURSOR_PARAM, Criterion, Handling, ParamType, Prefix, Search, SearchParam, Sql,
};
use crate::tenant::Tenant;

/// The search parameters of AuditEvent.
pub const AUDIT_EVENT_SEARCH: &[SearchParam] = &[SearchParam {
    name: "date",
    kind: ParamType::Date,
    documentation: "When the event was recorded (UTC days); prefixes eq, gt, lt, ge, le",
    // What it means; the export builds its own keyset statement from it ([`window`]).
    sql: Sql::Instant("recorded_at"),
}];

/// AuditEvent as a resource kind, for the search parser and the CapabilityStatement: its
/// `date` parameter, no sort keys, no `_include`s. The table is the trail itself; nothing
/// is written through the FHIR API ([`written_by_the_server_only`]).
pub const KIND: ResourceKind = ResourceKind {
    resource_type: RESOURCE_TYPE,
    table: "audit_events",
    columns: &[],
    search: AUDIT_EVENT_SEARCH,
    sorts: &[],
    identifiers: None,
    includes: &[],
    validate: written_by_the_server_only,
};

/// What `/fhir/AuditEvent` serves: search (the export) only.
pub const SERVED: ServedResource = ServedResource {
    kind: &KIND,
    interactions: &["search-type"],
};

/// The validation of [`KIND`]: no route creates or updates an AuditEvent, and were one
/// added, it would refuse every body.
fn written_by_the_server_only(_: Value) -> Result<Validated, FhirError> {
    Err(FhirError::invalid(
        RESOURCE_TYPE,
        "AuditEvent is written by the server only; it cannot be created or updated",
    ))
}

/// The routes of the audit export (`Permission::Audit`).
pub fn audit_router() -> Router<AppState> {
    Router::new().route("/AuditEvent", get(search_audit_events))
}

/// The time window the `date` filters of `search` describe (ANDed; one value each).
fn window(search: &Search) -> Result<Window, FhirError> {
    let mut window = Window::default();
    let later = |a: Option<String>, b: String| Some(a.map_or(b.clone(), |a| a.max(b)));
    let earlier = |a: Option<String>, b: String| Some(a.map_or(b.clone(), |a| a.min(b)));
    for filter in &search.filters {
        let [
            Criterion::Date {
                prefix,
                first,
                next,
            },
        ] = filter.any_of.as_slice()
        else {
            return Err(FhirError::BadSearch {
                parameter: filter.param.name.to_owned(),
                message: "give one date per parameter; repeat the parameter for a range".to_owned(),
            });
        };
        let (first, next) = (format!("{first}T00:00:00Z"), format!("{next}T00:00:00Z"));
        match prefix {
            Prefix::Eq => {
                window.from = later(window.from.take(), first);
                window.until = earlier(window.until.take(), next);
            }
            Prefix::Ge => window.from = later(window.from.take(), first),
            Prefix::Gt => window.from = later(window.from.take(), next),
            Prefix::Lt => window.until = earlier(window.until.take(), first),
            Prefix::Le => window.until = earlier(window.until.take(), next),
        }
    }
    Ok(window)
}

async fn search_audit_events(
    State(state): State<AppState>,
    tenant: Tenant,
    requester: Requester,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, FhirError> {
    let prefer = headers.get("prefer").and_then(|v| v.to_str().ok());
    let search = search::parse(
        query.as_deref().unwrap_or(""),
        &KIND,
        Handling::from_prefer(prefer),
    )?;
    if search.summary_count {
        return Err(FhirError::BadSearch {
            parameter: "_summary".to_owned(),
            message: "counting is not offered on AuditEvent; page through the results".to_owned(),
        });
    }
    let window = window(&search)?;
    let applied = search.applied_query();
    let after = search
        .cursor
        .as_deref()
        .map(|c| cursor::decode_pair(c, &applied))
        .transpose()?;
    let url = format!("https://{}/fhir/{RESOURCE_TYPE}", tenant.hostname);
    let self_url = if applied.is_empty() {
        url.clone()
    } else {
        format!("{url}?{applied}")
    };
    let page = search.count;
    let tenant_id = tenant.id;
    let entry = AuditEntry::new(Action::Export, RESOURCE_TYPE).query(&applied);
    let links = state
        .database
        .audited_tx(Access::Read, &requester, entry, |tx| {
            Box::pin(async move {
                let limit = i64::try_from(page).unwrap_or(100).saturating_add(1);
                let links = export_page(tx, tenant_id, &window, after, limit).await?;
                tx.audit_results(links.iter().take(page).map(|l| l.seq.to_string()).collect());
                Ok::<_, FhirError>(links)
            })
        })
        .await?;
    let more = links.len() > page;
    let mut entries = Vec::with_capacity(page.min(links.len()));
    for link in links.iter().take(page) {
        let raw = RawValue::from_string(audit_event(link, &tenant.hostname).to_string())
            .map_err(|_| crate::error::ApiError::Internal("an AuditEvent is not JSON"))?;
        entries.push(BundleEntry::matched(format!("{url}/{}", link.seq), raw));
    }
    let total = (search.cursor.is_none() && !more).then_some(entries.len() as u64);
    let next = match (more, links.get(page.saturating_sub(1))) {
        (true, Some(last)) => {
            let cursor = cursor::encode_pair(last.recorded_at_us, last.seq, &applied);
            let separator = if applied.is_empty() { "" } else { "&" };
            Some(format!("{url}?{applied}{separator}{CURSOR_PARAM}={cursor}"))
        }
        _ => None,
    };
    Ok(FhirJson(SearchSet::page(entries, total, self_url, next)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window_of(query: &str) -> Result<Window, FhirError> {
        window(&search::parse(query, &KIND, Handling::Strict)?)
    }

    #[test]
    fn date_prefixes_bound_the_window_in_whole_utc_days() {
        let w = window_of("date=ge2026-01-02&date=lt2026-02").expect("window");
        assert_eq!(w.from.as_deref(), Some("2026-01-02T00:00:00Z"));
        assert_eq!(w.until.as_deref(), Some("2026-02-01T00:00:00Z"));
        let w = window_of("date=2026-03-04").expect("window");
        assert_eq!(w.from.as_deref(), Some("2026-03-04T00:00:00Z"));
        assert_eq!(w.until.as_deref(), Some("2026-03-05T00:00:00Z"));
        let w = window_of("date=gt2026-03-04&date=le2026").expect("window");
        assert_eq!(w.from.as_deref(), Some("2026-03-05T00:00:00Z"));
        assert_eq!(w.until.as_deref(), Some("2027-01-01T00:00:00Z"));
    }

    #[test]
    fn no_audit_event_body_is_accepted() {
        assert!(matches!(
            (KIND.validate)(serde_json::json!({"resourceType": "AuditEvent"})),
            Err(FhirError::Invalid { .. })
        ));
    }

    #[test]
    fn alternatives_and_unknown_parameters_are_refused() {
        assert!(matches!(
            window_of("date=2026,2027"),
            Err(FhirError::BadSearch { .. })
        ));
        assert!(matches!(
            window_of("patient=x"),
            Err(FhirError::UnknownSearchParameter(_))
        ));
    }
}
