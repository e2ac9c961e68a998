"""Encryption and forgetting per tenant: keys of its own, payloads bound to its streams."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from test_privacy import (
    EMAIL,
    NAME,
    ChangePlan,
    Customer,
    Register,
    StructRegistered,
    customer_config,
)

from eventsignal import AggregateConfig, Event, EventSerializationError, Signal
from eventsignal.codecs import AesGcm, KeyRing, PerTenant, generate_key
from eventsignal.privacy import Privacy
from eventsignal.serialization import EventSerializer
from eventsignal.stores import MemoryStore
from eventsignal.stores.tenancy import tenant_store

SECRET = "a secret note of acme's"


@dataclass(frozen=True)
class Noted:
    text: str


def note(command: str, state: str) -> list[Noted]:
    return [Noted(command)]


def keep(state: str, event: Event[Noted]) -> str:
    return event.data.text


notes = AggregateConfig("note", "", note, keep, events=[Noted])


async def test_forgetting_a_subject_in_one_tenant_leaves_the_same_id_in_another() -> None:
    store = MemoryStore()
    privacy = Privacy(secret=b"s" * 32)
    config = customer_config(StructRegistered)
    async with Signal(config, store=store, privacy=privacy, telemetry=None) as signal:
        acme, globex = signal.for_tenant("acme"), signal.for_tenant("globex")
        for view in (acme, globex):
            await view.create("c1", Register("alice", EMAIL, NAME))
            await view.handle_command("c1", ChangePlan("pro"))
        await signal.drain()
        done = await acme.forget("alice")
        assert done.destroyed
        assert done.aggregates == (("customer", "c1"),)
        assert done.digest == privacy.digest("alice", "acme") != privacy.digest("alice", "globex")
        assert (await acme.aggregate("c1")).state == Customer("", None, "pro")
        assert (await globex.aggregate("c1")).state == Customer(EMAIL, NAME, "pro")
    async with Signal(config, store=store, privacy=privacy, telemetry=None) as fresh:
        assert (await fresh.for_tenant("acme").aggregate("c1")).state.email == ""
        assert (await fresh.for_tenant("globex").aggregate("c1")).state.email == EMAIL
        redacted = await fresh.for_tenant("acme").events("c1")
        assert (redacted[0].data.email, redacted[0].data.name) == ("", None)


async def test_each_tenant_encrypts_under_its_own_keys() -> None:
    rings = {tenant: KeyRing({"k1": generate_key()}, "k1") for tenant in ("", "acme", "globex")}
    asked: list[str] = []

    def codec_of(tenant: str) -> AesGcm:
        asked.append(tenant)
        return AesGcm(rings[tenant])

    store = MemoryStore()
    async with Signal(notes, store=store, transcoder=PerTenant(codec_of), telemetry=None) as signal:
        for tenant in ("acme", "globex"):
            await signal.for_tenant(tenant).create("n1", SECRET)
        assert (await signal.for_tenant("globex").aggregate("n1")).state == SECRET
    assert sorted(asked) == ["", "acme", "globex"]  # one codec per tenant, made once

    acme_row = (await tenant_store(store, "acme").read_aggregate("note", "n1"))[0]
    assert SECRET.encode() not in acme_row.data
    # acme's payload reads with acme's keys only
    with_acme_keys = EventSerializer("note", notes.event_types, AesGcm(rings["acme"]))
    assert with_acme_keys.decode(acme_row) == Noted(SECRET)
    with_globex_keys = EventSerializer("note", notes.event_types, AesGcm(rings["globex"]))
    with pytest.raises(EventSerializationError, match="note 'n1'"):
        with_globex_keys.decode(acme_row)


async def test_a_payload_moved_to_another_tenants_stream_fails_to_decode() -> None:
    ring = KeyRing({"k1": generate_key()}, "k1")  # one ring for every tenant: binding still holds
    store = MemoryStore()
    async with Signal(notes, store=store, transcoder=AesGcm(ring), telemetry=None) as signal:
        await signal.for_tenant("acme").create("n1", SECRET)
        row = (await tenant_store(store, "acme").read_aggregate("note", "n1"))[0]
        await tenant_store(store, "globex").create("note", "n1", [row])  # copied by hand
        with pytest.raises(EventSerializationError, match="authentication failed"):
            await signal.for_tenant("globex").aggregate("n1")
        assert (await signal.for_tenant("acme").aggregate("n1")).state == SECRET
