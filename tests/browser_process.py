"""The stream browser as a user starts it: ``eventsignal ui STORE ...`` on a free port, in a
process of its own, until the test module is done."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

TESTS = Path(__file__).resolve().parent


@contextmanager
def stream_browser(
    store: str, *options: str, env: Mapping[str, str] | None = None
) -> Iterator[str]:
    """Run ``eventsignal ui STORE OPTIONS``; yield the address it printed."""
    path = os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH", "")]))
    process = subprocess.Popen(
        [sys.executable, "-m", "eventsignal.cli", "ui", store, "--port", "0", *options],
        env={**os.environ, "PYTHONPATH": path, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        found = None
        deadline = time.monotonic() + 30
        while found is None and time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            found = re.search(r"Open (http://127\.0\.0\.1:\d+)/", line)
        assert found is not None, "the stream browser did not print its address"
        yield found.group(1)
    finally:
        process.terminate()
        process.wait(timeout=20)
