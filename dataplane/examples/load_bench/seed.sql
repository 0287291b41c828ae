-- The load benchmark's data (dataplane/examples/load_bench.rs), generated in SQL.
-- Placeholders, replaced by the program: __TENANTS__ (the catalog ids, an array literal),
-- __LARGE__ (how many of the first ids are large), __LARGE_PATIENTS__, __LARGE_ENCOUNTERS__,
-- __SMALL_PATIENTS__, __SMALL_ENCOUNTERS__.
--
-- Patient ids are deterministic (00000000-0000-4000-8000-<n, 12 digits>), the same n in
-- every tenant, so a load generator can name a patient of any tenant without a lookup.
-- Resources carry what the data plane would have stored (id, meta) and search columns
-- hold what it would have extracted. Rows are inserted in time order, so every heap page
-- mixes tenants as a live database's do.
SET synchronous_commit = on;

CREATE TEMP TABLE bench_tenants AS
SELECT id AS tenant_id,
       (row_number() OVER (ORDER BY id)) <= __LARGE__ AS large
FROM unnest(ARRAY[__TENANTS__]::bigint[]) id;

CREATE TEMP TABLE bench_patients AS
SELECT t.tenant_id, n,
       ('00000000-0000-4000-8000-' || lpad(n::text, 12, '0'))::uuid AS id,
       (ARRAY['Rivera','Okafor','Lindqvist','Nakamura','Haddad','Moreau','Kowalski','Silva'])[1 + n % 8]
           || '-' || (n % 97) AS family,
       (ARRAY['Ana','Ben','Chidi','Dana','Emil','Fatima','Goran','Hana'])[1 + (n * 7) % 8] AS given,
       date '1940-01-01' + ((n * 7919) % 29000) AS birth_date
FROM bench_tenants t,
     generate_series(1, CASE WHEN t.large THEN __LARGE_PATIENTS__ ELSE __SMALL_PATIENTS__ END) n;

INSERT INTO clinical.patients
    (tenant_id, id, family_name, given_name, birth_date, resource, created_at, updated_at)
SELECT tenant_id, id, lower(family), lower(given), birth_date,
       jsonb_build_object(
           'resourceType', 'Patient', 'id', id::text,
           'meta', jsonb_build_object('versionId', '1', 'lastUpdated', '2025-01-01T00:00:00Z'),
           'identifier', jsonb_build_array(jsonb_build_object(
               'system', 'urn:oid:2.16.840.1.113883.19.5.bench', 'value', 'MRN-' || lpad(n::text, 8, '0'))),
           'name', jsonb_build_array(jsonb_build_object('family', family, 'given', jsonb_build_array(given))),
           'gender', (ARRAY['female','male','other'])[1 + n % 3],
           'birthDate', birth_date::text,
           'telecom', jsonb_build_array(jsonb_build_object('system', 'phone', 'value', '555-01' || lpad((n % 100)::text, 2, '0'))),
           'address', jsonb_build_array(jsonb_build_object('line', jsonb_build_array((n % 900 + 1) || ' Synthetic Street'),
               'city', 'Springfield', 'postalCode', lpad((n % 99999)::text, 5, '0')))),
       timestamptz '2025-01-01', timestamptz '2025-01-01'
FROM bench_patients;

INSERT INTO clinical.patient_identifiers (tenant_id, patient_id, position, system, value)
SELECT tenant_id, id, 0, 'urn:oid:2.16.840.1.113883.19.5.bench', 'MRN-' || lpad(n::text, 8, '0')
FROM bench_patients;

CREATE TEMP TABLE bench_encounters AS
SELECT tenant_id, gen_random_uuid() AS id,
       ('00000000-0000-4000-8000-' || lpad((1 + floor(random() * patients))::int::text, 12, '0'))::uuid AS patient_id,
       timestamptz '2025-01-01' + random() * interval '365 days' AS start,
       random() AS r, floor(random() * 8)::int AS dep, floor(random() * 40)::int AS prov
