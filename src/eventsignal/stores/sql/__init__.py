"""What the SQL adapters (SQLite, PostgreSQL) share: the SQL store contract, group commit,
snapshots and the migrate-once helper."""

from eventsignal.stores.sql.contract import (
    Dialect,
    Migratable,
    SharedTransactions,
    SQLStore,
    SQLTransaction,
    ensure_component,
    for_dialect,
)

__all__ = [
    "Dialect",
    "Migratable",
    "SQLStore",
    "SQLTransaction",
    "SharedTransactions",
    "ensure_component",
    "for_dialect",
]
