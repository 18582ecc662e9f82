"""The gate's MQTT uplink (PROTOCOL §6): events out from the durable outbox, revocations, peer
admissions and signed commands in.

Theory of operation
-------------------
paho-mqtt runs its network loop on its own thread (`loop_start`). Its callbacks touch nothing of
ours: each one puts a tuple on `MqttLink.inbox` and returns. The owner thread (the daemon's main
loop, or a test) calls `Uplink.poll()`, which takes the queued work and does it: applies revocation
updates, records peer admissions, runs verified commands, deletes acknowledged outbox rows, and
hands the next outbox rows to paho. So SQLite has one writer, and paho never waits on the disk.

Delivery is at least once and nothing is lost to a crash:
  - an event leaves the outbox (SQLite) only when the broker's PUBACK for it has come back through
    the queue; paho's own queue is memory and dies with the process, so after a restart the rows
    still in the outbox are simply sent again (the ledger drops duplicates by event id);
  - inbound QoS 1 messages are acknowledged by hand (`manual_ack`) after poll() has applied them,
    so a crash between receipt and commit makes the broker deliver them again;
  - the session is persistent (MQTT v5 clean_start=False + Session Expiry Interval), so revocations,
    commands and peer events published while the gate is away are queued for it by the broker; the
    revocation topics are retained as well, so a gate whose session expired still catches up.
Reconnects back off exponentially with random jitter (so a site's gates do not reconnect in step).
"""

from __future__ import annotations

import base64
import binascii
import json
import queue
import random
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Callable

import cbor2
import paho.mqtt.client as mqtt
import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from gated import __version__, cose, events, revocations
from gated.keys import Keyring, SignedRejected, open_signed
from gated.mqtturl import UplinkSettings
from gated.topics import command_topic, events_topic, revocation_topic, root, status_topic  # noqa: F401 (re-exported)

log = structlog.get_logger("gated.uplink")

COMMANDS = ("open", "lock", "unlock", "emergency_on", "emergency_off")
NONCE_KEY = "command_nonce"




def _is_ticket_id(value) -> bool:
    if not isinstance(value, str) or len(value) != 32:
        return False
    try:
        bytes.fromhex(value)
    except ValueError:
        return False
    return True


def now_ms() -> int:
    return time.time_ns() // 1_000_000


# --- the paho client, wrapped so its callbacks only queue work ------------------------------------

def backoff_delay(attempt: int, min_s: float, max_s: float, rng: random.Random) -> float:
    """Wait before reconnect attempt `attempt` (0 after a success): the exponential step
    min_s * 2**attempt, capped at max_s, times a random factor in [0.5, 1.0], so the gates of a
    site that lost the broker together spread their reconnects."""
    step = min(max_s, min_s * (2 ** min(attempt, 30)))
    return step * rng.uniform(0.5, 1.0)


@dataclass(frozen=True)
class Inbound:
    topic: str
    payload: bytes
    mid: int
    qos: int
    retain: bool
    generation: int  # which connection it came on: an ack is only valid on that connection


