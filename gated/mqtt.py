"""The one MQTT client of gated: paho-mqtt wrapped so that its callbacks only queue work.

Shared by the gate's uplink (gated/gate/uplink.py), the ledger, the revocation publisher, the beacon
and the operators' tools. paho runs its network loop on its own thread (`loop_start`); each
callback puts a tuple on `MqttLink.inbox` and returns, and the owner thread takes them from there,
so nothing of ours runs on paho's thread and SQLite keeps one writer.

MQTT v5 with a persistent session (clean_start=False + Session Expiry Interval) unless asked
otherwise, manual acks (a message is acknowledged only after its owner applied it, and only on the
connection it came on), reconnects with exponential backoff and random jitter.
"""

from __future__ import annotations

import queue
import random
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from gated.brokerdiag import NOT_AUTHORISED_HINT, reason_words, tls_file_problems
from gated.mqtturl import BrokerUrlError, UplinkSettings


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

    def __init__(
        self,
        settings: UplinkSettings,
        client_id: str,
        *,
        will: Callable[[], tuple[str, bytes]] | None = None,
        persistent: bool = True,
        rng: random.Random | None = None,
    ):
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
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5, manual_ack=True
        )
        if settings.tls:
            problems = tls_file_problems(settings.ca_file, settings.cert_file, settings.key_file)
            if problems:  # paho would say only "[Errno 2] No such file or directory"
                raise BrokerUrlError("; ".join(problems))
            client.tls_set(
                ca_certs=settings.ca_file,
                certfile=settings.cert_file,
                keyfile=settings.key_file,
                cert_reqs=ssl.CERT_REQUIRED,
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
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
            hint = f" ({NOT_AUTHORISED_HINT})" if reason_code.value == 135 else ""
            self.inbox.put(("refused", f"connection refused: {reason_words(reason_code)}{hint}"))
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
            self.inbox.put(("refused", f"subscription refused: {', '.join(reason_words(rc) for rc in reason_codes)}"))
        self._subscribed.set()

    def _on_connect_fail(self, client, userdata) -> None:
        self._attempt += 1
        self._set_backoff(client)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self._connected.clear()
        self._subscribed.clear()
        self._attempt += 1
        self._set_backoff(client)
        self.inbox.put(("disconnected", reason_words(reason_code)))

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        self.inbox.put(("published", mid, reason_code.value))

    def _on_message(self, client, userdata, message) -> None:
        self.inbox.put(
            (
                "message",
                Inbound(
                    message.topic,
                    bytes(message.payload),
                    message.mid,
                    message.qos,
                    bool(message.retain),
                    self.generation,
                ),
            )
        )

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
        self.client.connect_async(
            s.host, s.port, keepalive=s.keepalive_s, clean_start=not self.persistent, properties=props
        )
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

    def settle(self, settle_s: float, timeout: float) -> list[tuple]:
        """The inbox's items until none has come for `settle_s` (at most `timeout`): what a short-lived
        tool subscribed to retained topics receives on connecting."""
        items, deadline = [], time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                items.append(self.inbox.get(timeout=settle_s))
            except queue.Empty:
                break
        return items

    def wait_published(self, mids: dict, timeout: float, on_other: Callable[[tuple], None] | None = None) -> str | None:
        """Wait for the broker's PUBACK of each mid (mid -> topic) taken from `inbox`; every other
        item goes to `on_other` (or is dropped, an inbound message acknowledged). None when all came
        back accepted, else what went wrong, for the caller's own error."""
        if None in mids:
            return f"paho refused to queue {mids[None]}"
        waiting, deadline = dict(mids), time.monotonic() + timeout
        while waiting:
            left = deadline - time.monotonic()
            if left <= 0:
                return f"no PUBACK for {', '.join(sorted(waiting.values()))} within {timeout:.0f} s"
            try:
                item = self.inbox.get(timeout=left)
            except queue.Empty:
                continue
            if item[0] == "published" and item[1] in waiting:
                topic = waiting.pop(item[1])
                if item[2] >= 0x80:
                    hint = f" ({NOT_AUTHORISED_HINT})" if item[2] == 135 else ": check its access rules"
                    return f"the broker refused {topic}: {reason_words(item[2])}{hint}"
            elif on_other is not None:
                on_other(item)
            elif item[0] == "message":
                self.ack(item[1])
        return None

    def ack(self, message: Inbound) -> None:
        """Acknowledge an applied message, if it came on the current connection (else the broker
        sends it again on this one, and our handlers are idempotent)."""
        if message.qos > 0 and message.generation == self.generation:
            self.client.ack(message.mid, message.qos)
