"""End to end: `gated run` as a subprocess, a files camera of ticket images (the issuer's own QR
symbols), gpiozero mock pins, a real Mosquitto. Every ticket decided right, the relay pulsed for
each admission, the events at the broker with a valid chain; SIGTERM exits 0; SIGKILL and a
restart lose no event and do not admit a used ticket again."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gated.central.issuer import issue, new_claims
from gated.core import revocation, scanned, ticket
from gated.gate import revocations
from gated.gate.store import GateStore
from tests.conftest import EVENT, SITE
from tests.support.frames import render_card
from tests.support.gatedaemon import EventCollector, GateProcess, NotifySocket, check_chain, gate_config, write_config

GATE = "g1"


def provision_revocations(state_dir: Path, authority, revoked: list[bytes]) -> None:
    """The revocation snapshot the gate starts with (as after its first contact with central)."""
    with GateStore(state_dir / "gate.db", site=SITE, gate=GATE) as store:
        blob = revocation.encode_updates(authority.revocation, site=SITE, version=1, add=revoked, iat=int(time.time()))[
            0
        ]
        assert (
            revocations.apply_update(store, blob, authority.keyring, site=SITE, now_ms=int(time.time() * 1000)).status
            != "rejected"
        )


def device_key(state_dir: Path):
    with GateStore(state_dir / "gate.db", site=SITE, gate=GATE) as store:
        return store.device_public_key


def make_config(tmp_path, authority, broker, images: Path, **sections) -> Path:
    sections = {"camera": {"fps": 10.0}, "timings": {"relay_pulse_s": 0.05, "debounce_s": 0.3}, **sections}
    cfg = gate_config(
        tmp_path,
        keyring=authority.keyring_dir,
        broker_url=broker.url,
        camera_source=f"files:{images}",
        site=SITE,
        gate=GATE,
        event=EVENT,
        **sections,
    )
    return write_config(tmp_path / "gated.toml", cfg)


CLEAN = "blur=0&motion=0&noise=0&glare=0&tilt=0&rotation=0&gradient=0&contrast=1&inverted=false"


def synthetic_gate(tmp_path, authority, broker, **sections) -> GateProcess:
    """A gate (started) whose camera is the simulator's, steered through tmp_path/sim.sock."""
    cfg = gate_config(
        tmp_path,
        keyring=authority.keyring_dir,
        broker_url=broker.url,
        camera_source=f"synthetic:?{CLEAN}",
        site=SITE,
        gate=GATE,
        event=EVENT,
        camera={"fps": 15.0},
        sim={"control_socket": str(tmp_path / "sim.sock")},
        **sections,
    )
    return GateProcess(write_config(tmp_path / "gated.toml", cfg)).start()


def relay_gate(tmp_path, authority, broker, *, debounce_s: float) -> GateProcess:
    """A synthetic gate on a hold-mode relay board with a passage beam (generic-relay): the relay
    holds until somebody breaks the beam, 30 s at most."""
    timings = {"relay_pulse_s": 0.05, "debounce_s": debounce_s, "passage_timeout_s": 30.0}
    return synthetic_gate(tmp_path, authority, broker, board="generic-relay", timings=timings)


@pytest.fixture
def collector(broker):
    c = EventCollector(broker.port, SITE, GATE)
    yield c
    c.close()


