"""Re-encryption under a rotated key, on memory, SQLite and PostgreSQL, with commands running."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eventsignal import AggregateConfig, Event, EventSerializationError, Signal
from eventsignal.codecs import AesGcm, KeyRing, Zstd, chain, generate_key
from eventsignal.codecs.rotation import PLAINTEXT, key_census, reencrypt
from eventsignal.domain.errors import RewriteNotSupported
from eventsignal.domain.snapshots import SnapshotPolicy
from eventsignal.snapshotting import snapshot_store_for
from eventsignal.stores import MemoryStore, PostgresStore, SQLiteStore
from eventsignal.stores.base import EventStore
from eventsignal.stores.lifecycle import lifecycle_of
from eventsignal.stores.rewriting import PayloadChange, rewriter_of


@dataclass(frozen=True)
class Note:
    text: str


@dataclass(frozen=True)
class Noted:
    text: str


@dataclass(frozen=True)
class Notebook:
    texts: tuple[str, ...] = ()


def handle(command: Note, state: Notebook) -> list[Noted]:
    return [Noted(command.text)]


def apply(state: Notebook, event: Event[Noted]) -> Notebook:
    return replace(state, texts=(*state.texts, event.data.text))


notebooks = AggregateConfig(
    name="notebook",
    initial_state=Notebook(),
    command_handler=handle,
    event_handler=apply,
    events=[Noted],
)

# A store factory: each call gives another store object on the same data (as another process
# would see it), except for memory, where there is only one.
Stores = Callable[[], Awaitable[EventStore]]


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Stores:
    if request.param == "memory":
        memory = MemoryStore()

        async def same() -> EventStore:
            return memory

        return same
    if request.param == "sqlite":

        async def sqlite() -> EventStore:
            return SQLiteStore(tmp_path / "rotation.db", migrate=True)

        return sqlite
    dsn = request.getfixturevalue("postgres_dsn")

    async def postgres() -> EventStore:
        return PostgresStore(dsn, migrate=True, max_size=4)

    return postgres


def ring(*ids: str) -> KeyRing:
    return KeyRing({key_id: generate_key() for key_id in ids}, current=ids[-1])


def only(keys: KeyRing, key_id: str) -> KeyRing:
    return KeyRing({key_id: keys.key(key_id) or b""}, current=key_id)


async def texts_of(signal: Signal[Any, Any], ids: list[str]) -> dict[str, tuple[str, ...]]:
    return {i: (await signal.aggregate(i)).state.texts for i in ids}


async def test_rotation_under_load_fails_no_command_and_leaves_every_payload_readable(
    stores: Stores,
) -> None:
    keys = ring("k1")
    store = await stores()
    ids = [f"n-{n}" for n in range(6)]
    async with Signal(notebooks, store=store, transcoder=AesGcm(keys)) as signal:
        for aggregate_id in ids:
            await signal.create(aggregate_id)
            for n in range(3):
                await signal.handle_command(aggregate_id, Note(f"{aggregate_id} old {n}"))
        assert await key_census(store) == {"k1": 18}

        keys.add("k2", generate_key())  # the application writes with k2 from now on
        reports = []

        async def writer(aggregate_id: str) -> None:
            for n in range(15):
                await signal.handle_command(aggregate_id, Note(f"{aggregate_id} new {n}"))

        async def rotator() -> None:
            # Once commands under k2 are being written; a small page makes many write
            # transactions, interleaved with the commands.
            while (head := await store.head_position()) < 18 + 6:
                await store.wait_for_events(head)
            reports.append(await reencrypt(store, AesGcm(keys), page=4))

        await asyncio.gather(rotator(), *(writer(i) for i in ids))
        (report,) = reports
        assert report.rewritten == 18
        assert report.by_key["k1"] == 18
        assert report.current >= 6  # it read events the writers had just written
        assert (report.unreadable, report.changed) == (0, 0)
        assert report.done
        assert await key_census(store) == {"k2": 18 + 6 * 15}
        expected = {
            i: tuple(f"{i} old {n}" for n in range(3)) + tuple(f"{i} new {n}" for n in range(15))
            for i in ids
        }

    # Without k1 in the ring, another store object (another process) reads everything.
    async with Signal(
        notebooks, store=await stores(), transcoder=AesGcm(only(keys, "k2"))
    ) as fresh:
        assert await texts_of(fresh, ids) == expected
        for aggregate_id in ids:
            events = await fresh.events(aggregate_id)
            assert [e.data.text for e in events] == list(expected[aggregate_id])


async def test_two_runs_at_once_rewrite_each_payload_once(stores: Stores) -> None:
    keys = ring("k1")
    store = await stores()
    async with Signal(notebooks, store=store, transcoder=AesGcm(keys)) as signal:
        for n in range(12):
            await signal.create(f"n-{n}", Note(f"text {n}"))
        keys.add("k2", generate_key())
        first, second = await asyncio.gather(
            reencrypt(store, AesGcm(keys), page=3), reencrypt(store, AesGcm(keys), page=3)
        )
        # Each payload is replaced once: a run that lost the race skips it, never encrypting
        # the other's ciphertext again.
        assert first.rewritten + second.rewritten == 12
        for run in (first, second):
            assert run.current + run.rewritten + run.changed == 12
            assert run.unreadable == 0
        assert await key_census(store) == {"k2": 12}
    async with Signal(
        notebooks, store=await stores(), transcoder=AesGcm(only(keys, "k2"))
    ) as fresh:
        assert await texts_of(fresh, [f"n-{n}" for n in range(12)]) == {
            f"n-{n}": (f"text {n}",) for n in range(12)
        }


async def test_a_rewrite_changes_only_payloads_still_as_read(stores: Stores) -> None:
    store = await stores()
    async with Signal(notebooks, store=store) as signal:
        await signal.create("a", Note("one"))
        await signal.handle_command("a", Note("two"))
        before = list(await store.read_all())
        rewriter = rewriter_of(store)
        applied = await rewriter.rewrite_payloads(
            [
                PayloadChange(before[0].position, before[0].data, b'{"text":"uno"}'),
                PayloadChange(before[1].position, b"not what is stored", b'{"text":"dos"}'),
                PayloadChange(before[1].position + 100, b"", b'{"text":"nowhere"}'),
            ]
        )
        assert applied == 1
        after = list(await store.read_all())
        assert [e.data for e in after] == [b'{"text":"uno"}', before[1].data]
        assert [replace_data(e, b"") for e in after] == [replace_data(e, b"") for e in before]
        assert [e.position for e in after] == [e.position for e in before]
        assert [e.data for e in await store.read_aggregate("notebook", "a")] == [
            e.data for e in after
        ]


async def test_archived_streams_are_re_encrypted_in_cold_storage(stores: Stores) -> None:
    keys = ring("k1")
    store = await stores()
    async with Signal(notebooks, store=store, transcoder=AesGcm(keys)) as signal:
        await signal.create("cold", Note("archived before the rotation"))
        await signal.handle_command("cold", Note("and its second event"))
        await signal.create("warm", Note("live"))
        lifecycle = lifecycle_of(store, "archive")
        await lifecycle.archive("notebook", "cold")
        keys.add("k2", generate_key())
        assert await key_census(store) == {"k1": 3}
        report = await reencrypt(store, AesGcm(keys))
        assert (report.rewritten, report.archived, report.events) == (3, 2, 3)
        assert await key_census(store) == {"k2": 3}
        await lifecycle.restore("notebook", "cold")
    async with Signal(
        notebooks, store=await stores(), transcoder=AesGcm(only(keys, "k2"))
    ) as fresh:
        assert await texts_of(fresh, ["cold", "warm"]) == {
            "cold": ("archived before the rotation", "and its second event"),
            "warm": ("live",),
        }


async def test_reencryption_keeps_each_payload_bound_to_its_row(stores: Stores) -> None:
    keys = ring("k1")
    store = await stores()
    async with Signal(notebooks, store=store, transcoder=AesGcm(keys)) as signal:
        await signal.create("a", Note("alpha"))
        await signal.create("b", Note("beta"))
        keys.add("k2", generate_key())
        await reencrypt(store, AesGcm(keys))
        first, second = await store.read_all()
    # Authentic k2 ciphertext of row "a" is not row "b"'s: the codec refuses it.
    codec = AesGcm(only(keys, "k2"))
    moved = Signal(notebooks, store=MemoryStore(), transcoder=codec)
    async with moved:
        target = moved.store
        await target.create("notebook", "b", [replace_data(second, first.data)])
        with pytest.raises(EventSerializationError, match="authentication failed under key 'k2'"):
            await moved.aggregate("b")


def replace_data(event: Any, data: bytes) -> Any:
    import msgspec

    return msgspec.structs.replace(event, data=data, position=0)


async def test_a_second_run_changes_nothing_and_a_run_resumes(stores: Stores) -> None:
    keys = ring("k1")
    store = await stores()
    async with Signal(notebooks, store=store, transcoder=AesGcm(keys)) as signal:
        for n in range(5):
            await signal.create(f"n-{n}", Note(f"text {n}"))
        keys.add("k2", generate_key())
        codec = AesGcm(keys)
        positions = [e.position for e in await store.read_all()]
        part = await reencrypt(store, codec, after_position=positions[2])
        assert (part.rewritten, part.last_position) == (2, positions[-1])
        assert await key_census(store) == {"k1": 3, "k2": 2}
        rest = await reencrypt(store, codec)
        assert (rest.rewritten, rest.current) == (3, 2)
        again = await reencrypt(store, codec)
        assert (again.rewritten, again.current, again.events) == (0, 5, 5)
        assert await texts_of(signal, [f"n-{n}" for n in range(5)]) == {
            f"n-{n}": (f"text {n}",) for n in range(5)
        }


async def test_a_dry_run_counts_and_writes_nothing(stores: Stores) -> None:
    keys = ring("k1")
    store = await stores()
    async with Signal(notebooks, store=store, transcoder=AesGcm(keys)) as signal:
        await signal.create("a", Note("one"))
        await signal.handle_command("a", Note("two"))
        keys.add("k2", generate_key())
        await signal.handle_command("a", Note("three"))
        before = [e.data for e in await store.read_all()]
        report = await reencrypt(store, AesGcm(keys), dry_run=True)
        assert (report.rewritten, report.current, report.by_key) == (2, 1, {"k1": 2, "k2": 1})
        assert [e.data for e in await store.read_all()] == before


async def test_payloads_under_a_missing_key_are_reported_not_fatal() -> None:
    store = MemoryStore()
    lost = ring("lost")
    async with Signal(notebooks, store=store, transcoder=AesGcm(lost)) as signal:
        await signal.create("a", Note("gone"))
    keys = ring("k1", "k2")
    async with Signal(notebooks, store=store, transcoder=AesGcm(keys)) as signal:
        await signal.create("b", Note("kept"))
    report = await reencrypt(store, AesGcm(keys))
    assert (report.unreadable, report.unreadable_positions, report.current) == (1, [1], 1)
    assert not report.done
    assert await key_census(store) == {"lost": 1, "k2": 1}


async def test_plaintext_rows_are_encrypted_when_the_codec_reads_plaintext() -> None:
    store = MemoryStore()
    async with Signal(notebooks, store=store) as plain:
        await plain.create("a", Note("written before encryption"))
    assert await key_census(store) == {PLAINTEXT: 1}
    keys = ring("k1")
    report = await reencrypt(store, AesGcm(keys, read_plaintext=True))
    assert report.rewritten == 1
    assert await key_census(store) == {"k1": 1}
    async with Signal(notebooks, store=store, transcoder=AesGcm(keys)) as strict:
        assert (await strict.aggregate("a")).state.texts == ("written before encryption",)


async def test_compressed_payloads_stay_compressed() -> None:
    store = MemoryStore()
    keys = ring("k1")
    text = "compressible " * 40
    async with Signal(notebooks, store=store, transcoder=chain(Zstd(), AesGcm(keys))) as signal:
        await signal.create("a", Note(text))
        size = len((await store.read_all())[0].data)
        keys.add("k2", generate_key())
        assert (await reencrypt(store, chain(Zstd(), AesGcm(keys)))).rewritten == 1
        (event,) = await store.read_all()
        assert len(event.data) == size < len(text)
        assert AesGcm.key_id_of(event.data) == "k2"
    async with Signal(
        notebooks, store=store, transcoder=chain(Zstd(), AesGcm(only(keys, "k2")))
    ) as again:
        assert (await again.aggregate("a")).state.texts == (text,)


async def test_snapshots_under_an_old_key_are_dropped_and_rebuilt(stores: Stores) -> None:
    snapshotted = replace(notebooks, snapshots=SnapshotPolicy(every=2))
    keys = ring("k1")
    store = await stores()
    snapshots = snapshot_store_for(store)
    assert snapshots is not None
    async with Signal(snapshotted, store=store, transcoder=AesGcm(keys)) as signal:
        await signal.create("a", Note("a1"))
        await signal.handle_command("a", Note("a2"))
        await signal.drain()  # the snapshot of "a" is stored, under k1
        keys.add("k2", generate_key())
        await signal.create("b", Note("b1"))
        await signal.handle_command("b", Note("b2"))
        await signal.drain()
        old = await snapshots.load_snapshot("notebook", "a")
        new = await snapshots.load_snapshot("notebook", "b")
        assert old is not None
        assert AesGcm.key_id_of(old.state) == "k1"
        assert new is not None
        assert AesGcm.key_id_of(new.state) == "k2"
        dry = await reencrypt(store, AesGcm(keys), dry_run=True)
        assert dry.snapshots_dropped == 1
        assert await snapshots.load_snapshot("notebook", "a") == old
        report = await reencrypt(store, AesGcm(keys))
        assert report.snapshots_dropped == 1
        assert await snapshots.load_snapshot("notebook", "a") is None
        assert await snapshots.load_snapshot("notebook", "b") == new
    async with Signal(
        snapshotted, store=await stores(), transcoder=AesGcm(only(keys, "k2"))
    ) as fresh:
        assert await texts_of(fresh, ["a", "b"]) == {"a": ("a1", "a2"), "b": ("b1", "b2")}


def test_a_nats_store_is_refused_with_what_to_do_instead() -> None:
    from eventsignal.stores.nats import NatsStore

    store = NatsStore("nats://127.0.0.1:1", stream="rotation_refused")
    with pytest.raises(RewriteNotSupported) as refused:
        asyncio.run(reencrypt(store, AesGcm(ring("k1"))))
    message = str(refused.value)
    assert "NatsStore does not support re-encryption" in message
    assert "eventsignal copy" in message


Step = tuple[str, int, int]  # what, which aggregate (or page size), which text


@settings(max_examples=40, deadline=None)
@given(
    steps=st.lists(
        st.tuples(
            st.sampled_from(["command", "rotate", "reencrypt", "archive", "restore"]),
            st.integers(min_value=0, max_value=2),
            st.integers(min_value=1, max_value=5),
        ),
        max_size=30,
    )
)
def test_any_mix_of_commands_rotations_and_runs_ends_under_one_key(steps: list[Step]) -> None:
    """Derived two ways: the notebooks as the commands wrote them (a model), and as a fresh
    Signal holding only the last key reads them after a final run."""

    async def scenario() -> None:
        store = MemoryStore()
        keys = ring("k0")
        ids = ["a", "b", "c"]
        model: dict[str, list[str]] = {i: [] for i in ids}
        archived: set[str] = set()
        async with Signal(notebooks, store=store, transcoder=AesGcm(keys)) as signal:
            for aggregate_id in ids:
                await signal.create(aggregate_id)
            for what, which, number in steps:
                aggregate_id = ids[which]
                if what == "command" and aggregate_id not in archived:
                    text = f"{aggregate_id} {len(model[aggregate_id])} {number}"
                    await signal.handle_command(aggregate_id, Note(text))
                    model[aggregate_id].append(text)
                elif what == "rotate":
                    keys.add(f"k{len(keys.ids())}", generate_key())
                elif what == "reencrypt":
                    report = await reencrypt(store, AesGcm(keys), page=number)
                    assert report.unreadable == 0
                elif what == "archive" and aggregate_id not in archived and model[aggregate_id]:
                    await signal.archive(aggregate_id)
                    archived.add(aggregate_id)
                elif what == "restore" and aggregate_id in archived:
                    await signal.restore(aggregate_id)
                    archived.discard(aggregate_id)
            final = await reencrypt(store, AesGcm(keys))
            assert final.done
            for aggregate_id in archived:
                await signal.restore(aggregate_id)
        total = sum(len(texts) for texts in model.values())
        assert await key_census(store) == ({keys.current: total} if total else {})
        async with Signal(
            notebooks, store=store, transcoder=AesGcm(only(keys, keys.current))
        ) as fresh:
            assert await texts_of(fresh, ids) == {i: tuple(t) for i, t in model.items()}

    asyncio.run(scenario())
