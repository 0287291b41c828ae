//! The FHIR R4 API of a tenant: its `CapabilityStatement`, public, and the resources it
//! serves ([`crate::fhir::KINDS`], through the handlers of [`resource`]), which need a
//! token or session with the clinical permissions.

pub mod audit_event;
pub mod bundle;
pub mod resource;
pub mod wire;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde::Serialize;

use crate::app::AppState;
use crate::fhir::kind::ResourceKind;
use crate::fhir::{FhirJson, KINDS};
use crate::tenant::Tenant;

/// The public FHIR routes (the CapabilityStatement), mounted under `/fhir` behind tenant
/// resolution.
pub fn router() -> Router<AppState> {
    Router::new().route("/metadata", get(metadata))
}

/// The resource routes that only read (need `Permission::ReadClinical`).
pub fn read_router() -> Router<AppState> {
    KINDS.iter().fold(Router::new(), |router, kind| {
        router.merge(resource::read_router(kind))
    })
}

/// The resource routes that write (need `Permission::WriteClinical`), and the
/// transaction and batch Bundles at the base (`POST /fhir`).
pub fn write_router() -> Router<AppState> {
    KINDS.iter().fold(
        Router::new().route("/", axum::routing::post(bundle::bundle)),
        |router, kind| router.merge(resource::write_router(kind)),
    )
}

/// The system interactions served at the base (FHIR `SystemRestfulInteraction` codes).
pub const SYSTEM_INTERACTIONS: [&str; 2] = ["transaction", "batch"];

/// The audit trail export (need `Permission::Audit`).
pub fn audit_router() -> Router<AppState> {
    audit_event::audit_router()
}

/// A resource type the API serves, as the CapabilityStatement and the audit of refused
/// requests see it: its kind (search parameters, `_include`s) and its interactions.
#[derive(Clone, Copy, Debug)]
pub struct ServedResource {
    /// What is stored and searched of it.
    pub kind: &'static ResourceKind,
    /// Its interactions (FHIR `TypeRestfulInteraction` codes).
    pub interactions: &'static [&'static str],
}

/// Every resource type served: each of [`KINDS`] through the handlers of [`resource`],
/// then the audit export ([`audit_event`]).
pub const SERVED: [ServedResource; KINDS.len() + 1] = served();

const fn served() -> [ServedResource; KINDS.len() + 1] {
    let mut all = [audit_event::SERVED; KINDS.len() + 1];
    let mut i = 0;
    while i < KINDS.len() {
        all[i] = ServedResource {
            kind: KINDS[i],
            interactions: &resource::INTERACTIONS,
        };
        i += 1;
    }
    all
}

const SOFTWARE_NAME: &str = "Phoenix Guardian data plane";
const SECURITY_DESCRIPTION: &str = "Every request except GET /fhir/metadata needs an OAuth 2.0 \
     bearer token (an OIDC JWT issued by the tenant's identity provider) in the Authorization \
     header.";

/// The FHIR `CapabilityStatement` a tenant's server publishes at `/fhir/metadata`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CapabilityStatement {
    resource_type: &'static str,
    status: &'static str,
    date: String,
    kind: &'static str,
    fhir_version: &'static str,
    format: [&'static str; 1],
    software: Software,
    implementation: Implementation,
    rest: [Rest; 1],
}

#[derive(Debug, Serialize)]
struct Software {
    name: &'static str,
    version: &'static str,
}

#[derive(Debug, Serialize)]
struct Implementation {
    description: String,
    url: String,
}

#[derive(Debug, Serialize)]
struct Rest {
    mode: &'static str,
    security: Security,
    // FHIR JSON forbids empty arrays: the list is left out until a resource is served.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    resource: Vec<RestResource>,
    interaction: Vec<SystemInteraction>,
}

#[derive(Debug, Serialize)]
struct SystemInteraction {
    code: &'static str,
    documentation: &'static str,
}

#[derive(Debug, Serialize)]
struct Security {
    service: [CodeableConcept; 1],
    description: &'static str,
}

#[derive(Debug, Serialize)]
struct CodeableConcept {
    coding: [Coding; 1],
}

#[derive(Debug, Serialize)]
struct Coding {
    system: &'static str,
    code: &'static str,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct RestResource {
    r#type: &'static str,
    interaction: Vec<Interaction>,
    versioning: &'static str,
    read_history: bool,
    update_create: bool,
    conditional_create: bool,
    conditional_update: bool,
    conditional_delete: &'static str,
    // FHIR JSON forbids empty arrays.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    search_include: Vec<String>,
    search_param: Vec<RestSearchParam>,
}

#[derive(Debug, Serialize)]
struct Interaction {
    code: &'static str,
}

#[derive(Debug, Serialize)]
struct RestSearchParam {
    name: &'static str,
    r#type: &'static str,
    documentation: &'static str,
}

impl RestResource {
    fn from_served(served: &ServedResource) -> Self {
        let ServedResource { kind, interactions } = *served;
        Self {
            r#type: kind.resource_type,
            interaction: interactions
                .iter()
                .map(|code| Interaction { code })
                .collect(),
            // Updates honour If-Match; every version is kept and readable (vread).
            versioning: if interactions.contains(&"update") {
                "versioned-update"
            } else {
                "no-version"
            },
            read_history: interactions.contains(&"vread"),
            update_create: false,
            conditional_create: false,
            conditional_update: false,
            conditional_delete: "not-supported",
            search_include: kind
                .includes
                .iter()
                .map(|i| format!("{}:{}", kind.resource_type, i.name))
                .collect(),
            search_param: kind
                .search
                .iter()
                .map(|p| RestSearchParam {
                    name: p.name,
                    r#type: p.kind.as_str(),
                    documentation: p.documentation,
                })
                .collect(),
        }
    }
}

