"""A FUSE filesystem that forgets every write not made durable, to test power loss.

A killed process loses nothing the kernel already holds; a machine losing power loses whatever
was not yet on disk. This filesystem makes that difference visible, in the spirit of Jepsen's
LazyFS: it passes files through to a backing directory, but keeps every written byte in memory
until ``fsync``/``fdatasync`` makes it durable. Killing the filesystem's process (SIGKILL) is the
power cut: the backing directory then holds only what was synced.

Names (create, rename, unlink, mkdir) go to the backing directory at once, as on a filesystem
that journals its metadata; file contents and sizes (writes, truncations) wait for a sync. So a
file written but never synced comes back with the length and bytes of its last sync, or empty.

Run as a script, it mounts ``BACKING`` at ``MOUNTPOINT`` in the foreground::

    python tests/lazyfs.py BACKING MOUNTPOINT

:class:`LazyMount` starts that process, crashes it and mounts the backing directory again. It
needs libfuse 3 (Debian's ``fuse3``), the ``mfusepy`` package and ``/dev/fuse``;
:func:`unavailable` says what is missing, so a test can skip with the reason.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

PAGE = 4096
_MOUNT_WAIT = 10.0


_MUTEX = threading.Lock()
_Op = TypeVar("_Op", bound=Callable[..., Any])


def _serialised(op: _Op) -> _Op:
    """One operation at a time: FUSE calls from several threads, the pending pages are shared."""

    @functools.wraps(op)
    def locked(*args: Any) -> Any:
        with _MUTEX:
            return op(*args)

    return cast(_Op, locked)


@dataclass
class _Pending:
    """What a file holds beyond its last sync: its size and the pages written since."""

    size: int
    synced_size: int  # bytes of the backing file still valid (a truncation may cut it)
    pages: dict[int, bytearray] = field(default_factory=dict)


class LazyFilesystem:
    """The filesystem's operations, for ``mfusepy.FUSE``; one lock serialises them all.

    A failing system call's ``OSError`` reaches FUSE as its errno; operations not defined here
    are ``mfusepy.Operations``' defaults (``lock`` among them: unsupported, so the kernel keeps
    POSIX locks itself, which is enough for processes on this one machine).
    """

    use_ns = True  # utimens gets nanoseconds

    def __init__(self, backing: str) -> None:
        self.backing = backing
        self.pending: dict[str, _Pending] = {}

    def _real(self, path: str) -> str:
        return os.path.join(self.backing, path.lstrip("/"))

    # Names and attributes: straight to the backing directory.

    @_serialised
    def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
        st = os.lstat(self._real(path))
        attrs = {
            key: getattr(st, key)
            for key in (
                "st_mode",
                "st_nlink",
                "st_uid",
                "st_gid",
                "st_size",
                "st_atime",
                "st_mtime",
                "st_ctime",
            )
        }
        pending = self.pending.get(path)
        if pending is not None:
            attrs["st_size"] = pending.size
        return attrs

    @_serialised
    def access(self, path: str, amode: int) -> int:
        if not os.access(self._real(path), amode):
            raise OSError(errno.EACCES, path)
        return 0

    @_serialised
    def readdir(self, path: str, fh: int) -> list[str]:
        return [".", "..", *os.listdir(self._real(path))]

    @_serialised
    def readlink(self, path: str) -> str:
        return os.readlink(self._real(path))

    @_serialised
    def mkdir(self, path: str, mode: int) -> int:
        os.mkdir(self._real(path), mode)
        return 0

    @_serialised
    def rmdir(self, path: str) -> int:
        os.rmdir(self._real(path))
        return 0

    @_serialised
    def symlink(self, target: str, source: str) -> int:
        os.symlink(source, self._real(target))
        return 0

    @_serialised
    def unlink(self, path: str) -> int:
        os.unlink(self._real(path))
        self.pending.pop(path, None)
        return 0

    @_serialised
    def rename(self, old: str, new: str) -> int:
        os.rename(self._real(old), self._real(new))
        self.pending.pop(new, None)
        moved = self.pending.pop(old, None)
        if moved is not None:
            self.pending[new] = moved
        prefix = old.rstrip("/") + "/"  # a directory: the files under it move too
        for name in [n for n in self.pending if n.startswith(prefix)]:
            self.pending[new.rstrip("/") + "/" + name[len(prefix) :]] = self.pending.pop(name)
        return 0

    @_serialised
    def chmod(self, path: str, mode: int) -> int:
        os.chmod(self._real(path), mode)
        return 0

    @_serialised
    def chown(self, path: str, uid: int, gid: int) -> int:
        os.chown(self._real(path), uid, gid)
        return 0

    @_serialised
    def utimens(self, path: str, times: tuple[int, int] | None = None) -> int:
        if times is None:
            os.utime(self._real(path))
        else:
            os.utime(self._real(path), ns=times)
        return 0

    @_serialised
    def statfs(self, path: str) -> dict[str, int]:
        st = os.statvfs(self._real(path))
        return {
            key: getattr(st, key)
            for key in (
                "f_bavail",
                "f_bfree",
                "f_blocks",
                "f_bsize",
                "f_favail",
                "f_ffree",
                "f_files",
                "f_flag",
                "f_frsize",
                "f_namemax",
            )
        }

    # File contents: held here until a sync.

    @_serialised
    def create(self, path: str, mode: int, fi: Any = None) -> int:
        return os.open(self._real(path), os.O_RDWR | os.O_CREAT, mode)

    @_serialised
    def open(self, path: str, flags: int) -> int:
        fd = os.open(self._real(path), os.O_RDWR)
        if flags & os.O_TRUNC:
            self._truncate(path, fd, 0)
        return fd

    @_serialised
    def release(self, path: str, fh: int) -> int:
        os.close(fh)
        return 0

    def flush(self, path: str, fh: int) -> int:
        return 0  # close(2) makes nothing durable

    @_serialised
    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        pending = self.pending.get(path)
        if pending is None:
            return os.pread(fh, size, offset)
        end = min(offset + size, pending.size)
        if end <= offset:
            return b""
        first, last = offset // PAGE, (end - 1) // PAGE
        data = b"".join(self._page(pending, fh, index) for index in range(first, last + 1))
        start = offset - first * PAGE
        return data[start : start + end - offset]

    @_serialised
    def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
        pending = self._pending(path, fh)
        position, view = offset, memoryview(data)
        while view:
            index, within = divmod(position, PAGE)
            page = pending.pages.get(index)
            if page is None:
                page = pending.pages[index] = bytearray(self._page(pending, fh, index))
            chunk = view[: PAGE - within]
            page[within : within + len(chunk)] = chunk
            position += len(chunk)
            view = view[len(chunk) :]
        pending.size = max(pending.size, offset + len(data))
        return len(data)

    @_serialised
    def truncate(self, path: str, length: int, fh: int | None = None) -> int:
        if fh is None:
            fd = os.open(self._real(path), os.O_RDWR)
            try:
                self._truncate(path, fd, length)
            finally:
                os.close(fd)
        else:
            self._truncate(path, fh, length)
        return 0

    @_serialised
    def fallocate(self, path: str, mode: int, offset: int, size: int, fh: int) -> int:
        if mode != 0:
            raise OSError(errno.EOPNOTSUPP, "only plain allocation")
        pending = self._pending(path, fh)
        pending.size = max(pending.size, offset + size)
        return 0

    @_serialised
    def fsync(self, path: str, datasync: int, fh: int) -> int:
        """The one way in: write what this file holds to the backing file."""
        pending = self.pending.pop(path, None)
        if pending is None:
            return 0
        os.ftruncate(fh, pending.synced_size)
        for index, page in sorted(pending.pages.items()):
            start = index * PAGE
            if start < pending.size:
                os.pwrite(fh, bytes(page[: pending.size - start]), start)
        os.ftruncate(fh, pending.size)
        # The backing file is now in the kernel's hands, which outlive this process: that is
        # all a simulated power cut needs, so no fsync of the backing file (it would only slow).
        return 0

    def fsyncdir(self, path: str, datasync: int, fh: int) -> int:
        return 0  # names are written through already

    def _pending(self, path: str, fd: int) -> _Pending:
        pending = self.pending.get(path)
        if pending is None:
            size = os.fstat(fd).st_size
            pending = self.pending[path] = _Pending(size, size)
        return pending

    def _truncate(self, path: str, fd: int, length: int) -> None:
        pending = self._pending(path, fd)
        if length < pending.size:
            for index in [i for i in pending.pages if i * PAGE >= length]:
                del pending.pages[index]
            tail = pending.pages.get(length // PAGE)
            if tail is not None:
                cut = length % PAGE
                tail[cut:] = bytes(PAGE - cut)
            pending.synced_size = min(pending.synced_size, length)
        pending.size = length

    def _page(self, pending: _Pending, fd: int, index: int) -> bytes:
        """Page ``index`` as the file holds it now: written since the sync, or as synced."""
        page = pending.pages.get(index)
        if page is not None:
            return bytes(page)
        start = index * PAGE
        valid = max(0, min(PAGE, pending.synced_size - start))
        data = os.pread(fd, valid, start) if valid else b""
        return data.ljust(PAGE, b"\0")


def unavailable() -> str | None:
    """Why this machine cannot mount the filesystem, or ``None`` when it can."""
    if not os.path.exists("/dev/fuse"):
        return "no /dev/fuse on this machine"
    if shutil.which("fusermount3") is None:
        return "fusermount3 is missing (Debian package fuse3)"
    try:
        import mfusepy  # noqa: F401  (loads libfuse, or says why it cannot)
    except (ImportError, OSError) as exc:
        return f"mfusepy cannot load libfuse 3: {exc}"
    return None


class LazyMount:
    """The filesystem mounted in a process of its own, so that killing it is the power cut."""

    def __init__(self, backing: Path, mountpoint: Path) -> None:
        self.backing = backing
        self.mountpoint = mountpoint
        self.process: subprocess.Popen[bytes] | None = None
        backing.mkdir(parents=True, exist_ok=True)
        mountpoint.mkdir(parents=True, exist_ok=True)

    def mount(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, __file__, str(self.backing), str(self.mountpoint)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + _MOUNT_WAIT
        while not os.path.ismount(self.mountpoint):
            if self.process.poll() is not None:
                errors = self.process.stderr.read().decode() if self.process.stderr else ""
                raise OSError(f"the lazy filesystem did not mount: {errors.strip()}")
            if time.monotonic() > deadline:
                self.crash()
                raise OSError("the lazy filesystem did not mount in time")
            time.sleep(0.02)

    def crash(self) -> None:
        """Lose every unsynced write: kill the filesystem's process, detach the mount."""
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGKILL)
            self.process.wait()
            if self.process.stderr is not None:
                self.process.stderr.close()
            self.process = None
        if os.path.ismount(self.mountpoint) or _stale(self.mountpoint):
            subprocess.run(
                ["fusermount3", "-u", "-z", str(self.mountpoint)],
                check=False,
                capture_output=True,
            )

    def unmount(self) -> None:
        """Unmount at the end of a test; what was not synced is dropped, as in a crash."""
        self.crash()


def _stale(mountpoint: Path) -> bool:
    """A mount whose process is gone answers ENOTCONN."""
    try:
        os.stat(mountpoint)
    except OSError as exc:
        return exc.errno == errno.ENOTCONN
    return False


def main(backing: str, mountpoint: str) -> None:
    from mfusepy import FUSE, Operations

    class Lazy(LazyFilesystem, Operations):  # type: ignore[misc]
        pass

    FUSE(Lazy(os.path.abspath(backing)), mountpoint, foreground=True, nothreads=False)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
