-- SCIM bearer tokens of tenants, as SHA-256 hashes only: the token itself lives in a Secret
-- of the operator's namespace. The current token has no expiry; a rotated-out one keeps
-- working until the end of its grace period, then the operator deletes it.
CREATE TABLE catalog.scim_tokens (
    token_sha256 text        PRIMARY KEY,
    tenant_id    bigint      NOT NULL REFERENCES catalog.tenants (id) ON DELETE CASCADE,
    idp_uid      text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz
);
CREATE INDEX scim_tokens_idp ON catalog.scim_tokens (idp_uid);

-- The data plane follows token changes on the catalog channel too.
CREATE FUNCTION catalog.notify_scim_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('catalog_tenants', 'scim');
    RETURN NULL;
END;
$$;

CREATE TRIGGER scim_tokens_notify
    AFTER INSERT OR UPDATE OR DELETE ON catalog.scim_tokens
    FOR EACH STATEMENT EXECUTE FUNCTION catalog.notify_scim_change();
