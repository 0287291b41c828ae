-- The FHIR API keeps every version of a resource: the current one stays in its table
-- (clinical.patients, ...), and each version written, as well as each deletion (a row
-- without resource), is appended here. Read by `_history/{vid}` and to answer 410 Gone
-- for a deleted id. Keyed by tenant first like every clinical table, under the same
-- forced row-level security.
CREATE TABLE clinical.fhir_history (
    tenant_id     bigint      NOT NULL REFERENCES catalog.tenants (id),
    resource_type text        NOT NULL,
    id            uuid        NOT NULL,
    version       integer     NOT NULL CHECK (version > 0),
    resource      jsonb,
    recorded_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, resource_type, id, version)
);

-- Patient search: `family` / `name` match the start of a name in any case, `birthdate`
-- compares ranges of days.
CREATE INDEX patients_family_lower ON clinical.patients (tenant_id, lower(family_name) text_pattern_ops);
CREATE INDEX patients_given_lower ON clinical.patients (tenant_id, lower(given_name) text_pattern_ops);
CREATE INDEX patients_birth_date ON clinical.patients (tenant_id, birth_date);
