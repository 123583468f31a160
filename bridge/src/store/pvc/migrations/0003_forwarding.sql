-- 0003: forwarding to Foreman and the audit trail. The outbox (what Foreman
-- has still to be sent), the audit events (every real change of a host, the
-- history the git audit trail is built from) and the queue of events not yet
-- committed to git. Uploads enqueue both in the same transaction that stores
-- them. Runs inside one transaction (see store::pvc::migrate).

-- What Foreman has been sent of each host: the name it knows the host by (the
-- stock ENC script sends `fqdn` as `name`) and a digest over the facts the
-- ENC depends on, so a change of those is forwarded at once.
ALTER TABLE pvc.facts ADD COLUMN host_name text;
ALTER TABLE pvc.facts ADD COLUMN enc_digest bytea;

-- Agent reports replayed from the spool are recognised by a digest of their
-- body (NULL for reports stored before this migration).
ALTER TABLE pvc.reports ADD COLUMN digest bytea;
CREATE UNIQUE INDEX reports_certname_digest ON pvc.reports (certname, digest)
    WHERE digest IS NOT NULL;

-- Items for Foreman. Facts coalesce: one row per host, the newest facts are
-- read from pvc.facts when the row is sent, and `version` counts the uploads
-- that re-armed it (a send that started before the last one does not delete
-- the row). Reports: one row each. A row is claimed (`claimed_by`,
-- `claimed_until`) while it is being sent, so several bridges never send it
-- together; a claim that outlives its sender lapses. `dead`: Foreman refused
-- it `max_attempts` times; kept (nothing is dropped), counted, and revived by
-- the host's next upload.
CREATE TABLE pvc.outbox (
    id             bigserial PRIMARY KEY,
    kind           text NOT NULL CHECK (kind IN ('facts', 'report')),
    certname       text NOT NULL,
    report_id      bigint REFERENCES pvc.config_reports (id) ON DELETE CASCADE,
    version        int NOT NULL DEFAULT 1,
    first_enqueued timestamptz NOT NULL,
    enqueued       timestamptz NOT NULL,
    attempts       int NOT NULL DEFAULT 0,
    next_attempt   timestamptz NOT NULL,
    last_status    int,
    last_error     text,
    claimed_by     text,
    claimed_until  timestamptz,
    dead           boolean NOT NULL DEFAULT false,
    CHECK ((kind = 'report') = (report_id IS NOT NULL))
);
CREATE UNIQUE INDEX outbox_facts_certname ON pvc.outbox (certname) WHERE kind = 'facts';
CREATE INDEX outbox_due ON pvc.outbox (next_attempt, id) WHERE NOT dead;

-- Every real change of a host, in order: its stable facts when their digest
-- moved ('facts'), a run that changed resources ('run'). Never updated; the
-- git audit trail is built from it and can be rebuilt from it. Per host, ids
-- follow commit order: both writers first take the host's transaction-level
-- advisory lock (pvc.lock_host) and hold it until they commit.
CREATE TABLE pvc.audit_events (
    id       bigserial PRIMARY KEY,
    certname text NOT NULL,
    kind     text NOT NULL CHECK (kind IN ('facts', 'run')),
    at       timestamptz NOT NULL,
    body     jsonb NOT NULL
);
CREATE INDEX audit_events_certname ON pvc.audit_events (certname, id);

-- Each upload rewrites a host's ~30 KB of facts (most of them with only
-- volatile facts changed): lz4 compresses them in about half of pglz's
-- time. Only where the server was built with lz4 (PostgreSQL 14+; Debian's
-- and the PGDG packages are); elsewhere the default stays.
DO $$
BEGIN
    ALTER TABLE pvc.facts ALTER COLUMN facts SET COMPRESSION lz4;
    ALTER TABLE pvc.audit_events ALTER COLUMN body SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported OR syntax_error THEN
    RAISE NOTICE 'lz4 compression unavailable; pvc.facts keeps the default';
END
$$;

-- Events not yet committed to the repository the leader writes.
CREATE TABLE pvc.audit_queue (
    event_id bigint PRIMARY KEY REFERENCES pvc.audit_events (id) ON DELETE CASCADE
);

-- Which repository the queue is kept for: a leader with another repository
-- (a new volume, a lost one) re-queues every event and rebuilds.
CREATE TABLE pvc.audit_state (
    singleton bool PRIMARY KEY DEFAULT true CHECK (singleton),
    repo_id   text NOT NULL,
    updated   timestamptz NOT NULL DEFAULT now()
);

-- Serialises one host's uploads for the rest of the transaction, writing
-- nothing (an upsert would cost a row version per upload). The key is a
-- hash: two hosts sharing one only wait for each other. Class "pvc\1" (the
-- leader elections use "pvc\0").
CREATE FUNCTION pvc.lock_host(p_certname text) RETURNS void
    LANGUAGE sql
    AS $$ SELECT pg_advisory_xact_lock(1886806785, hashtext(p_certname)) $$;

