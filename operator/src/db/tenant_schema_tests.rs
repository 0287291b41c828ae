use super::*;
use crate::db::rls::PolicyState;

const S: &str = "t_0123456789abcdef";
const R: &str = "phoenix_tenant_0123456789abcdef";

fn template() -> Template {
    Template {
        tables: tables().into_iter().map(str::to_owned).collect(),
        columns: vec![Column {
            table: "patients".into(),
            name: "id".into(),
            type_: "uuid".into(),
            not_null: true,
            default: Some("gen_random_uuid()".into()),
            generated: false,
        }],
        checks: vec![Defined {
            table: "patients".into(),
            name: "patients_version_check".into(),
            def: "CHECK ((version > 0))".into(),
        }],
        indexes: vec![Defined {
            table: "patients".into(),
            name: "patients_pkey".into(),
            def: "CREATE UNIQUE INDEX patients_pkey ON clinical.patients USING btree (tenant_id, id)"
                .into(),
        }],
        foreign_keys: vec![
            Defined {
                table: "encounters".into(),
                name: "encounters_tenant_id_patient_id_fkey".into(),
                def:
                    "FOREIGN KEY (tenant_id, patient_id) REFERENCES clinical.patients(tenant_id, id)"
                        .into(),
            },
            Defined {
                table: "patients".into(),
                name: "patients_tenant_id_fkey".into(),
                def: "FOREIGN KEY (tenant_id) REFERENCES catalog.tenants(id)".into(),
            },
        ],
        triggers: vec![Defined {
            table: "audit_events".into(),
            name: "audit_events_chain".into(),
            def: "CREATE TRIGGER audit_events_chain BEFORE INSERT ON clinical.audit_events FOR EACH ROW EXECUTE FUNCTION clinical.audit_chain()".into(),
        }],
        functions: vec![Defined {
            table: String::new(),
            name: "audit_chain".into(),
            def: "CREATE OR REPLACE FUNCTION clinical.audit_chain() RETURNS trigger AS $f$ SELECT 1 FROM clinical.audit_events $f$".into(),
        }],
        grants: [("patients", "phoenix_dataplane_us", "SELECT")]
            .iter()
            .map(|(a, b, c)| ((*a).into(), (*b).into(), (*c).into()))
            .collect(),
    }
}

fn healthy_rls(table: &str) -> TableState {
    let q =
        "(tenant_id = (NULLIF(current_setting('app.tenant_id'::text, true), ''::text))::bigint)";
    TableState {
        table: format!("{S}.{table}"),
        enabled: true,
        forced: true,
        policies: vec![PolicyState {
            name: phoenix_catalog::POLICY_NAME.into(),
            permissive: true,
            command: "ALL".into(),
            roles: vec!["public".into()],
            using: Some(q.into()),
            with_check: Some(q.into()),
        }],
    }
}

fn converged() -> SchemaSeen {
    SchemaSeen {
        tenant_id: Some(7),
        catalog_fks: Vec::new(),
        check_defs: [(
            ("patients".to_owned(), "patients_tenant_id_pin".to_owned()),
            "CHECK ((tenant_id = 7))".to_owned(),
        )]
        .into_iter()
        .collect(),
        template: template(),
        role: Some(true),
        login_acts_for_role: true,
        schema_owner: Some(R.into()),
        tables: tables()
            .into_iter()
            .map(|t| (t.to_owned(), R.to_owned()))
            .collect(),
        columns: [("patients".to_owned(), "id".to_owned())]
            .into_iter()
            .collect(),
        indexes: ["UNIQUE patients USING btree (tenant_id, id)".to_owned()]
            .into_iter()
            .collect(),
        constraints: [
            ("encounters", "encounters_tenant_id_patient_id_fkey"),
            ("patients", "patients_version_check"),
        ]
        .iter()
        .map(|(a, b)| ((*a).into(), (*b).into()))
        .collect(),
        triggers: [("audit_events".to_owned(), "audit_events_chain".to_owned())]
            .into_iter()
            .collect(),
        functions: [(
            "audit_chain".to_owned(),
            format!("CREATE OR REPLACE FUNCTION {S}.audit_chain() RETURNS trigger AS $f$ SELECT 1 FROM \"{S}\".audit_events $f$"),
        )]
        .into_iter()
        .collect(),
        grants: [
            ("schema", "phoenix_dataplane_us", "USAGE"),
            ("patients", "phoenix_dataplane_us", "SELECT"),
        ]
        .iter()
        .map(|(a, b, c)| ((*a).into(), (*b).into(), (*c).into()))
        .collect(),
        rls: tables().into_iter().map(healthy_rls).collect(),
    }
}