impl CapabilityStatement {
    /// The statement of `tenant`'s server, dated `date` (a FHIR dateTime).
    pub fn for_tenant(tenant: &Tenant, date: String) -> Self {
        Self {
            resource_type: "CapabilityStatement",
            status: "active",
            date,
            kind: "instance",
            fhir_version: "4.0.1",
            format: ["json"],
            software: Software {
                name: SOFTWARE_NAME,
                version: env!("CARGO_PKG_VERSION"),
            },
            implementation: Implementation {
                description: tenant.display_name.clone(),
                url: format!("https://{}/fhir", tenant.hostname),
            },
            rest: [Rest {
                mode: "server",
                security: Security {
                    service: [CodeableConcept {
                        coding: [Coding {
                            system: "http://terminology.hl7.org/CodeSystem/restful-security-service",
                            code: "OAuth",
                        }],
                    }],
                    description: SECURITY_DESCRIPTION,
                },
                resource: SERVED.iter().map(RestResource::from_served).collect(),
                interaction: SYSTEM_INTERACTIONS
                    .iter()
                    .map(|&code| SystemInteraction {
                        code,
                        documentation: "POST /fhir: entries POST, PUT, DELETE and GET (read) of \
                            Patient, Encounter, DocumentReference and MedicationRequest; \
                            urn:uuid references resolved within a transaction; at most \
                            FHIR_BUNDLE_MAX_ENTRIES entries (default 1000)",
                    })
                    .collect(),
            }],
        }
    }
}

async fn metadata(State(state): State<AppState>, tenant: Tenant) -> FhirJson<CapabilityStatement> {
    FhirJson(CapabilityStatement::for_tenant(&tenant, state.fhir_date()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{Isolation, TenantRecord, TenantRow, TenantState};

    fn tenant() -> Tenant {
        Tenant(std::sync::Arc::new(TenantRecord {
            id: 1,
            row: TenantRow {
                uid: "uid".into(),
                name: "mercy".into(),
                display_name: "Mercy".into(),
                hostname: "mercy.example.org".into(),
                home_region: "us-east-1".into(),
                data_residency: vec!["US".into()],
                isolation: Isolation::Shared,
                state: TenantState::Active,
                requests_per_second: 1,
                max_users: 1,
                generation: 1,
                schema: None,
                database: None,
                database_server: None,
            },
        }))
    }

    #[test]
    fn the_capability_statement_lists_exactly_the_served_table() {
        let statement = serde_json::to_value(CapabilityStatement::for_tenant(
            &tenant(),
            "2026-01-01T00:00:00Z".into(),
        ))
        .expect("serializes");
        let resources = statement["rest"][0]["resource"]
            .as_array()
            .expect("resources");
        assert_eq!(resources.len(), SERVED.len());
        for (resource, ServedResource { kind, interactions }) in resources.iter().zip(SERVED) {
            assert_eq!(resource["type"], kind.resource_type);
            let names: Vec<&str> = resource["searchParam"]
                .as_array()
                .expect("search params")
                .iter()
                .filter_map(|p| p["name"].as_str())
                .collect();
            let table: Vec<&str> = kind.search.iter().map(|p| p.name).collect();
            assert_eq!(names, table);
            let codes: Vec<&str> = resource["interaction"]
                .as_array()
                .expect("interactions")
                .iter()
                .filter_map(|i| i["code"].as_str())
                .collect();
            assert_eq!(codes, interactions);
            let includes: Vec<String> = resource["searchInclude"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|i| i.as_str().map(str::to_owned))
                .collect();
            let table: Vec<String> = kind
                .includes
                .iter()
                .map(|i| format!("{}:{}", kind.resource_type, i.name))
                .collect();
            assert_eq!(includes, table);
        }
        let types: Vec<&str> = resources
            .iter()
            .filter_map(|r| r["type"].as_str())
            .collect();
        assert_eq!(
            types,
            [
                "Patient",
                "Encounter",
                "DocumentReference",
                "MedicationRequest",
                "AuditEvent"
            ]
        );
        let patient = &resources[0];
        assert_eq!(patient["searchParam"][3]["type"], "date");
        assert_eq!(patient["versioning"], "versioned-update");
        assert_eq!(patient["readHistory"], true);
        // The audit trail is searched (exported), never written or read one by one.
        let audit = &resources[KINDS.len()];
        let codes: Vec<&str> = audit["interaction"]
            .as_array()
            .expect("interactions")
            .iter()
            .filter_map(|i| i["code"].as_str())
            .collect();
        assert_eq!(codes, ["search-type"]);
        let system: Vec<&str> = statement["rest"][0]["interaction"]
            .as_array()
            .expect("system interactions")
            .iter()
            .filter_map(|i| i["code"].as_str())
            .collect();
        assert_eq!(system, ["transaction", "batch"]);
        assert_eq!(audit["versioning"], "no-version");
        assert_eq!(audit["readHistory"], false);
        assert_eq!(audit["searchParam"][0]["name"], "date");
        assert!(audit.get("searchInclude").is_none());
    }
}
