"""Creating the database a PostgreSQL URL names, when it does not exist yet.

A store never creates a database on its own: a typo in a URL would otherwise make a new, empty
one. ``eventsignal migrate --create URL`` asks for it explicitly; the database is made from the
server's maintenance database (``postgres``) with the same host, user and password.
"""

from __future__ import annotations

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from eventsignal.domain.errors import ConfigurationError, StoreUnavailable
from eventsignal.stores.credentials import redact, scrub

MAINTENANCE_DATABASE = "postgres"


async def create_database(dsn: str) -> bool:
    """Create the database ``dsn`` names unless it exists; ``True`` if it was created."""
    try:
        name = conninfo_to_dict(dsn).get("dbname")
    except psycopg.ProgrammingError as exc:
        raise ConfigurationError(f"cannot read {redact(dsn)}: {scrub(str(exc), dsn)}") from None
    if not name:
        raise ConfigurationError(f"{redact(dsn)} names no database to create")
    name = str(name)
    maintenance = make_conninfo(dsn, dbname=MAINTENANCE_DATABASE)
    try:
        async with await psycopg.AsyncConnection.connect(maintenance, autocommit=True) as admin:
            found = await admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if await found.fetchone() is not None:
                return False
            await admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    except psycopg.errors.DuplicateDatabase:
        return False  # created meanwhile by someone else: there it is
    except psycopg.OperationalError as exc:
        raise StoreUnavailable(
            f"cannot create database {name!r}: cannot connect to PostgreSQL "
            f"({' '.join(scrub(str(exc), dsn, maintenance).split())})"
        ) from None
    except psycopg.errors.InsufficientPrivilege:
        raise ConfigurationError(
            f"cannot create database {name!r}: the user of {redact(dsn)} may not create databases"
        ) from None
    return True
