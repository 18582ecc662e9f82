"""The uplink against a real Mosquitto: ordered signed events, broker loss, a SIGKILLed gate,
revocations while offline, forged/replayed/rolled-back updates, cross-gate anti-passback,
signed commands, retained status and its last will."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from gated import keys
from gated.central.publisher import publish_revocations
from gated.core import events, revocation
from gated.core.reasons import Reason
from gated.gate.store import GateStore
from gated.gate.uplink import Uplink
from gated.gate.validate import scan_fields, validate
from gated.topics import command_topic, events_topic, revocation_topic, status_topic
from tests.conftest import SITE
from tests.support.broker import Broker
from tests.support.gateproc import spawn
from tests.support.signing import encode_command
from tests.support.uplink import LedgerThread, Listener, device_keyring, fast_settings, ledger_count, pump


def make_uplink(store, broker, keyring, **kw) -> Uplink:
    return Uplink(store=store, keyring=keyring, settings=fast_settings(broker.url), site=SITE, gate=store.gate, **kw)


def state_events(store, n: int) -> None:
    for _ in range(n):
        store.record_event({"kind": "state", "state": "online", "rev": 0}, time.time_ns() // 1_000_000)


def admit(store, ctx, keyring, text: str):
    decision = validate(text, keyring, ctx, store, time.time())
    if decision.admit:
        store.record_scan(
            scan_fields(decision, ctx, store.revocation_state().version),
            time.time_ns() // 1_000_000,
            admit_cti=decision.cti,
            confirmed=True,
        )
    return decision


def test_events_arrive_in_order_with_valid_chain_and_signatures(broker, store, authority, tmp_path):
    listener = Listener(broker.port, events_topic(SITE, "g1"))
    state_events(store, 120)
    uplink = make_uplink(store, broker, authority.keyring)
    uplink.start()
    try:
        pump([uplink], lambda: len(listener.on(events_topic(SITE, "g1"))) >= 120, what="120 events")
        pump([uplink], lambda: store.outbox_depth() == 0, what="an empty outbox")
    finally:
        uplink.stop()
        listener.close()
    received = [json.loads(p) for p in listener.on(events_topic(SITE, "g1"))]
    assert [e["seq"] for e in received] == list(range(1, 121))
    prev = events.GENESIS
    for event in received:
        assert events.check_seal(event, store.device_public_key) == []
        assert event["prev"] == prev and event["id"] == f"g1:{event['seq']}"
        prev = event["hash"]
    assert uplink.delivered == 120


def test_broker_stopped_mid_stream_and_restarted_loses_nothing(tmp_path, store, authority):
    broker = Broker(tmp_path / "broker").start()
    ring = device_keyring(tmp_path / "ring", store)
    uplink = make_uplink(store, broker, authority.keyring)
    made = 0
    try:
        with LedgerThread(tmp_path / "ledger.db", broker.url, SITE, keyring=ring) as ledger:
            uplink.start()
            for _round in range(3):
                for _ in range(100):
                    state_events(store, 1)
                    made += 1
                    uplink.poll()
                broker.stop()  # SIGTERM: mosquitto saves its queues and retained messages, then exits
                state_events(store, 50)  # the gate goes on while the broker is away
                made += 50
                uplink.poll(0.05)
                broker.start()
            pump([uplink], lambda: store.outbox_depth() == 0, what="the outbox to drain")
            deadline = time.monotonic() + 20
            while ledger.count() < made and time.monotonic() < deadline:
                time.sleep(0.05)
            report = ledger.report()
    finally:
        uplink.stop()
        broker.stop()
    g = report["gates"]["g1"]
    assert (g["events"], g["last_seq"], g["missing"], g["chain_breaks"], g["bad_signatures"]) == (made, made, 0, 0, 0)
    assert g["signatures_checked"] and report["clean"]


def test_gate_sigkilled_with_outbox_rows_delivers_them_after_restart(tmp_path, authority):
    broker = Broker(tmp_path / "broker")  # not started: the gate makes its events while the broker is away
    db = tmp_path / "gate.db"
    args = ["--db", str(db), "--site", SITE, "--gate", "g9", "--broker", broker.url]
    gate = spawn(*args, "--make", "40")
    try:
        assert gate.stdout.readline().split() == ["ready", "40", "40"]
        time.sleep(0.3)  # it is trying to connect now
        gate.send_signal(signal.SIGKILL)
        gate.wait(10)
        with GateStore(db) as store:
            assert store.outbox_depth() == 40
            ring = device_keyring(tmp_path / "ring", store)
        broker.start()
        with LedgerThread(tmp_path / "ledger.db", broker.url, SITE, keyring=ring) as ledger:
            status = Listener(broker.port, status_topic(SITE, "g9"))
            gate = spawn(*args)
            assert gate.stdout.readline().split()[0] == "ready"
            deadline = time.monotonic() + 20
            while ledger.count() < 40 and time.monotonic() < deadline:
                time.sleep(0.05)
            # the gate dies again, this time connected: its will tells everybody it is offline
            gate.send_signal(signal.SIGKILL)
            gate.wait(10)
            deadline = time.monotonic() + 10
            while (
                not any(json.loads(p)["state"] == "offline" for p in status.on(status_topic(SITE, "g9")))
                and time.monotonic() < deadline
            ):
                time.sleep(0.05)
            states = [json.loads(p)["state"] for p in status.on(status_topic(SITE, "g9"))]
            status.close()
            report = ledger.report()
    finally:
        if gate.poll() is None:
            gate.kill()
            gate.wait(10)
        broker.stop()
    g = report["gates"]["g9"]
    assert (g["events"], g["missing"], g["chain_breaks"]) == (40, 0, 0) and report["clean"]
    assert states[0] == "online" and states[-1] == "offline"


def test_revocation_published_while_gate_offline_is_applied_on_reconnect(broker, store, authority):
    uplink = make_uplink(store, broker, authority.keyring)
    uplink.start()
    pump([uplink], lambda: uplink.connected, what="a connection")
    uplink.stop()  # the gate is away (its session stays on the broker)
    revoked = os.urandom(16)
    blobs = revocation.encode_updates(authority.revocation, site=SITE, version=1, add=[revoked], iat=int(time.time()))
    result = publish_revocations(fast_settings(broker.url), SITE, blobs)
    assert result.published == [revocation_topic(SITE, 1, 0)]
    uplink = make_uplink(store, broker, authority.keyring)
    uplink.start()
    try:
        pump([uplink], lambda: store.revocation_state().version == 1, what="revocation v1")
    finally:
        uplink.stop()
    assert store.is_revoked(revoked)


def test_a_new_gate_catches_up_from_retained_updates_and_superseded_ones_are_cleared(broker, tmp_path, authority):
    a, b, c = (os.urandom(16) for _ in range(3))
    key, now = authority.revocation, int(time.time())
    settings = fast_settings(broker.url)
    publish_revocations(settings, SITE, revocation.encode_updates(key, site=SITE, version=1, add=[a], iat=now))
    publish_revocations(settings, SITE, revocation.encode_updates(key, site=SITE, version=2, base=1, add=[b], iat=now))
    result = publish_revocations(
        settings, SITE, revocation.encode_updates(key, site=SITE, version=3, add=[a, c], iat=now, parts=2)
    )
    assert result.cleared == [revocation_topic(SITE, 1, 0), revocation_topic(SITE, 2, 0)]
    retained = Listener(broker.port, f"gated/v1/{SITE}/revocations/#")
    time.sleep(0.5)
    retained.close()
    assert sorted(t for t, _, r in retained.messages if r) == [
        revocation_topic(SITE, 3, 0),
        revocation_topic(SITE, 3, 1),
    ]
    with GateStore(tmp_path / "new.db", site=SITE, gate="g5") as store:  # never connected before
        uplink = make_uplink(store, broker, authority.keyring)
        uplink.start()
        try:
            pump([uplink], lambda: store.revocation_state().version == 3, what="revocation v3")
        finally:
            uplink.stop()
        assert (store.is_revoked(a), store.is_revoked(b), store.is_revoked(c)) == (True, False, True)


def test_forged_replayed_and_rolled_back_updates_are_rejected(broker, store, authority):
    good, forged_id, rollback_id, late = (os.urandom(16) for _ in range(4))
    key, now = authority.revocation, int(time.time())
    uplink = make_uplink(store, broker, authority.keyring)
    uplink.start()
    try:
        pump([uplink], lambda: uplink.connected, what="a connection")
        v1 = revocation.encode_updates(key, site=SITE, version=1, add=[good], iat=now)[0]
        v2 = revocation.encode_updates(key, site=SITE, version=2, base=1, add=[], remove=[], iat=now)[0]
        for blob, version in ((v1, 1), (v2, 2)):
            uplink.publish(revocation_topic(SITE, version, 0), blob, 1, False)
        pump([uplink], lambda: store.revocation_state().version == 2, what="v2")
        bad = [
            (
                "forged: signed by the issuer key",
                revocation.encode_updates(authority.issuer, site=SITE, version=3, add=[forged_id], iat=now)[0],
            ),
            ("forged: signature broken", v1[:-1] + bytes([v1[-1] ^ 1])),
            ("replay of v2", v2),
            (
                "rollback to a new v1 snapshot",
                revocation.encode_updates(key, site=SITE, version=1, add=[rollback_id], iat=now)[0],
            ),
            ("another site", revocation.encode_updates(key, site="elsewhere", version=9, add=[forged_id], iat=now)[0]),
        ]
        for _, blob in bad:
            uplink.publish(revocation_topic(SITE, 3, 0), blob, 1, False)
        # one subscription delivers in order: once v3 is in, every bad message before it was judged
        v3 = revocation.encode_updates(key, site=SITE, version=3, base=2, add=[late], iat=now)[0]
        uplink.publish(revocation_topic(SITE, 3, 0), v3, 1, False)
        pump([uplink], lambda: store.revocation_state().version == 3, what="v3")
    finally:
        uplink.stop()
    assert store.is_revoked(good) and store.is_revoked(late)
    assert not store.is_revoked(forged_id) and not store.is_revoked(rollback_id)
    assert store.revoked_count() == 2


def test_two_gates_single_entry_ticket_second_gate_denies_already_used(broker, tmp_path, authority, gate_context):
    with (
        GateStore(tmp_path / "g1.db", site=SITE, gate="g1") as g1,
        GateStore(tmp_path / "g2.db", site=SITE, gate="g2") as g2,
    ):
        uplinks = [make_uplink(s, broker, authority.keyring) for s in (g1, g2)]
        for u in uplinks:
            u.start()
        try:
            pump(uplinks, lambda: all(u.connected for u in uplinks), what="both gates connected")
            text = authority.ticket(ent=1)
            assert admit(g1, gate_context, authority.keyring, text).admit
            cti = validate(text, authority.keyring, gate_context, None, time.time()).cti
            pump(uplinks, lambda: g2.admissions(cti) != [], what="g1's admission at g2")
            second = admit(g2, gate_context, authority.keyring, text)
        finally:
            for u in uplinks:
                u.stop()
        assert g2.admissions(cti)[0]["gate"] == "g1"
    assert not second.admit and second.reason is Reason.ALREADY_USED


def test_peer_events_with_a_bad_seal_are_ignored(broker, tmp_path, authority, gate_context):
    with (
        GateStore(tmp_path / "g1.db", site=SITE, gate="g1") as g1,
        GateStore(tmp_path / "g2.db", site=SITE, gate="g2") as g2,
    ):
        ring = device_keyring(tmp_path / "ring", g1)
        ring = keys.Keyring(authority.keyring.keys + ring.keys)
        uplink = make_uplink(g2, broker, ring)
        uplink.start()
        try:
            pump([uplink], lambda: uplink.connected, what="a connection")
            cti = os.urandom(16)
            body = {
                "kind": "scan",
                "ticket": cti.hex(),
                "event": "FINAL-2026",
                "type": "general",
                "zone": "north",
                "decision": "admit",
                "reason": "ok",
                "rev": 0,
                "latency_us": 0,
            }
            from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

            forged_cti = os.urandom(16)
            forged = events.seal(
                dict(body, ticket=forged_cti.hex()),
                site=SITE,
                gate="g1",
                seq=1,
                prev=events.GENESIS,
                ts_ms=1,
                key=Ed25519PrivateKey.generate(),
            )
            other = Listener(broker.port, "unused/topic")  # g2 does not hear its own publications (noLocal)
            other.client.publish(events_topic(SITE, "g1"), json.dumps(forged).encode(), 1).wait_for_publish(5)
            # no device key for g3 (only the ACL vouches), and a ticket id that is not one: ignored, no crash
            odd = events.seal(
                dict(body, ticket="not-hex"),
                site=SITE,
                gate="g3",
                seq=1,
                prev=events.GENESIS,
                ts_ms=1,
                key=Ed25519PrivateKey.generate(),
            )
            other.client.publish(events_topic(SITE, "g3"), json.dumps(odd).encode(), 1).wait_for_publish(5)
            genuine = g1.record_scan({k: v for k, v in body.items() if k != "kind"}, 2, admit_cti=cti, confirmed=True)
            other.client.publish(events_topic(SITE, "g1"), json.dumps(genuine).encode(), 1).wait_for_publish(5)
            pump([uplink], lambda: g2.admissions(cti) != [], what="the genuine admission")
            other.close()
        finally:
            uplink.stop()
        assert [a["scan_id"] for a in g2.admissions(cti)] == ["g1:1"]
        assert g2.admissions(forged_cti) == []


def test_signed_commands_run_once_and_everything_else_is_ignored(broker, store, authority):
    ran = []
    uplink = make_uplink(store, broker, authority.keyring, on_command=ran.append)
    uplink.start()
    topic = command_topic(SITE, "g1")
    try:
        pump([uplink], lambda: uplink.connected, what="a connection")
        sent = [
            encode_command(authority.command, gate="g1", command="lock", nonce=10),
            encode_command(authority.command, gate="g1", command="lock", nonce=10),  # replay
            encode_command(authority.command, gate="g1", command="open", nonce=9),  # older nonce
            encode_command(authority.issuer, gate="g1", command="open", nonce=11),  # not a command key
            encode_command(authority.command, gate="g2", command="open", nonce=12),  # another gate
            encode_command(authority.command, gate="g1", command="self_destruct", nonce=13),
            b"\xa0garbage",
            encode_command(authority.command, gate="g1", command="unlock", nonce=20),
        ]
        for blob in sent:
            uplink.publish(topic, blob, 1, False)
        pump([uplink], lambda: "unlock" in ran, what="the unlock command")
    finally:
        uplink.stop()
    assert ran == ["lock", "unlock"]
    assert int(store.get_value("command_nonce")) == 20


def test_status_is_retained_and_extra_subscriptions_reach_their_handler(broker, store, authority):
    seen = []
    uplink = make_uplink(store, broker, authority.keyring, status=lambda: {"state": "locked"})
    uplink.subscribe(f"gated/v1/{SITE}/time", lambda topic, payload: seen.append((topic, payload)))
    uplink.start()
    try:
        pump([uplink], lambda: uplink.connected, what="a connection")
        uplink.publish(f"gated/v1/{SITE}/time", b"beacon", 1, True)
        pump([uplink], lambda: seen, what="the beacon")
    finally:
        uplink.stop()
    late = Listener(broker.port, status_topic(SITE, "g1"))
    time.sleep(0.3)
    late.close()
    assert seen == [(f"gated/v1/{SITE}/time", b"beacon")]
    (status,) = late.on(status_topic(SITE, "g1"))
    assert json.loads(status)["state"] == "offline"  # a clean stop says so too
    assert set(json.loads(status)) >= {"state", "rev", "version", "ts"}


@pytest.mark.parametrize("url", ["mqtt://127.0.0.1:1", "mqtts://127.0.0.1:1"])
def test_no_broker_is_not_an_error_events_wait_in_the_outbox(url, store, authority):
    from gated.mqtturl import parse_broker_url

    state_events(store, 3)
    uplink = Uplink(
        store=store,
        keyring=authority.keyring,
        settings=parse_broker_url(url, reconnect_min_s=0.05),
        site=SITE,
        gate="g1",
    )
    uplink.start()
    try:
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            uplink.poll(0.05)
    finally:
        uplink.stop()
    assert not uplink.connected and store.outbox_depth() == 3


def test_two_gate_processes_publisher_and_ledger_survive_broker_loss_and_sigkill(tmp_path, authority):
    """The issue's "done when": every event in the ledger exactly once, every chain valid."""
    broker = Broker(tmp_path / "broker").start()
    dbs = {gate: tmp_path / f"{gate}.db" for gate in ("g1", "g2")}
    stores = [GateStore(db, site=SITE, gate=gate) for gate, db in dbs.items()]  # device keys made on first open
    ring = device_keyring(tmp_path / "ring", *stores)
    for s in stores:
        s.close()

    def gate(name):
        return spawn(
            "--db",
            str(dbs[name]),
            "--site",
            SITE,
            "--gate",
            name,
            "--broker",
            broker.url,
            "--keyring",
            str(authority.keyring_dir),
            "--rate",
            "150",
        )

    key, now, settings = authority.revocation, int(time.time()), fast_settings(broker.url)
    revoked = [os.urandom(16) for _ in range(3)]
    procs = {}
    try:
        with LedgerThread(tmp_path / "ledger.db", broker.url, SITE, keyring=ring) as ledger:
            procs = {name: gate(name) for name in dbs}
            for p in procs.values():
                assert p.stdout.readline().split()[0] == "ready"
            publish_revocations(
                settings, SITE, revocation.encode_updates(key, site=SITE, version=1, add=revoked[:1], iat=now)
            )
            time.sleep(1.0)
            procs["g1"].send_signal(signal.SIGKILL)  # power cut at g1, rows in flight
            procs["g1"].wait(10)
            broker.stop()  # and the broker goes away while g2 keeps scanning
            time.sleep(0.5)
            broker.start()
            publish_revocations(
                settings, SITE, revocation.encode_updates(key, site=SITE, version=2, base=1, add=revoked[1:2], iat=now)
            )
            procs["g1"] = gate("g1")
            assert procs["g1"].stdout.readline().split()[0] == "ready"
            publish_revocations(
                settings, SITE, revocation.encode_updates(key, site=SITE, version=3, base=2, add=revoked[2:], iat=now)
            )
            time.sleep(1.0)
            last = {}
            for name, p in procs.items():
                p.send_signal(signal.SIGTERM)
                # its last word on stopping (log lines of the uplink's own stop may follow it)
                word, seq = [
                    line.split()
                    for line in p.stdout.read().splitlines()
                    if line.split()[:1] in (["drained"], ["undrained"])
                ][-1]
                assert word == "drained" and p.wait(20) == 0
                last[name] = int(seq)
            deadline = time.monotonic() + 20
            while ledger.count() < sum(last.values()) and time.monotonic() < deadline:
                time.sleep(0.05)
            report = ledger.report()
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait(10)
        broker.stop()
    for name, seq in last.items():
        g = report["gates"][name]
        assert seq > 100
        assert (g["events"], g["last_seq"], g["missing"], g["chain_breaks"], g["bad_signatures"]) == (seq, seq, 0, 0, 0)
        with GateStore(dbs[name]) as store:
            assert store.revocation_state().version == 3 and all(store.is_revoked(c) for c in revoked)
    assert report["clean"] and report["totals"]["conflicts"] == 0
    from gated.cli import main

    assert main(["reconcile", "--db", str(tmp_path / "ledger.db")]) == 0


