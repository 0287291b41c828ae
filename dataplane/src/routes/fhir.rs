//! The FHIR R4 API of a tenant. For now only its `CapabilityStatement`.

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde::Serialize;

use crate::app::AppState;
use crate::fhir::FhirJson;
use crate::tenant::Tenant;

/// FHIR routes, mounted under `/fhir` behind tenant resolution.
pub fn router() -> Router<AppState> {
    Router::new().route("/metadata", get(metadata))
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
                resource: Vec::new(),
            }],
        }
    }
}

async fn metadata(State(state): State<AppState>, tenant: Tenant) -> FhirJson<CapabilityStatement> {
    FhirJson(CapabilityStatement::for_tenant(&tenant, state.fhir_date()))
}
