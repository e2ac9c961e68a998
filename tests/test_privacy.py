"""Crypto-shredding: personal fields stored encrypted per subject, and forgotten for good.

Checked on the memory store, SQLite and the real PostgreSQL, with dataclass, msgspec and
pydantic event classes: no plaintext of a personal value reaches the store's bytes, and after
``forget`` a fresh Signal, a durable subscription and ``events`` see the redacted values,
while the snapshots that held the plaintext are gone.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import msgspec
import pydantic
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventsignal import (
    AggregateConfig,
    ConfigurationError,
    EventSerializationError,
    Signal,
)
from eventsignal.codecs import KeyRing, generate_key
from eventsignal.domain.personal import personal_fields
from eventsignal.domain.snapshots import SnapshotPolicy
from eventsignal.privacy import (
    Personal,
    PersonalDataLocked,
    Privacy,
    forgotten_subjects,
    personal_data,
)
from eventsignal.serialization import EventSerializer
from eventsignal.snapshotting import snapshot_store_for
from eventsignal.stores import EventStore, MemoryStore, SQLiteStore
from eventsignal.subscriptions import (
    Subscription,
    SubscriptionRunner,
    wait_until_processed,
)

EMAIL = "alice.personal@example.org"
NAME = "Alice Zyxwvutsrq"
OTHER_EMAIL = "bob.personal@example.org"


# The same events declared three ways.


@dataclass
class DataclassRegistered:
    customer_id: str
    email: Annotated[str, Personal(subject="customer_id")]
    name: Annotated[str | None, Personal(subject="customer_id")] = None
    plan: str = "basic"


class StructRegistered(msgspec.Struct):
    customer_id: str
    email: Annotated[str, Personal(subject="customer_id")]
    name: Annotated[str | None, Personal(subject="customer_id")] = None
    plan: str = "basic"


class PydanticRegistered(pydantic.BaseModel):
    customer_id: str
    email: Annotated[str, Personal(subject="customer_id")]
    name: Annotated[str | None, Personal(subject="customer_id")] = None
    plan: str = "basic"


@dataclass
class Renamed:
    """An event without personal fields, in the same aggregate type."""

    plan: str


@dataclass
class Register:
    customer_id: str
    email: str
    name: str | None


@dataclass
class ChangePlan:
    plan: str


@dataclass
class Customer:
    email: str = ""
    name: str | None = None
    plan: str = ""


FLAVOURS: dict[str, type[Any]] = {
    "dataclass": DataclassRegistered,
    "msgspec": StructRegistered,
    "pydantic": PydanticRegistered,
}


def customer_config(event: type[Any], *, snapshots: bool = True) -> AggregateConfig[Any, Any]:
    def handle(command: Any, state: Customer) -> list[Any]:
        if isinstance(command, Register):
            return [event(customer_id=command.customer_id, email=command.email, name=command.name)]
        return [Renamed(plan=command.plan)]

    def apply(state: Customer, e: Any) -> Customer:
        data = e.data
        if isinstance(data, Renamed):
            return dataclasses.replace(state, plan=data.plan)
        return Customer(email=data.email, name=data.name, plan=data.plan)

    return AggregateConfig(
        "customer",
        Customer(),
        handle,
        apply,
        events=[event, Renamed],
        snapshots=SnapshotPolicy(every=2) if snapshots else None,
    )


StoreMaker = Callable[[], Awaitable[EventStore]]


async def scenario(
    make_store: StoreMaker,
    event: type[Any],
    privacy: Privacy,
    at_rest: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Write two customers' data, read it back, forget one, read again from scratch.

    ``at_rest`` checks the store's bytes while the data is there, snapshots included."""
    config = customer_config(event)
    seen: list[tuple[str, str | None]] = []

    def project(e: Any) -> None:
        if not isinstance(e.data, Renamed):
            seen.append((e.data.email, e.data.name))

    store = await make_store()
    async with Signal(config, store=store, privacy=privacy) as signal:
        await signal.create("c1", Register("alice", EMAIL, NAME))
        await signal.handle_command("c1", ChangePlan("pro"))  # version 2: a snapshot
        await signal.create("c2", Register("bob", OTHER_EMAIL, None))
        await signal.drain()
        # Writers see plaintext, and so does a fresh rebuild.
        assert (await signal.aggregate("c1")).state == Customer(EMAIL, NAME, "pro")
        events = await signal.events("c1")
        assert (events[0].data.email, events[0].data.name) == (EMAIL, NAME)
        snapshots = snapshot_store_for(store)
        assert snapshots is not None
        assert await snapshots.load_snapshot("customer", "c1") is not None
        if at_rest is not None:
            await at_rest()

        done = await signal.forget("alice")
        assert done.destroyed
        assert done.aggregates == (("customer", "c1"),)
        assert done.digest == privacy.digest("alice") != "alice"
        assert await snapshots.load_snapshot("customer", "c1") is None
        # This Signal at once: its pool no longer holds the plaintext.
        assert (await signal.aggregate("c1")).state == Customer("", None, "pro")
        # Bob is untouched.
        assert (await signal.aggregate("c2")).state == Customer(OTHER_EMAIL, None, "basic")
        # Writing about a forgotten subject keeps nothing of its personal data.
        await signal.create("c3", Register("alice", "again@example.org", "A"))
        assert (await signal.aggregate("c3")).state.email == "again@example.org"  # live copy
    await store.close()

    # A fresh store object and Signal: rebuilds, events, state_at and a durable subscription.
    fresh = await make_store()
    async with Signal(customer_config(event), store=fresh, privacy=privacy) as again:
        assert (await again.aggregate("c1")).state == Customer("", None, "pro")
        assert (await again.aggregate("c3")).state == Customer("", None, "basic")
        assert (await again.aggregate("c2")).state == Customer(OTHER_EMAIL, None, "basic")
        past = await again.state_at("c1", version=1)
        assert past.state == Customer("", None, "basic")
        assert (await again.events("c1"))[0].data.email == ""
        subscription = Subscription(name="emails", handler=project, configs=[again.serializer])
        async with SubscriptionRunner(subscription, fresh):
            await wait_until_processed(fresh, "emails", await fresh.head_position(), timeout=10)
        assert sorted(seen) == sorted([("", None), (OTHER_EMAIL, None), ("", None)])
        record = await forgotten_subjects(fresh)
        assert [r.digest for r in record] == [privacy.digest("alice")]
    await fresh.close()


