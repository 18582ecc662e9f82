"""The gate's health: a retained MQTT message and, optionally, a Prometheus textfile.

Topic (an extension, docs/protocol.md): `gated/v1/<site>/gates/<gate>/health`, QoS 1, retained,
JSON with integers only (like events):

    {"ts": "2026-05-01T18:00:00.000Z", "uptime_s": 3600, "frames_per_s_milli": 29970,
     "frames": 107892, "scans": 412, "admits": 398, "denies": 14, "outbox": 0,
     "rev": 17, "rev_age_s": 420, "rev_stale": false,
     "clock_offset_ms": -12, "clock_uncertain": 0, "clock_source": "ntp", "beacon_age_s": 4,
     "mode": "online", "camera_ok": true, "store_ok": true,
     "last_scan_age_s": 3, "scans_per_min": 24}

`clock_offset_ms` and `beacon_age_s` are null when no time beacon has bounded the clock yet,
`rev_age_s` null before the first revocation list, `last_scan_age_s` null before the first scan since
the process started; `scans_per_min` counts the decisions of the last 60 s; `rev_stale` is the daemon's staleness policy
verdict (no list, a gap, or older than `[revocations] max_age_s`). The counters are since the process started. The Prometheus textfile
(node_exporter's textfile collector) carries the same figures as `gated_*` gauges and counters;
it is written to a temporary file and renamed, so the collector never reads half a file.

Counting happens on two threads (frames on the camera thread, the rest on the owner thread);
each counter has one writer, and CPython reads ints atomically, so no lock is needed.
"""

from __future__ import annotations

import json
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from gated.atomicfile import write_atomic
from gated.core import events


