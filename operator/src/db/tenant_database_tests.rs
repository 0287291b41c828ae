use super::*;

fn template() -> Template {
    let mut t = Template::default();
    for login in ["phoenix_dataplane_eu", "phoenix_dataplane2_eu"] {
        t.grants
            .insert(("patients".to_owned(), login.to_owned(), "SELECT".to_owned()));
    }
    t
}

#[test]
fn a_new_database_is_created_owned_by_the_role_and_closed_to_public() {
    let seen = DatabaseSeen {
        template: template(),
        ..DatabaseSeen::default()
    };
    let work = server_changes("tdb_0123", "phoenix_tenant_0123", &seen).expect("work");
    assert!(work.creates());
    assert_eq!(
        work.create.as_deref(),
        Some("CREATE DATABASE \"tdb_0123\" OWNER \"phoenix_tenant_0123\"")
    );
    assert!(work.drift.is_empty(), "a new database is no drift");
    let before: Vec<String> = work.before.iter().flat_map(|d| d.sql.clone()).collect();
    assert!(before[0].starts_with("CREATE ROLE \"phoenix_tenant_0123\" NOLOGIN"));
    assert!(
        before
            .iter()
            .any(|s| s == "GRANT \"phoenix_tenant_0123\" TO CURRENT_USER")
    );
    let after: Vec<String> = work.after.iter().flat_map(|d| d.sql.clone()).collect();
    assert!(
        after
            .contains(&"REVOKE CONNECT, TEMPORARY ON DATABASE \"tdb_0123\" FROM PUBLIC".to_owned()),
        "{after:?}"
    );
    for login in ["phoenix_dataplane_eu", "phoenix_dataplane2_eu"] {
        assert!(
            after.contains(&format!(
                "GRANT CONNECT ON DATABASE \"tdb_0123\" TO \"{login}\""
            )),
            "{after:?}"
        );
    }
}

#[test]
fn a_converged_database_needs_nothing_and_drift_is_named() {
    let mut seen = DatabaseSeen {
        role: Some(true),
        login_acts_for_role: true,
        owner: Some("phoenix_tenant_0123".to_owned()),
        template: template(),
        ..DatabaseSeen::default()
    };
    for login in ["phoenix_dataplane_eu", "phoenix_dataplane2_eu"] {
        seen.acl.insert((login.to_owned(), "CONNECT".to_owned()));
    }
    let work = server_changes("tdb_0123", "phoenix_tenant_0123", &seen).expect("work");
    assert!(!work.creates());
    assert!(work.before.is_empty() && work.after.is_empty(), "{work:?}");
    seen.acl.insert(("PUBLIC".to_owned(), "CONNECT".to_owned()));
    seen.acl
        .insert(("phoenix_dataplane_eu".to_owned(), "CREATE".to_owned()));
    seen.acl
        .remove(&("phoenix_dataplane2_eu".to_owned(), "CONNECT".to_owned()));
    seen.acl
        .insert(("someone_else".to_owned(), "CONNECT".to_owned()));
    let work = server_changes("tdb_0123", "phoenix_tenant_0123", &seen).expect("work");
    let text = work.drift.join("; ");
    assert!(
        text.contains("CONNECT on database tdb_0123 for PUBLIC not desired"),
        "{text}"
    );
    assert!(
        text.contains("CREATE on database tdb_0123 for phoenix_dataplane_eu not desired"),
        "{text}"
    );
    assert!(
        text.contains("CONNECT on database tdb_0123 for phoenix_dataplane2_eu missing"),
        "{text}"
    );
    assert!(
        !text.contains("someone_else"),
        "a role the operator does not manage is untouched"
    );
}

#[test]
fn a_role_the_operator_does_not_own_is_refused() {
    let seen = DatabaseSeen {
        role: Some(false),
        ..DatabaseSeen::default()
    };
    assert!(matches!(
        server_changes("tdb_0123", "phoenix_tenant_0123", &seen),
        Err(SchemaRefused::ForeignRole(_))
    ));
}

#[test]
fn the_inside_template_drops_the_catalog_foreign_keys_only() {
    let mut t = template();
    for (name, def) in [
        (
            "patients_tenant_id_fkey",
            "FOREIGN KEY (tenant_id) REFERENCES catalog.tenants(id)",
        ),
        (
            "encounters_patient_fkey",
            "FOREIGN KEY (tenant_id, patient_id) REFERENCES clinical.patients(tenant_id, id)",
        ),
    ] {
        t.foreign_keys.push(super::super::tenant_schema::Defined {
            table: "x".to_owned(),
            name: name.to_owned(),
            def: def.to_owned(),
        });
    }
    let inside = inside_template(&t);
    assert_eq!(inside.foreign_keys.len(), 1);
    assert_eq!(inside.foreign_keys[0].name, "encounters_patient_fkey");
}
