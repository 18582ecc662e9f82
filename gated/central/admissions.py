"""The ledger's admissions snapshot for replaced gates (docs/protocol.md, "Replacing a gate"; the
format: gated/core/snapshot.py).

    collect(ledger, event)       every admission of `event` the ledger holds that no `passage`
                                 `timeout` of its gate rolled back, with its gate and seq
    publish(settings, site, event, blobs)
                                 the parts, retained on gated/v1/<site>/admissions/<event>/<part>;
                                 parts of an older, longer snapshot beyond the new count are cleared

`gated admissions publish --db LEDGER --site S --event E --signing-key revocation.key --broker URL` does
both; the operator runs it once a replaced gate has started (its new chain's `gated replace`), and
`gated sim` does it for a `gate_replace` fault. A ledger started with `--admissions-key` does it by
itself (`AutoSnapshot`): when a gate's status says `"synced": false`, it publishes every event's
snapshot, at most once a minute per gate and chain and once every 10 s for the site.
"""

from __future__ import annotations

import json
import os

import structlog
from paho.mqtt.subscribeoptions import SubscribeOptions

from gated.core.confirmation import MAX_STATUS
from gated.core.errors import GatedError
from gated.core.events import MAX_EPOCH, is_name, parse_ts
from gated.core.snapshot import Admission
from gated.mqtt import MqttLink
from gated.topics import admissions_topic

log = structlog.get_logger("gated.ledger")


class SnapshotError(GatedError, RuntimeError):
    """The snapshot could not be taken or published; the message says why."""


def collect(ledger, event: str) -> list[Admission]:
    """The admissions of `event` in the ledger (a gated.central.ledger.Ledger), rolled-back ones left out."""
    return collect_all(ledger).get(event, [])


def collect_all(ledger) -> dict[str, list[Admission]]:
    """Every event's admissions in the ledger, rolled-back ones left out."""
    rows = ledger.query(
        "SELECT e.gate, e.seq, e.ticket, e.body FROM events e WHERE e.kind = 'scan' AND e.decision = 'admit' "
        "AND e.ticket IS NOT NULL AND NOT EXISTS (SELECT 1 FROM events p WHERE p.ref = e.id AND p.gate = e.gate "
        "AND p.kind = 'passage' AND p.result = 'timeout') ORDER BY e.gate, e.seq"
    )
    out: dict[str, list[Admission]] = {}
    for gate, seq, ticket, body in rows:
        try:
            scan = json.loads(body)
        except ValueError:
            continue  # stored events were read strictly on the way in; nothing else is in the table
        event = scan.get("event")
        if not isinstance(event, str):
            continue
        step = scan.get("step")
        out.setdefault(event, []).append(
            Admission(
                gate=gate,
                seq=int(seq),
                cti=bytes.fromhex(ticket),
                step=step if isinstance(step, int) else None,
                ts_ms=parse_ts(scan.get("ts")) or 0,
                dir=scan.get("dir", "in"),
                reentry=bool(scan.get("reentry")),
                zone=scan.get("zone"),
            )
        )
    return out


def publish(
    settings, site: str, event: str, blobs: list[bytes], *, timeout: float = 15.0, settle_s: float = 0.5
) -> list[str]:
    """Publish the parts retained and clear retained parts beyond them; the topics published."""
    link = MqttLink(settings, settings.client_id or f"gated-admissions-{site}-{os.getpid()}", persistent=False)
    link.add_subscription(admissions_topic(site, event), SubscribeOptions(qos=1, noLocal=True))
    link.start()
    try:
        if not link.wait_connected(timeout):
            raise SnapshotError(f"no connection to {settings.url} within {timeout:.0f} s")
        held = _retained(link, settle_s, timeout)
        mids = {
            link.publish(admissions_topic(site, event, i), blob, 1, True): admissions_topic(site, event, i)
            for i, blob in enumerate(blobs)
        }
        stale = [t for t in held if t.rsplit("/", 1)[1].isdigit() and int(t.rsplit("/", 1)[1]) >= len(blobs)]
        mids.update({link.publish(t, b"", 1, True): t for t in stale})
        problem = link.wait_published(mids, timeout)
        if problem is not None:
            raise SnapshotError(problem)
        return [admissions_topic(site, event, i) for i in range(len(blobs))]
    finally:
        link.stop()


def _retained(link: MqttLink, settle_s: float, timeout: float) -> set[str]:
    """The topics of the parts the broker holds retained now."""
    held: set[str] = set()
    for item in link.settle(settle_s, timeout):
        if item[0] == "message":
            link.ack(item[1])
            (held.add if item[1].payload else held.discard)(item[1].topic)
    return held


class AutoSnapshot:
    """The ledger service's side (gated/central/ledger_service.py): a status of a replaced gate that
    has not yet recovered the admissions (`"synced": false`, its `epoch` 1..MAX_EPOCH) makes the ledger
    publish every event's snapshot, signed with `key` (a `revocation` key), at most once per RETRY_S per
    gate and epoch, and at most once per GAP_S for the whole site. Whoever can write a gate's status topic
    can ask: a status over MAX_STATUS bytes, or that is not JSON, asks for nothing, and no run of gate
    names or epochs makes the ledger publish more often than GAP_S. A gate that asks within GAP_S of
    the last publish already has what it asks for: every event's parts are retained, taken at most GAP_S
    ago, well after the two minutes before its chain started that it accepts (gated/gate/admissions.py)."""

    RETRY_S = 60.0
    GAP_S = 10.0

    def __init__(self, ledger, key, site: str):
        self.ledger, self.key, self.site = ledger, key, site
        self._sent: dict[tuple[str, int], float] = {}
        self._last = -self.GAP_S

    def wanted(self, gate: str, payload: bytes, now: float) -> bool:
        """Does this status (of `gate`) ask for a snapshot now?"""
        if not payload or len(payload) > MAX_STATUS:  # as read_floor
            return False
        try:
            status = json.loads(payload)
        except (UnicodeDecodeError, ValueError, RecursionError):
            return False
        if not isinstance(status, dict) or status.get("synced") is not False or status.get("state") == "offline":
            return False
        epoch = status.get("epoch")
        if type(epoch) is not int or not 1 <= epoch <= MAX_EPOCH:  # only a replaced gate (epoch >= 1) is unsynced
            return False
        if now - self._sent.get((gate, epoch), -self.RETRY_S) < self.RETRY_S or now - self._last < self.GAP_S:
            return False
        self._sent = {asked: at for asked, at in self._sent.items() if now - at < self.RETRY_S}
        self._sent[(gate, epoch)] = self._last = now
        return True

    def messages(self, unix_ms: int) -> list[tuple[str, bytes]]:
        """(topic, blob) of every event's snapshot, as the ledger holds it now. An event whose name
        cannot be a topic level (`is_name`: `+`, `#`, `/`, NUL, empty, over 128 characters) is left
        out, with a log line: no gate can subscribe to its topic either."""
        from gated.core import snapshot

        out = []
        for event, found in sorted(collect_all(self.ledger).items()):
            if not is_name(event):
                log.warning(
                    "no admissions snapshot for an event whose name is not a topic level", ticket_event=event[:64]
                )
                continue
            blobs = snapshot.encode(
                self.key, site=self.site, event=event, version=unix_ms, admissions=found, iat=unix_ms // 1000
            )
            out += [(admissions_topic(self.site, event, i), blob) for i, blob in enumerate(blobs)]
        return out
