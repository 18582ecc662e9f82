"""A replaced gate recovers the site's admissions from the ledger's snapshot (docs/protocol.md,
"Replacing a gate"; the format: gated/core/snapshot.py).

A new state started as a new chain (`gated replace`, GateStore.start_epoch) is *unsynced*: it does
not know which tickets the old card (or the gates it could not hear) let in, so decide() follows
`[gate] until_synced` for tickets with limited entries. The gate subscribes to
`gated/v1/<site>/admissions/<event>/+` for each of its events; each verified part (signed by a
`revocation` key, this site, taken after this chain started) is kept at once (its admissions are
facts that only add), and once every event of the gate has one complete version the gate is
synced, for good.
"""

from __future__ import annotations

from collections.abc import Callable

import structlog

from gated.core import snapshot
from gated.core.events import is_name
from gated.core.signed import Keyring, SignedRejected, open_signed
from gated.topics import admissions_topic

log = structlog.get_logger("gated.gate.admissions")

CLOCK_SLACK_MS = 120_000  # the ledger's clock and the gate's may differ by this much


class Recovery:
    """Owner-thread handler of the snapshot messages (Uplink.subscribe). `on_synced` runs once."""

    def __init__(self, store, keyring: Keyring, *, site: str, events, on_synced: Callable[[], None] | None = None):
        self.store, self.keyring, self.site = store, keyring, site
        self.events = frozenset(events)
        self.on_synced = on_synced
        self._parts: dict[str, dict[int, set[int]]] = {}  # event -> version -> parts kept
        self._complete: set[str] = set()

    def topics(self) -> list[str]:
        """The snapshot topics of the gate's events. An event id is free text (`aud`), but one that
        cannot be a topic level (`+`, `#`, `/`, NUL, empty, over 128 characters) has no snapshot topic:
        it is left out with a log line (paho would refuse the whole subscription, and the link with it),
        and the gate stays unsynced, following `[gate] until_synced`."""
        for event in sorted(self.events):
            if not is_name(event):
                log.error(
                    "no admissions snapshot can come for an event id that is not a topic level; the gate "
                    'stays unsynced (docs/protocol.md, "Replacing a gate")',
                    ticket_event=event[:64],
                )
        return [admissions_topic(self.site, event) for event in sorted(self.events) if is_name(event)]

    def on_message(self, topic: str, payload: bytes) -> None:
        if not payload or self.store.synced:
            return
        try:
            if len(payload) > snapshot.MAX_MESSAGE:
                raise snapshot.SnapshotRejected("too_large", f"{len(payload)} bytes")
            _, body = open_signed(payload, self.keyring, "revocation")
            part = snapshot.read(body, site=self.site)
        except (SignedRejected, snapshot.SnapshotRejected) as exc:
            log.warning("admissions snapshot rejected", topic=topic[:200], code=exc.code, detail=exc.detail)
            return
        if part.event not in self.events:
            return
        if part.iat * 1000 < self.store.epoch_started_ms - CLOCK_SLACK_MS:
            log.warning(
                "admissions snapshot too old",
                topic=topic[:200],
                ticket_event=part.event,
                iat=part.iat,
                detail="taken before this gate's chain started: it misses the old gate's last admissions; "
                "publish a new one (gated admissions)",
            )
            return
        added = self.store.record_recovered_admissions([a.row() for a in part.admissions], part.event)
        have = self._parts.setdefault(part.event, {}).setdefault(part.version, set())
        have.add(part.part)
        log.info(
            "admissions snapshot part",
            ticket_event=part.event,
            version=part.version,
            part=part.part,
            parts=part.parts,
            admissions=len(part.admissions),
            new=added,
        )
        if len(have) >= part.parts and all(p < part.parts for p in have):
            self._complete.add(part.event)
        if self._complete >= self.events:
            self.store.mark_synced()
            log.info("admissions recovered: the gate checks every ticket again", events=sorted(self.events))
            if self.on_synced is not None:
                self.on_synced()
