"""Hostile codes through the whole scan path: codec, store, decision, relay (Gate.on_code with a real
GateStore and MockFactory pins), and the CLI `gated verify`. Every input is a denial with a reason
and a scan event; the gate keeps running and admits a valid ticket afterwards.

The fuzz part is seeded and bounded (a few hundred codes, about a second)."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time

import cbor2
import pytest
from structlog.testing import capture_logs

from gated.central.issuer import issue, new_claims
from gated.core import base45, cose, ticket
from gated.core.reasons import Reason
from gated.gate.gate import Gate
from gated.gate.turnstile import Turnstile
from tests.conftest import EVENT
from tests.support.pins import pins, profile, relay_on  # noqa: F401  (pins is a fixture)

SEED = 20261201
UINT_MAX = 2**63 - 1  # docs/protocol.md "Integers": the largest unsigned integer a gate accepts
HUGE = (2**63, 2**63 + 1, 2**64 - 1, 2**64, 2**70, -1, -(2**64))  # every one outside 0..2^63-1


@pytest.fixture
def gate(store, authority, gate_context, pins):
    board = profile()
    made = Gate(
        store=store,
        keyring=authority.keyring,
        context=gate_context,
        turnstile=Turnstile(board, pin_factory=pins),
        clock=time.time,
        passage_timeout_s=5.0,
        held_open_s=20.0,
    )
    made.board = board
    yield made
    made.close()


def dynamic_ticket(authority, **claims):
    now = int(time.time())
    fields = dict(event=EVENT, nbf=now - 3600, exp=now + 3600, ent=1)
    fields.update(claims)
    return issue(new_claims(**fields), authority.issuer, dynamic=True)


def gt2_with_step(dyn, step) -> str:
    """A GT2 code whose devsig is made by the holder's own device key (what any holder can do) for a
    step the 8-byte devsig message can carry; the envelope states `step` as given."""
    devsig = dyn.device_key.sign(ticket.devsig_message(dyn.claims.cti, step % 2**64))
    return ticket.DYNAMIC_PREFIX + base45.encode(cbor2.dumps([dyn.cose, step, devsig]))


def gt1_of_payload(payload: bytes, authority) -> str:
    """A GT1 code signed by the trusted issuer around any payload bytes (the issuer's own mistake, or its key's)."""
    return ticket.STATIC_PREFIX + base45.encode(cose.sign(payload, authority.issuer))


def scan_events(store) -> list[dict]:
    return [e for e in (json.loads(body) for _, body in store.outbox(0, 100_000)) if e["kind"] == "scan"]


# --- item 1: a GT2 step of 2^63 or more ------------------------------------------------------------


@pytest.mark.parametrize("step", [2**63, 2**64 - 1], ids=["2^63", "2^64-1"])
def test_a_gt2_step_the_store_cannot_hold_is_malformed_and_the_gate_goes_on(gate, store, authority, step):
    dyn = dynamic_ticket(authority)
    decision = gate.on_code(gt2_with_step(dyn, step), time.monotonic())
    assert (decision.admit, decision.reason) == (False, Reason.MALFORMED)
    assert "wrong types" in decision.detail
    assert scan_events(store)[-1]["reason"] == "malformed"
    # the largest step the gate can store passes the codec and is judged on time
    assert gate.on_code(gt2_with_step(dyn, UINT_MAX)).reason is Reason.STALE_CODE
    # and the ticket itself still works once, as a current code
    from gated.central import wallet

    assert gate.on_code(wallet.current_code(dyn.cose, dyn.device_key, time.time())).admit


def test_gated_verify_with_state_denies_a_huge_gt2_step_without_a_traceback(tmp_path, authority):
    dyn = dynamic_ticket(authority)
    state = tmp_path / "desk.db"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "gated.cli",
            "verify",
            "--keyring",
            str(authority.keyring_dir),
            "--event",
            EVENT,
            "--state",
            str(state),
            "--record",
            "--json",
            gt2_with_step(dyn, 2**63),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ},
    )
    assert run.returncode == 1, run.stderr
    assert "Traceback" not in run.stderr
    assert json.loads(run.stdout)["reason"] == "malformed"


# --- item 1: the per-scan error boundary ----------------------------------------------------------


def test_an_unexpected_fault_in_a_scan_is_a_denial_an_alarm_and_a_log_line(gate, store, authority, pins):
    """A code the gate cannot even read as text (bytes from a scanner, say) makes the codec raise
    TypeError: the boundary turns it into `internal_error`, a scan event, a `tamper` alarm and a log
    line with the traceback; the relay stays shut and the next ticket is admitted."""
    with capture_logs() as logs:
        decision = gate.on_code(b"GT1:not text", time.monotonic())  # type: ignore[arg-type]
    assert (decision.admit, decision.reason) == (False, Reason.INTERNAL_ERROR)
    assert not relay_on(pins, gate.board)
    failed = [entry for entry in logs if entry["event"] == "gate.scan_failed"]
    assert failed and failed[0]["log_level"] == "error" and "TypeError" in failed[0]["error"]
    found = [json.loads(body) for _, body in store.outbox(0, 100)]
    assert [(e["kind"], e.get("reason"), e.get("alarm")) for e in found] == [
        ("scan", "internal_error", None),
        ("alarm", None, "tamper"),
    ]
    assert found[0]["decision"] == "deny" and found[0]["ticket"] is None
    assert gate.on_code(authority.ticket()).admit


# --- the fuzz test ---------------------------------------------------------------------------------


def hostile_values(rng: random.Random):
    """CBOR items a hostile code may carry: huge and negative integers, bignums, floats, tags, deep
    nesting, odd types."""
    nested = []
    for _ in range(rng.randrange(1, 60)):
        nested = [nested]
    return [
        rng.choice(HUGE),
        rng.randrange(-(2**80), 2**80),
        rng.random() * 1e300,
        float("nan"),
        True,
        None,
        b"\x00" * rng.randrange(0, 40),
        "x" * rng.randrange(0, 40),
        {rng.choice(HUGE): 1},
        nested,
        cbor2.CBORTag(rng.choice((2, 3, 18, 24, 1, 55799, 2**40)), rng.randrange(2**70)),
        [rng.choice(HUGE)] * rng.randrange(0, 5),
        cbor2.undefined,
    ]


def hostile_codes(rng: random.Random, authority, dyn) -> list[str]:
    codes = []
    now = int(time.time())
    for _ in range(60):  # random text, and random bytes behind each prefix
        blob = os.urandom(rng.randrange(0, 300))
        codes.append("".join(chr(rng.randrange(32, 0x3000)) for _ in range(rng.randrange(0, 80))))
        codes.append(rng.choice(("GT1:", "GT2:", "GT9:", "")) + base45.encode(blob))
    for _ in range(40):  # GT2 envelopes: a good ticket, a hostile step or shape
        value = rng.choice(hostile_values(rng))
        devsig = os.urandom(64)
        shape = rng.choice(
            (
                [dyn.cose, value, devsig],
                [dyn.cose, value],
                [value, 1, devsig],
                [dyn.cose, 1, value],
                [dyn.cose, rng.choice(HUGE), devsig],
                value,
            )
        )
        codes.append(ticket.DYNAMIC_PREFIX + base45.encode(cbor2.dumps(shape)))
        codes.append(gt2_with_step(dyn, rng.choice(HUGE[:4])))  # a valid devsig over a huge step
        codes.append(gt2_with_step(dyn, rng.randrange(2**40, UINT_MAX + 1)))  # valid devsig, a storable far step
        codes.append(
            ticket.DYNAMIC_PREFIX + base45.encode(cbor2.dumps([dyn.cose, rng.randrange(UINT_MAX + 1), devsig]))
        )
    for _ in range(80):  # issuer-signed claims with hostile values (so they reach decide() and the store)
        claims = {
            7: os.urandom(16) if rng.random() < 0.8 else rng.choice(hostile_values(rng)),
            3: EVENT,
            5: now - 60,
            4: now + 3600,
        }  # cti, aud, nbf, exp
        key = rng.choice((7, 3, 5, 4, 1, 6, -1, -2, -3, -4, -5, 8, -70000, 2**63))
        claims[key] = rng.choice(hostile_values(rng) + [rng.choice(HUGE)] * 4)
        codes.append(gt1_of_payload(cbor2.dumps(claims), authority))
    for _ in range(20):  # COSE structures with hostile headers
        protected = cbor2.dumps({1: rng.choice((-8, 2**63, -(2**64), 1.5)), 4: rng.choice((b"k" * 8, 2**64, None))})
        blob = cbor2.dumps([protected, {}, cbor2.dumps({7: os.urandom(16)}), os.urandom(64)])
        codes.append(ticket.STATIC_PREFIX + base45.encode(blob))
    codes.append("GT1:" + "A" * 5000)
    codes.append("GT2:" + base45.encode(b"\x9f" * 400))  # indefinite arrays, never closed
    codes.append("GT2:" + base45.encode(b"\x81" * 5000)[:1020])  # deep nesting, cut short
    rng.shuffle(codes)
    return codes


def test_hostile_codes_through_the_whole_scan_path_each_get_a_reason(gate, store, authority, pins):
    rng = random.Random(SEED)
    dyn = dynamic_ticket(authority)
    codes = hostile_codes(rng, authority, dyn)
    assert len(codes) >= 300
    before = len(scan_events(store))
    decisions = []
    for text in codes:
        decision = gate.on_code(text, time.monotonic())
        assert isinstance(decision.reason, Reason) and decision.admit is (decision.reason is Reason.OK)
        assert decision.reason is not Reason.INTERNAL_ERROR, (text, decision.detail)  # the codec knows them all
        gate.poll()
        decisions.append(decision)
    recorded = scan_events(store)[before:]
    assert [(e["decision"], e["reason"]) for e in recorded] == [(d.word, d.reason.value) for d in decisions]
    # an issuer-signed ticket whose extra claims are odd (an unknown key, a seat) may be valid; nothing else is
    admitted = [d for d in decisions if d.admit]
    assert all(d.ticket is not None and not d.ticket.dynamic for d in admitted) and len(admitted) < 40
    assert {d.reason for d in decisions} >= {
        Reason.MALFORMED,
        Reason.UNSUPPORTED,
        Reason.BAD_SIGNATURE,
        Reason.STALE_CODE,
    }
    assert gate.on_code(authority.ticket()).admit  # still a working gate
