"""The gate's clock through its public interfaces (issue #11 items 5 and 6): `gated run` as a
subprocess with a synthetic camera steered through its control socket, a real Mosquitto, and the
`gated clock reset` / `gated doctor` commands.

- A gate SIGKILLed and restarted while its broker is down keeps its clock (same boot) and admits.
- Hostile messages on the time topic (seeded, bounded): the gate stays up, logs a reason for each,
  and a correctly signed beacon far in the future does not move its clock beyond the bound.
- A clock an older release let a fast beacon poison: doctor says so, `gated clock reset` clears it.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from pathlib import Path

import cbor2
import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gated.core import cose
from gated.core.beacon import encode_beacon
from gated.gate.rehearsal.control import Client
from gated.gate.store import GateStore
from gated.topics import beacon_topic, command_topic
from tests.conftest import EVENT, SITE
from tests.support.gatedaemon import EventCollector, GateProcess, gate_config, write_config
from tests.support.signing import encode_command

GATED = str(Path(sys.executable).with_name("gated"))
GATE = "g1"
STEP_S = 60.0
YEAR_MS = 365 * 86400 * 1000


def config(tmp_path, authority, broker, **clock) -> Path:
    cfg = gate_config(
        tmp_path,
        keyring=authority.keyring_dir,
        broker_url=broker.url,
        camera_source="synthetic:",
        site=SITE,
        gate=GATE,
        event=EVENT,
        sim={"control_socket": str(tmp_path / "sim.sock")},
        clock={"max_beacon_step_s": STEP_S, **clock},
        logging={"level": "debug"},
    )
    return write_config(tmp_path / "gated.toml", cfg)


def scan(gate: GateProcess, sock: Path, text: str) -> dict:
    """Show one code to the gate's camera; the scan event it logs."""
    client = Client(sock, timeout=5.0)
    try:
        return gate.judge(client, text)
    finally:
        client.close()


def publish(broker, messages: list[bytes], *, retain: bool = False) -> None:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    try:
        for payload in messages:
            client.publish(beacon_topic(SITE), payload, qos=1, retain=retain).wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()


def run_cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([GATED, *args], capture_output=True, text=True, timeout=60)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def test_a_gate_killed_during_a_broker_outage_keeps_its_clock(tmp_path, authority, broker):
    publish(broker, [encode_beacon(authority.command, site=SITE, unix_ms=now_ms(), seq=now_ms())], retain=True)
    # the host's NTP ignored (synchronised or not): the beacons are the only source, on any host
    path = config(tmp_path, authority, broker, trust_system_clock=False, ntp="ignore")
    sock = tmp_path / "sim.sock"
    gate = GateProcess(path).start()
    try:
        gate.wait_ready()
        assert scan(gate, sock, authority.ticket())["decision"] == "admit"
        broker.stop()
        gate.kill()  # SIGKILL inside the outage; a process restart, not a reboot
        gate.start()
        gate.wait_ready()
        later = scan(gate, sock, authority.ticket())
        assert (later["decision"], later["reason"]) == ("admit", "ok"), later
    finally:
        gate.stop_quietly()


def send_commands(broker, messages: list[bytes]) -> None:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    try:
        for payload in messages:
            client.publish(command_topic(SITE, GATE), payload, qos=1).wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()


def test_a_commands_age_is_judged_by_the_gates_trusted_clock(tmp_path, authority, broker):
    """Issue #11 item 12: a command's iat is compared with the gate's trusted clock, not the wall clock;
    while that clock is untrusted, `open` and `unlock` (whose age cannot be judged) are refused."""
    path = config(
        tmp_path, authority, broker, trust_system_clock=False, ntp="ignore", when_uncertain="deny", max_offset_s=3600.0
    )  # no source at first; then a beacon 50 s ahead is believed
    gate = GateProcess(path).start()

    def command(name: str, *, iat: float) -> bytes:
        return encode_command(authority.command, gate=GATE, command=name, nonce=time.time_ns(), iat=int(iat))

    def outcomes(count: int) -> list[tuple[str, str]]:
        def seen():
            lines = [e for e in list(gate.logs) if e.get("event") in ("command", "command ignored")]
            return len(lines) >= count and lines

        return [(e["event"], e.get("code") or e.get("command")) for e in gate.wait_for(seen, what="commands")]

    try:
        gate.wait_ready()
        # untrusted clock (no NTP by configuration, no beacon): a fresh `open` cannot be judged; `lock` runs
        send_commands(broker, [command("open", iat=time.time()), command("lock", iat=time.time())])
        assert outcomes(2) == [("command ignored", "clock_uncertain"), ("command", "lock")]
        # a beacon says the time is 50 s ahead of this wall clock: the gate's time, certain (max_offset_s)
        publish(broker, [encode_beacon(authority.command, site=SITE, unix_ms=now_ms() + 50_000, seq=now_ms())])
        gate.wait_for(lambda: gate.logged("beacon"), what="the beacon taken")
        # 20 s old by the wall clock, 70 s old by the gate's clock: too old (limit 60 s)
        send_commands(broker, [command("unlock", iat=time.time() - 20), command("unlock", iat=time.time() + 45)])
        assert outcomes(4)[2:] == [("command ignored", "too_old"), ("command", "unlock")]
        assert gate.terminate() == 0
    finally:
        gate.stop_quietly()


