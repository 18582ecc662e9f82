"""Signed messages as the central side sends them now, for tests that do not care about the time."""

from __future__ import annotations

import time

from gated.core.command import encode_command as encode_command_at


def encode_command(key, *, gate: str, command: str, nonce: int, iat: int | None = None) -> bytes:
    """gated.core.command.encode_command with `iat` defaulting to now, as `gated command` sends it."""
    return encode_command_at(key, gate=gate, command=command, nonce=nonce, iat=int(time.time()) if iat is None else iat)
