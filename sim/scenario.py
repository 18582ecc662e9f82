"""Scenario files (sim/scenarios/*.toml): a venue, its crowd, its cheats and its bad day.

    [scenario]  name, site, event, seed, duration_s (simulated seconds of arrivals, up to a week),
                speed (default time compression, 0.01 to 1000; `gated sim --speed` wins)
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
                (one ticket at two gates); unpaid (pretix_sig1 with a [checkin_list]: a ticket of an
                unpaid order, `unpaid`); revocations_at_s (when the "during" list goes out)
    [checkin_list] pretix_sig1 only: the gates hold a signed pretix check-in list whose custom rule
                admits only the ticket types in admit_types (pretix's product rule); the others
                are denied `rules`
    [[faults]]  kind = "broker_down" (start_s, end_s, how = "stop": a clean stop, or "kill": SIGKILL,
                no save, like a power cut) | "ledger_resize" (at_s, partitions: the ledger then runs as
                that many `--partition` workers; [scenario] ledger_partitions, default 1, is how many
                it starts with) | "status_probe" (at_s: `gated status` against the site, as
                docs/central.md tells an operator) | "gate_kill" (gate, at_s, down_s, during =
                "idle": between two visitors, or "admission": the first green light after at_s, before
                the visitor passes; the restarted gate must roll that admission back) |
                "clock_skew" (gate, offset_s) | "camera_stall" (gate, start_s, end_s) |
                "gate_replace" (gate, at_s, down_s, sync_after_s): the gate's card dies between two
                visitors (once its outbox has drained): killed, its state wiped, a new state made with
                `gated replace` (a new chain, a new device key), started again, its key approved with
                `gated keys enrol --replace` as docs/install-pi.md says; it serves visitors for
                sync_after_s (default 5) under `[gates] until_synced` before the admissions snapshot
                is published (`gated admissions publish`)
    [gates]     ... until_synced = "deny_used_check" (default) | "admit": the replaced gates' policy

Times are simulated seconds from the start; the runner divides them by the speed. The tables are
declared below as frozen dataclasses and read by gated/tomlcheck.py, like the gate's own
configuration: loading reports every problem at once with its key path.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, make_dataclass
from pathlib import Path

from gated.core.errors import GatedError, undecodable
from gated.tomlcheck import BAD, Reader, keys_of, option

TICKET_FORMATS = ("gated", "pretix_sig1")
FRAUD_KINDS = (
    "forged",
    "tampered",
    "revoked_before",
    "revoked_during",
    "expired",
    "wrong_event",
    "used_twice",
    "two_gates",
    "screenshot",
    "static_copy",
    "unpaid",
)
FAULT_KINDS = (
    "broker_down",
    "gate_kill",
    "clock_skew",
    "camera_stall",
    "ledger_resize",
    "status_probe",
    "gate_replace",
)


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
    sync_after_s: float = 5.0  # gate_replace: serving unsynced this long before the admissions snapshot
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
    until_synced: str = (
        "deny_used_check"  # the gates' [gate] until_synced (what a replaced gate does before its snapshot)
    )
    ledger_partitions: int = 1  # ledger workers at the start (`--partition I/N`), before any ledger_resize
    checkin_admit_types: tuple[str, ...] | None = None  # a pretix check-in list admitting only these types

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


# --- the file's tables, declared as the gate's config is (gated/tomlcheck.py) -------------------
# (schemas only, never made: keyword-only, so a required key may follow one with a default)


def _names(raw, reader: Reader, path: str, table: dict):
    if not (isinstance(raw, list) and all(isinstance(z, str) and z for z in raw)):
        reader.problem(path, f"expected a list of zone names, got {raw!r}")
        return BAD
    return tuple(raw)


def _gate_count(table: dict) -> int:
    count = table.get("count")
    return count if type(count) is int and 1 <= count <= MAX_GATES else 1


def _gate_ids(raw, reader: Reader, path: str, table: dict):
    gates = _gate_count(table)
    if not (isinstance(raw, list) and all(g in {f"g{i + 1}" for i in range(gates)} for g in raw)):
        reader.problem(path, f"expected a list of gate ids g1..g{gates}, got {raw!r}")
        return BAD
    return tuple(raw)


def _shares(raw, reader: Reader, path: str, table: dict):
    if not (isinstance(raw, dict) and raw and all(isinstance(v, (int, float)) and v > 0 for v in raw.values())):
        reader.problem(path, f"expected a table of type = share (> 0), got {raw!r}")
        return BAD
    return {str(k): float(v) for k, v in raw.items()}


def _profile(raw, reader: Reader, path: str, table: dict):
    if not (
        isinstance(raw, list)
        and len(raw) >= 2
        and all(
            isinstance(p, list) and len(p) == 2 and all(isinstance(x, (int, float)) and x >= 0 for x in p) for p in raw
        )
        and all(a[0] < b[0] for a, b in zip(raw, raw[1:]))
        and any(p[1] > 0 for p in raw)
    ):
        reader.problem(path, "expected at least two [t_s, weight] pairs, times increasing, weights >= 0")
        return BAD
    return tuple((float(a), float(b)) for a, b in raw)


def _dwell(raw, reader: Reader, path: str, table: dict):
    if not (
        isinstance(raw, list)
        and len(raw) == 2
        and all(isinstance(x, (int, float)) and x >= 0 for x in raw)
        and raw[0] <= raw[1]
    ):
        reader.problem(path, f"expected [min, max] seconds, got {raw!r}")
        return BAD
    return (float(raw[0]), float(raw[1]))


def _capacities(raw, reader: Reader, path: str, table: dict):
    if not (
        isinstance(raw, dict) and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in raw.values())
    ):
        reader.problem(path, f"expected zone = people (integers >= 1), got {raw!r}")
        return BAD
    return {str(k): int(v) for k, v in raw.items()}


def _fault_list(raw, reader: Reader, path: str, table: dict):
    """[[faults]]: each table read by its kind's schema (FAULT_TABLES); the values that parsed, by index."""
    if not isinstance(raw, list):
        reader.problem(path, "expected [[faults]] tables")
        return BAD
    out = []
    for i, f in enumerate(raw):
        where = f"faults[{i}]"
        if not isinstance(f, dict):
            reader.problem(where, "expected a table")
            continue
        kind = f.get("kind")
        if kind not in FAULT_KINDS:
            reader.problem(f"{where}.kind", f"expected one of {', '.join(FAULT_KINDS)}, got {kind!r}")
            continue
        out.append((where, kind, reader.section(FAULT_TABLES[kind], f, where + ".")))
    return out


