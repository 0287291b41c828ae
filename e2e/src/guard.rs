//! A scenario's objects are removed when the scenario ends, passed or failed: everything
//! it applies carries its label, and its guard deletes what carries the label on drop.
//!
//! Declare the guard after the operator the scenario runs, so that it drops first and the
//! operator's finalizers still run; what stays stuck loses its finalizers. Rows left in
//! the region databases on purpose (deletionPolicy Retain) are tidied afterwards.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::Duration;

use crate::{NAMESPACE, REGIONS, try_kubectl, upper};

/// The label every object of a scenario carries: `e2e-scenario=<name>`.
pub const LABEL: &str = "e2e-scenario";

/// How long cleanup waits for the operator to finish deleting objects of one kind.
const DELETE_TIMEOUT: Duration = Duration::from_secs(60);

/// Removes a scenario's objects and rows when dropped.
#[derive(Debug)]
pub struct ScenarioGuard {
    name: String,
    /// Tenants the scenario applied: their rows are tidied once the objects are gone.
    tenants: Mutex<BTreeSet<String>>,
}

impl ScenarioGuard {
    /// A guard for scenario `name` (a label value); removes leftovers of an aborted run.
    pub fn new(name: &str) -> Self {
        let _ = crate::stack_var("KUBECONFIG");
        let guard = Self {
            name: name.to_owned(),
            tenants: Mutex::new(BTreeSet::new()),
        };
        guard.clean();
        guard
    }

    /// The label selector of this scenario's objects.
    pub fn selector(&self) -> String {
        format!("{LABEL}={}", self.name)
    }

    /// `manifest` (one or more YAML documents) with this scenario's label on every object.
    pub fn labeled(&self, manifest: &str) -> String {
        let (out, tenants) = label_manifest(manifest, &self.name);
        self.tenants
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(tenants);
        out
    }

    /// Applies `manifest` with this scenario's label; fails the test if kubectl fails.
    pub fn apply(&self, manifest: &str) {
        crate::kubectl_ok(&["apply", "-f", "-"], Some(&self.labeled(manifest)));
    }

    fn clean(&self) {
        let mut tenants = self.names("tenants");
        tenants.extend(
            self.tenants
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .map(|n| format!("tenant.phoenixguardian.io/{n}")),
        );
        // Tenants first: a Region waits for the tenants placed in it.
        for kind in ["tenants", "idpconnections", "regions"] {
            self.delete(kind);
        }
        let _ = try_kubectl(
            &[
                "-n",
                NAMESPACE,
                "delete",
                "secret",
                "-l",
                &self.selector(),
                "--ignore-not-found",
            ],
            None,
        );
        let gone: Vec<String> = tenants
            .iter()
            .filter_map(|t| t.rsplit('/').next().map(str::to_owned))
            .filter(|t| !self.exists(&format!("tenant/{t}")))
            .collect();
        if !gone.is_empty() {
            tidy_rows(gone);
        }
    }

    /// `kind/name` of this scenario's objects of `kind`.
    fn names(&self, kind: &str) -> BTreeSet<String> {
        let sel = self.selector();
        try_kubectl(&["get", kind, "-l", &sel, "-o", "name"], None)
            .ok()
            .filter(|o| o.status.success())
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }

    fn exists(&self, object: &str) -> bool {
        try_kubectl(&["get", object, "--ignore-not-found", "-o", "name"], None)
            .is_ok_and(|o| !o.stdout.is_empty())
    }

    /// Deletes this scenario's objects of `kind`, waits for the operator's finalizers, and
    /// removes the finalizers of those that stay stuck.
    fn delete(&self, kind: &str) {
        let objects = self.names(kind);
        if objects.is_empty() {
            return;
        }
        let sel = self.selector();
        let _ = try_kubectl(&["delete", kind, "-l", &sel, "--wait=false"], None);
        let timeout = format!("--timeout={}s", DELETE_TIMEOUT.as_secs());
        let mut args = vec!["wait", "--for=delete", timeout.as_str()];
        args.extend(objects.iter().map(String::as_str));
        let _ = try_kubectl(&args, None);
        for stuck in self.names(kind) {
            eprintln!("[cleanup] {stuck} is stuck in deletion: removing its finalizers");
            let _ = try_kubectl(
                &[
                    "patch",
                    &stuck,
                    "--type=merge",
                    "-p",
                    r#"{"metadata":{"finalizers":null}}"#,
                ],
                None,
            );
        }
    }
}

/// `manifest` with label `LABEL=scenario` on every object, and the names of its Tenants.
fn label_manifest(manifest: &str, scenario: &str) -> (String, Vec<String>) {
    let mut out = String::new();
    let mut tenants = Vec::new();
    for doc in documents(manifest) {
        let mut value: serde_yaml::Value = serde_yaml::from_str(&doc).expect("a YAML manifest");
        if value.is_null() {
            continue;
        }
        let is_tenant = value["kind"] == "Tenant";
        let metadata = value
            .get_mut("metadata")
            .and_then(|m| m.as_mapping_mut())
            .expect("a manifest with metadata");
        if is_tenant && let Some(name) = metadata.get("name").and_then(|n| n.as_str()) {
            tenants.push(name.to_owned());
        }
        let labels = metadata
            .entry("labels".into())
            .or_insert(serde_yaml::Value::Null);
        if !labels.is_mapping() {
            *labels = serde_yaml::Mapping::new().into();
        }
        if let Some(labels) = labels.as_mapping_mut() {
            labels.insert(LABEL.into(), scenario.into());
        }
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&value).expect("YAML"));
    }
    (out, tenants)
}

