"""The PostgreSQL adapter (``pip install eventsignal[postgres]``): psycopg 3, a connection
pool, group commit and LISTEN/NOTIFY."""

# The store first: without psycopg it raises the ImportError that says what to install.
from eventsignal.stores.postgres.store import PostgresStore, PostgresTransaction, StoreStats  # isort: skip
from eventsignal.stores.postgres.creation import create_database  # isort: skip

__all__ = ["PostgresStore", "PostgresTransaction", "StoreStats", "create_database"]
