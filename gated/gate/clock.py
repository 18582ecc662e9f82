"""Trusted time for a gate without a real-time clock (PROTOCOL §7; policy in docs/protocol.md).

The beacon format (a signed {site, unix ms, sequence}, retained every 10 s on gated/v1/<site>/time)
is gated/core/beacon.py; this module decides what the beacons, NTP and an RTC say about the time.

Theory of operation
-------------------
A beacon can be late (a retained message is up to one interval old when a gate subscribes; queued
messages arrive in a burst after a reconnect) but never early: the central side signed it before the
gate read it. So each accepted beacon is a *lower bound* on the true time at the moment it arrived,
and carried forward on the monotonic clock (which a wall-clock step does not move) it stays one:

    true_now >= beacon_s + (monotonic_now - monotonic_at_receipt)

The clock keeps the beacons of the last `beacon_max_age_s` and takes the tightest bound (the max);
one live beacon cancels any number of stale retained or queued ones. `offset_s` is that estimate
minus the local wall clock.

The clock is *uncertain* when
  - it has no time source: no NTP synchronisation, no configured real-time clock and no beacon
    within `beacon_max_age_s`, or
  - a recent beacon disagrees with the wall clock by more than `max_offset_s`, or
  - the time to judge with is more than `max_offset_s` behind the last trusted time.
What an uncertain clock does is the policy: `deny` (time-dependent checks fail, see decide()),
or `beacon` (judge with the beacons' time; with no beacon at all since start it falls back to deny).

Event times do not run backwards for a retained beacon either: `now()`, what events are stamped
with, is held at the last time it gave or the store's last event (`last_event_ms`) while the reading
is behind it by up to HOLD_BACK_S (a retained beacon's age). A larger step back is a wrong clock
corrected, and is taken: holding it would stop the gate's timers for as long as the clock was wrong.

Time never runs backwards: the last trusted time (the latest certain reading) is kept in
the gate store (`clock.trusted_ms`) and every reading is clamped to it, across restarts. The last
accepted beacon sequence is kept too (`clock.beacon_seq`), so a retained beacon seen before a
restart is not accepted again (except by a clock with no beacon yet, after a reboot, when it is not
older than the trusted time: see `_retaken`).

A process restart is not a reboot: the monotonic clock used here is CLOCK_BOOTTIME, which runs on
across restarts within one boot, so the best beacon bound is persisted with the boot id
(`clock.anchor`) and a restarted daemon in the same boot takes it back as if it had never stopped
(a gate killed during a broker outage keeps its time). After a reboot the anchor is void and only
NTP, an RTC (`rtc`, when configured and present) or a fresh beacon make the clock certain.

One beacon cannot run away with the time: a beacon more than `max_beacon_step_s` ahead of another
source is refused (`too_far_ahead`): not a sample, its sequence not taken, the trusted time not moved.
The other source is NTP or the RTC when there is one (and it is not behind the trusted time), else
the beacons so far; it applies whether or not the clock is uncertain at that moment (a beacon that
made it "offset"-uncertain does not lift the bound for the next), and with NTP or an RTC the bound
is from them, so beacons cannot walk the time away in steps. The trusted time (the persisted floor)
is only raised from a certain reading, never from a beacon the other sources disagree with. The disagreement is kept (`clock.disagreement`)
for `gated doctor`. `reset_trust()` (`gated clock reset`) forgets the persisted trust.

Everything takes its readings as arguments (`local_now` wall seconds, `mono_now` monotonic
seconds); the defaults read the real clocks. Beacons come on the owner thread (uplink.poll); readings
may be taken from any thread (a lock keeps the few fields consistent).
"""

from __future__ import annotations

import ctypes
import enum
import json
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from gated.core.beacon import BEACON_INTERVAL_S, Beacon, BeaconOutcome, read_beacon
from gated.core.events import MAX_TIME_MS
from gated.core.signed import Keyring
from gated.topics import beacon_topic  # noqa: F401 (re-exported for callers of the clock)