class MqttLink:
    """One paho client (VERSION2 callbacks, MQTT v5, persistent session, manual acks) whose callbacks
    put ("connected", generation, session_present), ("disconnected", reason), ("published", mid, rc)
    and ("message", Inbound) on `inbox`. Shared by the gate uplink, the ledger and the publisher."""

    def __init__(self, settings: UplinkSettings, client_id: str, *,
                 will: Callable[[], tuple[str, bytes]] | None = None, persistent: bool = True,
                 rng: random.Random | None = None):
        """`will()` gives the last will's (topic, payload); it is asked again before every reconnect
        (on paho's thread, so it must only read values, never the store)."""
        self.settings, self.client_id, self.persistent = settings, client_id, persistent
        self.inbox: queue.Queue = queue.Queue()
        self.generation = 0
        self._rng = rng or random.Random()
        self._attempt = 0
        self._subscriptions: dict[str, SubscribeOptions] = {}
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self._subscribed = threading.Event()  # a SUBACK came on this connection
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5,
                             manual_ack=True)
        if settings.tls:
            client.tls_set(ca_certs=settings.ca_file, certfile=settings.cert_file, keyfile=settings.key_file,
                           cert_reqs=ssl.CERT_REQUIRED, tls_version=ssl.PROTOCOL_TLS_CLIENT)
        if settings.username is not None:
            client.username_pw_set(settings.username, settings.password)
        self._will = will
        if will is not None:
            client.will_set(*will(), qos=1, retain=True)
        client.max_inflight_messages_set(settings.max_inflight)
        client.max_queued_messages_set(0)
        self._set_backoff(client)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        self.client = client

    # paho thread -------------------------------------------------------------------------------
    def _set_backoff(self, client) -> None:
        """Called after every connection loss or failed attempt, before paho waits and reconnects
        (paho's own backoff has no jitter), which is also the moment to refresh the will."""
        if self._will is not None and hasattr(self, "client"):
            client.will_set(*self._will(), qos=1, retain=True)
        delay = backoff_delay(self._attempt, self.settings.reconnect_min_s, self.settings.reconnect_max_s, self._rng)
        client.reconnect_delay_set(delay, delay)

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self._attempt += 1
            self._set_backoff(client)
            self.inbox.put(("refused", f"connection refused: {reason_code}"))
            return
        self._attempt = 0
        self._set_backoff(client)
        self.generation += 1
        with self._lock:
            subscriptions = list(self._subscriptions.items())
        if subscriptions:
            client.subscribe(subscriptions)
        self._connected.set()
        self.inbox.put(("connected", self.generation, bool(flags.session_present)))

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        if any(rc.is_failure for rc in reason_codes):
            self.inbox.put(("refused", f"subscription refused: {', '.join(str(rc) for rc in reason_codes)}"))
        self._subscribed.set()

    def _on_connect_fail(self, client, userdata) -> None:
        self._attempt += 1
        self._set_backoff(client)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self._connected.clear()
        self._subscribed.clear()
        self._attempt += 1
        self._set_backoff(client)
        self.inbox.put(("disconnected", str(reason_code)))

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        self.inbox.put(("published", mid, reason_code.value))

    def _on_message(self, client, userdata, message) -> None:
        self.inbox.put(("message", Inbound(message.topic, bytes(message.payload), message.mid, message.qos,
                                           bool(message.retain), self.generation)))

    # owner thread ------------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def wait_subscribed(self, timeout: float) -> bool:
        """Wait for the broker to acknowledge a subscription on the current connection."""
        return self._subscribed.wait(timeout)

    def add_subscription(self, topic_filter: str, options: SubscribeOptions) -> None:
        with self._lock:
            self._subscriptions[topic_filter] = options
        if self.connected:
            self.client.subscribe([(topic_filter, options)])

    def start(self) -> None:
        props = Properties(PacketTypes.CONNECT)
        if self.persistent:
            props.SessionExpiryInterval = self.settings.session_expiry_s
        s = self.settings
        self.client.connect_async(s.host, s.port, keepalive=s.keepalive_s,
                                  clean_start=not self.persistent, properties=props)
        self.client.loop_start()

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        self._connected.clear()

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> int | None:
        """Hand a message to paho; its mid, or None when paho refused it (not connected, say)."""
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            return None
        return info.mid

    def ack(self, message: Inbound) -> None:
        """Acknowledge an applied message, if it came on the current connection (else the broker
        sends it again on this one, and our handlers are idempotent)."""
        if message.qos > 0 and message.generation == self.generation:
            self.client.ack(message.mid, message.qos)


# --- signed commands (PROTOCOL §6) --------------------------------------------------------------

class CommandRejected(ValueError):
    """A command the gate ignores; `code`: malformed, unknown_key, bad_signature, wrong_gate,
    unknown_command, replay."""

    def __init__(self, code: str, detail: str):
        super().__init__(f"{code}: {detail}")
        self.code, self.detail = code, detail


