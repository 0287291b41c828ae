//! Helpers the scenarios share: reading Tenants, the catalogs, the data planes and Events.

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use phoenix_crds::Tenant;

use crate::guard::ScenarioGuard;
use crate::{NAMESPACE, Process, condition, eventually, kube_client, pg};

/// How long a scenario waits for something to become Ready.
pub const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// The Tenants API.
pub async fn tenants() -> Api<Tenant> {
    Api::all(kube_client().await)
}

/// Waits until tenant `name` satisfies `pred`.
pub async fn wait_tenant<F>(name: &str, what: &str, timeout: Duration, pred: F) -> Tenant
where
    F: Fn(&Tenant) -> bool,
{
    let api = tenants().await;
    eventually(&format!("tenant {name}: {what}"), timeout, || {
        let api = api.clone();
        let name = name.to_owned();
        let pred = &pred;
        async move { api.get_opt(&name).await.ok().flatten().filter(|t| pred(t)) }
    })
    .await
}

/// Whether the tenant's Ready condition is True.
pub fn is_ready(t: &Tenant) -> bool {
    condition(t, "Ready").is_some_and(|c| c.0 == "True")
}

/// `(name, uid, state)` of the catalog rows of `region` whose name is LIKE `like`.
pub async fn catalog_names(region: &str, like: &str) -> Vec<(String, String, String)> {
    pg(region)
        .await
        .query(
            "SELECT name, uid, state FROM catalog.tenants WHERE name LIKE $1 ORDER BY name",
            &[&like],
        )
        .await
        .expect("catalog query")
        .into_iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

/// The data plane connection string the operator generated for `region`.
pub async fn dataplane_url(region: &str) -> String {
    crate::secret_value(&format!("phoenix-dataplane-{region}"), "databaseUrl")
        .await
        .expect("the operator created the data plane Secret, with a databaseUrl")
}

/// The CA the operator put beside the data plane's credentials of `region` (key `ca.crt`,
/// present when the Region verifies its writer with a CA from a Secret), written to a file
/// as a Deployment would mount it; its path.
pub async fn dataplane_ca_file(region: &str) -> Option<String> {
    let secrets: Api<Secret> = Api::namespaced(kube_client().await, NAMESPACE);
    let secret = secrets
        .get(&format!("phoenix-dataplane-{region}"))
        .await
        .expect("the operator created the data plane Secret");
    let ca = secret.data?.get("ca.crt")?.0.clone();
    let path = std::path::Path::new(&crate::stack_var("STACK_DIR"))
        .join(format!("dataplane-{region}-ca.crt"));
    std::fs::write(&path, ca).expect("write the data plane's CA file");
    Some(path.display().to_string())
}

/// Status and body of `/fhir/metadata` on `dataplane` for `host`.
pub async fn get_metadata(dataplane: &Process, host: &str) -> (u16, String) {
    let res = reqwest::Client::new()
        .get(format!("http://{}/fhir/metadata", dataplane.addr))
        .header("Host", host)
        .send()
        .await
        .expect("data plane answers");
    let status = res.status().as_u16();
    (status, res.text().await.unwrap_or_default())
}

/// The `retry_in` delays `operator` logged for failed reconciles of the `kind` object
/// `name` (its `reconcile failed` lines), in the order logged.
pub fn retry_delays(operator: &Process, kind: &str, name: &str) -> Vec<Duration> {
    operator
        .json_log()
        .iter()
        .filter(|l| l["message"] == "reconcile failed" && l["kind"] == kind && l["name"] == name)
        .filter_map(|l| parse_debug_duration(l["retry_in"].as_str()?))
        .collect()
}

/// Parses the `Debug` form of a `Duration` (`2.1s`, `850ms`, `3µs`, `7ns`).
pub fn parse_debug_duration(text: &str) -> Option<Duration> {
    let units = [("ns", 1e-9), ("µs", 1e-6), ("ms", 1e-3), ("s", 1.0)];
    let (number, scale) = units
        .iter()
        .find_map(|(unit, scale)| Some((text.strip_suffix(unit)?, *scale)))?;
    Duration::try_from_secs_f64(number.parse::<f64>().ok()? * scale).ok()
}

/// Waits until `dataplane` answers `/fhir/metadata` for `host` with `status`.
pub async fn served_as(dataplane: &Process, host: &str, status: u16, timeout: Duration) {
    eventually(&format!("{host} answered {status}"), timeout, || async {
        (get_metadata(dataplane, host).await.0 == status).then_some(())
    })
    .await;
}

/// Applies a Tenant of `scenario` (see [`crate::tenant_yaml`]) and waits until it is Ready.
pub async fn apply_ready_tenant(
    scenario: &ScenarioGuard,
    name: &str,
    residency: &str,
    extra: &str,
) -> Tenant {
    scenario.apply(&crate::tenant_yaml(name, residency, extra));
    wait_tenant(name, "Ready", READY_TIMEOUT, is_ready).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_durations_parse_back() {
        for d in [
            Duration::from_millis(2_345),
            Duration::from_millis(850),
            Duration::from_micros(3),
            Duration::from_secs(300),
        ] {
            let parsed = parse_debug_duration(&format!("{d:?}")).expect("parses");
            assert!(
                parsed.abs_diff(d) < Duration::from_nanos(10),
                "{d:?} -> {parsed:?}"
            );
        }
        assert_eq!(parse_debug_duration("soon"), None);
    }
}
