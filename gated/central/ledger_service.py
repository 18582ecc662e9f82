"""The ledger service (`gated ledger`): a subscription feeding the ledger (gated/central/ledger.py).

    gated/v1/<site>/gates/+/events  --(persistent session, or $share/<group>/...)-->  Ledger.ingest()

Runs on the caller's thread; paho's thread only queues messages. Each message is acknowledged to the
broker only after the batch holding it has committed. After each commit the service publishes, per
gate, what the ledger holds of its events (`committed`: its prefix and the ranges above it,
docs/protocol.md "Committed events"), and at most every `occupancy_every_s` the site's occupancy
(gated/core/occupancy.py), both signed by the ledger's key (gated/core/ledgersig.py). It reads the
gates' status for their floor (the lowest seq each still holds): below it, what the ledger lacks is
a declared loss.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import structlog

from gated.brokerdiag import link_words
from gated.central.chains import newer_floor
from gated.central.ledger import IngestResult, Ledger, gate_partition
from gated.core.confirmation import FloorRejected, read_floor
from gated.core.confirmation import encode as encode_confirmation
from gated.core.events import MAX_NAME, is_name
from gated.keys import KEYRING_FILE, KeyringError, load_keyring
from gated.topics import committed_topic, events_topic, status_topic, status_topic_gate

log = structlog.get_logger("gated.ledger")

NOT_A_GATE = f"the topic's gate is empty, over {MAX_NAME} characters or holds + # or NUL"


def ledger_topic(site: str, group: str | None = None) -> str:
    """The ledger's subscription. With a group, an MQTT v5 shared subscription (`$share/<group>/...`):
    the ledgers of one group split the events between them. Without, a plain one: every ledger keeps
    a full copy. The plain one is the default because Mosquitto 2.0.11 does not restore shared
    subscriptions from its persistence file: after a broker restart, events published before the
    ledger has subscribed again reach no ledger of the group (they show as gaps in `gated reconcile`;
    tests/system/test_uplink.py measures both)."""
    plain = events_topic(site, "+")
    return f"$share/{group}/{plain}" if group else plain


class LedgerService:
    """Subscribe, ingest in batches, acknowledge each message only after its batch has committed.
    Runs on the caller's thread (`run()`); paho's thread only queues messages."""

    def __init__(
        self,
        ledger: Ledger,
        settings,
        *,
        site: str,
        group: str | None = None,
        batch: int = 2000,
        publish_committed: bool = True,
        occupancy_every_s: float = 1.0,
        day_start=None,
        signing_key=None,
        keyring_dir=None,
        admissions_key=None,
    ):
        """`publish_committed`: after each commit, publish to every gate of the batch, retained, the
        highest seq up to which the ledger holds all its events (`committed`, docs/protocol.md).
        `occupancy_every_s`: at most that often, the site's occupancy, retained (gated/central/occupancy.py).
        `day_start`: a gated.daystart.DayStart: the occupancy counts from the venue's latest day start.
        `signing_key`: the ledger's Ed25519 key (keyring role `ledger` at the gates): `committed` and
        occupancy are signed with it (gated/core/ledgersig.py); without it they go unsigned, which gates of
        this version ignore.
        `keyring_dir`: reloaded when its keyring.toml changes (an approved replaced gate's key).
        `admissions_key`: a revocation signing key: a replaced gate's status asking for the admissions
        snapshot gets it (gated/central/admissions.py)."""
        from paho.mqtt.subscribeoptions import SubscribeOptions

        from gated.mqtt import MqttLink

        self.ledger, self.site, self.batch, self.publish_committed = ledger, site, batch, publish_committed
        self.signing_key = signing_key
        if signing_key is None:
            log.warning(
                "no --signing-key: committed and occupancy go out unsigned, and gates ignore them "
                "(they keep every event until a signed confirmation; docs/central.md)"
            )
        part = f"-p{ledger.partition[0]}of{ledger.partition[1]}" if ledger.partition else ""
        self.link = MqttLink(settings, settings.client_id or f"gated-ledger-{site}-{os.uname().nodename}{part}")
        self.link.add_subscription(ledger_topic(site, group), SubscribeOptions(qos=1))
        # the gates' floors (status, retained: every gate's comes on each connect), plain even with a group
        self.link.add_subscription(status_topic(site, "+"), SubscribeOptions(qos=1))
        self.received = 0
        self.floors_ignored = 0  # gate floors not believed: unsigned, or not by the gate's device key
        self.stored = 0
        self.on_stored = None  # called with each event stored (`gated ledger -v`)
        self.duplicates = 0  # events received again and dropped by id (re-sent by a gate, redelivered)
        self.occupancy_every_s = occupancy_every_s
        self.day_start = day_start
        self._counted_since: int | None = None  # the day start the last occupancy message counted from
        self._occupancy_due = 0.0  # monotonic time the next occupancy message may go out
        self._occupancy_dirty = True  # publish once on start, then after new events
        self._not_counted_said = None  # the zones left out of the occupancy, as last logged
        # the ledger's keyring directory: reloaded when keyring.toml changes (an approved replaced gate)
        self.keyring_dir = keyring_dir
        self._keyring_seen = self._keyring_stamp()
        self._keyring_checked = time.monotonic()
        self.auto_snapshot = None
        if admissions_key is not None:
            from gated.central.admissions import AutoSnapshot

            self.auto_snapshot = AutoSnapshot(ledger, admissions_key, site)  # answers the statuses (_floors)

    def start(self) -> "LedgerService":
        self.link.start()
        return self

    def stop(self) -> None:
        self.link.stop()

    def step(self, timeout: float = 0.2) -> IngestResult | None:
        """Take what has arrived (waiting up to `timeout` for the first message), store it, ack it."""
        import queue

        messages = []
        try:
            item = self.link.inbox.get(timeout=timeout)
            while True:
                if item[0] == "message":
                    messages.append(item[1])
                elif item[0] in ("connected", "disconnected", "refused"):
                    log.info("ledger link", state=link_words(item))
                if len(messages) >= self.batch:
                    break
                item = self.link.inbox.get_nowait()
        except queue.Empty:
            pass
        self._reload_keyring_if_changed()
        statuses = [m for m in messages if status_topic_gate(m.topic, self.site) is not None]
        messages = [m for m in messages if status_topic_gate(m.topic, self.site) is None]
        result = None
        if messages:
            result = self.ledger.ingest([m.payload for m in messages], topics=[m.topic for m in messages])
            for message in messages:
                self.link.ack(message)
            self._confirm(result.committed)
        if statuses:  # after the events that came with them: the confirmation counts those too
            self._floors(statuses)
        if result is None:
            self.publish_occupancy()
            return None
        self.received += len(messages)
        self.stored += result.new
        self.duplicates += result.duplicates
        if self.on_stored is not None:
            for event in result.stored:
                self.on_stored(event)
        for problem in result.problems:
            log.warning("ledger problem", **problem)
        self._occupancy_dirty = self._occupancy_dirty or result.new > 0
        self.publish_occupancy()
        return result

    def _answer_snapshot(self, gate: str, status: bytes) -> None:
        """With an admissions key: a replaced gate's status that asks for the admissions snapshot
        answered with it (at most once a minute per gate and chain, once every 10 s for the site: AutoSnapshot)."""
        if self.auto_snapshot is None:
            return
        try:  # its own error boundary: the status is still read for its floor and acknowledged
            if not self.auto_snapshot.wanted(gate, status, time.monotonic()):
                return
            published = self.auto_snapshot.messages(time.time_ns() // 1_000_000)
            for topic, blob in published:
                self.link.publish(topic, blob, 1, True)
        except Exception as exc:  # noqa: BLE001 - one status must not stop the ledger
            log.error("admissions snapshot not published", gate=gate, error=f"{type(exc).__name__}: {exc}"[:200])
            return
        log.info("admissions snapshot published for a replaced gate", gate=gate, parts=len(published))

    def _keyring_stamp(self):
        if self.keyring_dir is None:
            return None
        try:
            found = (Path(self.keyring_dir) / KEYRING_FILE).stat()
        except OSError:
            return None
        return found.st_mtime_ns, found.st_size, found.st_ino

    def _reload_keyring_if_changed(self) -> None:
        """Every 2 s: a keyring.toml rewritten (atomically: a new inode) since the last look is loaded
        and the messages waiting for an approved key are taken in again (Ledger.set_keyring). A
        keyring that does not load is logged and the old one kept."""
        if self.keyring_dir is None or time.monotonic() - self._keyring_checked < 2.0:
            return
        self._keyring_checked = time.monotonic()
        stamp = self._keyring_stamp()
        if stamp is None or stamp == self._keyring_seen:
            return
        self._keyring_seen = stamp
        try:
            keyring = load_keyring(self.keyring_dir)
        except KeyringError as exc:
            log.error("keyring changed but does not load; the old one stays in use", error=str(exc)[:300])
            return
        result = self.ledger.set_keyring(keyring)
        self._confirm(result.committed)
        self.stored += result.new
        self._occupancy_dirty = self._occupancy_dirty or result.new > 0

    def _floors(self, statuses: list) -> None:
        """The floors in gates' status messages (of this worker's partition): recorded (what the
        ledger lacks below one is a declared loss), then each of those gates told what the ledger holds
        (a gate that came online, or a ledger that just started, hears at once). Acknowledged after."""
        floors: dict[str, int] = {}
        # gates whose status carried a floor, believed or not: each hears what the ledger holds (that
        # live answer is what lets a gate send again what reached no ledger; a gate the ledger does not
        # trust yet, before `gated keys enrol --approve`, would otherwise wait for its next event)
        heard: set[str] = set()
        part = self.ledger.partition
        for message in statuses:
            gate = status_topic_gate(message.topic, self.site)
            if gate is None or (part is not None and gate_partition(gate, part[1]) != part[0]):
                continue
            if not is_name(gate):  # no event can name it (docs/protocol.md section 5): no gate of the ledger
                self.floors_ignored += 1
                log.warning("status of no gate ignored", gate=gate[:64], length=len(gate), detail=NOT_A_GATE)
                continue
            self._answer_snapshot(gate, message.payload)  # whatever its floor: a replaced gate's key may wait
            site = self.site if self.site is not None else _topic_site(message.topic)
            try:
                floor = read_floor(message.payload, site=site, gate=gate, keyring=self.ledger.keyring)
            except FloorRejected as exc:  # hostile or old: nothing declared lost, nothing confirmed by it
                self.floors_ignored += 1
                log.warning("gate floor ignored", gate=gate, code=exc.code, detail=exc.detail[:200])
                heard.add(gate)
                continue
            if floor is not None:
                # the later status of a replaced gate's new chain wins (gated/central/chains.py)
                floors[gate] = newer_floor(floors.get(gate), floor)
                heard.add(gate)
        committed = self.ledger.declare_floors(floors, heard)
        for message in statuses:
            self.link.ack(message)
        self._confirm(committed)

    def _confirm(self, committed: dict[str, int]) -> None:
        """Publish, retained, to each gate what the ledger holds of its events (docs/protocol.md,
        "Committed events")."""
        if not self.publish_committed or not committed:
            return
        for gate, (seq, held) in self.ledger.confirmations(committed).items():
            self.link.publish(
                committed_topic(self.site, gate),
                self._sealed(json.loads(encode_confirmation(seq, held)), site=self.site, gate=gate),
                1,
                True,
            )

    def _sealed(self, body: dict, **binding) -> bytes:
        """A message to the gates, signed by the ledger's key when it has one (`binding`: the site and
        gate it is about, inside the signature)."""
        if self.signing_key is None:
            return json.dumps(body, separators=(",", ":")).encode()
        from gated.core.ledgersig import seal

        return seal({**body, **binding}, self.signing_key)

    def publish_occupancy(self) -> None:
        """People inside per zone, retained on gated/v1/<site>/occupancy (gated/core/occupancy.py),
        at most every `occupancy_every_s`, after new events (gates with a capacity and `gated status`
        read it). A message its readers would refuse (over 64 KiB, or 1000 zones) is not published:
        logged, and the last one stays retained; movements in a zone that is not a zone name are
        not counted (logged when that changes)."""
        now = time.monotonic()
        now_ms = time.time_ns() // 1_000_000
        since_ms = self.day_start.before(now_ms) if self.day_start is not None else None
        if since_ms != self._counted_since:  # a new day: the counts start over, whether or not anything came
            self._occupancy_dirty = True
        if not self._occupancy_dirty or now < self._occupancy_due or not self.link.connected:
            return
        from gated.core.events import format_ts
        from gated.core.ledgersig import MAX_BYTES as SEALED_MAX_BYTES
        from gated.core.occupancy import OccupancyRejected, encode_occupancy, read_occupancy
        from gated.topics import occupancy_topic

        figures, as_of = self.ledger.occupancy_as_of(None if since_ms is None else format_ts(since_ms))
        if figures.get("not_counted") != self._not_counted_said:
            self._not_counted_said = figures.get("not_counted")
            if self._not_counted_said:
                log.warning(
                    "occupancy: movements in zones that are not zone names (over 128 characters, or a "
                    "control character) are not counted",
                    **self._not_counted_said,
                )
        text = encode_occupancy(self.site, figures["zones"], now_ms, as_of, since_ms)
        payload = self._sealed(json.loads(text))
        try:
            read_occupancy(text, site=self.site)  # what every reader does with it
            if len(payload) > SEALED_MAX_BYTES:
                raise OccupancyRejected(f"message of {len(payload)} bytes signed, over {SEALED_MAX_BYTES}")
        except OccupancyRejected as exc:
            log.error(
                "occupancy message not published: its readers would refuse it; the last one stays",
                problem=str(exc),
                zones=len(figures["zones"]),
            )
        else:
            self.link.publish(occupancy_topic(self.site), payload, 1, True)
        self._counted_since = since_ms
        self._occupancy_dirty, self._occupancy_due = False, now + self.occupancy_every_s

    def run(self, stop=None) -> None:
        """Until `stop` (a threading.Event) is set, or forever."""
        while stop is None or not stop.is_set():
            self.step()


def _topic_site(topic: str) -> str:
    """The site a gate topic names (`gated/v1/<site>/gates/...`)."""
    parts = topic.split("/")
    return parts[2] if len(parts) > 2 else ""