@dataclass(frozen=True)
class Command:
    gate: str
    name: str
    nonce: int
    iat: int
    signer: str


def parse_command(blob: bytes, keyring: Keyring, gate: str) -> Command:
    """Verify a command message (signature by a `command` key, for this gate); raises CommandRejected.
    The nonce is checked against the store by the caller."""
    try:
        key, body = open_signed(blob, keyring, "command")
    except SignedRejected as exc:
        raise CommandRejected(exc.code, exc.detail) from None
    if not isinstance(body, dict) or type(body.get(1)) is not str or type(body.get(2)) is not str \
            or not cose.is_uint(body.get(3)) or not cose.is_uint(body.get(4)):
        raise CommandRejected("malformed", "payload must be {1: gate, 2: command, 3: nonce uint, 4: iat uint}")
    if body[1] != gate:
        raise CommandRejected("wrong_gate", f"command for gate {body[1]!r}")
    if body[2] not in COMMANDS:
        raise CommandRejected("unknown_command", f"{body[2]!r} is not one of {', '.join(COMMANDS)}")
    return Command(gate=body[1], name=body[2], nonce=body[3], iat=body[4], signer=key.name)


def encode_command(key, *, gate: str, command: str, nonce: int, iat: int | None = None) -> bytes:
    """The central side: a signed command message."""
    payload = {1: gate, 2: command, 3: nonce, 4: int(time.time()) if iat is None else iat}
    return cose.sign(cbor2.dumps(payload), key)


# --- device-key enrolment (docs/protocol.md) ------------------------------------------------------

def device_announcement(public_key) -> dict:
    """The status fields announcing the gate's event-signing key: `device_kid` (hex of PROTOCOL §1's
    kid) and `device_key` (base64 of the raw 32 bytes)."""
    raw = public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return {"device_kid": cose.kid_of(public_key).hex(), "device_key": base64.b64encode(raw).decode()}


def parse_device_announcement(status: dict):
    """(kid hex, Ed25519PublicKey) from a status message; ValueError saying what is wrong."""
    kid, text = status.get("device_kid"), status.get("device_key")
    if not isinstance(kid, str) or not isinstance(text, str):
        raise ValueError("no device key announced (a gate older than this feature?)")
    try:
        raw = base64.b64decode(text, validate=True)
        public_key = Ed25519PublicKey.from_public_bytes(raw)
    except (binascii.Error, ValueError):
        raise ValueError("device_key is not base64 of a 32-byte Ed25519 public key") from None
    if cose.kid_of(public_key).hex() != kid:
        raise ValueError(f"device_kid {kid} does not match the announced key")
    return kid, public_key


# --- the gate's uplink ----------------------------------------------------------------------------

