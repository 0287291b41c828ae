-- The Region's readers (streaming replicas of this database), published by the operator
-- from Region.spec.database.readers for the data plane's reader pool. Where to connect
-- only: a physical replica has the writer's roles, so the data plane logs in with its
-- own credentials; no secret is ever stored here. `healthy` is the operator's last
-- verdict (a standby whose WAL receiver streams); the data plane still measures the
-- replay position itself before trusting a reader with a consistency token.
CREATE TABLE catalog.readers (
    ordinal    integer     PRIMARY KEY CHECK (ordinal >= 0),
    host       text        NOT NULL CHECK (host <> ''),
    port       integer     NOT NULL CHECK (port BETWEEN 1 AND 65535),
    dbname     text        NOT NULL CHECK (dbname <> ''),
    sslmode    text        NOT NULL CHECK (sslmode IN ('disable', 'prefer', 'require', 'verify-ca', 'verify-full')),
    healthy    boolean     NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- The data plane follows reader changes on the catalog channel, as it does tenants.
CREATE FUNCTION catalog.notify_readers_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('catalog_tenants', 'readers');
    RETURN NULL;
END;
$$;

CREATE TRIGGER readers_notify
    AFTER INSERT OR UPDATE OR DELETE ON catalog.readers
    FOR EACH STATEMENT EXECUTE FUNCTION catalog.notify_readers_change();
