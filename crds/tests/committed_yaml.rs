//! The CRD YAML committed in the repository must be what the Rust types generate.

use std::path::Path;

#[test]
fn committed_crd_yaml_matches_the_rust_types() {
    let generated = phoenix_crds::to_yaml().expect("CRDs serialize to YAML");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for target in phoenix_crds::COMMITTED_PATHS {
        let committed = std::fs::read_to_string(root.join(target)).unwrap_or_default();
        assert!(
            committed == generated,
            "{target} is out of date with the types in crds/src; run `cargo run -p phoenix-crds --bin crdgen -- --write` and commit the result"
        );
    }
}

#[test]
fn every_schema_property_has_a_description() {
    fn walk(path: &str, schema: &serde_json::Value, missing: &mut Vec<String>) {
        if let Some(props) = schema.get("properties").and_then(|p| p.as_object()) {
            for (name, prop) in props {
                let here = format!("{path}.{name}");
                let top_level =
                    matches!(name.as_str(), "apiVersion" | "kind" | "metadata") && path.is_empty();
                if !top_level && prop.get("description").is_none() {
                    missing.push(here.clone());
                }
                walk(&here, prop, missing);
            }
        }
        if let Some(items) = schema.get("items") {
            walk(&format!("{path}[]"), items, missing);
        }
    }
    let mut missing = Vec::new();
    for crd in phoenix_crds::all() {
        let value = serde_json::to_value(&crd).expect("CRD serializes");
        let schema = &value["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
        walk(&crd.spec.names.kind, schema, &mut missing);
    }
    assert!(
        missing.is_empty(),
        "fields without a description (kubectl explain shows nothing): {missing:?}"
    );
}

#[test]
fn all_resources_are_cluster_scoped_with_status_subresource() {
    for crd in phoenix_crds::all() {
        assert_eq!(crd.spec.scope, "Cluster", "{}", crd.spec.names.kind);
        assert_eq!(crd.spec.group, phoenix_crds::GROUP);
        let version = &crd.spec.versions[0];
        assert_eq!(version.name, "v1alpha1");
        assert!(
            version
                .subresources
                .as_ref()
                .and_then(|s| s.status.as_ref())
                .is_some(),
            "{} has no status subresource",
            crd.spec.names.kind
        );
    }
}
