"""Exits, re-entry and occupancy at the gate (docs/protocol.md part 2, "Exits, re-entry and
occupancy"): real tickets, real SQLite stores, gpiozero mock pins; two gates that learn each
other's events the way the uplink hands them over (events.read_event, check_seal, record_peer_event)."""

from __future__ import annotations

import json
import os
import time
from dataclasses import replace
from datetime import datetime, timezone

import pytest
from gpiozero.pins.mock import MockFactory

from gated.core import events
from gated.core.decide import GateContext
from gated.core.reasons import Reason
from gated.gate.gate import Gate
from gated.gate.store import GateStore
from gated.gate.turnstile import Turnstile
from tests.conftest import EVENT, SITE
from tests.support.pins import FakeClock, drive, profile

TIMEOUT_S, HELD_S = 5.0, 20.0


class Lane:
    """One gate: its store, turnstile, mock pins; events handed to peers as the uplink would."""

    def __init__(self, tmp_path, name: str, authority, clock, board=None, free_exit=False, **context):
        self.name, self.clock, self.board = name, clock, board or profile()
        self.pins = MockFactory()
        self.store = GateStore(tmp_path / f"{name}.db", site=SITE, gate=name)
        self.turnstile = Turnstile(self.board, pin_factory=self.pins)
        self.context = GateContext(site=SITE, events=frozenset({EVENT}), zone="north", **context)
        self.gate = Gate(
            store=self.store,
            keyring=authority.keyring,
            context=self.context,
            turnstile=self.turnstile,
            clock=clock,
            passage_timeout_s=TIMEOUT_S,
            held_open_s=HELD_S,
            free_exit=free_exit,
        )

    def scan(self, text: str, walk: bool = True):
        decision = self.gate.on_code(text)
        if decision.admit and walk:
            self.walk("passage")
        return decision

    def walk(self, kind: str = "passage") -> None:
        drive(self.pins, getattr(self.board, kind), True)
        drive(self.pins, getattr(self.board, kind), False)
        self.gate.poll()

    def events(self, kind: str | None = None) -> list[dict]:
        found = [json.loads(e) for _, e in self.store.outbox(0, 10_000)]
        return [e for e in found if kind is None or e["kind"] == kind]

    def tell(self, *others: "Lane") -> None:
        """Hand this gate's events to the others, through the strict reader as the uplink does."""
        for _, text in self.store.outbox(0, 10_000):
            event = events.read_event(text.encode(), site=SITE, gate=self.name)
            assert events.check_seal(event, self.store.device_public_key) == []
            for other in others:
                other.store.record_peer_event(event)

    def close(self) -> None:
        self.gate.close()
        self.store.close()
        self.pins.reset()


@pytest.fixture
def lanes(tmp_path, authority):
    clock = FakeClock(time.time())
    made = []

    def make(name, **kw):
        lane = Lane(tmp_path, name, authority, clock, **kw)
        made.append(lane)
        return lane

    make.clock = clock
    yield make
    for lane in made:
        lane.close()


def test_an_exit_scan_enables_a_reentry_at_another_gate(lanes, authority):
    entry = lanes("g1", reentry=True)
    out = lanes("g9", direction="out")
    text = authority.ticket()
    assert entry.scan(text).admit
    assert entry.scan(text).reason is Reason.ALREADY_USED  # never left: still already_used

    left = out.scan(text)
    assert left.admit and left.direction == "out"
    exit_scan = out.events("scan")[-1]
    assert exit_scan["dir"] == "out" and exit_scan["decision"] == "admit" and "reentry" not in exit_scan
    assert out.events("passage")[-1] == {
        **out.events("passage")[-1],
        "dir": "out",
        "result": "passed",
        "ref": exit_scan["id"],
    }
    out.tell(entry)

    back = entry.scan(text)
    assert back.admit and back.reentry, back.detail
    assert entry.events("scan")[-1]["reentry"] is True
    again = entry.scan(text)
    assert again.reason is Reason.ALREADY_USED  # back inside: one more re-entry needs one more exit
    # the entry gate's own events stay as part 1 has them: no dir on entries
    first = entry.events("scan")[0]
    assert "dir" not in first and "reentry" not in first and "inside" not in first


