"""A TCP proxy that loses one message a client publishes, as a server that never received it."""

from __future__ import annotations

import asyncio

from stalling_proxy import StallingProxy

_PUBLISHES = (b"PUB", b"HPUB")


class DroppingProxy(StallingProxy):
    """Forwards a loopback port to the NATS server, reading the client's side message by message,
    so that :meth:`drop_next` can make the next publish whose headers hold a given line vanish.

    The rest of the protocol passes untouched; only a whole message (its line and payload) is
    dropped, so the connection stays well formed.
    """

    def __init__(self, server_port: int) -> None:
        super().__init__(server_port)
        self.dropped: list[bytes] = []  # the headers of each message dropped
        self.forwarded: list[bytes] = []  # the headers of each message with headers passed on
        self._wanted: bytes | None = None

    def drop_next(self, header_line: str) -> None:
        """Lose the next published message whose headers hold ``header_line`` (``Name: value``)."""
        self._wanted = b"\r\n" + header_line.encode() + b"\r\n"

    async def _pump_to_server(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, forwarding: asyncio.Event
    ) -> None:
        try:
            while True:
                line = await source.readuntil(b"\r\n")
                verb, *arguments = line.split() or [b""]
                verb = verb.upper()
                payload = b""
                if verb in _PUBLISHES:
                    payload = await source.readexactly(int(arguments[-1]) + 2)
                if not forwarding.is_set():
                    await self._closing.wait()
                    return
                if verb != b"HPUB" or self._passes(payload[: int(arguments[-2])]):
                    sink.write(line + payload)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError, OSError):
            pass  # the client left, or sent what this proxy does not read: the link ends
        finally:
            sink.transport.abort()

    def _passes(self, headers: bytes) -> bool:
        """Whether a published message with ``headers`` goes on (else it is the one dropped)."""
        wanted = self._wanted
        if wanted is not None and wanted in headers:
            self._wanted = None
            self.dropped.append(headers)
            return False
        self.forwarded.append(headers)
        return True
