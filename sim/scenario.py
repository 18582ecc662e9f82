"""Scenario files (sim/scenarios/*.toml): a venue, its crowd, its cheats and its bad day.

    [scenario]  name, site, event, seed, duration_s (simulated seconds of arrivals), speed (default
                time compression; `gated sim --speed` wins)
    [gates]     count, zones (assigned round robin), board (profile in firmware_config/boards/),
                passage_timeout_s, relay_pulse_s, fps, ntp (each gate's `[clock] ntp`: "auto",
                default, or "ignore": the host's NTP is no time source, so the clock faults bite
                on any host, synchronised or not)
    [tickets]   types = {adult = 0.8, child = 0.2} (shares), entries (admissions per ticket),
                zoned (tickets name the zone of their gate), dynamic_share (GT2 tickets shown
                through a wallet; 0 unless the wallet is there), format = "gated" (GT1/GT2,
                default) or "pretix_sig1" (the codes pretix sells: rehearse with them; one entry,
                no zones, no GT2, and the screenshot/static_copy cheats do not apply)
    [arrivals]  visitors, profile = [[t_s, rate weight], ...] (piecewise linear over duration_s)
    [gates]     ... exits = ["g3"] (scan-out exit gates), free_exits = ["g4"] (free exits: people
                go out without a ticket, counted), reentry (entry gates let a ticket that left back in)
    [exits]     leave_share (honest visitors who leave before the end, at an exit gate of their
                zone), dwell_s = [min, max] (time inside before leaving), return_share (of those who
                left through a scan-out exit, the share who come back in: a re-entry)
    [capacity]  zone = people it may hold; with a capacity, a zone's movements are played one
                after the other (in planned order) so that who meets a full zone is known: they
                are denied `capacity` and try again after the next person leaves
    [behaviour] no_pass_share (green light, nobody passes: the admission times out, they retry),
                pass_time_s (how long a visitor takes to walk through)
    [fraud]     counts of visitors: forged, tampered, revoked_before, revoked_during, expired,
                wrong_event, used_twice (a copy shown again at the same gate), two_gates,
                screenshot (an old GT2 code replayed), static_copy (a GT2 ticket shown as GT1)
                (one ticket at two gates); revocations_at_s (when the "during" list goes out)
    [[faults]]  kind = "broker_down" (start_s, end_s, how = "stop": a clean stop, or "kill": SIGKILL,
                no save, like a power cut) | "ledger_resize" (at_s, partitions: the ledger then runs as
                that many `--partition` workers; [scenario] ledger_partitions, default 1, is how many
                it starts with) | "status_probe" (at_s: `gated status` against the site, as
                docs/central.md tells an operator) | "gate_kill" (gate, at_s, down_s, during =
                "idle": between two visitors, or "admission": the first green light after at_s, before
                the visitor passes; the restarted gate must roll that admission back) |
                "clock_skew" (gate, offset_s) | "camera_stall" (gate, start_s, end_s)

Times are simulated seconds from the start; the runner divides them by the speed. Loading reports
every problem at once with its key path, like the gate's own configuration.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from gated.core.errors import GatedError
from gated.tomlcheck import TableReader

TICKET_FORMATS = ("gated", "pretix_sig1")
FRAUD_KINDS = ("forged", "tampered", "revoked_before", "revoked_during", "expired", "wrong_event",
               "used_twice", "two_gates", "screenshot", "static_copy")
FAULT_KINDS = ("broker_down", "gate_kill", "clock_skew", "camera_stall", "ledger_resize", "status_probe")


class ScenarioError(GatedError, ValueError):
    def __init__(self, source: str, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(f"{source}: {p}" for p in problems))


@dataclass(frozen=True)
class Fault:
    kind: str
    start_s: float = 0.0  # broker_down, camera_stall, gate_kill (at_s), clock_skew (from the start)
    end_s: float = 0.0  # broker_down, camera_stall; gate_kill: at_s + down_s
    gate: str | None = None
    offset_s: float = 0.0  # clock_skew
    during: str = "idle"  # gate_kill: idle | admission
    how: str = "stop"  # broker_down: stop (SIGTERM, the broker saves) | kill (SIGKILL: a power cut)
    partitions: int = 1  # ledger_resize: the number of ledger workers from then on

    @property
    def window(self) -> tuple[float, float] | None:
        """The simulated time span this fault is visible, for shading plots (None: all along)."""
        return None if self.kind in ("clock_skew", "ledger_resize", "status_probe") else (self.start_s, self.end_s)


@dataclass(frozen=True)
class Scenario:
    name: str
    site: str
    event: str
    seed: int
    duration_s: float
    speed: float
    gates: int
    zones: tuple[str, ...]
    board: str
    passage_timeout_s: float
    relay_pulse_s: float
    fps: float
    ticket_types: dict
    entries: int
    zoned: bool
    dynamic_share: float
    visitors: int
    profile: tuple[tuple[float, float], ...]
    no_pass_share: float
    pass_time_s: float
    fraud: dict
    revocations_at_s: float
    faults: tuple[Fault, ...] = field(default=())
    source: str = ""
    ticket_format: str = "gated"  # or "pretix_sig1"
    ntp: str = "auto"  # the gates' [clock] ntp: "auto" or "ignore"
    exit_gates: tuple[str, ...] = ()
    free_exit_gates: tuple[str, ...] = ()
    reentry: bool = False
    leave_share: float = 0.0
    dwell_s: tuple[float, float] = (10.0, 30.0)
    return_share: float = 0.0
    capacities: dict = field(default_factory=dict)
    ledger_partitions: int = 1  # ledger workers at the start (`--partition I/N`), before any ledger_resize

    @property
    def entry_gate_ids(self) -> list[str]:
        return [g for g in self.gate_ids if g not in self.exit_gates and g not in self.free_exit_gates]

    def direction_of(self, gate_id: str) -> str:
        """entry, exit (scan-out) or free (free exit)."""
        return "exit" if gate_id in self.exit_gates else "free" if gate_id in self.free_exit_gates else "entry"

    @property
    def gate_ids(self) -> list[str]:
        return [f"g{i + 1}" for i in range(self.gates)]

    def zone_of(self, gate_id: str) -> str | None:
        if not self.zones:
            return None
        return self.zones[(int(gate_id[1:]) - 1) % len(self.zones)]

    def faults_of(self, kind: str) -> list[Fault]:
        return [f for f in self.faults if f.kind == kind]


class _Reader(TableReader):
    """The shared reader (gated/tomlcheck.py); a scenario's sections read as {} when absent."""

    def table(self, raw: dict, name: str, known: tuple[str, ...], required: bool = True) -> dict:
        return super().table(raw, name, required=required, known=known) or {}


