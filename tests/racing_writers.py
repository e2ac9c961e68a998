"""Writer processes released together: the harness of the tests that race processes on a store.

Each writer script prints ``ready`` once connected, waits for ``go`` on its standard input, then
does its work and prints one JSON report.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any


async def race(script: Path, options: Sequence[Sequence[str]]) -> list[dict[str, Any]]:
    """Start ``script`` once per entry of ``options`` (that writer's arguments), release them
    together once all are ready, and collect their reports; every writer must succeed."""
    writers = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            str(script),
            *arguments,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        for arguments in options
    ]
    try:
        async with asyncio.timeout(120):
            for writer in writers:
                assert writer.stdout is not None
                assert (await writer.stdout.readline()).strip() == b"ready"
            for writer in writers:
                assert writer.stdin is not None
                writer.stdin.write(b"go\n")
                await writer.stdin.drain()
            outputs = [await writer.communicate() for writer in writers]
    finally:
        for writer in writers:
            if writer.returncode is None:
                writer.kill()
                await writer.wait()
    assert [writer.returncode for writer in writers] == [0] * len(writers)
    return [json.loads(stdout) for stdout, _ in outputs]
