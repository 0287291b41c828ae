//! Reading the manifests a `plan` is asked about: files or a directory of YAML (multi-
//! document) or JSON, as `kubectl apply -f` would read them.

use std::path::{Path, PathBuf};

use super::PlanCmdError;

/// One document of the manifests.
#[derive(Clone, Debug)]
pub struct Manifest {
    /// Where it came from (`file:index`).
    pub source: String,
    /// `kind`.
    pub kind: String,
    /// `metadata.name`.
    pub name: String,
    /// The document.
    pub value: serde_json::Value,
}

fn files(path: &Path) -> Result<Vec<PathBuf>, PlanCmdError> {
    let read_err = |e: std::io::Error| PlanCmdError::Read {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    if !path.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut out: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(read_err)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"))
        })
        .collect();
    out.sort();
    Ok(out)
}

/// Every document under `paths`, in order; empty documents are skipped.
pub fn load(paths: &[PathBuf]) -> Result<Vec<Manifest>, PlanCmdError> {
    let mut out = Vec::new();
    for path in paths {
        for file in files(path)? {
            let text = std::fs::read_to_string(&file).map_err(|e| PlanCmdError::Read {
                path: file.display().to_string(),
                reason: e.to_string(),
            })?;
            for (i, doc) in serde_yaml::Deserializer::from_str(&text).enumerate() {
                let source = format!("{}:{}", file.display(), i + 1);
                let value =
                    serde_json::Value::deserialize_yaml(doc).map_err(|e| PlanCmdError::Parse {
                        origin: source.clone(),
                        reason: e.to_string(),
                    })?;
                if value.is_null() {
                    continue;
                }
                let field = |p: &str| {
                    value
                        .pointer(p)
                        .and_then(|v| v.as_str())
                        .unwrap_or_default()
                        .to_owned()
                };
                let (kind, name) = (field("/kind"), field("/metadata/name"));
                if kind.is_empty() || name.is_empty() {
                    return Err(PlanCmdError::Parse {
                        origin: source,
                        reason: "a manifest needs kind and metadata.name".to_owned(),
                    });
                }
                out.push(Manifest {
                    source,
                    kind,
                    name,
                    value,
                });
            }
        }
    }
    Ok(out)
}

trait FromYaml: Sized {
    fn deserialize_yaml(doc: serde_yaml::Deserializer<'_>) -> Result<Self, serde_yaml::Error>;
}

impl FromYaml for serde_json::Value {
    fn deserialize_yaml(doc: serde_yaml::Deserializer<'_>) -> Result<Self, serde_yaml::Error> {
        serde::Deserialize::deserialize(doc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_document_yaml_is_split_and_empty_documents_skipped() {
        let dir = std::env::temp_dir().join(format!("plan-manifests-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(
            dir.join("a.yaml"),
            "---\napiVersion: v1\nkind: Tenant\nmetadata: {name: a}\n---\n---\nkind: Region\nmetadata: {name: r}\n",
        )
        .expect("write");
        std::fs::write(dir.join("notes.txt"), "not a manifest").expect("write");
        let m = load(std::slice::from_ref(&dir)).expect("load");
        assert_eq!(
            m.iter()
                .map(|m| (m.kind.as_str(), m.name.as_str()))
                .collect::<Vec<_>>(),
            [("Tenant", "a"), ("Region", "r")]
        );
        std::fs::write(dir.join("b.yaml"), "kind: Tenant\nmetadata: {}\n").expect("write");
        let err = load(std::slice::from_ref(&dir)).unwrap_err();
        assert!(err.to_string().contains("b.yaml:1"), "{err}");
        let _ = std::fs::remove_dir_all(dir);
    }
}
