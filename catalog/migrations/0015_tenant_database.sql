-- Where a Dedicated tenant's clinical rows live (issue 10, isolation Dedicated; ADR 0010):
-- NULL for Shared and Schema tenants (their rows are in this database), else the name of
-- the tenant's own database on the same server, which the operator creates by running
-- these same migrations in it. The data plane reads it and opens a pool on that database
-- (same server and credentials, dbname replaced). The CHECK is the second validation of
-- the name (the operator derives it, both sides validate it on read).
ALTER TABLE catalog.tenants ADD COLUMN database_name text
    CHECK (database_name ~ '^[a-z_][a-z0-9_]{0,62}$');
-- Two tenants never share a database.
CREATE UNIQUE INDEX tenants_database_name ON catalog.tenants (database_name) WHERE database_name IS NOT NULL;
