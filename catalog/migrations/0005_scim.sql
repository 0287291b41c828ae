-- SCIM 2.0 users and groups of tenants (RFC 7643), provisioned by each tenant's identity
-- provider through the data plane's /scim/v2. Tenant tables like the clinical ones: every
-- row carries tenant_id, every key and index leads with it, and the operator forces
-- row-level security on them and grants the data plane DML.
CREATE TABLE clinical.scim_users (
    tenant_id   bigint      NOT NULL REFERENCES catalog.tenants (id),
    id          uuid        NOT NULL DEFAULT gen_random_uuid(),
    user_name   text        NOT NULL,
    external_id text,
    active      boolean     NOT NULL DEFAULT true,
    resource    jsonb       NOT NULL,
    version     integer     NOT NULL DEFAULT 1,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);
-- userName is unique per tenant and compared case-insensitively (caseExact=false).
CREATE UNIQUE INDEX scim_users_user_name ON clinical.scim_users (tenant_id, lower(user_name));
CREATE INDEX scim_users_external_id ON clinical.scim_users (tenant_id, external_id);

CREATE TABLE clinical.scim_groups (
    tenant_id    bigint      NOT NULL REFERENCES catalog.tenants (id),
    id           uuid        NOT NULL DEFAULT gen_random_uuid(),
    display_name text        NOT NULL,
    external_id  text,
    resource     jsonb       NOT NULL,
    version      integer     NOT NULL DEFAULT 1,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX scim_groups_display_name ON clinical.scim_groups (tenant_id, lower(display_name));
CREATE INDEX scim_groups_external_id ON clinical.scim_groups (tenant_id, external_id);

-- Members are users of the group's own tenant: both keys carry the tenant.
CREATE TABLE clinical.scim_group_members (
    tenant_id bigint NOT NULL,
    group_id  uuid   NOT NULL,
    user_id   uuid   NOT NULL,
    -- The member as the client described it, in the order it gave.
    ordinal   integer NOT NULL,
    display   text,
    type      text,
    PRIMARY KEY (tenant_id, group_id, user_id),
    FOREIGN KEY (tenant_id, group_id) REFERENCES clinical.scim_groups (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, user_id) REFERENCES clinical.scim_users (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX scim_group_members_user ON clinical.scim_group_members (tenant_id, user_id);