def load(path: str | Path) -> Scenario:
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ScenarioError(str(path), [f"cannot read ({exc.strerror})"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(str(path), [f"not valid TOML: {exc}"]) from None
    return from_dict(raw, source=str(path))


def from_dict(raw: dict, source: str = "<scenario>") -> Scenario:
    problems: list[str] = []
    r = _Reader(problems)
    for key in raw:
        if key not in ("scenario", "gates", "tickets", "arrivals", "behaviour", "fraud", "faults", "exits", "capacity"):
            problems.append(f"{key}: unknown section")
    sc = r.table(raw, "scenario", ("name", "site", "event", "seed", "duration_s", "speed", "ledger_partitions"))
    ga = r.table(raw, "gates", ("count", "zones", "board", "passage_timeout_s", "relay_pulse_s", "fps", "exits",
                                "free_exits", "reentry", "ntp"))
    ex = r.table(raw, "exits", ("leave_share", "dwell_s", "return_share"), required=False)
    capacity = raw.get("capacity", {})
    ti = r.table(raw, "tickets", ("types", "entries", "zoned", "dynamic_share", "format"), required=False)
    ar = r.table(raw, "arrivals", ("visitors", "profile"))
    be = r.table(raw, "behaviour", ("no_pass_share", "pass_time_s"), required=False)
    fr = r.table(raw, "fraud", FRAUD_KINDS + ("revocations_at_s",), required=False)

    duration = r.get(sc, "scenario.duration_s", float, above=0) or 60.0
    gates = r.get(ga, "gates.count", int, minimum=1, maximum=200) or 1
    zones = ga.get("zones", [])
    if not (isinstance(zones, list) and all(isinstance(z, str) and z for z in zones)):
        problems.append(f"gates.zones: expected a list of zone names, got {zones!r}")
        zones = []
    types = ti.get("types", {"general": 1.0})
    if not (isinstance(types, dict) and types and all(isinstance(v, (int, float)) and v > 0 for v in types.values())):
        problems.append(f"tickets.types: expected a table of type = share (> 0), got {types!r}")
        types = {"general": 1.0}
    profile = ar.get("profile", [[0, 1], [duration, 1]])
    if not (isinstance(profile, list) and len(profile) >= 2
            and all(isinstance(p, list) and len(p) == 2 and all(isinstance(x, (int, float)) and x >= 0 for x in p)
                    for p in profile)
            and all(a[0] < b[0] for a, b in zip(profile, profile[1:]))
            and any(p[1] > 0 for p in profile)):
        problems.append("arrivals.profile: expected at least two [t_s, weight] pairs, times increasing, weights >= 0")
        profile = [[0, 1], [duration, 1]]
    visitors = r.get(ar, "arrivals.visitors", int, minimum=1) or 1
    fraud = {kind: r.get(fr, f"fraud.{kind}", int, 0, minimum=0) for kind in FRAUD_KINDS}
    if sum(fraud.values()) > visitors // 2:
        problems.append(f"fraud: {sum(fraud.values())} cheats among {visitors} visitors; at most half may cheat")
    if fraud["two_gates"] and gates < 2:
        problems.append("fraud.two_gates: needs at least two gates")
    revocations_at = r.get(fr, "fraud.revocations_at_s", float, duration / 3, minimum=0)
    faults = _faults(raw.get("faults", []), duration, gates, problems)
    if fraud["revoked_during"] and any(f.start_s <= revocations_at <= f.end_s for f in faults if f.kind == "broker_down"):
        problems.append("fraud.revocations_at_s: falls inside a broker outage; the revocation could not go out")

    gate_ids = {f"g{i + 1}" for i in range(gates)}
    exit_lists = {}
    for key in ("exits", "free_exits"):
        value = ga.get(key, [])
        if not (isinstance(value, list) and all(g in gate_ids for g in value)):
            problems.append(f"gates.{key}: expected a list of gate ids g1..g{gates}, got {value!r}")
            value = []
        exit_lists[key] = tuple(value)
    if set(exit_lists["exits"]) & set(exit_lists["free_exits"]):
        problems.append("gates.free_exits: a gate is either a scan-out exit or a free exit")
    if len(set(exit_lists["exits"]) | set(exit_lists["free_exits"])) >= gates:
        problems.append("gates.exits: at least one gate must be an entry")
    dwell = ex.get("dwell_s", [10, 30])
    if not (isinstance(dwell, list) and len(dwell) == 2 and all(isinstance(x, (int, float)) and x >= 0 for x in dwell)
            and dwell[0] <= dwell[1]):
        problems.append(f"exits.dwell_s: expected [min, max] seconds, got {dwell!r}")
        dwell = [10, 30]
    if not (isinstance(capacity, dict) and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1
                                               for v in capacity.values())):
        problems.append(f"capacity: expected zone = people (integers >= 1), got {capacity!r}")
        capacity = {}
    for zone in capacity:
        if zone not in zones:
            problems.append(f"capacity.{zone}: not one of gates.zones")
    leave_share = r.get(ex, "exits.leave_share", float, 0.0, minimum=0, maximum=1)
    if (leave_share or capacity) and not exit_lists["exits"] and not exit_lists["free_exits"]:
        problems.append("exits: visitors who leave, and a capacity, need exit gates (gates.exits or gates.free_exits)")
    if capacity and (fraud["used_twice"] or fraud["two_gates"]):
        problems.append("capacity: copied tickets (fraud.used_twice, two_gates) are not planned with a capacity")

    scenario = Scenario(
        name=r.get(sc, "scenario.name", str) or "?", site=r.get(sc, "scenario.site", str) or "site",
        event=r.get(sc, "scenario.event", str) or "EVENT", seed=r.get(sc, "scenario.seed", int, 1),
        duration_s=duration, speed=r.get(sc, "scenario.speed", float, 1.0, above=0),
        gates=gates, zones=tuple(zones), board=r.get(ga, "gates.board", str, "generic-relay"),
        passage_timeout_s=r.get(ga, "gates.passage_timeout_s", float, 2.0, above=0),
        relay_pulse_s=r.get(ga, "gates.relay_pulse_s", float, 0.5, above=0),
        fps=r.get(ga, "gates.fps", float, 10.0, above=0),
        ticket_types={str(k): float(v) for k, v in types.items()},
        entries=r.get(ti, "tickets.entries", int, 1, minimum=1), zoned=r.get(ti, "tickets.zoned", bool, False),
        dynamic_share=r.get(ti, "tickets.dynamic_share", float, 0.0, minimum=0, maximum=1),
        visitors=visitors, profile=tuple((float(a), float(b)) for a, b in profile),
        no_pass_share=r.get(be, "behaviour.no_pass_share", float, 0.0, minimum=0, maximum=0.5),
        pass_time_s=r.get(be, "behaviour.pass_time_s", float, 0.3, minimum=0),
        fraud=fraud, revocations_at_s=revocations_at, faults=tuple(faults), source=source,
        ticket_format=r.get(ti, "tickets.format", str, "gated"),
        exit_gates=exit_lists["exits"], free_exit_gates=exit_lists["free_exits"],
        reentry=r.get(ga, "gates.reentry", bool, False), leave_share=leave_share or 0.0,
        dwell_s=(float(dwell[0]), float(dwell[1])),
        return_share=r.get(ex, "exits.return_share", float, 0.0, minimum=0, maximum=1),
        capacities={str(k): int(v) for k, v in capacity.items()}, ntp=r.get(ga, "gates.ntp", str, "auto"),
        ledger_partitions=r.get(sc, "scenario.ledger_partitions", int, 1, minimum=1, maximum=16) or 1)
    if scenario.ntp not in ("auto", "ignore"):
        problems.append(f"gates.ntp: expected auto or ignore, got {scenario.ntp!r}")
    if scenario.zoned and not scenario.zones:
        problems.append("tickets.zoned: needs gates.zones")
    if scenario.ticket_format not in TICKET_FORMATS:
        problems.append(f"tickets.format: expected one of {', '.join(TICKET_FORMATS)}, got {scenario.ticket_format!r}")
    elif scenario.ticket_format == "pretix_sig1":
        for wrong, what in ((scenario.entries != 1, "tickets.entries: pretix_sig1 tickets allow one entry"),
                            (scenario.zoned, "tickets.zoned: pretix_sig1 tickets name no zones"),
                            (scenario.dynamic_share > 0, "tickets.dynamic_share: pretix_sig1 tickets are static"),
                            (fraud["screenshot"] or fraud["static_copy"],
                             "fraud.screenshot/static_copy: need GT2 tickets, not pretix_sig1")):
            if wrong:
                problems.append(what)
    if problems:
        raise ScenarioError(source, problems)
    return scenario


def _faults(raw, duration: float, gates: int, problems: list[str]) -> list[Fault]:
    if not isinstance(raw, list):
        problems.append("faults: expected [[faults]] tables")
        return []
    out = []
    r = _Reader(problems)
    gate_ids = {f"g{i + 1}" for i in range(gates)}
    for i, f in enumerate(raw):
        where = f"faults[{i}]"
        if not isinstance(f, dict):
            problems.append(f"{where}: expected a table")
            continue
        kind = f.get("kind")
        if kind not in FAULT_KINDS:
            problems.append(f"{where}.kind: expected one of {', '.join(FAULT_KINDS)}, got {kind!r}")
            continue
        known = {"broker_down": ("kind", "start_s", "end_s", "how"),
                 "gate_kill": ("kind", "gate", "at_s", "down_s", "during"),
                 "clock_skew": ("kind", "gate", "offset_s"), "camera_stall": ("kind", "gate", "start_s", "end_s"),
                 "ledger_resize": ("kind", "at_s", "partitions"), "status_probe": ("kind", "at_s")}[kind]
        for key in f:
            if key not in known:
                problems.append(f"{where}.{key}: unknown key for {kind} (known: {', '.join(known)})")
        gate = None
        if "gate" in known:
            gate = f.get("gate")
            if gate not in gate_ids:
                problems.append(f"{where}.gate: expected one of g1..g{gates}, got {gate!r}")
        if kind in ("broker_down", "camera_stall"):
            start = r.get(f, f"{where}.start_s", float, minimum=0)
            end = r.get(f, f"{where}.end_s", float, minimum=0)
            if start is not None and end is not None and not start < end <= duration:
                problems.append(f"{where}: expected start_s < end_s <= scenario.duration_s ({duration})")
            how = f.get("how", "stop") if kind == "broker_down" else "stop"
            if how not in ("stop", "kill"):
                problems.append(f"{where}.how: expected 'stop' or 'kill', got {how!r}")
            out.append(Fault(kind, start or 0.0, end or 0.0, gate, how=how))
        elif kind in ("ledger_resize", "status_probe"):
            at = r.get(f, f"{where}.at_s", float, minimum=0)
            if at is not None and at >= duration:
                problems.append(f"{where}.at_s: expected below scenario.duration_s ({duration})")
            parts = r.get(f, f"{where}.partitions", int, minimum=1, maximum=16) if kind == "ledger_resize" else 1
            out.append(Fault(kind, at or 0.0, at or 0.0, None, partitions=parts or 1))
        elif kind == "gate_kill":
            at = r.get(f, f"{where}.at_s", float, minimum=0)
            down = r.get(f, f"{where}.down_s", float, 2.0, minimum=0)
            if at is not None and at >= duration:
                problems.append(f"{where}.at_s: expected below scenario.duration_s ({duration})")
            during = f.get("during", "idle")
            if during not in ("idle", "admission"):
                problems.append(f"{where}.during: expected 'idle' or 'admission', got {during!r}")
            out.append(Fault(kind, at or 0.0, (at or 0.0) + (down or 0.0), gate, during=during))
        else:
            offset = r.get(f, f"{where}.offset_s", float)
            out.append(Fault(kind, 0.0, duration, gate, offset or 0.0))
    return out
