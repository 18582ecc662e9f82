"""The crowd and its ground truth: who arrives when, at which gate, showing what, and what the
gate must answer. Pure apart from key generation: a scenario and a seed in, attempts out.

Every ticket is issued here, so every expected answer is known before the first frame:

    valid           admit/ok (a share of them do not pass: the admission times out and they retry: ok)
    forged          signed by a key no gate trusts                     deny/unknown_key
    tampered        a claim byte changed after signing                 deny/bad_signature
                    (every other one: a signature byte cut off         deny/malformed)
    revoked_before  on the snapshot published before the doors open   deny/revoked
    revoked_during  on a delta published at fraud.revocations_at_s,
                    shown only after it went out                       deny/revoked
    expired         exp two days ago (far beyond the allowed skew)     deny/expired
    wrong_event     signed for another event                           deny/wrong_event
    used_twice      a copy of an admitted ticket, same gate, later     deny/already_used
    two_gates       a copy of an admitted ticket at another gate (of the same zone when
                    tickets are zoned), once the admission has crossed the broker
                                                                       deny/already_used
    screenshot      a dynamic (GT2) ticket's code captured ten minutes before the doors
                    opened and replayed                                deny/stale_code
    static_copy     a dynamic ticket shown in its static GT1 form      deny/static_copy

With `[tickets] format = "pretix_sig1"` every ticket is a pretix secret (gated/core/pretix_secret.py:
the product is the ticket type's position in `types`, the validity its nbf/exp, one entry); a
forged one is then deny/bad_signature (a pretix secret names no key), and a ticket of another
event is signed with that event's own key (`other_event_key`, which the venue trusts for it).

An attempt may depend on another (a copy comes after the original passed; a retry after the
timeout); the runner starts it no earlier than `after_gap_s` real seconds after that one ended,
and never inside a broker outage when it needs the broker (revocations, cross-gate admissions).
"""

from __future__ import annotations

import base64
import bisect
import random
import string
from dataclasses import dataclass, field, replace

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gated.core import pretix_secret
from gated.core import base45, ticket
from gated.central.issuer import IssuedTicket, issue, new_claims
from sim.scenario import Scenario

DAY = 86400


@dataclass
class Attempt:
    id: int
    visitor: int
    gate: str
    at_s: float  # scheduled, simulated seconds from the start
    kind: str
    text: str | None  # None: dynamic ticket, rendered at show time
    cti: str | None
    expect_admit: bool
    expect_reason: str
    passes: bool = True  # walks through after a green light
    after: int | None = None  # attempt id that must have ended first
    after_gap_s: float = 0.0  # real seconds after that
    needs_broker: bool = False  # its answer depends on something crossing the broker
    needs_revocation: bool = False  # only after the "during" revocation went out
    dynamic: object = None  # (cose bytes, cti bytes, device key) for a GT2 ticket
    # what happened (filled by the runner)
    queued_at: float | None = None  # real monotonic seconds since start
    shown_at: float | None = None
    decided_at: float | None = None
    ended_at: float | None = None
    observed_admit: bool | None = None
    observed_reason: str | None = None
    event_id: str | None = None
    latency_us: int | None = None
    passage: str | None = None  # passed / timeout as the gate reported it
    note: str = ""

    @property
    def matched(self) -> bool:
        return self.observed_admit == self.expect_admit and self.observed_reason == self.expect_reason


@dataclass
class Crowd:
    attempts: list[Attempt]
    visitors: int
    revoked_before: list[bytes] = field(default_factory=list)
    revoked_during: list[bytes] = field(default_factory=list)
    tickets: dict = field(default_factory=dict)  # cti hex -> entries allowed


def arrival_times(scenario: Scenario, n: int, rng: random.Random) -> list[float]:
    """n arrival times drawn from the piecewise linear rate profile (inverse CDF on a fine grid)."""
    points = list(scenario.profile)
    if points[-1][0] < scenario.duration_s:
        points.append((scenario.duration_s, points[-1][1]))
    grid = [scenario.duration_s * i / 1000 for i in range(1001)]

    def rate(t):
        for (t0, r0), (t1, r1) in zip(points, points[1:]):
            if t0 <= t <= t1:
                return r0 + (r1 - r0) * (t - t0) / (t1 - t0)
        return 0.0

    cdf, total = [0.0], 0.0
    for a, b in zip(grid, grid[1:]):
        total += (rate(a) + rate(b)) / 2 * (b - a)
        cdf.append(total)
    times = []
    for _ in range(n):
        u = rng.random() * total
        i = max(1, bisect.bisect_left(cdf, u))
        lo, hi = cdf[i - 1], cdf[i]
        frac = (u - lo) / (hi - lo) if hi > lo else 0.0
        times.append(grid[i - 1] + frac * (grid[i] - grid[i - 1]))
    return sorted(times)


