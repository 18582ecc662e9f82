"""Remote commands (§6): what the central side may ask of a gate, and the payload that carries it.

    COSE_Sign1 by a `command` key, payload {1: gate (tstr), 2: command (tstr), 3: nonce (uint),
                                            4: iat (uint, unix seconds)}

`encode_command()` signs one (the central side: `gated command`, gated/central/fleet.py);
`parse_command()` verifies one and `read()` judges its payload: a `Command`, or `CommandRejected`
with a code. The nonce (strictly increasing per gate) needs the store, so the uplink checks it;
everything else is here.
"""

from __future__ import annotations

from dataclasses import dataclass

import cbor2

from gated.core import cose
from gated.core.errors import Rejected, brief
from gated.core.signed import Keyring, SignedRejected, open_signed

GATE_COMMANDS = ("open", "lock", "unlock", "emergency_on", "emergency_off")  # §6: the turnstile's
COMMANDS = GATE_COMMANDS + ("clock_reset",)  # and the clock's (part 2: "Resetting a gate's clock trust")
# let people through without a ticket and are no safety measure: refused while the gate's clock cannot
# judge their age (emergency_on is for evacuation; lock, emergency_off and clock_reset are fail-secure
# or the remedy: those are judged by the best estimate of the time)
NEED_TRUSTED_TIME = ("open", "unlock")
# the remedy for a clock that is wrong cannot be judged by that clock (a gate whose trusted time a fast
# beacon pushed a year ahead would find every reset too_old): its age is not checked, the nonce stops replays
AGELESS = ("clock_reset",)


class CommandRejected(Rejected):
    """A command the gate ignores; `code`: malformed, unknown_key, bad_signature, wrong_gate,
    unknown_command, too_old, clock_uncertain, replay."""


@dataclass(frozen=True)
class Command:
    gate: str
    name: str
    nonce: int
    iat: int
    signer: str


def payload(*, gate: str, command: str, nonce: int, iat: int) -> dict:
    """The CBOR map a command key signs."""
    return {1: gate, 2: command, 3: nonce, 4: iat}


def encode_command(key, *, gate: str, command: str, nonce: int, iat: int) -> bytes:
    """A command message signed with `key` (a `command` key's private half). A unix-milliseconds
    nonce keeps a stateless sender strictly increasing; `iat` is the sender's now (unix seconds)."""
    return cose.sign(cbor2.dumps(payload(gate=gate, command=command, nonce=nonce, iat=iat)), key)


def parse_command(
    blob: bytes,
    keyring: Keyring,
    gate: str,
    *,
    now: float | None = None,
    max_age_s: float | None = None,
    time_trusted: bool = True,
) -> Command:
    """Verify a command message (signature by a `command` key) and read it; raises CommandRejected.
    The nonce is checked against the store by the caller."""
    try:
        key, body = open_signed(blob, keyring, "command")
    except SignedRejected as exc:
        raise CommandRejected(exc.code, exc.detail) from None
    return read(body, gate=gate, signer=key.name, now=now, max_age_s=max_age_s, time_trusted=time_trusted)


def read(
    body, *, gate: str, signer: str, now: float | None = None, max_age_s: float | None = None, time_trusted: bool = True
) -> Command:
    """The command in a verified payload, for gate `gate`. Given `now` and `max_age_s`, a command
    whose iat is more than `max_age_s` before `now` is `too_old` (an `open` the broker queued while
    the gate was away must not run when it reconnects). `now` is the gate's best estimate; when it
    is not trusted (`time_trusted=False`: the clock policy denies time checks), the age of a
    command cannot be judged and those in NEED_TRUSTED_TIME are `clock_uncertain`. The age of those
    in AGELESS (clock_reset) is not checked."""
    if (
        not isinstance(body, dict)
        or type(body.get(1)) is not str
        or type(body.get(2)) is not str
        or not cose.is_uint(body.get(3))
        or not cose.is_uint(body.get(4))
    ):
        raise CommandRejected(
            "malformed", "payload must be {1: gate, 2: command, 3: nonce uint, 4: iat uint} (uints below 2^63)"
        )
    if body[1] != gate:
        raise CommandRejected("wrong_gate", f"command for gate {brief(body[1])}")
    if body[2] not in COMMANDS:
        raise CommandRejected("unknown_command", f"{brief(body[2])} is not one of {', '.join(COMMANDS)}")
    if now is not None and max_age_s is not None and body[2] not in AGELESS and now - body[4] > max_age_s:
        raise CommandRejected("too_old", f"issued {int(now - body[4])} s ago, over the {max_age_s:g} s allowed")
    if now is not None and max_age_s is not None and not time_trusted and body[2] in NEED_TRUSTED_TIME:
        raise CommandRejected(
            "clock_uncertain", f"the gate clock is uncertain: the age of {brief(body[2])} cannot be judged"
        )
    return Command(gate=body[1], name=body[2], nonce=body[3], iat=body[4], signer=signer)