def test_reconnect_backoff_grows_is_capped_and_spreads_gates_apart():
    import random

    from gated.mqtt import backoff_delay

    gates = [random.Random(seed) for seed in range(20)]
    for attempt in range(12):
        delays = [backoff_delay(attempt, 1.0, 60.0, rng) for rng in gates]
        step = min(60.0, 2.0**attempt)
        assert all(step * 0.5 <= d <= step for d in delays)
        assert len({round(d, 6) for d in delays}) == len(delays)  # no two gates in step


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_ledger_and_publish_revocations_commands(broker, tmp_path, authority, store, stop):
    """`gated publish-revocations` and `gated ledger` as an operator runs them."""
    import subprocess
    import sys

    from gated.cli import main

    update = tmp_path / "v1.rev"
    update.write_bytes(
        revocation.encode_updates(
            authority.revocation, site=SITE, version=1, add=[os.urandom(16)], iat=int(time.time())
        )[0]
    )
    assert (
        main(
            [
                "publish-revocations",
                "--broker",
                broker.url,
                "--site",
                SITE,
                "--keyring",
                str(authority.keyring_dir),
                str(update),
            ]
        )
        == 0
    )
    forged = tmp_path / "forged.rev"
    forged.write_bytes(revocation.encode_updates(authority.issuer, site=SITE, version=2, iat=0)[0])
    assert (
        main(
            [
                "publish-revocations",
                "--broker",
                broker.url,
                "--site",
                SITE,
                "--keyring",
                str(authority.keyring_dir),
                str(forged),
            ]
        )
        == 2
    )
    db = tmp_path / "ledger.db"
    with LedgerThread(tmp_path / "first.db", broker.url, SITE, client_id="cli-ledger"):
        pass  # the ledger's session exists from its first start on: events queue for it from then on
    ledger = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gated.cli",
            "ledger",
            "--broker",
            broker.url,
            "--site",
            SITE,
            "--db",
            str(db),
            "--client-id",
            "cli-ledger",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        state_events(store, 5)
        uplink = make_uplink(store, broker, authority.keyring)
        uplink.start()
        try:
            pump(
                [uplink],
                lambda: store.outbox_depth() == 0 and store.revocation_state().version == 1,
                what="events out and v1 in",
            )
        finally:
            uplink.stop()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not ledger_count(db) == 5:
            time.sleep(0.1)
    finally:
        ledger.send_signal(stop)  # either ends it cleanly, with its summary
        err = ledger.communicate(timeout=20)[1]
    assert ledger.returncode == 0, err
    assert "5 new events" in err
    assert main(["reconcile", "--db", str(db)]) == 0


def test_ledgers_in_a_shared_group_split_the_events_between_them(broker, tmp_path, store, authority):
    import sqlite3

    state_events(store, 100)
    with (
        LedgerThread(tmp_path / "a.db", broker.url, SITE, group="ledger") as a,
        LedgerThread(tmp_path / "b.db", broker.url, SITE, group="ledger") as b,
    ):
        uplink = make_uplink(store, broker, authority.keyring)
        uplink.start()
        try:
            pump([uplink], lambda: store.outbox_depth() == 0, what="the outbox to drain")
        finally:
            uplink.stop()
        deadline = time.monotonic() + 20
        while a.count() + b.count() < 100 and time.monotonic() < deadline:
            time.sleep(0.05)
    ids = []
    for db in (tmp_path / "a.db", tmp_path / "b.db"):
        with sqlite3.connect(db) as conn:
            ids.append({row[0] for row in conn.execute("SELECT id FROM events")})
    assert ids[0] and ids[1] and not ids[0] & ids[1]
    assert ids[0] | ids[1] == {f"g1:{n}" for n in range(1, 101)}
