//! The Tenant's plan: pure. What its catalog row must be, how it differs from the row the
//! region holds, and what the tenant waits on.

use std::sync::Arc;

use kube::ResourceExt;
use phoenix_catalog::{TenantRecord, TenantRow, TenantState};
use phoenix_crds::{Isolation, Placement, Tenant};

use super::deref::TenantRefs;
use crate::controller::error::PlanError;
use crate::db::rls::drift;
use crate::db::tenant_database::{ServerWork, server_changes};
use crate::db::tenant_schema::{SchemaWork, schema_changes};
use crate::reason::Reason;

/// How the catalog row changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RowChange {
    /// The row is created: the data plane starts serving the tenant.
    Insert,
    /// These fields change.
    Update(Vec<&'static str>),
    /// Nothing changes.
    Unchanged,
}

/// What a Tenant's reconcile does.
// One plan per reconcile, never stored in bulk: boxing the row would only add noise.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TenantPlan {
    /// Nothing can be written yet.
    Wait {
        /// Why.
        reason: Reason,
        /// What it waits for.
        message: String,
    },
    /// The catalog row converges.
    Converge {
        /// The row as it must be.
        row: TenantRow,
        /// How the stored row changes.
        change: RowChange,
        /// Its catalog id, when it exists.
        catalog_id: Option<i64>,
        /// A `Schema` tenant's schema work (empty DDL when converged), before the row.
        schema: Option<Box<SchemaWork>>,
        /// A `Dedicated` tenant's server work (role, database, who may connect), before
        /// the row; what its database's `clinical` schema needs is planned in apply, once
        /// the database exists and is migrated (ADR 0010).
        dedicated: Option<Box<ServerWork>>,
    },
}

/// The catalog row of `tenant` placed at `placement`.
pub fn catalog_row(tenant: &Tenant, placement: &Placement) -> TenantRow {
    TenantRow {
        uid: tenant.uid().unwrap_or_default(),
        name: tenant.name_any(),
        display_name: tenant.spec.display_name.clone(),
        hostname: tenant.spec.dns.hostname.to_lowercase(),
        home_region: placement.region.clone(),
        data_residency: tenant.spec.data_residency.clone(),
        isolation: match tenant.spec.database.isolation {
            Isolation::Shared => phoenix_catalog::Isolation::Shared,
            Isolation::Schema => phoenix_catalog::Isolation::Schema,
            Isolation::Dedicated => phoenix_catalog::Isolation::Dedicated,
        },
        state: if tenant.spec.suspended {
            TenantState::Suspended
        } else {
            TenantState::Active
        },
        requests_per_second: tenant.spec.limits.requests_per_second,
        max_users: tenant.spec.limits.max_users,
        generation: tenant.metadata.generation.unwrap_or(0),
        schema: (tenant.spec.database.isolation == Isolation::Schema)
            .then(|| phoenix_catalog::schemas::tenant_schema(&tenant.uid().unwrap_or_default())),
        database: (tenant.spec.database.isolation == Isolation::Dedicated)
            .then(|| phoenix_catalog::schemas::tenant_database(&tenant.uid().unwrap_or_default())),
        // Set by apply for a tenant with an RDS instance of its own (ADR 0013).
        database_server: None,
    }
}

/// How `stored` must change to become `desired`. The home region and isolation never
/// change once written; the generation alone does not touch the row (the data plane would
/// be notified for nothing).
pub fn row_change(stored: Option<&TenantRecord>, desired: &TenantRow) -> RowChange {
    let Some(stored) = stored else {
        return RowChange::Insert;
    };
    let s = &stored.row;
    let mut fields = Vec::new();
    if s.display_name != desired.display_name {
        fields.push("displayName");
    }
    if s.hostname != desired.hostname {
        fields.push("hostname");
    }
    if s.data_residency != desired.data_residency {
        fields.push("dataResidency");
    }
    if s.state != desired.state {
        fields.push("state");
    }
    if s.requests_per_second != desired.requests_per_second {
        fields.push("requestsPerSecond");
    }
    if s.max_users != desired.max_users {
        fields.push("maxUsers");
    }
    if fields.is_empty() {
        RowChange::Unchanged
    } else {
        RowChange::Update(fields)
    }
}

