-- 0004: the change feed. Triggers on the Foreman tables the ENC and /host
-- read (installed by `pvc-bridge migrate` from the list in
-- bridge/src/changes/tables.rs, not here, so a later release can watch other
-- columns without a migration) write one row here per change of a column the
-- bridge reads. Every bridge tails this table from a replica and drops
-- exactly the cached entries a row affects. Runs inside one transaction (see
-- store::pvc::migrate).

-- `xid`: the writing transaction, so a reader can tell an id that is missing
-- because its transaction is still running from one that will never appear
-- (rolled back). `lsn`: the WAL position when the row was written (the
-- transaction's commit is a little later). `keys`: the few columns that say
-- what changed (ids, names), old and new; never whole rows (users rows hold
-- password hashes). `drift`: a watched column is missing from the row (a
-- Foreman upgrade renamed it), so the change is logged whatever it was.
CREATE TABLE pvc.changes (
    id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tbl     text NOT NULL,
    op      "char" NOT NULL CHECK (op IN ('I', 'U', 'D', 'T')),
    keys    jsonb NOT NULL,
    drift   boolean NOT NULL DEFAULT false,
    xid     xid8 NOT NULL DEFAULT pg_current_xact_id(),
    lsn     pg_lsn NOT NULL DEFAULT pg_current_wal_insert_lsn(),
    -- When the row was written (not the transaction's start: a long
    -- transaction's rows must not look old to pruning).
    at      timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX changes_at ON pvc.changes (at);

-- One row: `epoch` changes when the feed is reinstalled (a reader flushes
-- everything), `pruned_upto` is the highest id pruning removed (a reader
-- whose position is below it missed rows, and flushes).
CREATE TABLE pvc.changes_meta (
    one          boolean PRIMARY KEY DEFAULT true CHECK (one),
    epoch        bigint NOT NULL,
    pruned_upto  bigint NOT NULL DEFAULT 0
);
INSERT INTO pvc.changes_meta (epoch)
VALUES ((extract(epoch FROM clock_timestamp()) * 1000000)::bigint);

-- The trigger function, generic: the row as JSON, so a renamed or dropped
-- column can never make Foreman's own statement fail. Arguments: the watched
-- columns, then '|', then the key columns. It raises nothing of its own and
-- has no EXCEPTION block (each would open a subtransaction per row). Also
-- the statement-level TRUNCATE trigger: one row, no keys (affects
-- everything).
-- SECURITY DEFINER: it runs as the owner role `migrate` gives it, which may
-- only insert into pvc.changes; Foreman's role needs no right on pvc.
CREATE FUNCTION pvc.log_change() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    new_row  jsonb;
    old_row  jsonb;
    any_row  jsonb;
    arg      text;
    sep      int := array_position(TG_ARGV, '|');
    changed  boolean := TG_OP <> 'UPDATE';
    drifted  boolean := false;
    new_keys jsonb := '{}';
    old_keys jsonb := '{}';
BEGIN
    IF TG_LEVEL = 'STATEMENT' THEN
        INSERT INTO pvc.changes (tbl, op, keys)
        VALUES (TG_TABLE_NAME, left(TG_OP, 1), '{"new": {}, "old": {}}');
        RETURN NULL;
    END IF;
    IF TG_OP <> 'DELETE' THEN new_row := to_jsonb(NEW); END IF;
    IF TG_OP <> 'INSERT' THEN old_row := to_jsonb(OLD); END IF;
    any_row := coalesce(new_row, old_row);
    -- The watched columns (TG_ARGV counts from 0).
    FOREACH arg IN ARRAY TG_ARGV[0:sep - 1] LOOP
        IF NOT any_row ? arg THEN
            -- Renamed or dropped: whatever the change, log it.
            changed := true;
            drifted := true;
        ELSIF NOT changed
              AND (new_row -> arg) IS DISTINCT FROM (old_row -> arg) THEN
            changed := true;
        END IF;
    END LOOP;
    -- Most updates (Foreman's report bookkeeping) end here.
    IF NOT changed THEN
        RETURN NULL;
    END IF;
    FOREACH arg IN ARRAY TG_ARGV[sep + 1:] LOOP
        IF new_row IS NOT NULL THEN
            new_keys := new_keys || jsonb_build_object(arg, new_row -> arg);
        END IF;
        IF old_row IS NOT NULL THEN
            old_keys := old_keys || jsonb_build_object(arg, old_row -> arg);
        END IF;
    END LOOP;
    INSERT INTO pvc.changes (tbl, op, keys, drift)
    VALUES (TG_TABLE_NAME, left(TG_OP, 1),
            jsonb_build_object('new', new_keys, 'old', old_keys), drifted);
    RETURN NULL;
END
$$;

-- Pruning, by any bridge (concurrent calls queue on the row lock).
CREATE FUNCTION pvc.prune_changes(keep interval) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    upto bigint;
    n    bigint;
BEGIN
    PERFORM 1 FROM pvc.changes_meta FOR UPDATE;
    SELECT max(id), count(*) INTO upto, n
      FROM pvc.changes WHERE at < now() - keep;
    IF upto IS NULL THEN
        RETURN 0;
    END IF;
    DELETE FROM pvc.changes WHERE id <= upto;
    UPDATE pvc.changes_meta SET pruned_upto = greatest(pruned_upto, upto);
    RETURN n;
END
$$;