def test_gate_decides_every_ticket_reports_and_stops_cleanly(tmp_path, authority, broker, collector):
    now = int(time.time())
    ok_a, ok_b = authority.ticket(zon=("north",)), authority.ticket(typ="child")
    revoked_claims = authority.claims()
    stranger = Ed25519PrivateKey.generate()
    dynamic = issue(new_claims(event=EVENT, nbf=now - 60, exp=now + 3600), authority.issuer, dynamic=True)
    shown = [  # (image name, text, expected decision, expected reason) in the order the camera sees them
        # a second of nobody: codes read while the gate starts up wait in a queue, and two admissions
        # judged back to back would merge their relay pulses (reported to the turnstile's owner)
        *[(f"00-blank-{i}", None, None, None) for i in range(10)],
        ("01-ok-a", ok_a, "admit", "ok"),
        ("01b-blank", None, None, None),
        ("01c-blank", None, None, None),  # the relay pulse of one admission ends before the next
        ("02-ok-b", ok_b, "admit", "ok"),
        ("03-revoked", ticket.encode_static(revoked_claims, authority.issuer), "deny", "revoked"),
        ("04-expired", authority.ticket(nbf=now - 7200, exp=now - 3600), "deny", "expired"),
        ("05-wrong-event", authority.ticket(aud="OTHER-2026"), "deny", "wrong_event"),
        ("06-wrong-zone", authority.ticket(zon=("south",)), "deny", "wrong_zone"),
        ("07-unknown-key", ticket.encode_static(authority.claims(), stranger), "deny", "unknown_key"),
        ("08-static-copy", dynamic.text, "deny", "static_copy"),
        ("09-blank", None, None, None),
        ("10-ok-a-again", ok_a, "deny", "already_used"),
    ]
    images = tmp_path / "images"
    for name, text, _, _ in shown:
        render_card(images, name, text)
    provision_revocations(tmp_path / "state", authority, [revoked_claims.cti])
    config = make_config(
        tmp_path,
        authority,
        broker,
        images,
        sim={"control_socket": str(tmp_path / "sim.sock")},
        health={"textfile": str(tmp_path / "gated.prom")},
    )
    notify = NotifySocket(tmp_path / "notify.sock")
    gate = GateProcess(config, notify=notify).start()
    try:
        gate.wait_ready()
        expected = [(d, r) for _, text, d, r in shown if text is not None]
        scans = gate.wait_for(lambda: len(gate.scans()) >= len(expected) and gate.scans(), what="every ticket scanned")
        assert [(s["decision"], s["reason"]) for s in scans] == expected
        assert scans[0]["ticket"] == scans[-1]["ticket"]  # the used ticket, shown again

        from gated.gate.rehearsal.control import Client

        client = Client(tmp_path / "sim.sock")
        relay = client.request("state")["devices"]["relay"]
        client.close()
        assert relay["activations"] == 2 and relay["active"] is False  # one pulse per admission, and it ended

        collector.wait_for_seq(len(expected))
        gate.wait_for(lambda: collector.health and collector.health[-1]["scans"] == len(expected), what="health")
        assert gate.terminate() == 0
    finally:
        gate.stop_quietly()
        notify.close()
    assert gate.logged("gate stopped")
    assert notify.saw("READY=1") == 1 and notify.saw("WATCHDOG=1") >= 1 and notify.saw("STOPPING=1") == 1

    chain = collector.chain()
    check_chain(chain, device_key(tmp_path / "state"))
    assert [(e["kind"], e["decision"], e["reason"]) for e in chain] == [("scan", d, r) for d, r in expected]
    assert all(e["latency_us"] > 0 for e in chain)  # every scan came from a frame
    assert all(e["rev"] == 1 and e["zone"] == "north" for e in chain)
    health = collector.health[-1]
    assert (health["admits"], health["denies"], health["outbox"], health["rev"]) == (2, len(expected) - 2, 0, 1)
    assert health["rev_stale"] is False and health["store_ok"] is True and health["frames"] >= len(shown)
    prom = (tmp_path / "gated.prom").read_text()
    assert f'gated_admits_total{{site="{SITE}",gate="{GATE}"}} 2' in prom
    assert f'gated_mode{{site="{SITE}",gate="{GATE}",mode="online"}} 1' in prom