/// A host name must be unique across every region, not only within one region's catalog:
/// the oldest Tenant claiming it keeps it.
pub fn hostname_owner(tenant: &Tenant, tenants: &[Arc<Tenant>]) -> Option<String> {
    let host = tenant.spec.dns.hostname.to_lowercase();
    let key = |t: &Tenant| {
        (
            t.metadata.creation_timestamp.clone().map(|c| c.0),
            t.name_any(),
        )
    };
    tenants
        .iter()
        .filter(|t| t.uid() != tenant.uid() && t.metadata.deletion_timestamp.is_none())
        .filter(|t| t.spec.dns.hostname.to_lowercase() == host)
        .filter(|t| key(t) < key(tenant))
        .map(|t| t.name_any())
        .min()
}

/// What must hold before a tenant is even placed.
pub fn precheck(tenant: &Tenant, tenants: &[Arc<Tenant>]) -> Result<(), PlanError> {
    if let Some(owner) = hostname_owner(tenant, tenants) {
        return Err(crate::db::NameConflict::Hostname {
            hostname: tenant.spec.dns.hostname.clone(),
            owner,
        }
        .into());
    }
    Ok(())
}

/// Plans a placed tenant's pass.
pub fn plan(
    tenant: &Tenant,
    placement: &Placement,
    refs: &TenantRefs,
) -> Result<TenantPlan, PlanError> {
    let region = &placement.region;
    if let Some(why) = &refs.region_not_ready {
        return Ok(TenantPlan::Wait {
            reason: Reason::RegionNotReady,
            message: format!("region {region} is not Ready: {why}"),
        });
    }
    let Some(seen) = &refs.seen else {
        return Ok(TenantPlan::Wait {
            reason: Reason::RegionNotReady,
            message: format!("region {region} is not Ready: its database was not read"),
        });
    };
    let latest = phoenix_catalog::latest_version();
    if seen.schema_version < latest {
        return Ok(TenantPlan::Wait {
            reason: Reason::RegionNotMigrated,
            message: format!(
                "region {region} database is at schema version {}, waiting for {latest}",
                seen.schema_version
            ),
        });
    }
    // Isolation first: a catalog row makes the data plane serve the tenant.
    let drifted: Vec<String> = phoenix_catalog::TENANT_TABLES
        .iter()
        .filter_map(|table| match seen.rls.iter().find(|s| s.table == *table) {
            None => Some(format!("{table}: table missing")),
            Some(state) => {
                let d = drift(state);
                (!d.is_empty()).then(|| {
                    let d: Vec<String> = d.iter().map(ToString::to_string).collect();
                    format!("{table}: {}", d.join(", "))
                })
            }
        })
        .collect();
    if !drifted.is_empty() {
        return Ok(TenantPlan::Wait {
            reason: Reason::RLSDrift,
            message: format!(
                "row level security on the shared tables is not in force ({}); region {region} repairs it",
                drifted.join("; ")
            ),
        });
    }
    let row = catalog_row(tenant, placement);
    if let Some(conflict) = seen.rows.conflict(&row) {
        return Err(conflict.into());
    }
    let change = row_change(seen.rows.own.as_ref(), &row);
    // The schema is complete and under forced RLS before the row makes it served.
    let schema = match (&row.schema, &seen.schema) {
        (Some(name), Some(found)) => Some(Box::new(schema_changes(
            name,
            &phoenix_catalog::schemas::tenant_role(&row.uid),
            found,
        )?)),
        (Some(name), None) => {
            return Ok(TenantPlan::Wait {
                reason: Reason::RegionNotReady,
                message: format!("schema {name} in region {region} was not read"),
            });
        }
        (None, _) => None,
    };
    let dedicated = match (&row.database, &seen.database) {
        (Some(name), Some(found)) => Some(Box::new(server_changes(
            name,
            &phoenix_catalog::schemas::tenant_role(&row.uid),
            found,
        )?)),
        (Some(name), None) => {
            return Ok(TenantPlan::Wait {
                reason: Reason::RegionNotReady,
                message: format!("database {name} in region {region} was not read"),
            });
        }
        (None, _) => None,
    };
    Ok(TenantPlan::Converge {
        catalog_id: seen.rows.own.as_ref().map(|r| r.id),
        row,
        change,
        schema,
        dedicated,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::providers::RowsSeen;
    use crate::controller::tenant::deref::Seen;
    use crate::db::rls::{PolicyState, TableState};
    use phoenix_catalog::{POLICY_NAME, TENANT_TABLES};

    fn tenant(extra: serde_json::Value) -> Tenant {
        let mut spec = serde_json::json!({
            "displayName": "Mercy", "dataResidency": ["US"],
            "dns": {"hostname": "Mercy.Example.test"}, "limits": {"requestsPerSecond": 50, "maxUsers": 10}
        });
        if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
            s.extend(e.clone());
        }
        let mut t = Tenant::new("mercy", serde_json::from_value(spec).expect("spec"));
        t.metadata.uid = Some("uid-1".into());
        t.metadata.generation = Some(3);
        t
    }

    fn placement() -> Placement {
        Placement {
            region: "us-east-1".into(),
            aws_region: "us-east-1".into(),
            jurisdiction: "US".into(),
        }
    }

    fn healthy_rls() -> Vec<TableState> {
        let q = "(tenant_id = (NULLIF(current_setting('app.tenant_id'::text, true), ''::text))::bigint)";
        TENANT_TABLES
            .iter()
            .map(|t| TableState {
                table: (*t).into(),
                enabled: true,
                forced: true,
                policies: vec![PolicyState {
                    name: POLICY_NAME.into(),
                    permissive: true,
                    command: "ALL".into(),
                    roles: vec!["public".into()],
                    using: Some(q.into()),
                    with_check: Some(q.into()),
                }],
            })
            .collect()
    }

    fn refs(rows: RowsSeen) -> TenantRefs {
        let region: phoenix_crds::RegionSpec = serde_json::from_value(serde_json::json!({
            "awsRegion": "us-east-1", "dataResidency": ["US"],
            "database": {"writer": {"connectionSecretRef": {"namespace": "n", "name": "s", "key": "k"}}}
        }))
        .expect("region");
        TenantRefs {
            region: Arc::new(phoenix_crds::Region::new("us-east-1", region)),
            region_not_ready: None,
            seen: Some(Seen {
                schema_version: phoenix_catalog::latest_version(),
                rls: healthy_rls(),
                rows,
                schema: None,
                database: None,
            }),
            tenant_db: None,
            server: None,
        }
    }

    #[test]
    fn the_catalog_row_maps_the_spec_with_explicit_string_forms() {
        let row = catalog_row(
            &tenant(serde_json::json!({"suspended": true})),
            &placement(),
        );
        assert_eq!(row.uid, "uid-1");
        assert_eq!(
            row.hostname, "mercy.example.test",
            "host names are lowercased"
        );
        assert_eq!(row.home_region, "us-east-1");
        assert_eq!(row.state, TenantState::Suspended);
        assert_eq!(row.isolation.as_str(), "Shared");
        assert_eq!(
            (row.requests_per_second, row.max_users, row.generation),
            (50, 10, 3)
        );
    }

    #[test]
    fn a_new_tenant_inserts_its_row_and_an_unchanged_one_touches_nothing() {
        let t = tenant(serde_json::json!({}));
        let p = plan(&t, &placement(), &refs(RowsSeen::default())).expect("plan");
        assert!(
            matches!(
                p,
                TenantPlan::Converge {
                    change: RowChange::Insert,
                    catalog_id: None,
                    ..
                }
            ),
            "{p:?}"
        );
        let mut stored = catalog_row(&t, &placement());
        stored.generation = 1; // a newer generation alone is no change
        let own = TenantRecord { id: 7, row: stored };
        let seen = RowsSeen {
            own: Some(own.clone()),
            ..RowsSeen::default()
        };
        let p = plan(&t, &placement(), &refs(seen)).expect("plan");
        assert_eq!(
            p,
            TenantPlan::Converge {
                row: catalog_row(&t, &placement()),
                change: RowChange::Unchanged,
                catalog_id: Some(7),
                schema: None,
                dedicated: None,
            }
        );
        let suspended =
            tenant(serde_json::json!({"suspended": true, "displayName": "Mercy Health"}));
        assert_eq!(
            row_change(Some(&own), &catalog_row(&suspended, &placement())),
            RowChange::Update(vec!["displayName", "state"])
        );
    }

    #[test]
    fn a_tenant_waits_for_its_region_its_migrations_and_rls() {
        let t = tenant(serde_json::json!({}));
        let mut r = refs(RowsSeen::default());
        r.region_not_ready = Some("cannot connect".into());
        let reason = |r: &TenantRefs| match plan(&t, &placement(), r).expect("plan") {
            TenantPlan::Wait { reason, message } => (reason, message),
            other => panic!("{other:?}"),
        };
        let (why, message) = reason(&r);
        assert_eq!(why, Reason::RegionNotReady);
        assert!(
            message.contains("region us-east-1 is not Ready: cannot connect"),
            "{message}"
        );
        r.region_not_ready = None;
        if let Some(seen) = r.seen.as_mut() {
            seen.schema_version = 1;
        }
        assert_eq!(reason(&r).0, Reason::RegionNotMigrated);
        let mut r = refs(RowsSeen::default());
        if let Some(seen) = r.seen.as_mut() {
            seen.rls[2].forced = false;
        }
        let (why, message) = reason(&r);
        assert_eq!(why, Reason::RLSDrift);
        let table = phoenix_catalog::TENANT_TABLES[2];
        assert!(
            message.contains(&format!("{table}: row level security was not forced")),
            "{message}"
        );
    }

    #[test]
    fn a_schema_tenant_publishes_its_schema_and_plans_it_before_its_row() {
        let t = tenant(serde_json::json!({"database": {"isolation": "Schema"}}));
        let row = catalog_row(&t, &placement());
        let schema = phoenix_catalog::schemas::tenant_schema("uid-1");
        assert_eq!(row.schema.as_deref(), Some(schema.as_str()));
        assert_eq!(
            catalog_row(&tenant(serde_json::json!({})), &placement()).schema,
            None
        );
        // Not read yet: it waits rather than serving a tenant without its tables.
        let waiting = plan(&t, &placement(), &refs(RowsSeen::default())).expect("plan");
        assert!(matches!(waiting, TenantPlan::Wait { .. }), "{waiting:?}");
        let mut r = refs(RowsSeen::default());
        if let Some(seen) = r.seen.as_mut() {
            let mut found = crate::db::tenant_schema::SchemaSeen {
                login_acts_for_role: true,
                ..Default::default()
            };
            found.template.tables = crate::db::tenant_schema::tables()
                .into_iter()
                .map(str::to_owned)
                .collect();
            seen.schema = Some(found);
        }
        match plan(&t, &placement(), &r).expect("plan") {
            TenantPlan::Converge {
                schema: Some(work), ..
            } => {
                assert!(work.creates);
                assert!(work.drift.is_empty(), "a new schema is no drift");
                assert!(
                    work.ddl[1].sql[0].starts_with(&format!("CREATE SCHEMA \"{schema}\"")),
                    "{:?}",
                    work.ddl[1]
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn names_claimed_by_other_live_rows_are_refused() {
        let t = tenant(serde_json::json!({}));
        let host = RowsSeen {
            hostname_owner: Some("st-lukes".into()),
            ..RowsSeen::default()
        };
        let err = plan(&t, &placement(), &refs(host)).unwrap_err();
        assert!(
            err.to_string().contains("already used by tenant st-lukes"),
            "{err}"
        );
        let name = RowsSeen {
            name_owner: Some("uid-old".into()),
            ..RowsSeen::default()
        };
        let err = plan(&t, &placement(), &refs(name)).unwrap_err();
        assert!(
            matches!(err, PlanError::Conflict(crate::db::NameConflict::Name { ref owner_uid, .. }) if owner_uid == "uid-old"),
            "{err}"
        );
    }

    #[test]
    fn a_dedicated_tenant_publishes_its_database_and_plans_it_before_its_row() {
        let dedicated = tenant(serde_json::json!({"database": {"isolation": "Dedicated"}}));
        assert!(precheck(&dedicated, &[]).is_ok());
        let row = catalog_row(&dedicated, &placement());
        let name = phoenix_catalog::schemas::tenant_database("uid-1");
        assert_eq!(row.database.as_deref(), Some(name.as_str()));
        assert_eq!(row.schema, None);
        let waiting = plan(&dedicated, &placement(), &refs(RowsSeen::default())).expect("plan");
        assert!(matches!(waiting, TenantPlan::Wait { .. }), "{waiting:?}");
        let mut r = refs(RowsSeen::default());
        if let Some(seen) = r.seen.as_mut() {
            seen.database = Some(crate::db::tenant_database::DatabaseSeen {
                login_acts_for_role: true,
                ..Default::default()
            });
        }
        match plan(&dedicated, &placement(), &r).expect("plan") {
            TenantPlan::Converge {
                dedicated: Some(work),
                ..
            } => {
                assert!(work.creates());
                assert_eq!(
                    work.create.as_deref(),
                    Some(
                        format!(
                            "CREATE DATABASE \"{name}\" OWNER \"phoenix_tenant_{}\"",
                            &name[4..]
                        )
                        .as_str()
                    )
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_oldest_tenant_keeps_a_host_name() {
        let mut older = tenant(serde_json::json!({}));
        older.metadata.name = Some("aaa-older".into());
        older.metadata.uid = Some("uid-0".into());
        let t = tenant(serde_json::json!({}));
        let err = precheck(&t, &[Arc::new(older)]).unwrap_err();
        assert!(err.to_string().contains("aaa-older"), "{err}");
    }
}
