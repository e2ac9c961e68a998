"""The DCB view of NatsStore passes the DCB compliance suite on a JetStream server of its own."""

from __future__ import annotations

from uuid import uuid4

import pytest

from eventsignal.stores import EventStore, NatsStore
from eventsignal.testing import DcbCompliance

pytestmark = pytest.mark.nats


class TestNatsDcb(DcbCompliance):
    @pytest.fixture(autouse=True)
    def _server(self, nats_url: str) -> None:
        self.url = nats_url

    async def make_store(self) -> EventStore:
        store = NatsStore(self.url, stream=f"dcb_{uuid4().hex}")
        await store.open()
        return store
