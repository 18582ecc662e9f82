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
With exits (scenario [exits], gates.exits / free_exits):
    exit            leaves through a scan-out exit after a dwell time       admit/ok (dir out)
    free_exit       leaves through a free exit (no ticket): a counted passage   admit/ok
    reentry         comes back in after a scan-out exit                     admit/ok with gates.reentry,
                                                                            else deny/already_used
    return_unrecorded  comes back after a free exit: no gate knows it left  deny/already_used
    capacity        (any entry) the zone holds its capacity                 deny/capacity, and the
                                                                            visitor tries again
                                                                            after the next exit
In a zone with a capacity every movement is chained to the one before (its `after`), so the order,
and with it who meets a full zone, is the planned one.

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

from gated.central.issuer import IssuedTicket, issue, new_claims
from gated.core import base45, pretix_secret, ticket
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
    expect_flag: bool = False  # admitted by a replaced gate before its admissions snapshot: flagged `unsynced`
    observed_flag: bool = False

    @property
    def matched(self) -> bool:
        return (
            self.observed_admit == self.expect_admit
            and self.observed_reason == self.expect_reason
            and self.observed_flag == self.expect_flag
        )


@dataclass
class Crowd:
    attempts: list[Attempt]
    visitors: int
    revoked_before: list[bytes] = field(default_factory=list)
    revoked_during: list[bytes] = field(default_factory=list)
    unpaid: list[bytes] = field(default_factory=list)  # tickets of unpaid pretix orders (the check-in list's)
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
    raw = bytearray(base45.decode(text[len(ticket.STATIC_PREFIX) :]))
    claims = ticket.parse_claims(_payload_of(bytes(raw)))
    target = claims.aud.encode()
    at = bytes(raw).find(target)
    raw[at + len(target) - 1] ^= 0x01  # '6' -> '7', 'A' -> '@': still one ASCII byte
    return ticket.STATIC_PREFIX + base45.encode(bytes(raw))


def cut_signature(text: str) -> str:
    """Drop the last signature byte: a 63-byte signature is malformed before anything is verified."""
    import cbor2

    raw = base45.decode(text[len(ticket.STATIC_PREFIX) :])
    item = cbor2.loads(raw)
    value = item.value if isinstance(item, cbor2.CBORTag) else item
    value[3] = value[3][:-1]
    return ticket.STATIC_PREFIX + base45.encode(cbor2.dumps(value))


def issue_pretix(claims: ticket.Claims, key: Ed25519PrivateKey, *, item: int, seed: str) -> IssuedTicket:
    """A pretix_sig1 secret as pretix would sell it, its claims as the gate will read them."""
    text = pretix_secret.encode_secret(
        pretix_secret.Fields(seed=seed, item=item, valid_from=claims.nbf, valid_until=claims.exp), key
    )
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