CREATE FUNCTION pvc.audit(p_certname text, p_kind text, p_at timestamptz, p_body jsonb)
    RETURNS void
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_id int8;
BEGIN
    INSERT INTO pvc.audit_events (certname, kind, at, body)
    VALUES (p_certname, p_kind, p_at, p_body)
    RETURNING id INTO v_id;
    INSERT INTO pvc.audit_queue (event_id) VALUES (v_id);
END
$$;

-- (Re-)arms the facts row of a host: a new version, due now, attempts and
-- death forgotten (newer facts deserve a new chance).
CREATE FUNCTION pvc.enqueue_facts(p_certname text, p_at timestamptz) RETURNS void
    LANGUAGE sql
    AS $$
    INSERT INTO pvc.outbox AS o (kind, certname, first_enqueued, enqueued, next_attempt)
    VALUES ('facts', p_certname, p_at, p_at, now())
    ON CONFLICT (certname) WHERE kind = 'facts' DO UPDATE SET
        version = o.version + 1,
        enqueued = p_at,
        attempts = 0,
        next_attempt = now(),
        dead = false
$$;

-- Stores one facts upload; one round trip. As in 0002, plus: `p_name` is the
-- host name to give Foreman, `p_enc` the canonical facts the ENC depends on
-- (`enc_changed`: their digest moved, or the host is new). A real change is
-- queued for Foreman and recorded as an audit event.
CREATE FUNCTION pvc.store_facts(
    p_certname text, p_name text, p_facts text, p_stable text, p_enc text, p_source text,
    p_received timestamptz,
    OUT outcome text, OUT digest text, OUT received int8, OUT digest_changed int8,
    OUT enc_changed bool)
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_at     timestamptz := coalesce(p_received, now());
    v_facts  jsonb := p_facts::jsonb;
    v_digest bytea := sha256(convert_to(p_stable, 'UTF8'));
    v_enc    bytea := sha256(convert_to(p_enc, 'UTF8'));
    v_old    pvc.facts;
BEGIN
    -- Orders the host's audit events (see above).
    PERFORM pvc.lock_host(p_certname);
    enc_changed := false;
    INSERT INTO pvc.facts (certname, host_name, facts, digest, enc_digest, source, received,
                           digest_changed)
    VALUES (p_certname, p_name, v_facts, v_digest, v_enc, p_source, v_at, v_at)
    ON CONFLICT (certname) DO NOTHING;
    IF FOUND THEN
        outcome := 'new';
        enc_changed := true;
    ELSE
        SELECT * INTO v_old FROM pvc.facts f WHERE f.certname = p_certname FOR UPDATE;
        IF v_old.facts = v_facts THEN
            outcome := 'replay';
        ELSIF v_old.received > v_at THEN
            outcome := 'stale';
        ELSIF v_old.digest = v_digest THEN
            outcome := 'unchanged';
            UPDATE pvc.facts f SET facts = v_facts, host_name = p_name, source = p_source,
                received = v_at
            WHERE f.certname = p_certname;
        ELSE
            outcome := 'changed';
            enc_changed := v_old.enc_digest IS DISTINCT FROM v_enc;
            UPDATE pvc.facts f SET facts = v_facts, host_name = p_name, digest = v_digest,
                enc_digest = v_enc, source = p_source, received = v_at, digest_changed = v_at
            WHERE f.certname = p_certname;
        END IF;
    END IF;
    IF outcome IN ('new', 'changed', 'unchanged') THEN
        PERFORM pvc.checkin(p_certname, v_at, 'facts');
    END IF;
    IF outcome IN ('new', 'changed') THEN
        PERFORM pvc.enqueue_facts(p_certname, v_at);
        PERFORM pvc.audit(p_certname, 'facts', v_at, p_stable::jsonb);
    END IF;
    SELECT encode(f.digest, 'hex'), pvc.to_ms(f.received), pvc.to_ms(f.digest_changed)
    INTO digest, received, digest_changed
    FROM pvc.facts f WHERE f.certname = p_certname;
END
$$;

-- A status count of a Foreman config report, 0 when absent or not a number.
CREATE FUNCTION pvc.report_count(p_report jsonb, p_key text) RETURNS int8
    LANGUAGE sql IMMUTABLE
    AS $$
    SELECT CASE WHEN jsonb_typeof(p_report->'status'->p_key) = 'number'
                THEN (p_report->'status'->>p_key)::numeric::int8 ELSE 0 END
$$;

