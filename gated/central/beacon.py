"""The central side's time beacons (PROTOCOL §7): every 10 s, retained, QoS 1, on
gated/v1/<site>/time, a COSE_Sign1 by a `command` key over {1: site, 2: unix ms, 3: sequence}.

The sequence is the beacon's unix milliseconds, bumped to the previous sequence + 1 if the clock
ever stands still or steps back: strictly increasing within a run, and a restarted publisher
continues above the sequences gates have already accepted (as long as the central clock is right,
which the whole scheme assumes). Gates ignore a sequence not above the last one they accepted.
"""

from __future__ import annotations

import time
from typing import Callable

import paho.mqtt.client as mqtt
import structlog

from gated.core.errors import GatedError
from gated.clock import BEACON_INTERVAL_S, encode_beacon
from gated.topics import beacon_topic

log = structlog.get_logger("gated.beacon")


class BeaconSource:
    """Makes the signed beacon payloads (no I/O)."""

    def __init__(self, key, site: str, last_seq: int = 0):
        self.key, self.site, self.last_seq = key, site, last_seq

    def next(self, unix_ms: int) -> bytes:
        seq = max(int(unix_ms), self.last_seq + 1)
        self.last_seq = seq
        return encode_beacon(self.key, site=self.site, unix_ms=int(unix_ms), seq=seq)


class BeaconPublishError(GatedError, RuntimeError):
    """The broker could not be reached or did not acknowledge; check --broker and the broker's ACL."""


def connect(settings, client_id: str, timeout: float = 10.0) -> mqtt.Client:
    """A connected paho client (MQTT v5, clean session, paho reconnects by itself)."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    if settings.tls:
        client.tls_set(ca_certs=settings.ca_file, certfile=settings.cert_file, keyfile=settings.key_file)
    if settings.username is not None:
        client.username_pw_set(settings.username, settings.password)
    client.reconnect_delay_set(1, 30)
    try:
        client.connect(settings.host, settings.port, keepalive=30)
    except OSError as exc:
        raise BeaconPublishError(f"cannot reach the broker at {settings.url}: {exc}") from None
    client.loop_start()
    deadline = time.monotonic() + timeout
    while not client.is_connected():
        if time.monotonic() > deadline:
            client.loop_stop()
            raise BeaconPublishError(f"the broker at {settings.url} did not accept the connection")
        time.sleep(0.02)
    return client


def publish_beacons(client: mqtt.Client, source: BeaconSource, *, interval_s: float = BEACON_INTERVAL_S,
                    count: int | None = None, wall: Callable[[], float] = time.time,
                    sleep: Callable[[float], None] = time.sleep, ack_timeout_s: float = 10.0,
                    stopped: Callable[[], bool] = lambda: False) -> int:
    """Publish a beacon every `interval_s` (on a monotonic schedule), `count` times or until
    `stopped()` (checked after each sleep, so a `sleep` that returns early on a stop request ends it).
    Returns the number the broker acknowledged; a beacon not acknowledged in time is logged and
    the next one follows (a beacon is only useful fresh, so none is resent)."""
    topic = beacon_topic(source.site)
    acknowledged = sent = 0
    start = time.monotonic()
    while (count is None or sent < count) and not stopped():
        payload = source.next(int(wall() * 1000))
        info = client.publish(topic, payload, qos=1, retain=True)
        sent += 1
        try:
            info.wait_for_publish(timeout=ack_timeout_s)
        except (RuntimeError, ValueError) as exc:  # paho: not connected / queue refused
            log.warning("beacon_not_sent", seq=source.last_seq, error=str(exc))
        if info.is_published():
            acknowledged += 1
            log.debug("beacon_sent", site=source.site, seq=source.last_seq)
        else:
            log.warning("beacon_not_acknowledged", site=source.site, seq=source.last_seq)
        if count is not None and sent >= count:
            break
        sleep(max(0.0, start + sent * interval_s - time.monotonic()))
    return acknowledged
