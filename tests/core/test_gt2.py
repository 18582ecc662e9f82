"""Dynamic tickets end to end (PROTOCOL §3): issued bound to a device key, rendered by the wallet,
judged by validate() against a real gate store; and the clock policy for time-dependent checks."""

from __future__ import annotations

import os
import struct
from dataclasses import replace

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gated.central import wallet
from gated.central.issuer import issue, new_claims
from gated.core import base45, ticket
from gated.core.beacon import encode_beacon
from gated.core.reasons import Reason
from gated.gate.clock import TrustedClock
from gated.gate.validate import scan_fields, validate
from tests.conftest import EVENT, SITE

NOW = 1_790_000_020.0  # 10 s into a 30 s step


@pytest.fixture
def dyn(authority):
    """A dynamic ticket (ent=0: unlimited, so only the per-step rule limits it) and its device key."""
    return make(authority, ent=0)


def make(authority, **claims):
    fields = dict(event=EVENT, nbf=int(NOW) - 3600, exp=int(NOW) + 3600)
    fields.update(claims)
    return issue(new_claims(**fields), authority.issuer, dynamic=True)


def scan(text, authority, gate_context, store, now, **kw):
    """Judge a code and, when admitted, record it as the gate does (admission + event, one transaction)."""
    decision = validate(text, authority.keyring, gate_context, store, now, **kw)
    if decision.admit:
        store.record_scan(
            scan_fields(decision, gate_context, 0),
            int(now * 1000),
            admit_cti=decision.cti,
            step=decision.ticket.step,
            confirmed=True,
        )
    return decision.reason


