"""`gated report`: the day at a site for its managers, from the ledger (gated/central/dayreport.py)."""

from __future__ import annotations

import sys
from pathlib import Path

from gated.cli.main import CommandError, iso_option


def register(sub) -> None:
    p = sub.add_parser(
        "report",
        help="the day's report from a ledger: report.html (plots embedded), report.json, gates.csv and hours.csv",
    )
    p.add_argument("--db", required=True, help="ledger database")
    p.add_argument("--out", required=True, help="directory for report.html, report.json, gates.csv, hours.csv")
    p.add_argument(
        "--day",
        metavar="YYYY-MM-DD",
        help="the venue's day: from --day-starts that day to the next (instead of --from/--to)",
    )
    p.add_argument(
        "--timezone",
        default="UTC",
        help="the venue's time zone (IANA, e.g. Europe/Berlin): the day and "
        "every time on the page are its local time (default UTC)",
    )
    p.add_argument(
        "--day-starts",
        default="00:00",
        metavar="HH:MM",
        help="local time the venue's day starts (as the gates' [gate] day_starts; default 00:00)",
    )
    p.add_argument("--from", dest="since", metavar="TIME", help="start of the window (ISO 8601, UTC unless it says)")
    p.add_argument("--to", dest="until", metavar="TIME", help="end of the window (ISO 8601)")
    p.add_argument("--bin-minutes", type=int, default=15, help="width of the time bins (default 15)")
    p.add_argument(
        "--silence-minutes",
        type=int,
        default=15,
        help="a gate without any event this long is reported quiet (default 15)",
    )
    p.add_argument(
        "--tickets",
        action="append",
        default=[],
        metavar="CSV",
        help="tickets.csv from `gated issue --out`: admissions allowed per ticket (repeat)",
    )
    p.set_defaults(func=run_report)


def run_report(args) -> int:
    from gated.central import plots
    from gated.central.dayreport import build, write
    from gated.central.ledger import Ledger, LedgerError

    try:
        plots.require()  # say so before any work: a gate install has no matplotlib
    except plots.PlotsUnavailable as exc:
        raise CommandError(str(exc)) from None
    from gated.central.ledgerdb import ledger_exists

    if not ledger_exists(args.db):  # never make an empty ledger here
        raise CommandError(f"{args.db}: no ledger database here")
    if args.bin_minutes < 1 or args.silence_minutes < 1:
        raise CommandError("--bin-minutes and --silence-minutes must be at least 1")
    from gated.central.daytables import venue_day
    from gated.daystart import DayStartError, time_zone

    try:
        time_zone(args.timezone)
        if args.day is not None:
            if args.since or args.until:
                raise CommandError("give --day, or --from/--to, not both")
            since, until = venue_day(args.day, args.day_starts, args.timezone)
        else:
            since, until = iso_option(args.since, "--from"), iso_option(args.until, "--to")
    except DayStartError as exc:
        raise CommandError(f"--timezone/--day-starts: {exc}") from None
    except ValueError:
        raise CommandError(f"--day {args.day!r} is not a date YYYY-MM-DD") from None
    if since is not None and until is not None and until <= since:
        raise CommandError("--to must be after --from")
    try:
        with Ledger(args.db) as ledger:
            for csv_path in args.tickets:
                ledger.load_tickets(csv_path)
            report = build(
                ledger,
                since=since,
                until=until,
                bin_s=args.bin_minutes * 60,
                silence_s=args.silence_minutes * 60,
                timezone_name=args.timezone,
                day=args.day,
            )
    except LedgerError as exc:
        raise CommandError(str(exc)) from None
    json_path, html_path = write(Path(args.out), report)
    print(report["verdict"])
    print(f"report: {html_path} (and {json_path.name}, gates.csv, hours.csv)", file=sys.stderr)
    return 0 if report["ok"] else 1
