"""The Gate: one turnstile's scans, passages, alarms and commands, on one owner thread.

What the daemon, the uplink and the simulator call. It wires the pure parts together and
carries out what they decide, in the order that keeps the promise "fail closed, lose nothing":

    on_code(text)   validate() -> store.record_scan() COMMITTED -> only then the relay opens
                    (a StoreError keeps the gate shut, beeps the `fault` pattern, records a
                    `tamper` alarm if the store still takes it, and is re-raised; any other
                    fault is a denial `internal_error` with a `tamper` alarm and a log line,
                    and the gate goes on: one scan, one error boundary)
    poll()          hardware news queued by gpiozero's threads (passage, door, emergency input;
                    a free exit's passage, or the out contact of a sensor that tells direction:
                    a counted exit, `passage` event `dir: out, free: true`)
                    and the timers (passage timeout -> the admission is rolled back, held_open)
    command(name)   remote commands: open, lock, unlock, emergency_on, emergency_off

The gate's state machine is gated/core/gatestate.py (a pure table); this class feeds it inputs and
carries out its effects, the relay first and then the store writes. Every event goes through
the store, PROTOCOL §5: `passage` (passed/timeout), `alarm` (forced_entry, held_open,
emergency_on, emergency_off, tamper) and `state` (online/locked/emergency, with the list's rev).

Threads: everything here runs on the owner thread; gpiozero callbacks only put into a
queue.Queue that poll() drains. Call poll() often (every 20-50 ms, or poll(wait_s=...) which
sleeps until hardware news or the next timer).

Restarts:
- admissions left 'pending' by a crash (the relay opened, the passage never came in) are rolled
  back at start with a `passage` `timeout` event: nobody can tell whether that visitor passed,
  and rolling back means a ticket holder who did not get through can scan again; the cost is
  one possible extra entry on that ticket, which the ledger sees (scan admit, passage timeout).
- lock and command-emergency survive a restart (kept in the store, with their sources); the emergency input is
  read afresh, and a change while the gate was down is recorded as its alarm.

latency_us in a scan event (PROTOCOL §5: frame capture to the relay command) is measured when
the event is made, just before the commit that must precede the relay; it leaves out the commit
itself (an fsync, a few ms). `last_latency_us` holds the full figure up to the relay command.
"""

from __future__ import annotations

import queue
import sqlite3
import time
from collections.abc import Callable
from dataclasses import replace

import structlog

from gated.core import gatestate as gs
from gated.core.command import GATE_COMMANDS
from gated.core.decide import Decision, GateContext, GateMode
from gated.core.reasons import Reason
from gated.core.signed import Keyring
from gated.gate.store import GateStore, StoreError
from gated.gate.turnstile import Turnstile
from gated.gate.validate import record, scan_fields, validate

log = structlog.get_logger("gated.gate.gate")

LOCKED_KEY, EMERGENCY_KEY = "gate.locked", "gate.emergency"  # the lock and emergency sources held, "a,b"
LEGACY_STALE_LOCK_KEY = "daemon.stale_lock"  # before lock sources: 1 while the daemon held a stale-list lock


