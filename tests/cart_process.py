"""The cart app as a user starts it: ``python -m eventsignal.cart`` on a free port, SQLite in a
folder of the test's, until the test module is done."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def cart_app(folder: Path, *options: str) -> Iterator[tuple[str, int]]:
    """Run the app; yield the host and port it printed."""
    process = subprocess.Popen(
        [sys.executable, "-m", "eventsignal.cart", "--port", "0", *options],
        cwd=folder,
        env={**os.environ, "DATABASE_URL": f"sqlite:///{folder / 'cart.db'}"},
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
            found = re.search(r"Open http://(127\.0\.0\.1):(\d+)/", line)
        assert found is not None, "the cart app did not print its address"
        yield found.group(1), int(found.group(2))
    finally:
        process.terminate()
        process.wait(timeout=20)
