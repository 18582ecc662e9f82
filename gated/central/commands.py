"""The central side of remote commands (§6): a signed command message for one gate."""

from __future__ import annotations

import time

import cbor2

from gated.core import command as commands
from gated.core import cose


def encode_command(key, *, gate: str, command: str, nonce: int, iat: int | None = None) -> bytes:
    """A command message signed with `key` (a `command` key's private half). A unix-milliseconds
    nonce keeps a stateless sender strictly increasing; `iat` defaults to now."""
    body = commands.payload(gate=gate, command=command, nonce=nonce, iat=int(time.time()) if iat is None else iat)
    return cose.sign(cbor2.dumps(body), key)