def build(
    scenario: Scenario,
    issuer_key: Ed25519PrivateKey,
    start: int,
    *,
    speed: float,
    other_event_key: Ed25519PrivateKey | None = None,
) -> Crowd:
    """Issue every ticket and plan every attempt. `start` is the unix time the doors open."""
    rng = random.Random(scenario.seed)
    pretix = scenario.ticket_format == "pretix_sig1"
    if pretix and other_event_key is None:
        raise ValueError("pretix_sig1 tickets of another event need that event's key (other_event_key)")
    gates = scenario.entry_gate_ids
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
        fields = dict(
            event=scenario.event,
            nbf=start - 3600,
            exp=start + 6 * 3600,
            typ=rng.choices(types, weights)[0],
            ent=scenario.entries,
            zones=[zone] if zone else None,
            iat=start - 86400,
        )
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
    entered: list[Attempt] = []  # attempts that put a visitor inside, for the exits
    held: dict[str, list] = {}  # zone with a capacity -> its visitors' arrivals, planned in order below
    # honest visitors
    for _ in range(n_valid):
        gate = rng.choice(gates)
        at = times[visitor]
        dynamic = rng.random() < scenario.dynamic_share
        issued = sign(claims_for(gate), issuer_key, dynamic=dynamic)
        cti = issued.claims.cti.hex()
        crowd.tickets[cti] = issued.claims.ent
        passes = rng.random() >= scenario.no_pass_share
        if _zone(scenario, gate) in scenario.capacities:
            held.setdefault(_zone(scenario, gate), []).append(
                (
                    at,
                    visitor,
                    gate,
                    None if dynamic else issued.text,
                    cti,
                    (issued.cose, issued.claims.cti, issued.device_key) if dynamic else None,
                    passes,
                )
            )
            visitor += 1
            continue
        if scenario.checkin_admit_types is not None and issued.claims.typ not in scenario.checkin_admit_types:
            # the check-in list's product rule: a valid ticket of a type it does not admit
            add(visitor, gate, at, "not_on_list", issued.text, cti, False, "rules")
            visitor += 1
            continue
        first = add(
            visitor,
            gate,
            at,
            "valid",
            None if dynamic else issued.text,
            cti,
            True,
            "ok",
            passes=passes,
            dynamic=(issued.cose, issued.claims.cti, issued.device_key) if dynamic else None,
        )
        if not passes:
            # the light went green, nobody went through: after the timeout the ticket works again
            entered.append(
                add(
                    visitor,
                    gate,
                    at,
                    "retry",
                    first.text,
                    cti,
                    True,
                    "ok",
                    after=first.id,
                    after_gap_s=1.0,
                    dynamic=first.dynamic,
                )
            )
        else:
            entered.append(first)
            if not dynamic and scenario.entries == 1:
                originals.append(first)
        visitor += 1
    _plan_exits(scenario, rng, entered, add, speed)
    for zone, arrivals in held.items():
        _plan_capacity_zone(scenario, rng, zone, arrivals, add, speed)
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
            add(
                visitor,
                gate,
                max(times[visitor], original.at_s),
                kind,
                original.text,
                original.cti,
                False,
                reason,
                after=original.id,
                after_gap_s=2.0 if kind == "used_twice" else 3.0,
                needs_broker=kind == "two_gates",
            )
            visitor += 1
    # the rest of the cheats
    plain = [
        k
        for k in (
            "forged",
            "tampered",
            "revoked_before",
            "revoked_during",
            "expired",
            "wrong_event",
            "screenshot",
            "static_copy",
            "unpaid",
        )
        for _ in range(fraud[k])
    ]
    assert len(plain) == n_plain_fraud
    tampered_seen = 0
    for kind in plain:
        gate = rng.choice(gates)
        at = times[visitor]
        if kind == "forged":
            issued = sign(claims_for(gate), forger)
            add(
                visitor,
                gate,
                at,
                kind,
                issued.text,
                issued.claims.cti.hex(),
                False,
                "bad_signature" if pretix else "unknown_key",
            )
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
            add(
                visitor,
                gate,
                at,
                kind,
                issued.text,
                issued.claims.cti.hex(),
                False,
                "revoked",
                needs_broker=kind == "revoked_during",
                needs_revocation=kind == "revoked_during",
            )
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
        elif kind == "unpaid":
            issued = sign(claims_for(gate), issuer_key)
            crowd.unpaid.append(issued.claims.cti)
            add(visitor, gate, at, kind, issued.text, issued.claims.cti.hex(), False, "unpaid")
        elif kind == "static_copy":
            issued = issue(claims_for(gate), issuer_key, dynamic=True)
            add(visitor, gate, at, kind, issued.text, issued.claims.cti.hex(), False, "static_copy")
        visitor += 1
    crowd.attempts.sort(key=lambda a: (a.at_s, a.id))
    return crowd


def _zone(scenario: Scenario, gate: str) -> str:
    return scenario.zone_of(gate) or ""


def _exit_gates(scenario: Scenario, zone: str) -> list[str]:
    return [g for g in scenario.exit_gates + scenario.free_exit_gates if _zone(scenario, g) == zone]


def _entry_gates(scenario: Scenario, zone: str) -> list[str]:
    return [g for g in scenario.entry_gate_ids if _zone(scenario, g) == zone]


def _leaving(scenario: Scenario, rng: random.Random, zone: str) -> tuple[str, float, bool] | None:
    """(exit gate, dwell seconds, comes back) for a visitor who leaves, or None."""
    exits = _exit_gates(scenario, zone)
    if not exits or rng.random() >= scenario.leave_share:
        return None
    return rng.choice(exits), rng.uniform(*scenario.dwell_s), rng.random() < scenario.return_share


def _return_expectation(scenario: Scenario, exit_gate: str) -> tuple[str, bool, str]:
    """(kind, admit, reason) of coming back after leaving through `exit_gate`."""
    if scenario.direction_of(exit_gate) == "free":
        return "return_unrecorded", False, "already_used"  # no gate knows the ticket left
    return ("reentry", True, "ok") if scenario.reentry else ("reentry", False, "already_used")


def _exit_kind(scenario: Scenario, gate: str) -> str:
    return "free_exit" if scenario.direction_of(gate) == "free" else "exit"


def _plan_exits(scenario: Scenario, rng: random.Random, entered: list[Attempt], add, speed: float) -> None:
    """Visitors inside a zone without a capacity: some leave after a dwell time, some come back."""
    for e in entered:
        leaving = _leaving(scenario, rng, _zone(scenario, e.gate))
        if leaving is None:
            continue
        gate, dwell, back = leaving
        kind = _exit_kind(scenario, gate)
        out = add(
            e.visitor,
            gate,
            e.at_s + dwell,
            kind,
            None if kind == "free_exit" else e.text,
            e.cti,
            True,
            "ok",
            after=e.id,
            after_gap_s=dwell / speed,
            dynamic=None if kind == "free_exit" else e.dynamic,
        )
        if back:
            kind, admit, reason = _return_expectation(scenario, gate)
            add(
                e.visitor,
                e.gate,
                out.at_s + 2.0,
                kind,
                e.text,
                e.cti,
                admit,
                reason,
                after=out.id,
                after_gap_s=1.0,
                needs_broker=True,
                dynamic=e.dynamic,
            )