def test_an_exit_nobody_walked_through_is_rolled_back_and_allows_nothing(lanes, authority):
    entry = lanes("g1", reentry=True)
    out = lanes("g9", direction="out")
    text = authority.ticket()
    assert entry.scan(text).admit
    assert out.scan(text, walk=False).admit
    lanes.clock.advance(TIMEOUT_S + 0.1)
    out.gate.poll()
    timeout = out.events("passage")[-1]
    assert (timeout["result"], timeout["dir"]) == ("timeout", "out")
    out.tell(entry)
    assert entry.scan(text).reason is Reason.ALREADY_USED


def test_a_gate_without_reentry_refuses_a_ticket_that_left(lanes, authority):
    entry = lanes("g1")
    out = lanes("g9", direction="out")
    text = authority.ticket()
    entry.scan(text)
    out.scan(text)
    out.tell(entry)
    assert entry.scan(text).reason is Reason.ALREADY_USED


def test_a_capacity_is_reached_and_released_with_the_right_denials(lanes, authority):
    entry = lanes("g1", capacity=2)
    out = lanes("g9", free_exit=True)
    t1, t2, t3, t4 = (authority.ticket() for _ in range(4))
    assert entry.scan(t1).admit and entry.scan(t2).admit
    full = entry.scan(t3)
    assert full.reason is Reason.CAPACITY and not full.admit
    denied = entry.events("scan")[-1]
    assert (denied["reason"], denied["inside"], denied["occupancy_source"]) == ("capacity", 2, "local")
    assert entry.scan(t1).reason is Reason.ALREADY_USED  # a used ticket hears that, not `capacity`
    assert entry.scan(t3).reason is Reason.CAPACITY  # the denied ticket keeps its entry for later

    out.walk("passage")  # somebody leaves through the free exit
    free = out.events("passage")[-1]
    assert (free["dir"], free["free"], free["result"], free["zone"]) == ("out", True, "passed", "north")
    assert free["ref"] == out.events()[0]["id"] and out.events()[0]["kind"] == "state"
    out.tell(entry)
    assert entry.store.local_occupancy("north") == 1
    assert entry.scan(t3).admit  # room again
    assert entry.scan(t4).reason is Reason.CAPACITY  # and full again
    assert entry.store.local_occupancy("north") == 2


def test_the_centre_figure_is_used_while_fresh_and_said_so(lanes, authority):
    entry = lanes("g1", capacity=3)
    other = lanes("g2")
    assert entry.scan(authority.ticket()).admit  # g1:1 scan, g1:2 passage
    # the ledger also counted two people from a gate this one never heard of (g7), and g1's first
    now_ms = int(lanes.clock() * 1000)
    entry.store.set_central_occupancy({"north": {"inside": 3, "capacity": 3}}, now_ms, {"g1": 2, "g7": 5})
    full = entry.scan(authority.ticket())
    assert full.reason is Reason.CAPACITY
    assert (entry.events("scan")[-1]["occupancy_source"], entry.events("scan")[-1]["inside"]) == ("central", 3)
    # somebody leaves after the figure was made: the gate adds what it knows came after it
    leaving = lanes("g9", free_exit=True)
    leaving.walk("passage")
    leaving.tell(entry)
    assert entry.store.zone_occupancy("north", now_ms) == (2, "central")
    assert entry.scan(authority.ticket()).admit
    assert entry.store.zone_occupancy("north", now_ms) == (3, "central")
    lanes.clock.advance(31)  # the centre has not been heard for too long: the gate's own estimate
    assert entry.store.zone_occupancy("north", int(lanes.clock() * 1000)) == (1, "local")
    assert entry.scan(authority.ticket()).admit
    assert entry.events("scan")[-1]["occupancy_source"] == "local"
    assert entry.events("scan")[-1]["inside"] == 1
    assert other.store.zone_occupancy("north", now_ms) == (0, "local")  # no figure of the centre at all


