-- Browser login (OIDC authorization code + PKCE) and the sessions it ends in.
--
-- The login needs the provider's endpoints beside its issuer; the operator reads them from
-- the discovery document it already fetches. Nullable: a row published before this
-- migration has none until the operator republishes it, and a provider may publish no
-- end_session_endpoint at all.
ALTER TABLE catalog.sso
    ADD COLUMN authorization_endpoint text,
    ADD COLUMN token_endpoint         text,
    ADD COLUMN end_session_endpoint   text;

-- A login in flight: what the callback needs to finish it. Keyed by the SHA-256 of the
-- `state` sent to the provider; deleted when the callback consumes it (single use).
CREATE TABLE clinical.login_attempts (
    tenant_id     bigint      NOT NULL REFERENCES catalog.tenants (id),
    state_sha256  text        NOT NULL,
    code_verifier text        NOT NULL,
    nonce         text        NOT NULL,
    redirect_uri  text        NOT NULL,
    return_to     text        NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, state_sha256)
);
CREATE INDEX login_attempts_expiry ON clinical.login_attempts (tenant_id, expires_at);

-- Server-side sessions of browser users. Only the SHA-256 of the session id is stored: a
-- copy of this table authenticates nobody. A session ends at expires_at (absolute), after
-- the idle timeout since last_seen_at, or when revoked_at is set (logout, an admin).
CREATE TABLE clinical.sessions (
    tenant_id    bigint      NOT NULL REFERENCES catalog.tenants (id),
    id_sha256    text        NOT NULL,
    subject      text        NOT NULL,
    email        text,
    name         text,
    roles        text[]      NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    revoked_at   timestamptz,
    PRIMARY KEY (tenant_id, id_sha256)
);
CREATE INDEX sessions_subject ON clinical.sessions (tenant_id, subject);
CREATE INDEX sessions_expiry ON clinical.sessions (tenant_id, expires_at);