MAX_GATES = 200
# a rehearsal past these would not end in a working day, or not fit a laptop's memory: a scenario
# asking for them is a typing mistake (1e300 seconds, 10^20 visitors), refused before anything starts
MAX_VISITORS = 1_000_000
MAX_DURATION_S = 7 * 86400.0
MIN_SPEED, MAX_SPEED = 0.01, 1000.0


@dataclass(frozen=True, kw_only=True)
class _ScenarioTable:
    name: str = option(doc="the scenario's name")
    site: str = option(doc="the site's name")
    event: str = option(doc="the event id its tickets are for")
    seed: int = option(1, doc="seed of the crowd's random numbers")
    duration_s: float = option(doc="simulated seconds of arrivals", above=0, maximum=MAX_DURATION_S)
    speed: float = option(
        1.0, doc="default time compression (gated sim --speed wins)", minimum=MIN_SPEED, maximum=MAX_SPEED
    )
    ledger_partitions: int = option(1, doc="ledger workers (`--partition I/N`) at the start", minimum=1, maximum=16)


@dataclass(frozen=True, kw_only=True)
class _GatesTable:
    count: int = option(doc="how many gates", minimum=1, maximum=MAX_GATES)
    zones: tuple[str, ...] = option((), doc="zones, assigned to the gates round robin", parse=_names)
    board: str = option("generic-relay", doc="board profile in firmware_config/boards/")
    passage_timeout_s: float = option(2.0, doc="each gate's [timings] passage_timeout_s", above=0)
    relay_pulse_s: float = option(0.5, doc="each gate's [timings] relay_pulse_s", above=0)
    fps: float = option(10.0, doc="each gate's camera frames per second", above=0)
    exits: tuple[str, ...] = option((), doc="scan-out exit gates", parse=_gate_ids)
    free_exits: tuple[str, ...] = option((), doc="free exits: people go out without a ticket, counted", parse=_gate_ids)
    reentry: bool = option(False, doc="entry gates let a ticket that left back in")
    ntp: str = option("auto", doc="each gate's [clock] ntp", choices=("auto", "ignore"))
    until_synced: str = option(
        "deny_used_check",
        doc="each gate's [gate] until_synced (a replaced gate before its admissions snapshot)",
        choices=("deny_used_check", "admit"),
    )