class Uplink:
    def __init__(self, *, store, keyring: Keyring, settings: UplinkSettings, site: str, gate: str,
                 on_command: Callable[[str], None] | None = None, status: Callable[[], dict] | None = None):
        self.store, self.keyring, self.settings = store, keyring, settings
        self.site, self.gate = site, gate
        self.on_command, self.status = on_command, status
        self._rev = store.revocation_state().version  # for the will, which paho's thread builds
        self._device = device_announcement(store.device_public_key)  # in every status: enrolment by kid
        last = store.get_value(NONCE_KEY)
        self.last_command = None if last is None else int(last)  # nonce of the last command applied (`cmd`)
        self.link = MqttLink(settings, settings.client_id or f"gated-{site}-{gate}", will=self._will)
        self._handlers: list[tuple[str, Callable[[str, bytes], None]]] = []
        self._inflight: dict[int, int] = {}  # paho mid -> outbox seq
        self._sent_through = 0  # highest outbox seq handed to paho in this process
        self._retry_after = 0.0
        self._acked: list[int] = []  # seqs whose PUBACK came, deleted from the outbox at the end of poll()
        self.delivered = 0  # events acknowledged by the broker since start
        rev = root(site)
        self.link.add_subscription(f"{rev}revocations/+/+", SubscribeOptions(qos=1))
        self.link.add_subscription(f"{rev}gates/+/events", SubscribeOptions(qos=1, noLocal=True))
        self.link.add_subscription(command_topic(site, gate), SubscribeOptions(qos=1))

    # lifecycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        self.link.start()
        log.info("uplink starting", broker=self.settings.url, site=self.site, gate=self.gate)

    def stop(self, timeout: float = 2.0) -> None:
        """Say `offline` (a clean disconnect does not fire the will), then disconnect."""
        if self.connected:
            mid = self.publish(status_topic(self.site, self.gate), self._status_payload("offline"), 1, True)
            deadline = time.monotonic() + timeout
            while mid is not None and time.monotonic() < deadline:
                try:
                    item = self.link.inbox.get(timeout=0.05)
                except queue.Empty:
                    continue
                if item[0] == "published" and item[1] == mid:
                    break
                self._handle(item)
            self._acknowledge_delivered()
        self.link.stop()

    @property
    def connected(self) -> bool:
        return self.link.connected

    @property
    def outbox_depth(self) -> int:
        return self.store.outbox_depth()

    # the interface for the rest of the gate ----------------------------------------------------
    def subscribe(self, topic_filter: str, handler: Callable[[str, bytes], None]) -> None:
        """Extra topics (time beacons...): `handler(topic, payload)` runs on the owner thread in poll()."""
        self._handlers.append((topic_filter, handler))
        self.link.add_subscription(topic_filter, SubscribeOptions(qos=1))

    def publish(self, topic: str, payload: bytes | str, qos: int = 1, retain: bool = False) -> int | None:
        return self.link.publish(topic, payload.encode() if isinstance(payload, str) else payload, qos, retain)

    def publish_status(self, state: str, **extra) -> int | None:
        return self.publish(status_topic(self.site, self.gate), self._status_payload(state, **extra), 1, True)

    def _status_payload(self, state: str, rev: int | None = None, **extra) -> bytes:
        body = {"state": state, "rev": self.store.revocation_state().version if rev is None else rev,
                "version": __version__, "ts": events.format_ts(now_ms()), **self._device, **extra}
        if self.last_command is not None:
            body["cmd"] = self.last_command  # the acknowledgement `gated command` waits for
        return json.dumps(body, separators=(",", ":")).encode()

    def _will(self) -> tuple[str, bytes]:
        """`offline`, stamped when the connection it belongs to is made: the gate was online until
        some time after `ts`."""
        return status_topic(self.site, self.gate), self._status_payload("offline", rev=self._rev)

    # the owner thread's work -------------------------------------------------------------------
    def poll(self, timeout: float = 0.0) -> None:
        """Apply queued inbound work and move the outbox along. With `timeout`, first wait that long
        for something to arrive (an owner loop can sleep here instead of spinning)."""
        try:
            first = self.link.inbox.get(timeout=timeout) if timeout > 0 else self.link.inbox.get_nowait()
        except queue.Empty:
            first = None
        if first is not None:
            self._handle(first)
            while True:
                try:
                    self._handle(self.link.inbox.get_nowait())
                except queue.Empty:
                    break
        self._acknowledge_delivered()
        self._drain_outbox()
        self._rev = self.store.revocation_state().version

    def _handle(self, item: tuple) -> None:
        kind = item[0]
        if kind == "published":
            self._published(item[1], item[2])
        elif kind == "message":
            self._dispatch(item[1])
        elif kind == "connected":
            log.info("uplink connected", broker=self.settings.url, session_present=item[2], outbox=self.outbox_depth)
            extra = dict(self.status()) if self.status else {}
            self.publish_status(extra.pop("state", "online"), **extra)
            self._retry_after = 0.0
        elif kind == "disconnected":
            log.warning("uplink disconnected", broker=self.settings.url, reason=item[1], outbox=self.outbox_depth)
        elif kind == "refused":
            log.error("broker refused", broker=self.settings.url, reason=item[1])

    # outbox
    def _drain_outbox(self) -> None:
        if not self.connected or time.monotonic() < self._retry_after:
            return
        room = self.settings.max_inflight - len(self._inflight)
        if room <= 0:
            return
        topic = events_topic(self.site, self.gate)
        for seq, event in self.store.outbox(self._sent_through, room):
            mid = self.link.publish(topic, event.encode(), 1, False)
            if mid is None:
                break
            self._inflight[mid] = seq
            self._sent_through = seq

    def _published(self, mid: int, reason: int) -> None:
        seq = self._inflight.pop(mid, None)
        if seq is None:
            return
        if reason >= 0x80:
            # The broker refused this event (not authorised, quota...). Keep the row, try again later.
            log.error("broker refused an event; it stays in the outbox", seq=seq, reason=reason)
            self._sent_through = min(self._sent_through, seq - 1)
            self._retry_after = time.monotonic() + 5.0
            return
        self._acked.append(seq)

    def _acknowledge_delivered(self) -> None:
        if self._acked:
            self.store.acknowledge(*self._acked)
            self.delivered += len(self._acked)
            self._acked = []

    # inbound
    def _dispatch(self, message: Inbound) -> None:
        base = root(self.site)
        topic = message.topic
        if topic.startswith(base + "revocations/"):
            self._revocation(message)
        elif topic == command_topic(self.site, self.gate):
            self._command(message.payload)
        elif topic.startswith(base + "gates/") and topic.endswith("/events"):
            self._peer_event(topic, message.payload)
        else:
            for topic_filter, handler in self._handlers:
                if mqtt.topic_matches_sub(topic_filter, topic):
                    handler(topic, message.payload)
        self.link.ack(message)

    def _revocation(self, message: Inbound) -> None:
        if not message.payload:  # a cleared retained topic
            return
        outcome = revocations.apply_update(self.store, message.payload, self.keyring, site=self.site, now_ms=now_ms())
        if outcome.status == "rejected" and not (outcome.code == "replay" and message.retain):
            log.warning("revocation update rejected", topic=message.topic, code=outcome.code, detail=outcome.detail)
        elif outcome.status != "rejected":
            log.info("revocation update", topic=message.topic, status=outcome.status, version=outcome.version,
                     detail=outcome.detail)

    def _command(self, payload: bytes) -> None:
        try:
            command = parse_command(payload, self.keyring, self.gate)
        except CommandRejected as exc:
            log.warning("command ignored", code=exc.code, detail=exc.detail)
            return
        if not self.store.check_and_set_nonce(NONCE_KEY, command.nonce):
            log.warning("command ignored", code="replay", detail=f"nonce {command.nonce} not above the last one")
            return
        log.info("command", command=command.name, nonce=command.nonce, signer=command.signer)
        if self.on_command is not None:
            self.on_command(command.name)
        self.last_command = command.nonce
        extra = dict(self.status()) if self.status else {}
        self.publish_status(extra.pop("state", "online"), **extra)  # the acknowledgement, with the mode it left

    def _peer_event(self, topic: str, payload: bytes) -> None:
        try:
            event = json.loads(payload)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            log.warning("peer event ignored", topic=topic, problem=f"not JSON: {exc}")
            return
        if not isinstance(event, dict) or event.get("site") != self.site \
                or events_topic(self.site, str(event.get("gate"))) != topic:
            log.warning("peer event ignored", topic=topic, problem="site or gate does not match its topic")
            return
        problems = events.check_seal(event, self._device_key(event["gate"]))
        if event.get("kind") == "scan" and event.get("decision") == "admit" and not _is_ticket_id(event.get("ticket")):
            problems.append("an admission without a ticket id (32 hex digits)")
        if problems:
            log.warning("peer event ignored", topic=topic, id=event.get("id"), problem="; ".join(problems))
            return
        self.store.record_peer_event(event)

    def _device_key(self, gate: str):
        """The peer's device key if the keyring names one after the gate (else the broker ACL is the guard)."""
        for key in self.keyring.keys:
            if key.name == gate and "device" in key.roles:
                return key.public_key
        return None

