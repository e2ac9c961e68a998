"""The PostgreSQL adapter (``pip install eventsignal[postgres]``): psycopg 3, a connection
pool, group commit and LISTEN/NOTIFY."""

from eventsignal.stores.postgres.creation import create_database
from eventsignal.stores.postgres.store import PostgresStore, PostgresTransaction, StoreStats

__all__ = ["PostgresStore", "PostgresTransaction", "StoreStats", "create_database"]