def test_sigkill_and_restart_lose_no_event_and_do_not_readmit(tmp_path, authority, broker):
    ok_a, ok_b, ok_c = authority.ticket(), authority.ticket(), authority.ticket()
    first, second = tmp_path / "first", tmp_path / "second"
    render_card(first, "01-a", ok_a)
    render_card(first, "02-b", ok_b)
    render_card(second, "01-a-again", ok_a)
    render_card(second, "02-c", ok_c)
    provision_revocations(tmp_path / "state", authority, [])

    broker.stop()  # the broker is down: the events wait in the gate's outbox
    gate = GateProcess(make_config(tmp_path, authority, broker, first)).start()
    try:
        gate.wait_ready()
        scans = gate.wait_for(lambda: len(gate.scans()) >= 2 and gate.scans(), what="two admissions")
        assert [s["decision"] for s in scans] == ["admit", "admit"]
        assert gate.kill() == -9
    finally:
        gate.stop_quietly()

    broker.start()
    collector = EventCollector(broker.port, SITE, GATE)
    gate = GateProcess(make_config(tmp_path, authority, broker, second)).start()
    try:
        gate.wait_ready()
        scans = gate.wait_for(lambda: len(gate.scans()) >= 2 and gate.scans(), what="two more scans")
        assert [(s["decision"], s["reason"]) for s in scans] == [("deny", "already_used"), ("admit", "ok")]
        assert [s["id"] for s in scans] == [f"{GATE}:3", f"{GATE}:4"]  # seq continues after the kill
        collector.wait_for_seq(4)
        assert gate.terminate() == 0
    finally:
        gate.stop_quietly()
        collector.close()
    chain = collector.chain()
    check_chain(chain, device_key(tmp_path / "state"))
    a, b, c = (scanned.read_code(t, authority.keyring).claims.cti.hex() for t in (ok_a, ok_b, ok_c))
    assert [(e["ticket"], e["decision"]) for e in chain] == [(a, "admit"), (b, "admit"), (a, "deny"), (c, "admit")]


def test_a_broken_config_exits_2_and_names_the_problem(tmp_path):
    (tmp_path / "gated.toml").write_text("[gate]\nsite = 'arena'\n")
    gate = GateProcess(tmp_path / "gated.toml").start()
    assert gate.process.wait(30) == 2
    gate._reader.join(5)
    assert any("gate.id: missing" in line for line in gate.raw)


def test_a_missing_keyring_fails_start_up(tmp_path, broker):
    images = tmp_path / "images"
    render_card(images, "blank", None)
    cfg = gate_config(
        tmp_path,
        keyring=tmp_path / "nowhere",
        broker_url=broker.url,
        camera_source=f"files:{images}",
        site=SITE,
        gate=GATE,
        event=EVENT,
    )
    gate = GateProcess(write_config(tmp_path / "gated.toml", cfg)).start()
    assert gate.process.wait(30) == 2
    gate._reader.join(5)
    failed = gate.logged("gate cannot run")
    assert failed and "no keyring here" in failed[0]["error"]


def test_fail_closed_without_a_current_revocation_list_until_one_arrives(tmp_path, authority, broker, collector):
    """when_stale = closed: no list yet, the gate is locked (scans denied `locked`, a `state` event);
    the central snapshot arrives over MQTT, the gate unlocks by itself and admits."""
    import paho.mqtt.client as mqtt

    ok_a = authority.ticket()
    images = tmp_path / "images"
    render_card(images, "01-blank", None)
    render_card(images, "02-ok-a", ok_a)
    config = make_config(
        tmp_path,
        authority,
        broker,
        images,
        revocations={"when_stale": "closed"},
        camera={"source": f"files:{images}?loop=1", "fps": 4.0},
    )
    gate = GateProcess(config).start()
    try:
        gate.wait_ready()
        gate.wait_for(lambda: gate.scans(), what="a scan while locked")
        assert gate.logged("revocations stale")[0]["policy"] == "closed"
        blob = revocation.encode_updates(authority.revocation, site=SITE, version=1, add=[], iat=int(time.time()))[0]
        publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        publisher.connect("127.0.0.1", broker.port)
        publisher.loop_start()
        publisher.publish(f"gated/v1/{SITE}/revocations/1/0", blob, qos=1, retain=True).wait_for_publish(10)
        publisher.disconnect()
        publisher.loop_stop()
        gate.wait_for(lambda: any(s["decision"] == "admit" for s in gate.scans()), what="an admission")
        gate.wait_for(lambda: gate.scans()[-1]["reason"] == "already_used", what="the ticket shown again")
        assert gate.terminate() == 0
    finally:
        gate.stop_quietly()
    reasons = [s["reason"] for s in gate.scans()]
    first_admit = reasons.index("ok")
    assert first_admit >= 1 and set(reasons[:first_admit]) == {"locked"}
    assert set(reasons[first_admit + 1 :]) == {"already_used"}
    states = [e["state"] for e in collector.chain() if e["kind"] == "state"]
    assert states[:2] == ["locked", "online"]
    said = [m["state"] for m in collector.status]
    assert said[0] == "locked" and "online" in said and said[-1] == "offline"  # retained status follows the mode
    assert [m["rev"] for m in collector.status if m["state"] == "online"][0] == 1
    check_chain(collector.chain(), device_key(tmp_path / "state"))


