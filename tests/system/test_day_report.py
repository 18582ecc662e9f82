"""The manager's day report: the venue's day in its local time, names in the title, denial reasons in
words, gaps in sentences, per gate the time offline, locked or in emergency, plots that stay readable
with one event or none, CSV beside the HTML; checked in headless Chromium at a phone's and a
desktop's width (DOM measurements) and in the plots' pixels."""

from __future__ import annotations

import base64
import csv
import json
import os
import re
from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from gated.central.ledger import Ledger
from gated.cli import main
from gated.gate.store import GateStore
from tests.conftest import SITE
from tests.system.test_wallet import CHROMIUM, chromium

BERLIN = ZoneInfo("Europe/Berlin")
DAY = ["--day", "2026-12-06", "--timezone", "Europe/Berlin", "--day-starts", "06:00"]


def at(hh_mm: str, day: int = 6) -> int:
    h, m = map(int, hh_mm.split(":"))
    return int(datetime(2026, 12, day, h, m, tzinfo=BERLIN).timestamp() * 1000)


def scan(store, ts, *, admit=True, reason="ok", zone="north"):
    body = {
        "ticket": os.urandom(16).hex(),
        "event": "FINAL-2026",
        "type": "adult",
        "zone": zone,
        "decision": "admit" if admit else "deny",
        "reason": reason,
        "rev": 1,
        "latency_us": 0,
    }
    return store.record_scan(body, ts, admit_cti=bytes.fromhex(body["ticket"]) if admit else None, confirmed=True)


def ledger_of(tmp_path, *stores, drop=()) -> str:
    path = str(tmp_path / "ledger.db")
    with Ledger(path, site=SITE) as ledger:
        for store in stores:
            ledger.ingest([e for seq, e in store.outbox(0, 100000) if (store.gate, seq) not in drop])
    return path


def report(tmp_path, db, name="day", *extra) -> tuple[dict, str]:
    out = tmp_path / name
    main(["report", "--db", db, "--out", str(out), *DAY, *extra])
    return json.loads((out / "report.json").read_text()), str(out)


