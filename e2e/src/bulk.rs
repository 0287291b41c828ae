//! Bulk tenants of the reliability scenarios, and what must hold once they converged: one
//! catalog row each in the region they were placed in (none elsewhere, none duplicated),
//! no role or Secret per tenant.

use std::collections::HashSet;

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::ListParams;
use phoenix_crds::Tenant;

use crate::scenario::catalog_names;
use crate::{NAMESPACE, kube_client, pg};

/// A set of bulk tenants: `<prefix>-NN`, labelled `e2e: <label>`, hostname
/// `<label>-NN.e2e.phoenixguardian.test`, `deletionPolicy: Delete`.
#[derive(Debug, Clone, Copy)]
pub struct Bulk {
    /// Name prefix (`e2e-bulk`).
    pub prefix: &'static str,
    /// Value of the `e2e` label, and the hostname prefix (`bulk`).
    pub label: &'static str,
}

impl Bulk {
    /// The name of tenant `i`.
    pub fn name(&self, i: usize) -> String {
        format!("{}-{i:02}", self.prefix)
    }

    /// The hostname of tenant `i`.
    pub fn host(&self, i: usize) -> String {
        format!("{}-{i:02}.e2e.phoenixguardian.test", self.label)
    }

    /// The label selector of these tenants.
    pub fn params(&self) -> ListParams {
        ListParams::default().labels(&format!("e2e={}", self.label))
    }

    /// The LIKE pattern of their catalog names.
    pub fn like(&self) -> String {
        format!("{}-%", self.prefix)
    }

    /// The manifest of tenants `range`, tenant `i` resident in `residency(i)`.
    pub fn manifest(
        &self,
        range: std::ops::Range<usize>,
        residency: impl Fn(usize) -> &'static str,
    ) -> String {
        range
            .map(|i| {
                format!(
                    "---\napiVersion: phoenixguardian.io/v1alpha1\nkind: Tenant\nmetadata:\n  name: {}\n  labels: {{e2e: {}}}\nspec:\n  displayName: Bulk {i}\n  dataResidency: [{}]\n  database: {{deletionPolicy: Delete}}\n  dns: {{hostname: {}}}\n",
                    self.name(i),
                    self.label,
                    residency(i),
                    self.host(i)
                )
            })
            .collect()
    }

    /// Checks the catalogs of `regions` against `tenants` (these bulk tenants, as listed):
    /// every tenant placed in a region has exactly one active row there with its uid, no
    /// row elsewhere, and no name or uid has two rows. Returns the rows counted.
    pub async fn assert_catalogs(&self, tenants: &[Tenant], regions: &[&str]) -> usize {
        let mut total = 0;
        for region in regions {
            let rows = catalog_names(region, &self.like()).await;
            let names: HashSet<&str> = rows.iter().map(|r| r.0.as_str()).collect();
            assert_eq!(
                names.len(),
                rows.len(),
                "duplicate catalog rows in {region}: {rows:?}"
            );
            let uids: HashSet<&str> = rows.iter().map(|r| r.1.as_str()).collect();
            assert_eq!(
                uids.len(),
                rows.len(),
                "two catalog rows of one uid in {region}: {rows:?}"
            );
            for t in tenants {
                let placed = t
                    .status
                    .as_ref()
                    .and_then(|s| s.placement.as_ref())
                    .map(|p| p.region.as_str());
                let name = t.metadata.name.as_deref().unwrap_or_default();
                let row = rows.iter().find(|r| r.0 == name);
                if placed == Some(*region) {
                    let row = row
                        .unwrap_or_else(|| panic!("{name} placed in {region} has no catalog row"));
                    assert_eq!(
                        Some(row.1.as_str()),
                        t.metadata.uid.as_deref(),
                        "{name}: catalog row of another object"
                    );
                    assert_eq!(row.2, "active", "{name}: catalog row not active");
                } else {
                    assert!(
                        row.is_none(),
                        "{name} has a catalog row in {region} but lives in {placed:?}"
                    );
                }
            }
            total += rows.len();
        }
        total
    }
}

/// The operator's roles in `region` are the owner and the Region's own data plane login,
/// never one per tenant. The shared `phoenix_dataplane` of older operators may exist (other
/// suites make it), and so may the Region's second login (once a password rotation ran,
/// dataplane_role.rs).
pub async fn assert_no_leaked_roles(region: &str) {
    let second = format!("phoenix_dataplane2_{}", region.replace('-', "_"));
    let roles: Vec<String> = pg(region)
        .await
        .query(
            "SELECT rolname::text FROM pg_roles WHERE rolname LIKE 'phoenix\\_%' AND rolname <> 'phoenix_dataplane' ORDER BY 1",
            &[],
        )
        .await
        .expect("roles")
        .iter()
        .map(|r| r.get::<_, String>(0))
        .filter(|r| *r != second)
        .collect();
    assert_eq!(
        roles,
        [
            format!("phoenix_dataplane_{}", region.replace('-', "_")),
            "phoenix_owner".to_owned()
        ],
        "roles leaked in {region}"
    );
}

/// The operator's Secrets are the data plane Secrets of the three Regions, none per tenant.
pub async fn assert_no_leaked_secrets() {
    let secrets: Api<Secret> = Api::namespaced(kube_client().await, NAMESPACE);
    let managed = secrets
        .list(&ListParams::default().labels("app.kubernetes.io/managed-by=phoenix-operator"))
        .await
        .expect("secrets");
    let names: Vec<String> = managed
        .items
        .iter()
        .filter_map(|s| s.metadata.name.clone())
        .collect();
    assert_eq!(names.len(), 3, "operator Secrets leaked: {names:?}");
}
