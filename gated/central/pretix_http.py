"""HTTP to a pretix server, with the rules an API token needs (docs/pretix.md, "The connection").

    https only       a shop URL must be https:// (certificates checked by the standard library's
                     default context); plain http:// only when the caller says so (`--insecure-http`:
                     a test shop on 127.0.0.1)
    one origin       the token goes to the origin of the shop URL and nowhere else: a redirect to
                     another scheme, host or port is refused before anything is sent there (the
                     standard library would follow it and keep the Authorization header)
    bounded answers  a body over `max_bytes` is refused (by its Content-Length, or once read past
                     the cap); each socket operation has `timeout`, and the whole exchange, a server
                     that drips its answer a byte at a time included, has `deadline`

Every failure is a PretixHttpError naming the request; the caller turns it into its own error.
This module knows nothing of pretix's resources: pretix.py asks it for (status, body bytes).
"""

from __future__ import annotations

import time
import urllib.error
import urllib.parse
import urllib.request

from gated.core.errors import GatedError

MAX_BYTES = 16 * 1024 * 1024  # a page of pretix's API is a few hundred kB at most
TIMEOUT = 20.0  # seconds per connect or read
DEADLINE = 120.0  # seconds for one request and its whole answer
CHUNK = 64 * 1024
DEFAULT_PORTS = {"http": 80, "https": 443}


class PretixHttpError(GatedError, RuntimeError):
    """The request could not be made safely, or its answer not be read within the limits."""


def origin(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of a URL, the port made explicit: what a redirect must keep."""
    parts = urllib.parse.urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = -1  # not a port: never the same origin as a URL with one
    return parts.scheme.lower(), (parts.hostname or "").lower(), port or DEFAULT_PORTS.get(parts.scheme.lower(), -1)


def check_url(url: str, *, insecure_http: bool = False) -> str:
    """The shop URL if it may carry a token: https://host[:port][/path], or http:// when allowed."""
    parts = urllib.parse.urlsplit(url)
    scheme, host, port = origin(url)
    if scheme not in ("http", "https") or not host or port == -1 or parts.query or parts.fragment:
        raise PretixHttpError(f"pretix URL {url!r} must be https://host[:port][/path]")
    if scheme == "http" and not insecure_http:
        raise PretixHttpError(f"pretix URL {url!r} is plain http: the API token and the issuer keys would cross "
                              f"the network unprotected; use https:// (--insecure-http only for a test shop)")
    return url


class _SameOrigin(urllib.request.HTTPRedirectHandler):
    """Follows a redirect only within the origin it was asked for."""

    def __init__(self, allowed: tuple[str, str, int]):
        self.allowed = allowed

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        target = urllib.parse.urljoin(req.full_url, newurl)
        if origin(target) != self.allowed:
            fp.close()
            raise PretixHttpError(f"{req.get_method()} {req.full_url}: HTTP {code} redirect to {target} refused: "
                                  f"another origin than the shop's, which the API token must never reach")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


class Http:
    """Requests to one origin (that of `base_url`), with `headers` (the Authorization) on each."""

    def __init__(self, base_url: str, headers: dict[str, str], *, insecure_http: bool = False,
                 timeout: float = TIMEOUT, deadline: float = DEADLINE, max_bytes: int = MAX_BYTES):
        check_url(base_url, insecure_http=insecure_http)
        self.origin = origin(base_url)
        self.headers, self.timeout, self.deadline, self.max_bytes = dict(headers), timeout, deadline, max_bytes
        # no HTTPS to HTTP downgrade can pass _SameOrigin: the scheme is part of the origin
        self._opener = urllib.request.build_opener(_SameOrigin(self.origin))

    def request(self, method: str, url: str, data: bytes | None = None,
                content_type: str | None = None) -> tuple[int, bytes]:
        """(HTTP status, body) of one request; an HTTP error status is an answer, not an exception."""
        if origin(url) != self.origin:
            raise PretixHttpError(f"{method} {url}: not the shop's origin; the API token is not sent there")
        headers = {**self.headers, **({"Content-Type": content_type} if content_type else {})}
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        started = time.monotonic()
        try:
            try:
                response = self._opener.open(request, timeout=self.timeout)
            except urllib.error.HTTPError as exc:
                response = exc  # 4xx/5xx: its body says why
            with response:
                return response.status if hasattr(response, "status") else response.code, \
                    self._read(response, method, url, started)
        except PretixHttpError:
            raise
        except (urllib.error.URLError, OSError, ValueError) as exc:  # ValueError: http.client's bad status lines
            raise PretixHttpError(f"{method} {url}: {getattr(exc, 'reason', None) or exc}") from None

    def _read(self, response, method: str, url: str, started: float) -> bytes:
        length = response.headers.get("Content-Length")
        if length is not None and length.strip().isdigit() and int(length) > self.max_bytes:
            raise PretixHttpError(f"{method} {url}: an answer of {int(length)} bytes, over the "
                                  f"{self.max_bytes} this client reads")
        body = bytearray()
        while True:
            if time.monotonic() - started > self.deadline:
                raise PretixHttpError(f"{method} {url}: the answer took over {self.deadline:g} s")
            chunk = response.read1(CHUNK) if hasattr(response, "read1") else response.read(CHUNK)
            if not chunk:
                return bytes(body)
            body += chunk
            if len(body) > self.max_bytes:
                raise PretixHttpError(f"{method} {url}: an answer over the {self.max_bytes} bytes this client reads")