@pytest.mark.parametrize("flavour", sorted(FLAVOURS))
async def test_forgetting_on_memory(flavour: str) -> None:
    store = MemoryStore()

    async def same() -> EventStore:
        return store

    await scenario(same, FLAVOURS[flavour], Privacy())


def _sqlite_bytes(path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))


@pytest.mark.parametrize("flavour", ["dataclass", "pydantic"])
async def test_forgetting_on_sqlite_leaves_no_plaintext(tmp_path: Path, flavour: str) -> None:
    path = tmp_path / "events.db"
    # A database made before personal data existed: the key tables come with first use.
    async with SQLiteStore(path, migrate=True) as old:
        await old.create("other", "x")
    privacy = Privacy(secret=b"s" * 32, master=KeyRing({"m1": generate_key()}, "m1"))

    async def make() -> EventStore:
        return SQLiteStore(path, migrate=True)

    async def no_plaintext() -> None:
        raw = _sqlite_bytes(path)
        assert b"eventsignal_snapshots" in raw
        for secret in (EMAIL, NAME, OTHER_EMAIL):
            assert secret.encode() not in raw

    await scenario(make, FLAVOURS[flavour], privacy, no_plaintext)
    raw = _sqlite_bytes(path)
    assert b"eventsignal_subject_keys" in raw
    for secret in (EMAIL, NAME, "again@example.org"):
        assert secret.encode() not in raw


