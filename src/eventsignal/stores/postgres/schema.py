"""Versioned, idempotent schema migrations for PostgreSQL.

Each component (the store's own ``"events"``, and later snapshots, subscriptions, read models) owns
a list of migrations; ``eventsignal_schema`` records how many of them ran. Migrating happens in one
transaction under a database-wide advisory lock, so two processes starting at once do not race:
the second waits, then finds nothing left to do. PostgreSQL DDL is transactional, so a failed
migration leaves no half-built tables behind.
"""

from __future__ import annotations

from collections.abc import Sequence

from psycopg import AsyncConnection, sql
from psycopg.rows import TupleRow

from eventsignal.domain.errors import StoreNotMigrated
from eventsignal.stores.sql.tenants import row_security

EVENTS_COMPONENT = "events"

# Version 2's call: set-based for a batch of distinct aggregates (see version 2 below).
_APPEND_V2 = """
        CREATE OR REPLACE FUNCTION eventsignal_append(
            lock_key BIGINT,
            channel TEXT,
            req_names TEXT[],
            req_ids TEXT[],
            req_expected INTEGER[],
            req_counts INTEGER[],
            req_creates BOOLEAN[],
            ev_requests INTEGER[],
            ev_ids UUID[],
            ev_versions INTEGER[],
            ev_names TEXT[],
            ev_timestamps TIMESTAMPTZ[],
            ev_data BYTEA[],
            ev_metadata TEXT[],
            OUT outcomes INTEGER[],
            OUT positions BIGINT[]
        ) LANGUAGE plpgsql AS $$
        #variable_conflict use_column
        DECLARE
            found_version INTEGER;
        BEGIN
            PERFORM pg_advisory_xact_lock(lock_key);
            IF (SELECT count(DISTINCT (n, i)) FROM unnest(req_names, req_ids) AS u(n, i))
               = cardinality(req_names) THEN
                WITH req AS (
                    SELECT * FROM unnest(req_names, req_ids, req_expected, req_counts,
                                         req_creates)
                             WITH ORDINALITY AS r(name, id, expected, count, creates, ord)
                ), created AS (
                    INSERT INTO eventsignal_aggregates (aggregate_name, aggregate_id, version)
                    SELECT name, id, count FROM req WHERE creates
                    ON CONFLICT DO NOTHING
                    RETURNING aggregate_name, aggregate_id
                ), updated AS (
                    UPDATE eventsignal_aggregates AS a SET version = a.version + req.count
                      FROM req
                     WHERE NOT req.creates AND a.aggregate_name = req.name
                       AND a.aggregate_id = req.id AND a.version = req.expected
                    RETURNING a.aggregate_name, a.aggregate_id
                ), done AS (
                    SELECT aggregate_name, aggregate_id FROM created
                    UNION ALL
                    SELECT aggregate_name, aggregate_id FROM updated
                )
                -- A refused request reports the version found; both modifying CTEs see the
                -- table as it was, which is what a refused request saw too.
                SELECT coalesce(array_agg(
                           CASE WHEN d.aggregate_id IS NOT NULL THEN -1
                                WHEN r.creates THEN -3
                                ELSE coalesce((SELECT a.version FROM eventsignal_aggregates AS a
                                                WHERE a.aggregate_name = r.name
                                                  AND a.aggregate_id = r.id), -2)
                           END ORDER BY r.ord), '{}')
                  INTO outcomes
                  FROM req AS r
                  LEFT JOIN done AS d ON d.aggregate_name = r.name AND d.aggregate_id = r.id;
            ELSE
                outcomes := '{}';
                FOR i IN 1 .. coalesce(array_length(req_names, 1), 0) LOOP
                    IF req_creates[i] THEN
                        INSERT INTO eventsignal_aggregates (aggregate_name, aggregate_id, version)
                        VALUES (req_names[i], req_ids[i], req_counts[i])
                        ON CONFLICT DO NOTHING;
                        outcomes := outcomes || CASE WHEN FOUND THEN -1 ELSE -3 END;
                        CONTINUE;
                    END IF;
                    UPDATE eventsignal_aggregates SET version = version + req_counts[i]
                     WHERE aggregate_name = req_names[i] AND aggregate_id = req_ids[i]
                       AND version = req_expected[i];
                    IF FOUND THEN
                        outcomes := outcomes || -1;
                    ELSE
                        SELECT version INTO found_version FROM eventsignal_aggregates
                         WHERE aggregate_name = req_names[i] AND aggregate_id = req_ids[i];
                        outcomes := outcomes || coalesce(found_version, -2);
                    END IF;
                END LOOP;
            END IF;
            WITH inserted AS (
                INSERT INTO eventsignal_events (event_id, aggregate_name, aggregate_id, version,
                                                name, timestamp, data, metadata)
                SELECT e.id, req_names[e.req], req_ids[e.req], e.version, e.name, e.ts, e.data,
                       e.metadata::jsonb
                  FROM unnest(ev_requests, ev_ids, ev_versions, ev_names, ev_timestamps, ev_data,
                              ev_metadata)
                       WITH ORDINALITY AS e(req, id, version, name, ts, data, metadata, ord)
                 WHERE outcomes[e.req] = -1
                 ORDER BY e.ord
                RETURNING position
            )
            SELECT coalesce(array_agg(position ORDER BY position), '{}') INTO positions
              FROM inserted;
            IF cardinality(positions) > 0 THEN
                PERFORM pg_notify(channel, positions[cardinality(positions)]::text);
            END IF;
        END
        $$
        """