@dataclass
class Counters:
    started: float = field(default_factory=time.monotonic)
    frames: int = 0  # camera thread
    scans: int = 0  # owner thread, from here on
    admits: int = 0
    denies: int = 0
    last_frame_at: float | None = None  # monotonic
    last_scan_at: float | None = None  # monotonic, owner thread
    _rate_mark: tuple[float, int] | None = None
    _recent_scans: deque = field(default_factory=deque)  # monotonic times of the last minute's decisions

    RATE_WINDOW_S = 60.0

    def frame(self, now: float) -> None:
        self.frames += 1
        self.last_frame_at = now

    def decision(self, admit: bool, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self.scans += 1
        self.last_scan_at = now
        self._recent_scans.append(now)
        self._forget_before(now - self.RATE_WINDOW_S)
        if admit:
            self.admits += 1
        else:
            self.denies += 1

    def _forget_before(self, cutoff: float) -> None:
        while self._recent_scans and self._recent_scans[0] < cutoff:
            self._recent_scans.popleft()

    def scans_per_min(self, now: float) -> int:
        """Decisions in the last 60 s."""
        self._forget_before(now - self.RATE_WINDOW_S)
        return len(self._recent_scans)

    def frames_per_s(self, now: float) -> float:
        """Average frame rate since the previous call (or since start)."""
        mark_at, mark_frames = self._rate_mark or (self.started, 0)
        frames = self.frames
        self._rate_mark = (now, frames)
        elapsed = now - mark_at
        return (frames - mark_frames) / elapsed if elapsed > 0 else 0.0


def snapshot(
    counters: Counters,
    *,
    now_mono: float,
    now_ms: int,
    outbox: int,
    rev_version: int,
    rev_iat: int,
    clock: dict,
    mode: str,
    camera_ok: bool,
    store_ok: bool,
    rev_stale: str | None = None,
    occupancy: tuple[int, str, int | None] | None = None,
    delivery: tuple[int, int, int] | None = None,
    checkin_list: tuple[str, int] | None = None,
) -> dict:
    """The health message body (pure apart from the frame-rate mark it advances). `clock` is
    TrustedClock.health() (clock_offset_ms, clock_uncertain, clock_source, beacon_age_s) or {}.
    `delivery`: (rows the broker has that no ledger confirmed, rows dropped unconfirmed since start,
    committed/occupancy messages ignored as not signed by a ledger key since start)."""
    return {
        "ts": events.format_ts(now_ms),
        "uptime_s": int(now_mono - counters.started),
        "frames_per_s_milli": int(round(counters.frames_per_s(now_mono) * 1000)),
        "frames": counters.frames,
        "scans": counters.scans,
        "admits": counters.admits,
        "denies": counters.denies,
        "outbox": outbox,
        **(
            {}
            if delivery is None
            else {
                "unconfirmed": delivery[0],
                "dropped_unconfirmed": delivery[1],
                "unverified_ledger_messages": delivery[2],
            }
        ),
        "rev": rev_version,
        "rev_age_s": max(0, now_ms // 1000 - rev_iat) if rev_version else None,
        "rev_stale": rev_stale is not None,
        "clock_offset_ms": clock.get("clock_offset_ms"),
        **{k: v for k, v in clock.items() if k != "clock_offset_ms"},
        "mode": mode,
        "camera_ok": camera_ok,
        "store_ok": store_ok,
        "last_scan_age_s": None if counters.last_scan_at is None else max(0, int(now_mono - counters.last_scan_at)),
        "scans_per_min": counters.scans_per_min(now_mono),
        # extension (docs/protocol.md, "Exits, re-entry and occupancy"): the gate's own figure for its zone
        **(
            {}
            if occupancy is None
            else {"occupancy": occupancy[0], "occupancy_source": occupancy[1], "capacity": occupancy[2]}
        ),
        # extension (docs/protocol.md, "pretix check-in lists"): the pretix check-in list the gate holds
        **({} if checkin_list is None else {"checkin_list": checkin_list[0], "checkin_list_version": checkin_list[1]}),
    }


PROMETHEUS = (
    ("uptime_s", "gauge", "seconds since the daemon started"),
    ("frames_per_s_milli", "gauge", "camera frames per second times 1000, over the last interval"),
    ("frames", "counter", "frames captured since start"),
    ("scans", "counter", "codes decided since start"),
    ("admits", "counter", "admissions since start"),
    ("denies", "counter", "denials since start"),
    ("outbox", "gauge", "events not yet acknowledged by the broker"),
    ("unconfirmed", "gauge", "events the broker acknowledged that the ledger has not confirmed yet"),
    ("unverified_ledger_messages", "counter", "committed/occupancy messages ignored: unsigned or not by a ledger key"),
    ("dropped_unconfirmed", "counter", "events dropped after outbox_retention_h with no ledger's confirmation"),
    ("rev", "gauge", "revocation list version in use"),
    ("rev_age_s", "gauge", "age of the revocation list in seconds"),
    ("rev_stale", "gauge", "1 while the revocation list is stale by the configured policy"),
    ("clock_offset_ms", "gauge", "clock offset from the time beacons in milliseconds"),
    ("clock_uncertain", "gauge", "1 while the gate's clock cannot be trusted"),
    ("camera_ok", "gauge", "1 while the camera delivers frames"),
    ("store_ok", "gauge", "1 while the state database accepts writes"),
    ("last_scan_age_s", "gauge", "seconds since the last decision (absent before the first)"),
    ("scans_per_min", "gauge", "decisions in the last 60 seconds"),
)


def prometheus_text(body: dict, *, site: str, gate: str) -> str:
    labels = f'site="{site}",gate="{gate}"'
    lines = []
    for key, kind, help_text in PROMETHEUS:
        value = body.get(key)
        if value is None:
            continue
        name = f"gated_{key}" + ("_total" if kind == "counter" else "")
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", f"{name}{{{labels}}} {int(value)}"]
    lines += [
        "# HELP gated_mode the gate's mode (online, locked, emergency)",
        "# TYPE gated_mode gauge",
        f'gated_mode{{{labels},mode="{body["mode"]}"}} 1',
    ]
    if body.get("checkin_list_version"):
        name = str(body.get("checkin_list", "")).replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")
        lines += [
            "# HELP gated_checkin_list_version the pretix check-in list the gate holds",
            "# TYPE gated_checkin_list_version gauge",
            f'gated_checkin_list_version{{{labels},list="{name}"}} {int(body["checkin_list_version"])}',
        ]
    return "\n".join(lines) + "\n"


def write_textfile(path: Path, text: str) -> None:
    """Atomically replace the textfile (write a sibling, then rename)."""
    write_atomic(path, text)


def encode(body: dict) -> bytes:
    return json.dumps(body, separators=(",", ":"), sort_keys=True).encode()


def revocation_staleness(rev, now_s: float, max_age_s: float) -> str | None:
    """Why the revocation list cannot be trusted as current (None: it can). `rev` is the store's
    RevocationState; the age counts from the newest update's `iat` (when the central side signed it)
    to `now_s`, the time the gate judges scans with (its trusted clock's reading, not the system
    clock: a wall clock days behind the beacons would call an old list current). While that clock
    is uncertain the reading is its best estimate, never before its last trusted time: the list
    is not taken for stale for that alone, since a stale-list lock would also stop a scan-out
    gate's exits, and under `when_uncertain = "deny"` entries are refused by the clock anyway."""
    if rev.version == 0:
        return "no revocation list received yet"
    if rev.stale:
        return f"list v{rev.version} has a gap (a delta is missing); waiting for a snapshot"
    age = now_s - (rev.iat or rev.applied_ms / 1000)
    if age > max_age_s:
        return f"list v{rev.version} is {int(age)} s old (limit {int(max_age_s)} s)"
    return None
