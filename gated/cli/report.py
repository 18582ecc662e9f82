"""`gated report`: the day at a site for its managers, from the ledger (gated/central/dayreport.py)."""

from __future__ import annotations

import sys
from pathlib import Path

from gated.cli.main import CommandError, iso_option


def register(sub) -> None:
    p = sub.add_parser("report", help="the day's report from a ledger: report.html (plots embedded) and report.json")
    p.add_argument("--db", required=True, help="ledger database")
    p.add_argument("--out", required=True, help="directory for report.html and report.json")
    p.add_argument("--from", dest="since", metavar="TIME", help="start of the window (ISO 8601, UTC unless it says)")
    p.add_argument("--to", dest="until", metavar="TIME", help="end of the window (ISO 8601)")
    p.add_argument("--bin-minutes", type=int, default=15, help="width of the time bins (default 15)")
    p.add_argument("--silence-minutes", type=int, default=15,
                   help="a gate without any event this long is reported quiet (default 15)")
    p.add_argument("--tickets", action="append", default=[], metavar="CSV",
                   help="tickets.csv from `gated issue --out`: admissions allowed per ticket (repeat)")
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
    since, until = iso_option(args.since, "--from"), iso_option(args.until, "--to")
    if since is not None and until is not None and until <= since:
        raise CommandError("--to must be after --from")
    try:
        with Ledger(args.db) as ledger:
            for csv_path in args.tickets:
                ledger.load_tickets(csv_path)
            report = build(ledger, since=since, until=until, bin_s=args.bin_minutes * 60,
                           silence_s=args.silence_minutes * 60)
    except LedgerError as exc:
        raise CommandError(str(exc)) from None
    json_path, html_path = write(Path(args.out), report)
    print(report["verdict"])
    print(f"report: {html_path} (and {json_path.name})", file=sys.stderr)
    return 0 if report["ok"] else 1
