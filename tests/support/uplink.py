"""Helpers for uplink and ledger tests: fast-reconnect settings, an owner loop with a deadline,
a ledger service on a thread, a keyring holding the gates' device keys."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gated import keys
from gated.central.ledger import Ledger
from gated.central.ledger_service import LedgerService
from gated.mqtturl import parse_broker_url

LEDGER_KEY = Ed25519PrivateKey.generate()  # signs the test ledgers' committed and occupancy (role `ledger`)


def trust_ledger_key(keyring_dir: Path) -> None:
    """A keyring directory trusts LEDGER_KEY with role `ledger`, as an operator does for the site's ledger."""
    public = Path(keyring_dir) / "ledger.pub"
    public.parent.mkdir(parents=True, exist_ok=True)
    public.write_bytes(keys.public_pem(LEDGER_KEY.public_key()))
    keys.trust_key_file(keyring_dir, public, "ledger")


def admit(store) -> dict:
    """One admission recorded straight in a gate's store (as Gate.on_code would): a scan event."""
    cti = os.urandom(16)
    body = {
        "ticket": cti.hex(),
        "event": "FINAL-2026",
        "type": "general",
        "zone": "north",
        "decision": "admit",
        "reason": "ok",
        "rev": 0,
        "latency_us": 0,
    }
    return store.record_scan(body, time.time_ns() // 1_000_000, admit_cti=cti, confirmed=True)


def admit_for(stores, uplinks, seconds: float, poll_s: float = 0.01) -> None:
    """Each gate admits as fast as it can for `seconds`, its uplink polled in between."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for s in stores:
            admit(s)
        for u in uplinks:
            u.poll(poll_s)


def gate_with_delivered_events(broker, tmp_path, keyring, count: int):
    """Gate g1's store with `count` admissions and its started uplink, once the broker has acknowledged
    them all (no ledger: nothing confirmed). The caller stops the uplink and closes the store."""
    from gated.gate.store import GateStore
    from gated.gate.uplink import Uplink

    store = GateStore(Path(tmp_path) / "g1.db", site="arena", gate="g1")
    for _ in range(count):
        admit(store)
    uplink = Uplink(
        store=store,
        keyring=keyring,
        site="arena",
        gate="g1",
        settings=fast_settings(broker.url, outbox_retention_s=3600),
    )
    uplink.start()
    pump([uplink], lambda: uplink.delivered == count, what="PUBACKs")
    return store, uplink


def fast_settings(url: str, **overrides):
    """Reconnect within a fraction of a second, so broker restarts do not slow the tests."""
    fields = dict(reconnect_min_s=0.05, reconnect_max_s=0.3)
    fields.update(overrides)
    return parse_broker_url(url, **fields)


def pump(uplinks, until, timeout: float = 20.0, what: str = "condition") -> None:
    """Run the owner loop of each uplink until `until()` is true."""
    deadline = time.monotonic() + timeout
    while not until():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        for uplink in uplinks:
            uplink.poll(0.01)


def device_keyring(directory: Path, *stores) -> keys.Keyring:
    """A keyring trusting each store's device key, named after its gate (role device)."""
    directory = Path(directory)
    pub_dir = directory.parent / f"{directory.name}-pubs"
    pub_dir.mkdir(parents=True, exist_ok=True)
    for store in stores:
        pub = pub_dir / f"{store.gate}.pub"
        pub.write_bytes(keys.public_pem(store.device_public_key))
        keys.trust_key_file(directory, pub, "device", name=store.gate)
    return keys.load_keyring(directory)


class LedgerThread:
    """A LedgerService running on its own thread (its SQLite connection is used only there)."""

    def __init__(
        self,
        db,
        url: str,
        site: str,
        keyring=None,
        group: str | None = None,
        signing_key=LEDGER_KEY,
        service=LedgerService,
        **settings,
    ):
        """`db`: a SQLite path or a postgresql:// URL. `signing_key`: the ledger's (LEDGER_KEY, which
        the `authority` fixture's keyring trusts)."""
        self.db = db
        self.ledger = Ledger(db, keyring=keyring, site=site)
        settings.setdefault("client_id", f"ledger-{site}-{str(db).rsplit('/', 1)[-1].split('.')[0]}")
        self.service = service(
            self.ledger, fast_settings(url, **settings), site=site, group=group, signing_key=signing_key
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self.service.run, args=(self._stop,), daemon=True)

    def __enter__(self):
        self.service.start()
        if not self.service.link.wait_subscribed(15):
            raise AssertionError("the ledger did not subscribe within 15 s")
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self.service.stop()

    def count(self) -> int:
        return ledger_count(self.db)

    def report(self) -> dict:
        with Ledger(self.db) as ledger:
            return ledger.report()


def ledger_count(db) -> int:
    """Events in a ledger (SQLite path or postgresql:// URL), on a connection of its own; 0 while
    the database does not exist yet."""
    if not str(db).startswith("postgresql://"):
        if not Path(db).exists():
            return 0
        try:
            with sqlite3.connect(db) as conn:
                return conn.execute("SELECT COUNT(*) FROM events").fetchone()[0]
        except sqlite3.Error:
            return 0
    with Ledger(db) as ledger:
        return ledger.query("SELECT COUNT(*) FROM events")[0][0]


class Listener:
    """A plain MQTT client recording (topic, payload, retain) of everything under a filter."""

    def __init__(self, port: int, topic_filter: str):
        self.messages: list[tuple[str, bytes, bool]] = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(topic_filter, qos=1)
        self.client.loop_start()
        if not subscribed.wait(10):
            raise AssertionError("listener could not subscribe")

    def _on_message(self, client, userdata, message) -> None:
        with self._lock:
            self.messages.append((message.topic, bytes(message.payload), bool(message.retain)))

    def on(self, topic: str) -> list[bytes]:
        with self._lock:
            return [p for t, p, _ in self.messages if t == topic]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