FROM (SELECT tenant_id,
             CASE WHEN large THEN __LARGE_PATIENTS__ ELSE __SMALL_PATIENTS__ END AS patients,
             CASE WHEN large THEN __LARGE_ENCOUNTERS__ ELSE __SMALL_ENCOUNTERS__ END AS encounters
      FROM bench_tenants) t,
     generate_series(1, t.encounters);

INSERT INTO clinical.encounters
    (tenant_id, id, patient_id, status, department, provider, period_start, period_end, resource,
     created_at, updated_at)
SELECT tenant_id, id, patient_id, status, 'dept-' || dep, 'Practitioner/dr-' || prov, start, finish,
       jsonb_strip_nulls(jsonb_build_object(
           'resourceType', 'Encounter', 'id', id::text,
           'meta', jsonb_build_object('versionId', '1', 'lastUpdated', '2025-01-01T00:00:00Z'),
           'status', status,
           'class', jsonb_build_object('system', 'http://terminology.hl7.org/CodeSystem/v3-ActCode', 'code', 'AMB'),
           'serviceType', jsonb_build_object('coding', jsonb_build_array(jsonb_build_object('code', 'dept-' || dep))),
           'subject', jsonb_build_object('reference', 'Patient/' || patient_id),
           'participant', jsonb_build_array(jsonb_build_object('individual',
               jsonb_build_object('reference', 'Practitioner/dr-' || prov))),
           'period', jsonb_strip_nulls(jsonb_build_object('start', start, 'end', finish)))),
       start, start
FROM (SELECT *,
             CASE WHEN r < 0.9 THEN 'finished' WHEN r < 0.97 THEN 'in-progress' ELSE 'cancelled' END AS status,
             CASE WHEN r < 0.9 THEN start + (10 + r * 50) * interval '1 minute' END AS finish
      FROM bench_encounters) e
ORDER BY start;

-- A SOAP note (four base64 sections, about 1.5 kB) for 70 % of the finished encounters.
INSERT INTO clinical.document_references
    (tenant_id, id, patient_id, encounter_id, status, document_date, resource, created_at, updated_at)
SELECT tenant_id, id, patient_id, encounter_id, 'current', period_end,
       jsonb_build_object(
           'resourceType', 'DocumentReference', 'id', id::text,
           'meta', jsonb_build_object('versionId', '1', 'lastUpdated', '2025-01-01T00:00:00Z'),
           'status', 'current', 'docStatus', 'final',
           'type', jsonb_build_object('coding', jsonb_build_array(
               jsonb_build_object('system', 'http://loinc.org', 'code', '11506-3'))),
           'subject', jsonb_build_object('reference', 'Patient/' || patient_id),
           'context', jsonb_build_object('encounter', jsonb_build_array(
               jsonb_build_object('reference', 'Encounter/' || encounter_id))),
           'date', period_end,
           'content', (SELECT jsonb_agg(jsonb_build_object('attachment', jsonb_build_object(
                           'contentType', 'text/plain', 'title', s,
                           'data', translate(encode(convert_to(repeat(s || ': synthetic findings, nothing real. ', 8), 'UTF8'), 'base64'), E'\n', ''),
                           'size', octet_length(repeat(s || ': synthetic findings, nothing real. ', 8)))))
                       FROM unnest(ARRAY['Subjective','Objective','Assessment','Plan']) s)),
       period_end, period_end
FROM (SELECT tenant_id, gen_random_uuid() AS id, patient_id, id AS encounter_id, period_end
      FROM clinical.encounters
      WHERE period_end IS NOT NULL AND random() < 0.7) d
ORDER BY period_end;

-- An audit trail that has been in use: a read of every patient, so the chain's tables and
-- their statistics start as a running region's would (an empty, freshly analyzed table
-- plans its chain lookups as sequential scans until autovacuum analyzes it again).
INSERT INTO clinical.audit_events
    (tenant_id, actor, action, resource_type, resource_id, query, result_ids, status, request_id, source)
SELECT tenant_id, 'seed', 'read', 'Patient', id::text, NULL, NULL, 200, gen_random_uuid()::text, '127.0.0.1'
FROM clinical.patients
ORDER BY tenant_id, id;
