"""The PostgreSQL schema of the ``dcb`` component: the tags of DCB events, an index of events by
type, and ``eventsignal_dcb_append``, which checks and writes one group-commit batch of DCB
appends (see :mod:`eventsignal.stores.postgres.dcb`), of the default tenant's log.

The function's plans are made once per connection (``plan_cache_mode``): planning its condition
check for each call's arguments cost more than the rest of an append. A plan made once must
suit the tables at any size, also when first made on nearly empty ones, so the function plans
only nested loops over index lookups (no sequential scans, hash or merge joins), which every
statement in it has, and which is what a batch needs however large the log grows; its writes
place events by array index, joining nothing.
"""

from __future__ import annotations

from eventsignal.stores.postgres.schema import rewritten

# The arguments of eventsignal_dcb_append, in every version of it.
_SIGNATURE = """
            lock_key BIGINT,
            channel TEXT,
            req_after BIGINT[],
            it_req INTEGER[],
            it_tags_from INTEGER[],
            it_tags_to INTEGER[],
            it_types_from INTEGER[],
            it_types_to INTEGER[],
            tg_tags TEXT[],
            tg_names TEXT[],
            tg_ids TEXT[],
            ty_types TEXT[],
            dep_requests INTEGER[],
            dep_on INTEGER[],
            ev_requests INTEGER[],
            ev_ids UUID[],
            ev_keys TEXT[],
            ev_names TEXT[],
            ev_timestamps TIMESTAMPTZ[],
            ev_data BYTEA[],
            ev_metadata TEXT[],
            tag_events INTEGER[],
            tag_values TEXT[],
            OUT failed BIGINT[],
            OUT positions BIGINT[]
        """

# The variables of eventsignal_dcb_append, in every version.
_VARIABLES = """\
        DECLARE
            request INTEGER;
            since BIGINT;
            hit BIGINT;
            types TEXT[];
            written INTEGER;
"""

# How a batch's conditions are checked (sets failed[request]): items with tags, in every version.
_TAGGED = """\
            -- Items with tags (the usual kind), all at once: from the index rows of the first
            -- tag after the request's position, kept if the event has the item's other tags
            -- and one of its types.
            FOR request, hit IN
                SELECT i.req, min(x.position)
                  FROM unnest(it_req, it_tags_from, it_tags_to, it_types_from, it_types_to)
                       AS i(req, tf, tt, yf, yt)
                 CROSS JOIN LATERAL (
                       SELECT t.position FROM eventsignal_tags AS t
                        WHERE i.tt >= i.tf AND t.tag = tg_tags[i.tf]
                          AND t.position > req_after[i.req]
                       UNION ALL
                       SELECT a.position FROM eventsignal_events AS a
                        WHERE i.tt >= i.tf AND a.aggregate_name = tg_names[i.tf]
                          AND a.aggregate_id = tg_ids[i.tf] AND a.position > req_after[i.req]
                       ) AS c
                  JOIN eventsignal_events AS x ON x.position = c.position
                 WHERE (i.yt < i.yf OR x.name = ANY (ty_types[i.yf:i.yt]))
                   AND NOT EXISTS (
                       SELECT 1 FROM generate_series(i.tf + 1, i.tt) AS o(k)
                        WHERE NOT EXISTS (SELECT 1 FROM eventsignal_tags AS t
                                           WHERE t.tag = tg_tags[o.k] AND t.position = x.position)
                          AND NOT coalesce(x.aggregate_name = tg_names[o.k]
                                           AND x.aggregate_id = tg_ids[o.k], FALSE))
                 GROUP BY i.req
            LOOP
                failed[request] := hit;
            END LOOP;
"""

# Items without tags, and requests whose condition selects a batch-mate's events: in every version.
_UNTAGGED_AND_DEPENDENCIES = """\
            -- Items without tags, one by one: each is the first event after a position (of
            -- one of some types), which an index finds without scanning.
            FOR item IN 1 .. coalesce(cardinality(it_req), 0) LOOP
                CONTINUE WHEN it_tags_to[item] >= it_tags_from[item];
                request := it_req[item];
                CONTINUE WHEN failed[request] IS NOT NULL;
                since := req_after[request];
                types := ty_types[it_types_from[item]:it_types_to[item]];
                IF cardinality(types) = 0 THEN
                    SELECT min(e.position) INTO hit FROM eventsignal_events AS e
                     WHERE e.position > since;
                ELSE
                    SELECT min(e.position) INTO hit FROM eventsignal_events AS e
                     WHERE e.name = ANY (types) AND e.position > since;
                END IF;
                failed[request] := hit;
            END LOOP;
            -- A request whose condition selects the events of an earlier one of the batch
            -- fails if that one is written (-n names it), in order, so chains resolve.
            FOR dep IN 1 .. coalesce(cardinality(dep_requests), 0) LOOP
                IF failed[dep_requests[dep]] IS NULL AND failed[dep_on[dep]] IS NULL THEN
                    failed[dep_requests[dep]] := -dep_on[dep];
                END IF;
            END LOOP;
"""

