"""Publishing revocation updates to a site's gates (PROTOCOL §4, §6).

Each update message goes, retained and QoS 1, to `gated/v1/<site>/revocations/<version>/<part>`,
so a gate that connects later (or whose broker session expired) still receives it. The broker then
holds the newest snapshot's parts and every delta since; retained topics of versions older than
the newest snapshot are cleared (an empty retained message), after the new ones are acknowledged,
so a gate never finds a moment with nothing to catch up from.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from paho.mqtt.subscribeoptions import SubscribeOptions

from gated.core import cose, revocation
from gated.core.errors import GatedError
from gated.core.signed import Keyring
from gated.mqtt import MqttLink
from gated.mqtturl import UplinkSettings
from gated.topics import revocation_topic, root


class PublishError(GatedError, RuntimeError):
    """Publishing failed (broker unreachable, an update refused); nothing superseded was cleared."""


@dataclass
class PublishResult:
    published: list[str] = field(default_factory=list)
    cleared: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)


def read_update(blob: bytes, keyring: Keyring | None = None) -> revocation.Update:
    """Decode an update file; verified when a keyring is given, else only checked for shape."""
    if keyring is not None:
        return revocation.parse_update(blob, keyring)
    try:
        body = cose.loads_exact(cose.parse(blob).payload)
    except cose.CoseError as exc:
        raise revocation.UpdateRejected("malformed", str(exc)) from None
    return revocation.update_from_payload(body, "")  # the same payload rules as the gate's


def _version_of(topic: str) -> int | None:
    parts = topic.rsplit("/", 2)
    try:
        return int(parts[-2])
    except (IndexError, ValueError):
        return None


def publish_revocations(
    settings: UplinkSettings,
    site: str,
    blobs: list[bytes],
    *,
    keyring: Keyring | None = None,
    timeout: float = 15.0,
    settle_s: float = 0.5,
) -> PublishResult:
    updates = []
    for blob in blobs:
        update = read_update(blob, keyring)
        if update.site != site:
            raise PublishError(f"update v{update.version} is for site {update.site!r}, not {site!r}")
        updates.append((update, blob))
    link = MqttLink(settings, settings.client_id or f"gated-publisher-{site}-{os.getpid()}", persistent=False)
    link.add_subscription(f"{root(site)}revocations/+/+", SubscribeOptions(qos=1, noLocal=True))
    link.start()
    try:
        if not link.wait_connected(timeout):
            from gated.brokerdiag import probe

            cause = probe(settings, min(timeout, 5.0)) or "the broker accepts TCP and TLS but not the MQTT CONNECT"
            raise PublishError(f"no connection to {settings.url} within {timeout:.0f} s: {cause}")
        retained = _collect_retained(link, settle_s, timeout)
        result = PublishResult()
        mids = {}
        for update, blob in updates:
            topic = revocation_topic(site, update.version, update.part)
            mids[link.publish(topic, blob, 1, True)] = topic
        _wait_acks(link, mids, timeout, retained)
        result.published = sorted(mids.values())
        versions = {t: _version_of(t) for t in set(retained) | set(result.published)}
        snapshots = [u.version for u, _ in updates if u.is_snapshot]
        snapshots += [u.version for t, u in retained.items() if u is not None and u.is_snapshot]
        newest = max(snapshots, default=0)
        clear = sorted(t for t, v in versions.items() if v is not None and v < newest and t in retained)
        mids = {link.publish(t, b"", 1, True): t for t in clear}
        _wait_acks(link, mids, timeout, retained)
        result.cleared = clear
        result.kept = sorted(t for t in versions if t not in clear)
        return result
    finally:
        link.stop()


def publish_retained(
    settings: UplinkSettings, topic: str, blob: bytes, *, client_id: str, timeout: float = 15.0
) -> None:
    """One retained QoS 1 message (the pretix check-in list...); returns when the broker acknowledged it."""
    link = MqttLink(settings, settings.client_id or client_id, persistent=False)
    link.start()
    try:
        if not link.wait_connected(timeout):
            raise PublishError(f"no connection to {settings.url} within {timeout:.0f} s")
        _wait_acks(link, {link.publish(topic, blob, 1, True): topic}, timeout, {})
    finally:
        link.stop()


def _collect_retained(link: MqttLink, settle_s: float, timeout: float) -> dict:
    """Topic -> decoded update (None if undecodable) of what the broker holds retained now."""
    retained: dict[str, revocation.Update | None] = {}
    for item in link.settle(settle_s, timeout):
        _note(item, link, retained)
    return retained


def _note(item, link: MqttLink, retained: dict) -> None:
    if item[0] != "message":
        return
    message = item[1]
    link.ack(message)
    if not message.payload:
        retained.pop(message.topic, None)
        return
    try:
        retained[message.topic] = read_update(message.payload)
    except revocation.UpdateRejected:
        retained[message.topic] = None


def _wait_acks(link: MqttLink, mids: dict, timeout: float, retained: dict) -> None:
    problem = link.wait_published(mids, timeout, on_other=lambda item: _note(item, link, retained))
    if problem is not None:
        raise PublishError(problem)
