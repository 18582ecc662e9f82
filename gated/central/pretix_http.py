"""HTTP to a pretix server, with the rules an API token needs (docs/pretix.md, "The connection").

    https only       a shop URL must be https:// (certificates checked by the standard library's
                     default context); plain http:// only when the caller says so (`--insecure-http`:
                     a test shop on 127.0.0.1)
    one origin       the token goes to the origin of the shop URL and nowhere else: a redirect to
                     another scheme, host or port is refused before anything is sent there
                     (urllib would follow it and keep the Authorization header); redirects within
                     the origin are followed, at most MAX_REDIRECTS
    bounded answers  a body over `max_bytes` is refused (by its Content-Length, or once read past
                     the cap); each socket operation has `timeout`, and each exchange as a whole,
                     connect, head and body, has `deadline` (a watchdog shuts the socket down: a
                     server that drips its answer a byte at a time is cut off too)

http.client, not urllib: its requests go where they are told, with no redirect or proxy machinery
of its own, and its socket is there for the watchdog.

Every failure is a PretixHttpError naming the request; the caller turns it into its own error.
This module knows nothing of pretix's resources: pretix.py asks it for (status, body bytes).
"""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
import urllib.parse

from gated.core.errors import GatedError

MAX_BYTES = 16 * 1024 * 1024  # a page of pretix's API is a few hundred kB at most
TIMEOUT = 20.0  # seconds per connect or read
DEADLINE = 120.0  # seconds for one request and its whole answer
CHUNK = 64 * 1024
MAX_REDIRECTS = 5
REDIRECTS = (301, 302, 303, 307, 308)
DEFAULT_PORTS = {"http": 80, "https": 443}


class PretixHttpError(GatedError, RuntimeError):
    """The request could not be made safely, or its answer not be read within the limits."""


def origin(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of a URL, the port made explicit: what a redirect must keep."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:  # "http://[::1": not a URL, the origin of nothing
        return "", "", -1
    try:
        port = parts.port
    except ValueError:
        port = -1  # not a port: never the same origin as a URL with one
    return parts.scheme.lower(), (parts.hostname or "").lower(), port or DEFAULT_PORTS.get(parts.scheme.lower(), -1)


def check_url(url: str, *, insecure_http: bool = False) -> str:
    """The shop URL if it may carry a token: https://host[:port][/path], or http:// when allowed."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:  # "https://[::1"
        raise PretixHttpError(f"pretix URL {url!r} must be https://host[:port][/path]") from None
    if "@" in parts.netloc:  # user:password@ would be ignored, and then printed in every message
        shown = parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()
        raise PretixHttpError(
            f"pretix URL {shown!r} (user and password left out here) must be "
            f"https://host[:port][/path], without a user: the API token authenticates"
        )
    scheme, host, port = origin(url)
    if scheme not in ("http", "https") or not host or port == -1 or parts.query or parts.fragment:
        raise PretixHttpError(f"pretix URL {url!r} must be https://host[:port][/path]")
    if scheme == "http" and not insecure_http:
        raise PretixHttpError(
            f"pretix URL {url!r} is plain http: the API token and the issuer keys would cross "
            f"the network unprotected; use https:// (--insecure-http only for a test shop)"
        )
    return url


class Http:
    """Requests to one origin (that of `base_url`), with `headers` (the Authorization) on each."""

    def __init__(
        self,
        base_url: str,
        headers: dict[str, str],
        *,
        insecure_http: bool = False,
        timeout: float = TIMEOUT,
        deadline: float = DEADLINE,
        max_bytes: int = MAX_BYTES,
    ):
        check_url(base_url, insecure_http=insecure_http)
        self.origin = origin(base_url)
        self.headers, self.timeout, self.deadline, self.max_bytes = dict(headers), timeout, deadline, max_bytes
        self._tls = ssl.create_default_context() if self.origin[0] == "https" else None

    def request(
        self, method: str, url: str, data: bytes | None = None, content_type: str | None = None
    ) -> tuple[int, bytes]:
        """(HTTP status, body) of one request, redirects within the origin followed; an HTTP error
        status is an answer, not an exception."""
        if origin(url) != self.origin:
            raise PretixHttpError(f"{method} {url}: not the shop's origin; the API token is not sent there")
        for _hop in range(MAX_REDIRECTS + 1):
            status, location, body = self._exchange(method, url, data, content_type)
            if status not in REDIRECTS or location is None:
                return status, body
            try:
                target = urllib.parse.urljoin(url, location)
            except ValueError:
                raise PretixHttpError(
                    f"{method} {url}: HTTP {status} redirect to {location!r}, which is not a URL"
                ) from None
            if origin(target) != self.origin:
                raise PretixHttpError(
                    f"{method} {url}: HTTP {status} redirect to {target} refused: another origin "
                    f"than the shop's, which the API token must never reach"
                )
            if status == 303 or (status in (301, 302) and method == "POST"):
                method, data, content_type = "GET", None, None  # as browsers and urllib do
            url = target
        raise PretixHttpError(f"{method} {url}: more than {MAX_REDIRECTS} redirects")

    def _exchange(
        self, method: str, url: str, data: bytes | None, content_type: str | None
    ) -> tuple[int, str | None, bytes]:
        """One request on a connection of its own, cut off at the deadline wherever it is (the
        connect, the head, the body: a watchdog shuts the socket down)."""
        parts = urllib.parse.urlsplit(url)
        _, host, port = self.origin
        if self._tls is not None:
            conn = http.client.HTTPSConnection(host, port, timeout=self.timeout, context=self._tls)
        else:
            conn = http.client.HTTPConnection(host, port, timeout=self.timeout)
        late = threading.Event()
        opened: list[socket.socket] = []  # the connection's socket (http.client forgets it once a response owns it)

        def cut_off():
            late.set()
            for sock in opened:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

        watchdog = threading.Timer(self.deadline, cut_off)
        watchdog.daemon = True
        watchdog.start()
        headers = {**self.headers, **({"Content-Type": content_type} if content_type else {})}
        try:
            conn.connect()
            opened.append(conn.sock)
            if late.is_set():
                cut_off()
            conn.request(
                method, (parts.path or "/") + (f"?{parts.query}" if parts.query else ""), body=data, headers=headers
            )
            response = conn.getresponse()
            body = self._read(response, method, url, late)
            return response.status, response.getheader("Location"), body
        except (OSError, http.client.HTTPException, ValueError) as exc:
            if late.is_set():
                raise PretixHttpError(f"{method} {url}: no complete answer within {self.deadline:g} s") from None
            raise PretixHttpError(f"{method} {url}: {exc}") from None
        finally:
            watchdog.cancel()
            conn.close()
            for sock in opened:
                sock.close()

    def _read(self, response, method: str, url: str, late: threading.Event) -> bytes:
        length = response.getheader("Content-Length")
        if length is not None and length.strip().isdigit() and int(length) > self.max_bytes:
            raise PretixHttpError(
                f"{method} {url}: an answer of {int(length)} bytes, over the {self.max_bytes} this client reads"
            )
        body = bytearray()
        while chunk := response.read1(CHUNK):
            body += chunk
            if len(body) > self.max_bytes:
                raise PretixHttpError(f"{method} {url}: an answer over the {self.max_bytes} bytes this client reads")
        if late.is_set():
            raise PretixHttpError(f"{method} {url}: no complete answer within {self.deadline:g} s")
        if response.length:  # read1() ends quietly where the server closed: what the head announced did not come
            raise PretixHttpError(
                f"{method} {url}: the answer ended after {len(body)} of its {len(body) + response.length} bytes"
            )
        return bytes(body)
