"""Where the broker is and how to log in: one URL plus optional TLS and credential settings.

    mqtt://[user[:password]@]host[:port]        plain TCP, default port 1883
    mqtts://[user[:password]@]host[:port]       TLS, default port 8883
    ...?ca=FILE&cert=FILE&key=FILE&client_id=ID&keepalive=S&password_file=FILE

`ca` is the CA bundle that signed the broker's certificate (the system store when absent),
`cert`/`key` the client certificate the broker maps to a user name (`use_identity_as_username`),
`password_file` keeps a password out of the process list. Everything else has defaults that suit
a gate: a persistent MQTT v5 session (so QoS 1 messages published while the gate is away are kept
for it), reconnect backoff from 1 s to 60 s with random jitter.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from gated.core.errors import GatedError, undecodable

DAY = 24 * 3600


class BrokerUrlError(GatedError, ValueError):
    """A broker URL or TLS setting that cannot work; the message says which part to fix."""


@dataclass(frozen=True)
class UplinkSettings:
    host: str = "127.0.0.1"
    port: int = 1883
    tls: bool = False
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    username: str | None = None
    password: str | None = None
    client_id: str | None = None  # default: gated-<site>-<gate> (stable, so the session survives restarts)
    keepalive_s: int = 30
    session_expiry_s: int = 7 * DAY  # how long the broker keeps queued QoS 1 messages for an absent client
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 60.0
    max_inflight: int = 100  # outbox events handed to paho and not yet acknowledged
    # end-to-end delivery, always (docs/protocol.md, "Committed events"): each event is kept until
    # the ledger says it holds it (not just the broker); re-send what it lacks when it confirms
    # nothing for resend_after_s (doubling, up to an hour); drop rows the broker acknowledged over
    # outbox_retention_s ago that no ledger confirmed. keep_until_committed: the old switch, still
    # read from a gated.toml that has it (None: absent), and no longer changing anything
    keep_until_committed: bool | None = None
    resend_after_s: float = 30.0
    outbox_retention_s: float = 7 * DAY

    def __post_init__(self):
        if bool(self.cert_file) != bool(self.key_file):
            raise BrokerUrlError("a client certificate needs both cert and key")
        if (self.cert_file or self.ca_file) and not self.tls:
            raise BrokerUrlError("ca/cert/key given for a plain mqtt:// URL; use mqtts://")
        if not 0 < self.reconnect_min_s <= self.reconnect_max_s:
            raise BrokerUrlError("reconnect delays must satisfy 0 < min <= max")
        if self.max_inflight < 1:
            raise BrokerUrlError("max_inflight must be at least 1")
        if not (self.resend_after_s > 0 and self.outbox_retention_s > 0):
            raise BrokerUrlError("resend_after_s and outbox_retention_s must be above 0")

    @property
    def url(self) -> str:
        """The URL without secrets, for logs."""
        user = f"{self.username}@" if self.username else ""
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{self.host}:{self.port}"


def parse_broker_url(url: str, **overrides) -> UplinkSettings:
    """UplinkSettings from a URL; keyword overrides (ca_file=..., password=...) win over the URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts"):
        raise BrokerUrlError(f"{url!r}: the scheme must be mqtt:// or mqtts://")
    if not parts.hostname:
        raise BrokerUrlError(f"{url!r}: no host")
    tls = parts.scheme == "mqtts"
    try:
        port = parts.port or (8883 if tls else 1883)
    except ValueError:
        raise BrokerUrlError(f"{url!r}: the port is not a number") from None
    query = {k: v[-1] for k, v in parse_qs(parts.query, strict_parsing=False).items()}
    unknown = set(query) - {"ca", "cert", "key", "client_id", "keepalive", "password_file"}
    if unknown:
        raise BrokerUrlError(f"{url!r}: unknown option(s) {', '.join(sorted(unknown))}")
    password = unquote(parts.password) if parts.password else None
    if "password_file" in query:
        password = _read_password(query["password_file"])
    fields = dict(
        host=parts.hostname,
        port=port,
        tls=tls,
        ca_file=query.get("ca"),
        cert_file=query.get("cert"),
        key_file=query.get("key"),
        username=unquote(parts.username) if parts.username else None,
        password=password,
        client_id=query.get("client_id"),
    )
    if "keepalive" in query:
        try:
            fields["keepalive_s"] = int(query["keepalive"])
        except ValueError:
            raise BrokerUrlError(f"{url!r}: keepalive must be whole seconds") from None
    fields.update({k: v for k, v in overrides.items() if v is not None})
    settings = UplinkSettings(**fields)
    for name in ("ca_file", "cert_file", "key_file"):
        path = getattr(settings, name)
        if path and not Path(path).is_file():
            raise BrokerUrlError(f"{name.removesuffix('_file')} file {path} does not exist")
    return settings


def _read_password(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError as exc:
        raise BrokerUrlError(f"password file {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise BrokerUrlError(f"password file {path}: {undecodable(exc)}") from None


# --- command-line helpers (shared by `gated ledger`, `gated publish-revocations`, ...) ----------


def add_broker_arguments(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    """The same options on every command that talks to a broker: --ca, --cert, --key are always the
    TLS files (a signing key is --signing-key: gated/cli/options.py)."""
    parser.add_argument(
        "--broker",
        required=required,
        metavar="URL",
        help="mqtt://host[:port] or mqtts://host[:port] (user:password@ and ?ca=&cert=&key= allowed)",
    )
    parser.add_argument("--ca", help="CA certificate(s) that signed the broker's certificate (PEM)")
    parser.add_argument("--cert", help="client certificate (PEM); the broker takes its CN as the user name")
    parser.add_argument("--key", dest="cert_key", help="private key of the client certificate (PEM)")
    parser.add_argument("--username")
    parser.add_argument("--password-file", help="file holding the broker password")
    parser.add_argument("--client-id", help="MQTT client id (default: derived from the command and site)")


def settings_from_args(args, *, client_id: str | None = None) -> UplinkSettings:
    """Settings from `add_broker_arguments` options; BrokerUrlError for anything wrong."""
    settings = parse_broker_url(
        args.broker,
        ca_file=args.ca,
        cert_file=args.cert,
        key_file=args.cert_key,
        username=args.username,
        password=_read_password(args.password_file) if args.password_file else None,
    )
    if settings.client_id is None:
        settings = replace(settings, client_id=args.client_id or client_id)
    return settings