def hostile_beacons(authority, rng: random.Random, count: int) -> list[tuple[str, bytes]]:
    """(kind, payload) pairs; the correctly signed ones carry rising sequences from now."""
    seq = now_ms()
    stranger = Ed25519PrivateKey.generate()
    out: list[tuple[str, bytes]] = []

    def signed(body, key=None) -> bytes:
        return cose.sign(cbor2.dumps(body), key or authority.command)

    for _ in range(count):
        kind = rng.choice(
            [
                "garbage",
                "cbor_not_cose",
                "wrong_types",
                "negative",
                "huge",
                "wrong_site",
                "replayed",
                "old_seq",
                "far_future",
                "good",
                "stranger",
                "tampered",
                "not_a_map",
                "empty",
            ]
        )
        seq += rng.randint(1, 1000)
        if kind == "garbage":
            payload = rng.randbytes(rng.randint(1, 300))
        elif kind == "cbor_not_cose":
            payload = cbor2.dumps([1, "two", {3: b"four"}])
        elif kind == "wrong_types":
            payload = signed({1: SITE, 2: "now", 3: seq})
        elif kind == "negative":
            payload = signed({1: SITE, 2: -rng.randint(1, 2**40), 3: seq})
        elif kind == "huge":
            payload = signed({1: SITE, 2: rng.choice([2**63 - 1, 2**64 - 1, 2**64, 2**200]), 3: seq})
        elif kind == "wrong_site":
            payload = encode_beacon(authority.command, site="elsewhere", unix_ms=now_ms(), seq=seq)
        elif kind == "replayed":
            payload = out[-1][1] if out else b"\xa0"
        elif kind == "old_seq":
            payload = encode_beacon(authority.command, site=SITE, unix_ms=now_ms(), seq=rng.randint(0, 1000))
        elif kind == "far_future":
            payload = encode_beacon(
                authority.command, site=SITE, unix_ms=now_ms() + rng.choice([YEAR_MS, 10**9, 3600_000]), seq=seq
            )
        elif kind == "good":
            payload = encode_beacon(authority.command, site=SITE, unix_ms=now_ms(), seq=seq)
        elif kind == "stranger":
            payload = encode_beacon(stranger, site=SITE, unix_ms=now_ms(), seq=seq)
        elif kind == "tampered":
            protected, unprotected, body, sig = cbor2.loads(
                encode_beacon(authority.command, site=SITE, unix_ms=now_ms(), seq=seq)
            )
            payload = cbor2.dumps([protected, unprotected, cbor2.dumps({1: SITE, 2: now_ms() + YEAR_MS, 3: seq}), sig])
        elif kind == "not_a_map":
            payload = signed([SITE, now_ms(), seq])
        else:
            payload = b""
        out.append((kind, payload))
    out.append(("far_future", encode_beacon(authority.command, site=SITE, unix_ms=now_ms() + YEAR_MS, seq=seq + 1)))
    return out


REASONS = {
    "accepted",
    "malformed",
    "unsupported",
    "unknown_key",
    "bad_signature",
    "wrong_site",
    "not_newer",
    "too_far_ahead",
}


def beacon_logs(gate: GateProcess) -> list[dict]:
    return [e for e in list(gate.logs) if e.get("event") in ("beacon", "beacon ignored")]


