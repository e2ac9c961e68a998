"""Codecs at rest: AES-256-GCM with key rotation, zstd, and both chained, on real stores."""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import psycopg
import pytest

from eventsignal import AggregateConfig, Event, EventSerializationError, Signal
from eventsignal.codecs import AesGcm, KeyRing, Zstd, chain, generate_key
from eventsignal.domain.errors import ConfigurationError
from eventsignal.stores import PostgresStore, SQLiteStore

SECRET = "ada.lovelace@example.org"


@dataclass(frozen=True)
class Register:
    email: str
    notes: str = ""


@dataclass(frozen=True)
class Registered:
    email: str
    notes: str = ""


@dataclass(frozen=True)
class Customer:
    emails: tuple[str, ...] = ()


def handle(command: Register, state: Customer) -> list[Registered]:
    return [Registered(command.email, command.notes)]


def apply(state: Customer, event: Event[Registered]) -> Customer:
    return replace(state, emails=(*state.emails, event.data.email))


customers = AggregateConfig(
    name="customer",
    initial_state=Customer(),
    command_handler=handle,
    event_handler=apply,
    events=[Registered],
)


def ring(*ids: str) -> KeyRing:
    return KeyRing({key_id: generate_key() for key_id in ids}, current=ids[-1])


def raw_rows(path: Path) -> list[tuple[int, bytes]]:
    with sqlite3.connect(path) as db:
        return list(db.execute("SELECT version, data FROM eventsignal_events ORDER BY position"))


def sqlite_store(tmp_path: Path) -> SQLiteStore:
    return SQLiteStore(tmp_path / "codecs.db", migrate=True)


async def test_encrypted_payloads_hold_no_plaintext_and_read_back(tmp_path: Path) -> None:
    codec = AesGcm(ring("k1"))
    async with Signal(customers, store=sqlite_store(tmp_path), transcoder=codec) as signal:
        await signal.create("c-1", Register(SECRET))
    database = (tmp_path / "codecs.db").read_bytes()
    wal = tmp_path / "codecs.db-wal"
    raw = database + (wal.read_bytes() if wal.exists() else b"")
    assert SECRET.encode() not in raw
    assert b"lovelace" not in raw
    async with Signal(customers, store=sqlite_store(tmp_path), transcoder=codec) as again:
        assert (await again.aggregate("c-1")).state.emails == (SECRET,)
        (event,) = await again.events("c-1")
        assert event.data == Registered(SECRET)


@pytest.mark.postgres
async def test_postgres_rows_hold_no_plaintext(postgres_dsn: str) -> None:
    codec = AesGcm(ring("k1"))
    store = PostgresStore(postgres_dsn, migrate=True)
    async with Signal(customers, store=store, transcoder=codec) as signal:
        await signal.create("c-1", Register(SECRET))
        assert (await signal.events("c-1"))[0].data.email == SECRET
    with psycopg.connect(postgres_dsn) as db:
        rows = db.execute("SELECT data::text, encode(data, 'escape') FROM eventsignal_events")
        for hex_text, escaped in rows.fetchall():
            assert SECRET not in escaped
            assert SECRET.encode().hex() not in hex_text


async def test_an_altered_or_moved_payload_fails_naming_its_row(tmp_path: Path) -> None:
    codec = AesGcm(ring("k1"))
    async with Signal(customers, store=sqlite_store(tmp_path), transcoder=codec) as signal:
        await signal.create("c-1", Register(SECRET))
        await signal.handle_command("c-1", Register("second@example.org"))
    (_, first), (_, second) = raw_rows(tmp_path / "codecs.db")
    with sqlite3.connect(tmp_path / "codecs.db") as db:
        # Row 2 gets row 1's ciphertext: authentic bytes, wrong row.
        db.execute("UPDATE eventsignal_events SET data = ? WHERE version = 2", (first,))
    async with Signal(customers, store=sqlite_store(tmp_path), transcoder=codec) as again:
        with pytest.raises(EventSerializationError) as moved:
            await again.events("c-1")
    assert moved.value.aggregate_id == "c-1"
    assert moved.value.version == 2
    assert moved.value.event_name == "Registered"
    assert "authentication failed under key 'k1'" in str(moved.value)

    flipped = bytearray(second)
    flipped[-1] ^= 1
    with sqlite3.connect(tmp_path / "codecs.db") as db:
        db.execute("UPDATE eventsignal_events SET data = ? WHERE version = 2", (bytes(flipped),))
    async with Signal(customers, store=sqlite_store(tmp_path), transcoder=codec) as again:
        with pytest.raises(EventSerializationError, match="authentication failed"):
            await again.aggregate("c-1")


async def test_rotation_keeps_old_payloads_readable_and_writes_with_the_new_key(
    tmp_path: Path,
) -> None:
    keys = ring("2026-01")
    codec = AesGcm(keys)
    async with Signal(customers, store=sqlite_store(tmp_path), transcoder=codec) as signal:
        await signal.create("c-1", Register("old@example.org"))
        keys.add("2026-02", generate_key())
        await signal.handle_command("c-1", Register("new@example.org"))
        assert (await signal.state_at("c-1", version=2)).state.emails == (
            "old@example.org",
            "new@example.org",
        )
    used = [AesGcm.key_id_of(data) for _, data in raw_rows(tmp_path / "codecs.db")]
    assert used == ["2026-01", "2026-02"]

    only_new = KeyRing({"2026-02": keys.key("2026-02") or b""}, current="2026-02")
    async with Signal(
        customers, store=sqlite_store(tmp_path), transcoder=AesGcm(only_new)
    ) as without_old:
        with pytest.raises(EventSerializationError) as missing:
            await without_old.events("c-1")
    assert "key '2026-01', which the key ring lacks" in str(missing.value)
    assert missing.value.version == 1


