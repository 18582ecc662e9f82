"""Base45, RFC 9285: the encoding that keeps a ticket in the QR alphanumeric set.

Two bytes become three characters (c + 45*d + 45*45*e, least significant first),
a final single byte becomes two. Decoding rejects every string that a strict
encoder could not have produced (bad characters, a dangling single character,
a group whose value overflows), so a ticket has exactly one text form.
"""

from __future__ import annotations

from gated.core.errors import GatedError

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"
_VALUE = {c: i for i, c in enumerate(ALPHABET)}


class Base45Error(GatedError, ValueError):
    """The text is not valid base45 (RFC 9285)."""


def encode(data: bytes) -> str:
    out = []
    for i in range(0, len(data) - 1, 2):
        n = data[i] * 256 + data[i + 1]
        e, rest = divmod(n, 45 * 45)
        d, c = divmod(rest, 45)
        out.append(ALPHABET[c] + ALPHABET[d] + ALPHABET[e])
    if len(data) % 2:
        d, c = divmod(data[-1], 45)
        out.append(ALPHABET[c] + ALPHABET[d])
    return "".join(out)


def decode(text: str) -> bytes:
    if len(text) % 3 == 1:
        raise Base45Error(f"length {len(text)} leaves a single character over")
    try:
        values = [_VALUE[c] for c in text]
    except KeyError as exc:
        raise Base45Error(f"character {exc.args[0]!r} is not in the base45 alphabet") from None
    out = bytearray()
    full = len(values) - len(values) % 3
    for i in range(0, full, 3):
        n = values[i] + values[i + 1] * 45 + values[i + 2] * 2025
        if n > 0xFFFF:
            raise Base45Error(f"group at {i} encodes {n}, above 65535")
        out += n.to_bytes(2, "big")
    if full < len(values):
        n = values[full] + values[full + 1] * 45
        if n > 0xFF:
            raise Base45Error(f"final group encodes {n}, above 255")
        out.append(n)
    return bytes(out)
