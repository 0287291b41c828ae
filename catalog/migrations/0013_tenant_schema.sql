-- Where a tenant's clinical rows live (issue 10, isolation Schema; ADR 0009): NULL for a
-- Shared tenant (the shared `clinical` schema), else the name of the tenant's own schema,
-- which the operator creates with a copy of every clinical table. The data plane's tenant
-- transaction reads it in its first statement and sets `search_path` to it. The CHECK is
-- the second validation of the name (the operator derives it, both sides validate it on
-- read): a plain lower-case identifier, never anything to be quoted or escaped.
ALTER TABLE catalog.tenants ADD COLUMN schema_name text
    CHECK (schema_name ~ '^[a-z_][a-z0-9_]{0,62}$');
-- Two tenants never share a schema.
CREATE UNIQUE INDEX tenants_schema_name ON catalog.tenants (schema_name) WHERE schema_name IS NOT NULL;