def rewritten(body: str, *changes: tuple[str, str]) -> str:
    """``body`` with each ``before`` replaced by its ``after``; each must be there."""
    for before, after in changes:
        assert before in body, before
        body = body.replace(before, after)
    return body


# Version 3's call for the default tenant: version 2's, its statements naming the tenant.
_APPEND_V3_DEFAULT_TENANT = rewritten(
    _APPEND_V2,
    (
        """WITH req AS (
                    SELECT * FROM unnest(req_names, req_ids, req_expected, req_counts,
                                         req_creates)
                             WITH ORDINALITY AS r(name, id, expected, count, creates, ord)""",
        """-- The tenant comes with each request, not as a constant: a constant would let
                -- the planner read every stream of the default tenant, then join.
                WITH req AS (
                    SELECT *, ''::text AS tenant
                      FROM unnest(req_names, req_ids, req_expected, req_counts, req_creates)
                           WITH ORDINALITY AS r(name, id, expected, count, creates, ord)""",
    ),
    (
        """WHERE NOT req.creates AND a.aggregate_name = req.name
                       AND a.aggregate_id = req.id AND a.version = req.expected""",
        """WHERE NOT req.creates AND a.tenant = req.tenant
                       AND a.aggregate_name = req.name AND a.aggregate_id = req.id
                       AND a.version = req.expected""",
    ),
    (
        """-- A refused request reports the version found; both modifying CTEs see the
                -- table as it was, which is what a refused request saw too.
                """,
        "",
    ),
    (
        """WHERE a.aggregate_name = r.name""",
        """WHERE a.tenant = ''
                                                  AND a.aggregate_name = r.name""",
    ),
    (
        """WHERE aggregate_name = req_names[i] AND aggregate_id = req_ids[i]
                       AND version = req_expected[i];""",
        """WHERE tenant = '' AND aggregate_name = req_names[i]
                       AND aggregate_id = req_ids[i] AND version = req_expected[i];""",
    ),
    (
        """WHERE aggregate_name = req_names[i] AND aggregate_id = req_ids[i];""",
        """WHERE tenant = '' AND aggregate_name = req_names[i]
                           AND aggregate_id = req_ids[i];""",
    ),
)

