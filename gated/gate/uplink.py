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

End to end, always (docs/protocol.md "Committed events"; gated/core/confirmation.py): a PUBACK only
marks the row as delivered to the broker; the row leaves the outbox when the ledger's retained
`gates/<gate>/committed` says it holds it (its prefix, or one of the ranges it holds above it). So
the outbox is exactly what no ledger has confirmed, and every status carries its `floor` (the
lowest seq still held): the ledger moves past what it lacks below the floor (a declared loss) and
never waits for what no gate can send. A broker (or a bridge) that dies loses what it had
acknowledged: when the oldest delivered row stays unconfirmed for `resend_after_s` while a ledger
answers on this connection, the uplink sends again what the ledger passed over (the ledger drops
what it already has), waiting twice as long before the next try, at most an hour (back to
`resend_after_s` when the oldest waiting row is confirmed, or a ledger answers live for the first
time on a connection). Rows
the broker acknowledged longer than `outbox_retention_s` ago that no ledger confirmed are dropped,
with a warning and a counter (`dropped_unconfirmed`), and the new floor is announced.
"""

from __future__ import annotations

import json
import queue
import time
from typing import TYPE_CHECKING, Callable

import paho.mqtt.client as mqtt
import structlog
from paho.mqtt.subscribeoptions import SubscribeOptions

from gated import __version__
from gated.brokerdiag import NOT_AUTHORISED_HINT, reason_words
from gated.core import confirmation as confirmations
from gated.core import events
from gated.core.announce import device_announcement
from gated.core.command import CommandRejected, parse_command
from gated.core.ledgersig import UnverifiedLedgerMessage, unseal
from gated.core.signed import Keyring
from gated.gate import revocations
from gated.gate.store import StoreError
from gated.mqtt import Inbound, MqttLink
from gated.mqtturl import UplinkSettings
from gated.topics import command_topic, committed_topic, events_topic, events_topic_gate, root, status_topic

if TYPE_CHECKING:
    from gated.gate.clock import TimeReading

log = structlog.get_logger("gated.gate.uplink")

NONCE_KEY = "command_nonce"


def now_ms() -> int:
    """The system clock, never past events.MAX_TIME_MS (a board whose clock says year 10000 would
    otherwise fail every status message it stamps)."""
    return min(time.time_ns() // 1_000_000, events.MAX_TIME_MS)


# --- the gate's uplink ----------------------------------------------------------------------------


class Uplink:
    def __init__(
        self,
        *,
        store,
        keyring: Keyring,
        settings: UplinkSettings,
        site: str,
        gate: str,
        on_command: Callable[[str], None] | None = None,
        status: Callable[[], dict] | None = None,
        command_max_age_s: float = 60.0,
        time_reading: Callable[[], TimeReading] | None = None,
    ):
        """`time_reading`: the gate's trusted clock (TrustedClock.reading), to judge a command's age
        with; without it the wall clock, taken as trusted."""
        self.store, self.keyring, self.settings = store, keyring, settings
        self.command_max_age_s, self.time_reading = command_max_age_s, time_reading
        self.site, self.gate = site, gate
        self.on_command, self.status = on_command, status
        self._rev = store.revocation_state().version  # for the will, which paho's thread builds
        self._floor = store.outbox_floor()  # the lowest seq still held, in every status (and the will)
        self._device = device_announcement(store.device_public_key)  # in every status: enrolment by kid
        last = store.get_value(NONCE_KEY)
        self.last_command = None if last is None else int(last)  # nonce of the last command applied (`cmd`)
        self.command_iat: int | None = None  # `iat` (unix s) of the command being applied
        self.link = MqttLink(settings, settings.client_id or f"gated-{site}-{gate}", will=self._will)
        self._handlers: list[tuple[str, Callable[[str, bytes], None]]] = []
        self._inflight: dict[int, int] = {}  # paho mid -> outbox seq
        self._sent_through = 0  # highest outbox seq handed to paho in this process
        self._retry_after = 0.0
        self._acked: list[int] = []  # seqs whose PUBACK came, deleted from the outbox at the end of poll()
        self.delivered = 0  # events acknowledged by the broker since start
        # end to end: the ledger's committed seq, when the ledger last confirmed something (or the
        # outbox was last sent again), the wait before re-sending, rows the broker holds that no
        # ledger confirmed, the last confirmation (to tell a new one), the floor announced
        self.committed = 0
        self.confirmation: confirmations.Confirmation | None = None
        self.dropped_unconfirmed = 0  # rows dropped after the retention with no ledger's confirmation
        self.unverified_ledger_messages = 0  # committed/occupancy ignored: unsigned or not by a ledger key
        self._progress_at = time.monotonic()
        self._resend_wait = settings.resend_after_s
        self._pruned_at = 0.0
        self._counted_at = 0.0
        self._unconfirmed = store.outbox_counts()[1]
        # rows the broker took before a restart wait for the ledger's answer; from the first it never took on
        self._sent_through = min(store.delivered_through(), store.lowest_undelivered() - 1)
        self._heard = False  # a live (not retained) confirmation came on this connection
        self._chain_told = False  # a live confirmation of another chain of this gate came on this connection
        self._lowest = store.lowest_unconfirmed()  # the oldest row waiting for the ledger: stuck while it stays
        self._resend_cursor, self._resend_until = 0, 0  # rows being sent again: seqs in (cursor, until]
        if settings.keep_until_committed is not None:
            log.info(
                "[mqtt] keep_until_committed is no longer needed: a gate always keeps each event until "
                'the ledger confirms it (docs/protocol.md, "Committed events")'
            )
        rev = root(site)
        self.link.add_subscription(f"{rev}revocations/+/+", SubscribeOptions(qos=1))
        self.link.add_subscription(f"{rev}gates/+/events", SubscribeOptions(qos=1, noLocal=True))
        self.link.add_subscription(command_topic(site, gate), SubscribeOptions(qos=1))
        self.link.add_subscription(committed_topic(site, gate), SubscribeOptions(qos=1))

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

    @property
    def unconfirmed(self) -> int:
        """Rows the broker acknowledged that no ledger has confirmed yet."""
        return self._unconfirmed

    # the interface for the rest of the gate ----------------------------------------------------
    def subscribe(self, topic_filter: str, handler: Callable[[str, bytes], None]) -> None:
        """Extra topics (time beacons...): `handler(topic, payload)` runs on the owner thread in poll()."""
        self._handlers.append((topic_filter, handler))
        self.link.add_subscription(topic_filter, SubscribeOptions(qos=1))

    def publish(self, topic: str, payload: bytes | str, qos: int = 1, retain: bool = False) -> int | None:
        return self.link.publish(topic, payload.encode() if isinstance(payload, str) else payload, qos, retain)

    def announce(self) -> int | None:
        """Publish the gate's status as it stands (its state and what `status()` adds; the floor)."""
        extra = dict(self.status()) if self.status else {}
        return self.publish_status(extra.pop("state", "online"), **extra)

    def publish_status(self, state: str, **extra) -> int | None:
        return self.publish(status_topic(self.site, self.gate), self._status_payload(state, **extra), 1, True)

    def _status_payload(self, state: str, rev: int | None = None, **extra) -> bytes:
        body = {
            "state": state,
            "rev": self.store.revocation_state().version if rev is None else rev,
            "version": __version__,
            "ts": events.format_ts(now_ms()),
            "floor": self._floor,
            "floor_sig": self.store.floor_signature(self.site, self._floor),
            **self._device,
            **extra,
        }
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
        self._resend_if_stuck()
        self._drain_outbox()
        self._rev = self.store.revocation_state().version

    def _handle(self, item: tuple) -> None:
        kind = item[0]
        if kind == "published":
            self._published(item[1], item[2])
        elif kind == "message":
            self._dispatch(item[1])
        elif kind == "connected":
            log.info(
                "uplink connected",
                broker=self.settings.url,
                session_present=item[2],
                outbox=self.outbox_depth,
                unconfirmed=self._unconfirmed,
            )
            self._floor = self.store.outbox_floor()
            self.confirmation = None  # the next one counts as news
            self._heard = False  # no live answer from a ledger on this connection yet
            self._chain_told = False  # no confirmation of another chain of this gate on this connection yet
            self.announce()
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
        if self._resend_until:  # first the rows being sent again, below what is sent anyway
            batch = self.store.outbox(self._resend_cursor, room)
            rows = [r for r in batch if r[0] <= self._resend_until]
            for seq, event in rows:
                mid = self.link.publish(topic, event.encode(), 1, False)
                if mid is None:
                    return
                self._inflight[mid] = seq
                self._resend_cursor = seq
            if len(rows) < len(batch) or len(batch) < room:  # past the end of what is sent again
                self._resend_until = 0
            room -= len(rows)
            if room <= 0:
                return
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
            log.error(
                "broker refused an event; it stays in the outbox",
                seq=seq,
                reason=reason_words(reason),
                hint=NOT_AUTHORISED_HINT if reason == 135 else None,
            )
            self._sent_through = min(self._sent_through, seq - 1)
            self._retry_after = time.monotonic() + 5.0
            return
        self._acked.append(seq)

    def _acknowledge_delivered(self) -> None:
        if self._acked:
            self.store.mark_delivered(self._acked, now_ms())
            self._unconfirmed += len(self._acked)
            self.delivered += len(self._acked)
            self._acked = []

    def _committed(self, payload: bytes, live: bool = True) -> None:
        """The ledger's confirmation (gated/core/confirmation.py), signed by a `ledger` key
        (gated/core/ledgersig.py) and about this gate: the rows it covers leave the outbox."""
        try:
            text, _signer = unseal(payload, self.keyring)
            confirmation = confirmations.read(text, site=self.site, gate=self.gate)
        except UnverifiedLedgerMessage as exc:
            self.unverified_ledger_messages += 1
            log.warning("committed message ignored: not from the ledger", code=exc.code, detail=exc.detail[:200])
            return
        except confirmations.ConfirmationRejected as exc:
            log.warning("committed message ignored", problem=str(exc))
            return
        last = self.store.last_seq
        chain = events.epoch_of(last)  # this state's chain: a replaced gate's seqs start at its epoch's base
        if confirmation.seq and events.epoch_of(confirmation.seq) != chain and live and not self._chain_told:
            # once a connection: said, and the status again, whose signed floor names this chain (a
            # ledger with the gate's key follows it from there: docs/protocol.md, "Replacing a gate")
            self._chain_told = True
            log.warning(
                "the ledger confirms another chain of this gate (it follows an earlier state of it): "
                "nothing of this chain counts as confirmed; status sent again",
                ledger_seq=confirmation.seq,
                epoch=chain,
            )
            self.announce()
        confirmation = confirmation.of_chain(chain)
        if confirmation.seq > last:
            log.warning(
                "the ledger confirms seqs beyond this gate's last event (its state restored from a backup?): "
                "only rows it has sent count",
                ledger_seq=confirmation.seq,
                last_seq=last,
            )
        confirmation = confirmation.clipped(last)
        self._acknowledge_delivered()  # PUBACKs taken earlier in this poll: their rows count as the broker's
        first_answer = live and not self._heard
        self.confirmation = confirmation
        self._heard = self._heard or live  # a ledger is there and answering (a retained message may be old)
        self.committed = max(self.committed, confirmation.seq)
        pruned = self.store.prune_confirmed(confirmation)
        lowest = self.store.lowest_unconfirmed() if pruned else self._lowest
        if first_answer or lowest != self._lowest:
            # a ledger answers, or the oldest waiting row was confirmed: count from now, and try again
            # soon if it lacks rows. Newer rows confirmed above a hole are no progress for the hole (a
            # busy gate's lost events would otherwise wait for a lull in the traffic)
            self._lowest = lowest
            self._progress_at, self._resend_wait = time.monotonic(), self.settings.resend_after_s
        if pruned:
            self._unconfirmed = self.store.outbox_counts()[1]
            self._floor = self.store.outbox_floor()
        log.debug("ledger confirmed", seq=confirmation.seq, held=len(confirmation.held), pruned=pruned)

    def _resend_if_stuck(self) -> None:
        """Send the outbox again when rows the broker acknowledged have waited `_resend_wait` without
        a confirmation; drop rows past the operator's retention (counted, logged, the floor announced)."""
        now = time.monotonic()
        if now - self._counted_at >= 1.0:
            self._counted_at = now
            self._unconfirmed = self.store.outbox_counts()[1]
            lowest = self.store.lowest_unconfirmed()
            if lowest != self._lowest:  # the oldest waiting row was confirmed: progress
                self._lowest, self._progress_at = lowest, now
        if self._unconfirmed == 0:
            self._progress_at = now
        elif now - self._progress_at >= self._resend_wait and self.connected and self._heard:
            # only when a ledger answers on this connection: while none does, sending again only piles
            # duplicates into the broker's queues; a ledger that starts hears the gate's status and answers
            # what the ledger has passed over (below the highest seq it confirmed) is sent again; with no
            # sign it has seen anything since, the whole outbox (it holds only what no ledger confirmed)
            top = (
                0
                if self.confirmation is None
                else max([self.confirmation.seq, *(b for _, b in self.confirmation.held)])
            )
            log.warning(
                "ledger has not confirmed delivered events; sending them again",
                committed=self.committed,
                unconfirmed=self._unconfirmed,
                waited_s=round(self._resend_wait, 1),
                up_to=min(top, self._sent_through) if top > self.committed else "all",
            )
            if top > self.committed and self._lowest is not None and self._lowest < top:
                self._resend_cursor, self._resend_until = 0, min(top, self._sent_through)
            else:
                self._sent_through = 0
            self._progress_at, self._resend_wait = now, min(self._resend_wait * 2, 3600.0)
        if now - self._pruned_at >= 60.0:
            self._pruned_at = now
            dropped = self.store.prune_expired(now_ms() - int(self.settings.outbox_retention_s * 1000))
            if dropped:
                self.dropped_unconfirmed += dropped
                self._unconfirmed = self.store.outbox_counts()[1]
                log.warning(
                    "outbox events dropped unconfirmed by the ledger after the retention",
                    count=dropped,
                    retention_s=self.settings.outbox_retention_s,
                    total=self.dropped_unconfirmed,
                )
                floor = self.store.outbox_floor()
                if floor != self._floor:
                    self._floor = floor
                    if self.connected:  # the ledger moves past what it will never get (a declared loss)
                        self.announce()

    # inbound
    def _dispatch(self, message: Inbound) -> None:
        """Each inbound message in its own error boundary: whatever a message makes a handler raise
        is logged with why and the message is acknowledged and dropped (a broker redelivering it
        after every restart would otherwise be a crash loop), except a failing store, which may be
        the disk rather than the message: that one is not acknowledged, so it comes again on the next
        connection, and the loop goes on."""
        try:
            self._route(message)
        except StoreError as exc:
            log.error(
                "inbound message not applied: store fault; not acknowledged, so the broker sends it again "
                "on the next connection",
                topic=message.topic[:200],
                error=str(exc),
            )
            return
        except Exception as exc:  # noqa: BLE001 - the per-message error boundary: logged, acknowledged, dropped
            log.error(
                "inbound message dropped: its handler failed",
                topic=message.topic[:200],
                size=len(message.payload),
                error=f"{type(exc).__name__}: {exc}"[:300],
            )
        self.link.ack(message)

    def _route(self, message: Inbound) -> None:
        base = root(self.site)
        topic = message.topic
        if topic.startswith(base + "revocations/"):
            self._revocation(message)
        elif topic == command_topic(self.site, self.gate):
            self._command(message.payload)
        elif topic == committed_topic(self.site, self.gate):
            self._committed(message.payload, live=not message.retain)
        elif events_topic_gate(topic, self.site) is not None:
            self._peer_event(topic, message.payload)
        else:
            for topic_filter, handler in self._handlers:
                if mqtt.topic_matches_sub(topic_filter, topic):
                    handler(topic, message.payload)

    def _revocation(self, message: Inbound) -> None:
        if not message.payload:  # a cleared retained topic
            return
        # applied_ms stands in for a list's age when its iat is 0: on the clock staleness is judged with
        # the time applied stands in for a list's age when its iat is 0: on the clock staleness is judged with
        outcome = revocations.apply_update(
            self.store, message.payload, self.keyring, site=self.site, now_ms=self._gate_now_ms()
        )
        if outcome.status == "rejected" and not (outcome.code == "replay" and message.retain):
            log.warning("revocation update rejected", topic=message.topic, code=outcome.code, detail=outcome.detail)
        elif outcome.status != "rejected":
            log.info(
                "revocation update",
                topic=message.topic,
                status=outcome.status,
                version=outcome.version,
                detail=outcome.detail,
            )
        for why in outcome.dropped:
            log.warning("revocation update dropped", topic=message.topic, detail=why)

    def _command(self, payload: bytes) -> None:
        try:
            reading = self.time_reading() if self.time_reading is not None else None
            now, trusted = (time.time(), True) if reading is None else (reading.now, reading.trusted)
            command = parse_command(
                payload, self.keyring, self.gate, now=now, max_age_s=self.command_max_age_s, time_trusted=trusted
            )
        except CommandRejected as exc:
            log.warning("command ignored", code=exc.code, detail=exc.detail)
            return
        if not self.store.check_and_set_nonce(NONCE_KEY, command.nonce):
            log.warning("command ignored", code="replay", detail=f"nonce {command.nonce} not above the last one")
            return
        log.info("command", command=command.name, nonce=command.nonce, signer=command.signer)
        self.command_iat = command.iat  # the signed time it was issued at (a clock reset's reference)
        if self.on_command is not None:
            self.on_command(command.name)
        self.last_command = command.nonce
        self.announce()  # the acknowledgement, with the mode it left

    def _peer_event(self, topic: str, payload: bytes) -> None:
        """Another gate's event (PROTOCOL §6): checked as strictly as the ledger checks it (the gate
        the topic names, `id` = gate:seq, types, integer ranges, sizes; events.read_event), then its
        seal, then recorded (only admissions and that gate's own rollbacks matter here)."""
        gate = events_topic_gate(topic, self.site)
        try:
            event = events.read_event(payload, site=self.site, gate=gate)
        except events.EventRejected as exc:
            log.warning("peer event ignored", topic=topic[:200], problem=exc.detail)
            return
        if gate == self.gate:
            return  # our own (the broker's No Local should have kept it from us)
        problems = events.check_seal(event, self._device_key(gate))
        if problems:
            log.warning("peer event ignored", topic=topic[:200], id=event["id"], problem="; ".join(problems))
            return
        heard_ms = self._gate_now_ms() if event["kind"] == "passage" else 0  # a rollback's mark is kept from it
        changed = self.store.record_peer_event(event, heard_ms=heard_ms)
        log.debug("peer event taken", topic=topic[:200], id=event["id"], kind=event["kind"], changed=changed)

    def _gate_now_ms(self) -> int:
        """The gate's time (its trusted clock's reading; the system clock without one)."""
        return self.time_reading().now_ms if self.time_reading is not None else now_ms()

    def _device_key(self, gate: str):
        """The peer's device key if the keyring names one after the gate (else the broker ACL is the guard)."""
        for key in self.keyring.keys:
            if key.name == gate and "device" in key.roles:
                return key.public_key
        return None