SEQ_KEY = "clock.beacon_seq"
TRUSTED_KEY = "clock.trusted_ms"
ANCHOR_KEY = "clock.anchor"  # JSON {"boot": boot id, "at": boot-time s of the newest beacon, "offset": best bound}
DISAGREEMENT_KEY = "clock.disagreement"  # JSON {"beacon_ms", "reference_ms", "source", "seen_ms"}: last refused beacon
RIVALS_TO_OUTVOTE = 3  # live beacons, consistent with each other, that outvote the beacons before them
BOOT_ID_PATH = Path("/proc/sys/kernel/random/boot_id")
RTC_PATHS = (Path("/dev/rtc0"), Path("/dev/rtc"), Path("/sys/class/rtc/rtc0"))
MAX_TIME_S = MAX_TIME_MS / 1000  # no source takes the clock past it (gated/core/events.py)


class Policy(str, enum.Enum):
    DENY = "deny"  # time-dependent checks fail while the clock is uncertain
    BEACON = "beacon"  # judge with the beacons' time while the clock is uncertain


# --- the clock ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class TimeReading:
    """The time a scan is judged with, and whether it may be judged at all."""

    now: float  # unix seconds
    trusted: bool  # False: the policy says time-dependent checks deny (decide(time_trusted=False))
    uncertain: bool
    source: str  # ntp | rtc | beacon | none | offset | behind  (what the clock rests on, or why it is uncertain)
    offset_s: float | None  # beacon estimate minus the wall clock; None without any beacon

    @property
    def now_ms(self) -> int:
        return int(self.now * 1000)


_LIBC: ctypes.CDLL | None = None


def system_ntp_synchronized() -> bool:
    """Whether the kernel says the clock is NTP-synchronised (ntp_adjtime() != TIME_ERROR), as
    `timedatectl` reports it. False where the call is unavailable. About 3 us: fine per scan."""
    global _LIBC
    try:
        if _LIBC is None:
            _LIBC = ctypes.CDLL(None, use_errno=True)  # the process's own symbols: libc, without a search
        state = _LIBC.ntp_adjtime(ctypes.create_string_buffer(512))  # struct timex, modes = 0: read only
    except (OSError, AttributeError):
        return False
    return state not in (-1, 5)  # 5 = TIME_ERROR: clock not synchronised


def boot_id() -> str | None:
    """This boot's id (changes at every boot, the same for every process within one); None if unknown."""
    try:
        return BOOT_ID_PATH.read_text().strip() or None
    except OSError:
        return None


def boot_time() -> float:
    """Seconds since boot, suspend included (CLOCK_BOOTTIME); comparable between processes of one boot."""
    clock_id = getattr(time, "CLOCK_BOOTTIME", None)
    return time.clock_gettime(clock_id) if clock_id is not None else time.monotonic()


def rtc_present() -> bool:
    """Whether the machine has a real-time clock the kernel set the wall clock from at boot."""
    return any(path.exists() for path in RTC_PATHS)


def _json_value(store, key: str) -> dict:
    """A JSON object kept under `key`, or {} when absent, cleared or unreadable (then it is ignored)."""
    return _json_object(store.get_value(key) if store is not None else None)


def _json_object(raw) -> dict:
    try:
        value = json.loads(raw) if isinstance(raw, str) else None
    except ValueError:
        value = None
    return value if isinstance(value, dict) else {}


def _number(value, default):
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else default


def _time_ms(value) -> float:
    """A persisted unix ms time, 0 when it is not one or lies beyond MAX_TIME_MS (a state file an
    older release wrote from a beacon in year 9999: taken, it would run the clock past what events
    can be stamped with)."""
    value = _number(value, 0)
    return value if 0 <= value <= MAX_TIME_MS else 0


RESET_REPLAY_WINDOW_MS = 60_000  # after a reset, beacons made this long before its reference time still count