-- As in 0002, plus: a new report is queued for Foreman, and one whose run
-- changed resources (applied or restarted) is recorded as an audit event
-- with its status and logs.
CREATE OR REPLACE FUNCTION pvc.store_config_report(
    p_certname text, p_report text, p_received timestamptz,
    OUT report_id int8, OUT replay bool)
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_at     timestamptz := coalesce(p_received, now());
    v_report jsonb := p_report::jsonb;
    v_digest bytea := sha256(convert_to(p_report, 'UTF8'));
BEGIN
    PERFORM pvc.lock_host(p_certname);
    INSERT INTO pvc.config_reports AS r (certname, digest, reported_at, received, report)
    VALUES (p_certname, v_digest, pvc.try_timestamptz(v_report->>'reported_at'), v_at, v_report)
    ON CONFLICT (certname, digest) DO NOTHING
    RETURNING r.id INTO report_id;
    IF FOUND THEN
        replay := false;
        PERFORM pvc.checkin(p_certname, v_at, 'report');
        INSERT INTO pvc.outbox (kind, certname, report_id, first_enqueued, enqueued, next_attempt)
        VALUES ('report', p_certname, report_id, v_at, v_at, now());
        IF pvc.report_count(v_report, 'applied') + pvc.report_count(v_report, 'restarted') > 0 THEN
            PERFORM pvc.audit(p_certname, 'run',
                coalesce(pvc.try_timestamptz(v_report->>'reported_at'), v_at),
                jsonb_build_object('reported_at', v_report->'reported_at',
                                   'status', v_report->'status',
                                   'logs', coalesce(v_report->'logs', '[]'::jsonb)));
        END IF;
    ELSE
        replay := true;
        SELECT r.id INTO report_id FROM pvc.config_reports r
        WHERE r.certname = p_certname AND r.digest = v_digest;
    END IF;
END
$$;

-- Claims up to `p_limit` due rows for `p_owner` for `p_lease_ms`; with
-- `p_certname`, only that host's facts row (the synchronous forward of a new
-- host or an ENC change). Rows another sender holds are skipped, not waited
-- for.
CREATE FUNCTION pvc.outbox_claim(
    p_owner text, p_lease_ms int8, p_limit int, p_certname text DEFAULT NULL)
    RETURNS TABLE (id int8, kind text, certname text, report_id int8, version int,
                   attempts int, first_enqueued int8)
    LANGUAGE sql
    AS $$
    WITH due AS (
        SELECT o.id FROM pvc.outbox o
        WHERE NOT o.dead
          AND (o.claimed_until IS NULL OR o.claimed_until < clock_timestamp())
          AND CASE WHEN p_certname IS NULL THEN o.next_attempt <= clock_timestamp()
                   ELSE o.kind = 'facts' AND o.certname = p_certname END
        ORDER BY o.next_attempt, o.id
        LIMIT p_limit
        FOR UPDATE SKIP LOCKED
    )
    UPDATE pvc.outbox o
    SET claimed_by = p_owner,
        claimed_until = clock_timestamp() + p_lease_ms * interval '1 millisecond'
    FROM due WHERE o.id = due.id
    RETURNING o.id, o.kind, o.certname, o.report_id, o.version, o.attempts,
              pvc.to_ms(o.first_enqueued)
$$;

-- Foreman took the row at `p_version`: deleted, unless newer facts re-armed
-- it meanwhile (then only the claim is released). True when deleted.
CREATE FUNCTION pvc.outbox_done(p_id int8, p_version int) RETURNS bool
    LANGUAGE plpgsql
    AS $$
BEGIN
    DELETE FROM pvc.outbox o WHERE o.id = p_id AND o.version = p_version;
    IF FOUND THEN
        RETURN true;
    END IF;
    UPDATE pvc.outbox o SET claimed_by = NULL, claimed_until = NULL WHERE o.id = p_id;
    RETURN false;
END
$$;

-- Sending the row failed: due again after `p_delay_ms`; `p_dead`: never
-- again until re-armed. A row re-armed meanwhile keeps its fresh state.
CREATE FUNCTION pvc.outbox_failed(
    p_id int8, p_version int, p_status int, p_error text, p_delay_ms int8, p_dead bool)
    RETURNS void
    LANGUAGE sql
    AS $$
    UPDATE pvc.outbox o SET
        attempts     = CASE WHEN o.version = p_version THEN o.attempts + 1 ELSE o.attempts END,
        next_attempt = CASE WHEN o.version = p_version
                            THEN clock_timestamp() + p_delay_ms * interval '1 millisecond'
                            ELSE o.next_attempt END,
        dead         = CASE WHEN o.version = p_version THEN p_dead ELSE o.dead END,
        last_status  = p_status,
        last_error   = left(p_error, 2000),
        claimed_by   = NULL,
        claimed_until = NULL
    WHERE o.id = p_id