def test_the_simulator_steers_the_camera_and_reads_the_relay_through_the_control_socket(tmp_path, authority, broker):
    from gated.gate.rehearsal.control import Client

    ok_a = authority.ticket()
    gate = synthetic_gate(tmp_path, authority, broker)
    try:
        gate.wait_ready()
        client = Client(tmp_path / "sim.sock")
        assert client.request("ping")["pid"] == gate.process.pid
        assert gate.scans() == []  # nobody in front of the camera yet
        client.request("show", text=ok_a)
        gate.wait_for(lambda: gate.scans(), what="the shown ticket scanned")
        client.request("show", text=None)
        gate.wait_for(lambda: client.request("state")["devices"]["relay"]["activations"] == 1, what="one relay pulse")
        client.close()
        assert gate.terminate() == 0
    finally:
        gate.stop_quietly()
    assert [(s["decision"], s["reason"]) for s in gate.scans()] == [("admit", "ok")]
    assert not (tmp_path / "sim.sock").exists()  # the control socket goes with the gate


def test_revocation_staleness_rule():
    from gated.gate.health import revocation_staleness
    from gated.gate.store import RevocationState

    now = 1_800_000_000
    fresh = RevocationState(site=SITE, version=3, iat=now - 100, applied_ms=(now - 90) * 1000, stale=False)
    assert revocation_staleness(fresh, now, 3600) is None
    assert "no revocation list" in revocation_staleness(RevocationState(None, 0, 0, 0, False), now, 3600)
    assert "gap" in revocation_staleness(RevocationState(SITE, 3, now, now * 1000, True), now, 3600)
    assert "3700 s old" in revocation_staleness(RevocationState(SITE, 3, now - 3700, now * 1000, False), now, 3600)


def test_logs_are_json_lines_under_systemd_and_readable_on_a_terminal(monkeypatch):
    import io
    import json
    import logging

    import structlog

    from gated import logging as gated_logging

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setenv("JOURNAL_STREAM", "8:12345")
    assert gated_logging.wants_json("auto", Terminal())
    monkeypatch.delenv("JOURNAL_STREAM")
    assert not gated_logging.wants_json("auto", Terminal())
    assert gated_logging.wants_json("auto", io.StringIO())  # a pipe or a file: JSON
    handlers = logging.getLogger().handlers[:]
    try:
        out = io.StringIO()
        gated_logging.setup("info", "json", out)
        gated_logging.get("gated.test").info("scan", decision="admit", latency_us=1234)
        gated_logging.get("gated.test").debug("not shown at info")
        logging.getLogger("paho").warning('a "quoted" library message')
        lines = [json.loads(line) for line in out.getvalue().splitlines()]
        assert [(e["event"], e["level"]) for e in lines] == [
            ("scan", "info"),
            ('a "quoted" library message', "warning"),
        ]
        assert lines[0]["decision"] == "admit" and lines[0]["timestamp"].endswith("Z")
        term = Terminal()
        gated_logging.setup("info", "console", term)
        gated_logging.get("gated.test").info("scan", decision="deny")
        assert "scan" in term.getvalue() and "decision" in term.getvalue() and not term.getvalue().startswith("{")
    finally:
        structlog.reset_defaults()
        logging.getLogger().handlers[:] = handlers


