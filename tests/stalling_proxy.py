"""A TCP proxy a test puts between a client and a server, to make the path between them stall."""

from __future__ import annotations

import asyncio
from typing import Self


class StallingProxy:
    """Forwards a loopback port to the NATS server until told to stall.

    ``stall()`` freezes every open link for good: both sockets stay open and nothing is forwarded
    any more, as when the path to a server dies without a FIN or RST. Links opened meanwhile are
    accepted and held silent until ``resume()``; from then on new links forward again.
    """

    def __init__(self, server_port: int) -> None:
        self.server_port = server_port
        self.port = 0
        self.links = 0  # links connected through to the server
        self._accepting = asyncio.Event()
        self._accepting.set()
        self._frozen: list[asyncio.Event] = []  # per link: set while it forwards
        self._closing = asyncio.Event()
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._link, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def stall(self) -> None:
        self._accepting.clear()
        for forwarding in self._frozen:
            forwarding.clear()

    def resume(self) -> None:
        self._accepting.set()

    async def close(self) -> None:
        self._closing.set()
        self._accepting.set()
        for forwarding in self._frozen:
            forwarding.set()
        for writer in self._writers:
            writer.transport.abort()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _link(
        self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter
    ) -> None:
        self._writers.add(client_out)
        try:
            await self._accepting.wait()
            if self._closing.is_set():
                return
            server_in, server_out = await asyncio.open_connection("127.0.0.1", self.server_port)
            self._writers.add(server_out)
            self.links += 1
            forwarding = asyncio.Event()
            forwarding.set()
            self._frozen.append(forwarding)
            await asyncio.gather(
                self._pump_to_server(client_in, server_out, forwarding),
                self._pump(server_in, client_out, forwarding),
            )
        except OSError:
            pass
        finally:
            client_out.transport.abort()

    async def _pump_to_server(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, forwarding: asyncio.Event
    ) -> None:
        """What the client sends; a subclass may read it message by message."""
        await self._pump(source, sink, forwarding)

    async def _pump(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, forwarding: asyncio.Event
    ) -> None:
        while chunk := await source.read(65536):
            if not forwarding.is_set():
                await self._closing.wait()  # frozen: the bytes are swallowed, the socket stays
                return
            sink.write(chunk)
        sink.transport.abort()