@pytest.mark.postgres
async def test_forgetting_on_postgres_leaves_no_plaintext(
    postgres_store_factory: Any, postgres_dsn: str
) -> None:
    import psycopg

    async def make() -> EventStore:
        store: EventStore = await postgres_store_factory()
        return store

    async def no_plaintext() -> None:
        with psycopg.connect(postgres_dsn) as conn:
            rows = conn.execute(
                "SELECT encode(data, 'escape'), metadata::text FROM eventsignal_events "
                "UNION ALL SELECT encode(state, 'escape'), '' FROM eventsignal_snapshots"
            ).fetchall()
        assert len(rows) > 3  # the snapshots are there
        for secret in (EMAIL, NAME, OTHER_EMAIL):
            assert secret not in repr(rows)

    await scenario(make, StructRegistered, Privacy(secret=b"k" * 32), no_plaintext)
    with psycopg.connect(postgres_dsn) as conn:
        assert conn.execute(
            "SELECT version FROM eventsignal_schema WHERE component = 'subject_keys'"
        ).fetchall() == [(1,)]
        rows = conn.execute(
            "SELECT encode(data, 'escape'), metadata::text FROM eventsignal_events"
        ).fetchall()
        keys = conn.execute("SELECT digest, key, forgotten_at FROM eventsignal_subject_keys")
        kept = keys.fetchall()
    dump = repr(rows)
    assert "bob" in dump  # the subject ids are not personal fields: they are there
    for secret in (EMAIL, NAME, "again@example.org", OTHER_EMAIL):
        assert secret not in dump
    forgotten = [row for row in kept if row[2] is not None]
    assert len(forgotten) == 1
    assert forgotten[0][1] is None
    assert all("alice" not in row[0] for row in kept)


async def test_a_read_path_that_forgot_to_unlock_fails_loudly() -> None:
    store = MemoryStore()
    config = customer_config(DataclassRegistered, snapshots=False)
    async with Signal(config, store=store) as signal:
        await signal.create("c1", Register("alice", EMAIL, None))
    record = (await store.read_all())[0]
    personal = personal_data(config.name, config.event_types)
    reader = EventSerializer(config.name, config.event_types, personal=personal)
    with pytest.raises(PersonalDataLocked, match="not loaded"):
        reader.decode(record)
    assert personal is not None
    await personal.unlock(store, [record])
    assert reader.decode(record).email == EMAIL
    # Built without privacy at all: refuses to guess rather than redact silently.
    bare = EventSerializer(config.name, config.event_types)
    with pytest.raises(PersonalDataLocked):
        bare.decode(record)


async def test_personal_data_moved_to_another_event_fails_authentication() -> None:
    store = MemoryStore()
    config = customer_config(DataclassRegistered, snapshots=False)
    async with Signal(config, store=store) as signal:
        await signal.create("c1", Register("alice", EMAIL, None))
        await signal.create("c2", Register("alice", OTHER_EMAIL, None))
        first, second = await store.read_all()
        moved = msgspec.structs.replace(second, metadata=first.metadata)
        await signal.serializer.personal.unlock(store, [moved])
        with pytest.raises(EventSerializationError, match="fails authentication"):
            signal.serializer.decode(moved)