def png_images(page: str) -> dict[str, np.ndarray]:
    import cv2

    found = {}
    for alt, data in re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,([^"]+)"', page):
        found[alt] = cv2.imdecode(np.frombuffer(base64.b64decode(data), np.uint8), cv2.IMREAD_COLOR)
    return found


def pixels_of(image: np.ndarray, hex_colour: str) -> int:
    rgb = tuple(int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    bgr = np.array(rgb[::-1])
    return int((np.abs(image.astype(int) - bgr).sum(axis=2) < 30).sum())


def measure(tmp_path, html_dir: str, width: int, height: int) -> dict:
    """Load the page in Chromium at this width and measure it: a copy of the page with a script that
    writes the measurements into the DOM (the report itself has no script)."""
    page = open(os.path.join(html_dir, "report.html")).read()
    probe = """<pre id="probe"></pre><script>
const imgs = [...document.images];
document.getElementById('probe').textContent = JSON.stringify({
  inner: window.innerWidth, scroll: document.documentElement.scrollWidth,
  images: imgs.map(i => ({w: i.getBoundingClientRect().width, natural: i.naturalWidth})),
  title: document.querySelector('h1').textContent, h2: [...document.querySelectorAll('h2')].map(h => h.textContent)});
</script></body>"""
    copy = os.path.join(html_dir, f"probe-{width}.html")
    with open(copy, "w") as fh:
        fh.write(page.replace("</body>", probe))
    dom = chromium(tmp_path, "file://" + copy, "--dump-dom", f"--window-size={width},{height}")
    return json.loads(
        re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S).group(1).replace("&quot;", '"').replace("&amp;", "&")
    )


def check_in_chromium(tmp_path, html_dir: str) -> list[dict]:
    if CHROMIUM is None:
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    results = []
    for width, height in ((390, 844), (1280, 900)):  # a phone, a desktop
        m = measure(tmp_path, html_dir, width, height)
        assert m["scroll"] <= m["inner"] + 1, (width, m)  # nothing wider than the screen: tables scroll inside
        assert all(0 < i["w"] <= m["inner"] and i["natural"] > 0 for i in m["images"]), (width, m)
        results.append(m)
    return results


def test_a_busy_day_in_the_venues_local_time_with_reasons_gaps_and_gate_times(tmp_path):
    with (
        GateStore(tmp_path / "n1.db", site=SITE, gate="north-1") as n1,
        GateStore(tmp_path / "s1.db", site=SITE, gate="south-1") as s1,
    ):
        n1.record_event({"kind": "state", "state": "online", "rev": 1}, at("06:30"))
        for minute in range(0, 120, 3):
            scan(n1, at("18:00") + minute * 60_000)
            scan(s1, at("18:10") + minute * 60_000, zone="south")
        scan(n1, at("19:00"), admit=False, reason="static_copy")
        scan(s1, at("19:05"), admit=False, reason="unknown_key")
        s1.record_event({"kind": "state", "state": "locked", "rev": 1}, at("20:30"))
        s1.record_event({"kind": "state", "state": "online", "rev": 1}, at("21:30"))
        n1.record_event({"kind": "alarm", "alarm": "held_open"}, at("21:00"))
        scan(n1, at("05:30", 7))  # the next calendar day, still the venue's day (it starts at 06:00)
        db = ledger_of(tmp_path, n1, s1, drop={("north-1", 5), ("north-1", 6)})
    r, out = report(tmp_path, db)
    assert r["site"] == SITE and r["event_names"] == ["FINAL-2026"]
    page = open(os.path.join(out, "report.html")).read()
    h1 = re.search(r"<h1>(.*?)</h1>", page).group(1)
    assert h1 == f"{SITE}, FINAL-2026: Sunday 6 December 2026 (06:00 to 05:59 Europe/Berlin)", h1
    text = re.sub(r'src="data:[^"]+"', "", page)
    assert not re.search(r"\d\d:\d\d:\d\d\.\d{3}|\d{4}-\d\d-\d\dT", text), "UTC times or milliseconds on the page"
    assert "<code>static_copy</code></td><td>a phone ticket shown in its printed form" in page
    assert "<code>unknown_key</code></td><td>signed by a key the gate does not trust" in page
    assert "Gate north-1: events 5 to 6 (2 events) never reached the ledger." in page
    assert r["totals"]["entries"] == 79  # 81 made, 2 lost; 05:30 on the 7th is the 6th's venue day
    south = r["gates"]["south-1"]
    assert south["locked_s"] == 3600 and south["up_share"] < 1
    assert r["gates"]["north-1"]["alarms"] == {"held_open": 1}
    with open(os.path.join(out, "gates.csv")) as fh:
        gates = list(csv.DictReader(fh))
    assert [g["gate"] for g in gates] == ["north-1", "south-1"] and gates[1]["locked min"] == "60.0"
    with open(os.path.join(out, "hours.csv")) as fh:
        hours = list(csv.DictReader(fh))
    assert hours[0]["hour"] == "2026-12-06 06:00" and sum(int(h["entries"]) for h in hours) == 79
    images = png_images(page)
    assert set(images) == {"entries_per_gate", "entries_per_zone", "occupancy", "denials", "ticket_types"}
    from gated.central.plots import colours_for

    zone_colour = colours_for(["north", "south"])
    for plot in ("entries_per_zone", "occupancy"):  # each zone one colour throughout
        for zone, colour in zone_colour.items():
            assert pixels_of(images[plot], colour) > 200, (plot, zone)
    measured = check_in_chromium(tmp_path, out)
    assert measured[0]["title"] == h1.replace("&amp;", "&")


def test_one_event_is_a_bar_in_its_day_and_no_event_is_said_in_words(tmp_path):
    with GateStore(tmp_path / "n1.db", site=SITE, gate="north-1") as n1:
        scan(n1, at("20:03"))
        db = ledger_of(tmp_path, n1)
    r, out = report(tmp_path, db)
    assert r["totals"]["entries"] == 1
    page = open(os.path.join(out, "report.html")).read()
    images = png_images(page)
    assert "denials" not in images and "<p>No ticket was refused.</p>" in page  # no empty chart with a ±0.04 axis
    from gated.central.plots import colours_for

    bar = pixels_of(images["entries_per_gate"], colours_for(["north-1"])["north-1"])
    assert bar > 500, bar  # a bar a quarter hour wide, not a dot
    gate = r["gates"]["north-1"]
    assert gate["offline_s"] > 20 * 3600 and gate["up_share"] < 0.2  # silent all day but for one scan
    check_in_chromium(tmp_path, out)

    # a day with no events at all: the page says so, nothing breaks
    r, out = report(tmp_path, db, "empty", "--day", "2026-12-08")
    assert not r["ok"] and "no events in the ledger for this window" in r["verdict"]
    page = open(os.path.join(out, "report.html")).read()
    assert "Tuesday 8 December 2026" in page
    assert r["gates"]["north-1"]["up_share"] == 0.0  # known to the ledger, silent all day
    check_in_chromium(tmp_path, out)


@pytest.mark.slow  # the demo venue (2 gates, 200 visitors) rehearsed first: about a minute
def test_the_demos_day_reads_in_chromium(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    from tests.gate.test_guides import ROOT

    gated = Path(sys.executable).parent / "gated"
    done = subprocess.run(
        [
            str(gated),
            "sim",
            str(ROOT / "sim" / "scenarios" / "demo.toml"),
            "--speed",
            "4",
            "--out",
            str(tmp_path / "demo"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    db = str(tmp_path / "demo" / "work" / "ledger.db")
    with Ledger(db) as ledger:
        (first,) = ledger.db.execute("SELECT MIN(ts) FROM events").fetchone()
    day = datetime.fromisoformat(first.replace("Z", "+00:00")).astimezone(BERLIN).date().isoformat()
    out = tmp_path / "day"
    assert main(["report", "--db", db, "--out", str(out), "--day", day, "--timezone", "Europe/Berlin"]) == 0
    r = json.loads((out / "report.json").read_text())
    page = (out / "report.html").read_text()
    assert r["event_names"] == ["DEMO-2026"] and r["site"] in re.search(r"<h1>(.*?)</h1>", page).group(1)
    images = png_images(page)
    assert {"entries_per_gate", "entries_per_zone", "occupancy", "denials"} <= set(images)
    measured = check_in_chromium(tmp_path, str(out))
    assert measured[1]["title"].endswith("(00:00 to 23:59 Europe/Berlin)")


def test_a_day_that_is_no_date_or_a_zone_that_is_none_is_a_clear_error(tmp_path, capsys):
    with GateStore(tmp_path / "n1.db", site=SITE, gate="north-1") as n1:
        scan(n1, at("20:03"))
        db = ledger_of(tmp_path, n1)
    assert main(["report", "--db", db, "--out", str(tmp_path / "o"), "--day", "6.12.2026"]) == 2
    assert "--day '6.12.2026' is not a date YYYY-MM-DD" in capsys.readouterr().err
    assert (
        main(["report", "--db", db, "--out", str(tmp_path / "o"), "--day", "2026-12-06", "--timezone", "Mars/Base"])
        == 2
    )
    assert "not a time zone name" in capsys.readouterr().err
    assert (
        main(["report", "--db", db, "--out", str(tmp_path / "o"), "--day", "2026-12-06", "--from", "2026-12-06"]) == 2
    )
    assert "give --day, or --from/--to, not both" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_events_a_broken_gate_clock_dated_in_9999_or_1970_are_of_unknown_time(tmp_path):
    """A gate whose clock was wrong: one scan dated 9999-12-31T23:50Z (year 10000 in Berlin), one in
    1970. `gated report` without --day counts them, lists them as of unknown time, keeps them out
    of the hours, plots and the window (which is the other gate's evening), in any time zone."""
    from gated.core.events import parse_ts

    with (
        GateStore(tmp_path / "n1.db", site=SITE, gate="north-1") as n1,
        GateStore(tmp_path / "s1.db", site=SITE, gate="south-1") as broken,
    ):
        first, last = scan(n1, at("20:03")), scan(n1, at("20:10"))
        scan(broken, parse_ts("9999-12-31T23:50:00.000Z"))
        scan(broken, 5_000)
        db = ledger_of(tmp_path, n1, broken)
    for zone in ("Europe/Berlin", "UTC"):
        out = tmp_path / zone.replace("/", "-")
        assert main(["report", "--db", db, "--out", str(out), "--timezone", zone]) == 1  # ATTENTION: said why
        r = json.loads((out / "report.json").read_text())
        assert r["totals"]["entries"] == 4 and r["totals"]["events"] == 4
        assert r["window"]["from"] == first["ts"] and r["window"]["to"] == last["ts"]
        assert r["time_unknown"]["events"] == 2
        assert sorted(u["ts"] for u in r["time_unknown"]["listed"]) == [
            "1970-01-01T00:00:05.000Z",
            "9999-12-31T23:50:00.000Z",
        ]
        assert "2 events dated outside 2000-01-01 to 9000-01-01" in r["verdict"] and not r["ok"]
        assert sum(h["entries"] for h in r["per_hour"]) == 2
        assert r["gates"]["south-1"]["first"] is None and r["gates"]["south-1"]["entries"] == 2
        page = (out / "report.html").read_text()
        assert "Events of unknown time" in page and "south-1:1 (scan) dated 9999-12-31T23:50:00.000Z" in page
        assert set(png_images(page)) >= {"entries_per_gate", "occupancy"}

    # a window asked for up to the end of year 9999 is clamped to the times the report places
    out = tmp_path / "to-9999"
    args = ["--from", "2026-12-06T00:00:00Z", "--to", "9999-12-31T23:59:59Z", "--timezone", "Europe/Berlin"]
    assert main(["report", "--db", db, "--out", str(out), *args]) == 0  # CLEAN: neither is in the window
    r = json.loads((out / "report.json").read_text())
    assert r["window"]["to"] == "8999-12-31T23:59:59.999Z" and r["totals"]["entries"] == 2