async def test_rotating_under_load_fails_no_command(tmp_path: Path) -> None:
    keys = ring("k0")
    codec = AesGcm(keys)
    async with Signal(customers, store=sqlite_store(tmp_path), transcoder=codec) as signal:
        ids = [f"c-{n}" for n in range(8)]
        for aggregate_id in ids:
            await signal.create(aggregate_id)

        async def writer(aggregate_id: str) -> None:
            for n in range(25):
                await signal.handle_command(aggregate_id, Register(f"{aggregate_id}-{n}@x.org"))

        async def rotator() -> None:
            for n in range(1, 6):
                await asyncio.sleep(0.005)
                keys.add(f"k{n}", generate_key())

        await asyncio.gather(rotator(), *(writer(i) for i in ids))
    async with Signal(customers, store=sqlite_store(tmp_path), transcoder=codec) as again:
        for aggregate_id in ids:
            assert len((await again.aggregate(aggregate_id)).state.emails) == 25
    used = {AesGcm.key_id_of(data) for _, data in raw_rows(tmp_path / "codecs.db")}
    assert len(used) > 1  # the rotation happened while commands were written


async def test_plaintext_rows_are_refused_unless_allowed(tmp_path: Path) -> None:
    async with Signal(customers, store=sqlite_store(tmp_path)) as plain:
        await plain.create("c-1", Register(SECRET))
    keys = ring("k1")
    async with Signal(customers, store=sqlite_store(tmp_path), transcoder=AesGcm(keys)) as strict:
        with pytest.raises(EventSerializationError, match="not encrypted"):
            await strict.events("c-1")
    lenient = AesGcm(keys, read_plaintext=True)
    async with Signal(customers, store=sqlite_store(tmp_path), transcoder=lenient) as signal:
        await signal.handle_command("c-1", Register("later@example.org"))
        assert (await signal.aggregate("c-1")).state.emails == (SECRET, "later@example.org")
    first, second = raw_rows(tmp_path / "codecs.db")
    assert SECRET.encode() in first[1]
    assert AesGcm.key_id_of(second[1]) == "k1"


async def test_zstd_compresses_large_payloads_and_reads_old_ones(tmp_path: Path) -> None:
    async with Signal(customers, store=sqlite_store(tmp_path)) as plain:
        await plain.create("c-1", Register("before@example.org"))
    notes = "the same words again " * 200
    async with Signal(customers, store=sqlite_store(tmp_path), transcoder=Zstd()) as signal:
        await signal.handle_command("c-1", Register("small@example.org"))
        await signal.handle_command("c-1", Register("large@example.org", notes))
    async with Signal(customers, store=sqlite_store(tmp_path), transcoder=Zstd()) as again:
        events = await again.events("c-1")
    assert [e.data.email for e in events] == [
        "before@example.org",
        "small@example.org",
        "large@example.org",
    ]
    assert events[2].data.notes == notes
    (_, old), (_, small), (_, large) = raw_rows(tmp_path / "codecs.db")
    assert old.startswith(b"{")
    assert small.startswith(b"{")  # below the size worth compressing
    assert large.startswith(b"\x28\xb5\x2f\xfd")
    assert len(large) < len(notes) // 10


async def test_compress_then_encrypt(tmp_path: Path) -> None:
    codec = chain(Zstd(), AesGcm(ring("k1")))
    notes = SECRET * 100
    async with Signal(customers, store=sqlite_store(tmp_path), transcoder=codec) as signal:
        await signal.create("c-1", Register(SECRET, notes))
    ((_, stored),) = raw_rows(tmp_path / "codecs.db")
    assert SECRET.encode() not in stored
    assert len(stored) < len(notes) // 5  # compressed before it was encrypted
    async with Signal(customers, store=sqlite_store(tmp_path), transcoder=codec) as again:
        (event,) = await again.events("c-1")
    assert event.data == Registered(SECRET, notes)


def test_key_rings_refuse_what_would_fail_later() -> None:
    with pytest.raises(ConfigurationError, match="32 bytes"):
        KeyRing({"k1": b"short"}, current="k1")
    with pytest.raises(ConfigurationError, match="not in the key ring"):
        KeyRing({"k1": generate_key()}, current="k2")
    with pytest.raises(ConfigurationError, match="key id"):
        KeyRing({"bad id!": generate_key()}, current="bad id!")
    keys = ring("k1")
    with pytest.raises(ConfigurationError, match="already in the ring"):
        keys.add("k1", generate_key())
    assert "k1" in keys
    assert "key" not in repr(keys).replace("KeyRing", "")  # ids only, never key bytes


def test_snapshot_payloads_are_encrypted_too() -> None:
    from eventsignal.serialization import StateSerializer

    codec: Any = AesGcm(ring("k1"))
    serializer = StateSerializer(Customer, codec)
    data = serializer.encode(Customer((SECRET,)))
    assert SECRET.encode() not in data
    assert serializer.decode(data) == Customer((SECRET,))