def test_a_stalled_camera_is_reopened_and_the_gate_scans_again(tmp_path, authority, broker):
    """A hung camera (the simulator's `stall`): supervision notices, reopens it, and scanning resumes."""
    from gated.gate.rehearsal.control import Client

    ok_a = authority.ticket()
    gate = synthetic_gate(tmp_path, authority, broker)
    try:
        gate.wait_ready()
        client = Client(tmp_path / "sim.sock")
        client.request("stall")  # until the gate's supervision reopens it
        gate.wait_for(
            lambda: any("reopening" in e.get("message", "") for e in gate.logged("camera")),
            what="supervision reopening the camera",
        )
        client.request("show", text=ok_a)
        gate.wait_for(lambda: gate.scans(), what="a scan after the stall")
        client.close()
        assert gate.terminate() == 0
    finally:
        gate.stop_quietly()
    assert [(s["decision"], s["reason"]) for s in gate.scans()] == [("admit", "ok")]


def test_time_beacons_reach_the_clock_and_an_uncertain_clock_denies(tmp_path, authority, broker, collector):
    """No NTP trust and no beacon: tickets are denied (`when_uncertain = deny`); a signed beacon
    published by central is accepted through the uplink, and the same ticket is admitted."""
    import paho.mqtt.client as mqtt

    from gated.core.beacon import encode_beacon
    from gated.gate.clock import beacon_topic, system_ntp_synchronized

    unlimited = authority.ticket(ent=0)
    images = tmp_path / "images"
    render_card(images, "01-blank", None)
    render_card(images, "02-unlimited", unlimited)
    config = make_config(
        tmp_path,
        authority,
        broker,
        images,
        camera={"source": f"files:{images}?loop=1", "fps": 4.0},
        clock={"trust_system_clock": False, "when_uncertain": "deny", "beacons": True},
    )
    gate = GateProcess(config).start()
    try:
        gate.wait_ready()
        gate.wait_for(lambda: gate.scans(), what="a first scan")
        beacon = encode_beacon(authority.command, site=SITE, unix_ms=time.time_ns() // 1_000_000, seq=1)
        publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        publisher.connect("127.0.0.1", broker.port)
        publisher.loop_start()
        publisher.publish(beacon_topic(SITE), beacon, qos=1, retain=True).wait_for_publish(10)
        publisher.disconnect()
        publisher.loop_stop()
        gate.wait_for(lambda: any(h.get("beacon_age_s") is not None for h in collector.health), what="beacon in health")
        gate.wait_for(lambda: gate.scans()[-1]["decision"] == "admit", what="an admission with a trusted clock")
        assert gate.terminate() == 0
    finally:
        gate.stop_quietly()
    reasons = [s["reason"] for s in gate.scans()]
    first_ok = reasons.index("ok")
    if not system_ntp_synchronized():  # this machine's clock alone is not trusted: denied until the beacon
        assert first_ok >= 1 and set(reasons[:first_ok]) == {"not_yet_valid"}
    assert collector.health[-1]["clock_uncertain"] == 0


def test_passage_sensor_confirms_an_admission_through_the_daemon(tmp_path, authority, broker, collector):
    """A hold-mode board with a light beam: the relay holds until somebody breaks the beam, the
    `passage: passed` event follows the scan, and the relay lets go."""
    from gated.gate.rehearsal.control import Client

    ok_a = authority.ticket()
    gate = relay_gate(tmp_path, authority, broker, debounce_s=0.5)
    try:
        gate.wait_ready()
        client = Client(tmp_path / "sim.sock")
        client.request("show", text=ok_a)
        gate.wait_for(lambda: gate.scans(), what="the scan")
        client.request("show", text=None)
        relay = lambda: client.request("state")["devices"]["relay"]["active"]  # noqa: E731
        gate.wait_for(relay, what="the relay held open")
        client.request("drive", device="passage", active=True)  # the visitor walks through the beam
        client.request("drive", device="passage", active=False)
        gate.wait_for(lambda: not relay(), what="the relay let go")
        collector.wait_for_seq(2)
        client.close()
        assert gate.terminate() == 0
    finally:
        gate.stop_quietly()
    scan, passage = collector.chain()[:2]
    assert (scan["kind"], scan["decision"]) == ("scan", "admit")
    assert (passage["kind"], passage["ref"], passage["result"]) == ("passage", scan["id"], "passed")


def kept_up_after_the_green(gate: GateProcess, tmp_path, text: str, held_s: float):
    """Once the gate is ready, show `text` until it is judged and keep it up `held_s` (read on every
    frame): one green and nothing after it. The simulator's control client, to go on with."""
    from gated.gate.rehearsal.control import Client

    gate.wait_ready()
    client = Client(tmp_path / "sim.sock")
    client.request("show", text=text)
    gate.wait_for(lambda: gate.scans(), what="the scan")
    time.sleep(held_s)  # still held up, read on every frame
    assert [(s["decision"], s["reason"]) for s in gate.scans()] == [("admit", "ok")]
    return client


def test_a_visitor_who_keeps_the_phone_up_after_the_green_gets_no_red(tmp_path, authority, broker):
    """Issue 27: a code read is judged once. An admitted visitor who keeps the ticket up (3 s, six
    times the hold-off) while the arm waits for them is not judged again: no `already_used` red
    after the green, no re-use attempt in the ledger. Once they have passed (the beam), the same
    code still held up is somebody else's attempt: judged again, and refused."""
    ok_a = authority.ticket()
    gate = relay_gate(tmp_path, authority, broker, debounce_s=0.5)
    try:
        client = kept_up_after_the_green(gate, tmp_path, ok_a, 3.0)
        client.request("drive", device="passage", active=True)  # the visitor walks through the beam
        client.request("drive", device="passage", active=False)
        gate.wait_for(lambda: len(gate.scans()) >= 2, what="the code still held up, judged again")
        client.request("show", text=None)
        client.close()
        assert gate.terminate() == 0
    finally:
        gate.stop_quietly()
    assert [(s["decision"], s["reason"]) for s in gate.scans()][:2] == [("admit", "ok"), ("deny", "already_used")]


def test_without_a_passage_sensor_a_phone_kept_up_after_the_green_gets_no_red(tmp_path, authority, broker):
    """The same on a board that cannot tell when the visitor passed (relay-only: a pulse to a lane
    controller that counts its own passages): the code held up for 4 s, four times the hold-off,
    gets its green and nothing after it (formerly: a red `already_used` and a re-use attempt in the
    ledger every hold-off). Out of sight for the hold-off and shown again, it
    is a new presentation: a phone handed back over the lane gets the red."""
    ok_a = authority.ticket()
    # a hold-off long enough that a busy test machine's stall of the camera thread makes no gap
    gate = synthetic_gate(tmp_path, authority, broker, board="relay-only", timings={"debounce_s": 1.0})
    try:
        client = kept_up_after_the_green(gate, tmp_path, ok_a, 4.0)
        gate.hide(client, ok_a)
        assert gate.judge(client, ok_a)["reason"] == "already_used"  # out of sight for the hold-off, shown again
        client.close()
        assert gate.terminate() == 0
    finally:
        gate.stop_quietly()
    assert [(s["decision"], s["reason"]) for s in gate.scans()] == [("admit", "ok"), ("deny", "already_used")]


def shown_while_the_store_waits(tmp_path, authority, broker, text: str, *, shown_s: float, hidden_s: float = 0.0):
    """A relay gate (hold-off 0.5 s) whose gate.db write lock another process holds, as a slow SD
    card would, while `text` is shown for `shown_s` and then taken away for `hidden_s`: the camera
    reads the code all along and queues it every hold-off while the first copy's commit waits.
    Returns the gate's scans (decision, reason) and the log events about skipped copies."""
    import sqlite3

    from gated.gate.rehearsal.control import Client

    gate = relay_gate(tmp_path, authority, broker, debounce_s=0.5)
    try:
        gate.wait_ready()
        client = Client(tmp_path / "sim.sock")
        blocker = sqlite3.connect(tmp_path / "state" / "gate.db", isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # the gate's next commit waits for this
        try:
            client.request("show", text=text)
            time.sleep(shown_s)
            if hidden_s:
                client.request("show", text=None)
                time.sleep(hidden_s)
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        gate.wait_for(lambda: gate.scans(), what="the scan")
        time.sleep(1.5)  # the queued copies are taken in turn
        client.request("show", text=None)
        client.close()
        assert gate.terminate() == 0
    finally:
        gate.stop_quietly()
    skipped = [e["event"] for e in gate.logs if str(e.get("event", "")).startswith("stale scan skipped")]
    return [(s["decision"], s["reason"]) for s in gate.scans()], skipped


def test_a_slow_store_does_not_judge_one_presentation_twice(tmp_path, authority, broker):
    """The owner thread falls behind the camera by more than the hold-off (the store's commit
    waits 2.5 s): the camera queues the held-up code again every hold-off meanwhile. Once the first
    copy is admitted, the stale copies are not judged (they were `already_used` reds after the green)."""
    scans, skipped = shown_while_the_store_waits(tmp_path, authority, broker, authority.ticket(), shown_s=2.5)
    assert scans == [("admit", "ok")]
    assert "stale scan skipped: already admitted, still in view" in skipped


def test_a_slow_store_gives_a_denied_code_one_red_not_one_per_hold_off(tmp_path, authority, broker):
    """The same lag (the commit waits 3 s) with a ticket for another event, taken away before the
    first red (for longer than the Tracker reads it from its recent frames): the copies captured
    before that judgement are the same presentation: one red and one ledger record, not one per
    hold-off of the wait (the daemon before this gave four or five `wrong_event` reds in a row)."""
    other = authority.ticket(aud="ANOTHER-EVENT")
    scans, skipped = shown_while_the_store_waits(tmp_path, authority, broker, other, shown_s=2.0, hidden_s=1.0)
    assert scans == [("deny", "wrong_event")]
    assert "stale scan skipped: judged after this frame was taken" in skipped


def test_a_code_refused_for_good_gets_one_red_however_long_it_stays_in_view(tmp_path, authority, broker):
    """A QR code that is no ticket (a sign in the camera's view) stays in view for six hold-offs:
    one red and one ledger record, not one every hold-off; a ticket refused only for now
    (`not_yet_valid`: the time may come) held up for four is judged again after each hold-off.
    (The hold-off is long enough that a busy test machine's stall of the camera thread does not
    make a gap in the sightings.)"""
    from gated.gate.rehearsal.control import Client

    early = authority.ticket(nbf=int(time.time()) + 3600)
    gate = relay_gate(tmp_path, authority, broker, debounce_s=0.75)
    try:
        gate.wait_ready()
        client = Client(tmp_path / "sim.sock")
        for text, shown_s in (("https://venue.example/app", 4.5), (early, 3.0)):
            client.request("show", text=text)
            time.sleep(shown_s)
            client.request("show", text=None)
            time.sleep(1.5)
        client.close()
        assert gate.terminate() == 0
    finally:
        gate.stop_quietly()
    reasons = [s["reason"] for s in gate.scans()]
    assert reasons.count("malformed") == 1
    assert reasons.count("not_yet_valid") >= 3
