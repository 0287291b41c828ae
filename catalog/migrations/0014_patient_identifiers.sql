-- Patient `identifier` search on an index (it was a jsonb_path_exists over every patient
-- of the tenant). One row per identifier of the current version of each patient, kept
-- equal to the resource by the data plane's store in the transaction of each write
-- (`fhir/store.rs`, `replace_identifiers`); a patient's deletion cascades to its rows.
-- Under forced RLS like every clinical table (catalog::rls::TENANT_TABLES).
--
-- `position` is the identifier's index in `Patient.identifier`; identifiers with neither
-- a system nor a value have no row (the store follows the same rule). The key serves the
-- store's replacement and the cascade; `(tenant_id, value, system)` serves the searches
-- `system|value`, `value` and `|value`.
CREATE TABLE clinical.patient_identifiers (
    tenant_id  bigint  NOT NULL,
    patient_id uuid    NOT NULL,
    position   integer NOT NULL,
    system     text,
    value      text,
    PRIMARY KEY (tenant_id, patient_id, position),
    FOREIGN KEY (tenant_id, patient_id) REFERENCES clinical.patients (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX patient_identifiers_value ON clinical.patient_identifiers (tenant_id, value, system);

-- Backfill: the identifiers of the patients stored so far.
INSERT INTO clinical.patient_identifiers (tenant_id, patient_id, position, system, value)
SELECT p.tenant_id, p.id, (i.n - 1)::integer, i.identifier->>'system', i.identifier->>'value'
FROM clinical.patients p
CROSS JOIN LATERAL jsonb_array_elements(
    CASE WHEN jsonb_typeof(p.resource->'identifier') = 'array'
         THEN p.resource->'identifier' ELSE '[]'::jsonb END
) WITH ORDINALITY AS i(identifier, n)
WHERE jsonb_typeof(i.identifier->'system') = 'string'
   OR jsonb_typeof(i.identifier->'value') = 'string';