def test_a_turnstile_that_tells_direction_counts_people_going_out(lanes, authority, tmp_path):
    from gated.gate.boards import load_profile

    board = load_profile("tripod-rotation")
    assert board.passage_out is not None
    both = lanes("g1", board=board, capacity=1)
    assert both.scan(authority.ticket()).admit  # the rotation "in" confirms it
    assert both.events("passage")[-1]["result"] == "passed"
    assert both.scan(authority.ticket()).reason is Reason.CAPACITY
    both.walk("passage_out")
    out = both.events("passage")[-1]
    assert (out["dir"], out["free"]) == ("out", True)
    assert both.scan(authority.ticket()).admit
    assert [e["alarm"] for e in both.events("alarm")] == []  # going out is no forced entry


def test_part_1_readers_still_read_every_new_event(lanes, authority):
    entry = lanes("g1", reentry=True, capacity=5)
    out = lanes("g9", direction="out")
    free = lanes("g8", free_exit=True)
    text = authority.ticket()
    entry.scan(text)
    out.scan(text)
    out.tell(entry)
    entry.scan(text)
    free.walk("passage")
    for lane in (entry, out, free):
        for e in lane.events():
            events.read_event(json.dumps(e).encode(), site=SITE, gate=lane.name)
            # what part 1 knows of each kind is there, with its part 1 type
            assert e["kind"] in events.KINDS


@pytest.mark.parametrize(
    "change,problem",
    [
        ({"dir": "sideways"}, "dir must be in or out"),
        ({"reentry": 1}, "reentry must be a boolean"),
        ({"dir": "out", "reentry": True}, "reentry is for entry scans only"),
        ({"free": True}, "free is for exit passages"),
    ],
)
def test_the_strict_reader_checks_the_new_fields(lanes, authority, change, problem):
    entry = lanes("g1")
    entry.scan(authority.ticket())
    event = dict(entry.events("scan")[0], **change)
    with pytest.raises(events.EventRejected, match=problem):
        events.read_event(json.dumps(event).encode())


# --- the ledger -----------------------------------------------------------------------------------


def _ledger_of(tmp_path, *lanes_, capacity=None):
    from gated.central.ledger import Ledger

    ledger = Ledger(tmp_path / "ledger.db", site=SITE)
    if capacity:
        ledger.set_capacity(*capacity)
    for lane in lanes_:
        ledger.ingest([text for _, text in lane.store.outbox(0, 10_000)])
    return ledger


def test_the_ledger_counts_people_inside_from_entries_and_exits(lanes, authority, tmp_path):
    entry = lanes("g1", reentry=True)
    south = lanes("g2", reentry=True)
    south.context = replace(south.context, zone="south")
    south.gate._context = south.context
    out = lanes("g9", direction="out")
    free = lanes("g8", free_exit=True)
    tickets = [authority.ticket() for _ in range(5)]
    for text in tickets:
        assert entry.scan(text).admit  # 5 in
    assert south.scan(authority.ticket()).admit  # 1 in, south
    assert entry.scan(authority.ticket(), walk=False).admit  # nobody passes: rolled back
    lanes.clock.advance(TIMEOUT_S + 0.1)
    entry.gate.poll()
    out.scan(tickets[0])  # 1 out with a scan
    out.tell(entry)
    assert entry.scan(tickets[0]).reentry  # and back in
    free.walk("passage")
    free.walk("passage")  # 2 out freely
    with _ledger_of(tmp_path, entry, south, out, free, capacity=("north", 10)) as ledger:
        report = ledger.report()
    north = report["occupancy"]["zones"]["north"]
    assert (north["entries"], north["exits"], north["inside"], north["capacity"]) == (6, 3, 3, 10)
    assert report["occupancy"]["zones"]["south"]["inside"] == 1
    free.tell(entry)  # the entry gate's own estimate, once it has heard every event, agrees
    assert report["occupancy"]["inside"] == 4 == entry.store.local_occupancy("north") + 1
    # an exit or a re-entry spends no entry: nothing over-admitted, nothing missing, clean
    assert report["over_admitted"] == [] and report["reentries_without_exit"] == []
    assert report["clean"], report["totals"]