EVENTS_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """
        CREATE TABLE eventsignal_aggregates (
            aggregate_name TEXT NOT NULL,
            aggregate_id TEXT NOT NULL,
            version INTEGER NOT NULL DEFAULT 0,
            created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            PRIMARY KEY (aggregate_name, aggregate_id)
        )
        """,
        """
        CREATE TABLE eventsignal_events (
            position BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            event_id UUID NOT NULL UNIQUE,
            aggregate_name TEXT NOT NULL,
            aggregate_id TEXT NOT NULL,
            version INTEGER NOT NULL,
            name TEXT NOT NULL,
            timestamp TIMESTAMPTZ NOT NULL,
            data BYTEA NOT NULL,
            metadata JSONB NOT NULL DEFAULT '{}',
            UNIQUE (aggregate_name, aggregate_id, version)
        )
        """,
        # One call appends a whole group-commit batch: one round trip, whatever its size.
        # Requests are checked in order, so two for the same aggregate see each other. The
        # advisory lock serialises appends, so positions become visible in increasing order and a
        # reader following read_all never skips one. A request with req_creates[i] records a new
        # aggregate with its first events. outcomes[i]: -1 accepted, -2 aggregate not found,
        # -3 aggregate exists, otherwise the version found instead of the expected one.
        """
        CREATE FUNCTION eventsignal_append(
            lock_key BIGINT,
            channel TEXT,
            req_names TEXT[],
            req_ids TEXT[],
            req_expected INTEGER[],
            req_counts INTEGER[],
            req_creates BOOLEAN[],
            ev_requests INTEGER[],
            ev_ids UUID[],
            ev_versions INTEGER[],
            ev_names TEXT[],
            ev_timestamps TIMESTAMPTZ[],
            ev_data BYTEA[],
            ev_metadata TEXT[],
            OUT outcomes INTEGER[],
            OUT positions BIGINT[]
        ) LANGUAGE plpgsql AS $$
        #variable_conflict use_column
        DECLARE
            found_version INTEGER;
        BEGIN
            PERFORM pg_advisory_xact_lock(lock_key);
            outcomes := '{}';
            FOR i IN 1 .. coalesce(array_length(req_names, 1), 0) LOOP
                IF req_creates[i] THEN
                    INSERT INTO eventsignal_aggregates (aggregate_name, aggregate_id, version)
                    VALUES (req_names[i], req_ids[i], req_counts[i])
                    ON CONFLICT DO NOTHING;
                    outcomes := outcomes || CASE WHEN FOUND THEN -1 ELSE -3 END;
                    CONTINUE;
                END IF;
                UPDATE eventsignal_aggregates SET version = version + req_counts[i]
                 WHERE aggregate_name = req_names[i] AND aggregate_id = req_ids[i]
                   AND version = req_expected[i];
                IF FOUND THEN
                    outcomes := outcomes || -1;
                ELSE
                    SELECT version INTO found_version FROM eventsignal_aggregates
                     WHERE aggregate_name = req_names[i] AND aggregate_id = req_ids[i];
                    outcomes := outcomes || coalesce(found_version, -2);
                END IF;
            END LOOP;
            WITH inserted AS (
                INSERT INTO eventsignal_events (event_id, aggregate_name, aggregate_id, version,
                                                name, timestamp, data, metadata)
                SELECT e.id, req_names[e.req], req_ids[e.req], e.version, e.name, e.ts, e.data,
                       e.metadata::jsonb
                  FROM unnest(ev_requests, ev_ids, ev_versions, ev_names, ev_timestamps, ev_data,
                              ev_metadata)
                       WITH ORDINALITY AS e(req, id, version, name, ts, data, metadata, ord)
                 WHERE outcomes[e.req] = -1
                 ORDER BY e.ord
                RETURNING position
            )
            SELECT coalesce(array_agg(position ORDER BY position), '{}') INTO positions
              FROM inserted;
            IF cardinality(positions) > 0 THEN
                PERFORM pg_notify(channel, positions[cardinality(positions)]::text);
            END IF;
        END
        $$
        """,
    ),
    (
        # Version 2: the same call, set-based. A batch whose requests name distinct aggregates
        # (the usual case: one command in flight per aggregate) is checked by one INSERT and one
        # UPDATE over all its requests instead of one or two statements per request. A batch
        # naming an aggregate twice keeps the per-request loop, so each request sees the ones
        # before it.
        _APPEND_V2,
    ),
    (
        # Version 3: tenants. A tenant beside every stream and event, first in their keys; ''
        # is the default tenant, all the rows written before. Another tenant's log is read
        # through an index of its own; the default tenant's by position, as before, so that its
        # appends cost what they did (no index entry more per event).
        "ALTER TABLE eventsignal_aggregates ADD COLUMN tenant TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE eventsignal_aggregates DROP CONSTRAINT eventsignal_aggregates_pkey",
        "ALTER TABLE eventsignal_aggregates ADD CONSTRAINT eventsignal_aggregates_pkey"
        " PRIMARY KEY (tenant, aggregate_name, aggregate_id)",
        "ALTER TABLE eventsignal_events ADD COLUMN tenant TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE eventsignal_events"
        " DROP CONSTRAINT eventsignal_events_aggregate_name_aggregate_id_version_key",
        "ALTER TABLE eventsignal_events ADD CONSTRAINT eventsignal_events_stream_version_key"
        " UNIQUE (tenant, aggregate_name, aggregate_id, version)",
        "CREATE INDEX eventsignal_events_of_tenant ON eventsignal_events (tenant, position)"
        " WHERE tenant <> ''",
        *row_security("eventsignal_aggregates"),
        *row_security("eventsignal_events"),
        # The head of the whole log, whatever tenant the session reads: a reader of every
        # tenant for one statement, then back to the session's own.
        """
        CREATE FUNCTION eventsignal_head_position() RETURNS BIGINT LANGUAGE plpgsql AS $$
        DECLARE
            prior TEXT := current_setting('eventsignal.tenant', true);
            head BIGINT;
        BEGIN
            PERFORM set_config('eventsignal.tenant', '*', true);
            SELECT coalesce(max(position), 0) INTO head FROM eventsignal_events;
            PERFORM set_config('eventsignal.tenant', coalesce(prior, ''), true);
            RETURN head;
        END
        $$
        """,
        # Version 2's call with the tenant of each request: one pass over the whole batch,
        # whatever tenants it mixes. Its transaction names the batch's tenants in the setting
        # eventsignal.batch, so row-level security lets it read and write their rows, and no
        # other tenant's; the setting is put back when it is done.
        """
        CREATE FUNCTION eventsignal_append_tenants(
            lock_key BIGINT,
            channel TEXT,
            req_tenants TEXT[],
            req_names TEXT[],
            req_ids TEXT[],
            req_expected INTEGER[],
            req_counts INTEGER[],
            req_creates BOOLEAN[],
            ev_requests INTEGER[],
            ev_ids UUID[],
            ev_versions INTEGER[],
            ev_names TEXT[],
            ev_timestamps TIMESTAMPTZ[],
            ev_data BYTEA[],
            ev_metadata TEXT[],
            OUT outcomes INTEGER[],
            OUT positions BIGINT[]
        ) LANGUAGE plpgsql AS $$
        #variable_conflict use_column
        DECLARE
            found_version INTEGER;
            prior TEXT := current_setting('eventsignal.batch', true);
        BEGIN
            PERFORM pg_advisory_xact_lock(lock_key);
            PERFORM set_config('eventsignal.batch',
                               ',' || (SELECT string_agg(DISTINCT t, ',')
                                         FROM unnest(req_tenants) AS t) || ',',
                               true);
            IF (SELECT count(DISTINCT (t, n, i))
                  FROM unnest(req_tenants, req_names, req_ids) AS u(t, n, i))
               = cardinality(req_names) THEN
                WITH req AS (
                    SELECT * FROM unnest(req_tenants, req_names, req_ids, req_expected,
                                         req_counts, req_creates)
                             WITH ORDINALITY AS r(tenant, name, id, expected, count, creates, ord)
                ), created AS (
                    INSERT INTO eventsignal_aggregates (tenant, aggregate_name, aggregate_id,
                                                       version)
                    SELECT tenant, name, id, count FROM req WHERE creates
                    ON CONFLICT DO NOTHING
                    RETURNING tenant, aggregate_name, aggregate_id
                ), updated AS (
                    UPDATE eventsignal_aggregates AS a SET version = a.version + req.count
                      FROM req
                     WHERE NOT req.creates AND a.tenant = req.tenant
                       AND a.aggregate_name = req.name AND a.aggregate_id = req.id
                       AND a.version = req.expected
                    RETURNING a.tenant, a.aggregate_name, a.aggregate_id
                ), done AS (
                    SELECT tenant, aggregate_name, aggregate_id FROM created
                    UNION ALL
                    SELECT tenant, aggregate_name, aggregate_id FROM updated
                )
                SELECT coalesce(array_agg(
                           CASE WHEN d.aggregate_id IS NOT NULL THEN -1
                                WHEN r.creates THEN -3
                                ELSE coalesce((SELECT a.version FROM eventsignal_aggregates AS a
                                                WHERE a.tenant = r.tenant
                                                  AND a.aggregate_name = r.name
                                                  AND a.aggregate_id = r.id), -2)
                           END ORDER BY r.ord), '{}')
                  INTO outcomes
                  FROM req AS r
                  LEFT JOIN done AS d ON d.tenant = r.tenant AND d.aggregate_name = r.name
                                     AND d.aggregate_id = r.id;
            ELSE
                outcomes := '{}';
                FOR i IN 1 .. coalesce(array_length(req_names, 1), 0) LOOP
                    IF req_creates[i] THEN
                        INSERT INTO eventsignal_aggregates (tenant, aggregate_name, aggregate_id,
                                                           version)
                        VALUES (req_tenants[i], req_names[i], req_ids[i], req_counts[i])
                        ON CONFLICT DO NOTHING;
                        outcomes := outcomes || CASE WHEN FOUND THEN -1 ELSE -3 END;
                        CONTINUE;
                    END IF;
                    UPDATE eventsignal_aggregates SET version = version + req_counts[i]
                     WHERE tenant = req_tenants[i] AND aggregate_name = req_names[i]
                       AND aggregate_id = req_ids[i] AND version = req_expected[i];
                    IF FOUND THEN
                        outcomes := outcomes || -1;
                    ELSE
                        SELECT version INTO found_version FROM eventsignal_aggregates
                         WHERE tenant = req_tenants[i] AND aggregate_name = req_names[i]
                           AND aggregate_id = req_ids[i];
                        outcomes := outcomes || coalesce(found_version, -2);
                    END IF;
                END LOOP;
            END IF;
            WITH inserted AS (
                INSERT INTO eventsignal_events (tenant, event_id, aggregate_name, aggregate_id,
                                                version, name, timestamp, data, metadata)
                SELECT req_tenants[e.req], e.id, req_names[e.req], req_ids[e.req], e.version,
                       e.name, e.ts, e.data, e.metadata::jsonb
                  FROM unnest(ev_requests, ev_ids, ev_versions, ev_names, ev_timestamps, ev_data,
                              ev_metadata)
                       WITH ORDINALITY AS e(req, id, version, name, ts, data, metadata, ord)
                 WHERE outcomes[e.req] = -1
                 ORDER BY e.ord
                RETURNING position
            )
            SELECT coalesce(array_agg(position ORDER BY position), '{}') INTO positions
              FROM inserted;
            IF cardinality(positions) > 0 THEN
                PERFORM pg_notify(channel, positions[cardinality(positions)]::text);
            END IF;
            PERFORM set_config('eventsignal.batch', coalesce(prior, ''), true);
        END
        $$
        """,
        # The call of versions 1 and 2, kept for the default tenant's batches (and the callers
        # of that signature, eventsignal_append_keyed among them), with version 2's body, as
        # lean: its statements name the default tenant, the tenant its session reads (the store
        # sees to that), so row-level security lets it write.
        _APPEND_V3_DEFAULT_TENANT,
    ),
)

