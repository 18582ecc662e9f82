"""`gated sim`: play a scenario's crowd against a real venue and report against the ground truth.

Theory of operation
-------------------
The venue (sim/venue.py) is real: Mosquitto, `gated ledger`, N `gated run` processes with
synthetic cameras and mock pins. The crowd (sim/model.py) is planned before the doors open, so
every expected answer is known. Threads of the runner:

    dispatcher   moves each attempt into its gate's queue when it is due (its arrival time / speed)
                 and what it waits for has happened (the original passed; the revocation reached
                 the gates; the broker has been back long enough for an admission to cross)
    gate worker  one per gate, one visitor at a time, like a lane: show the code to the camera
                 (control socket), wait for the gate's scan event (from the broker, or from the
                 gate's outbox while the broker is away), step away, walk through the beam on a
                 green light (or do not, and wait for the gate's passage timeout); carries out a
                 `gate_kill` fault between two visitors
    timeline     the scenario's faults and the revocation published during the event
    sampler      queue lengths for the report
    main         the live progress view (rich), then the drain: every event made must reach the
                 ledger, then everything stops and the report is written.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from gated.gate.rehearsal.control import ControlError
from sim import model, report
from sim.scenario import Scenario
from sim.venue import Venue, VenueError

DECISION_TIMEOUT_S = 20.0  # a visitor waits this long for an answer before giving up (a mismatch)
PROGRESS_EVERY_S = 5.0  # a progress line this often when stderr is not a terminal
KNOW_WAIT_S = 15.0  # longest a chained attempt waits for its gate to take in a peer's movement
PROPAGATION_S = 3.0  # after the broker is back (or a gate restarted), time for news to cross it


@dataclass
class Clock:
    """Wall time since the doors opened, and its conversion to simulated time."""

    speed: float
    t0: float = field(default_factory=time.monotonic)

    def now(self) -> float:
        return time.monotonic() - self.t0

    def sim(self, real_s: float) -> float:
        return real_s * self.speed

    def real(self, sim_s: float) -> float:
        return sim_s / self.speed


class Run:
    def __init__(self, scenario: Scenario, venue: Venue, crowd: model.Crowd, speed: float, log):
        self.scenario, self.venue, self.crowd, self.speed, self.log = scenario, venue, crowd, speed, log
        self.clock: Clock | None = None
        self.queues = {g: deque() for g in scenario.gate_ids}
        self.serving: dict[str, model.Attempt | None] = {g: None for g in scenario.gate_ids}
        self.pending = list(crowd.attempts)
        self.by_id = {a.id: a for a in crowd.attempts}
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.stop = threading.Event()
        self.broker_up_since: float | None = 0.0
        self.broker_restarted = False  # a broker_down fault has ended: gates must say online again
        self.revocation_sent_at: float | None = None
        self.kill_pending: dict[str, object] = {}
        self.faults: list[dict] = []
        self.notes: list[str] = []
        self.samples: list[tuple[float, dict]] = []
        self.gate_state = {g: "up" for g in scenario.gate_ids}
        self.unsynced_until: dict[str, float] = {}  # replaced gate -> clock time its admissions snapshot goes out
        self.replaced_at: dict[str, float] = {}  # replaced gate -> clock time its new state started serving
        self.used_at_old: dict[str, list] = {}  # replaced gate -> attempts admitted at its dead card
        self.passage_device = "passage"
        self.shown: dict[str, set[str]] = {g: set() for g in scenario.gate_ids}  # tickets shown at each gate so far
        self.late_scans: set[str] = set()  # scans of an earlier visitor's ticket read after it was taken away
        self.known: set[tuple[str, str]] = set()  # (gate, peer event id) a gate is known to have taken in

    # --- dispatcher ---------------------------------------------------------------------------
    def ready(self, a: model.Attempt, now: float) -> bool:
        if now < self.clock.real(a.at_s):
            return False
        if a.after is not None:
            dep = self.by_id[a.after]
            if dep.ended_at is None or now < dep.ended_at + a.after_gap_s:
                return False
            if a.needs_broker:
                seen = self.venue.listener.received_at.get(dep.event_id or "")
                if seen is None:
                    return False
                if not self.gate_knows(a, dep, now):
                    return False
        if a.needs_broker:
            if self.broker_up_since is None or now < self.broker_up_since + PROPAGATION_S:
                return False
            # the gate's reconnect backs off (up to seconds after the broker is back): wait until it
            # has said `online` again, else the news it needs may still be waiting at the broker
            if (
                self.broker_restarted
                and self.venue.listener.online_at.get(a.gate, 0.0) < self.clock.t0 + self.broker_up_since
            ):
                return False
            up = self.venue.gates[a.gate].up_since
            if up is None or time.monotonic() < up + PROPAGATION_S:
                return False
        if a.needs_revocation:
            if self.revocation_sent_at is None:
                return False
            rev = self.venue.listener.revs.get(a.gate, 0)
            if rev < 2 and now < self.revocation_sent_at + 2 * PROPAGATION_S:
                return False
            if now < self.revocation_sent_at + 0.5:
                return False
        return True

    def gate_knows(self, a: model.Attempt, dep: model.Attempt, now: float) -> bool:
        """The movement `a` depends on, made at another gate, has reached `a`'s gate too: the
        listener having it says only that the broker passed it on, and a loaded gate can take it in
        later than the 0.6 s the chain allows (it then still counts the zone full, or the ticket
        unused). Only a movement that stays counts (admitted and walked through, or a free exit);
        after KNOW_WAIT_S the attempt goes ahead anyway, and a gate that never learnt shows as a
        mismatch rather than a hung run."""
        if dep.gate == a.gate or not dep.observed_admit or not dep.passes or not dep.event_id:
            return True
        if now > dep.ended_at + KNOW_WAIT_S or (a.gate, dep.event_id) in self.known:
            return True
        if self.venue.gates[a.gate].knows(dep.event_id):
            self.known.add((a.gate, dep.event_id))
            return True
        return False

    def dispatcher(self) -> None:
        while not self.stop.is_set():
            now = self.clock.now()
            with self.lock:
                still = []
                for a in self.pending:
                    if self.ready(a, now):
                        a.queued_at = now
                        self.queues[a.gate].append(a)
                    else:
                        still.append(a)
                self.pending = still
            self.stop.wait(0.05)

    # --- a lane ---------------------------------------------------------------------------------
    def worker(self, gate_id: str) -> None:
        gate = self.venue.gates[gate_id]
        while not self.stop.is_set():
            if gate_id in self.kill_pending and self.kill_pending[gate_id].kind == "gate_replace":
                self.carry_out_replace(gate_id, self.kill_pending.pop(gate_id))
                continue
            if gate_id in self.kill_pending and self.kill_pending[gate_id].during == "idle":
                self.carry_out_kill(gate_id, self.kill_pending.pop(gate_id))
                continue
            if gate_id in self.unsynced_until and self.clock.now() >= self.unsynced_until[gate_id]:
                self.sync_replaced(gate_id)
                continue
            with self.lock:
                attempt = self.queues[gate_id].popleft() if self.queues[gate_id] else None
                self.serving[gate_id] = attempt
            if attempt is None:
                if self.all_served():
                    return
                self.stop.wait(0.02)
                continue
            if gate_id in self.unsynced_until:
                self.expect_unsynced(attempt)
            elif attempt.after is not None:
                self.expect_after_unsynced(attempt)
            try:
                self.serve(gate, attempt)
            except (OSError, ControlError) as exc:
                attempt.note = f"gate unreachable: {exc}"
                proc = gate.process
                if proc is not None and proc.poll() is not None and self.gate_state[gate_id] != "dead":
                    self.gate_state[gate_id] = "dead"
                    self.notes.append(f"gate {gate_id} died on its own (exit {proc.returncode}); see {gate.log_path}")
            finally:
                attempt.ended_at = self.clock.now()
                with self.lock:
                    self.serving[gate_id] = None

    def all_served(self) -> bool:
        with self.lock:
            return not self.pending and not any(self.queues.values())

    def baseline(self, gate) -> int:
        own = gate.db_seq()  # a replaced gate's new chain: its epoch's seqs only
        return max(own, self.venue.listener.max_seq(gate.id, epoch=own >> 40))

    def find_events(self, gate, after_seq: int) -> list[dict]:
        found = {e["seq"]: e for e in self.venue.listener.events_of(gate.id, after_seq)}
        for e in gate.outbox_after(after_seq):
            found.setdefault(e["seq"], e)
        return [found[s] for s in sorted(found)]

    def stale(self, gate_id: str, scan: dict, a: model.Attempt) -> bool:
        """A scan of a ticket an earlier visitor showed at this gate, not `a`'s: the camera's frames
        of the code still in view, read after the gate's debounce hold-off when a loaded gate took
        longer than that to answer. It is the earlier visitor's (the ledger has it, as a real gate
        would); `a`'s own answer is still to come."""
        ticket = scan.get("ticket")
        late = ticket is not None and a.cti is not None and ticket != a.cti and ticket in self.shown[gate_id]
        if late:
            self.late_scans.add(scan.get("id"))
        return late

    def walk_out(self, gate, a: model.Attempt) -> None:
        """A free exit: nobody scans anything; the visitor goes through and the gate counts it."""
        start = self.baseline(gate)
        a.shown_at = self.clock.now()
        gate.client.request("drive", device=self.passage_device, active=True)
        time.sleep(0.08)
        gate.client.request("drive", device=self.passage_device, active=False)
        deadline = time.monotonic() + DECISION_TIMEOUT_S
        while time.monotonic() < deadline and not self.stop.is_set():
            found = next(
                (e for e in self.find_events(gate, start) if e.get("kind") == "passage" and e.get("free")), None
            )
            if found is not None:
                a.decided_at = self.clock.now()
                a.observed_admit, a.observed_reason, a.event_id = True, "ok", found.get("id")
                a.passage = found.get("result")
                return
            time.sleep(0.02)
        a.note = f"no free-exit passage event within {DECISION_TIMEOUT_S:.0f} s"

    def serve(self, gate, a: model.Attempt) -> None:
        if a.kind == "free_exit":
            return self.walk_out(gate, a)
        start = self.baseline(gate)
        text = model.render(a, time.time())
        gate.client.request("show", text=text)
        a.shown_at = self.clock.now()
        scan = None
        deadline = time.monotonic() + DECISION_TIMEOUT_S
        while scan is None and time.monotonic() < deadline and not self.stop.is_set():
            scan = next(
                (e for e in self.find_events(gate, start) if e.get("kind") == "scan" and not self.stale(gate.id, e, a)),
                None,
            )
            if scan is None:
                time.sleep(0.02)
        gate.client.request("show", text=None)
        self.shown[gate.id].add(a.cti)
        if scan is None:
            a.note = f"no scan event within {DECISION_TIMEOUT_S:.0f} s"
            return
        a.decided_at = self.clock.now()
        a.observed_admit = scan.get("decision") == "admit"
        a.observed_reason = scan.get("reason")
        a.event_id = scan.get("id")
        a.latency_us = scan.get("latency_us")
        a.observed_flag = scan.get("unsynced") is True
        if not a.observed_admit:
            return
        fault = self.kill_pending.get(gate.id)
        if fault is not None and fault.during == "admission" and a.passes:
            self.kill_on_green(gate, a, scan)
            wait = 15.0
        elif a.passes:
            time.sleep(min(self.scenario.pass_time_s / self.speed, 1.0))
            gate.client.request("drive", device=self.passage_device, active=True)
            time.sleep(0.08)
            gate.client.request("drive", device=self.passage_device, active=False)
            wait = 5.0
        else:
            wait = self.scenario.passage_timeout_s + 5.0
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and not self.stop.is_set():
            passage = next(
                (
                    e
                    for e in self.find_events(gate, scan["seq"])
                    if e.get("kind") == "passage" and e.get("ref") == scan.get("id")
                ),
                None,
            )
            if passage is not None:
                a.passage = passage.get("result")
                break
            time.sleep(0.02)
        expected = "passed" if a.passes else "timeout"
        if a.passage != expected:
            a.note = f"passage {a.passage or 'never reported'}, expected {expected}"
            a.observed_reason = f"{a.observed_reason}+passage_{a.passage or 'missing'}"

    # --- faults ---------------------------------------------------------------------------------
    def carry_out_kill(self, gate_id: str, fault, during: str = "between two visitors") -> bool:
        """SIGKILL the gate, wait out its downtime, start it again. False if it did not come back."""
        gate = self.venue.gates[gate_id]
        self.gate_state[gate_id] = "killed"
        killed = self.clock.now()
        gate.kill()
        time.sleep(self.clock.real(fault.end_s - fault.start_s))
        gate.start()
        try:
            gate.wait_ready()
        except VenueError as exc:
            self.notes.append(str(exc))
            self.gate_state[gate_id] = "dead"
            self.stop.set()
            return False
        time.sleep(2.5)  # a fresh beacon, if the broker is up (inside an outage its clock carries on alone)
        back = self.clock.now()
        self.gate_state[gate_id] = "up"
        self.faults.append(
            {
                "kind": "gate_kill",
                "gate": gate_id,
                "start_sim_s": self.clock.sim(killed),
                "end_sim_s": self.clock.sim(back),
                "what": f"SIGKILL at {self.clock.sim(killed):.1f} s ({during}), "
                f"restarted and serving again at {self.clock.sim(back):.1f} s",
            }
        )
        return True

    def carry_out_replace(self, gate_id: str, fault) -> bool:
        """The gate's SD card dies: once its outbox has drained (what a dead card held unsent is lost
        with it, and that is not what this rehearses), SIGKILL, state wiped, `gated replace` on a fresh
        state directory, started again after down_s; its new device key approved with
        `gated keys enrol --replace`. It then serves visitors unsynced until sync_replaced()."""
        gate = self.venue.gates[gate_id]
        deadline = time.monotonic() + 15
        while gate.outbox_depth() and time.monotonic() < deadline:
            time.sleep(0.1)
        self.gate_state[gate_id] = "replacing"
        killed = self.clock.now()
        gate.kill()
        try:
            kid = gate.replace()
            time.sleep(self.clock.real(fault.end_s - fault.start_s))
            gate.start()
            gate.wait_ready()
            time.sleep(1.0)  # its status, announcing the new key, is retained at the broker
            self.venue.approve_device(kid)
        except VenueError as exc:
            self.notes.append(str(exc))
            self.gate_state[gate_id] = "dead"
            self.stop.set()
            return False
        back = self.clock.now()
        self.replaced_at[gate_id] = killed  # peers' events since are queued for it in its broker session
        self.used_at_old[gate_id] = [
            a
            for a in self.crowd.attempts
            if a.gate == gate_id
            and a.observed_admit
            and a.passage == "passed"
            and a.dynamic is None
            and a.decided_at is not None
            and a.decided_at < killed
            and self.crowd.tickets.get(a.cti, 1) == 1
        ]
        self.show_again(gate_id, 2)  # before the snapshot: the new state cannot know these were used
        self.unsynced_until[gate_id] = back + self.clock.real(fault.sync_after_s)
        self.gate_state[gate_id] = "unsynced"
        self.faults.append(
            {
                "kind": "gate_replace",
                "gate": gate_id,
                "start_sim_s": self.clock.sim(killed),
                "end_sim_s": self.clock.sim(back),
                "what": f"card dead at {self.clock.sim(killed):.1f} s: state wiped, new chain and device "
                f"key (kid {kid}, approved), serving again at {self.clock.sim(back):.1f} s under "
                f"until_synced = {self.scenario.until_synced}",
            }
        )
        return True

    def sync_replaced(self, gate_id: str) -> None:
        """The operator publishes the ledger's admissions snapshot; the lane waits until the gate has it."""
        gate = self.venue.gates[gate_id]
        try:
            self.venue.publish_admissions()
        except VenueError as exc:
            self.notes.append(f"admissions snapshot for {gate_id} not published: {exc}")
        deadline = time.monotonic() + 20
        while not gate.synced() and time.monotonic() < deadline:
            time.sleep(0.1)
        if not gate.synced():
            self.notes.append(f"replaced gate {gate_id} did not take the admissions snapshot within 20 s")
        del self.unsynced_until[gate_id]
        self.gate_state[gate_id] = "up"
        self.show_again(gate_id, 3)  # after it: already_used, as at the old card
        self.faults.append(
            {
                "kind": "gate_replace",
                "gate": gate_id,
                "start_sim_s": None,
                "end_sim_s": None,
                "what": f"admissions snapshot published at {self.clock.sim(self.clock.now()):.1f} s: "
                f"{gate_id} synced: {gate.synced()}",
            }
        )

    def show_again(self, gate_id: str, n: int) -> None:
        """Copies of tickets used at the dead card, shown at its replacement next (the ground truth of
        "no ticket used at the old gate is admitted again at the new one")."""
        with self.lock:
            for original in self.used_at_old[gate_id][:n]:
                copy = model.Attempt(
                    max(self.by_id) + 1,
                    original.visitor,
                    gate_id,
                    original.at_s,
                    "used_at_old_gate",
                    original.text,
                    original.cti,
                    False,
                    "already_used",
                )
                self.by_id[copy.id] = copy
                self.crowd.attempts.append(copy)
                self.queues[gate_id].appendleft(copy)
            del self.used_at_old[gate_id][:n]

    def expect_unsynced(self, a: model.Attempt) -> None:
        """The ground truth at a replaced gate before its snapshot: a ticket with limited entries whose
        earlier admission the new state cannot know (at the old card, or at a peer before the new
        state started) is denied `unsynced` (deny_used_check) or admitted and flagged (admit); one
        it can know (made at it, or at a peer since it started, while the broker was up) is checked."""
        if self.scenario.direction_of(a.gate) != "entry" or a.kind == "free_exit":
            return
        self.expect_after_unsynced(a)
        if a.expect_reason == "already_used":
            original = self.by_id.get(a.after) if a.after is not None else None
            if (
                original is not None
                and original.decided_at is not None
                and original.decided_at >= self.replaced_at[a.gate]
            ):
                return  # the new state saw that admission (its own, or a peer's event)
        elif a.expect_reason != "ok":
            return
        if self.scenario.until_synced == "admit":
            a.expect_admit, a.expect_reason, a.expect_flag = True, "ok", True
        else:
            a.expect_admit, a.expect_reason = False, "unsynced"

    def expect_after_unsynced(self, a: model.Attempt) -> None:
        """A copy whose original was denied `unsynced` meets a ticket never admitted: a first entry."""
        original = self.by_id.get(a.after) if a.after is not None else None
        if (
            original is not None
            and a.expect_reason == "already_used"
            and original.expect_reason == "unsynced"
            and original.observed_admit is False
        ):
            a.expect_admit, a.expect_reason = True, "ok"

    def kill_on_green(self, gate, a: model.Attempt, scan: dict) -> None:
        """The gate dies while this visitor's light is green. Nobody passed: the restarted gate must roll
        the admission back (a passage `timeout`), and the visitor, still holding a good ticket, tries again."""
        fault = self.kill_pending.pop(gate.id)
        a.passes = False
        a.kind = "valid_killed"
        if not self.carry_out_kill(gate.id, fault, during=f"light green for {scan.get('id')}, nobody through yet"):
            return
        retry = model.Attempt(
            max(self.by_id) + 1,
            a.visitor,
            a.gate,
            a.at_s,
            "retry",
            a.text,
            a.cti,
            True,
            "ok",
            after=a.id,
            after_gap_s=0.5,
            dynamic=a.dynamic,
        )
        self.by_id[retry.id] = retry
        self.crowd.attempts.append(retry)
        with self.lock:
            self.pending.append(retry)

    def timeline(self) -> None:
        sc = self.scenario
        steps = []
        for f in sc.faults:
            if f.kind == "broker_down":
                steps.append((f.start_s, "broker_stop", f))
                steps.append((f.end_s, "broker_start", f))
            elif f.kind in ("gate_kill", "gate_replace"):
                steps.append((f.start_s, "kill", f))
            elif f.kind == "camera_stall":
                steps.append((f.start_s, "stall", f))
            elif f.kind == "ledger_resize":
                steps.append((f.start_s, "resize", f))
            elif f.kind == "status_probe":
                steps.append((f.start_s, "probe", f))
            elif f.kind == "clock_skew":
                self.faults.append(
                    {
                        "kind": "clock_skew",
                        "gate": f.gate,
                        "start_sim_s": None,
                        "end_sim_s": None,
                        "what": f"wall clock {f.offset_s:+.0f} s off all along (time beacons bound it)",
                    }
                )
        if self.crowd.revoked_during:
            steps.append((sc.revocations_at_s, "revoke", None))
        steps.sort(key=lambda s: s[0])
        down_at, down_how = None, "stop"
        for at, what, f in steps:
            while not self.stop.is_set() and self.clock.now() < self.clock.real(at):
                self.stop.wait(0.05)
            if self.stop.is_set():
                return
            now = self.clock.now()
            if what == "broker_stop":
                if self.venue.broker is None:
                    self.notes.append("broker_down fault skipped: the broker was given with --broker")
                    continue
                self.venue.broker.stop(kill=f.how == "kill")
                self.broker_up_since = None
                down_at, down_how = now, f.how
            elif what == "broker_start" and self.venue.broker is not None:
                self.venue.broker.start()
                self.broker_up_since = self.clock.now()
                self.broker_restarted = True
                self.faults.append(
                    {
                        "kind": "broker_down",
                        "gate": None,
                        "start_sim_s": self.clock.sim(down_at),
                        "end_sim_s": self.clock.sim(self.broker_up_since),
                        "what": f"Mosquitto {'killed (SIGKILL, no save)' if down_how == 'kill' else 'stopped'} "
                        f"at {self.clock.sim(down_at):.1f} s, "
                        f"started again at {self.clock.sim(self.broker_up_since):.1f} s",
                    }
                )
            elif what == "resize":
                self.resize_ledger(f, now)
            elif what == "probe":
                self.status_probe(now)
            elif what == "kill":
                self.kill_pending[f.gate] = f
            elif what == "stall":
                seconds = self.clock.real(f.end_s - f.start_s)
                try:
                    answer = self.venue.gates[f.gate].client.request("stall", seconds=seconds)
                    self.faults.append(
                        {
                            "kind": "camera_stall",
                            "gate": f.gate,
                            "start_sim_s": self.clock.sim(now),
                            "end_sim_s": self.clock.sim(now + seconds),
                            "what": f"camera hung at {self.clock.sim(now):.1f} s for up to {seconds:.1f} s "
                            f"(wall); it came back {answer.get('recovery', '')}",
                        }
                    )
                except (OSError, ControlError) as exc:
                    self.notes.append(f"camera_stall at {f.gate} not carried out: {exc}")
            elif what == "revoke":
                try:
                    self.venue.publish_revocations(2, 1, self.crowd.revoked_during)
                    self.revocation_sent_at = self.clock.now()
                except (OSError, RuntimeError, ValueError) as exc:
                    self.notes.append(f"revocation delta not published: {exc}")
                    self.revocation_sent_at = self.clock.now()

    def resize_ledger(self, f, now: float) -> None:
        """The operator's procedure (docs/central.md, "Changing the number of workers"): stop the
        ledger workers, start the new number of them; the gates carry on."""
        before = self.venue.ledger_partitions
        try:
            self.venue.stop_ledger()
            self.venue.start_ledger(f.partitions)
            self.faults.append(
                {
                    "kind": "ledger_resize",
                    "gate": None,
                    "start_sim_s": self.clock.sim(now),
                    "end_sim_s": self.clock.sim(self.clock.now()),
                    "what": f"ledger from {before} to {f.partitions} --partition workers",
                }
            )
        except (OSError, RuntimeError) as exc:
            self.notes.append(f"ledger_resize to {f.partitions} not carried out: {exc}")

    def status_probe(self, now: float) -> None:
        """`gated status` against the site while everything runs, as docs/central.md tells an operator
        (its own client id, never a gate's or the ledger's)."""
        import subprocess

        from sim.venue import gated_command

        argv = gated_command() + ["status", "--broker", self.venue.broker_url, "--site", self.scenario.site, "--json"]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
            rows = len(json.loads(done.stdout)) if done.stdout.strip().startswith("[") else None
            what = f"gated status: exit {done.returncode}, {rows if rows is not None else 'no'} gate rows"
        except (OSError, subprocess.TimeoutExpired, ValueError) as exc:
            what = f"gated status failed: {exc}"
        self.faults.append(
            {
                "kind": "status_probe",
                "gate": None,
                "start_sim_s": self.clock.sim(now),
                "end_sim_s": self.clock.sim(self.clock.now()),
                "what": what,
            }
        )

    def sampler(self) -> None:
        while not self.stop.is_set() and not self.done.is_set():
            with self.lock:
                sample = {g: len(q) + (1 if self.serving[g] is not None else 0) for g, q in self.queues.items()}
            self.samples.append((self.clock.now(), sample))
            self.stop.wait(0.25)

    # --- progress -------------------------------------------------------------------------------
    def progress_line(self) -> str:
        """One line for a log: simulated time, broker, served, admits, denies, mismatches, queues."""
        attempts = self.crowd.attempts
        done = [a for a in attempts if a.ended_at is not None]
        with self.lock:
            waiting = sum(len(q) for q in self.queues.values())
        mism = sum(1 for a in done if not a.matched)
        return (
            f"sim {self.scenario.name}: {self.clock.sim(self.clock.now()):.0f} of {self.scenario.duration_s:.0f} s; "
            f"broker {'up' if self.broker_up_since is not None else 'DOWN'}; served {len(done)}/{len(attempts)}, "
            f"{sum(1 for a in done if a.observed_admit)} admitted, "
            f"{sum(1 for a in done if a.observed_admit is False)} denied, {mism} mismatches; {waiting} in line; "
            f"events seen {self.venue.listener.unique()}"
        )

    def progress_table(self):
        from rich.table import Table

        attempts = self.crowd.attempts
        t = Table(
            title=f"gated sim {self.scenario.name}: simulated {self.clock.sim(self.clock.now()):.0f} s of "
            f"{self.scenario.duration_s:.0f} (x{self.speed:g}); broker "
            f"{'up' if self.broker_up_since is not None else '[red]DOWN[/red]'}; "
            f"events seen {self.venue.listener.unique()}",
            title_justify="left",
        )
        for col in ("gate", "state", "queue", "served", "admits", "denies", "mismatches", "last"):
            t.add_column(col, justify="right" if col not in ("gate", "state", "last") else "left")
        shown = self.scenario.gate_ids if len(self.scenario.gate_ids) <= 24 else self.scenario.gate_ids[:24]
        for g in shown:
            mine = [a for a in attempts if a.gate == g and a.ended_at is not None]
            last = mine[-1] if mine else None
            mism = sum(1 for a in mine if not a.matched)
            t.add_row(
                g,
                self.gate_state[g],
                str(len(self.queues[g])),
                f"{len(mine)}/{sum(1 for a in attempts if a.gate == g)}",
                str(sum(1 for a in mine if a.observed_admit)),
                str(sum(1 for a in mine if a.observed_admit is False)),
                f"[red]{mism}[/red]" if mism else "0",
                f"{last.kind}: {last.observed_reason}" if last else "",
            )
        return t