#[test]
fn requalify_moves_clinical_names_only() {
    assert_eq!(
        requalify(
            "REFERENCES clinical.patients(id), catalog.tenants, xclinical.y",
            S
        ),
        format!("REFERENCES \"{S}\".patients(id), catalog.tenants, xclinical.y")
    );
}

#[test]
fn a_new_schema_is_created_whole_in_dependency_order() {
    let seen = SchemaSeen {
        template: template(),
        login_acts_for_role: true,
        ..SchemaSeen::default()
    };
    let work = schema_changes(S, R, &seen).expect("work");
    assert!(work.creates && work.drift.is_empty());
    let sql: Vec<String> = work.ddl.iter().flat_map(|d| d.sql.clone()).collect();
    let at = |needle: &str| {
        sql.iter()
            .position(|s| s.contains(needle))
            .unwrap_or_else(|| panic!("{needle} not in {sql:#?}"))
    };
    assert!(sql[0].starts_with(&format!("CREATE ROLE \"{R}\" NOLOGIN")));
    assert!(sql[0].contains("NOBYPASSRLS"));
    assert!(sql[1].starts_with(&format!("COMMENT ON ROLE \"{R}\"")));
    assert_eq!(
        sql[2],
        format!("CREATE SCHEMA \"{S}\" AUTHORIZATION \"{R}\"")
    );
    let patients = at(&format!(
        "CREATE TABLE \"{S}\".\"patients\" (LIKE clinical.\"patients\" INCLUDING ALL)"
    ));
    let function = at(&format!("FUNCTION \"{S}\".audit_chain()"));
    assert!(sql[function].contains(&format!("FROM \"{S}\".audit_events")));
    let fk = at("ADD CONSTRAINT \"encounters_tenant_id_patient_id_fkey\"");
    assert!(sql[fk].contains(&format!("REFERENCES \"{S}\".patients")));
    let trigger = at(&format!("EXECUTE FUNCTION \"{S}\".audit_chain()"));
    let grant = at(&format!(
        "GRANT SELECT ON TABLE \"{S}\".\"patients\" TO \"phoenix_dataplane_us\""
    ));
    let usage = at(&format!("GRANT USAGE ON SCHEMA \"{S}\""));
    let forced = at(&format!(
        "ALTER TABLE \"{S}\".\"patients\" FORCE ROW LEVEL SECURITY"
    ));
    assert!(patients < function && function < fk && fk < trigger && trigger < usage);
    assert!(usage < grant && grant < forced);
}

#[test]
fn a_converged_schema_needs_nothing() {
    let work = schema_changes(S, R, &converged()).expect("work");
    assert!(!work.creates);
    assert_eq!(work.ddl, Vec::new());
    assert!(work.drift.is_empty());
}

#[test]
fn a_dropped_table_and_unforced_rls_are_drift_repaired() {
    let mut seen = converged();
    seen.tables.remove("sessions");
    seen.rls.retain(|t| !t.table.ends_with(".sessions"));
    seen.rls[0].forced = false;
    let work = schema_changes(S, R, &seen).expect("work");
    assert!(work.rls_drift);
    assert!(
        work.drift
            .iter()
            .any(|d| d == &format!("table {S}.sessions missing")),
        "{:?}",
        work.drift
    );
    assert!(
        work.drift
            .iter()
            .any(|d| d.contains("row level security was not forced")),
        "{:?}",
        work.drift
    );
    let sql: Vec<String> = work.ddl.iter().flat_map(|d| d.sql.clone()).collect();
    assert!(
        sql.iter()
            .any(|s| s.contains("CREATE TABLE") && s.contains("\"sessions\""))
    );
    assert!(
        sql.iter()
            .any(|s| s.contains("FORCE ROW LEVEL SECURITY") && s.contains("\"sessions\""))
    );
}

