"""The cost of tenants on PostgreSQL: commands through tenant views of one ``PostgresStore``
against the same commands on the default tenant, in the same run.

Run it with::

    .venv/bin/python benchmarks/bench_tenants.py [--seconds 3] [--repeats 5] [--clients 64] \\
        [--tenants 16]

Both configurations run the cart workload of ``bench_stores.py`` on one ``PostgresStore`` (its
default pool of 10 connections) over fresh tables, a new schema in the scratch database
``eventsignal_bench_<pid>`` per measurement, dropped at the end:

* **default tenant**: one ``Signal`` on the store, ``--clients`` clients: what every
  application without tenants runs.
* **tenants**: one ``Signal`` on the store and its ``for_tenant(name)`` views of ``--tenants``
  tenants, the clients spread evenly over them (64 clients over 16 tenants: 4 each). They share
  the Signal's pool and the store's connections and group commit, so a batch mixes tenants, and
  connections change tenant from one use to the next.
* **tenants, application role**: the same, connected as a role that owns nothing (made for the
  run, dropped at the end), so PostgreSQL applies row-level security to every statement, as it
  does for an application deployed as docs/stores.md says. The two above connect as the tables'
  owner, which row-level security does not bind.

The ratio is taken round by round (the two runs of a round are back to back) and its median
printed; the target is tenants within 25% of the default tenant.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import statistics
from typing import Any

import psycopg
from bench_stores import Scratch, ours
from common import (
    Clock,
    Measurement,
    Sample,
    drive_signal,
    parse_args,
    print_header,
    print_ratio,
    print_table,
    run_interleaved,
)
from psycopg import sql
from workload import CART

from eventsignal import Signal
from eventsignal.stores import EventStore, PostgresStore

_runs = itertools.count()


def _migrated(dsn: str) -> EventStore:
    return PostgresStore(dsn, migrate=True)


class AppRole:
    """A login role of the run's own, granted what an application needs on each new schema."""

    def __init__(self, scratch: Scratch) -> None:
        self.scratch = scratch
        self.name = f"eventsignal_bench_app_{os.getpid()}"

    def __enter__(self) -> AppRole:
        self._run("CREATE ROLE {role} LOGIN")
        return self

    def __exit__(self, *exc: object) -> None:
        self._run("DROP OWNED BY {role}")
        self._run("DROP ROLE {role}")

    def _run(self, statement: str, schema: str | None = None) -> None:
        names = {"role": sql.Identifier(self.name)}
        if schema is not None:
            names["schema"] = sql.Identifier(schema)
        with psycopg.connect(self.scratch.dsn(), autocommit=True) as conn:
            conn.execute(sql.SQL(statement).format(**names))

    async def location(self) -> str:
        """A new migrated schema, granted to the role; the role's DSN of it."""
        schema = self.scratch.schema()
        await PostgresStore(self.scratch.dsn(schema)).migrate()
        for grant in (
            "GRANT USAGE ON SCHEMA {schema} TO {role}",
            "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {role}",
            "GRANT USAGE ON ALL SEQUENCES IN SCHEMA {schema} TO {role}",
            "GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA {schema} TO {role}",
        ):
            self._run(grant, schema)
        return f"{self.scratch.dsn(schema)} user={self.name}"


def tenants(
    scratch: Scratch, clients: int, count: int, cache: int, role: AppRole | None = None
) -> Measurement:
    shares = [clients // count + (k < clients % count) for k in range(count)]

    def run(warmup: float, seconds: float) -> Sample:
        async def drive(signals: list[Signal[Any, Any]], limit: float, tag: str) -> Sample:
            clock = Clock()
            samples = await asyncio.gather(
                *(
                    drive_signal(signal, clients=share, seconds=limit, tag=f"{tag}t{k}")
                    for k, (signal, share) in enumerate(zip(signals, shares, strict=True))
                    if share
                )
            )
            return clock.sample(sum(s.commands for s in samples), sum(s.events for s in samples))

        async def main() -> Sample:
            if role is None:
                store = PostgresStore(scratch.dsn(scratch.schema()), migrate=True)
            else:
                store = PostgresStore(await role.location())
            async with Signal(CART, store=store, pool_size=cache) as signal:
                views = [signal.for_tenant(f"tenant-{k}") for k in range(count)]
                tag = f"run{next(_runs)}"
                await drive(views, warmup, f"{tag}w")
                return await drive(views, seconds, tag)

        return asyncio.run(main())

    return run


def main() -> None:
    args = parse_args(
        __doc__.splitlines()[0],
        extra=lambda parser: parser.add_argument(
            "--tenants", type=int, default=16, help="tenants the clients are spread over"
        ),
    )
    print_header("tenants on PostgreSQL: tenant views against the default tenant", args)
    with Scratch() as scratch:
        if not scratch.postgres:
            print_ratio("tenants", None)
            return
        plain = f"default tenant c={args.clients}"
        spread = f"{args.tenants} tenants c={args.clients}"
        secured = f"{spread} as application role"
        with AppRole(scratch) as role:
            table = run_interleaved(
                [
                    (plain, ours(scratch, "postgres", _migrated, args.clients, args.cache)),
                    (spread, tenants(scratch, args.clients, args.tenants, args.cache)),
                    (secured, tenants(scratch, args.clients, args.tenants, args.cache, role)),
                ],
                args,
            )
    print_table(table)
    base, *others = table
    for series in others:
        ratio = statistics.median(
            view.commands_per_second / own.commands_per_second
            for own, view in zip(base.samples, series.samples, strict=True)
        )
        print(f"ratio {series.label} to {plain}: {ratio:.2f}x (target >= 0.75x)")


if __name__ == "__main__":
    main()