_WRITE_V1 = """\
            SELECT count(*) INTO written FROM unnest(ev_requests) AS r(req)
             WHERE failed[r.req] IS NULL;
            positions := ARRAY(
                SELECT nextval(pg_get_serial_sequence('eventsignal_events', 'position'))
                  FROM generate_series(1, written) ORDER BY 1);
            WITH ev AS (
                SELECT e.*, row_number() OVER (ORDER BY e.ord) AS rn
                  FROM unnest(ev_requests, ev_ids, ev_keys, ev_names, ev_timestamps, ev_data,
                              ev_metadata)
                       WITH ORDINALITY AS e(req, id, key, name, ts, data, metadata, ord)
                 WHERE failed[e.req] IS NULL
            ), events AS (
                INSERT INTO eventsignal_events (position, event_id, aggregate_name,
                                                aggregate_id, version, name, timestamp, data,
                                                metadata)
                OVERRIDING SYSTEM VALUE
                SELECT positions[ev.rn], ev.id, '', ev.key, positions[ev.rn], ev.name, ev.ts,
                       ev.data, ev.metadata::jsonb
                  FROM ev
            )
            INSERT INTO eventsignal_tags (tag, position)
            SELECT t.tag, positions[ev.rn]
              FROM unnest(tag_events, tag_values) AS t(event, tag)
              JOIN ev ON ev.ord = t.event;
            IF written > 0 THEN
                PERFORM pg_notify(channel, positions[written]::text);
            END IF;
        END
        $$
        """

# Version 2 checks conditions of one plain tag per item (no types, no aggregate: the usual
# kind) with a statement of a few plan nodes, which starts faster than the general one.
_ONE_TAG_EACH = """\
            IF it_tags_from = it_tags_to AND cardinality(ty_types) = 0
               AND cardinality(array_remove(tg_names, NULL)) = 0 THEN
                FOR request, hit IN
                    SELECT i.req, min(t.position)
                      FROM unnest(it_req, it_tags_from) AS i(req, tf)
                      JOIN eventsignal_tags AS t
                        ON t.tag = tg_tags[i.tf] AND t.position > req_after[i.req]
                     WHERE EXISTS (SELECT 1 FROM eventsignal_events AS x
                                    WHERE x.position = t.position)
                     GROUP BY i.req
                LOOP
                    failed[request] := hit;
                END LOOP;
            ELSE
"""

# Version 2 draws positions one by one (in order: the lock is held) and places each event by
# its index in the batch (NULL: not written), so both inserts read the arrays as they are: no
# window function, no join.
_WRITE = """\
            sequence := pg_get_serial_sequence('eventsignal_events', 'position');
            IF cardinality(array_remove(failed, NULL)) = 0 THEN  -- all passed, as usual
                FOR k IN 1 .. coalesce(cardinality(ev_requests), 0) LOOP
                    positions[k] := nextval(sequence);
                END LOOP;
                placed := positions;
            ELSE
                SELECT count(*) INTO written FROM unnest(ev_requests) AS r(req)
                 WHERE failed[r.req] IS NULL;
                FOR k IN 1 .. written LOOP
                    positions[k] := nextval(sequence);
                END LOOP;
                placed := ARRAY(
                    SELECT CASE WHEN failed[r.req] IS NULL THEN positions[
                               count(*) FILTER (WHERE failed[r.req] IS NULL) OVER (ORDER BY r.ord)]
                           END
                      FROM unnest(ev_requests) WITH ORDINALITY AS r(req, ord) ORDER BY r.ord);
            END IF;
            INSERT INTO eventsignal_events (position, event_id, aggregate_name, aggregate_id,
                                            version, name, timestamp, data, metadata)
            OVERRIDING SYSTEM VALUE
            SELECT placed[e.ord], e.id, '', e.key, placed[e.ord], e.name, e.ts, e.data,
                   e.metadata::jsonb
              FROM unnest(ev_ids, ev_keys, ev_names, ev_timestamps, ev_data, ev_metadata)
                   WITH ORDINALITY AS e(id, key, name, ts, data, metadata, ord)
             WHERE placed[e.ord] IS NOT NULL;
            INSERT INTO eventsignal_tags (tag, position)
            SELECT t.tag, placed[t.event] FROM unnest(tag_events, tag_values) AS t(event, tag)
             WHERE placed[t.event] IS NOT NULL;
            IF cardinality(positions) > 0 THEN
                PERFORM pg_notify(channel, positions[cardinality(positions)]::text);
            END IF;
        END
        $$
        """


