//! Writes the CRD YAML generated from the Rust types into the repository.
//!
//! `crdgen` prints it; `crdgen --write` writes `crds/crds.yaml` and the Helm chart's copy.

use std::path::Path;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let yaml = phoenix_crds::to_yaml()?;
    if std::env::args().any(|a| a == "--write") {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .unwrap_or(Path::new("."))
            .to_path_buf();
        for target in phoenix_crds::COMMITTED_PATHS {
            let path = root.join(target);
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::write(&path, &yaml)?;
            eprintln!("wrote {}", path.display());
        }
    } else {
        print!("{yaml}");
    }
    Ok(())
}
