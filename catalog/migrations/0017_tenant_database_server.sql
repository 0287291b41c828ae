-- Where a Dedicated tenant's database lives when it is not on this database's server
-- (issue 10: a Dedicated tenant on an RDS Region has an RDS instance of its own; ADR 0013):
-- the host and port the data plane connects to, with its writer settings' login and TLS
-- (the operator makes the region's data plane logins there with the same passwords).
-- NULL for every other tenant, whose rows are on this server. Both or neither; a host is
-- a DNS name or an IPv4 address, never a connection string (a second validation: both
-- sides validate it on read).
ALTER TABLE catalog.tenants
    ADD COLUMN database_host text CHECK (database_host ~ '^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$'),
    ADD COLUMN database_port integer CHECK (database_port BETWEEN 1 AND 65535),
    ADD CONSTRAINT tenants_database_server CHECK (
        (database_host IS NULL) = (database_port IS NULL)
        AND (database_host IS NULL OR database_name IS NOT NULL));
