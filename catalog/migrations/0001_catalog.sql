-- The catalog: what the operator has built in this region, read by the data plane.
CREATE SCHEMA IF NOT EXISTS catalog;

CREATE TABLE catalog.tenants (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    uid                 text        NOT NULL UNIQUE,
    name                text        NOT NULL,
    display_name        text        NOT NULL,
    hostname            text        NOT NULL,
    home_region         text        NOT NULL,
    data_residency      text[]      NOT NULL,
    isolation           text        NOT NULL CHECK (isolation IN ('Shared', 'Schema', 'Dedicated')),
    state               text        NOT NULL CHECK (state IN ('active', 'suspended', 'retired')),
    requests_per_second integer     NOT NULL,
    max_users           integer     NOT NULL,
    generation          bigint      NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    retired_at          timestamptz
);

-- A retired tenant keeps its rows (deletionPolicy Retain) but frees its name and host name.
CREATE UNIQUE INDEX tenants_live_name ON catalog.tenants (name) WHERE state <> 'retired';
CREATE UNIQUE INDEX tenants_live_hostname ON catalog.tenants (hostname) WHERE state <> 'retired';

-- The data plane follows the catalog with LISTEN catalog_tenants.
CREATE FUNCTION catalog.notify_tenant_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('catalog_tenants', coalesce(NEW.name, OLD.name));
    RETURN NULL;
END;
$$;

CREATE TRIGGER tenants_notify
    AFTER INSERT OR UPDATE OR DELETE ON catalog.tenants
    FOR EACH ROW EXECUTE FUNCTION catalog.notify_tenant_change();
