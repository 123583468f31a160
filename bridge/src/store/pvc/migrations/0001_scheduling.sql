-- 0001: run scheduling — the shared server budgets, leases, reports and
-- converge requests. Runs inside one transaction (see store::pvc::migrate).
-- Every time that decides a lease is read from this server's clock.

-- Times as the bridge sees them: whole milliseconds since the Unix epoch.
CREATE FUNCTION pvc.to_ms(t timestamptz) RETURNS int8
    LANGUAGE sql STABLE STRICT PARALLEL SAFE
    AS $$ SELECT floor(extract(epoch FROM t) * 1000)::int8 $$;

-- Exact for whole milliseconds: to_timestamp rounds to the microsecond.
CREATE FUNCTION pvc.from_ms(ms int8) RETURNS timestamptz
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$ SELECT to_timestamp(ms::float8 / 1000) $$;

-- One token bucket per puppetserver, shared by every bridge process: `rate`
-- and `burst` come with each grant (they follow the server's capacity), the
-- row only carries the level and when it was last refilled.
CREATE TABLE pvc.servers (
    name     text PRIMARY KEY,
    tokens   float8 NOT NULL,
    refilled timestamptz NOT NULL
);

-- One row per host: its current lease (run_id NULL = none) and its last
-- scheduled grant. Locking this row serialises a host's grants and reports.
CREATE TABLE pvc.host_runs (
    certname       text PRIMARY KEY,
    run_id         uuid,
    server         text,
    trigger        text,
    mode           text,
    granted        timestamptz,
    expires        timestamptz,
    last_scheduled timestamptz
);
CREATE INDEX host_runs_open_expires ON pvc.host_runs (expires) WHERE run_id IS NOT NULL;

-- Every lease ever granted. `ended` is when it stopped holding its server:
-- the report's arrival, or its expiry time.
CREATE TABLE pvc.leases (
    run_id     uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    certname   text NOT NULL,
    server     text NOT NULL,
    trigger    text NOT NULL,
    mode       text NOT NULL CHECK (mode IN ('full', 'cached_catalog')),
    granted    timestamptz NOT NULL,
    expires    timestamptz NOT NULL,
    ended      timestamptz,
    end_reason text CHECK (end_reason IN ('report', 'expired')),
    exit_code  int,
    CHECK ((ended IS NULL) = (end_reason IS NULL))
);
CREATE INDEX leases_granted ON pvc.leases (granted);
CREATE INDEX leases_certname_granted ON pvc.leases (certname, granted);

-- Every report an agent sent, whether or not its lease was known.
CREATE TABLE pvc.reports (
    id                    bigserial PRIMARY KEY,
    certname              text NOT NULL,
    run_id                uuid,
    received              timestamptz NOT NULL DEFAULT now(),
    trigger               text,
    mode                  text,
    exit_code             int,
    started               timestamptz,
    duration_secs         float8,
    resources             jsonb,
    cached_catalog_status text,
    changed_files         text[] NOT NULL DEFAULT '{}',
    log_tail              text,
    lease_state           text NOT NULL
        CHECK (lease_state IN ('released', 'expired', 'already_ended', 'unknown'))
);
CREATE INDEX reports_certname_received ON pvc.reports (certname, received);
CREATE INDEX reports_run_id ON pvc.reports (run_id) WHERE run_id IS NOT NULL;

-- "These hosts must all run by `deadline`".
CREATE TABLE pvc.converges (
    id       bigserial PRIMARY KEY,
    created  timestamptz NOT NULL,
    deadline timestamptz NOT NULL,
    hosts    text[] NOT NULL,
    spec     jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX converges_deadline ON pvc.converges (deadline);

-- A grant in one round trip. Locks the host's row, then (full runs only) the
-- server's row: every grant takes them in that order, reports and expiry
-- take only host rows before leases, so grants never deadlock.
-- Outcomes: granted | in_progress (the live lease) | too_soon | no_budget.
-- Nothing changes unless the outcome is granted.
CREATE FUNCTION pvc.grant(
    p_certname     text,
    p_server       text,
    p_trigger      text,
    p_mode         text,
    p_rate         float8,
    p_burst        float8,
    p_min_tokens   float8,
    p_lease_secs   float8,
    p_min_gap_secs float8,
    OUT outcome       text,
    OUT lease         uuid,
    OUT lease_granted timestamptz,
    OUT lease_expires timestamptz)
LANGUAGE plpgsql AS $$
DECLARE
    v_host     pvc.host_runs%ROWTYPE;
    v_new_host boolean := false;
    v_bucket   pvc.servers%ROWTYPE;
    v_tokens   float8;
    v_now      timestamptz;
BEGIN
    IF p_mode IS NULL OR p_mode NOT IN ('full', 'cached_catalog') THEN
        RAISE EXCEPTION 'pvc.grant: unknown run mode %', p_mode
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    SELECT * INTO v_host FROM pvc.host_runs h WHERE h.certname = p_certname FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO pvc.host_runs (certname) VALUES (p_certname) ON CONFLICT DO NOTHING;
        v_new_host := FOUND;
        SELECT * INTO v_host FROM pvc.host_runs h WHERE h.certname = p_certname FOR UPDATE;
    END IF;

    v_now := clock_timestamp();
    IF v_host.run_id IS NOT NULL AND v_host.expires > v_now THEN
        outcome := 'in_progress';
        lease := v_host.run_id;
        lease_granted := v_host.granted;
        lease_expires := v_host.expires;
        RETURN;
    END IF;
    IF p_trigger = 'schedule'
       AND v_host.last_scheduled > v_now - p_min_gap_secs * interval '1 second' THEN
        outcome := 'too_soon';
        RETURN;
    END IF;

    IF p_mode = 'full' THEN
        SELECT * INTO v_bucket FROM pvc.servers s WHERE s.name = p_server FOR UPDATE;
        IF NOT FOUND THEN
            INSERT INTO pvc.servers (name, tokens, refilled)
            VALUES (p_server, p_burst, date_trunc('milliseconds', clock_timestamp()))
            ON CONFLICT DO NOTHING;
            SELECT * INTO v_bucket FROM pvc.servers s WHERE s.name = p_server FOR UPDATE;
        END IF;
        -- The clock is read once the bucket is ours, so one server's grants
        -- carry the times of their refills, in order: the admitted count over
        -- any window of lease times stays within burst + rate × window.
        v_now := greatest(date_trunc('milliseconds', clock_timestamp()), v_bucket.refilled);
        v_tokens := least(p_burst,
            v_bucket.tokens + p_rate * extract(epoch FROM v_now - v_bucket.refilled)::float8);
        IF v_tokens < p_min_tokens THEN
            IF v_new_host THEN
                DELETE FROM pvc.host_runs h WHERE h.certname = p_certname;
            END IF;
            outcome := 'no_budget';
            RETURN;
        END IF;
        UPDATE pvc.servers s SET tokens = v_tokens - 1, refilled = v_now WHERE s.name = p_server;
    ELSE
        v_now := date_trunc('milliseconds', clock_timestamp());
    END IF;

    -- An expired lease counts as none; it is closed now that it is replaced.
    IF v_host.run_id IS NOT NULL THEN
        UPDATE pvc.leases l SET ended = l.expires, end_reason = 'expired'
        WHERE l.run_id = v_host.run_id AND l.ended IS NULL;
    END IF;

    INSERT INTO pvc.leases AS l (certname, server, trigger, mode, granted, expires)
    VALUES (p_certname, p_server, p_trigger, p_mode, v_now,
            date_trunc('milliseconds', v_now + p_lease_secs * interval '1 second'))
    RETURNING l.run_id, l.expires INTO lease, lease_expires;

    UPDATE pvc.host_runs h
    SET run_id = lease, server = p_server, trigger = p_trigger, mode = p_mode,
        granted = v_now, expires = lease_expires,
        last_scheduled = CASE WHEN p_trigger = 'schedule' THEN v_now ELSE h.last_scheduled END
    WHERE h.certname = p_certname;

    outcome := 'granted';
    lease_granted := v_now;
END
$$;

-- A report, stored whatever its run id, and the release of its lease, in one
-- transaction. Locks the host's row before the lease, like pvc.grant.
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
    OUT report_id   int8,
    OUT lease_state text)
LANGUAGE plpgsql AS $$
DECLARE
    v_lease pvc.leases%ROWTYPE;
    v_now   timestamptz;
BEGIN
    PERFORM 1 FROM pvc.host_runs h WHERE h.certname = p_certname FOR UPDATE;
    v_now := clock_timestamp();
    SELECT * INTO v_lease FROM pvc.leases l
    WHERE l.run_id = p_run_id AND l.certname = p_certname
    FOR UPDATE;

    IF NOT FOUND THEN
        lease_state := 'unknown';
    ELSIF v_lease.ended IS NULL THEN
        IF v_lease.expires > v_now THEN
            UPDATE pvc.leases l SET ended = v_now, end_reason = 'report', exit_code = p_exit_code
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
        -- A late report: the lease is gone, the run's outcome still counts.
        UPDATE pvc.leases l SET exit_code = coalesce(l.exit_code, p_exit_code)
        WHERE l.run_id = p_run_id;
        lease_state := 'expired';
    ELSE
        lease_state := 'already_ended';
    END IF;

    INSERT INTO pvc.reports AS r (
        certname, run_id, received, trigger, mode, exit_code, started, duration_secs,
        resources, cached_catalog_status, changed_files, log_tail, lease_state)
    VALUES (
        p_certname, CASE WHEN lease_state = 'unknown' THEN NULL ELSE p_run_id END, v_now,
        p_trigger, p_mode, p_exit_code, p_started, p_duration_secs,
        p_resources, p_cached_catalog_status, coalesce(p_changed_files, '{}'), p_log_tail,
        lease_state)
    RETURNING r.id INTO report_id;
END
$$;