/// The documents of a multi-document YAML stream.
fn documents(manifest: &str) -> Vec<String> {
    let mut docs = vec![String::new()];
    for line in manifest.lines() {
        if line.trim_end() == "---" {
            docs.push(String::new());
        } else if let Some(doc) = docs.last_mut() {
            doc.push_str(line);
            doc.push('\n');
        }
    }
    docs
}

impl Drop for ScenarioGuard {
    fn drop(&mut self) {
        self.clean();
    }
}

/// Deletes the rows of tenants `names` from every region database (whatever they left:
/// a retired catalog row and its clinical rows). Best effort: a failure is printed, since
/// this runs while a test may be unwinding.
fn tidy_rows(names: Vec<String>) {
    let done = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        runtime.block_on(async {
            for region in REGIONS {
                tidy_region(region, &names)
                    .await
                    .map_err(|e| format!("{region}: {e}"))?;
            }
            Ok::<(), String>(())
        })
    })
    .join();
    match done {
        Ok(Ok(())) => {}
        Ok(Err(e)) => eprintln!("[cleanup] could not tidy tenant rows: {e}"),
        Err(_) => eprintln!("[cleanup] tidying tenant rows panicked"),
    }
}

async fn tidy_region(region: &str, names: &[String]) -> Result<(), String> {
    let dsn =
        std::env::var(format!("PG_ADMIN_DSN_{}", upper(region))).map_err(|e| e.to_string())?;
    // Over TLS where the stack's DSN asks for it (eu-west-1), as `crate::pg` connects.
    let db = phoenix_catalog::connect::parse(&dsn)
        .map_err(|e| e.to_string())?
        .connect()
        .await
        .map_err(|e| e.to_string())?;
    let ids: Vec<i64> = db
        .query(
            "SELECT id FROM catalog.tenants WHERE name = ANY($1)",
            &[&names],
        )
        .await
        .map_err(|e| e.to_string())?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if ids.is_empty() {
        return Ok(());
    }
    // Schema tenants kept by Retain: their schema (rows included) and role go first.
    let schemas: Vec<String> = db
        .query(
            "SELECT schema_name FROM catalog.tenants WHERE id = ANY($1) AND schema_name IS NOT NULL",
            &[&ids],
        )
        .await
        .map_err(|e| e.to_string())?
        .iter()
        .map(|r| r.get(0))
        .collect();
    for schema in schemas {
        let role = schema.replacen(
            phoenix_catalog::schemas::SCHEMA_PREFIX,
            phoenix_catalog::schemas::ROLE_PREFIX,
            1,
        );
        db.batch_execute(&format!(
            "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE; DROP ROLE IF EXISTS \"{role}\""
        ))
        .await
        .map_err(|e| e.to_string())?;
    }
    let mut tables: Vec<String> = db
        .query(
            "SELECT format('%I.%I', c.table_schema, c.table_name) FROM information_schema.columns c \
             JOIN information_schema.tables t USING (table_schema, table_name) \
             WHERE c.column_name = 'tenant_id' AND t.table_type = 'BASE TABLE'",
            &[],
        )
        .await
        .map_err(|e| e.to_string())?
        .iter()
        .map(|r| r.get(0))
        .collect();
    // Children before parents, without knowing the schema: retry what a foreign key refused.
    for _ in 0..=tables.len() {
        let mut refused = Vec::new();
        for table in tables {
            let sql = format!("DELETE FROM {table} WHERE tenant_id = ANY($1)");
            if db.execute(&sql, &[&ids]).await.is_err() {
                refused.push(table);
            }
        }
        tables = refused;
        if tables.is_empty() {
            break;
        }
    }
    if !tables.is_empty() {
        return Err(format!("rows of {names:?} left in {tables:?}"));
    }
    db.execute("DELETE FROM catalog.tenants WHERE id = ANY($1)", &[&ids])
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_document_gets_the_label_and_tenants_are_named() {
        let manifest = "---\nkind: Tenant\nmetadata:\n  name: a\n  labels: {e2e: bulk}\n---\nkind: Region\nmetadata:\n  name: r\n  labels:\n---\nkind: Secret\nmetadata: {name: s, namespace: n}\n";
        let (out, tenants) = label_manifest(manifest, "crash");
        assert_eq!(tenants, ["a"]);
        let docs: Vec<serde_yaml::Value> = documents(&out)
            .iter()
            .filter_map(|d| serde_yaml::from_str(d).ok())
            .filter(|v: &serde_yaml::Value| !v.is_null())
            .collect();
        assert_eq!(docs.len(), 3, "{out}");
        for doc in &docs {
            assert_eq!(doc["metadata"]["labels"][LABEL], "crash", "{out}");
        }
        assert_eq!(docs[0]["metadata"]["labels"]["e2e"], "bulk");
    }
}
