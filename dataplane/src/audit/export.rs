//! Audit entries as FHIR R4 `AuditEvent` resources, for SOC 2 / HIPAA evidence. Pure.
//!
//! One entry is one `AuditEvent`: its id is the entry's `seq` (unique in the tenant),
//! `subtype` the FHIR interaction, `outcome` from the HTTP status, the authenticated
//! subject the requesting agent, the data plane the observer, and an entity per resource
//! touched (the resource, or each id a search returned). The request id, the search's
//! parameter names and the entry's place in the hash chain are entity details.

use serde_json::{Value, json};

use super::Action;
use super::chain::Link;

/// The FHIR resource type.
pub const RESOURCE_TYPE: &str = "AuditEvent";

const OBSERVER: &str = "Phoenix Guardian data plane";

// FHIR `restful-interaction` code of an action.
fn interaction(action: Option<Action>) -> &'static str {
    match action {
        Some(Action::Read) => "read",
        Some(Action::Vread) => "vread",
        Some(Action::Create) => "create",
        Some(Action::Update) => "update",
        Some(Action::Delete) => "delete",
        Some(Action::History) => "history-instance",
        Some(Action::Search | Action::Export) | None => "search-type",
    }
}

// FHIR `AuditEventAction`: Create, Read, Update, Delete, Execute (a query).
fn action_code(action: Option<Action>) -> &'static str {
    match action {
        Some(Action::Create) => "C",
        Some(Action::Read | Action::Vread | Action::History) => "R",
        Some(Action::Update) => "U",
        Some(Action::Delete) => "D",
        Some(Action::Search | Action::Export) | None => "E",
    }
}

/// FHIR `AuditEventOutcome` of an HTTP status: success, minor failure (the request was
/// refused), serious failure (the server failed).
pub fn outcome(status: i16) -> &'static str {
    match status {
        ..400 => "0",
        400..500 => "4",
        _ => "8",
    }
}

/// The `recorded` instant of microseconds since the epoch (RFC 3339, UTC).
pub fn instant(us: i64) -> String {
    jiff::Timestamp::from_microsecond(us)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_owned())
}

fn detail(name: &str, value: &str) -> Value {
    json!({"type": name, "valueString": value})
}

/// The `AuditEvent` of `link`, an entry of the tenant served at `site` (its hostname).
pub fn audit_event(link: &Link, site: &str) -> Value {
    let action = Action::parse(&link.action);
    let mut details = vec![
        detail("request-id", &link.request_id),
        detail("chain-seq", &link.seq.to_string()),
        detail("chain-hash", &hex::encode(&link.hash)),
        detail("chain-prev-hash", &hex::encode(&link.prev_hash)),
    ];
    if let Some(query) = link.query.as_deref().filter(|q| !q.is_empty()) {
        details.push(detail("search-parameters", query));
    }
    let mut entities = vec![json!({
        "what": match &link.resource_id {
            Some(id) => json!({"reference": format!("{}/{id}", link.resource_type)}),
            None => json!({"display": format!("{} (type)", link.resource_type)}),
        },
        "type": {
            "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
            "code": "2",
            "display": "System Object",
        },
        "detail": details,
    })];
    for id in link.result_ids.iter().flatten().flatten() {
        // A search's included resources are stored qualified (`Patient/{id}`), its matches
        // by id alone (ids never hold a `/`).
        let reference = if id.contains('/') {
            id.clone()
        } else {
            format!("{}/{id}", link.resource_type)
        };
        entities.push(json!({
            "what": {"reference": reference},
            "type": {
                "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                "code": "2",
                "display": "System Object",
            },
            "role": {
                "system": "http://terminology.hl7.org/CodeSystem/object-role",
                "code": "24",
                "display": "Query",
            },
        }));
    }
    let mut agent = json!({
        "who": {"identifier": {"value": link.actor}, "display": link.actor},
        "requestor": true,
    });
    if let Some(source) = &link.source {
        agent["network"] = json!({"address": source, "type": "2"});
    }
    json!({
        "resourceType": RESOURCE_TYPE,
        "id": link.seq.to_string(),
        "type": {
            "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
            "code": "rest",
            "display": "RESTful Operation",
        },
        "subtype": [{
            "system": "http://hl7.org/fhir/restful-interaction",
            "code": interaction(action),
        }],
        "action": action_code(action),
        "recorded": instant(link.recorded_at_us),
        "outcome": outcome(link.status),
        "outcomeDesc": format!("HTTP {}", link.status),
        "agent": [agent],
        "source": {
            "site": site,
            "observer": {"display": OBSERVER},
            "type": [{
                "system": "http://terminology.hl7.org/CodeSystem/security-source-type",
                "code": "4",
                "display": "Application Server",
            }],
        },
        "entity": entities,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_follow_the_status_class() {
        assert_eq!(outcome(200), "0");
        assert_eq!(outcome(204), "0");
        assert_eq!(outcome(403), "4");
        assert_eq!(outcome(404), "4");
        assert_eq!(outcome(503), "8");
    }

    #[test]
    fn a_search_lists_each_returned_id_and_never_a_value() {
        let link = Link {
            tenant_id: 1,
            seq: 9,
            recorded_at_us: 1_764_000_000_123_456,
            actor: "sub-1".into(),
            action: "search".into(),
            resource_type: "Patient".into(),
            resource_id: None,
            query: Some("family".into()),
            result_ids: Some(vec![Some("a".into()), Some("b".into())]),
            status: 200,
            request_id: "r".into(),
            source: Some("10.0.0.1".into()),
            prev_hash: vec![0; 32],
            hash: vec![1; 32],
        };
        let event = audit_event(&link, "mercy.example.org");
        assert_eq!(event["id"], "9");
        assert_eq!(event["action"], "E");
        assert_eq!(event["recorded"], "2025-11-24T16:00:00.123456Z");
        assert_eq!(event["entity"].as_array().map(Vec::len), Some(3));
        assert_eq!(event["entity"][2]["what"]["reference"], "Patient/b");
        assert_eq!(event["agent"][0]["network"]["address"], "10.0.0.1");
    }

    #[test]
    fn an_included_resource_keeps_its_own_type() {
        let link = Link {
            tenant_id: 1,
            seq: 10,
            recorded_at_us: 0,
            actor: "sub-1".into(),
            action: "search".into(),
            resource_type: "Encounter".into(),
            resource_id: None,
            query: Some("_include,patient".into()),
            result_ids: Some(vec![Some("e".into()), Some("Patient/p".into())]),
            status: 200,
            request_id: "r".into(),
            source: None,
            prev_hash: vec![0; 32],
            hash: vec![1; 32],
        };
        let event = audit_event(&link, "mercy.example.org");
        assert_eq!(event["entity"][1]["what"]["reference"], "Encounter/e");
        assert_eq!(event["entity"][2]["what"]["reference"], "Patient/p");
    }
}