def _plan_capacity_zone(scenario: Scenario, rng: random.Random, zone: str, arrivals: list, add, speed: float) -> None:
    """Every movement of a zone with a capacity, in one chain: who meets a full zone is denied
    `capacity` and tries again at the same gate after the next person leaves."""
    import heapq
    from collections import deque

    capacity = scenario.capacities[zone]
    queue: list = []
    order = iter(range(10**9))
    for at, visitor, gate, text, cti, dynamic, passes in arrivals:
        heapq.heappush(
            queue,
            (
                at,
                next(order),
                "enter",
                {"visitor": visitor, "gate": gate, "text": text, "cti": cti, "dynamic": dynamic, "passes": passes},
            ),
        )
    inside, waiting, previous = 0, deque(), None

    def chained(v, gate, at, kind, text, admit, reason, passes=True, dynamic=None):
        nonlocal previous
        # news from another gate (an exit, an entry) must have crossed the broker first
        crossing = previous is not None and (previous.gate != gate or kind in ("reentry", "return_unrecorded"))
        a = add(
            v["visitor"],
            gate,
            at,
            kind,
            text,
            v["cti"],
            admit,
            reason,
            passes=passes,
            dynamic=dynamic,
            after=previous.id if previous else None,
            after_gap_s=0.6 if crossing else 0.2,
            needs_broker=crossing,
        )
        previous = a
        return a

    while queue:
        at, _, what, v = heapq.heappop(queue)
        if what in ("enter", "reentry", "return_unrecorded"):
            if what == "return_unrecorded" or (what == "reentry" and not scenario.reentry):
                chained(v, v["gate"], at, what, v["text"], False, "already_used", dynamic=v["dynamic"])
                continue
            kind = v.get("kind_again") or ("valid" if what == "enter" else "reentry")
            if inside >= capacity:
                chained(v, v["gate"], at, kind, v["text"], False, "capacity", dynamic=v["dynamic"])
                waiting.append((what, {**v, "kind_again": "capacity_retry" if what == "enter" else "reentry"}))
                continue
            if what == "enter" and not v["passes"]:
                chained(v, v["gate"], at, kind, v["text"], True, "ok", passes=False, dynamic=v["dynamic"])
                v = {**v, "passes": True, "kind_again": "retry"}
                heapq.heappush(queue, (at + 0.1, next(order), "enter", v))
                continue
            chained(v, v["gate"], at, kind, v["text"], True, "ok", dynamic=v["dynamic"])
            inside += 1
            if what == "enter":
                leaving = _leaving(scenario, rng, zone)
                if leaving is not None:
                    gate, dwell, back = leaving
                    heapq.heappush(queue, (at + dwell, next(order), "exit", {**v, "exit_gate": gate, "back": back}))
        elif what == "exit":
            gate = v["exit_gate"]
            kind = _exit_kind(scenario, gate)
            chained(
                v,
                gate,
                at,
                kind,
                None if kind == "free_exit" else v["text"],
                True,
                "ok",
                dynamic=None if kind == "free_exit" else v["dynamic"],
            )
            inside -= 1
            if v["back"]:
                again, _, _ = _return_expectation(scenario, gate)
                heapq.heappush(queue, (at + 2.0, next(order), again, {**v, "back": False, "kind_again": None}))
            if waiting:
                what_again, w = waiting.popleft()
                heapq.heappush(queue, (at + 0.1, next(order), what_again, w))


def expected_inside(scenario: Scenario, attempts: list[Attempt]) -> dict[str, int]:
    """People inside per zone at the end, by the ground truth: every expected admission whose
    visitor walks through counts one in (at an entry gate) or one out (at an exit)."""
    inside: dict[str, int] = {}
    for a in attempts:
        if not a.expect_admit or not a.passes:
            continue
        zone = _zone(scenario, a.gate)
        inside[zone] = inside.get(zone, 0) + (-1 if a.kind in ("exit", "free_exit") else 1)
    return dict(sorted(inside.items()))


def render(attempt: Attempt, gate_now: float) -> str:
    """The text the visitor's phone or paper shows at this moment (GT2 is rendered afresh)."""
    if attempt.dynamic is None:
        return attempt.text
    cose_bytes, cti, device_key = attempt.dynamic
    return ticket.encode_dynamic(cose_bytes, cti, int(gate_now // ticket.STEP_SECONDS), device_key)