def run(
    scenario: Scenario,
    out_dir: Path,
    *,
    speed: float | None = None,
    broker_url: str | None = None,
    progress: bool = True,
    log=print,
    ledger_db: str | None = None,
) -> dict:
    """Run the scenario; returns the report (also written to out_dir)."""
    speed = speed or scenario.speed
    out_dir = Path(out_dir).resolve()  # gate configs and child processes need absolute paths
    venue = Venue(scenario, out_dir, broker_url=broker_url, ledger_db=ledger_db, log=log)
    try:
        return _run(scenario, venue, out_dir, speed, progress, log)
    finally:
        venue.close()


def _run(scenario, venue: Venue, out_dir: Path, speed: float, progress: bool, log) -> dict:
    log(f"venue: {scenario.gates} gates at {scenario.site}, {scenario.visitors} visitors, speed x{speed:g}")
    venue.start_broker()
    venue.prepare_gates()
    opened = int(time.time())
    crowd = model.build(scenario, venue.issuer_key, opened, speed=speed, other_event_key=venue.other_event_key)
    venue.write_tickets_csv(crowd.tickets)
    venue.start_listener()
    venue.publish_revocations(1, 0, crowd.revoked_before)  # the snapshot the gates start with
    if scenario.checkin_admit_types is not None:
        venue.publish_checkin_list(crowd.unpaid)
    venue.start_ledger(scenario.ledger_partitions)
    log(f"broker {venue.broker_url}; ledger {venue.ledger_db}; starting {scenario.gates} gates")
    venue.start_gates()
    time.sleep(2.5)  # a fresh beacon and the revocation snapshot reach every gate
    r = Run(scenario, venue, crowd, speed, log)
    r.clock = Clock(speed)
    threads = [
        threading.Thread(target=r.dispatcher, name="dispatcher", daemon=True),
        threading.Thread(target=r.timeline, name="timeline", daemon=True),
        threading.Thread(target=r.sampler, name="sampler", daemon=True),
    ]
    workers = [threading.Thread(target=r.worker, args=(g,), name=f"lane-{g}", daemon=True) for g in scenario.gate_ids]
    for t in threads + workers:
        t.start()
    limit = r.clock.real(scenario.duration_s) + 120 + 2 * len(crowd.attempts) / max(1, scenario.gates)
    try:
        _watch_all(r, workers, limit, progress)
    finally:
        r.done.set()
        r.stop.set()
    for t in threads + workers:
        t.join(timeout=30)
    for gate_id, fault in r.kill_pending.items():
        r.notes.append(
            f"{fault.kind} at {gate_id} ({fault.during}) never happened: no moment for it after {fault.start_s:g} s"
        )
    for gate_id in list(r.unsynced_until):  # the crowd was gone before the snapshot was due
        r.sync_replaced(gate_id)
    if venue.broker is not None and not venue.broker.running:
        venue.broker.start()  # a fault window that outlived the crowd
    # the drain: every event made reaches the ledger
    made = sum(g.events_made() for g in venue.gates.values())
    deadline = time.monotonic() + 60
    while venue.ledger_count() < made and time.monotonic() < deadline:
        time.sleep(0.2)
        made = sum(g.events_made() for g in venue.gates.values())
    for gate in venue.gates.values():
        code = gate.stop()
        if code not in (0, None, -9):
            r.notes.append(f"gate {gate.id} exited with {code} at the end; see {gate.log_path}")
    made = sum(g.events_made() for g in venue.gates.values())
    deadline = time.monotonic() + 10
    while venue.ledger_count() < made and time.monotonic() < deadline:
        time.sleep(0.2)
    left = {g.id: g.outbox_depth() for g in venue.gates.values()}
    if any(left.values()):
        r.notes.append(f"events still in the gates' outboxes after they stopped: {left}")
    if r.late_scans:
        r.notes.append(
            f"{len(r.late_scans)} scans of a ticket read after its holder had taken it away (the gate "
            f"decoded frames of it late; a real visitor behind would have seen that answer): "
            f"{', '.join(sorted(r.late_scans))}"
        )
    time.sleep(0.5)
    venue.stop_ledger()
    ledger_report, ledger_events = _read_ledger(venue)
    duplicates = venue.ledger_duplicates()
    if duplicates is None:  # the ledger did not say; count what the simulator's own subscription saw twice
        duplicates = max(0, venue.listener.deliveries - venue.listener.unique())
    arrived = venue.listener.received_at
    held_back = sum(
        1
        for a in crowd.attempts
        if a.event_id in arrived
        and a.decided_at is not None
        and arrived[a.event_id] - (r.clock.t0 + a.decided_at) > 2.0
    )
    result = report.build(
        scenario=scenario,
        attempts=crowd.attempts,
        visitors=crowd.visitors,
        events_made=made,
        expected_inside=model.expected_inside(scenario, crowd.attempts),
        ledger=ledger_report,
        ledger_events=ledger_events,
        duplicates_dropped=duplicates,
        tickets=crowd.tickets,
        faults=r.faults,
        speed=speed,
        gate_ids=scenario.gate_ids,
        notes=r.notes,
        held_back=held_back,
        arrivals={k: v - r.clock.t0 for k, v in arrived.items()},
    )
    json_path, html_path = report.write(out_dir, result, crowd.attempts, r.samples, speed)
    log(f"{result['verdict']}")
    log(f"report: {html_path} (and {json_path.name}); device keys in {out_dir / 'devices'}")
    return result