def sequence_after_reset(stored, not_before_ms: int) -> int:
    """The beacon sequence floor a reset leaves: the one stored, lowered only to just before the
    reset's reference time (`not_before_ms`, the signed command's `iat` or the operator's clock), so a
    sequence a bad beacon pushed into the future is forgotten while an old signed beacon, replayed,
    stays refused (its sequence, the publisher's unix ms then, is below the floor)."""
    floor = max(0, int(not_before_ms) - RESET_REPLAY_WINDOW_MS)
    stored = int(_number(stored, -1))
    return floor if stored < 0 else min(stored, floor)


def reset_trust(store, not_before_ms: int) -> dict:
    """Forget the persisted trust (trusted time, anchor, disagreement), lower the beacon sequence
    floor no further than just before `not_before_ms` (sequence_after_reset), and return what was
    there. For an operator whose gate took a bad beacon (`gated clock reset`)."""
    before = {key: store.get_value(key) for key in (TRUSTED_KEY, SEQ_KEY, ANCHOR_KEY, DISAGREEMENT_KEY)}
    store.set_value(TRUSTED_KEY, 0)
    store.set_value(SEQ_KEY, sequence_after_reset(before[SEQ_KEY], not_before_ms))
    store.set_value(ANCHOR_KEY, None)
    store.set_value(DISAGREEMENT_KEY, None)
    return before


@dataclass(frozen=True)
class TrustDiagnosis:
    """What a gate's persisted clock trust says is wrong against this machine's clock (`gated doctor`).

    kind  ahead     the persisted trusted time is ahead of this clock beyond max_offset_s: the gate
                    judges every ticket at `trusted_s` (if that time is wrong: `gated clock reset`)
          refused   a beacon was refused as too far ahead of another source (`source`: ntp, rtc, beacon)
          offset    the beacons' bound of this same boot, carried to now, disagrees with this clock by `offset_s`
    """

    kind: str
    trusted_s: float | None = None  # ahead
    beacon_s: float | None = None  # refused: the beacon's time, the reference's, when it was seen (if known)
    reference_s: float | None = None
    source: str = "system"
    seen_s: float | None = None
    offset_s: float | None = None  # offset: the beacons' time minus this clock


def diagnose_trust(
    stored: Callable[[str], object],
    *,
    now: float,
    max_offset_s: float,
    boot: Callable[[], str | None] = boot_id,
    monotonic: Callable[[], float] = boot_time,
) -> TrustDiagnosis | None:
    """What the trust a gate persisted (`stored(key)`: GateStore.get_value, or a StoreSummary's
    value) says against this clock at `now`: a trusted time ahead of it, a refused beacon, a beacon
    bound (same boot) that disagrees with it. None when all agree. The first found is said."""
    trusted_ms = stored(TRUSTED_KEY)
    if isinstance(trusted_ms, int) and trusted_ms / 1000 > now + max_offset_s:
        return TrustDiagnosis("ahead", trusted_s=trusted_ms / 1000)
    refused = _json_object(stored(DISAGREEMENT_KEY))
    if isinstance(refused.get("beacon_ms"), int) and isinstance(refused.get("reference_ms"), int):
        seen = refused["seen_ms"] / 1000 if isinstance(refused.get("seen_ms"), int) else None
        return TrustDiagnosis(
            "refused",
            beacon_s=refused["beacon_ms"] / 1000,
            reference_s=refused["reference_ms"] / 1000,
            source=refused.get("source", "system"),
            seen_s=seen,
        )
    anchor = _json_object(stored(ANCHOR_KEY))
    if (
        anchor.get("boot") is not None
        and anchor.get("boot") == boot()
        and isinstance(anchor.get("offset"), (int, float))
    ):
        offset = anchor["offset"] + monotonic() - now  # the beacons' time carried to now, minus this clock
        if abs(offset) > max_offset_s:
            return TrustDiagnosis("offset", offset_s=offset)
    return None


# How far back a reading may be held at the last time handed out (TrustedClock.now): a retained
# beacon is at most about one interval old; a wrong clock corrected by more is not held, so that
# timers never stand still for long.
HOLD_BACK_S = 1.5 * BEACON_INTERVAL_S


