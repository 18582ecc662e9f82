"""A venue selling with a real pretix: its secrets at a running `gated run` gate, its cancellations and
blocks as revocations through `gated pretix sync`, the gate's admissions back in pretix's check-in list."""

from __future__ import annotations

import base64
import hashlib
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from tests.support.gatedaemon import GateProcess, gate_config, write_config

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(900)  # the first run builds pretix's database (minutes)
SITE, GATE = "arena", "g1"
CLEAN = "blur=0&motion=0&noise=0&glare=0&tilt=0&rotation=0&gradient=0&contrast=1&inverted=false"


def gated(*args, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [sys.executable, "-m", "gated.cli", *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=120,
    )
    if check:
        assert done.returncode == 0, done.stdout + done.stderr
    return done


def tampered(secret: str) -> str:
    raw = bytearray(base64.b64decode(secret[::-1]))
    raw[8] ^= 0x01  # a payload byte: still a well-formed secret, no longer the signed one
    return base64.b64encode(bytes(raw)).decode()[::-1]


class Desk:
    """The central side of the venue: a keyring for the gate, a revocation key, the sync's state."""

    def __init__(self, tmp: Path, pretix, broker, *, device: bool = False):
        self.tmp, self.pretix, self.broker = tmp, pretix, broker
        self.shop = pretix.shop_args(device=device)
        self.ring = tmp / "ring"
        gated("keys", "generate", "--out", tmp / "k", "--name", "rev")
        gated("keys", "trust", "--keyring", self.ring, "--role", "revocation", tmp / "k" / "rev.pub")

    def sync(self, *extra, check=True):
        return gated(
            "pretix",
            "sync",
            *self.shop,
            "--list",
            self.pretix.checkin_list,
            "--state",
            self.tmp / "sync.db",
            "--signing-key",
            self.tmp / "k" / "rev.key",
            "--site",
            SITE,
            *extra,
            check=check,
        )

    def upload(self, state="sync.db"):
        return gated(
            "pretix",
            "upload",
            *self.shop,
            "--state",
            self.tmp / state,
            "--site",
            SITE,
            "--ledger",
            self.tmp / "ledger.db",
            "--list",
            self.pretix.checkin_list,
        ).stdout


def shown(gate, client, text: str) -> dict:
    """Hold the code in front of the camera until the gate has judged it; its scan event. Past the
    debounce after it, so the same code shown again is a new scan."""
    return gate.judge(client, text, settle_s=0.6)


def wait_rev(gate, version: int) -> None:
    gate.wait_for(
        lambda: any(e.get("version", 0) >= version for e in gate.logged("revocation update")),
        what=f"revocation list v{version} at the gate",
    )


def wait_list(gate, version: int) -> None:
    gate.wait_for(
        lambda: any(e.get("version", 0) >= version for e in gate.logged("check-in list")),
        what=f"check-in list v{version} at the gate",
    )


def test_a_pretix_venue_end_to_end(tmp_path, pretix, broker):
    from gated.gate.rehearsal.control import Client

    a, b, c = pretix.order("adult"), pretix.order("adult"), pretix.order("adult")
    late, early = pretix.order("late"), pretix.order("early")
    sa, sb, sc = (o["positions"][0]["secret"] for o in (a, b, c))
    desk = Desk(tmp_path, pretix, broker, device=True)  # device authentication, pretixSCAN's profile
    gated("pretix", "keys", *desk.shop, "--keyring", desk.ring)
    assert (
        "; published v1;" in desk.sync("--broker", broker.url).stdout
    )  # (other tests of the session cancel orders too)

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
            tmp_path / "ledger.db",
            "--exit-after",
            "600",
        ],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stderr=subprocess.PIPE,
        text=True,
    )
    cfg = gate_config(
        tmp_path,
        keyring=desk.ring,
        broker_url=broker.url,
        camera_source=f"synthetic:?{CLEAN}",
        site=SITE,
        gate=GATE,
        event=pretix.event,
        camera={"fps": 15.0},
        revocations={"when_stale": "closed"},
        sim={"control_socket": str(tmp_path / "sim.sock")},
    )
    gate = GateProcess(write_config(tmp_path / "gated.toml", cfg)).start()
    try:
        gate.wait_ready()
        wait_rev(gate, 1)
        client = Client(tmp_path / "sim.sock")
        first = shown(gate, client, sa)
        assert (first["decision"], first["reason"]) == ("admit", "ok")
        assert first["ticket"] == hashlib.sha256(sa.encode()).digest()[:16].hex()  # docs/protocol.md
        assert shown(gate, client, sa)["reason"] == "already_used"
        assert shown(gate, client, tampered(sa))["reason"] == "bad_signature"
        assert shown(gate, client, late["positions"][0]["secret"])["reason"] == "not_yet_valid"
        assert shown(gate, client, early["positions"][0]["secret"])["reason"] == "expired"

        pretix.call("POST", f"orders/{b['code']}/mark_canceled/", {})
        # the cancelled order's ticket (and any secret pretix replaced on the way) is revoked
        assert "published v2" in desk.sync("--broker", broker.url).stdout
        wait_rev(gate, 2)
        assert shown(gate, client, sb)["reason"] == "revoked"

        position = c["positions"][0]["id"]
        pretix.call("POST", f"orderpositions/{position}/add_block/", {"name": "admin"})
        assert "(+1 -0); published v3" in desk.sync("--broker", broker.url).stdout
        wait_rev(gate, 3)
        assert shown(gate, client, sc)["reason"] == "revoked"
        pretix.call("POST", f"orderpositions/{position}/remove_block/", {"name": "admin"})
        assert "(+0 -1); published v4" in desk.sync("--broker", broker.url).stdout
        wait_rev(gate, 4)
        assert shown(gate, client, sc)["decision"] == "admit"

        # payment and approval: an unpaid order is denied `unpaid` until pretix marks it paid; a cancelled
        # position inside a paid order is revoked, its sibling still admits
        unpaid = pretix.order("adult", status="n")
        pair = pretix.order("adult", "adult")
        pretix.call("DELETE", f"orderpositions/{pair['positions'][1]['id']}/")
        assert "published v5" in desk.sync("--broker", broker.url).stdout
        wait_rev(gate, 5)
        wait_list(gate, 2)
        assert shown(gate, client, unpaid["positions"][0]["secret"])["reason"] == "unpaid"
        assert shown(gate, client, pair["positions"][1]["secret"])["reason"] == "revoked"
        assert shown(gate, client, pair["positions"][0]["secret"])["decision"] == "admit"
        pretix.call("POST", f"orders/{unpaid['code']}/mark_paid/", {})
        assert "check-in list 'Gates' v3 published" in desk.sync("--broker", broker.url).stdout
        wait_list(gate, 3)
        assert shown(gate, client, unpaid["positions"][0]["secret"])["decision"] == "admit"
        client.close()
        assert gate.terminate() == 0
    finally:
        gate.stop_quietly()

    def admits_in_ledger():
        with sqlite3.connect(tmp_path / "ledger.db") as db:
            return db.execute("SELECT COUNT(*) FROM events WHERE kind = 'scan' AND decision = 'admit'").fetchone()[0]

    deadline = time.monotonic() + 20
    while admits_in_ledger() < 4 and time.monotonic() < deadline:
        time.sleep(0.2)
    ledger.terminate()
    ledger.wait(20)
    assert admits_in_ledger() == 4

    assert "4 admissions uploaded, 0 uploaded before" in desk.upload()
    assert "0 admissions uploaded, 4 uploaded before" in desk.upload()
    assert "4 admissions uploaded, 0 uploaded before" in desk.upload("fresh-state.db")  # only the nonce dedupes now
    for order in (a, c):
        checkins = pretix.checkins(order["positions"][0]["id"])
        assert len(checkins) == 1 and checkins[0]["list"] == pretix.checkin_list and checkins[0]["type"] == "entry"
    with sqlite3.connect(tmp_path / "ledger.db") as db:
        (ts,) = db.execute(
            "SELECT ts FROM events WHERE kind = 'scan' AND decision = 'admit' AND ticket = ?",
            (hashlib.sha256(sa.encode()).digest()[:16].hex(),),
        ).fetchone()
    assert pretix.checkins(a["positions"][0]["id"])[0]["datetime"][:19] == ts[:19]  # the scan's time
    assert pretix.checkins(b["positions"][0]["id"]) == []