def test_the_ledger_reports_reentries_no_gate_could_have_refused(lanes, authority, tmp_path):
    a = lanes("g1", reentry=True)
    b = lanes("g2", reentry=True)
    out = lanes("g9", direction="out")
    text = authority.ticket()
    assert a.scan(text).admit
    out.scan(text)
    out.tell(a, b)  # both hear of the exit, but not of each other (offline from each other)
    a.tell(b)
    assert a.scan(text).reentry and b.scan(text).reentry
    with _ledger_of(tmp_path, a, b, out) as ledger:
        report = ledger.report()
    assert report["reentries_without_exit"] == [
        {
            "ticket": report["reentries_without_exit"][0]["ticket"],
            "reentries": 2,
            "exits": 1,
            "gates": ["g1", "g2", "g9"],
        }
    ]
    assert not report["clean"] and report["totals"]["reentries_without_exit"] == 1


def test_the_occupancy_message_is_read_strictly():
    from gated.core.occupancy import OccupancyRejected, encode_occupancy, read_occupancy

    message = encode_occupancy(SITE, {"north": {"inside": 3, "capacity": 10, "entries": 5, "exits": 2}}, 0, {"g1": 7})
    assert read_occupancy(message, site=SITE) == ({"north": {"inside": 3, "capacity": 10}}, {"g1": 7}, 0)
    assert json.loads(message)["inside"] == 3 and "since" not in json.loads(message)
    daily = encode_occupancy(
        SITE,
        {"north": {"inside": 3, "capacity": 10, "entries": 5, "exits": 2}},
        0,
        {"g1": 7},
        since_ms=1_790_000_000_123,
    )
    assert json.loads(daily)["since"] == "2026-09-21T14:13:20.123Z"
    assert read_occupancy(daily, site=SITE)[2] == 1_790_000_000_123
    for bad in (
        b"\xff",
        b"[]",
        message.replace(b'"inside":3', b'"inside":-3'),
        message.replace(b"arena", b"other"),
        message.replace(b'"inside":3', b'"inside":3.5'),
        message.replace(b'"g1":7', b'"g1":"7"'),
        b"x" * 70000,
        daily.replace(b"2026-09-21T14:13:20.123Z", b"yesterday"),
        daily.replace(b'"2026-09-21T14:13:20.123Z"', b"5"),
        daily.replace(b"2026-09-21T14", b"2026-19-21T14"),
    ):
        with pytest.raises(OccupancyRejected):
            read_occupancy(bad, site=SITE)


# --- the day starts over --------------------------------------------------------------------------


def _utc_ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp() * 1000)


@pytest.mark.parametrize(
    "now, start",
    [
        ("2026-12-01T02:59:59", "2026-11-30T03:00:00"),  # 03:59:59 in Berlin (CET, UTC+1): yesterday's 04:00
        ("2026-12-01T03:00:00", "2026-12-01T03:00:00"),  # 04:00 sharp: today's
        ("2026-03-29T01:59:00", "2026-03-28T03:00:00"),  # the night clocks go forward: still yesterday's (CET)
        ("2026-03-29T12:00:00", "2026-03-29T02:00:00"),  # that day's 04:00 is CEST, UTC+2
        ("2026-10-25T01:30:00", "2026-10-24T02:00:00"),  # the night clocks go back: yesterday's 04:00 CEST
        ("2026-10-25T03:30:00", "2026-10-25T03:00:00"),  # and that day's is CET again
    ],
)
def test_the_day_starts_at_the_venues_local_time_through_daylight_saving(now, start):
    from gated.daystart import DayStart

    assert DayStart("04:00", "Europe/Berlin").before(_utc_ms(now)) == _utc_ms(start)