class TrustedClock:
    def __init__(
        self,
        *,
        site: str,
        keyring: Keyring,
        store=None,
        policy: Policy | str = Policy.DENY,
        max_offset_s: float = 30.0,
        beacon_max_age_s: float = 600.0,
        max_beacon_step_s: float = 60.0,
        ntp_synced: Callable[[], bool] = system_ntp_synchronized,
        rtc: Callable[[], bool] = lambda: False,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = boot_time,
        boot: Callable[[], str | None] = boot_id,
    ):
        """`monotonic` must run on across restarts within one boot (CLOCK_BOOTTIME) and `boot` name
        the boot, for the persisted anchor to carry a restart; `rtc` says whether the wall clock comes
        from a real-time clock (a time source after a reboot, like NTP)."""
        self.site, self.keyring, self.store = site, keyring, store
        self.policy = Policy(policy)
        self.max_offset_s, self.beacon_max_age_s = float(max_offset_s), float(beacon_max_age_s)
        self.max_beacon_step_s = float(max_beacon_step_s)
        self._ntp_synced, self._rtc, self._wall, self._monotonic = ntp_synced, rtc, wall, monotonic
        self._samples: deque[tuple[float, float]] = deque()  # (monotonic at receipt, beacon_s - monotonic)
        # beacons refused as too far ahead of the beacons so far (no NTP, no RTC): (monotonic, beacon_s, seq)
        self._rivals: deque[tuple[float, float, int]] = deque(maxlen=RIVALS_TO_OUTVOTE)
        stored = store.get_value if store is not None else (lambda key, default=None: default)
        self._last_seq = int(_number(stored(SEQ_KEY, -1), -1))
        self._trusted_s = _time_ms(stored(TRUSTED_KEY, 0)) / 1000
        self._persisted_s = self._trusted_s
        self._stamped_s = (_time_ms(store.last_event_ms()) / 1000) if hasattr(store, "last_event_ms") else 0.0
        self.last_outcome: BeaconOutcome | None = None
        self.disagreement: dict = _json_value(store, DISAGREEMENT_KEY)
        self._lock = threading.RLock()
        self._boot = boot()
        self._restore_anchor(self._monotonic())

    @classmethod
    def from_config(
        cls, section, *, site: str, keyring: Keyring, store, policy: Policy | str | None = None, **readers
    ) -> "TrustedClock":
        """From the config's [clock] section (max_offset_s, beacon_max_age_s, max_beacon_step_s,
        `rtc`, `ntp`, `trust_system_clock` and `when_uncertain`)."""
        chosen = policy or section.when_uncertain
        if section.trust_system_clock:
            readers["ntp_synced"] = lambda: True
        elif section.ntp == "ignore":  # the system's NTP synchronisation is never a source at this site
            readers["ntp_synced"] = lambda: False
        if section.rtc:
            readers.setdefault("rtc", rtc_present)
        return cls(
            site=site,
            keyring=keyring,
            store=store,
            policy=chosen,
            max_offset_s=section.max_offset_s,
            beacon_max_age_s=section.beacon_max_age_s,
            max_beacon_step_s=section.max_beacon_step_s,
            **readers,
        )

    # --- input ---------------------------------------------------------------------------------

    def on_beacon(self, payload: bytes, local_now: float | None = None, mono_now: float | None = None) -> BeaconOutcome:
        """Take one message from gated/v1/<site>/time. Accepted beacons tighten the estimate and
        advance the persisted sequence and trusted time."""
        mono_now = self._monotonic() if mono_now is None else mono_now
        local_now, ntp, broken = self._system(local_now)
        beacon = read_beacon(payload, self.keyring)
        with self._lock:
            return self._take(beacon, local_now, mono_now, ntp, broken)

    def _take(self, beacon, local_now: float, mono_now: float, ntp: bool, broken: bool = False) -> BeaconOutcome:
        if isinstance(beacon, BeaconOutcome):
            outcome = beacon
        elif beacon.site != self.site:
            outcome = BeaconOutcome(False, "wrong_site", f"beacon for site {beacon.site!r}", beacon)
        elif beacon.seq > beacon.unix_ms + self.max_beacon_step_s * 1000:
            # the publisher's sequence is its unix ms (or the last + 1): one far above its own time would
            # stand above every later beacon until `gated clock reset` (a publisher counting in us, say)
            outcome = BeaconOutcome(
                False,
                "too_far_ahead",
                f"sequence {beacon.seq} is over max_beacon_step_s "
                f"({self.max_beacon_step_s:.0f} s) above the beacon's own time: not taken",
                beacon,
            )
        elif beacon.seq < self._last_seq or (beacon.seq == self._last_seq and not self._retaken(beacon)):
            outcome = BeaconOutcome(False, "not_newer", f"sequence {beacon.seq} <= {self._last_seq}", beacon)
        else:
            beacon_s = beacon.unix_ms / 1000
            reference = self._step_reference(local_now, mono_now, ntp)
            outvoted = False
            if reference is not None and beacon_s > reference[0] + self.max_beacon_step_s:
                outvoted = reference[1] == "beacon" and self._outvotes(beacon, beacon_s, mono_now)
                if outvoted:  # the beacons before were the stale ones (an old retained beacon after a reboot)
                    self._samples.clear()
            if reference is not None and beacon_s > reference[0] + self.max_beacon_step_s and not outvoted:
                outcome = self._refuse(beacon, beacon_s, reference, local_now)
            else:
                self._rivals.clear()
                again = beacon.seq == self._last_seq
                self._last_seq = beacon.seq
                self._samples.append((mono_now, beacon_s - mono_now))
                self._forget(mono_now)
                self._read(local_now, mono_now, ntp, broken)  # raises the trusted time only if the reading is certain
                self._persist(seq=True)
                detail = (
                    f"beacon {beacon.seq} from {beacon.signer}"
                    + (" (taken before the restart; not older than the trusted time)" if again else "")
                    + (
                        f" ({RIVALS_TO_OUTVOTE} live beacons agreeing with each other outvoted the earlier, stale one)"
                        if outvoted
                        else ""
                    )
                )
                outcome = BeaconOutcome(True, "accepted", detail, beacon, self._estimate(mono_now) - local_now)
        self.last_outcome = outcome
        return outcome

    def _outvotes(self, beacon: Beacon, beacon_s: float, mono_now: float) -> bool:
        """With beacons as the only source, the beacons so far may be the stale ones: the retained
        beacon a rebooted gate took may be hours old if the publisher was down. A run of live beacons
        refused as too far ahead, in sequence and agreeing with each other and with the monotonic clock
        (their times advance as the gate's own clock does, within max_offset_s), outvotes them. With NTP
        or an RTC this never applies: those stay the reference."""
        if self._rivals and (
            beacon.seq <= self._rivals[-1][2]
            or abs((beacon_s - self._rivals[-1][1]) - (mono_now - self._rivals[-1][0])) > self.max_offset_s
        ):
            self._rivals.clear()  # not one stream: start again from this beacon
        self._rivals.append((mono_now, beacon_s, beacon.seq))
        return len(self._rivals) == RIVALS_TO_OUTVOTE

    def _retaken(self, beacon: Beacon) -> bool:
        """The retained beacon last taken before a reboot may be taken once more by a clock that knows
        nothing else from beacons, if it is not older than the persisted trusted time (beyond
        max_offset_s): a broker back after an outage may hold nothing newer yet."""
        return not self._samples and beacon.unix_ms / 1000 >= self._trusted_s - self.max_offset_s

    def _step_reference(self, local_now: float, mono_now: float, ntp: bool) -> tuple[float, str] | None:
        """The time a beacon may not run ahead of by more than `max_beacon_step_s`, and its source, whether
        or not the clock is uncertain now: the wall clock when NTP is synchronised or an RTC set it (unless
        it is behind the trusted time: then it is not believed), else the bound of the beacons so far
        (the restored anchor included); None with no other source (a first beacon after a reboot).
        With NTP or an RTC the beacons so far do not count, so beacons cannot walk the time away from
        them in steps each within the bound."""
        if (ntp or self._rtc()) and local_now >= self._trusted_s - self.max_offset_s:
            return local_now, "ntp" if ntp else "rtc"
        estimate = self._estimate(mono_now)
        return None if estimate is None else (estimate, "beacon")

    def _refuse(self, beacon: Beacon, beacon_s: float, reference: tuple[float, str], local_now: float) -> BeaconOutcome:
        """A beacon too far ahead of another source: the sources disagree. Kept for the doctor, not taken."""
        reference_s, source = reference
        ahead = beacon_s - reference_s
        self.disagreement = {
            "beacon_ms": beacon.unix_ms,
            "reference_ms": int(reference_s * 1000),
            "source": source,
            "seen_ms": int(local_now * 1000),
        }
        if self.store is not None:
            self.store.set_value(DISAGREEMENT_KEY, json.dumps(self.disagreement))
        return BeaconOutcome(
            False,
            "too_far_ahead",
            f"beacon {beacon.seq} is {ahead:.0f} s ahead of the {source} time "
            f"(limit {self.max_beacon_step_s:g} s): not taken",
            beacon,
            beacon_s - local_now,
        )

    def checkpoint(self, local_now: float | None = None, mono_now: float | None = None) -> None:
        """Persist the current time if it is certain (call it now and then, e.g. with the health report),
        so that after a restart the clock does not run back before it."""
        reading = self.reading(local_now, mono_now)
        with self._lock:
            if not reading.uncertain:
                self._trusted_s = max(self._trusted_s, reading.now)
            self._persist()

    def reset(self, not_before_ms: int) -> dict:
        """Forget every bound and the persisted trust (the `clock_reset` command, `not_before_ms` its
        signed `iat`): the next NTP reading, RTC or beacon made after that time sets the time, as on a
        first start; an older signed beacon replayed does not (sequence_after_reset). What the store held
        is returned."""
        with self._lock:
            self._samples.clear()
            self._rivals.clear()
            self._last_seq = sequence_after_reset(self._last_seq, not_before_ms)
            self._trusted_s, self._persisted_s, self.disagreement = 0.0, 0.0, {}
            return reset_trust(self.store, not_before_ms) if self.store is not None else {}

    # --- output --------------------------------------------------------------------------------

    def _system(self, local_now: float | None) -> tuple[float, bool, bool]:
        """The system clock's time (held at the bound), whether NTP vouches for it, and whether it is
        past the bound. A system clock past it (a board saying year 10000) is no time at all: held at
        the bound it would stop every timer (a passage never timing out, the relay left open), so
        neither NTP nor the RTC vouches for it and the clock is uncertain (source "none", or the
        beacons' time under `beacon`)."""
        local_now = self._wall() if local_now is None else local_now
        broken = not local_now <= MAX_TIME_S
        return (MAX_TIME_S if broken else local_now), bool(self._ntp_synced()) and not broken, broken

    def reading(self, local_now: float | None = None, mono_now: float | None = None) -> TimeReading:
        local_now, ntp, broken = self._system(local_now)
        mono_now = self._monotonic() if mono_now is None else mono_now
        with self._lock:
            return self._read(local_now, mono_now, ntp, broken)

    def _read(self, local_now: float, mono_now: float, ntp: bool, broken: bool = False) -> TimeReading:
        self._forget(mono_now)
        estimate = self._estimate(mono_now)
        offset = None if estimate is None else estimate - local_now
        recent = self._recent(mono_now)
        if recent and abs(offset) > self.max_offset_s:
            uncertain, source = True, "offset"
        elif recent:
            uncertain, source = False, "ntp" if ntp else "beacon"
        elif ntp:
            uncertain, source = False, "ntp"
        elif not broken and self._rtc():
            uncertain, source = False, "rtc"
        else:
            uncertain, source = True, "none"
        # the best guess: the beacons' time whenever they are recent and not merely confirming NTP
        use_beacon = estimate is not None and (
            source in ("beacon", "offset") or (uncertain and self.policy is Policy.BEACON)
        )
        now = estimate if use_beacon else local_now
        if source != "offset" and now < self._trusted_s - self.max_offset_s:
            uncertain, source = True, "behind"
        trusted = not uncertain or (self.policy is Policy.BEACON and estimate is not None)
        if trusted and not uncertain:
            self._trusted_s = max(self._trusted_s, now)
        return TimeReading(
            now=min(max(now, self._trusted_s), MAX_TIME_S),
            trusted=trusted,
            uncertain=uncertain,
            source=source,
            offset_s=offset,
        )

    def now(self) -> float:
        """The time to stamp events and run timers with: the reading, held at the last time handed out
        or the gate's last event while the reading is behind it by no more than HOLD_BACK_S (a retained
        beacon, up to an interval old, arriving before the first live one would otherwise stamp events
        earlier than those just before it). A larger step back is a real correction of a wrong clock
        and is taken: holding it would freeze the gate's timers (passage timeouts, held-open alarms)
        for as long as the clock was wrong."""
        with self._lock:
            reading = self.reading().now
            if reading >= self._stamped_s or self._stamped_s - reading > HOLD_BACK_S:
                self._stamped_s = reading
            return self._stamped_s

    @property
    def offset_s(self) -> float | None:
        return self.reading().offset_s

    @property
    def uncertain(self) -> bool:
        return self.reading().uncertain

    def health(self, local_now: float | None = None, mono_now: float | None = None) -> dict:
        """Integer fields for the health message (not `state` events, whose fields PROTOCOL §5 fixes)."""
        mono_now = self._monotonic() if mono_now is None else mono_now
        reading = self.reading(local_now, mono_now)
        age = mono_now - self._samples[-1][0] if self._samples else None
        return {
            "clock_source": reading.source,
            "clock_uncertain": int(reading.uncertain),
            "clock_offset_ms": None if reading.offset_s is None else int(round(reading.offset_s * 1000)),
            "beacon_age_s": None if age is None else int(age),
        }

    # --- internals -----------------------------------------------------------------------------

    def _estimate(self, mono_now: float) -> float | None:
        if not self._samples:
            return None
        return mono_now + max(offset for _, offset in self._samples)

    def _recent(self, mono_now: float) -> bool:
        return bool(self._samples) and mono_now - self._samples[-1][0] <= self.beacon_max_age_s

    def _forget(self, mono_now: float) -> None:
        """Drop beacons older than the age limit, always keeping the newest (the policy may use it)."""
        while len(self._samples) > 1 and mono_now - self._samples[0][0] > self.beacon_max_age_s:
            self._samples.popleft()

    def _restore_anchor(self, mono_now: float) -> None:
        """Take back the beacon bound a previous process of this same boot persisted."""
        anchor = _json_value(self.store, ANCHOR_KEY)
        at, offset = _number(anchor.get("at"), None), _number(anchor.get("offset"), None)
        if self._boot is None or anchor.get("boot") != self._boot or at is None or offset is None or at > mono_now:
            return  # another boot (or none recorded): the boot-time clock it was measured on is gone
        if not 0 <= (at + offset) * 1000 <= MAX_TIME_MS:
            return  # the beacon time it says it had is no time a beacon may bring
        self._samples.append((at, offset))

    def _persist(self, *, seq: bool = False) -> None:
        if self.store is None:
            return
        if seq:
            self.store.set_value(SEQ_KEY, self._last_seq)
            if self._boot is not None:
                anchor = {
                    "boot": self._boot,
                    "at": self._samples[-1][0],
                    "offset": max(offset for _, offset in self._samples),
                }
                self.store.set_value(ANCHOR_KEY, json.dumps(anchor))
        if self._trusted_s > self._persisted_s:
            self.store.set_value(TRUSTED_KEY, int(self._trusted_s * 1000))
            self._persisted_s = self._trusted_s
