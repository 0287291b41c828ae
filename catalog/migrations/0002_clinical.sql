-- Shared clinical tables. Every row carries tenant_id, every index leads with it, and
-- row-level security (enabled, forced and its policy) is applied by the operator, which
-- also repairs it when it drifts.
CREATE SCHEMA IF NOT EXISTS clinical;

CREATE TABLE clinical.patients (
    tenant_id   bigint      NOT NULL REFERENCES catalog.tenants (id),
    id          uuid        NOT NULL DEFAULT gen_random_uuid(),
    family_name text,
    given_name  text,
    birth_date  date,
    resource    jsonb       NOT NULL,
    version     integer     NOT NULL DEFAULT 1,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX patients_family ON clinical.patients (tenant_id, family_name);

CREATE TABLE clinical.encounters (
    tenant_id    bigint      NOT NULL,
    id           uuid        NOT NULL DEFAULT gen_random_uuid(),
    patient_id   uuid        NOT NULL,
    status       text        NOT NULL,
    department   text,
    provider     text,
    period_start timestamptz,
    period_end   timestamptz,
    resource     jsonb       NOT NULL,
    version      integer     NOT NULL DEFAULT 1,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, patient_id) REFERENCES clinical.patients (tenant_id, id)
);
CREATE INDEX encounters_patient ON clinical.encounters (tenant_id, patient_id);
CREATE INDEX encounters_period ON clinical.encounters (tenant_id, period_start);

CREATE TABLE clinical.document_references (
    tenant_id    bigint      NOT NULL,
    id           uuid        NOT NULL DEFAULT gen_random_uuid(),
    patient_id   uuid        NOT NULL,
    encounter_id uuid,
    status       text        NOT NULL,
    resource     jsonb       NOT NULL,
    version      integer     NOT NULL DEFAULT 1,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, patient_id) REFERENCES clinical.patients (tenant_id, id)
);
CREATE INDEX document_references_patient ON clinical.document_references (tenant_id, patient_id);

CREATE TABLE clinical.medication_requests (
    tenant_id    bigint      NOT NULL,
    id           uuid        NOT NULL DEFAULT gen_random_uuid(),
    patient_id   uuid        NOT NULL,
    encounter_id uuid,
    status       text        NOT NULL,
    resource     jsonb       NOT NULL,
    version      integer     NOT NULL DEFAULT 1,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, patient_id) REFERENCES clinical.patients (tenant_id, id)
);
CREATE INDEX medication_requests_patient ON clinical.medication_requests (tenant_id, patient_id);
