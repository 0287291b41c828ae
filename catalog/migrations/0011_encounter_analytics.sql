-- Covering indexes for the encounter analytics (the data plane's `analytics/query.rs`),
-- so that a year of a large tenant is answered from index pages alone (index-only scans:
-- no heap page, and so no page shared with other tenants' rows, is read). Same keys as the
-- indexes they replace (0009), so the FHIR searches, `_sort=date` keyset paging and the
-- foreign key checks use them as before. Every index leads with tenant_id.
--
-- Encounter: the range on (tenant_id, period_start), carrying what the analytics group and
-- measure by.
DROP INDEX IF EXISTS clinical.encounters_period_id;
CREATE INDEX encounters_period_id ON clinical.encounters (tenant_id, period_start, id)
    INCLUDE (status, period_end, department, provider);

-- DocumentReference: the notes of an encounter, carrying the status (`current` counts).
DROP INDEX IF EXISTS clinical.document_references_encounter;
CREATE INDEX document_references_encounter ON clinical.document_references (tenant_id, encounter_id)
    INCLUDE (status);