# Version 4: version 3's call for the default tenant, its check for an aggregate named twice in
# a batch a hash aggregate instead of a count of distinct row values, which sorted and compared
# records generically: 3-9% of the call's server time for 64 requests. Same signature, so
# processes still on version 3 keep working.
_DISTINCT_ROWS = """IF (SELECT count(DISTINCT (n, i)) FROM unnest(req_names, req_ids) AS u(n, i))
               = cardinality(req_names) THEN"""
_NO_REPEATS = """IF NOT EXISTS (SELECT FROM unnest(req_names, req_ids) AS u(n, i)
                           GROUP BY n, i HAVING count(*) > 1) THEN"""
EVENTS_MIGRATIONS = (
    *EVENTS_MIGRATIONS,
    (rewritten(_APPEND_V3_DEFAULT_TENANT, (_DISTINCT_ROWS, _NO_REPEATS)),),
)

# One key for the whole database: migrations are rare, and advisory locks are per database.
_MIGRATION_LOCK = 0x6576_7369_676E_616C  # "evsignal"


async def migrate_component(
    conn: AsyncConnection[TupleRow],
    component: str,
    migrations: Sequence[Sequence[str]],
    *,
    schema: str | None = None,
) -> int:
    """Run the migrations of ``component`` that have not run yet; return the version reached.

    ``conn`` must be in autocommit mode; the work happens in a transaction of its own. A
    component already up to date is left alone without a statement that needs more than reading
    ``eventsignal_schema``: an application may connect as a role that cannot create tables (see
    the store's tenants), once the tables' owner migrated them.
    """
    if await schema_version(conn, component) == len(migrations):
        return len(migrations)
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        if schema is not None:
            await conn.execute(
                sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema))
            )
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS eventsignal_schema ("
            " component TEXT PRIMARY KEY, version INTEGER NOT NULL)"
        )
        cursor = await conn.execute(
            "SELECT version FROM eventsignal_schema WHERE component = %s", (component,)
        )
        row = await cursor.fetchone()
        current = 0 if row is None else int(row[0])
        if current > len(migrations):
            raise StoreNotMigrated(
                f"the database schema of {component!r} is at version {current}, newer than the "
                f"{len(migrations)} migrations this eventsignal knows: upgrade eventsignal",
                component=component,
                found=current,
                expected=len(migrations),
            )
        for statements in migrations[current:]:
            for statement in statements:
                await conn.execute(statement.encode())
        if current < len(migrations):
            await conn.execute(
                "INSERT INTO eventsignal_schema (component, version) VALUES (%s, %s)"
                " ON CONFLICT (component) DO UPDATE SET version = excluded.version",
                (component, len(migrations)),
            )
    return len(migrations)


