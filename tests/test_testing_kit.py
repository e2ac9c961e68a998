"""eventsignal.testing works without pytest: the compliance suites run from a plain script."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import eventsignal
from eventsignal.testing import EventStoreCompliance, SubscriptionStoreCompliance

SOURCE = str(Path(eventsignal.__file__).resolve().parents[1])

# Run in a fresh interpreter where ``import pytest`` fails, as it would where pytest is absent.
SCRIPT = textwrap.dedent(
    """
    import sys

    sys.modules["pytest"] = None

    from eventsignal.stores import MemoryStore
    from eventsignal.testing import EventStoreCompliance, SubscriptionStoreCompliance


    class Events(EventStoreCompliance):
        async def make_store(self):
            store = MemoryStore()
            await store.open()
            return store


    class Subscriptions(SubscriptionStoreCompliance):
        async def make_store(self):
            return MemoryStore()


    class ReadsWaitForWriters(MemoryStore):
        # A plausible mistake: reading through a write transaction, which waits for writers.
        def subscription_reads(self):
            return self.subscription_transaction()


    class Broken(SubscriptionStoreCompliance):
        async def make_store(self):
            return ReadsWaitForWriters()


    def checks(suite):
        return [name for name in dir(suite) if name.startswith("test_")]


    ran = 0
    for suite in (Events(), Subscriptions()):
        for name in checks(suite):
            getattr(suite, name)()
            ran += 1
    print("passed", ran)

    try:
        Broken().test_writes_are_read_only_after_commit()
    except AssertionError as failure:
        print("caught:", failure)
    loaded = {name.split(".")[0] for name, module in sys.modules.items() if module is not None}
    assert not loaded & {"pytest", "_pytest"}, loaded & {"pytest", "_pytest"}
    """
)


def test_compliance_suites_run_without_pytest() -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": SOURCE},
    )
    assert result.returncode == 0, result.stderr
    expected = sum(
        name.startswith("test_")
        for suite in (EventStoreCompliance, SubscriptionStoreCompliance)
        for name in dir(suite)
    )
    assert result.stdout.splitlines() == [
        f"passed {expected}",
        "caught: subscription_reads() waited for a writer",
    ]