@pytest.mark.parametrize(
    "zone, at, year",
    [
        ("Europe/Berlin", "02:30", 2026),  # in the hour skipped in March and the one repeated in October
        ("Australia/Lord_Howe", "02:15", 2026),  # a half-hour change
        ("America/Santiago", "23:30", 2026),  # changes at midnight
        ("Pacific/Apia", "04:00", 2011),  # the country skipped 30 December 2011
    ],
)
def test_the_day_start_is_never_ahead_of_now_and_never_goes_back(zone, at, year):
    from gated.daystart import DayStart

    day = DayStart(at, zone)
    now, last, previous = _utc_ms(f"{year}-01-01T00:00:00"), _utc_ms(f"{year + 1}-01-01T00:00:00"), 0
    while now < last:
        start = day.before(now)
        assert previous <= start <= now and now - start < 49 * 3_600_000, (zone, at, now, start)
        previous, now = start, now + 20 * 60_000


def test_a_clock_gone_wild_counts_everything_instead_of_failing_the_scan():
    from gated.daystart import DayStart

    day = DayStart("04:00", "Europe/Berlin")
    assert [day.before(ms) for ms in (10**18, -(10**18), 253402300799999)] == [0, 0, 0]
    assert day.before(1) == _utc_ms("1969-12-31T03:00:00")


def test_a_bad_day_start_or_time_zone_is_a_clear_error():
    from gated.daystart import DayStart, DayStartError

    for at, zone, says in (
        ("4:00", "UTC", "is not a time of day HH:MM"),
        ("24:00", "UTC", "HH:MM"),
        ("04:00", "Mars/Olympus", "is not a time zone name"),
        ("04:00", "../etc", "time zone"),
    ):
        with pytest.raises(DayStartError, match=says):
            DayStart(at, zone)


def test_yesterdays_visitors_no_longer_fill_the_zone_after_the_day_starts(lanes, authority):
    """A capacity of 2: two admitted in the evening (nobody scanned out: the exit is an emergency
    door). Without a day start the zone stays full for good; with one, the count starts over at
    04:00 and the next morning's visitors are let in, while yesterday's count is still there for
    the evening (the same day)."""
    from gated.daystart import DayStart

    lanes.clock.advance(-(lanes.clock() % 86400) + 86400 + 20 * 3600)  # tomorrow, 20:00 UTC
    now = int(time.time())

    def ticket() -> str:  # valid all through the days this test walks
        return authority.ticket(nbf=now - 86400, exp=now + 4 * 86400)

    counting = lanes("g1", capacity=2)
    counting.store.day_start = DayStart("04:00", "UTC").before
    forever = lanes("g2", capacity=2)
    for lane in (counting, forever):
        assert lane.scan(ticket()).admit and lane.scan(ticket()).admit
        assert lane.scan(ticket()).reason is Reason.CAPACITY
    lanes.clock.advance(7 * 3600 + 59 * 60)  # 03:59 next day: still the same venue day
    assert counting.scan(ticket()).reason is Reason.CAPACITY
    lanes.clock.advance(60)  # 04:00
    morning = counting.scan(ticket())
    assert morning.admit, morning.detail
    assert counting.events("scan")[-1]["inside"] == 0
    assert counting.store.local_occupancy("north") == 3  # everything stored, counted from no day start
    assert forever.scan(ticket()).reason is Reason.CAPACITY


def test_the_centre_figure_counts_only_when_it_starts_from_the_same_day(lanes, authority):
    from gated.daystart import DayStart

    entry = lanes("g1", capacity=3)
    entry.store.day_start = DayStart("04:00", "UTC").before
    now_ms = int(lanes.clock() * 1000)
    today = entry.store.occupancy_since(now_ms)
    entry.store.set_central_occupancy({"north": {"inside": 3, "capacity": 3}}, now_ms, {}, today)
    assert entry.store.zone_occupancy("north", now_ms) == (3, "central")
    for other_day in (0, today - 86_400_000):  # counted from no day start, or from yesterday's
        entry.store.set_central_occupancy({"north": {"inside": 3, "capacity": 3}}, now_ms, {}, other_day)
        assert entry.store.zone_occupancy("north", now_ms) == (0, "local")