def test_hostile_beacons_leave_a_running_gate_up_and_its_clock_within_the_bound(tmp_path, authority, broker):
    rng = random.Random(1111)
    messages = hostile_beacons(authority, rng, 60)
    path = config(tmp_path, authority, broker, trust_system_clock=True)  # as if NTP were synchronised
    sock = tmp_path / "sim.sock"
    collector = EventCollector(broker.port, SITE, GATE)
    gate = GateProcess(path).start()
    try:
        gate.wait_ready()
        publish(broker, [payload for _, payload in messages])
        logs = gate.wait_for(
            lambda: len(beacon_logs(gate)) >= len(messages) and beacon_logs(gate),
            what="a log line for every beacon message",
        )
        assert len(logs) == len(messages)
        assert all(e.get("reason") in REASONS for e in logs), logs
        # a replayed message meets the fate of the one it repeats, except that a beacon taken once is not
        # newer the second time; the first message has nothing to repeat (b"\xa0": not COSE)
        previous = "malformed"
        for (kind, _), entry in zip(messages, logs):
            expected = {
                "garbage": "malformed",
                "cbor_not_cose": "malformed",
                "wrong_types": "malformed",
                "negative": "malformed",
                "huge": "malformed",
                "wrong_site": "wrong_site",
                "old_seq": "not_newer",
                "far_future": "too_far_ahead",
                "good": "accepted",
                "stranger": "unknown_key",
                "tampered": "bad_signature",
                "not_a_map": "malformed",
                "empty": "malformed",
                "replayed": "not_newer" if previous == "accepted" else previous,
            }[kind]
            assert entry["reason"] == expected, (kind, entry)
            previous = expected
        assert gate.process.poll() is None
        # the clock stayed where NTP has it: a valid ticket is admitted, health shows no big offset
        assert scan(gate, sock, authority.ticket())["decision"] == "admit"
        gate.wait_for(lambda: collector.health and collector.health[-1]["clock_uncertain"] == 0, what="health")
        offset = collector.health[-1]["clock_offset_ms"]
        assert offset is None or abs(offset) <= STEP_S * 1000
        assert gate.terminate() == 0
    finally:
        gate.stop_quietly()
        collector.close()
    with GateStore(tmp_path / "state" / "gate.db", site=SITE, gate=GATE) as store:
        assert store.get_value("clock.trusted_ms") <= now_ms() + STEP_S * 1000
        assert json.loads(store.get_value("clock.disagreement"))["source"] == "ntp"

    doctor = run_cli("doctor", "--config", str(path), "--skip", "camera", "--skip", "broker")
    clock_line = next(line for line in doctor.stdout.splitlines() if line.split()[1:2] == ["clock"])
    assert clock_line.startswith("warn") and "disagree" in clock_line and "refused" in clock_line, doctor.stdout
    reset = run_cli("clock", "reset", "--config", str(path))
    assert reset.returncode == 0, reset.stderr
    doctor = run_cli("doctor", "--config", str(path), "--skip", "camera", "--skip", "broker")
    clock_line = next(line for line in doctor.stdout.splitlines() if line.split()[1:2] == ["clock"])
    assert clock_line.startswith("ok"), doctor.stdout


def test_a_poisoned_clock_is_shown_by_doctor_and_cleared_by_clock_reset(tmp_path, authority, broker):
    path = config(tmp_path, authority, broker, trust_system_clock=True)
    (tmp_path / "state").mkdir()
    with GateStore(tmp_path / "state" / "gate.db", site=SITE, gate=GATE) as store:
        store.set_value("clock.trusted_ms", now_ms() + YEAR_MS)  # what a fast beacon left behind before the bound
        store.set_value("clock.beacon_seq", now_ms() + YEAR_MS)
    doctor = run_cli("doctor", "--config", str(path), "--skip", "camera", "--skip", "broker")
    clock_line = next(line for line in doctor.stdout.splitlines() if line.split()[1:2] == ["clock"])
    assert clock_line.startswith("FAIL") and "ahead of this clock" in clock_line and "gated clock reset" in clock_line

    reset = run_cli("clock", "reset", "--config", str(path))
    assert reset.returncode == 0, reset.stderr
    assert "clock trust reset" in reset.stdout and "beacon sequence" in reset.stdout
    publish(broker, [encode_beacon(authority.command, site=SITE, unix_ms=now_ms(), seq=now_ms())], retain=True)
    gate = GateProcess(path).start()
    try:
        gate.wait_ready()
        decision = scan(gate, tmp_path / "sim.sock", authority.ticket())
        assert (decision["decision"], decision["reason"]) == ("admit", "ok")
        gate.wait_for(lambda: any(e.get("reason") == "accepted" for e in beacon_logs(gate)), what="the beacon taken")
    finally:
        gate.stop_quietly()


def test_clock_reset_without_a_state_database_says_so(tmp_path, authority, broker):
    reset = run_cli("clock", "reset", "--config", str(config(tmp_path, authority, broker)))
    assert reset.returncode == 2 and "no state database" in reset.stderr


def test_a_signed_clock_reset_command_clears_a_running_gates_poisoned_clock(tmp_path, authority, broker):
    from gated.topics import command_topic
    from tests.support.signing import encode_command

    path = config(tmp_path, authority, broker, trust_system_clock=True)
    (tmp_path / "state").mkdir()
    with GateStore(tmp_path / "state" / "gate.db", site=SITE, gate=GATE) as store:
        store.set_value("clock.trusted_ms", now_ms() + YEAR_MS)  # what a fast beacon left behind before the bound
    sock = tmp_path / "sim.sock"
    gate = GateProcess(path).start()
    try:
        gate.wait_ready()
        poisoned = scan(gate, sock, authority.ticket())
        assert (poisoned["decision"], poisoned["reason"]) == ("deny", "expired")  # judged a year from now
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        client.connect("127.0.0.1", broker.port)
        client.loop_start()
        client.publish(
            command_topic(SITE, GATE),
            encode_command(authority.command, gate=GATE, command="clock_reset", nonce=now_ms()),
            qos=1,
        ).wait_for_publish(10)
        client.disconnect()
        client.loop_stop()
        gate.wait_for(lambda: gate.logged("clock trust reset by command"), what="the reset")
        after = scan(gate, sock, authority.ticket())
        assert (after["decision"], after["reason"]) == ("admit", "ok")
    finally:
        gate.stop_quietly()