def _watch(r: Run, workers, limit: float, progress: bool) -> None:
    def finished():
        return not any(w.is_alive() for w in workers) or r.clock.now() > limit or r.stop.is_set()

    if not progress:
        while not finished():
            time.sleep(0.2)
        return
    from rich.console import Console
    from rich.live import Live

    console = Console(stderr=True)
    if not console.is_terminal:  # a log file or CI: a plain line every few seconds, not a redrawn table
        next_line = 0.0
        while not finished():
            if time.monotonic() >= next_line:
                print(r.progress_line(), file=sys.stderr, flush=True)
                next_line = time.monotonic() + PROGRESS_EVERY_S
            time.sleep(0.2)
        print(r.progress_line(), file=sys.stderr, flush=True)
        return
    with Live(r.progress_table(), console=console, refresh_per_second=4, transient=False) as live:
        while not finished():
            time.sleep(0.25)
            live.update(r.progress_table())


def _watch_all(r: Run, workers, limit: float, progress: bool) -> None:
    _watch(r, workers, limit, progress)
    if r.clock.now() > limit:
        r.notes.append(f"stopped after {limit:.0f} s of wall time with visitors still waiting")


def _read_ledger(venue: Venue) -> tuple[dict, list[dict]]:
    import json

    from gated.central.ledger import Ledger
    from gated.keys import load_keyring

    with Ledger(venue.ledger_db, keyring=load_keyring(venue.ledger_keyring), site=venue.scenario.site) as ledger:
        summary = ledger.report()
        bodies = [json.loads(row[0]) for row in ledger.query("SELECT body FROM events ORDER BY gate, seq")]
    return summary, bodies
