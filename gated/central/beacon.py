"""The central side's time beacons (PROTOCOL §7): every 10 s, retained, QoS 1, on
gated/v1/<site>/time, a COSE_Sign1 by a `command` key over {1: site, 2: unix ms, 3: sequence}.

The sequence is the beacon's unix milliseconds, bumped to the previous sequence + 1 if the clock
ever stands still or steps back: strictly increasing within a run, and a restarted publisher
continues above the sequences gates have already accepted (as long as the central clock is right,
which the whole scheme assumes). Gates ignore a sequence not above the last one they accepted.
"""

from __future__ import annotations

import queue
import time
from typing import Callable

import structlog

from gated.brokerdiag import link_words
from gated.core.beacon import BEACON_INTERVAL_S, encode_beacon
from gated.core.errors import GatedError
from gated.mqtt import MqttLink
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


def connect(settings, client_id: str, timeout: float = 10.0) -> MqttLink:
    """A connected link (the shared MQTT client, gated/mqtt.py; clean session: a beacon is only
    useful fresh), which reconnects by itself if the broker goes away later."""
    link = MqttLink(settings, client_id, persistent=False)
    link.start()
    if not link.wait_connected(timeout):
        refused = _refusal(link)
        link.stop()
        if refused is None:
            from gated.brokerdiag import probe

            refused = probe(settings, 5.0)
        raise BeaconPublishError(
            f"the broker at {settings.url} did not accept the connection"
            + (f" ({refused})" if refused else "")
            + ": check --broker, the certificate and the ACL"
        )
    return link


def publish_beacons(
    link: MqttLink,
    source: BeaconSource,
    *,
    interval_s: float = BEACON_INTERVAL_S,
    count: int | None = None,
    wall: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
    ack_timeout_s: float = 10.0,
    stopped: Callable[[], bool] = lambda: False,
) -> int:
    """Publish a beacon every `interval_s` (on a monotonic schedule), `count` times or until
    `stopped()` (checked after each sleep, so a `sleep` that returns early on a stop request ends it).
    Returns the number the broker acknowledged; a beacon not acknowledged in time is logged and
    the next one follows (a beacon is only useful fresh, so none is resent)."""
    topic = beacon_topic(source.site)
    acknowledged = sent = 0
    start = time.monotonic()
    while (count is None or sent < count) and not stopped():
        payload = source.next(int(wall() * 1000))
        mid = link.publish(topic, payload, qos=1, retain=True)
        sent += 1
        if mid is not None and _acknowledged(link, mid, ack_timeout_s):
            acknowledged += 1
            log.debug("beacon_sent", site=source.site, seq=source.last_seq)
        else:
            log.warning("beacon_not_acknowledged", site=source.site, seq=source.last_seq)
        if count is not None and sent >= count:
            break
        sleep(max(0.0, start + sent * interval_s - time.monotonic()))
    return acknowledged


def _acknowledged(link: MqttLink, mid: int, timeout: float) -> bool:
    """Wait for the PUBACK of `mid` on the link's queue (what else comes is logged and dropped)."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        try:
            item = link.inbox.get(timeout=left)
        except queue.Empty:
            break
        if item[0] == "published" and item[1] == mid:
            return item[2] < 0x80  # MQTT v5: below 0x80 is success (16: no subscriber yet, still kept)
        if item[0] in ("disconnected", "refused"):
            log.warning("beacon_link", state=link_words(item))
    return False


def _refusal(link: MqttLink) -> str | None:
    while True:
        try:
            item = link.inbox.get_nowait()
        except queue.Empty:
            return None
        if item[0] == "refused":
            return item[1]