def test_wire_format_is_protocol_section_3(dyn):
    text = wallet.current_code(dyn.cose, dyn.device_key, NOW)
    assert text.startswith("GT2:")
    item = cbor2.loads(base45.decode(text[4:]))
    assert isinstance(item, list) and len(item) == 3
    ticket_bytes, step, devsig = item
    assert ticket_bytes == dyn.cose and step == int(NOW // 30) and len(devsig) == 64
    message = b"GT2" + dyn.claims.cti + struct.pack(">Q", step)
    assert len(message) == 3 + 16 + 8
    Ed25519PublicKey.from_public_bytes(dyn.claims.dev).verify(devsig, message)  # raises if wrong
    assert dyn.claims.dev == ticket.raw_public(dyn.device_key.public_key())


def test_admitted_once_per_step(authority, gate_context, store, dyn):
    code = wallet.current_code(dyn.cose, dyn.device_key, NOW)
    assert scan(code, authority, gate_context, store, NOW) is Reason.OK
    assert scan(code, authority, gate_context, store, NOW + 5) is Reason.ALREADY_USED  # same (cti, step)
    later = wallet.current_code(dyn.cose, dyn.device_key, NOW + 30)  # the next code the phone shows
    assert scan(later, authority, gate_context, store, NOW + 30) is Reason.OK
    assert scan(later, authority, gate_context, store, NOW + 31) is Reason.ALREADY_USED


def test_entries_still_count(authority, gate_context, store):
    dyn = make(authority, ent=2)
    codes = [wallet.current_code(dyn.cose, dyn.device_key, NOW + 30 * i) for i in range(3)]
    got = [scan(code, authority, gate_context, store, NOW + 30 * i) for i, code in enumerate(codes)]
    assert got == [Reason.OK, Reason.OK, Reason.ALREADY_USED]


def test_screenshot_sixty_seconds_later_is_stale(authority, gate_context, store, dyn):
    screenshot = wallet.current_code(dyn.cose, dyn.device_key, NOW)
    assert scan(screenshot, authority, gate_context, store, NOW + 60) is Reason.STALE_CODE
    assert scan(screenshot, authority, gate_context, store, NOW + 25) is Reason.OK  # within one step: allowed


def test_a_code_from_the_future_is_stale(authority, gate_context, store, dyn):
    code = wallet.code_at(dyn.cose, dyn.device_key, int(NOW // 30) + 2)
    assert scan(code, authority, gate_context, store, NOW) is Reason.STALE_CODE


def test_step_window_is_configurable(authority, gate_context, store, dyn):
    screenshot = wallet.current_code(dyn.cose, dyn.device_key, NOW)
    wide = replace(gate_context, step_window=2)
    assert scan(screenshot, authority, wide, store, NOW + 60) is Reason.OK
    strict = replace(gate_context, step_window=0)
    assert (
        scan(wallet.current_code(dyn.cose, dyn.device_key, NOW), authority, strict, store, NOW + 30)
        is Reason.STALE_CODE
    )


def test_static_rendering_is_a_static_copy(authority, gate_context, store, dyn):
    assert dyn.text == wallet.static_code(dyn.cose)
    assert scan(dyn.text, authority, gate_context, store, NOW) is Reason.STATIC_COPY


def test_another_device_cannot_make_codes(authority, gate_context, store, dyn):
    forged = wallet.current_code(dyn.cose, Ed25519PrivateKey.generate(), NOW)
    assert scan(forged, authority, gate_context, store, NOW) is Reason.BAD_SIGNATURE


def test_gt2_around_a_static_ticket_is_refused(authority, gate_context, store):
    claims = authority.claims(aud=EVENT)
    cose_bytes = ticket.encode_cose(claims, authority.issuer)
    text = ticket.encode_dynamic(cose_bytes, claims.cti, int(NOW // 30), Ed25519PrivateKey.generate())
    assert scan(text, authority, gate_context, store, NOW) is Reason.MALFORMED


def test_inner_ticket_rules_still_apply(authority, gate_context, store):
    stranger = Ed25519PrivateKey.generate()
    dyn = issue(new_claims(event=EVENT, nbf=int(NOW) - 60, exp=int(NOW) + 60), stranger, dynamic=True)
    assert (
        scan(wallet.current_code(dyn.cose, dyn.device_key, NOW), authority, gate_context, store, NOW)
        is Reason.UNKNOWN_KEY
    )
    expired = make(authority, nbf=int(NOW) - 7200, exp=int(NOW) - 3600)
    assert (
        scan(wallet.current_code(expired.cose, expired.device_key, NOW), authority, gate_context, store, NOW)
        is Reason.EXPIRED
    )
    other = make(authority, event="OTHER-EVENT")
    assert (
        scan(wallet.current_code(other.cose, other.device_key, NOW), authority, gate_context, store, NOW)
        is Reason.WRONG_EVENT
    )


@pytest.mark.parametrize(
    "envelope",
    [
        lambda d: [d.cose, 5],  # two items
        lambda d: [d.cose, -1, b"\0" * 64],  # negative step
        lambda d: [d.cose, True, b"\0" * 64],  # a bool is not a uint
        lambda d: [d.cose, 2**64, b"\0" * 64],  # step over 8 bytes
        lambda d: [d.cose, 5, b"\0" * 63],  # short devsig
        lambda d: ["text", 5, b"\0" * 64],  # ticket not a bstr
        lambda d: {"ticket": d.cose},  # not an array
    ],
)
def test_malformed_envelopes(authority, gate_context, store, dyn, envelope):
    text = "GT2:" + base45.encode(cbor2.dumps(envelope(dyn)))
    assert scan(text, authority, gate_context, store, NOW) is Reason.MALFORMED


def test_trailing_bytes_after_the_envelope(authority, gate_context, store, dyn):
    good = base45.decode(wallet.current_code(dyn.cose, dyn.device_key, NOW)[4:])
    assert scan("GT2:" + base45.encode(good + b"\0"), authority, gate_context, store, NOW) is Reason.MALFORMED


# --- the clock policy (decide(time_trusted=False)) ----------------------------------------------


def test_untrusted_clock_denies_time_dependent_checks(authority, gate_context, store, dyn):
    code = wallet.current_code(dyn.cose, dyn.device_key, NOW)
    assert scan(code, authority, gate_context, store, NOW, time_trusted=False) is Reason.STALE_CODE
    gt1 = authority.ticket(nbf=int(NOW) - 60, exp=int(NOW) + 60)
    assert scan(gt1, authority, gate_context, store, NOW, time_trusted=False) is Reason.NOT_YET_VALID
    old = authority.ticket(nbf=int(NOW) - 7200, exp=int(NOW) - 3600)
    assert scan(old, authority, gate_context, store, NOW, time_trusted=False) is Reason.EXPIRED
    # and with the clock trusted again the same GT1 ticket is fine (nothing was recorded against it)
    assert scan(gt1, authority, gate_context, store, NOW) is Reason.OK


def test_rejections_and_place_come_before_the_clock(authority, gate_context, store, dyn):
    assert scan(dyn.text, authority, gate_context, store, NOW, time_trusted=False) is Reason.STATIC_COPY
    other = authority.ticket(aud="OTHER-EVENT")
    assert scan(other, authority, gate_context, store, NOW, time_trusted=False) is Reason.WRONG_EVENT


@pytest.mark.parametrize("policy, expected", [("deny", Reason.STALE_CODE), ("beacon", Reason.OK)])
def test_gate_an_hour_slow_with_beacons(authority, gate_context, store, dyn, policy, expected):
    """The phone shows the right time; the gate's clock is an hour behind; beacons reveal it."""
    gate_wall = NOW - 3600
    clock = TrustedClock(site=SITE, keyring=authority.keyring, store=store, policy=policy, ntp_synced=lambda: False)
    code = wallet.current_code(dyn.cose, dyn.device_key, NOW)
    assert scan(code, authority, gate_context, store, gate_wall) is Reason.STALE_CODE  # the naive gate
    beacon = encode_beacon(authority.command, site=SITE, unix_ms=int(NOW * 1000), seq=1)
    assert clock.on_beacon(beacon, gate_wall, mono_now=50.0).accepted
    reading = clock.reading(gate_wall + 2, mono_now=52.0)
    assert reading.uncertain
    got = scan(code, authority, gate_context, store, reading.now, time_trusted=reading.trusted)
    assert got is expected


def test_devsig_domain_separation(dyn):
    """A devsig is bound to its ticket and step: the same signature under another step fails."""
    step = int(NOW // 30)
    sig = dyn.device_key.sign(ticket.devsig_message(dyn.claims.cti, step))
    public = Ed25519PublicKey.from_public_bytes(dyn.claims.dev)
    public.verify(sig, ticket.devsig_message(dyn.claims.cti, step))
    from cryptography.exceptions import InvalidSignature

    with pytest.raises(InvalidSignature):
        public.verify(sig, ticket.devsig_message(dyn.claims.cti, step + 1))
    with pytest.raises(InvalidSignature):
        public.verify(sig, ticket.devsig_message(os.urandom(16), step))
