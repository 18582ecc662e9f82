"""When a venue's day starts: the count of people inside (occupancy) starts over then, at the gates
(`[gate] day_starts`, `timezone`) and at the ledger (`gated ledger --day-starts --timezone`).

    DayStart("04:00", "Europe/Berlin").before(now_ms)  ->  unix ms of the latest 04:00 Berlin time at or before now

Choose a time when the venue is empty: whoever is inside then is no longer counted, and their
exits afterwards lower the new day's count. Local time, with its daylight-saving changes (see
DayStart.before). Without it the counts never start over.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from gated.core.errors import GatedError

_HH_MM = re.compile(r"([01]\d|2[0-3]):([0-5]\d)")


class DayStartError(GatedError, ValueError):
    """A time of day that is not HH:MM, or a time zone this machine does not know."""


def time_zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError) as exc:
        raise DayStartError(
            f"{name!r} is not a time zone name this machine knows (IANA, e.g. Europe/Berlin, "
            f"UTC; Debian: apt-get install tzdata) ({type(exc).__name__})"
        ) from None


def time_of_day(text: str) -> tuple[int, int]:
    found = _HH_MM.fullmatch(text) if isinstance(text, str) else None
    if found is None:
        raise DayStartError(f"{text!r} is not a time of day HH:MM (00:00 to 23:59)")
    return int(found[1]), int(found[2])


class DayStart:
    def __init__(self, at: str, zone: str = "UTC"):
        self.hour, self.minute = time_of_day(at)
        self.zone = time_zone(zone)
        self.text = f"{at} {zone}"

    def before(self, now_ms: int) -> int:
        """Unix ms of the latest day start at or before `now_ms`; 0 (count everything) for a time
        no calendar holds (a clock gone wild: this runs on the scan path and must not raise).
        Compared as instants, not wall times: a start in the hour skipped in spring is the wall
        time before the change (fold 0), one in the hour repeated in autumn its first pass, so
        the day start never lies ahead of now and never goes back while time goes on."""
        try:
            today = datetime.fromtimestamp(now_ms / 1000, self.zone).date()
            for back in range(3):  # today's, else yesterday's (or, across a skipped day, the one before)
                day = today - timedelta(days=back)
                start = (
                    int(datetime(day.year, day.month, day.day, self.hour, self.minute, tzinfo=self.zone).timestamp())
                    * 1000
                )
                if start <= now_ms:
                    return start
        except (OverflowError, OSError, ValueError):
            pass
        return 0