#[test]
fn a_role_the_operator_does_not_own_is_refused() {
    let mut seen = converged();
    seen.role = Some(false);
    assert_eq!(
        schema_changes(S, R, &seen),
        Err(SchemaRefused::ForeignRole(R.into()))
    );
    let mut seen = converged();
    seen.template.tables.remove("patients");
    assert!(matches!(
        schema_changes(S, R, &seen),
        Err(SchemaRefused::TemplateMissing(_))
    ));
}

#[test]
fn index_keys_ignore_names_and_schemas() {
    assert_eq!(
        index_key(
            "CREATE UNIQUE INDEX patients_pkey ON clinical.patients USING btree (tenant_id, id)",
            "clinical"
        ),
        index_key(
            &format!(
                "CREATE UNIQUE INDEX patients_tenant_id_id_idx ON {S}.patients USING btree (tenant_id, id)"
            ),
            S
        )
    );
    assert_ne!(
        index_key(
            "CREATE INDEX a ON clinical.patients USING btree (tenant_id, id)",
            "clinical"
        ),
        index_key(
            "CREATE UNIQUE INDEX a ON clinical.patients USING btree (tenant_id, id)",
            "clinical"
        )
    );
}

#[test]
fn what_a_later_migration_added_to_a_clinical_table_is_added_to_the_copy() {
    let mut seen = converged();
    seen.template.columns.push(Column {
        table: "patients".into(),
        name: "family_lower".into(),
        type_: "text".into(),
        not_null: false,
        default: Some("lower(family_name)".into()),
        generated: true,
    });
    seen.template.indexes.push(Defined {
        table: "patients".into(),
        name: "patients_family".into(),
        def: "CREATE INDEX patients_family ON clinical.patients USING btree (tenant_id, family_lower)".into(),
    });
    seen.template.checks.push(Defined {
        table: "patients".into(),
        name: "patients_family_check".into(),
        def: "CHECK ((family_lower <> ''::text))".into(),
    });
    let work = schema_changes(S, R, &seen).expect("work");
    let sql: Vec<String> = work.ddl.iter().flat_map(|d| d.sql.clone()).collect();
    assert_eq!(
        sql,
        [
            format!(
                "ALTER TABLE \"{S}\".\"patients\" ADD COLUMN \"family_lower\" text GENERATED ALWAYS AS (lower(family_name)) STORED"
            ),
            format!("CREATE INDEX ON \"{S}\".\"patients\" USING btree (tenant_id, family_lower)"),
            format!(
                "ALTER TABLE \"{S}\".\"patients\" ADD CONSTRAINT \"patients_family_check\" CHECK ((family_lower <> ''::text))"
            ),
        ]
    );
    assert_eq!(work.drift.len(), 3, "{:?}", work.drift);
}

#[test]
fn a_function_a_later_migration_replaced_is_replaced_in_the_copy() {
    let mut seen = converged();
    seen.template.functions[0].def = seen.template.functions[0]
        .def
        .replace("SELECT 1", "SELECT 2");
    let work = schema_changes(S, R, &seen).expect("work");
    assert_eq!(
        work.drift,
        [format!(
            "function {S}.audit_chain differs from the clinical one"
        )]
    );
    assert!(work.ddl[0].sql[0].contains("SELECT 2"), "{:?}", work.ddl);
}

#[test]
fn a_login_that_is_not_a_superuser_is_granted_the_role_it_creates_objects_for() {
    let seen = SchemaSeen {
        template: template(),
        ..SchemaSeen::default()
    };
    let work = schema_changes(S, R, &seen).expect("work");
    let sql: Vec<String> = work.ddl.iter().flat_map(|d| d.sql.clone()).collect();
    assert_eq!(sql[2], format!("GRANT \"{R}\" TO CURRENT_USER"));
    assert!(sql[3].starts_with("CREATE SCHEMA"), "{sql:#?}");
    assert!(work.drift.is_empty());
}

