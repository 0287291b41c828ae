-- SSO settings of tenants, published by the operator from IdPConnections; the data plane
-- validates tokens and logins against them. One row per tenant (its one IdPConnection).
CREATE TABLE catalog.sso (
    tenant_id             bigint      PRIMARY KEY REFERENCES catalog.tenants (id) ON DELETE CASCADE,
    idp_uid               text        NOT NULL UNIQUE,
    idp_name              text        NOT NULL,
    protocol              text        NOT NULL CHECK (protocol IN ('OIDC', 'SAML')),
    issuer                text        NOT NULL,
    jwks_uri              text        NOT NULL,
    client_id             text        NOT NULL,
    audiences             text[]      NOT NULL,
    claim_subject         text        NOT NULL,
    claim_email           text        NOT NULL,
    claim_groups          text        NOT NULL,
    claim_name            text        NOT NULL,
    role_mapping          jsonb       NOT NULL,
    allowed_email_domains text[]      NOT NULL,
    scim_enabled          boolean     NOT NULL,
    generation            bigint      NOT NULL,
    updated_at            timestamptz NOT NULL DEFAULT now()
);

-- The data plane follows SSO changes on the same channel as tenants.
CREATE FUNCTION catalog.notify_sso_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('catalog_tenants', 'sso:' || coalesce(NEW.idp_name, OLD.idp_name));
    RETURN NULL;
END;
$$;

CREATE TRIGGER sso_notify
    AFTER INSERT OR UPDATE OR DELETE ON catalog.sso
    FOR EACH ROW EXECUTE FUNCTION catalog.notify_sso_change();
