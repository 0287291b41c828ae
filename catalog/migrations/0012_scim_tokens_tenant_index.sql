-- Deleting a tenant cascades to its SCIM tokens: without an index leading with tenant_id
-- each deletion scanned the whole table (every tenant's tokens) under the row lock of the
-- tenant being deleted. Every foreign key now has an index leading with its columns (a
-- test of the operator provisions a database and checks it).
CREATE INDEX scim_tokens_tenant ON catalog.scim_tokens (tenant_id);
