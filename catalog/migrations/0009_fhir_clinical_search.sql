-- Search columns and indexes of the FHIR Encounter, DocumentReference and
-- MedicationRequest (the data plane's `fhir/encounter.rs`, `document_reference.rs`,
-- `medication_request.rs` name the columns they fill). Every index leads with tenant_id.

-- Encounter: `date` is sorted and paged by (period_start, id) in both directions, the
-- keyset of `_sort=date` / `_sort=-date`; `status` and `practitioner` (the provider) are
-- equalities; the department and provider also group the analytics.
DROP INDEX IF EXISTS clinical.encounters_period;
CREATE INDEX encounters_period_id ON clinical.encounters (tenant_id, period_start, id);
CREATE INDEX encounters_status ON clinical.encounters (tenant_id, status);
CREATE INDEX encounters_provider ON clinical.encounters (tenant_id, provider);
CREATE INDEX encounters_department ON clinical.encounters (tenant_id, department);

-- DocumentReference: `date` (its instant), `encounter` (the first context.encounter),
-- which, like the patient, must be a row of the same tenant.
ALTER TABLE clinical.document_references ADD COLUMN document_date timestamptz;
ALTER TABLE clinical.document_references
    ADD CONSTRAINT document_references_encounter
    FOREIGN KEY (tenant_id, encounter_id) REFERENCES clinical.encounters (tenant_id, id);
CREATE INDEX document_references_date ON clinical.document_references (tenant_id, document_date);
CREATE INDEX document_references_encounter ON clinical.document_references (tenant_id, encounter_id);

-- MedicationRequest: `encounter` (same tenant, as above) and `status`.
ALTER TABLE clinical.medication_requests
    ADD CONSTRAINT medication_requests_encounter
    FOREIGN KEY (tenant_id, encounter_id) REFERENCES clinical.encounters (tenant_id, id);
CREATE INDEX medication_requests_encounter ON clinical.medication_requests (tenant_id, encounter_id);
CREATE INDEX medication_requests_status ON clinical.medication_requests (tenant_id, status);
