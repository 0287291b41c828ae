//! Requests refused before any handler ran: no valid credential (401) or a principal
//! without the route's permission (403). A route layer between tenant resolution and
//! authentication appends their entries (actor `anonymous` for a 401), in a short
//! transaction of their own, since there is no request transaction to join. What the
//! request was after is read from its method and path.

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;

use super::store::Record;
use super::{Action, AuditEntry, Requester};
use crate::app::AppState;
use crate::auth::Principal;
use crate::error::Report;
use crate::tenant::Tenant;

/// The actor of an entry whose request proved no identity.
pub const ANONYMOUS: &str = "anonymous";

/// What a FHIR request on `path` (relative to `/fhir`) with `method` asked for, if it is a
/// resource interaction.
pub fn interaction(method: &Method, path: &str) -> Option<AuditEntry> {
    let segments: Vec<&str> = path
        .trim_start_matches("/fhir")
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let known = |t: &str| {
        crate::routes::fhir::SERVED
            .iter()
            .find(|s| s.kind.resource_type == t)
            .map(|s| s.kind.resource_type)
    };
    let resource_type = known(segments.first()?)?;
    let export = resource_type == super::export::RESOURCE_TYPE;
    // HEAD is served by the GET routes and asks for the same thing.
    let method = if method == Method::HEAD {
        &Method::GET
    } else {
        method
    };
    let (action, id) = match (method, &segments[1..]) {
        (&Method::GET, []) if export => (Action::Export, None),
        (&Method::GET, []) => (Action::Search, None),
        (&Method::POST, []) => (Action::Create, None),
        (&Method::GET, [id]) => (Action::Read, Some((*id).to_owned())),
        (&Method::PUT, [id]) => (Action::Update, Some((*id).to_owned())),
        (&Method::DELETE, [id]) => (Action::Delete, Some((*id).to_owned())),
        (&Method::GET, [id, "_history"]) => (Action::History, Some((*id).to_owned())),
        (&Method::GET, [id, "_history", vid]) => {
            (Action::Vread, Some(format!("{id}/_history/{vid}")))
        }
        _ => return None,
    };
    let entry = AuditEntry::new(action, resource_type);
    Some(match id {
        Some(id) => entry.id(id),
        None => entry,
    })
}

/// Route layer: appends the entry of a request refused with 401 or 403 by the layers
/// inside it. Other responses pass untouched (their handlers audit them).
pub async fn audit_refusals(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let Some(tenant) = request.extensions().get::<Tenant>().cloned() else {
        return next.run(request).await;
    };
    let entry = interaction(request.method(), request.uri().path());
    let (mut parts, body) = request.into_parts();
    let requester = Requester::from_parts(&mut parts, tenant.id, ANONYMOUS.to_owned()).await;
    let response = next.run(Request::from_parts(parts, body)).await;
    let status = response.status();
    if status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN {
        return response;
    }
    let Some(entry) = entry else { return response };
    let actor = response
        .extensions()
        .get::<Principal>()
        .map_or_else(|| ANONYMOUS.to_owned(), |p| p.identity.subject.clone());
    let record = Record {
        requester: Requester { actor, ..requester },
        entry,
        status: i16::try_from(status.as_u16()).unwrap_or(i16::MAX),
    };
    if let Err(error) = state.database.append(&record).await {
        tracing::error!(
            error = %Report(&error),
            tenant = %tenant.name,
            request_id = %record.requester.request_id,
            status = record.status,
            "appending the audit entry of a refused request failed"
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_the_interaction_they_ask_for() {
        let of = |m: Method, p: &str| interaction(&m, p).map(|e| (e.action, e.resource_id));
        assert_eq!(
            of(Method::GET, "/fhir/Patient"),
            Some((Action::Search, None))
        );
        assert_eq!(of(Method::GET, "/Patient"), Some((Action::Search, None)));
        assert_eq!(
            of(Method::POST, "/fhir/Patient"),
            Some((Action::Create, None))
        );
        assert_eq!(
            of(Method::GET, "/fhir/Patient/x"),
            Some((Action::Read, Some("x".into())))
        );
        assert_eq!(
            of(Method::PUT, "/fhir/Patient/x"),
            Some((Action::Update, Some("x".into())))
        );
        assert_eq!(
            of(Method::DELETE, "/fhir/Patient/x"),
            Some((Action::Delete, Some("x".into())))
        );
        assert_eq!(
            of(Method::GET, "/fhir/Patient/x/_history/2"),
            Some((Action::Vread, Some("x/_history/2".into())))
        );
        assert_eq!(
            of(Method::GET, "/fhir/AuditEvent"),
            Some((Action::Export, None))
        );
        assert_eq!(
            of(Method::POST, "/fhir/DocumentReference"),
            Some((Action::Create, None))
        );
        assert_eq!(
            of(Method::GET, "/fhir/MedicationRequest/x/_history/1"),
            Some((Action::Vread, Some("x/_history/1".into())))
        );
        // Every served type is known, from the same table the routes are built from.
        for served in crate::routes::fhir::SERVED {
            let path = format!("/fhir/{}", served.kind.resource_type);
            let entry = interaction(&Method::GET, &path).expect("a served type");
            assert_eq!(entry.resource_type, served.kind.resource_type);
        }
        assert_eq!(
            of(Method::HEAD, "/fhir/Encounter/x"),
            Some((Action::Read, Some("x".into())))
        );
        assert_eq!(of(Method::GET, "/fhir/metadata"), None);
        assert_eq!(of(Method::GET, "/fhir/Unknown/x"), None);
        assert_eq!(of(Method::PATCH, "/fhir/Patient/x"), None);
    }
}
