"""The lazy filesystem of the power-loss tests against a model of what it must hold.

Its operations run here without FUSE, on a backing directory: any sequence of writes,
truncations, syncs and crashes must read back as a plain byte array says, the file as written
before a crash, and as last synced after it. (``test_power_loss.py`` checks the mounted
filesystem once more, through the kernel.)
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from lazyfs import PAGE, LazyFilesystem

# Page edges and small offsets are where a page-wise cache goes wrong.
offsets = st.one_of(
    st.sampled_from([0, 1, 100, PAGE - 1, PAGE, PAGE + 1, 2 * PAGE]), st.integers(0, 3 * PAGE)
)
# No zero bytes in what is written: a zero must mean "never written here".
payloads = st.binary(min_size=1, max_size=2 * PAGE + 10).map(lambda b: bytes(x or 1 for x in b))
operations = st.lists(
    st.one_of(
        st.tuples(st.just("write"), offsets, payloads),
        st.tuples(st.just("truncate"), offsets),
        st.tuples(st.just("truncate"), st.integers(0, 200)),
        st.tuples(st.just("fsync")),
        st.tuples(st.just("crash")),
    ),
    max_size=25,
)


def write(model: bytearray, offset: int, data: bytes) -> None:
    if len(model) < offset:
        model.extend(bytes(offset - len(model)))
    model[offset : offset + len(data)] = data


def truncate(model: bytearray, length: int) -> None:
    del model[length:]
    model.extend(bytes(length - len(model)))


@settings(max_examples=300, deadline=None)
@given(operations, st.integers(0, 2 * PAGE + 100).map(lambda n: b"E" * n))
def test_reads_follow_writes_and_a_crash_keeps_what_was_synced(
    steps: list[tuple[object, ...]], existing: bytes
) -> None:
    with tempfile.TemporaryDirectory() as backing:
        Path(backing, "f").write_bytes(existing)  # synced before the filesystem started
        fs = LazyFilesystem(backing)
        fh = fs.open("/f", os.O_RDWR)
        current, synced = bytearray(existing), bytes(existing)
        try:
            for step in steps:
                if step[0] == "write":
                    _, offset, data = step
                    assert isinstance(offset, int)
                    assert isinstance(data, bytes)
                    assert fs.write("/f", data, offset, fh) == len(data)
                    write(current, offset, data)
                elif step[0] == "truncate":
                    _, length = step
                    assert isinstance(length, int)
                    fs.truncate("/f", length, fh)
                    truncate(current, length)
                elif step[0] == "fsync":
                    fs.fsync("/f", 0, fh)
                    synced = bytes(current)
                else:  # a crash: a new filesystem over what the backing directory kept
                    fs.release("/f", fh)
                    fs = LazyFilesystem(backing)
                    fh = fs.open("/f", os.O_RDWR)
                    current = bytearray(synced)
                assert fs.getattr("/f")["st_size"] == len(current)
                assert fs.read("/f", len(current) + PAGE, 0, fh) == current
                middle = len(current) // 3
                assert fs.read("/f", 700, middle, fh) == current[middle : middle + 700]
            assert Path(backing, "f").read_bytes() == synced
        finally:
            fs.release("/f", fh)


def test_a_renamed_file_keeps_its_unsynced_writes_under_its_new_name(tmp_path: Path) -> None:
    fs = LazyFilesystem(str(tmp_path))
    fh = fs.create("/old", 0o644)
    try:
        fs.write("/old", b"abc", 0, fh)
        fs.rename("/old", "/new")
        assert fs.read("/new", 10, 0, fh) == b"abc"
        assert (tmp_path / "new").read_bytes() == b""  # not synced yet
        fs.fsync("/new", 0, fh)
        assert (tmp_path / "new").read_bytes() == b"abc"
    finally:
        fs.release("/new", fh)