async def schema_version(conn: AsyncConnection[TupleRow], component: str) -> int:
    """The recorded version of ``component``; 0 when nothing was ever migrated."""
    cursor = await conn.execute(
        "SELECT to_regclass('eventsignal_schema') IS NOT NULL",
    )
    row = await cursor.fetchone()
    if row is None or not row[0]:
        return 0
    cursor = await conn.execute(
        "SELECT version FROM eventsignal_schema WHERE component = %s", (component,)
    )
    row = await cursor.fetchone()
    return 0 if row is None else int(row[0])


# The idempotency component (eventsignal.stores.sql.idempotency) adds to its shared table a
# function of PostgreSQL's own: a group-commit batch with keys is still one call, one round trip.
# It calls eventsignal_append, then records the keys of the requests accepted and drops those
# retention no longer keeps. Statements in a function see the ones before them, so the prune
# counts the keys just recorded.
KEYED_APPEND_FUNCTION = """
    CREATE OR REPLACE FUNCTION eventsignal_append_keyed(
        lock_key BIGINT,
        channel TEXT,
        req_names TEXT[],
        req_ids TEXT[],
        req_expected INTEGER[],
        req_counts INTEGER[],
        req_creates BOOLEAN[],
        ev_requests INTEGER[],
        ev_ids UUID[],
        ev_versions INTEGER[],
        ev_names TEXT[],
        ev_timestamps TIMESTAMPTZ[],
        ev_data BYTEA[],
        ev_metadata TEXT[],
        key_requests INTEGER[],
        key_keys TEXT[],
        key_digests TEXT[],
        key_times TIMESTAMPTZ[],
        key_cutoffs TIMESTAMPTZ[],
        key_keeps INTEGER[],
        OUT outcomes INTEGER[],
        OUT positions BIGINT[]
    ) LANGUAGE plpgsql AS $$
    BEGIN
        SELECT a.outcomes, a.positions INTO outcomes, positions
          FROM eventsignal_append(lock_key, channel, req_names, req_ids, req_expected,
                                  req_counts, req_creates, ev_requests, ev_ids, ev_versions,
                                  ev_names, ev_timestamps, ev_data, ev_metadata) AS a;
        INSERT INTO eventsignal_command_keys
               (aggregate_name, aggregate_id, key, digest, version, recorded_at)
        SELECT req_names[k.req], req_ids[k.req], k.key, k.digest,
               req_expected[k.req] + req_counts[k.req], k.at
          FROM unnest(key_requests, key_keys, key_digests, key_times) AS k(req, key, digest, at)
         WHERE outcomes[k.req] = -1;
        DELETE FROM eventsignal_command_keys AS t
         USING unnest(key_requests, key_cutoffs, key_keeps) AS k(req, cutoff, keep)
         WHERE outcomes[k.req] = -1
           AND t.aggregate_name = req_names[k.req] AND t.aggregate_id = req_ids[k.req]
           AND (t.recorded_at < k.cutoff OR t.version <= (
                SELECT x.version FROM eventsignal_command_keys AS x
                 WHERE x.aggregate_name = req_names[k.req] AND x.aggregate_id = req_ids[k.req]
                 ORDER BY x.version DESC OFFSET k.keep LIMIT 1));
    END
    $$
"""
