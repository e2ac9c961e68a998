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
        self._wanted: bytes | None = None

    def drop_next(self, header_line: str) -> None:
        """Lose the next published message whose headers hold ``header_line`` (``Name: value``)."""
        self._wanted = header_line.encode() + b"\r\n"

    async def _pump_to_server(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, forwarding: asyncio.Event
    ) -> None:
        try:
            while line := await source.readuntil(b"\r\n"):
                verb, *arguments = line.split()
                payload = b""
                if verb.upper() in _PUBLISHES:
                    payload = await source.readexactly(int(arguments[-1]) + 2)
                if not forwarding.is_set():
                    await self._closing.wait()
                    return
                if self._drops(verb.upper(), arguments, payload):
                    continue
                sink.write(line + payload)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        sink.transport.abort()

    def _drops(self, verb: bytes, arguments: list[bytes], payload: bytes) -> bool:
        if verb != b"HPUB" or self._wanted is None:
            return False
        headers = payload[: int(arguments[-2])]
        if self._wanted not in headers:
            return False
        self._wanted = None
        self.dropped.append(headers)
        return True
