-- The audit trail: one append-only, hash-chained log per tenant of every access to PHI
-- through the data plane (ADR 0006). The database, not the data plane, keeps the chain:
-- a BEFORE INSERT trigger serialises the tenant's appends with a transaction-level
-- advisory lock, reads the tenant's last entry with a fresh snapshot (the function is
-- VOLATILE, so each of its queries sees what committed before the lock was granted) and
-- sets seq, recorded_at, prev_hash and hash, whatever the inserting statement said. The
-- data plane role may INSERT and SELECT only (the operator's grants); a second trigger
-- refuses UPDATE and TRUNCATE to everyone, and DELETE to anyone who is not the owner role
-- (the operator erasing a deleted tenant). Rows hold ids, never names or resource bodies.
CREATE TABLE clinical.audit_events (
    tenant_id     bigint      NOT NULL REFERENCES catalog.tenants (id),
    seq           bigint      NOT NULL CHECK (seq > 0),
    recorded_at   timestamptz NOT NULL,
    actor         text        NOT NULL,
    action        text        NOT NULL CHECK (action IN ('read', 'vread', 'search', 'create', 'update', 'delete', 'history', 'export')),
    resource_type text        NOT NULL,
    resource_id   text,
    query         text,
    result_ids    text[],
    status        smallint    NOT NULL CHECK (status BETWEEN 100 AND 599),
    request_id    text        NOT NULL,
    source        text,
    prev_hash     bytea       NOT NULL CHECK (octet_length(prev_hash) = 32),
    hash          bytea       NOT NULL CHECK (octet_length(hash) = 32),
    PRIMARY KEY (tenant_id, seq)
);
CREATE INDEX audit_events_recorded_at ON clinical.audit_events (tenant_id, recorded_at, seq);

-- One field of the canonical encoding: its length in bytes, a colon and the text; NULL
-- is a lone '-'. Length prefixes make the concatenation unambiguous.
CREATE FUNCTION clinical.audit_field(v text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
$$ SELECT CASE WHEN v IS NULL THEN '-' ELSE octet_length(v)::text || ':' || v END $$;

-- The canonical encoding an entry's hash covers (with prev_hash appended as bytes).
-- `phoenix_dataplane::audit::chain::canonical` is the same function in Rust; `verify`
-- recomputes every hash with it, so a changed row or a changed function is caught.
-- PL/pgSQL rather than SQL: its plans are kept for the session, where a SQL function
-- called from the trigger would be planned again in every transaction (0.4 ms each).
CREATE FUNCTION clinical.audit_canonical(e clinical.audit_events) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS
$$
DECLARE
    ids text := '-';
BEGIN
    IF e.result_ids IS NOT NULL THEN
        SELECT cardinality(e.result_ids)::text || '#'
               || coalesce(string_agg(clinical.audit_field(i), '' ORDER BY n), '')
          INTO ids
          FROM unnest(e.result_ids) WITH ORDINALITY AS u (i, n);
    END IF;
    RETURN 'phoenix-audit-v1'
        || clinical.audit_field(e.tenant_id::text)
        || clinical.audit_field(e.seq::text)
        || clinical.audit_field((extract(epoch FROM e.recorded_at) * 1000000)::bigint::text)
        || clinical.audit_field(e.actor)
        || clinical.audit_field(e.action)
        || clinical.audit_field(e.resource_type)
        || clinical.audit_field(e.resource_id)
        || clinical.audit_field(e.query)
        || ids
        || clinical.audit_field(e.status::text)
        || clinical.audit_field(e.request_id)
        || clinical.audit_field(e.source);
END
$$;

CREATE FUNCTION clinical.audit_chain() RETURNS trigger
LANGUAGE plpgsql VOLATILE AS
$$
DECLARE
    last record;
BEGIN
    -- Two-key form ('audt', tenant): its key space is apart from the one-key locks
    -- (migrations). Two tenants sharing a key would only wait for each other.
    PERFORM pg_advisory_xact_lock(1635083380, mod(NEW.tenant_id, 2147483647)::integer);
    SELECT a.seq, a.hash INTO last FROM clinical.audit_events a
     WHERE a.tenant_id = NEW.tenant_id ORDER BY a.seq DESC LIMIT 1;
    NEW.seq := coalesce(last.seq, 0) + 1;
    NEW.prev_hash := coalesce(last.hash, '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea);
    NEW.recorded_at := date_trunc('microseconds', clock_timestamp());
    NEW.hash := sha256(convert_to(clinical.audit_canonical(NEW), 'UTF8') || NEW.prev_hash);
    RETURN NEW;
END
$$;

CREATE FUNCTION clinical.audit_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS
$$
BEGIN
    -- Erasing a deleted tenant's rows (the operator, as a member of the owner role).
    IF TG_OP = 'DELETE' AND pg_has_role(current_user, 'phoenix_owner', 'MEMBER') THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'clinical.audit_events is append-only: % is refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER audit_events_chain BEFORE INSERT ON clinical.audit_events
    FOR EACH ROW EXECUTE FUNCTION clinical.audit_chain();
CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON clinical.audit_events
    FOR EACH ROW EXECUTE FUNCTION clinical.audit_refuse_change();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON clinical.audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION clinical.audit_refuse_change();