@dataclass(frozen=True, kw_only=True)
class _TicketsTable:
    types: dict = option(None, doc="ticket types and their shares, {adult = 0.8, child = 0.2}", parse=_shares)
    entries: int = option(1, doc="admissions per ticket", minimum=1)
    zoned: bool = option(False, doc="tickets name the zone of their gate")
    dynamic_share: float = option(0.0, doc="share of GT2 tickets shown through a wallet", minimum=0, maximum=1)
    format: str = option("gated", doc="gated (GT1/GT2) or pretix_sig1", choices=TICKET_FORMATS)


@dataclass(frozen=True, kw_only=True)
class _ArrivalsTable:
    visitors: int = option(doc="how many visitors come", minimum=1, maximum=MAX_VISITORS)
    profile: tuple = option(
        None, doc="[[t_s, rate weight], ...], piecewise linear over duration_s (default: even)", parse=_profile
    )


@dataclass(frozen=True, kw_only=True)
class _BehaviourTable:
    no_pass_share: float = option(
        0.0, doc="green light, nobody passes: the admission times out", minimum=0, maximum=0.5
    )
    pass_time_s: float = option(0.3, doc="how long a visitor takes to walk through", minimum=0)


_FraudTable = make_dataclass(
    "_FraudTable",
    [(kind, int, option(0, doc=f"visitors who cheat: {kind}", minimum=0)) for kind in FRAUD_KINDS]
    + [
        (
            "revocations_at_s",
            float,
            option(None, doc="when the 'during' list goes out (default: a third in)", minimum=0),
        )
    ],
    frozen=True,
    kw_only=True,
)


@dataclass(frozen=True, kw_only=True)
class _ExitsTable:
    leave_share: float = option(0.0, doc="honest visitors who leave before the end", minimum=0, maximum=1)
    dwell_s: tuple = option((10.0, 30.0), doc="[min, max] time inside before leaving", parse=_dwell)
    return_share: float = option(
        0.0, doc="of those who left through a scan-out exit, the share who come back", minimum=0, maximum=1
    )


@dataclass(frozen=True, kw_only=True)
class _CheckinListTable:
    admit_types: tuple[str, ...] = option((), doc="the ticket types the list's product rule admits", parse=_names)


@dataclass(frozen=True, kw_only=True)
class _BrokerDown:
    kind: str = option(doc="broker_down")
    start_s: float = option(doc="when the broker stops", minimum=0)
    end_s: float = option(doc="when it is back", minimum=0)
    how: str = option(
        "stop", doc="stop: a clean stop (it saves); kill: SIGKILL, no save, like a power cut", choices=("stop", "kill")
    )


@dataclass(frozen=True, kw_only=True)
class _LedgerResize:
    kind: str = option(doc="ledger_resize")
    at_s: float = option(doc="when the ledger workers are stopped and the new number started", minimum=0)
    partitions: int = option(doc="how many `--partition` workers from then on", minimum=1, maximum=16)


@dataclass(frozen=True, kw_only=True)
class _StatusProbe:
    kind: str = option(doc="status_probe")
    at_s: float = option(doc="when `gated status` runs against the site", minimum=0)


@dataclass(frozen=True, kw_only=True)
class _GateKill:
    kind: str = option(doc="gate_kill")
    gate: str = option(doc="which gate")
    at_s: float = option(doc="when it is killed", minimum=0)
    down_s: float = option(2.0, doc="how long it stays down", minimum=0)
    during: str = option(
        "idle",
        doc="idle: between two visitors; admission: the first green light after at_s",
        choices=("idle", "admission"),
    )


@dataclass(frozen=True, kw_only=True)
class _ClockSkew:
    kind: str = option(doc="clock_skew")
    gate: str = option(doc="which gate")
    offset_s: float = option(doc="how far its clock is off")


@dataclass(frozen=True, kw_only=True)
class _CameraStall:
    kind: str = option(doc="camera_stall")
    gate: str = option(doc="which gate")
    start_s: float = option(doc="when its camera stops delivering", minimum=0)
    end_s: float = option(doc="when it is back", minimum=0)


@dataclass(frozen=True, kw_only=True)
class _GateReplace:
    kind: str = option(doc="gate_replace")
    gate: str = option(doc="which gate")
    at_s: float = option(doc="when its card dies", minimum=0)
    down_s: float = option(2.0, doc="how long until the new card starts", minimum=0)
    sync_after_s: float = option(5.0, doc="how long it serves before the admissions snapshot goes out", minimum=0)


FAULT_TABLES = {
    "broker_down": _BrokerDown,
    "gate_kill": _GateKill,
    "clock_skew": _ClockSkew,
    "camera_stall": _CameraStall,
    "ledger_resize": _LedgerResize,
    "status_probe": _StatusProbe,
    "gate_replace": _GateReplace,
}


