"""The Prometheus endpoint of a gate and of the ledger: `GET /metrics`, and nothing else.

The endpoints have no authentication, so what a stranger on the network can do with them is bounded:

    where            127.0.0.1 unless told otherwise (`listen = "9108"` is 127.0.0.1:9108)
    threads          two, whatever comes: one asyncio loop holds every connection (no thread each),
                     one worker renders the exposition, so scrapes are answered one at a time
    connections      at most MAX_CONNECTIONS open; one more closes the oldest that has not sent its
                     request yet (an idle one), so idle connections cannot lock a scraper out
    slow clients     the request head must arrive within HEAD_TIMEOUT s of the connect (a client that
                     drips it is cut off), in at most MAX_HEAD bytes; the answer must be taken within
                     WRITE_TIMEOUT s
    one request      per connection (`Connection: close`), as Prometheus scrapes

The exposition comes from prometheus-client (`generate_latest` of a registry holding only our
collector: no process or platform collectors). A collector must answer from what it holds: a
scrape never waits on a database (gated/central/ledger_metrics.py keeps a snapshot).
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.registry import Collector

from gated.core.errors import GatedError

DEFAULT_HOST = "127.0.0.1"
MAX_CONNECTIONS = 64
HEAD_TIMEOUT = 5.0
WRITE_TIMEOUT = 10.0
MAX_HEAD = 8192


class MetricsError(GatedError, ValueError):
    """A listen address that cannot work, or a port already taken."""


def parse_listen(text: str) -> tuple[str, int]:
    """`host:port` (IPv6 as `[::1]:9108`), or a bare `port` on 127.0.0.1 -> (host, port)."""
    text = str(text).strip()
    host, sep, port = text.rpartition(":")
    host = host.strip("[]") if sep else DEFAULT_HOST
    if (sep and not host) or not port.isdigit() or not 0 < int(port) < 65536:
        raise MetricsError(f"{text!r}: expected host:port, e.g. 127.0.0.1:9108 (or a port: 127.0.0.1)")
    return host, int(port)


def check_listen(text: str) -> str | None:
    """For the configuration schema: what is expected, or None."""
    try:
        parse_listen(text)
    except MetricsError:
        return "host:port, e.g. 127.0.0.1:9108 (or a port, on 127.0.0.1)"
    return None


class MetricsServer:
    """`GET /metrics` on one address (see the module's docstring); `shutdown()` stops it."""

    def __init__(
        self,
        host: str,
        port: int,
        collector: Collector,
        *,
        max_connections: int = MAX_CONNECTIONS,
        head_timeout: float = HEAD_TIMEOUT,
        write_timeout: float = WRITE_TIMEOUT,
    ):
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(collector)
        self.max_connections, self.head_timeout, self.write_timeout = max_connections, head_timeout, write_timeout
        self._render = ThreadPoolExecutor(1, thread_name_prefix="metrics-render")
        self._loop = asyncio.new_event_loop()
        self._waiting: dict[asyncio.StreamWriter, None] = {}  # connections without a request yet, oldest first
        self._open = 0
        try:
            self._server = self._loop.run_until_complete(
                asyncio.start_server(self._connection, host, port, limit=MAX_HEAD, backlog=128)
            )
        except OSError as exc:
            self._loop.close()
            self._render.shutdown()
            raise MetricsError(f"cannot listen on {host}:{port} ({exc.strerror or exc})") from None
        self.server_port = self._server.sockets[0].getsockname()[1]
        self.address = f"[{host}]:{self.server_port}" if ":" in host else f"{host}:{self.server_port}"
        self._thread = threading.Thread(target=self._loop.run_forever, name="metrics-http", daemon=True)
        self._thread.start()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._open >= self.max_connections:
            if not self._waiting:  # every one of them is being answered: no room
                writer.transport.abort()
                return
            oldest = next(iter(self._waiting))
            self._waiting.pop(oldest)
            oldest.transport.abort()
        self._open += 1
        self._waiting[writer] = None
        try:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self.head_timeout)
            except (asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                return
            finally:
                self._waiting.pop(writer, None)
            status, body, content_type = await self._answer(head)
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n".encode()
                + body
            )
            try:
                await asyncio.wait_for(writer.drain(), self.write_timeout)
            except (asyncio.TimeoutError, ConnectionError):
                pass
        except asyncio.CancelledError:  # shutdown(): the connection ends here, quietly (Python 3.11's
            return  # asyncio would log a cancelled connection task as unhandled)
        finally:
            self._open -= 1
            writer.transport.abort() if writer.transport.get_write_buffer_size() else writer.close()

    async def _answer(self, head: bytes) -> tuple[str, bytes, str]:
        method, _, rest = head.partition(b" ")
        target = rest.split(b" ", 1)[0].split(b"?", 1)[0]
        if method not in (b"GET", b"HEAD"):
            return "405 Method Not Allowed", b"GET /metrics only\n", "text/plain"
        if target != b"/metrics":
            return "404 Not Found", b"GET /metrics only\n", "text/plain"
        body = await self._loop.run_in_executor(self._render, generate_latest, self.registry)
        return "200 OK", (body if method == b"GET" else b""), CONTENT_TYPE_LATEST

    def shutdown(self) -> None:
        async def close():
            self._server.close()
            tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)  # each connection closed in its finally
            for _ in range(2):
                await asyncio.sleep(0)  # the transports' close callbacks: the sockets are closed

        if self._loop.is_closed():
            return
        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
        self._render.shutdown(wait=False)


def serve(listen: str, collector: Collector) -> MetricsServer:
    """Start GET /metrics on `listen` with only `collector`; returns the server (shutdown() stops it)."""
    host, port = parse_listen(listen)
    return MetricsServer(host, port, collector)