def retained(broker, topic: str, timeout: float = 10.0) -> bytes | None:
    got = {}
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.on_message = lambda c, u, m: got.setdefault(m.topic, m.payload)
    client.connect("127.0.0.1", broker.port)
    client.subscribe(topic, qos=1)
    client.loop_start()
    deadline = time.monotonic() + timeout
    while topic not in got and time.monotonic() < deadline:
        time.sleep(0.05)
    client.loop_stop()
    client.disconnect()
    return got.get(topic)


def test_sync_that_could_not_publish_publishes_the_same_update_on_the_next_run(tmp_path, pretix, broker):
    """Killed (or the broker gone) after signing: the next run sends the very bytes it signed, never a
    different update under the same version; a run with nothing new publishes nothing. (Team token
    authentication here; the venue test above uses device authentication.)"""
    from tests.support.broker import free_port

    desk = Desk(tmp_path, pretix, broker)
    assert "published v1" in desk.sync("--broker", broker.url).stdout
    order = pretix.order("adult")
    pretix.call("POST", f"orders/{order['code']}/mark_canceled/", {})
    down = desk.sync("--broker", f"mqtt://127.0.0.1:{free_port()}", "--out", tmp_path / "files", check=False)
    assert down.returncode == 2 and "run again" in down.stderr
    signed = (tmp_path / "files" / "rev-2.cose").read_bytes()
    again = desk.sync("--broker", broker.url).stdout
    assert "list v2 (+0 -0); published v2" in again
    assert retained(broker, f"gated/v1/{SITE}/revocations/2/0") == signed
    assert "published nothing new" in desk.sync("--broker", broker.url).stdout