class Gate:
    def __init__(
        self,
        *,
        store: GateStore,
        keyring: Keyring,
        context: GateContext,
        turnstile: Turnstile,
        clock: Callable[[], float] = time.time,
        passage_timeout_s: float,
        held_open_s: float,
        time_reading: Callable[[], object] | None = None,
        free_exit: bool = False,
    ):
        """`clock` times events and timers. `time_reading`, if given (gated.gate.clock.TrustedClock.reading),
        gives the time scans are judged with and whether it can be trusted (decide(time_trusted=)).
        `free_exit`: an exit that lets people out without a ticket; each passage is a counted exit
        (a ticket scanned there, with `context.direction` "out", has its exit recorded instead, and
        the passage that follows confirms that exit).
        A board whose passage sensor tells direction (`passage_out`) counts each "out" as a free
        exit whatever the gate is."""
        self._store, self._keyring, self._context, self._turnstile = store, keyring, context, turnstile
        self._clock, self._time_reading = clock, time_reading
        self._free_exit = free_exit
        self._rules = gs.Rules(passage_timeout_s=passage_timeout_s, held_open_s=held_open_s)
        self._queue: queue.Queue[tuple[str, bool, float]] = queue.Queue()
        self.last_scan: dict | None = None  # the last scan event written
        self.last_latency_us: int | None = None  # frame capture -> relay command, last admission
        self._captured_at: float | None = None
        self._scan_recorded = False  # whether the scan being judged has its event in the store
        now = clock()
        self._recover_pending(now)
        self._state = self._restored_state(now)
        if self._state.emergency:
            turnstile.latch()
        turnstile.show_mode(self._state.mode)
        turnstile.on_input(self._hardware_news)
        self._check_emergency_input(now)

    # --- the interface ----------------------------------------------------------------------------

    @property
    def mode(self) -> GateMode:
        return self._state.mode

    @property
    def state(self) -> gs.GateState:
        return self._state

    def on_code(self, text: str, captured_at: float | None = None) -> Decision:
        """Judge one scanned code; `captured_at` is time.monotonic() when its frame was taken.

        Each scan runs inside its own error boundary: a StoreError keeps the gate shut and is
        re-raised (see the module's docstring); any other fault is a denial `internal_error`, a
        `tamper` alarm (if the store still takes it), a log line with the traceback, and the gate
        goes on with the next scan."""
        self._scan_recorded = False
        try:
            return self._judge(text, captured_at)
        except StoreError:
            raise
        except Exception as exc:  # noqa: BLE001 - the per-scan error boundary (hostile codes, our own bugs)
            return self._scan_fault(exc)

    def _judge(self, text: str, captured_at: float | None) -> Decision:
        try:
            self._drain()  # a passage or timeout before this scan is settled before it
        except StoreError:
            pass  # already logged; this scan's own write tells whether the store works
        now, trusted = self._clock(), True
        if self._time_reading is not None:
            reading = self._time_reading()
            now, trusted = reading.now, reading.trusted
        context = self._context if self._context.mode is self.mode else replace(self._context, mode=self.mode)
        try:
            decision = validate(text, self._keyring, context, self._store, now, time_trusted=trusted)
            rev = self._store.revocation_state().version
        except sqlite3.Error as exc:
            raise self.store_fault(StoreError(f"{self._store.path}: read failed ({exc}); the gate stays shut")) from exc
        latency_us = int((time.monotonic() - captured_at) * 1_000_000) if captured_at is not None else 0
        body = scan_fields(decision, context, rev, max(latency_us, 0))
        confirmed = not self._turnstile.counts_passages
        try:
            event = record(self._store, decision, body, _ms(now), confirmed=confirmed)
        except StoreError as exc:
            raise self.store_fault(exc) from exc
        self.last_scan, self._scan_recorded = event, True
        if decision.admit:
            self._captured_at = captured_at
            # the relay moves here, after the commit; timers run on the gate clock
            self._apply(gs.Grant(self._clock(), event["id"], confirmed))
        self._turnstile.signal(decision.reason)
        return decision

    def poll(self, wait_s: float = 0.0) -> None:
        """Handle queued hardware news and due timers (on the owner thread). With wait_s, first
        wait up to that long for news or the next timer. Raises the first StoreError met, after
        handling everything (the hardware side is never skipped)."""
        first = None
        if wait_s > 0:
            deadline = gs.next_deadline(self._state, self._rules)
            if deadline is not None:
                wait_s = max(0.0, min(wait_s, deadline - self._clock()))
            try:
                first = self._queue.get(timeout=wait_s) if wait_s > 0 else None
            except queue.Empty:
                pass
        self._drain(first)

    def command(self, name: str) -> None:
        """A remote command (already authenticated by the caller), on the owner thread."""
        now = self._clock()
        inputs = {
            "open": lambda: gs.Grant(now, None, not self._turnstile.counts_passages),
            "lock": lambda: gs.Lock(now, gs.LOCK_COMMAND),
            "unlock": lambda: gs.Unlock(now, gs.LOCK_COMMAND),
            "emergency_on": lambda: gs.EmergencyOn(now, "command"),
            "emergency_off": lambda: gs.EmergencyOff(now, "command"),
        }
        if name not in inputs:
            raise ValueError(f"unknown gate command {name!r} (expected one of: {', '.join(GATE_COMMANDS)})")
        self._drain()
        self._apply(inputs[name]())

    def list_stale(self, stale: bool) -> None:
        """The revocation policy's verdict, on the owner thread: while `stale` the gate holds a
        `stale_list` lock (fail closed). It is a lock source of its own: a fresh list lifts only
        it, never an operator's `lock`, and an operator's `unlock` does not lift it."""
        if stale == (gs.LOCK_STALE_LIST in self._state.locks):
            return
        now = self._clock()
        self._drain()
        self._apply(gs.Lock(now, gs.LOCK_STALE_LIST) if stale else gs.Unlock(now, gs.LOCK_STALE_LIST))

    def next_deadline(self) -> float | None:
        """When the next timer falls due (clock time), for a caller that sleeps between polls."""
        return gs.next_deadline(self._state, self._rules)

    def close(self) -> None:
        """Release the turnstile: relay off (its safe state), pins given back. The store is the
        caller's to close."""
        self._turnstile.close()

    # --- hardware news ------------------------------------------------------------------------------

    def _hardware_news(self, kind: str, active: bool) -> None:
        # on a gpiozero thread: stamp it and hand it over, nothing else
        self._queue.put((kind, active, self._clock()))

    def _inputs_for(self, kind: str, active: bool, at: float) -> list:
        has_door = self._turnstile.door is not None
        has_passage = self._turnstile.passage is not None
        if kind == "passage_out":
            return [gs.ExitPassage(at)] if active else []
        if kind == "passage" and self._free_exit and not self._state.grants:
            # nobody's exit scan is waiting for it: somebody went out freely
            return (
                [gs.ExitPassage(at)] + ([] if has_door else [gs.Opened(at)])
                if active
                else ([] if has_door else [gs.Closed(at)])
            )
        if kind == "passage":
            # without a door sensor the beam/arm contact also tells how long the way is open
            return (
                [gs.Passage(at)] + ([] if has_door else [gs.Opened(at)])
                if active
                else ([] if has_door else [gs.Closed(at)])
            )
        if kind == "door":
            if active:
                return ([] if has_passage else [gs.Passage(at)]) + [gs.Opened(at)]
            return [gs.Closed(at)]
        if kind == "emergency":
            return [gs.EmergencyOn(at, "input") if active else gs.EmergencyOff(at, "input")]
        raise ValueError(f"unknown input {kind!r}")

    def _drain(self, first: tuple[str, bool, float] | None = None) -> None:
        # The clock is read before the queue is emptied: news stamped before `now` is handled
        # before the timers fire at `now` (a passage just before its deadline still confirms).
        now = self._clock()
        first_error: StoreError | None = None
        while True:
            if first is not None:
                (kind, active, at), first = first, None
            else:
                try:
                    kind, active, at = self._queue.get_nowait()
                except queue.Empty:
                    break
            for event in self._inputs_for(kind, active, at):
                first_error = self._apply_collecting(event, first_error)
        first_error = self._apply_collecting(gs.Tick(now), first_error)
        if first_error is not None:
            raise first_error

    def _apply_collecting(self, event, first_error: StoreError | None) -> StoreError | None:
        try:
            self._apply(event)
        except StoreError as exc:
            return first_error or exc
        return first_error

    # --- carrying out effects -----------------------------------------------------------------------

    def _apply(self, event) -> None:
        before = self._state
        self._state, effects = gs.step(self._state, event, self._rules)
        hardware = [e for e in effects if isinstance(e, (gs.OpenRelay, gs.CloseRelay, gs.LatchRelay, gs.UnlatchRelay))]
        for effect in hardware:
            self._move_relay(effect)
        if any(isinstance(e, gs.ModeChanged) for e in effects):
            self._turnstile.show_mode(self._state.mode)
        first_error = None
        for effect in effects:
            try:
                self._record(effect, event.at)
            except StoreError as exc:
                log.error("gate.store_write_failed", effect=type(effect).__name__, error=str(exc))
                first_error = first_error or exc
        if (before.locks, before.emergency) != (self._state.locks, self._state.emergency):
            try:
                self._persist_mode()
            except StoreError as exc:
                first_error = first_error or exc
        if first_error is not None:
            raise first_error

    def _move_relay(self, effect) -> None:
        if isinstance(effect, gs.OpenRelay):
            moved_at = time.monotonic()
            self._turnstile.open()
            if self._captured_at is not None:
                self.last_latency_us = int((moved_at - self._captured_at) * 1_000_000)
                self._captured_at = None
        elif isinstance(effect, gs.CloseRelay):
            self._turnstile.release()
        elif isinstance(effect, gs.LatchRelay):
            self._turnstile.latch()
        elif isinstance(effect, gs.UnlatchRelay):
            self._turnstile.unlatch()

    def _record(self, effect, at: float) -> None:
        ts = _ms(at)
        if isinstance(effect, gs.Confirm):
            self._store.record_passage(effect.scan_id, True, ts)
        elif isinstance(effect, gs.RollBack):
            self._store.record_passage(effect.scan_id, False, ts)
        elif isinstance(effect, gs.CountExit):
            self._store.record_free_exit(self._context.zone, ts, self._state.mode.value)
        elif isinstance(effect, gs.RaiseAlarm):
            log.warning("gate.alarm", alarm=effect.alarm)
            self._store.record_event({"kind": "alarm", "alarm": effect.alarm}, ts)
        elif isinstance(effect, gs.ModeChanged):
            log.info("gate.mode", state=effect.mode.value)
            self._store.record_event(
                {"kind": "state", "state": effect.mode.value, "rev": self._store.revocation_state().version}, ts
            )

    def store_fault(self, exc: StoreError) -> StoreError:
        """The store failed: the gate stays shut and says so (lights, sound, an alarm if the store
        still takes it). Returns the error for the caller to raise."""
        log.error("gate.store_fault", error=str(exc), action="gate kept shut; check the disk and the state file")
        self._turnstile.signal("fault")
        try:
            self._store.record_event({"kind": "alarm", "alarm": "tamper"}, _ms(self._clock()))
        except Exception as again:  # noqa: BLE001 - the store's own fault is the one to raise
            log.error("gate.alarm_not_recorded", alarm="tamper", error=f"{type(again).__name__}: {again}")
        return exc

    def _scan_fault(self, exc: Exception) -> Decision:
        """A scan failed for a reason other than the store: deny it `internal_error`. The scan event
        is written unless this scan's own event already was (then it stands as written), then a
        `tamper` alarm; if they cannot be written either (the store refuses them, or making them
        fails as the scan did), that is logged and the gate stays shut: nothing leaves this boundary."""
        log.error(
            "gate.scan_failed",
            error=f"{type(exc).__name__}: {exc}",
            exc_info=exc,
            action="scan denied internal_error; the gate goes on",
        )
        decision = Decision(
            False, Reason.INTERNAL_ERROR, detail=f"the gate could not judge this code ({type(exc).__name__})"
        )
        try:
            now = _ms(self._clock())
            if not self._scan_recorded:
                rev = self._store.revocation_state().version
                self.last_scan = self._store.record_scan(scan_fields(decision, self._context, rev), now)
            self._store.record_event({"kind": "alarm", "alarm": "tamper"}, now)
        except Exception as again:  # noqa: BLE001 - the per-scan boundary holds for its own records too
            log.error(
                "gate.alarm_not_recorded",
                alarm="tamper",
                error=f"{type(again).__name__}: {again}",
                action="scan denied internal_error, not recorded; the gate stays shut",
            )
        try:
            self._turnstile.signal(decision.reason)
        except Exception as again:  # noqa: BLE001 - lamps and buzzer are not worth a second fault
            log.error("gate.signal_failed", reason=decision.reason.value, error=f"{type(again).__name__}: {again}")
        return decision

    # --- start-up -----------------------------------------------------------------------------------

    def _recover_pending(self, now: float) -> None:
        for scan_id in self._store.pending_admissions():
            log.warning(
                "gate.pending_admission_rolled_back",
                scan_id=scan_id,
                why="left pending by a stop before its passage; the ticket may be used again",
            )
            self._store.record_passage(scan_id, False, _ms(now))

    def _restored_state(self, now: float) -> gs.GateState:
        locks = self._restored_locks()
        sources = _sources(self._store.get_value(EMERGENCY_KEY, ""))
        opened = self._turnstile.input_active("door")
        if opened is None:
            opened = self._turnstile.input_active("passage")
        return gs.GateState(locks=locks, emergency=sources, open_since=now if opened else None)

    def _restored_locks(self) -> frozenset[str]:
        held = self._store.get_value(LOCKED_KEY, "")
        if str(held) in ("0", "1"):  # written before locks had sources: 1 = locked, by whom the old key says
            if str(held) == "0":
                return frozenset()
            stale = bool(int(self._store.get_value(LEGACY_STALE_LOCK_KEY, 0) or 0))
            return frozenset({gs.LOCK_STALE_LIST if stale else gs.LOCK_COMMAND})
        locks = _sources(held)
        unknown = locks - set(gs.LOCK_SOURCES)
        if unknown:  # fail closed: a source we do not know still locks, as the operator's lock
            log.warning("gate.unknown_lock_source", sources=sorted(unknown), action="kept as the operator's lock")
            locks = (locks - unknown) | {gs.LOCK_COMMAND}
        return locks

    def _check_emergency_input(self, now: float) -> None:
        """The fire-alarm input as it is now, against what the store remembers."""
        active = self._turnstile.input_active("emergency")
        remembered = "input" in self._state.emergency
        if active and not remembered:
            self._apply(gs.EmergencyOn(now, "input"))
        elif remembered and not active:
            self._apply(gs.EmergencyOff(now, "input"))

    def _persist_mode(self) -> None:
        self._store.set_value(LOCKED_KEY, ",".join(sorted(self._state.locks)))
        self._store.set_value(EMERGENCY_KEY, ",".join(sorted(self._state.emergency)))


def _sources(stored) -> frozenset[str]:
    return frozenset(s for s in str(stored or "").split(",") if s)


def _ms(unix_seconds: float) -> int:
    return int(round(unix_seconds * 1000))