def test_the_ledger_publishes_the_occupancy_of_the_venue_day(tmp_path, broker):
    """`gated ledger --day-starts`: the retained occupancy counts movements from the latest day start
    and says so (`since`); yesterday's entries are in the ledger, not in the figure."""
    import subprocess
    import sys

    from gated.central.ledger import Ledger
    from gated.daystart import DayStart
    from gated.topics import occupancy_topic
    from tests.support.uplink import Listener

    now_ms = int(time.time() * 1000)
    start = DayStart("04:00", "Europe/Berlin").before(now_ms)
    with GateStore(tmp_path / "g1.db", site=SITE, gate="g1") as g1:
        for when in (start - 3_600_000, start - 60_000, start + 1, now_ms):  # two yesterday, two today
            g1.record_scan(
                {
                    "ticket": os.urandom(16).hex(),
                    "event": EVENT,
                    "type": "general",
                    "zone": "north",
                    "decision": "admit",
                    "reason": "ok",
                    "rev": 0,
                    "latency_us": 0,
                },
                when,
                admit_cti=os.urandom(16),
                confirmed=True,
            )
        with Ledger(tmp_path / "ledger.db", site=SITE) as ledger:
            ledger.ingest([e for _, e in g1.outbox(0, 100)])
            assert ledger.occupancy()["inside"] == 4
    listener = Listener(broker.port, occupancy_topic(SITE))
    ledger_process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gated.cli",
            "ledger",
            "--broker",
            broker.url,
            "--site",
            SITE,
            "--db",
            str(tmp_path / "ledger.db"),
            "--day-starts",
            "04:00",
            "--timezone",
            "Europe/Berlin",
            "--exit-after",
            "3",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert ledger_process.wait(30) == 0, ledger_process.stderr.read()
    finally:
        listener.close()
    figure = json.loads(listener.on(occupancy_topic(SITE))[-1])
    assert figure["zones"]["north"]["inside"] == 2 and figure["inside"] == 2
    assert events.parse_ts(figure["since"]) == start
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "gated.cli",
            "ledger",
            "--broker",
            broker.url,
            "--site",
            SITE,
            "--db",
            str(tmp_path / "ledger.db"),
            "--day-starts",
            "4am",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert bad.returncode == 2 and "'4am' is not a time of day HH:MM" in bad.stderr