#[test]
fn a_privilege_the_clinical_original_does_not_give_a_dataplane_login_is_revoked() {
    let mut seen = converged();
    for (object, grantee, privilege) in [
        ("patients", "phoenix_dataplane_us", "TRUNCATE"),
        ("schema", "phoenix_dataplane_us", "CREATE"),
        ("patients", "reporting", "SELECT"),
    ] {
        seen.grants
            .insert((object.into(), grantee.into(), privilege.into()));
    }
    let work = schema_changes(S, R, &seen).expect("work");
    let sql: Vec<String> = work.ddl.iter().flat_map(|d| d.sql.clone()).collect();
    assert_eq!(
        sql,
        [
            format!("REVOKE TRUNCATE ON TABLE \"{S}\".\"patients\" FROM \"phoenix_dataplane_us\""),
            format!("REVOKE CREATE ON SCHEMA \"{S}\" FROM \"phoenix_dataplane_us\""),
        ]
    );
}

#[test]
fn a_new_schema_gets_no_foreign_key_to_the_catalog_and_pins_once_its_row_exists() {
    let seen = SchemaSeen {
        template: template(),
        login_acts_for_role: true,
        ..SchemaSeen::default()
    };
    let work = schema_changes(S, R, &seen).expect("work");
    let sql: Vec<String> = work.ddl.iter().flat_map(|d| d.sql.clone()).collect();
    assert!(
        !sql.iter().any(|s| s.contains("catalog.tenants")),
        "{sql:#?}"
    );
    assert!(!sql.iter().any(|s| s.contains("_pin")), "{sql:#?}");
    assert_eq!(
        work.pending_pins,
        vec![("patients".to_owned(), "tenant_id".to_owned())]
    );
    assert_eq!(
        crate::db::tenant_schema_pin::pins_for_new_row(S, &work.pending_pins, 42),
        vec![format!(
            "ALTER TABLE \"{S}\".\"patients\" ADD CONSTRAINT \"patients_tenant_id_pin\" CHECK ((tenant_id = 42))"
        )]
    );
}

#[test]
fn an_old_copy_drops_its_catalog_foreign_key_and_gets_its_pin_as_drift() {
    let mut seen = converged();
    seen.check_defs.clear();
    seen.catalog_fks = vec![("patients".into(), "patients_tenant_id_fkey".into())];
    let work = schema_changes(S, R, &seen).expect("work");
    assert!(work.pending_pins.is_empty());
    assert_eq!(
        work.drift,
        vec![
            format!("foreign key patients_tenant_id_fkey on {S}.patients references the catalog"),
            format!("check patients_tenant_id_pin pinning {S}.patients to tenant 7 missing"),
        ]
    );
    let sql: Vec<String> = work.ddl.iter().flat_map(|d| d.sql.clone()).collect();
    let drop = sql
        .iter()
        .position(|s| s.contains("DROP CONSTRAINT \"patients_tenant_id_fkey\""))
        .expect("dropped");
    let pin = sql
        .iter()
        .position(|s| s.ends_with("CHECK ((tenant_id = 7))"))
        .expect("pinned");
    assert!(drop < pin);
}

#[test]
fn a_pin_to_another_tenant_is_replaced() {
    let mut seen = converged();
    seen.check_defs.insert(
        ("patients".into(), "patients_tenant_id_pin".into()),
        "CHECK ((tenant_id = 8))".into(),
    );
    let work = schema_changes(S, R, &seen).expect("work");
    assert_eq!(
        work.drift,
        vec![format!(
            "check patients_tenant_id_pin on {S}.patients is CHECK ((tenant_id = 8)), not CHECK ((tenant_id = 7))"
        )]
    );
    let sql: Vec<String> = work.ddl.iter().flat_map(|d| d.sql.clone()).collect();
    assert_eq!(sql.len(), 2, "{sql:#?}");
    assert!(sql[0].contains("DROP CONSTRAINT \"patients_tenant_id_pin\""));
}