async def test_writers_racing_for_a_new_subject_share_one_key(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    config = customer_config(DataclassRegistered, snapshots=False)
    signals = [Signal(config, store=SQLiteStore(path, migrate=True)) for _ in range(2)]
    for signal in signals:
        await signal.start()
    try:
        await asyncio.gather(
            *(
                s.create(f"c{i}", Register("alice", f"{i}{EMAIL}", None))
                for i, s in enumerate(signals)
            )
        )
        for i in range(2):
            for s in signals:
                s._pool.clear()
                assert (await s.aggregate(f"c{i}")).state.email == f"{i}{EMAIL}"
        await signals[0].forget("alice")
        async with Signal(config, store=SQLiteStore(path)) as fresh:
            assert [(await fresh.aggregate(f"c{i}")).state.email for i in range(2)] == ["", ""]
    finally:
        for signal in signals:
            await signal.stop()


async def test_wrapped_keys_need_the_master_key(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    ring = KeyRing({"m1": generate_key()}, "m1")
    config = customer_config(DataclassRegistered, snapshots=False)
    async with Signal(config, store=SQLiteStore(path, migrate=True), privacy=Privacy(master=ring)):
        pass
    async with Signal(
        config, store=SQLiteStore(path, migrate=True), privacy=Privacy(master=ring)
    ) as signal:
        await signal.create("c1", Register("alice", EMAIL, None))
    async with Signal(config, store=SQLiteStore(path)) as without:
        with pytest.raises(ConfigurationError, match="master key"):
            await without.aggregate("c1")
    async with Signal(config, store=SQLiteStore(path), privacy=Privacy(master=ring)) as good:
        assert (await good.aggregate("c1")).state.email == EMAIL


async def test_other_processes_see_a_forgetting_within_their_key_ttl() -> None:
    store = MemoryStore()
    config = customer_config(DataclassRegistered, snapshots=False)
    async with Signal(config, store=store) as writer:
        await writer.create("c1", Register("alice", EMAIL, None))
    # Another process: its own keychain, which a store object carries (a copy stands in).
    elsewhere = MemoryStore()
    elsewhere.__dict__.update(
        {k: v for k, v in store.__dict__.items() if k != "_eventsignal_keychain"}
    )
    async with Signal(config, store=elsewhere, privacy=Privacy(key_ttl=0.05)) as other:
        assert [e.data.email for e in await other.events("c1")] == [EMAIL]
        async with Signal(config, store=store) as forgetter:
            await forgetter.forget("alice")
        await asyncio.sleep(0.1)
        assert [e.data.email for e in await other.events("c1")] == [""]


def test_declarations_that_cannot_work_are_refused() -> None:
    @dataclass
    class NoSubject:
        email: Annotated[str, Personal(subject="customer_id")]

    with pytest.raises(ConfigurationError, match="not a field"):
        personal_fields(NoSubject)

    @dataclass
    class Odd:
        customer_id: str
        shape: Annotated[complex, Personal(subject="customer_id")]

    with pytest.raises(ConfigurationError, match="redacted="):
        personal_fields(Odd)

    @dataclass
    class Chosen:
        customer_id: str
        shape: Annotated[complex, Personal(subject="customer_id", redacted="gone")]

    assert personal_fields(Chosen)[0].redacted == "gone"
    assert personal_fields(Renamed) == ()


async def test_live_copies_in_other_processes_are_evicted_within_the_key_ttl(
    tmp_path: Path,
) -> None:
    path = tmp_path / "events.db"
    config = customer_config(DataclassRegistered)
    quick = Privacy(key_ttl=0.1)
    async with Signal(config, store=SQLiteStore(path, migrate=True), privacy=quick) as other:
        await other.create("c1", Register("alice", EMAIL, NAME))
        await other.handle_command("c1", ChangePlan("pro"))
        assert (await other.aggregate("c1")).state.email == EMAIL  # live, in its pool
        # Another process (its own store object, keychain and pool) forgets the subject.
        async with Signal(config, store=SQLiteStore(path), privacy=quick) as forgetter:
            await forgetter.forget("alice")
        for _ in range(50):
            if other.pool_size == 0:
                break
            await asyncio.sleep(0.05)
        assert other.pool_size == 0
        assert (await other.aggregate("c1")).state == Customer("", None, "pro")
        snapshots = snapshot_store_for(other.store)
        assert snapshots is not None
        assert await snapshots.load_snapshot("customer", "c1") is None


async def _write_two_customers(path: Path) -> None:
    config = customer_config(DataclassRegistered)
    async with Signal(config, store=SQLiteStore(path, migrate=True)) as signal:
        await signal.create("c1", Register("alice", EMAIL, NAME))
        await signal.create("c2", Register("bob", OTHER_EMAIL, None))


async def _emails(path: Path) -> list[str]:
    config = customer_config(DataclassRegistered)
    async with Signal(config, store=SQLiteStore(path)) as signal:
        return [(await signal.aggregate(i)).state.email for i in ("c1", "c2")]


def test_cli_forget_asks_first_and_can_rebuild_a_projection(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from eventsignal.cli import main
    from eventsignal.subscriptions import register

    path = tmp_path / "events.db"
    asyncio.run(_write_two_customers(path))
    seen: list[str] = []
    register(
        Subscription(
            name="privacy-cli-emails",
            handler=lambda e: seen.append(e.data.email),
            configs=[customer_config(DataclassRegistered)],
        )
    )
    cli = CliRunner()
    dry = cli.invoke(main, ["forget", str(path), "alice", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "has a data key" in dry.output
    assert "customer 'c1'" in dry.output
    assert "nothing changed" in dry.output
    refused = cli.invoke(main, ["forget", str(path), "alice"], input="n\n")
    assert refused.exit_code != 0
    assert asyncio.run(_emails(path)) == [EMAIL, OTHER_EMAIL]
    done = cli.invoke(
        main, ["forget", str(path), "alice", "--yes", "--rebuild", "privacy-cli-emails"]
    )
    assert done.exit_code == 0, done.output
    assert "destroyed its key" in done.output
    assert "alice" not in done.output.replace(str(path), "")
    assert asyncio.run(_emails(path)) == ["", OTHER_EMAIL]
    assert sorted(seen) == ["", OTHER_EMAIL]
    again = cli.invoke(main, ["forget", str(path), "alice", "--dry-run"])
    assert "was forgotten already" in again.output


async def test_forgetting_on_nats(nats_url: str) -> None:
    import secrets as random_names

    from eventsignal.stores import NatsStore

    stream = f"privacy_{random_names.token_hex(4)}"

    async def make() -> EventStore:
        return NatsStore(nats_url, stream=stream, durability="ignore")

    config = customer_config(DataclassRegistered)
    store = await make()
    async with Signal(config, store=store) as signal:
        await signal.create("c1", Register("alice", EMAIL, NAME))
        await signal.handle_command("c1", ChangePlan("pro"))
        await signal.create("c2", Register("bob", OTHER_EMAIL, None))
        await signal.drain()
        assert await store.load_snapshot("customer", "c1") is not None  # type: ignore[attr-defined]
        done = await signal.forget("alice")
        assert done.destroyed
        assert done.aggregates == (("customer", "c1"),)
        assert await store.load_snapshot("customer", "c1") is None  # type: ignore[attr-defined]
    fresh = await make()
    async with Signal(config, store=fresh) as again:
        assert (await again.aggregate("c1")).state == Customer("", None, "pro")
        assert (await again.aggregate("c2")).state.email == OTHER_EMAIL
        assert (await again.state_at("c1", version=1)).state.email == ""
        assert [r.digest for r in await forgotten_subjects(fresh)] == [done.digest]
        # A durable subscription of a fresh process reads the redacted values too.
        seen: list[str] = []
        projection = Subscription(
            name="privacy-emails",
            handler=lambda e: seen.append(getattr(e.data, "email", "-")),
            configs=[again.serializer],
        )
        async with SubscriptionRunner(projection, fresh):
            for _ in range(100):
                if len(seen) >= 3:
                    break
                await asyncio.sleep(0.05)
        assert sorted(seen) == sorted(["", "-", OTHER_EMAIL])


def test_the_sync_facade_forgets_too() -> None:
    from eventsignal.sync import Signal as SyncSignal

    store = MemoryStore()
    with SyncSignal(customer_config(StructRegistered), store=store) as signal:
        signal.create("c1", Register("alice", EMAIL, NAME))
        assert signal.events("c1")[0].data.email == EMAIL
        assert signal.forget("alice").aggregates == (("customer", "c1"),)
        assert signal.aggregate("c1").state == Customer("", None, "basic")


_STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("register"), st.integers(0, 4), st.integers(0, 3)),
        st.tuples(st.just("forget"), st.integers(0, 3), st.just(0)),
    ),
    max_size=12,
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=_STEPS)
def test_what_survives_is_what_was_never_forgotten(steps: list[tuple[str, int, int]]) -> None:
    """A fresh Signal's view equals a model: each aggregate shows the last e-mail registered,
    unless its subject was forgotten after (or before) that registration."""

    async def run() -> None:
        store = MemoryStore()
        config = customer_config(DataclassRegistered, snapshots=False)
        expected: dict[str, str] = {}
        forgotten: set[str] = set()
        async with Signal(config, store=store) as signal:
            for n, (step, a, s) in enumerate(steps):
                if step == "forget":
                    await signal.forget(f"s{a}")
                    forgotten.add(f"s{a}")
                    expected = {
                        agg: "" if subject == f"s{a}" else email
                        for agg, email in expected.items()
                        for subject in [owners[agg]]
                    }
                    continue
                aggregate_id, subject, email = f"c{a}", f"s{s}", f"{n}@example.org"
                command = Register(subject, email, None)
                if aggregate_id in expected:
                    await signal.handle_command(aggregate_id, command)
                else:
                    await signal.create(aggregate_id, command)
                owners[aggregate_id] = subject
                expected[aggregate_id] = "" if subject in forgotten else email
        async with Signal(config, store=store) as fresh:
            for aggregate_id, email in expected.items():
                assert (await fresh.aggregate(aggregate_id)).state.email == email

    owners: dict[str, str] = {}
    asyncio.run(run())


async def test_personal_values_of_old_revisions_pass_through_upcasters() -> None:
    from eventsignal.domain.evolution import Upcaster

    @dataclass
    class Registered:  # revision 1, as it was written
        customer_id: str
        email: Annotated[str, Personal(subject="customer_id")]

    @dataclass
    class RegisteredNow:  # revision 2: the e-mail renamed, still personal
        __revision__ = 2
        customer_id: str
        contact: Annotated[str, Personal(subject="customer_id")]

    def old(command: Any, state: str) -> list[Any]:
        return [Registered(customer_id="alice", email=EMAIL)]

    def upcast(payload: dict[str, Any]) -> dict[str, Any]:
        return {"customer_id": payload["customer_id"], "contact": payload["email"]}

    store = MemoryStore()
    then: AggregateConfig[Any, Any] = AggregateConfig(
        "person", "", old, lambda s, e: e.data.email, events={"Registered": Registered}
    )
    now: AggregateConfig[Any, Any] = AggregateConfig(
        "person",
        "",
        old,
        lambda s, e: e.data.contact,
        events={"Registered": RegisteredNow},
        upcasters=[Upcaster("Registered", 1, upcast)],
    )
    async with Signal(then, store=store) as signal:
        await signal.create("p1", object())
    async with Signal(now, store=store) as signal:
        assert (await signal.aggregate("p1")).state == EMAIL
        await signal.forget("alice")
        assert (await signal.aggregate("p1")).state == ""


async def test_a_copied_store_keeps_its_subjects_readable_and_forgotten(tmp_path: Path) -> None:
    from eventsignal.copying import copy_store

    source = MemoryStore()
    config = customer_config(DataclassRegistered, snapshots=False)
    async with Signal(config, store=source) as signal:
        await signal.create("c1", Register("alice", EMAIL, NAME))
        await signal.create("c2", Register("bob", OTHER_EMAIL, None))
        await signal.forget("bob")
    target = SQLiteStore(tmp_path / "copy.db", migrate=True)
    async with target:
        await copy_store(source, target)
    async with Signal(config, store=SQLiteStore(tmp_path / "copy.db")) as copied:
        assert (await copied.aggregate("c1")).state == Customer(EMAIL, NAME, "basic")
        assert (await copied.aggregate("c2")).state == Customer("", None, "basic")
        assert [f.digest for f in await forgotten_subjects(copied.store)] == [
            Privacy().digest("bob")
        ]
        done = await copied.forget("alice")
        assert done.aggregates == (("customer", "c1"),)  # the uses came along
    async with Signal(config, store=SQLiteStore(tmp_path / "copy.db")) as fresh:
        assert (await fresh.aggregate("c1")).state.email == ""