def tamper_claim(text: str) -> str:
    """Change one byte inside the event id (a text claim) of a signed ticket: still well-formed
    CBOR, so the only thing wrong is the signature."""
    raw = bytearray(base45.decode(text[len(ticket.STATIC_PREFIX):]))
    claims = ticket.parse_claims(_payload_of(bytes(raw)))
    target = claims.aud.encode()
    at = bytes(raw).find(target)
    raw[at + len(target) - 1] ^= 0x01  # '6' -> '7', 'A' -> '@': still one ASCII byte
    return ticket.STATIC_PREFIX + base45.encode(bytes(raw))


def cut_signature(text: str) -> str:
    """Drop the last signature byte: a 63-byte signature is malformed before anything is verified."""
    import cbor2

    raw = base45.decode(text[len(ticket.STATIC_PREFIX):])
    item = cbor2.loads(raw)
    value = item.value if isinstance(item, cbor2.CBORTag) else item
    value[3] = value[3][:-1]
    return ticket.STATIC_PREFIX + base45.encode(cbor2.dumps(value))


def issue_pretix(claims: ticket.Claims, key: Ed25519PrivateKey, *, item: int, seed: str) -> IssuedTicket:
    """A pretix_sig1 secret as pretix would sell it, its claims as the gate will read them."""
    text = pretix_secret.encode_secret(pretix_secret.Fields(seed=seed, item=item, valid_from=claims.nbf,
                                                            valid_until=claims.exp), key)
    return IssuedTicket(replace(claims, cti=pretix_secret.ticket_id(text), ent=1, zon=None), text, b"")


def tamper_pretix(text: str) -> str:
    """Change one character of the seed (still valid UTF-8, still well-formed): only the signature is wrong."""
    raw = bytearray(base64.b64decode(text[::-1]))
    raw[8] ^= 0x01  # header (5 bytes), the seed's tag and length, then its characters
    return base64.b64encode(bytes(raw)).decode()[::-1]


def cut_pretix_signature(text: str) -> str:
    """Drop the last signature byte: the lengths no longer add up, malformed before any key is tried."""
    raw = base64.b64decode(text[::-1])[:-1]
    return base64.b64encode(raw).decode()[::-1]


def _payload_of(cose_bytes: bytes) -> bytes:
    import cbor2

    item = cbor2.loads(cose_bytes)
    value = item.value if isinstance(item, cbor2.CBORTag) else item
    return value[2]


