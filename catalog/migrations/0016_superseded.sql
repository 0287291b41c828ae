-- The fence marker of a regional failover (ADR 0011). When a Replica region is promoted,
-- the operator writes one row here on the old primary's database (the one it superseded),
-- together with `ALTER DATABASE … SET default_transaction_read_only = on` and NOLOGIN for
-- the old region's data plane logins. The old region's own reconcile reads the row before
-- anything else and refuses to repair what the fence changed (Ready=False/Superseded).
--
-- At most one row (`id` is always 1): a database is superseded once; rebuilding it as a
-- replica of the new primary (pg_basebackup) replaces it with a copy without the row.
-- Readable by the operator only (no grant to the data plane).
CREATE TABLE catalog.superseded (
    id            integer     PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    superseded_by text        NOT NULL,
    superseded_at timestamptz NOT NULL DEFAULT now(),
    lineage       text        NOT NULL
);
