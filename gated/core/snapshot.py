"""The admissions snapshot (docs/protocol.md, "Replacing a gate"): what a replaced gate recovers.

    COSE_Sign1 (PROTOCOL §2's structure) by a `revocation` key, payload CBOR map:
      1 site tstr    2 event tstr (ticket aud)    3 version uint (unix ms the ledger took it; per event,
      a newer snapshot has a higher one)    4 admissions [* admission]    6 iat uint (unix seconds)
      7 part uint    8 parts uint (at least 1; part < parts)
    admission = [gate tstr, seq uint, cti bstr16, step uint / null, ts_ms uint, flags uint (1: an exit
                 scan, dir out; 2: a re-entry, no entry spent), zone tstr / null]

The admissions are every admission of the event the ledger holds that no `passage` `timeout` of
its gate rolled back, each with the event it came in. They are additive facts: a gate may keep each
verified part as it comes (they key like peers' admissions, by gate and seq, so nothing is counted
twice) and needs all the parts of one version for the snapshot to be complete. Topic
`gated/v1/<site>/admissions/<event>/<part>`, QoS 1, retained. One message is at most 1 MiB.

Pure: bytes and values in, values out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cbor2
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gated.core import cose
from gated.core.errors import Rejected, brief

MAX_MESSAGE = 1024 * 1024
SITE, EVENT, VERSION, ADMISSIONS, IAT, PART, PARTS = 1, 2, 3, 4, 6, 7, 8
PER_PART = 12_000  # admissions per message: about 60 bytes each, well under MAX_MESSAGE
OUT, REENTRY = 1, 2


class SnapshotRejected(Rejected):
    """`code`: malformed, wrong_site, too_large, and the signed-message codes (unknown_key...)."""


@dataclass(frozen=True)
class Admission:
    gate: str
    seq: int
    cti: bytes
    step: int | None
    ts_ms: int
    dir: str = "in"
    reentry: bool = False
    zone: str | None = None

    def row(self) -> tuple:
        """The store's peer_admissions columns."""
        return (self.gate, self.seq, self.cti, self.step, self.ts_ms, self.dir, int(self.reentry), self.zone)


@dataclass(frozen=True)
class Snapshot:
    site: str
    event: str
    version: int
    admissions: tuple[Admission, ...]
    iat: int
    part: int = 0
    parts: int = 1


def encode(key: Ed25519PrivateKey, *, site: str, event: str, version: int, admissions, iat: int) -> list[bytes]:
    """Sign a snapshot in as many parts as it takes (at least one, empty when nothing was admitted)."""
    admissions = sorted(admissions, key=lambda a: (a.gate, a.seq))
    parts = max(1, math.ceil(len(admissions) / PER_PART))
    messages = []
    for index in range(parts):
        chunk = admissions[index * PER_PART : (index + 1) * PER_PART]
        payload = {
            SITE: site,
            EVENT: event,
            VERSION: version,
            IAT: iat,
            PART: index,
            PARTS: parts,
            ADMISSIONS: [
                [
                    a.gate,
                    a.seq,
                    a.cti,
                    a.step,
                    a.ts_ms,
                    (OUT if a.dir == "out" else 0) | (REENTRY if a.reentry else 0),
                    a.zone,
                ]
                for a in chunk
            ],
        }
        messages.append(cose.sign(cbor2.dumps(payload), key))
    return messages


def read(body, *, site: str) -> Snapshot:
    """A verified payload (a CBOR map) as a Snapshot; SnapshotRejected saying what is wrong."""
    if not isinstance(body, dict):
        raise SnapshotRejected("malformed", "payload must be a CBOR map")
    for key, name in ((SITE, "site"), (EVENT, "event")):
        if type(body.get(key)) is not str or not body[key] or "\0" in body[key]:
            raise SnapshotRejected("malformed", f"{name} ({key}) must be a non-empty text string")
    for key, name in ((VERSION, "version"), (IAT, "iat"), (PART, "part"), (PARTS, "parts")):
        if not cose.is_uint(body.get(key)):
            raise SnapshotRejected("malformed", f"{name} ({key}) must be an unsigned integer")
    if body[SITE] != site:
        raise SnapshotRejected("wrong_site", f"snapshot for site {brief(body[SITE])}, gate at {site!r}")
    if not body[PART] < body[PARTS]:
        raise SnapshotRejected("malformed", f"part {body[PART]} of {body[PARTS]}")
    raw = body.get(ADMISSIONS)
    if type(raw) is not list:
        raise SnapshotRejected("malformed", f"admissions ({ADMISSIONS}) must be an array")
    return Snapshot(
        site=body[SITE],
        event=body[EVENT],
        version=body[VERSION],
        iat=body[IAT],
        part=body[PART],
        parts=body[PARTS],
        admissions=tuple(_admission(i, a) for i, a in enumerate(raw)),
    )


def _admission(i: int, a) -> Admission:
    if not (type(a) is list and len(a) == 7):
        raise SnapshotRejected("malformed", f"admission {i}: expected [gate, seq, cti, step, ts_ms, flags, zone]")
    gate, seq, cti, step, ts_ms, flags, zone = a
    ok = (
        type(gate) is str
        and gate
        and "\0" not in gate
        and cose.is_uint(seq)
        and seq >= 1
        and type(cti) is bytes
        and len(cti) == 16
        and (step is None or cose.is_uint(step))
        and cose.is_uint(ts_ms)
        and cose.is_uint(flags)
        and flags <= OUT | REENTRY
        and (zone is None or (type(zone) is str and "\0" not in zone))
    )
    if not ok:
        raise SnapshotRejected("malformed", f"admission {i}: a field of the wrong type or range")
    return Admission(gate, seq, cti, step, ts_ms, "out" if flags & OUT else "in", bool(flags & REENTRY), zone)
