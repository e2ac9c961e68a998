"""The cart served over real TCP: keep-alive speed and the deadline for receiving a request.

One server (``python -m eventsignal.cart --port 0 --request-timeout 1`` on a temp SQLite file)
serves the module; each test opens its own connections.
"""

from __future__ import annotations

import asyncio
import http.client
import socket
import time
from collections.abc import AsyncIterator, Iterator

import pytest
import uvicorn
from cart_process import cart_app
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

from eventsignal.cart.server import listen, server_config

REQUEST_TIMEOUT = 1.0
TIMEOUT_OPTION = ["--request-timeout", str(REQUEST_TIMEOUT)]
GRACE = 3.0  # on top of the timeout, for a loaded machine


@pytest.fixture(scope="module")
def address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    with cart_app(tmp_path_factory.mktemp("cart"), *TIMEOUT_OPTION) as address:
        yield address


def seconds_until_closed(connection: socket.socket, *, limit: float) -> float:
    """How long the server takes to close ``connection``; fails if it is still open at ``limit``."""
    started = time.monotonic()
    connection.settimeout(limit)
    try:
        while connection.recv(4096):
            pass
    except ConnectionResetError:
        pass
    except TimeoutError:
        pytest.fail(f"the server kept a slow client's connection open for {limit} s")
    return time.monotonic() - started


def seconds_of_trickling(connection: socket.socket, *, limit: float) -> float:
    """Send a byte every 0.1 s until the server closes ``connection``; fails at ``limit``."""
    started = time.monotonic()
    while time.monotonic() - started < limit:
        try:
            connection.sendall(b"a")
        except (BrokenPipeError, ConnectionResetError):
            return time.monotonic() - started
        time.sleep(0.1)
    pytest.fail(f"the server kept a trickling client's connection open for {limit} s")


def test_keep_alive_requests_are_answered_without_delay(address: tuple[str, int]) -> None:
    # Without TCP_NODELAY every response after the first on a connection waits for the client's
    # delayed ACK, at least 40 ms on Linux; with it a small file takes a few milliseconds.
    connection = http.client.HTTPConnection(*address, timeout=10)
    took = []
    try:
        for _ in range(30):
            started = time.perf_counter()
            connection.request("GET", "/static/cart.css")
            response = connection.getresponse()
            response.read()
            took.append(time.perf_counter() - started)
            assert response.status == 200
            assert response.getheader("connection") != "close"
    finally:
        connection.close()
    delayed = [t for t in took[1:] if t >= 0.035]
    assert len(delayed) < len(took) // 4, [round(t * 1000) for t in took]


def test_a_client_that_stops_mid_request_line_is_disconnected(address: tuple[str, int]) -> None:
    with socket.create_connection(address) as connection:
        connection.sendall(b"GET / HT")
        elapsed = seconds_until_closed(connection, limit=REQUEST_TIMEOUT + GRACE)
    assert elapsed >= REQUEST_TIMEOUT * 0.8


def test_a_client_that_sends_nothing_is_disconnected(address: tuple[str, int]) -> None:
    with socket.create_connection(address) as connection:
        seconds_until_closed(connection, limit=REQUEST_TIMEOUT + GRACE)


def test_trickled_headers_do_not_keep_the_connection(address: tuple[str, int]) -> None:
    # Each byte arrives well within any idle timeout; the request as a whole never does.
    with socket.create_connection(address) as connection:
        connection.sendall(b"GET / HTTP/1.1\r\nHost: cart\r\nX-Slow: ")
        elapsed = seconds_of_trickling(connection, limit=REQUEST_TIMEOUT + GRACE)
    assert elapsed >= REQUEST_TIMEOUT * 0.8


def test_a_body_that_never_arrives_is_not_waited_for(address: tuple[str, int]) -> None:
    with socket.create_connection(address) as connection:
        connection.sendall(
            b"POST /carts HTTP/1.1\r\nHost: cart\r\nContent-Length: 100\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n\r\nsku=app"
        )
        seconds_until_closed(connection, limit=REQUEST_TIMEOUT + GRACE)


def test_the_deadline_is_per_request_not_per_connection(address: tuple[str, int]) -> None:
    connection = http.client.HTTPConnection(*address, timeout=10)
    try:
        for _ in range(3):  # 3 x 0.6 s on one connection: longer than one timeout in all
            connection.request("GET", "/")
            response = connection.getresponse()
            response.read()
            assert response.status == 200
            time.sleep(REQUEST_TIMEOUT * 0.6)
    finally:
        connection.close()


async def test_a_slow_response_stream_is_not_cut_short() -> None:
    # The deadline bounds receiving the request; what the app sends back may take its time.
    async def ticks() -> AsyncIterator[bytes]:
        for tick in range(5):
            await asyncio.sleep(0.2)
            yield f"tick {tick}\n".encode()

    async def stream(request: Request) -> StreamingResponse:
        return StreamingResponse(ticks(), media_type="text/plain")

    app = Starlette(routes=[Route("/ticks", stream)])
    listener = listen("127.0.0.1", 0)
    server = uvicorn.Server(server_config(app, request_timeout=0.3))
    running = asyncio.create_task(server.serve(sockets=[listener]))
    try:
        while not server.started:  # noqa: ASYNC110 - uvicorn has no startup event
            await asyncio.sleep(0.01)
        reader, writer = await asyncio.open_connection(*listener.getsockname()[:2])
        writer.write(b"GET /ticks HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        answer = await asyncio.wait_for(reader.read(), timeout=10)
        writer.close()
    finally:
        server.should_exit = True
        await running
        listener.close()
    assert answer.startswith(b"HTTP/1.1 200")
    assert b"tick 4" in answer
