"""SQL that the SQLite and PostgreSQL stores share for tenants (:mod:`~eventsignal.stores.tenancy`).

Each stream's row in ``eventsignal_aggregates`` and each event's in ``eventsignal_events`` holds
its tenant (``''``: the default one), first in their keys. Statements here use ``?``
placeholders (:func:`~eventsignal.stores.sql.for_dialect` turns them into PostgreSQL's).
"""

from __future__ import annotations

from eventsignal.stores.tenancy import EVERY_TENANT

# Every tenant holding a stream, sorted: one probe of the key per tenant (a loose index scan),
# not a pass over every stream.
TENANTS = """
    WITH RECURSIVE found (tenant) AS (
        SELECT min(tenant) FROM eventsignal_aggregates
        UNION ALL
        SELECT (SELECT min(a.tenant) FROM eventsignal_aggregates AS a WHERE a.tenant > found.tenant)
          FROM found WHERE found.tenant IS NOT NULL
    )
    SELECT tenant FROM found WHERE tenant IS NOT NULL
"""

# Another tenant's log, and its head, are read through the index (tenant, position) WHERE
# tenant <> '': the statements repeat that condition, so that a plan made for any tenant may use
# the index. The default tenant's rows have no entry there (every application without tenants
# pays nothing for it): its log is read by position, with this condition, which no index serves.
# A plain "tenant = ''" would let SQLite, and PostgreSQL while the column has no statistics (just
# after the migration that added it), read every row of the default tenant by the stream key,
# whose first column is the tenant, and sort them all.
DEFAULT_ROWS = "(tenant = '') IS TRUE"
OTHER_TENANT = "tenant = ? AND tenant <> ''"

AGGREGATES = (
    "SELECT aggregate_name, aggregate_id, version, created_at, tenant FROM eventsignal_aggregates"
)


def listing(aggregate_name: str | None, tenant: str | None) -> tuple[str, tuple[str, ...]]:
    """The statement listing the live streams of ``tenant`` (``None``: of every tenant), of one
    type or all, oldest first, with its parameters: the columns of :data:`AGGREGATES`.

    Archived and deleted streams (a negative marker for a version) are not listed.
    """
    conditions = ["version >= 0"]
    params: list[str] = []
    if tenant is not None:
        conditions.append("tenant = ?")
        params.append(tenant)
    if aggregate_name is not None:
        conditions.append("aggregate_name = ?")
        params.append(aggregate_name)
    order = "created_at, aggregate_name, aggregate_id" + (", tenant" if tenant is None else "")
    return f"{AGGREGATES} WHERE {' AND '.join(conditions)} ORDER BY {order}", tuple(params)


# PostgreSQL row-level security: a session sees and writes the rows of the tenant its setting
# names (unset or empty: the default tenant), or, with "*", reads every tenant's and writes none;
# the append function's transaction, those of the tenants of its batch. The stores filter by
# tenant in every statement too; these policies make a statement that forgot to harmless for the
# roles they bind (any but superusers, roles with BYPASSRLS and the tables' owner).
TENANT_SETTING = "eventsignal.tenant"
_CURRENT = f"coalesce(current_setting('{TENANT_SETTING}', true), '')"


# The tenants of a group-commit batch, for the transaction of the append function alone: the
# setting lists them between commas (",,acme," is the default tenant and acme; no tenant name
# holds a comma), so that a row is checked by a string search, not by parsing a list.
_IN_BATCH = "strpos(current_setting('eventsignal.batch', true), ',' || tenant || ',') > 0"


def row_security(table: str) -> tuple[str, ...]:
    """The PostgreSQL statements that keep the rows of ``table`` to the session's tenant (or, in
    the append function's transaction, to the tenants of its batch)."""
    return (
        f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY",
        f"CREATE POLICY eventsignal_own_tenant ON {table}"
        f" USING (tenant = {_CURRENT}) WITH CHECK (tenant = {_CURRENT})",
        f"CREATE POLICY eventsignal_every_tenant ON {table} FOR SELECT"
        f" USING ({_CURRENT} = '{EVERY_TENANT}')",
        f"CREATE POLICY eventsignal_batch_tenants ON {table}"
        f" USING ({_IN_BATCH}) WITH CHECK ({_IN_BATCH})",
    )


# Sets the tenant of a PostgreSQL transaction, until it ends.
SET_TENANT_LOCAL = f"SELECT set_config('{TENANT_SETTING}', ?, true)"