def _run_ledger(broker, tmp_path):
    """`gated ledger` for 3 s; (the retained occupancy message, what it said)."""
    import subprocess
    import sys

    from gated.topics import occupancy_topic
    from tests.support.uplink import Listener

    listener = Listener(broker.port, occupancy_topic(SITE))
    ledger = subprocess.Popen(
        [sys.executable, "-m", "gated.cli", "ledger", "--broker", broker.url, "--site", SITE]
        + ["--db", str(tmp_path / "ledger.db"), "--exit-after", "3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,  # its log lines too
        text=True,
    )
    try:
        said = ledger.communicate(timeout=30)[0]
    finally:
        listener.close()
    assert ledger.returncode == 0, said
    messages = listener.on(occupancy_topic(SITE))
    return (messages[-1] if messages else None), said


def test_one_gate_naming_zones_of_its_own_cannot_make_the_occupancy_unreadable(tmp_path, broker, capsys):
    """A gate's free exits in 70 zones of 1000 characters each made a message of 74 kB that every
    reader refused. Zones that are not zone names are not counted; a message still too large for its
    readers (many zone names) is not published, and the last readable one stays retained."""
    from gated.central.ledger import Ledger
    from gated.cli import main
    from gated.core.occupancy import read_occupancy

    now_ms = int(time.time() * 1000)
    body = {"ticket": None, "event": EVENT, "type": "general", "zone": "north", "decision": "admit"}
    with GateStore(tmp_path / "g1.db", site=SITE, gate="g1") as g1, Ledger(tmp_path / "ledger.db", site=SITE) as ledger:
        for n in range(2):
            g1.record_scan(
                {**body, "ticket": os.urandom(16).hex(), "reason": "ok", "rev": 0, "latency_us": 0},
                now_ms + n,
                admit_cti=os.urandom(16),
                confirmed=True,
            )
        for n in range(70):
            g1.record_free_exit(f"{n:04d}" + "z" * 996, now_ms + 10 + n, "normal")
        ledger.ingest([e for _, e in g1.outbox(0, 1000)])
        message, said = _run_ledger(broker, tmp_path)
        assert message is not None, said
        zones, _, _ = read_occupancy(message, site=SITE)
        assert zones == {"north": {"inside": 2, "capacity": None}}, zones
        assert "not counted" in said and "zones=70" in said, said
        assert ledger.report()["occupancy"]["not_counted"] == {"zones": 70, "movements": 70}
        assert main(["reconcile", "--db", str(tmp_path / "ledger.db")]) in (0, 1)
        assert "not counted: 70 movements in 70 zones that are not zone names" in capsys.readouterr().out

        for n in range(600):  # zone names, each allowed, but together over what a reader takes
            g1.record_free_exit(f"{n:04d}" + "z" * 100, now_ms + 100 + n, "normal")
        ledger.ingest([e for _, e in g1.outbox(0, 2000)])
        again, said = _run_ledger(broker, tmp_path)
    assert again == message, "the last readable message stays retained"
    assert "occupancy message not published" in said and "Traceback" not in said, said


# --- gated report ---------------------------------------------------------------------------------


def test_gated_report_writes_the_day_with_its_totals_and_plots(lanes, authority, tmp_path, capsys):
    from gated.cli import main

    entry = lanes("g1", reentry=True, capacity=3)
    out = lanes("g9", direction="out")
    kept = authority.ticket()
    for text in (kept, authority.ticket(), authority.ticket()):
        assert entry.scan(text).admit
    assert entry.scan(authority.ticket()).reason is Reason.CAPACITY
    out.scan(kept)
    out.tell(entry)
    lanes.clock.advance(1200)  # twenty minutes later: the next quarter hour
    assert entry.scan(kept).reentry
    assert entry.scan(authority.ticket(aud="OTHER")).reason is Reason.WRONG_EVENT
    with _ledger_of(tmp_path, entry, out, capacity=("north", 3)):
        pass
    code = main(["report", "--db", str(tmp_path / "ledger.db"), "--out", str(tmp_path / "day")])
    assert code == 0, capsys.readouterr()
    report = json.loads((tmp_path / "day" / "report.json").read_text())
    assert report["ok"] and report["verdict"].startswith("CLEAN")
    assert report["totals"] | {} == {
        **report["totals"],
        "entries": 4,
        "reentries": 1,
        "exits": 1,
        "admit_scans": 5,
        "denials": 2,
        "inside_at_end": 3,
    }
    assert report["denials"] == {"capacity": 1, "wrong_event": 1}
    assert sum(int(n) for n in report["entries_per_bin"]["gates"]["g1"].values()) == 4
    assert len(report["entries_per_bin"]["gates"]["g1"]) == 2  # two quarter hours
    north = report["occupancy"]["zones"]["north"]
    assert (north["peak"], north["capacity"], north["inside_at_end"], north["entries_over_capacity"]) == (3, 3, 3, 0)
    page = (tmp_path / "day" / "report.html").read_text()
    assert page.index("CLEAN") < page.index("<h2>")
    assert page.count("data:image/png;base64,") == 5
    assert "<script" not in page and "http://" not in page and "https://" not in page

    # a window: only the re-entry's quarter hour
    later = datetime.fromtimestamp(lanes.clock() - 300, timezone.utc).isoformat()
    assert main(["report", "--db", str(tmp_path / "ledger.db"), "--out", str(tmp_path / "late"), "--from", later]) == 0
    late = json.loads((tmp_path / "late" / "report.json").read_text())
    assert (late["totals"]["entries"], late["totals"]["reentries"]) == (1, 1)
    assert late["occupancy"]["zones"]["north"]["inside_at_start"] == 2


def test_gated_report_without_matplotlib_says_what_to_install(tmp_path):
    from tests.support.cli import gated_without

    done = gated_without("matplotlib", "report", "--db", str(tmp_path / "none.db"), "--out", str(tmp_path / "o"))
    assert done.returncode == 2
    assert "need matplotlib" in done.stderr and "gated[sim]" in done.stderr
    assert not (tmp_path / "o").exists()


def test_a_both_ways_gate_needs_a_sensor_that_tells_direction(tmp_path):
    from gated.gate import config
    from tests.system.test_config import MINIMAL

    both = MINIMAL.replace('keyring = "keyring"', 'keyring = "keyring"\ndirection = "both"\ncapacity = 500')
    path = tmp_path / "gated.toml"
    path.write_text(both)
    with pytest.raises(config.ConfigError) as caught:
        config.load(path)
    assert [p for p, _ in caught.value.problems] == ["gate.direction"]
    assert "passage_out" in caught.value.problems[0][1]
    path.write_text(both.replace('board = "generic-relay"', 'board = "tripod-rotation"'))
    cfg = config.load(path)
    assert (cfg.gate.direction, cfg.gate.capacity, cfg.gate.reentry, cfg.gate.exit) == ("both", 500, False, "scan")


def test_the_health_message_carries_the_gates_figure():
    from gated.gate import health

    body = health.snapshot(
        health.Counters(),
        now_mono=10.0,
        now_ms=0,
        outbox=0,
        rev_version=0,
        rev_iat=0,
        clock={},
        mode="online",
        camera_ok=True,
        store_ok=True,
        occupancy=(412, "local", 500),
    )
    assert (body["occupancy"], body["occupancy_source"], body["capacity"]) == (412, "local", 500)
    assert "occupancy" not in health.snapshot(
        health.Counters(),
        now_mono=10.0,
        now_ms=0,
        outbox=0,
        rev_version=0,
        rev_iat=0,
        clock={},
        mode="online",
        camera_ok=True,
        store_ok=True,
    )


def test_a_ticket_that_allows_reentry_comes_back_at_any_entry_gate(lanes, authority):
    entry = lanes("g1")  # no reentry in the gate's configuration
    out = lanes("g9", direction="out")
    text = authority.ticket(rex=True)
    plain = authority.ticket()
    for t in (text, plain):
        assert entry.scan(t).admit
        assert out.scan(t).admit
    out.tell(entry)
    assert entry.scan(text).reentry  # the ticket's own claim allows it
    assert entry.scan(plain).reason is Reason.ALREADY_USED  # this one does not


def test_a_free_exit_records_the_exit_of_a_ticket_shown_there(lanes, authority):
    entry = lanes("g1", reentry=True)
    free = lanes("g8", direction="out", free_exit=True)
    text = authority.ticket()
    assert entry.scan(text).admit
    assert free.scan(text).admit  # shown at the free exit: its exit is recorded, the passage confirms it
    free.walk("passage")  # and then somebody without a ticket
    passages = free.events("passage")
    assert [(p["result"], p.get("free", False)) for p in passages] == [("passed", False), ("passed", True)]
    free.tell(entry)
    assert entry.scan(text).reentry
    assert entry.store.local_occupancy("north") == 0  # in, out, out without a ticket, back in


def test_gated_report_on_an_empty_ledger_says_there_is_nothing_and_makes_no_ledger(tmp_path, capsys):
    from gated.central.ledger import Ledger
    from gated.cli import main

    assert main(["report", "--db", str(tmp_path / "typo.db"), "--out", str(tmp_path / "o")]) == 2
    assert "no ledger database here" in capsys.readouterr().err and not (tmp_path / "typo.db").exists()
    Ledger(tmp_path / "empty.db").close()
    assert main(["report", "--db", str(tmp_path / "empty.db"), "--out", str(tmp_path / "o")]) == 1
    out = capsys.readouterr().out
    assert out.startswith("ATTENTION") and "no events in the ledger for this window" in out
