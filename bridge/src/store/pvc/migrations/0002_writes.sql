-- 0002: fact and report uploads — the latest facts per host with a digest
-- over their stable part, Foreman config reports as received, and each
-- host's last check-in. Runs inside one transaction (see store::pvc::migrate).

-- The latest facts of each host. `digest` is SHA-256 over the canonical form
-- minus volatile facts (computed by the bridge: keys sorted, compact JSON);
-- `digest_changed` is when it last moved, i.e. when the facts really changed.
CREATE TABLE pvc.facts (
    certname       text PRIMARY KEY,
    facts          jsonb NOT NULL,
    digest         bytea NOT NULL,
    source         text NOT NULL,
    received       timestamptz NOT NULL,
    digest_changed timestamptz NOT NULL
);

-- Config reports in Foreman's format, stored as received. `digest` is over
-- the canonical report: a replayed upload finds its row and adds none.
CREATE TABLE pvc.config_reports (
    id          bigserial PRIMARY KEY,
    certname    text NOT NULL,
    digest      bytea NOT NULL,
    reported_at timestamptz,
    received    timestamptz NOT NULL,
    report      jsonb NOT NULL,
    UNIQUE (certname, digest)
);
CREATE INDEX config_reports_certname_received ON pvc.config_reports (certname, received);

-- The last upload of each host, whatever it was.
CREATE TABLE pvc.checkins (
    certname  text PRIMARY KEY,
    facts_at  timestamptz,
    report_at timestamptz,
    last_at   timestamptz NOT NULL
);

-- `text` as a timestamp, or NULL when it is not one (a report's
-- `reported_at` is the client's text; a bad one must not lose the report).
CREATE FUNCTION pvc.try_timestamptz(t text) RETURNS timestamptz
    LANGUAGE plpgsql STABLE STRICT
    AS $$
BEGIN
    RETURN t::timestamptz;
EXCEPTION WHEN others THEN
    RETURN NULL;
END
$$;

CREATE FUNCTION pvc.checkin(p_certname text, p_at timestamptz, p_kind text) RETURNS void
    LANGUAGE sql
    AS $$
    INSERT INTO pvc.checkins AS c (certname, facts_at, report_at, last_at)
    VALUES (p_certname,
            CASE WHEN p_kind = 'facts' THEN p_at END,
            CASE WHEN p_kind = 'report' THEN p_at END,
            p_at)
    ON CONFLICT (certname) DO UPDATE SET
        facts_at  = CASE WHEN p_kind = 'facts'
                         THEN greatest(c.facts_at, p_at) ELSE c.facts_at END,
        report_at = CASE WHEN p_kind = 'report'
                         THEN greatest(c.report_at, p_at) ELSE c.report_at END,
        last_at   = greatest(c.last_at, p_at)
$$;

-- Stores one facts upload; one round trip. `p_received` is when the bridge
-- accepted it (NULL: now; a spooled write replayed later passes its own).
-- outcome: 'new' (first facts of the host), 'changed' (digest moved),
-- 'unchanged' (only volatile facts differ: facts and time updated, digest
-- kept), 'replay' (the very facts stored already: nothing written), 'stale'
-- (older than the stored facts: nothing written).
CREATE FUNCTION pvc.store_facts(
    p_certname text, p_facts text, p_stable text, p_source text, p_received timestamptz,
    OUT outcome text, OUT digest text, OUT received int8, OUT digest_changed int8)
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_at     timestamptz := coalesce(p_received, now());
    v_facts  jsonb := p_facts::jsonb;
    v_digest bytea := sha256(convert_to(p_stable, 'UTF8'));
    v_old    pvc.facts;
BEGIN
    INSERT INTO pvc.facts (certname, facts, digest, source, received, digest_changed)
    VALUES (p_certname, v_facts, v_digest, p_source, v_at, v_at)
    ON CONFLICT (certname) DO NOTHING;
    IF FOUND THEN
        outcome := 'new';
    ELSE
        SELECT * INTO v_old FROM pvc.facts f WHERE f.certname = p_certname FOR UPDATE;
        IF v_old.facts = v_facts THEN
            outcome := 'replay';
        ELSIF v_old.received > v_at THEN
            outcome := 'stale';
        ELSIF v_old.digest = v_digest THEN
            outcome := 'unchanged';
            UPDATE pvc.facts f SET facts = v_facts, source = p_source, received = v_at
            WHERE f.certname = p_certname;
        ELSE
            outcome := 'changed';
            UPDATE pvc.facts f SET facts = v_facts, digest = v_digest, source = p_source,
                received = v_at, digest_changed = v_at
            WHERE f.certname = p_certname;
        END IF;
    END IF;
    IF outcome IN ('new', 'changed', 'unchanged') THEN
        PERFORM pvc.checkin(p_certname, v_at, 'facts');
    END IF;
    SELECT encode(f.digest, 'hex'), pvc.to_ms(f.received), pvc.to_ms(f.digest_changed)
    INTO digest, received, digest_changed
    FROM pvc.facts f WHERE f.certname = p_certname;
END
$$;

-- Stores one config report (`p_report`: its canonical JSON); one round
-- trip. A replay of a stored report returns its row with `replay` true.
CREATE FUNCTION pvc.store_config_report(
    p_certname text, p_report text, p_received timestamptz,
    OUT report_id int8, OUT replay bool)
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_at     timestamptz := coalesce(p_received, now());
    v_report jsonb := p_report::jsonb;
    v_digest bytea := sha256(convert_to(p_report, 'UTF8'));
BEGIN
    INSERT INTO pvc.config_reports AS r (certname, digest, reported_at, received, report)
    VALUES (p_certname, v_digest, pvc.try_timestamptz(v_report->>'reported_at'), v_at, v_report)
    ON CONFLICT (certname, digest) DO NOTHING
    RETURNING r.id INTO report_id;
    IF FOUND THEN
        replay := false;
        PERFORM pvc.checkin(p_certname, v_at, 'report');
    ELSE
        replay := true;
        SELECT r.id INTO report_id FROM pvc.config_reports r
        WHERE r.certname = p_certname AND r.digest = v_digest;
    END IF;
END
$$;
