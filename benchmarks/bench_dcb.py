"""Appends with a condition (dynamic consistency boundaries) on PostgreSQL: eventsignal's
``PostgresStore.dcb`` vs ``eventsourcing.dcb`` (its PostgreSQL recorder), same run.

Run it with::

    .venv/bin/python benchmarks/bench_dcb.py [--seconds 3] [--repeats 5] [--clients 64]

Workloads (each on fresh tables: a new schema in the scratch database, dropped at the end):

* **own boundary**: every client appends one event tagged with its own boundary, on the condition
  that nothing was appended to that boundary since its previous append (``after`` = the position
  that append returned). Conditions never overlap, so nothing conflicts: this is the cost of an
  append with a condition, at 1 client and at ``--clients``.
* **plain aggregate commands**: the cart workload of ``bench_stores.py`` through a ``Signal`` on
  the same kind of store, at ``--clients``: what the condition check is compared with.
* **hot boundary**: every client reads the one boundary that all share (events after the last
  position it saw), then appends on the condition that nothing was appended since: successes per
  second, and the share of attempts that lost their condition (conflict rate).

Our clients are asyncio tasks on one event loop; the peer's are threads, which is how its
synchronous API serves concurrent callers. The "commands/s" column counts successful appends (or
aggregate commands), "events/s" counts attempts.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import threading
import time
from collections.abc import Sequence
from typing import Any

from bench_stores import PG_USER, Scratch
from common import (
    Clock,
    Measurement,
    Sample,
    Series,
    drive_signal,
    paired_ratio,
    parse_args,
    print_header,
    print_ratio,
    print_table,
    run_interleaved,
)
from workload import CART

from eventsignal import Signal
from eventsignal.dcb import AppendCondition, AppendConditionFailed, DcbEvent, Query, QueryItem
from eventsignal.dcb import view as dcb_view
from eventsignal.stores import PostgresStore

PAYLOAD = b'{"student":"s-1","course":"c-1"}'
_runs = itertools.count()


def peer_available() -> str | None:
    """Why the peer cannot run here, or ``None`` when it can."""
    try:
        import eventsourcing.dcb.postgres_tt  # noqa: F401
    except ImportError as exc:
        return f"eventsourcing has no PostgreSQL DCB recorder here ({exc})"
    return None


def boundary(tag: str) -> Query:
    return Query([QueryItem(tags=[tag])])


# Our side


def ours_dcb(scratch: Scratch, clients: int, hot: bool) -> Measurement:
    def run(warmup: float, seconds: float) -> Sample:
        async def main() -> Sample:
            store = PostgresStore(scratch.dsn(scratch.schema()), migrate=True, max_size=8)
            async with store:
                dcb = dcb_view(store)
                await dcb.read(Query.all(), limit=1)  # the DCB schema component is in place
                await drive_dcb(dcb, clients, warmup, hot, f"w{next(_runs)}")
                return await drive_dcb(dcb, clients, seconds, hot, f"r{next(_runs)}")

        return asyncio.run(main())

    return run


async def drive_dcb(dcb: Any, clients: int, seconds: float, hot: bool, run: str) -> Sample:
    successes = [0] * clients
    attempts = [0] * clients
    deadline = time.perf_counter() + seconds

    async def client(k: int) -> None:
        tag = f"{run}-hot" if hot else f"{run}-{k}"
        query = boundary(tag)
        event = DcbEvent("StudentSubscribed", PAYLOAD, [tag, f"student:{k}"])
        last: int | None = None
        while time.perf_counter() < deadline:
            if hot:
                seen = await dcb.read(query, after=last)
                if seen:
                    last = seen[-1].position
            attempts[k] += 1
            try:
                last = await dcb.append(event, AppendCondition(query, after=last))
            except AppendConditionFailed:
                continue
            successes[k] += 1

    clock = Clock()
    await asyncio.gather(*(client(k) for k in range(clients)))
    return clock.sample(sum(successes), sum(attempts))


def ours_plain(scratch: Scratch, clients: int, cache: int) -> Measurement:
    def run(warmup: float, seconds: float) -> Sample:
        async def main() -> Sample:
            store = PostgresStore(scratch.dsn(scratch.schema()), migrate=True)
            async with Signal(CART, store=store, pool_size=cache) as signal:
                tag = f"run{next(_runs)}"
                await drive_signal(signal, clients=clients, seconds=warmup, tag=f"{tag}w")
                return await drive_signal(signal, clients=clients, seconds=seconds, tag=tag)

        return asyncio.run(main())

    return run


# The peer


def peer_dcb(scratch: Scratch, clients: int, hot: bool) -> Measurement:
    def run(warmup: float, seconds: float) -> Sample:
        from eventsourcing.dcb.postgres_tt import PostgresDCBRecorderTT
        from eventsourcing.postgres import PostgresDatastore

        datastore = PostgresDatastore(
            dbname=scratch.database,
            host=scratch.host,
            port=scratch.port,
            user=PG_USER,
            password="",
            pool_size=min(clients, 16),
            max_overflow=max(clients - 16, 0),
        )
        try:
            # Some of its statements name the tables without a schema: fresh tables go in the
            # default schema, under a name of their own.
            recorder = PostgresDCBRecorderTT(datastore, events_table_name=f"dcb{next(_runs)}")
            recorder.create_table()
            drive_peer_dcb(recorder, clients, warmup, hot, f"w{next(_runs)}")
            return drive_peer_dcb(recorder, clients, seconds, hot, f"r{next(_runs)}")
        finally:
            datastore.close()

    return run


def drive_peer_dcb(recorder: Any, clients: int, seconds: float, hot: bool, run: str) -> Sample:
    from eventsourcing.dcb.api import (
        DCBAppendCondition,
        DCBEvent,
        DCBQuery,
        DCBQueryItem,
    )
    from eventsourcing.persistence import IntegrityError

    successes = [0] * clients
    attempts = [0] * clients
    errors: list[BaseException] = []
    start = threading.Barrier(clients + 1)
    deadline = 0.0

    def client(k: int) -> None:
        try:
            tag = f"{run}-hot" if hot else f"{run}-{k}"
            query = DCBQuery(items=[DCBQueryItem(tags=[tag])])
            last: int | None = None
            start.wait()
            while time.perf_counter() < deadline:
                if hot:
                    for sequenced in recorder.read(query, after=last):
                        last = sequenced.position
                attempts[k] += 1
                event = DCBEvent(type="StudentSubscribed", data=PAYLOAD, tags=[tag, f"student:{k}"])
                try:
                    last = recorder.append([event], DCBAppendCondition(query, after=last))
                except IntegrityError:
                    continue
                successes[k] += 1
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for thread in threads:
        thread.start()
    deadline = time.perf_counter() + seconds
    clock = Clock()
    start.wait()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return clock.sample(sum(successes), sum(attempts))


# Reporting


def conflict_rate(series: Series) -> float:
    attempts = sum(s.events for s in series.samples)
    return 1 - sum(s.commands for s in series.samples) / attempts if attempts else 0.0


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-peer", action="store_true", help="measure eventsignal alone")


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(__doc__ or "", argv, _options)
    print_header("appends with a condition (DCB) on PostgreSQL: eventsignal vs eventsourcing", args)
    missing = "--no-peer given" if args.no_peer else peer_available()
    if missing:
        print(f"note: the peer does not run: {missing}")
    many = args.clients
    with Scratch() as scratch:
        if not scratch.postgres:
            raise SystemExit("PostgreSQL is needed for this benchmark")

        def both(label: str, clients: int, hot: bool) -> list[tuple[str, Measurement]]:
            rows = [(f"eventsignal {label} c={clients}", ours_dcb(scratch, clients, hot))]
            if not missing:
                rows.append((f"eventsourcing {label} c={clients}", peer_dcb(scratch, clients, hot)))
            return rows

        single = run_interleaved(both("own boundary", 1, False), args)
        print_table(single)
        plain_label = f"eventsignal plain aggregate commands c={many}"
        disjoint = run_interleaved(
            [
                *both("own boundary", many, False),
                (plain_label, ours_plain(scratch, many, args.cache)),
            ],
            args,
        )
        print_table(disjoint)
        contended = run_interleaved(both("hot boundary", many, True), args)
        print_table(contended)

    def find(table: list[Series], prefix: str) -> list[Series]:
        return [s for s in table if s.label.startswith(prefix)]

    print()
    ours_single, peer_single = find(single, "eventsignal"), find(single, "eventsourcing")
    print_ratio(
        "dcb c=1 vs peer",
        paired_ratio(ours_single[0], peer_single) if peer_single else None,
        ">= 1.5x",
    )
    ours_many = find(disjoint, "eventsignal own")
    plain = find(disjoint, plain_label)
    share = paired_ratio(ours_many[0], plain)
    print(
        f"ratio dcb c={many} disjoint to plain aggregate commands c={many}: {share:.0%}"
        "  (target >= 70%)"
    )
    peer_many = find(disjoint, "eventsourcing")
    if peer_many:
        print_ratio(f"dcb c={many} disjoint vs peer", paired_ratio(ours_many[0], peer_many))
    for row in contended:
        print(
            f"hot boundary c={many}: {row.label.split()[0]}: {row.commands_per_second:,.0f}"
            f" successes/s, conflict rate {conflict_rate(row):.0%}"
        )


if __name__ == "__main__":
    main()