# Version 2 on: the checks of version 1 restricted to the default tenant's events.
_TAGGED_OF_DEFAULT = rewritten(
    _TAGGED,
    (
        "WHERE i.tt >= i.tf AND a.aggregate_name = tg_names[i.tf]",
        "WHERE i.tt >= i.tf AND a.tenant = '' AND a.aggregate_name = tg_names[i.tf]",
    ),
    # a condition no index serves, so the planner keeps to the ones it has
    (
        "WHERE (i.yt < i.yf OR",
        "WHERE (x.tenant = '') IS TRUE\n                   AND (i.yt < i.yf OR",
    ),
)
_ONE_TAG_EACH_OF_DEFAULT = rewritten(
    _ONE_TAG_EACH,
    (
        "WHERE x.position = t.position)",
        "WHERE x.position = t.position\n                                      AND x.tenant = '')",
    ),
)
_UNTAGGED_AND_DEPENDENCIES_OF_DEFAULT = rewritten(
    _UNTAGGED_AND_DEPENDENCIES,
    ("WHERE e.position > since;", "WHERE (e.tenant = '') IS TRUE AND e.position > since;"),
    ("WHERE e.name = ANY (types)", "WHERE (e.tenant = '') IS TRUE AND e.name = ANY (types)"),
)

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """
        CREATE TABLE eventsignal_tags (
            tag TEXT NOT NULL,
            position BIGINT NOT NULL,
            PRIMARY KEY (tag, position)
        )
        """,
        "CREATE INDEX eventsignal_events_by_name ON eventsignal_events (name, position)",
        # One call per batch. Each request's condition comes as query items (it_req names the
        # request; it_tags/it_types the slices of tg_*/ty_* holding the item's tags and types;
        # a tag's aggregate, if it names one, in tg_names/tg_ids) and req_after. Every item is
        # checked by static SQL, planned once per connection, against everything committed;
        # dep_requests[k] fails if dep_on[k] (earlier in the batch, whose events its condition
        # selects) is written.
        # failed[i]: a position that fails request i (NULL: it passed); positions: those of
        # the events written.
        f"""
        CREATE FUNCTION eventsignal_dcb_append({_SIGNATURE}) LANGUAGE plpgsql AS $$
{_VARIABLES}        BEGIN
            PERFORM pg_advisory_xact_lock(lock_key);
            failed := array_fill(NULL::BIGINT, ARRAY[cardinality(req_after)]);
{_TAGGED}{_UNTAGGED_AND_DEPENDENCIES}{_WRITE_V1}""",
    ),
    (
        # Version 2: tenants (events component, version 3). DCB reads and writes the default
        # tenant's events alone: an aggregate's events through the stream key, which starts
        # with the tenant now, the others by position or through the index of their types, as
        # before (there the condition on the tenant is one no index serves, so that the
        # planner keeps to them).
        f"""
        CREATE OR REPLACE FUNCTION eventsignal_dcb_append({_SIGNATURE}) LANGUAGE plpgsql AS $$
{_VARIABLES}        BEGIN
            PERFORM pg_advisory_xact_lock(lock_key);
            failed := array_fill(NULL::BIGINT, ARRAY[cardinality(req_after)]);
{_TAGGED_OF_DEFAULT}{_UNTAGGED_AND_DEPENDENCIES_OF_DEFAULT}{_WRITE_V1}""",
    ),
    # Version 3: plans made once per connection, of nested loops over index lookups (see the
    # module's docstring); the same checks on the default tenant's log, and writes that join
    # nothing.
    (
        f"""
        CREATE OR REPLACE FUNCTION eventsignal_dcb_append({_SIGNATURE}) LANGUAGE plpgsql
        SET plan_cache_mode = force_generic_plan
        SET enable_seqscan = off
        SET enable_hashjoin = off
        SET enable_mergejoin = off
        SET jit = off
        AS $$
{_VARIABLES}            placed BIGINT[];  -- each event's position (NULL: not written)
            sequence REGCLASS;
        BEGIN
            positions := ARRAY[]::BIGINT[];
            PERFORM pg_advisory_xact_lock(lock_key);
            failed := array_fill(NULL::BIGINT, ARRAY[cardinality(req_after)]);
{_ONE_TAG_EACH_OF_DEFAULT}{_TAGGED_OF_DEFAULT}            END IF;
{_UNTAGGED_AND_DEPENDENCIES_OF_DEFAULT}{_WRITE}""",
    ),
)