$$;

-- As in 0001, plus: `p_digest` (over the report body as received) makes a
-- replay of a spooled report find its row instead of adding one, and
-- `p_received` (when the bridge accepted it) decides the lease as of then.
CREATE FUNCTION pvc.store_report(
    p_certname              text,
    p_run_id                uuid,
    p_trigger               text,
    p_mode                  text,
    p_exit_code             int,
    p_started               timestamptz,
    p_duration_secs         float8,
    p_resources             jsonb,
    p_cached_catalog_status text,
    p_changed_files         text[],
    p_log_tail              text,
    p_digest                bytea,
    p_received              timestamptz,
    OUT report_id   int8,
    OUT lease_state text,
    OUT replay      bool)
LANGUAGE plpgsql AS $$
DECLARE
    v_lease pvc.leases%ROWTYPE;
    v_now   timestamptz;
BEGIN
    PERFORM 1 FROM pvc.host_runs h WHERE h.certname = p_certname FOR UPDATE;
    IF p_digest IS NOT NULL THEN
        SELECT r.id, r.lease_state INTO report_id, lease_state FROM pvc.reports r
        WHERE r.certname = p_certname AND r.digest = p_digest;
        IF FOUND THEN
            replay := true;
            RETURN;
        END IF;
    END IF;
    replay := false;
    v_now := least(coalesce(p_received, clock_timestamp()), clock_timestamp());
    SELECT * INTO v_lease FROM pvc.leases l
    WHERE l.run_id = p_run_id AND l.certname = p_certname
    FOR UPDATE;

    IF NOT FOUND THEN
        lease_state := 'unknown';
    ELSIF v_lease.ended IS NULL THEN
        IF v_lease.expires > v_now THEN
            -- Ended now even for a replayed report decided as of its receive
            -- time: other bridges follow leases by `ended` and must see it.
            UPDATE pvc.leases l SET ended = greatest(clock_timestamp(), l.granted),
                end_reason = 'report', exit_code = p_exit_code
            WHERE l.run_id = p_run_id;
            lease_state := 'released';
        ELSE
            UPDATE pvc.leases l SET ended = l.expires, end_reason = 'expired', exit_code = p_exit_code
            WHERE l.run_id = p_run_id;
            lease_state := 'expired';
        END IF;
        UPDATE pvc.host_runs h SET run_id = NULL
        WHERE h.certname = p_certname AND h.run_id = p_run_id;
    ELSIF v_lease.end_reason = 'expired' THEN
        UPDATE pvc.leases l SET exit_code = coalesce(l.exit_code, p_exit_code)
        WHERE l.run_id = p_run_id;
        lease_state := 'expired';
    ELSE
        lease_state := 'already_ended';
    END IF;

    INSERT INTO pvc.reports AS r (
        certname, run_id, received, trigger, mode, exit_code, started, duration_secs,
        resources, cached_catalog_status, changed_files, log_tail, lease_state, digest)
    VALUES (
        p_certname, CASE WHEN lease_state = 'unknown' THEN NULL ELSE p_run_id END, v_now,
        p_trigger, p_mode, p_exit_code, p_started, p_duration_secs,
        p_resources, p_cached_catalog_status, coalesce(p_changed_files, '{}'), p_log_tail,
        lease_state, p_digest)
    RETURNING r.id INTO report_id;
END
$$;

-- The 0001 signature stays, as a wrapper (rolling upgrades).
CREATE OR REPLACE FUNCTION pvc.store_report(
    p_certname text, p_run_id uuid, p_trigger text, p_mode text, p_exit_code int,
    p_started timestamptz, p_duration_secs float8, p_resources jsonb,
    p_cached_catalog_status text, p_changed_files text[], p_log_tail text,
    OUT report_id int8, OUT lease_state text)
    LANGUAGE sql
    AS $$
    SELECT s.report_id, s.lease_state
    FROM pvc.store_report(p_certname, p_run_id, p_trigger, p_mode, p_exit_code, p_started,
                          p_duration_secs, p_resources, p_cached_catalog_status,
                          p_changed_files, p_log_tail, NULL, NULL) s
$$;

-- The 0002 signature stays, as a wrapper: bridges of the previous release
-- keep storing during a rolling upgrade.
CREATE OR REPLACE FUNCTION pvc.store_facts(
    p_certname text, p_facts text, p_stable text, p_source text, p_received timestamptz,
    OUT outcome text, OUT digest text, OUT received int8, OUT digest_changed int8)
    LANGUAGE sql
    AS $$
    SELECT s.outcome, s.digest, s.received, s.digest_changed
    FROM pvc.store_facts(p_certname, p_certname, p_facts, p_stable, p_stable, p_source,
                         p_received) s
$$;
