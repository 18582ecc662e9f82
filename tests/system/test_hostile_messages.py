"""Hostile signed messages (#11 items 7 and 12): integers the store cannot hold in a revocation update,
a command or a time beacon are rejected by their parsers with a reason; stale commands are refused;
`gated verify --record` without a state refuses to run; and a running `gated run` with a real
Mosquitto survives a hostile GT2 code and hostile messages, and still works after them."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time

import cbor2
import paho.mqtt.client as mqtt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gated.central.issuer import issue, new_claims
from gated.core import base45, cose, ticket
from gated.core.beacon import encode_beacon, read_beacon
from gated.core.command import CommandRejected, parse_command
from gated.gate import revocations
from gated.gate.clock import TrustedClock
from gated.gate.config import from_dict
from gated.topics import beacon_topic, command_topic, revocation_topic
from tests.conftest import EVENT, SITE
from tests.support.frames import render_card
from tests.support.gatedaemon import GateProcess, gate_config, write_config
from tests.support.signing import encode_command

HUGE = (2**63, 2**64 - 1, 2**70)  # 2^70 travels as a CBOR bignum
GATE = "g1"
SEED = 20261201


@pytest.mark.parametrize("value", HUGE)
def test_a_revocation_version_the_store_cannot_hold_is_malformed(store, authority, value):
    blob = cose.sign(
        cbor2.dumps({1: SITE, 2: value, 3: 0, 4: [os.urandom(16)], 5: [], 6: int(time.time())}), authority.revocation
    )
    outcome = revocations.apply_update(store, blob, authority.keyring, site=SITE, now_ms=int(time.time() * 1000))
    assert (outcome.status, outcome.code) == ("rejected", "malformed")
    assert "version" in outcome.detail and store.revocation_state().version == 0


@pytest.mark.parametrize("value", HUGE)
def test_a_command_nonce_or_iat_the_store_cannot_hold_is_malformed(authority, value):
    for blob in (
        encode_command(authority.command, gate=GATE, command="open", nonce=value),
        cose.sign(cbor2.dumps({1: GATE, 2: "open", 3: 1, 4: value}), authority.command),
    ):
        with pytest.raises(CommandRejected) as rejected:
            parse_command(blob, authority.keyring, GATE)
        assert rejected.value.code == "malformed"


@pytest.mark.parametrize("value", HUGE)
def test_a_beacon_sequence_or_time_the_store_cannot_hold_is_ignored_malformed(store, authority, value):
    now_ms = time.time_ns() // 1_000_000
    clock = TrustedClock(site=SITE, keyring=authority.keyring, store=store)
    for blob in (
        encode_beacon(authority.command, site=SITE, unix_ms=now_ms, seq=value),
        encode_beacon(authority.command, site=SITE, unix_ms=value, seq=1),
    ):
        assert read_beacon(blob, authority.keyring).reason == "malformed"
        outcome = clock.on_beacon(blob)
        assert (outcome.accepted, outcome.reason) == (False, "malformed")
    assert clock.on_beacon(encode_beacon(authority.command, site=SITE, unix_ms=now_ms, seq=1)).accepted


def test_a_command_older_than_the_allowed_age_is_too_old(authority):
    now = time.time()
    old = encode_command(authority.command, gate=GATE, command="open", nonce=1, iat=int(now) - 61)
    with pytest.raises(CommandRejected) as rejected:
        parse_command(old, authority.keyring, GATE, now=now, max_age_s=60)
    assert rejected.value.code == "too_old"
    fresh = encode_command(authority.command, gate=GATE, command="open", nonce=2, iat=int(now) - 5)
    assert parse_command(fresh, authority.keyring, GATE, now=now, max_age_s=60).name == "open"


@pytest.mark.parametrize(
    "name, code",
    [
        ("open", "clock_uncertain"),
        ("unlock", "clock_uncertain"),
        ("lock", None),
        ("emergency_on", None),
        ("emergency_off", None),
        ("clock_reset", None),
    ],
)
def test_with_an_untrusted_clock_only_commands_that_let_people_through_are_refused(authority, name, code):
    now = time.time()
    fresh = encode_command(authority.command, gate=GATE, command=name, nonce=1, iat=int(now) - 5)
    if code is None:
        assert parse_command(fresh, authority.keyring, GATE, now=now, max_age_s=60, time_trusted=False).name == name
    else:
        with pytest.raises(CommandRejected) as rejected:
            parse_command(fresh, authority.keyring, GATE, now=now, max_age_s=60, time_trusted=False)
        assert rejected.value.code == code
    old = encode_command(authority.command, gate=GATE, command=name, nonce=2, iat=int(now) - 61)
    if name == "clock_reset":  # the remedy for a wrong clock is not judged by it: no age check
        assert parse_command(old, authority.keyring, GATE, now=now, max_age_s=60, time_trusted=False).name == name
        return
    with pytest.raises(CommandRejected) as rejected:  # too old by the best estimate: too old, whatever the command
        parse_command(old, authority.keyring, GATE, now=now, max_age_s=60, time_trusted=False)
    assert rejected.value.code == "too_old"


def test_command_max_age_is_configured_under_mqtt_with_a_default_of_60_s(tmp_path):
    base = {
        "gate": {"site": SITE, "id": GATE, "events": [EVENT], "keyring": str(tmp_path)},
        "turnstile": {"board": "relay-only"},
        "mqtt": {"url": "mqtt://127.0.0.1"},
    }
    assert from_dict(base).mqtt.command_max_age_s == 60.0
    assert from_dict({**base, "mqtt": {"url": "mqtt://127.0.0.1", "command_max_age_s": 5}}).mqtt.command_max_age_s == 5
    with pytest.raises(ValueError, match="command_max_age_s"):
        from_dict({**base, "mqtt": {"url": "mqtt://127.0.0.1", "command_max_age_s": 0}})


def test_verify_record_without_state_is_refused(tmp_path, authority):
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
            "--record",
            authority.ticket(),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2
    assert "--record needs --state" in run.stderr and run.stdout == ""


# --- a running gate ------------------------------------------------------------------------------

COMMAND_CODES = {
    "malformed",
    "unsupported",
    "unknown_key",
    "bad_signature",
    "wrong_gate",
    "unknown_command",
    "too_old",
    "clock_uncertain",
    "replay",
}


def hostile_commands(rng: random.Random, authority, count: int = 30) -> list[bytes]:
    """Seeded hostile command messages, each with at least one defect (so none may run)."""
    stranger = Ed25519PrivateKey.generate()
    bad_ints = [*HUGE, -1, 1.5, True, None, "1", b"\x01", [1], {1: 1}]
    now = int(time.time())
    made = []
    for i in range(count):
        kind = i % 6
        if kind == 0:
            made.append(os.urandom(rng.randrange(0, 200)))
        elif kind == 1:  # a defect in the nonce or the iat
            body = (
                {1: GATE, 2: "open", 3: rng.choice(bad_ints), 4: now}
                if rng.random() < 0.5
                else {1: GATE, 2: "open", 3: now * 1000 + i, 4: rng.choice(bad_ints)}
            )
            made.append(cose.sign(cbor2.dumps(body), authority.command))
        elif kind == 2:  # wrong gate, unknown command, not a map
            body = rng.choice(
                (
                    {1: "g2", 2: "open", 3: now * 1000 + i, 4: now},
                    {1: GATE, 2: rng.choice(("OPEN", "reboot", "")), 3: now * 1000 + i, 4: now},
                    [GATE, "open", 1, now],
                    rng.choice(bad_ints),
                )
            )
            made.append(cose.sign(cbor2.dumps(body), authority.command))
        elif kind == 3:  # signed by a stranger, or by the issuer (a key without the command role)
            key = rng.choice((stranger, authority.issuer))
            made.append(encode_command(key, gate=GATE, command="open", nonce=now * 1000 + i))
        elif kind == 4:  # a good command with its signature or payload bytes changed
            blob = bytearray(encode_command(authority.command, gate=GATE, command="open", nonce=now * 1000 + i))
            blob[rng.randrange(len(blob) - 64, len(blob))] ^= 1 << rng.randrange(8)
            made.append(bytes(blob))
        else:  # a COSE structure with a hostile header
            protected = cbor2.dumps({1: rng.choice((-7, 2**63, "EdDSA")), 4: rng.choice((b"", 2**64, b"k" * 8))})
            made.append(cbor2.dumps([protected, {}, cbor2.dumps({1: GATE}), os.urandom(64)]))
    return made


def test_a_running_gate_survives_hostile_codes_and_messages(tmp_path, authority, broker):
    """Before #11 each of these stopped `gated run` (OverflowError), and the retained or queued
    copies made it a crash loop; a command queued for an hour opened the gate on reconnect."""
    now = int(time.time())
    dyn = issue(new_claims(event=EVENT, nbf=now - 60, exp=now + 3600), authority.issuer, dynamic=True)
    devsig = dyn.device_key.sign(ticket.devsig_message(dyn.claims.cti, 2**63))
    hostile_code = ticket.DYNAMIC_PREFIX + base45.encode(cbor2.dumps([dyn.cose, 2**63, devsig]))
    images = tmp_path / "images"
    for i in range(6):
        render_card(images, f"00-blank-{i}", None)
    render_card(images, "01-hostile", hostile_code)
    render_card(images, "02-blank", None)
    render_card(images, "03-ok", authority.ticket())
    cfg = gate_config(
        tmp_path,
        keyring=authority.keyring_dir,
        broker_url=broker.url,
        camera_source=f"files:{images}",
        site=SITE,
        gate=GATE,
        event=EVENT,
        camera={"fps": 10.0},
        timings={"relay_pulse_s": 0.05, "debounce_s": 0.3},
    )
    gate = GateProcess(write_config(tmp_path / "gated.toml", cfg)).start()
    publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    try:
        gate.wait_ready()
        scans = gate.wait_for(lambda: len(gate.scans()) >= 2 and gate.scans(), what="both codes scanned")
        assert [(s["decision"], s["reason"]) for s in scans] == [("deny", "malformed"), ("admit", "ok")]

        publisher.connect("127.0.0.1", broker.port)
        publisher.loop_start()
        hostile = [
            (
                revocation_topic(SITE, 2, 0),
                True,
                cose.sign(cbor2.dumps({1: SITE, 2: 2**63, 3: 0, 4: [], 5: [], 6: now}), authority.revocation),
            ),
            (beacon_topic(SITE), True, encode_beacon(authority.command, site=SITE, unix_ms=now * 1000, seq=2**63)),
            (
                command_topic(SITE, GATE),
                False,
                encode_command(authority.command, gate=GATE, command="open", nonce=2**63),
            ),
            (
                command_topic(SITE, GATE),
                False,
                encode_command(
                    authority.command, gate=GATE, command="open", nonce=time.time_ns() // 1_000_000, iat=now - 3600
                ),
            ),
        ]
        fuzzed = hostile_commands(random.Random(SEED), authority)
        hostile += [(command_topic(SITE, GATE), False, payload) for payload in fuzzed]
        for topic, retain, payload in hostile:
            publisher.publish(topic, payload, qos=1, retain=retain).wait_for_publish(10)
        gate.wait_for(
            lambda: any(e.get("code") == "malformed" for e in gate.logged("revocation update rejected")),
            what="the revocation update rejected",
        )
        expected = 2 + len(fuzzed)
        ignored = gate.wait_for(
            lambda: len(gate.logged("command ignored")) >= expected and gate.logged("command ignored"),
            what="every hostile command ignored",
        )
        assert len(ignored) == expected  # one line, one reason each
        assert [e["code"] for e in ignored[:2]] == ["malformed", "too_old"]
        assert {e["code"] for e in ignored} <= COMMAND_CODES
        assert {e["code"] for e in ignored} >= {"malformed", "unknown_key", "bad_signature", "wrong_gate"}
        assert not gate.logged("command")

        fresh = encode_command(authority.command, gate=GATE, command="lock", nonce=time.time_ns() // 1_000_000)
        publisher.publish(command_topic(SITE, GATE), fresh, qos=1).wait_for_publish(10)
        gate.wait_for(lambda: gate.logged("command"), what="a fresh command carried out")
        assert gate.logged("command")[0]["command"] == "lock"
        assert gate.terminate() == 0
    finally:
        publisher.disconnect()
        publisher.loop_stop()
        gate.stop_quietly()
