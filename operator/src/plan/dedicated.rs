//! What `plan` shows of a `Dedicated` tenant's database (ADR 0010): the server work; what
//! its database needs inside is planned once it exists.

use super::report::Change;
use crate::db::tenant_database::ServerWork;

/// The changes of `w` in `region`; names derived from the UID are shown as placeholders
/// unless the Tenant is `known` (placed, so its UID is the real one).
pub fn changes(w: &ServerWork, known: bool, region: &str) -> Vec<Change> {
    let name = |text: &str| {
        if known {
            text.to_owned()
        } else {
            text.replace(&w.database, "tdb_<from the Tenant's UID>")
                .replace(&w.role, "phoenix_tenant_<from the Tenant's UID>")
        }
    };
    let mut out = Vec::new();
    if let Some(create) = &w.create {
        out.push(Change::new(
            "create",
            name(&format!("database {} in {region}", w.database)),
            name(&format!(
                "{create}; then the catalog migrations, ownership, grants and forced RLS inside"
            )),
        ));
    }
    for d in w.before.iter().chain(&w.after) {
        out.push(Change::new(
            if w.creates() { "create" } else { "repair" },
            name(&format!("{} in {region}", d.target)),
            name(&d.summary),
        ));
    }
    out
}
