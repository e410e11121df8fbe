"""The open-loop client keeps its rate whatever the answers take, and charges the wait."""

from __future__ import annotations

import asyncio

from loadtests.loadgen import http_get, open_loop


async def _server(delay_s: float) -> tuple[asyncio.Server, int]:
    """A keep-alive HTTP/1.1 server answering every request after `delay_s`: 200 on /ok, else
    404 (with a body, to check the client frames answers by Content-Length)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                await asyncio.sleep(delay_s)
                ok = head.startswith(b"GET /ok ")
                body = b"{}" if ok else b'{"title":"Not Found"}'
                status = b"200 OK" if ok else b"404 Not Found"
                writer.write(
                    b"HTTP/1.1 " + status + b"\r\nContent-Type: application/json\r\n"
                    b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def test_rate_holds_whatever_the_answers_take() -> None:
    server, port = await _server(0.2)
    async with server:
        requests = [http_get("127.0.0.1", "/ok"), http_get("127.0.0.1", "/missing")]
        result = await open_loop("127.0.0.1", port, requests, rate=100, seconds=2)
    # A closed loop on one connection would manage 5 requests/s against this server.
    assert result.requests == 200
    assert result.achieved_rate > 80
    assert result.statuses == {200: 100, 404: 100}
    assert 200 <= result.latency_ms["p50"] < 400
    # ~20 requests are in flight at any time (rate x latency): connections grow to match.
    assert 15 <= result.connections <= 60
    assert result.client_cpu_cores > 0


async def test_a_refused_connection_is_counted_not_hung() -> None:
    server, port = await _server(0)
    server.close()
    await server.wait_closed()
    result = await open_loop("127.0.0.1", port, [http_get("127.0.0.1", "/ok")], rate=50, seconds=1)
    assert result.statuses == {0: 50}