def build(scenario: Scenario, issuer_key: Ed25519PrivateKey, start: int, *, speed: float,
          other_event_key: Ed25519PrivateKey | None = None) -> Crowd:
    """Issue every ticket and plan every attempt. `start` is the unix time the doors open."""
    rng = random.Random(scenario.seed)
    pretix = scenario.ticket_format == "pretix_sig1"
    if pretix and other_event_key is None:
        raise ValueError("pretix_sig1 tickets of another event need that event's key (other_event_key)")
    gates = scenario.gate_ids
    fraud = dict(scenario.fraud)
    n_copies = fraud["used_twice"] + fraud["two_gates"]
    n_plain_fraud = sum(fraud.values()) - n_copies
    n_valid = scenario.visitors - sum(fraud.values())
    times = arrival_times(scenario, scenario.visitors, rng)
    rng.shuffle(times)
    types, weights = list(scenario.ticket_types), list(scenario.ticket_types.values())
    forger = Ed25519PrivateKey.generate()
    crowd = Crowd(attempts=[], visitors=scenario.visitors)
    next_id = iter(range(1, 10**9))

    def claims_for(gate: str, **over):
        zone = scenario.zone_of(gate) if scenario.zoned else None
        fields = dict(event=scenario.event, nbf=start - 3600, exp=start + 6 * 3600,
                      typ=rng.choices(types, weights)[0], ent=scenario.entries, zones=[zone] if zone else None,
                      iat=start - 86400)
        fields.update(over)
        return new_claims(**fields)

    def sign(claims, key, *, dynamic: bool = False) -> IssuedTicket:
        if not pretix:
            return issue(claims, key, dynamic=dynamic)
        seed = "".join(rng.choices(string.ascii_letters + string.digits, k=9))
        return issue_pretix(claims, key, item=types.index(claims.typ) + 1, seed=seed)

    def add(visitor, gate, at, kind, text, cti, admit, reason, **kw) -> Attempt:
        a = Attempt(next(next_id), visitor, gate, at, kind, text, cti, admit, reason, **kw)
        crowd.attempts.append(a)
        return a

    visitor = 0
    originals: list[Attempt] = []
    # honest visitors
    for _ in range(n_valid):
        gate = rng.choice(gates)
        at = times[visitor]
        dynamic = rng.random() < scenario.dynamic_share
        issued = sign(claims_for(gate), issuer_key, dynamic=dynamic)
        cti = issued.claims.cti.hex()
        crowd.tickets[cti] = issued.claims.ent
        passes = rng.random() >= scenario.no_pass_share
        first = add(visitor, gate, at, "valid", None if dynamic else issued.text, cti, True, "ok", passes=passes,
                    dynamic=(issued.cose, issued.claims.cti, issued.device_key) if dynamic else None)
        if not passes:
            # the light went green, nobody went through: after the timeout the ticket works again
            add(visitor, gate, at, "retry", first.text, cti, True, "ok", after=first.id, after_gap_s=1.0,
                dynamic=first.dynamic)
        elif not dynamic and scenario.entries == 1:
            originals.append(first)
        visitor += 1
    # copies: they need an original that passed, at one entry per ticket
    rng.shuffle(originals)
    if len(originals) < n_copies:
        raise ValueError(f"{n_copies} copied tickets need as many honest one-entry visitors; only {len(originals)}")
    for kind in ("used_twice", "two_gates"):
        for _ in range(fraud[kind]):
            original = originals.pop()
            reason = "already_used"
            if kind == "used_twice":
                gate = original.gate
            else:
                others = [g for g in gates if g != original.gate]
                if scenario.zoned:  # a zoned ticket at another zone's gate is wrong_zone before anything else
                    same_zone = [g for g in others if scenario.zone_of(g) == scenario.zone_of(original.gate)]
                    others, reason = (same_zone, reason) if same_zone else (others, "wrong_zone")
                gate = rng.choice(others)
            add(visitor, gate, max(times[visitor], original.at_s), kind, original.text, original.cti, False,
                reason, after=original.id, after_gap_s=2.0 if kind == "used_twice" else 3.0,
                needs_broker=kind == "two_gates")
            visitor += 1
    # the rest of the cheats
    plain = [k for k in ("forged", "tampered", "revoked_before", "revoked_during", "expired", "wrong_event",
                         "screenshot", "static_copy")
             for _ in range(fraud[k])]
    assert len(plain) == n_plain_fraud
    tampered_seen = 0
    for kind in plain:
        gate = rng.choice(gates)
        at = times[visitor]
        if kind == "forged":
            issued = sign(claims_for(gate), forger)
            add(visitor, gate, at, kind, issued.text, issued.claims.cti.hex(), False,
                "bad_signature" if pretix else "unknown_key")
        elif kind == "tampered":
            issued = sign(claims_for(gate), issuer_key)
            if tampered_seen % 2 == 0 and pretix:
                text = tamper_pretix(issued.text)
                add(visitor, gate, at, kind, text, pretix_secret.ticket_id(text).hex(), False, "bad_signature")
            elif tampered_seen % 2 == 0:
                add(visitor, gate, at, kind, tamper_claim(issued.text), issued.claims.cti.hex(), False, "bad_signature")
            else:
                # the payload no longer parses as a signed structure: the gate cannot even read the ticket id
                text = cut_pretix_signature(issued.text) if pretix else cut_signature(issued.text)
                add(visitor, gate, at, kind, text, None, False, "malformed")
            tampered_seen += 1
        elif kind in ("revoked_before", "revoked_during"):
            issued = sign(claims_for(gate, ent=1), issuer_key)
            (crowd.revoked_before if kind == "revoked_before" else crowd.revoked_during).append(issued.claims.cti)
            crowd.tickets[issued.claims.cti.hex()] = 1
            if kind == "revoked_during":
                at = max(at, scenario.revocations_at_s)
            add(visitor, gate, at, kind, issued.text, issued.claims.cti.hex(), False, "revoked",
                needs_broker=kind == "revoked_during", needs_revocation=kind == "revoked_during")
        elif kind == "expired":
            issued = sign(claims_for(gate, nbf=start - 3 * DAY, exp=start - 2 * DAY, iat=start - 4 * DAY), issuer_key)
            add(visitor, gate, at, kind, issued.text, issued.claims.cti.hex(), False, "expired")
        elif kind == "wrong_event":
            issued = sign(claims_for(gate, event=scenario.event + "-OTHER"), other_event_key if pretix else issuer_key)
            add(visitor, gate, at, kind, issued.text, issued.claims.cti.hex(), False, "wrong_event")
        elif kind == "screenshot":
            issued = issue(claims_for(gate), issuer_key, dynamic=True)
            old_step = (start - 600) // ticket.STEP_SECONDS  # twenty steps old whenever it is shown
            text = ticket.encode_dynamic(issued.cose, issued.claims.cti, old_step, issued.device_key)
            add(visitor, gate, at, kind, text, issued.claims.cti.hex(), False, "stale_code")
        elif kind == "static_copy":
            issued = issue(claims_for(gate), issuer_key, dynamic=True)
            add(visitor, gate, at, kind, issued.text, issued.claims.cti.hex(), False, "static_copy")
        visitor += 1
    crowd.attempts.sort(key=lambda a: (a.at_s, a.id))
    return crowd


def render(attempt: Attempt, gate_now: float) -> str:
    """The text the visitor's phone or paper shows at this moment (GT2 is rendered afresh)."""
    if attempt.dynamic is None:
        return attempt.text
    cose_bytes, cti, device_key = attempt.dynamic
    return ticket.encode_dynamic(cose_bytes, cti, int(gate_now // ticket.STEP_SECONDS), device_key)
