"""A signed message whose protected header holds a hostile value (an `alg` of 10**5000: a 2 KB
unsigned message) is refused by every reader with its rejection and code, never a ValueError from
the message's own description (Python will not write an int of over 4300 digits): the gate's
revocation, check-in list, snapshot, command, beacon and ledger handlers, and `gated verify`.
Error messages describe hostile values briefly (gated.core.errors.brief)."""

from __future__ import annotations

import base64
import json
import time

import cbor2
import pytest
from structlog.testing import capture_logs

from gated.cli import main
from gated.core.command import CommandRejected, parse_command
from gated.core.errors import brief
from gated.gate import checkinlists, revocations
from gated.gate.admissions import Recovery
from gated.gate.clock import TrustedClock
from gated.gate.uplink import Uplink
from gated.mqtt import Inbound
from gated.topics import committed_topic
from tests.conftest import EVENT, SITE
from tests.support.uplink import fast_settings

HOSTILE = {
    "bignum": 10**5000,
    "long text": "x" * 20_000,
    "long bytes": b"y" * 20_000,
    "nested bignum": [10**5000],
}


def sign1_with_alg(alg) -> bytes:
    """A COSE_Sign1 whose protected header's alg is `alg` (its signature is never looked at)."""
    return cbor2.dumps([cbor2.dumps({1: alg, 4: b"12345678"}), {}, b"", b"\0" * 64])


@pytest.fixture(params=list(HOSTILE), ids=list(HOSTILE))
def hostile(request) -> bytes:
    return sign1_with_alg(HOSTILE[request.param])


def short(detail: str) -> bool:
    return len(detail) < 300 and "algorithm" in detail


def test_gate_readers_reject_a_hostile_alg_with_their_code(hostile, store, authority):
    outcome = revocations.apply_update(store, hostile, authority.keyring, site=SITE, now_ms=time.time_ns() // 10**6)
    assert (outcome.status, outcome.code) == ("rejected", "unsupported") and short(outcome.detail)
    assert store.revocation_state().version == 0

    outcome = checkinlists.accept(store, hostile, authority.keyring, site=SITE)
    assert (outcome.status, outcome.code) == ("rejected", "unsupported") and short(outcome.detail)

    with pytest.raises(CommandRejected) as refused:
        parse_command(hostile, authority.keyring, "g1")
    assert refused.value.code == "unsupported" and short(refused.value.detail)

    clock = TrustedClock(site=SITE, keyring=authority.keyring, store=store, ntp_synced=lambda: False)
    outcome = clock.on_beacon(hostile)
    assert (outcome.accepted, outcome.reason) == (False, "unsupported") and short(outcome.detail)

    store.start_epoch(1, time.time_ns() // 10**6)  # a replaced gate: it takes admissions snapshots
    recovery = Recovery(store, authority.keyring, site=SITE, events=[EVENT])
    with capture_logs() as logs:
        recovery.on_message(recovery.topics()[0], hostile)
    assert [(e["event"], e["code"]) for e in logs] == [("admissions snapshot rejected", "unsupported")]


def test_a_ledger_message_with_a_hostile_alg_is_counted_as_not_from_the_ledger(hostile, store, authority):
    uplink = Uplink(
        store=store, keyring=authority.keyring, settings=fast_settings("mqtt://127.0.0.1:1"), site=SITE, gate="g1"
    )
    sealed = json.dumps({"seq": 1, "sig": base64.b64encode(hostile).decode()}).encode()
    with capture_logs() as logs:
        uplink._dispatch(Inbound(committed_topic(SITE, "g1"), sealed, mid=1, qos=1, retain=False, generation=0))
    said = [e for e in logs if e["log_level"] in ("warning", "error")]
    assert [(e["event"], e.get("code")) for e in said] == [
        ("committed message ignored: not from the ledger", "unsupported")
    ]
    assert uplink.unverified_ledger_messages == 1


def test_gated_verify_says_a_hostile_revocation_file_is_rejected_in_one_line(tmp_path, authority, capsys):
    path = tmp_path / "hostile.rev"
    path.write_bytes(sign1_with_alg(10**5000))
    code = main(
        [
            "verify",
            "--keyring",
            str(authority.keyring_dir),
            "--event",
            EVENT,
            "--revocations",
            str(path),
            authority.ticket(),
        ]
    )
    out = capsys.readouterr()
    assert code == 0 and out.out.startswith("ADMIT")  # judged on the list it has (none), as for any rejected file
    assert out.err.splitlines() == [
        f"revocations {path}: rejected (unsupported): COSE: algorithm an integer of 16610 bits "
        "is not Ed25519 (-8); list stays at v0"
    ]


@pytest.mark.parametrize(
    "value,said",
    [
        (10**5000, "an integer of 16610 bits"),
        (-8, "-8"),
        ("x" * 100, repr("x" * 60) + "... (100 characters)"),
        (b"kid", "b'kid'"),
        ({1: 2}, "a dict"),
        (None, "None"),
    ],
    ids=["bignum", "int", "long text", "bytes", "map", "none"],
)
def test_brief_describes_a_value_from_outside_in_a_few_words(value, said):
    assert brief(value) == said


def test_signed_payloads_with_hostile_values_are_refused_with_a_short_reason(store, authority):
    """Values inside a verified payload are from outside too: a check-in list with a key of 10**5000,
    a command for a gate named by 20,000 characters, a revocation update for such a site."""
    from gated.core import cose

    listed = cose.sign(cbor2.dumps({1: SITE, 2: 1, 10**5000: 0}), authority.revocation)
    outcome = checkinlists.accept(store, listed, authority.keyring, site=SITE)
    assert (outcome.code, outcome.detail) == ("unsupported", "unknown payload keys [an integer of 16610 bits]")

    command = cose.sign(cbor2.dumps({1: "g" * 20_000, 2: "lock", 3: 1, 4: 1}), authority.command)
    with pytest.raises(CommandRejected) as refused:
        parse_command(command, authority.keyring, "g1")
    assert refused.value.code == "wrong_gate" and len(refused.value.detail) < 120

    update = cose.sign(cbor2.dumps({1: "s" * 20_000, 2: 1, 3: 0, 4: [], 5: [], 6: 1}), authority.revocation)
    outcome = revocations.apply_update(store, update, authority.keyring, site=SITE, now_ms=time.time_ns() // 10**6)
    assert outcome.code == "wrong_site" and len(outcome.detail) < 120