@dataclass(frozen=True, kw_only=True)
class _ScenarioFile:
    scenario: _ScenarioTable = option(doc="the venue and the run")
    gates: _GatesTable = option(doc="the gates")
    tickets: _TicketsTable = option(_TicketsTable(), doc="the tickets sold")
    arrivals: _ArrivalsTable = option(doc="the crowd")
    behaviour: _BehaviourTable = option(_BehaviourTable(), doc="how visitors behave")
    fraud: _FraudTable = option(_FraudTable(), doc="the cheats")
    exits: _ExitsTable = option(_ExitsTable(), doc="visitors who leave")
    capacity: dict = option(None, doc="zone = people it may hold", parse=_capacities)
    checkin_list: _CheckinListTable = option(None, doc="pretix_sig1: the pretix check-in list the gates hold")
    faults: list = option(None, doc="[[faults]]: the bad day", parse=_fault_list)


def load(path: str | Path) -> Scenario:
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ScenarioError(str(path), [f"cannot read ({exc.strerror})"]) from None
    except UnicodeDecodeError as exc:
        raise ScenarioError(str(path), [undecodable(exc)]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(str(path), [f"not valid TOML: {exc}"]) from None
    return from_dict(raw, source=str(path))


def from_dict(raw: dict, source: str = "<scenario>") -> Scenario:
    reader = Reader()
    t = reader.sections(_ScenarioFile, raw)
    sc, ga, ti, ar, be, fr, ex = (
        t[k] for k in ("scenario", "gates", "tickets", "arrivals", "behaviour", "fraud", "exits")
    )

    def problem(text: str) -> None:  # a check across keys: "<key path>: <what is wrong>"
        path, _, what = text.partition(": ")
        reader.problem(path, what)

    duration = sc.get("duration_s", 60.0)
    gates = ga.get("count", 1)
    zones = ga.get("zones", ())
    visitors = ar.get("visitors", 1)
    fraud = {kind: fr.get(kind, 0) for kind in FRAUD_KINDS}
    if sum(fraud.values()) > visitors // 2:
        problem(f"fraud: {sum(fraud.values())} cheats among {visitors} visitors; at most half may cheat")
    if fraud["two_gates"] and gates < 2:
        problem("fraud.two_gates: needs at least two gates")
    revocations_at = fr.get("revocations_at_s")
    revocations_at = duration / 3 if revocations_at is None else revocations_at
    faults = _faults(t.get("faults", []), duration, gates, problem)
    if fraud["revoked_during"] and any(
        f.start_s <= revocations_at <= f.end_s for f in faults if f.kind == "broker_down"
    ):
        problem("fraud.revocations_at_s: falls inside a broker outage; the revocation could not go out")

    exit_lists = {key: ga.get(key, ()) for key in ("exits", "free_exits")}
    if set(exit_lists["exits"]) & set(exit_lists["free_exits"]):
        problem("gates.free_exits: a gate is either a scan-out exit or a free exit")
    if len(set(exit_lists["exits"]) | set(exit_lists["free_exits"])) >= gates:
        problem("gates.exits: at least one gate must be an entry")
    capacity = t.get("capacity", {})
    for zone in capacity:
        if zone not in zones:
            problem(f"capacity.{zone}: not one of gates.zones")
    leave_share = ex.get("leave_share", 0.0)
    if (leave_share or capacity) and not exit_lists["exits"] and not exit_lists["free_exits"]:
        problem("exits: visitors who leave, and a capacity, need exit gates (gates.exits or gates.free_exits)")
    if capacity and (fraud["used_twice"] or fraud["two_gates"]):
        problem("capacity: copied tickets (fraud.used_twice, two_gates) are not planned with a capacity")

    scenario = Scenario(
        name=sc.get("name", "?"),
        site=sc.get("site", "site"),
        event=sc.get("event", "EVENT"),
        seed=sc.get("seed", 1),
        duration_s=duration,
        speed=sc.get("speed", 1.0),
        gates=gates,
        zones=zones,
        board=ga.get("board", "generic-relay"),
        passage_timeout_s=ga.get("passage_timeout_s", 2.0),
        relay_pulse_s=ga.get("relay_pulse_s", 0.5),
        fps=ga.get("fps", 10.0),
        ticket_types=ti.get("types") or {"general": 1.0},
        entries=ti.get("entries", 1),
        zoned=ti.get("zoned", False),
        dynamic_share=ti.get("dynamic_share", 0.0),
        visitors=visitors,
        profile=ar.get("profile") or ((0.0, 1.0), (float(duration), 1.0)),
        no_pass_share=be.get("no_pass_share", 0.0),
        pass_time_s=be.get("pass_time_s", 0.3),
        fraud=fraud,
        revocations_at_s=revocations_at,
        faults=tuple(faults),
        source=source,
        ticket_format=ti.get("format", "gated"),
        exit_gates=exit_lists["exits"],
        free_exit_gates=exit_lists["free_exits"],
        reentry=ga.get("reentry", False),
        leave_share=leave_share,
        dwell_s=ex.get("dwell_s", (10.0, 30.0)),
        return_share=ex.get("return_share", 0.0),
        capacities=capacity,
        ntp=ga.get("ntp", "auto"),
        ledger_partitions=sc.get("ledger_partitions", 1),
        until_synced=ga.get("until_synced", "deny_used_check"),
        checkin_admit_types=tuple((t.get("checkin_list") or {}).get("admit_types", ()))
        if "checkin_list" in raw
        else None,
    )
    if scenario.checkin_admit_types is not None:
        if scenario.ticket_format != "pretix_sig1":
            problem('checkin_list: a pretix check-in list needs tickets.format = "pretix_sig1"')
        if not scenario.checkin_admit_types or set(scenario.checkin_admit_types) - set(scenario.ticket_types):
            problem("checkin_list.admit_types: some of the ticket types (tickets.types)")
        if scenario.capacities:
            problem("checkin_list: not planned with a capacity")
    if fraud["unpaid"] and scenario.checkin_admit_types is None:
        problem("fraud.unpaid: needs a [checkin_list] (the gates learn unpaid orders from it)")
    if scenario.zoned and not scenario.zones:
        problem("tickets.zoned: needs gates.zones")
    if scenario.ticket_format == "pretix_sig1":
        for wrong, what in (
            (scenario.entries != 1, "tickets.entries: pretix_sig1 tickets allow one entry"),
            (scenario.zoned, "tickets.zoned: pretix_sig1 tickets name no zones"),
            (scenario.dynamic_share > 0, "tickets.dynamic_share: pretix_sig1 tickets are static"),
            (
                fraud["screenshot"] or fraud["static_copy"],
                "fraud.screenshot/static_copy: need GT2 tickets, not pretix_sig1",
            ),
        ):
            if wrong:
                problem(what)
    if reader.problems:
        raise ScenarioError(source, [f"{path}: {what}" if what else path for path, what in reader.problems])
    return scenario


def _faults(read: list, duration: float, gates: int, problem) -> list[Fault]:
    """The faults as values, with the checks against the scenario's duration and gates."""
    out = []
    gate_ids = {f"g{i + 1}" for i in range(gates)}
    for where, kind, f in read:
        gate = f.get("gate")
        if (
            "gate" in {field.name for field in keys_of(FAULT_TABLES[kind])}
            and gate is not None
            and gate not in gate_ids
        ):
            problem(f"{where}.gate: expected one of g1..g{gates}, got {gate!r}")
        if kind in ("broker_down", "camera_stall"):
            start, end = f.get("start_s"), f.get("end_s")
            if start is not None and end is not None and not start < end <= duration:
                problem(f"{where}: expected start_s < end_s <= scenario.duration_s ({duration})")
            out.append(Fault(kind, start or 0.0, end or 0.0, gate, how=f.get("how", "stop")))
        elif kind in ("ledger_resize", "status_probe"):
            at = f.get("at_s")
            if at is not None and at >= duration:
                problem(f"{where}.at_s: expected below scenario.duration_s ({duration})")
            out.append(Fault(kind, at or 0.0, at or 0.0, None, partitions=f.get("partitions") or 1))
        elif kind == "gate_kill":
            at, down = f.get("at_s"), f.get("down_s", 2.0)
            if at is not None and at >= duration:
                problem(f"{where}.at_s: expected below scenario.duration_s ({duration})")
            out.append(Fault(kind, at or 0.0, (at or 0.0) + down, gate, during=f.get("during", "idle")))
        elif kind == "gate_replace":
            at, down = f.get("at_s"), f.get("down_s", 2.0)
            if at is not None and at >= duration:
                problem(f"{where}.at_s: expected below scenario.duration_s ({duration})")
            out.append(Fault(kind, at or 0.0, (at or 0.0) + down, gate, sync_after_s=f.get("sync_after_s", 5.0)))
        else:
            out.append(Fault(kind, 0.0, duration, gate, f.get("offset_s") or 0.0))
    return out
