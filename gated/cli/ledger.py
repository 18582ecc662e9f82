"""`gated ledger`, `gated reconcile`, `gated publish-revocations`: the central side of the uplink."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path

from gated.cli.main import CommandError
from gated.cli.options import number
from gated.cli.stopping import stop_on_signals


def register(sub) -> None:
    from gated.mqtturl import add_broker_arguments

    p = sub.add_parser(
        "ledger",
        help="collect every gate's events into a ledger database (exactly once, checked); "
        "`gated ledger copy --from DB --to DB` carries one between SQLite and PostgreSQL",
        description="Collect every gate's events into a ledger database, or, as `gated ledger copy "
        "--from DB --to DB`, carry a ledger whole between SQLite and PostgreSQL "
        "(gated/central/ledgercopy.py).",
    )
    p.add_argument("action", nargs="?", choices=("copy",), help="copy: carry a ledger from --from to --to")
    p.add_argument("--from", dest="copy_from", metavar="DB", help="copy: the ledger to read (SQLite file or URL)")
    p.add_argument("--to", dest="copy_to", metavar="DB", help="copy: the ledger to write (made if absent)")
    add_broker_arguments(p, required=False)
    p.add_argument("--site")
    p.add_argument(
        "--db",
        help="ledger database: a SQLite file (created if absent) or a "
        "postgresql://user@host/dbname URL (needs gated[central]); the schema is made or migrated",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="one line per event stored")
    p.add_argument("--keyring", help="keyring with the gates' device keys (role device, named after the gate)")
    p.add_argument(
        "--tickets",
        action="append",
        default=[],
        metavar="CSV",
        help="tickets.csv from `gated issue --out`: admissions allowed per ticket (repeat)",
    )
    p.add_argument(
        "--group",
        help="shared-subscription group: the ledgers of a group split the events ($share/GROUP/...); "
        "without it every ledger keeps a full copy (see docs/protocol.md: Mosquitto 2.0.11 loses shared "
        "subscriptions on a restart)",
    )
    p.add_argument(
        "--partition",
        metavar="I/N",
        type=_partition,
        help="one of N ledger workers sharing one database: store only the gates whose CRC-32 of the id "
        "mod N is I (0-based); each worker has a plain subscription and its own client id "
        "(see docs/central.md)",
    )
    p.add_argument(
        "--signing-key",
        metavar="FILE",
        help="the ledger's private key (PEM, `gated keys new ledger`): it signs `committed` and the "
        "occupancy; the gates trust its public half with role `ledger`. Without it gates ignore both",
    )
    p.add_argument(
        "--no-committed",
        dest="committed",
        action="store_false",
        help="do not publish the per-gate `committed` seq (gates then keep only the broker's PUBACK)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=min(4, os.cpu_count() or 1),
        help="threads checking signatures (default: CPUs, at most 4)",
    )
    p.add_argument(
        "--verify",
        choices=("every", "chain"),
        default="every",
        help="every (default): check each event's own signature; chain: check the signature of the "
        "last event of each run of one gate's events linked by their hashes in a batch, which vouches "
        "for the content of the whole run (faster catch-up; the other events' own signatures are "
        "then not checked: docs/central.md)",
    )
    p.add_argument(
        "--metrics",
        metavar="HOST:PORT",
        help="serve Prometheus metrics (GET /metrics) on this address, e.g. 127.0.0.1:9109 (a port alone: 127.0.0.1)",
    )
    p.add_argument(
        "--capacity",
        action="append",
        default=[],
        metavar="ZONE=N",
        help="people zone ZONE may hold (repeat): shown with the occupancy published on "
        "gated/v1/<site>/occupancy and in reports",
    )
    p.add_argument(
        "--day-starts",
        metavar="HH:MM",
        help="local time at which the occupancy published to the gates starts over, every day (a time "
        "the venue is empty; the same as the gates' [gate] day_starts); default: never",
    )
    p.add_argument(
        "--timezone", default="UTC", help="the venue's time zone for --day-starts (IANA, e.g. Europe/Berlin)"
    )
    p.add_argument("--exit-after", type=number(), metavar="SECONDS", help="stop after this long (for scripts)")
    p.add_argument(
        "--admissions-key",
        metavar="KEY",
        help="a revocation signing key: publish the admissions snapshot a replaced gate asks for in its "
        "status by itself (else the operator runs `gated admissions publish`)",
    )
    p.set_defaults(func=run_ledger)

    r = sub.add_parser("reconcile", help="per gate: events, admits, denies, gaps, chain breaks; over-admitted tickets")
    r.add_argument("--db", required=True, help="ledger database: a SQLite file or a postgresql:// URL")
    r.add_argument("--tickets", action="append", default=[], metavar="CSV", help="import tickets.csv first (repeat)")
    r.add_argument("--json", action="store_true", help="print the report as JSON")
    r.add_argument(
        "--verify-signatures",
        metavar="KEYRING",
        help="check every stored event's own signature again with this keyring's device keys (an audit "
        "of what `gated ledger --verify chain` stored on a later event's signature); any bad one "
        "makes the report not clean",
    )
    r.set_defaults(func=run_reconcile)

    u = sub.add_parser("publish-revocations", help="publish revocation update files, retained, to a site's gates")
    add_broker_arguments(u)
    u.add_argument("--site", required=True)
    u.add_argument("--keyring", help="verify the updates against this keyring before publishing")
    u.add_argument("files", nargs="+", metavar="FILE", help="update files from `gated revoke` (all parts)")
    u.set_defaults(func=run_publish)


def _partition(text: str) -> tuple[int, int]:
    import argparse

    i, slash, n = text.partition("/")
    if not (slash and i.isdigit() and n.isdigit() and 0 <= int(i) < int(n)):
        raise argparse.ArgumentTypeError(f"{text!r}: give I/N with 0 <= I < N, e.g. 0/2")
    return int(i), int(n)


def _settings(args, client_id, *, tool: str | None = None):
    """`tool`: a short-lived tool's name (publish-revocations, pretix): it refuses a running
    component's certificate (gated/identity.py), whose CN the broker would take as its client id."""
    from gated.identity import ComponentIdentity, refuse_component_identity
    from gated.mqtturl import BrokerUrlError, settings_from_args

    try:
        settings = settings_from_args(args, client_id=client_id)
        if tool is not None:
            refuse_component_identity(settings, tool)
        return settings
    except (BrokerUrlError, ComponentIdentity) as exc:
        raise CommandError(str(exc)) from None


def _keyring(path, *, may_be_empty: bool = False):
    """The keyring at `path` (None without one). `may_be_empty`: a directory with no keyring.toml
    yet is the ledger's keyring before the first `gated keys enrol --approve`."""
    from gated.keys import KEYRING_FILE, load_keyring

    if not path:
        return None
    if may_be_empty and not (Path(path) / KEYRING_FILE).exists():
        print(
            f"ledger: {path} trusts no device key yet: signatures are not checked until "
            f"`gated keys enrol --approve KID` (the ledger then reloads it)",
            file=sys.stderr,
        )
        return None
    return load_keyring(path)


def _open_ledger(args, keyring=None, site=None, workers=1, partition=None):
    from gated.central.ledger import Ledger, LedgerError

    try:
        ledger = Ledger(
            args.db,
            keyring=keyring,
            site=site,
            workers=workers,
            partition=partition,
            verify=getattr(args, "verify", "every"),
        )
        for csv_path in args.tickets:
            count = ledger.load_tickets(csv_path)
            print(f"{csv_path}: {count} tickets", file=sys.stderr)
    except LedgerError as exc:
        raise CommandError(str(exc)) from None
    return ledger


def run_copy(args) -> int:
    from gated.central.ledgercopy import LedgerError, copy_ledger

    if not (args.copy_from and args.copy_to):
        raise CommandError("gated ledger copy needs --from DB and --to DB")
    try:
        result = copy_ledger(args.copy_from, args.copy_to)
    except LedgerError as exc:
        raise CommandError(str(exc)) from None
    print(f"copied {args.copy_from} -> {args.copy_to}: {result.summary()}")
    return 0


def _hold_worker(args, ledger):
    """One worker per site and partition (or one whole ledger per site and database), before it
    connects: a second would take the first's MQTT session. A lock file beside a SQLite ledger, a
    session-level advisory lock on PostgreSQL (held by the ledger's connection). Not with --group,
    whose members share the work on purpose."""
    from gated.central.ledgerdb import is_database_url
    from gated.lockfile import RoleTaken, hold

    if args.group:
        return None
    part = f"p{args.partition[0]}of{args.partition[1]}" if args.partition else "all"
    what = f"gated ledger for site {args.site}" + (
        f" partition {args.partition[0]}/{args.partition[1]}" if args.partition else ""
    )
    if is_database_url(args.db):
        (got,) = ledger.query("SELECT pg_try_advisory_lock(hashtext(?))", (f"gated-ledger:{args.site}:{part}",))[0]
        if not got:
            ledger.close()
            raise CommandError(f"{what} is already running on {ledger.where}; stop it first")
        return None
    try:
        return hold(f"{args.db}.{args.site}-{part}.lock", what)
    except RoleTaken as exc:
        ledger.close()
        raise CommandError(str(exc)) from None


def run_ledger(args) -> int:
    from gated.central.ledger_service import LedgerService
    from gated.daystart import DayStart, DayStartError

    if args.action == "copy":
        return run_copy(args)
    missing = [o for o, v in (("--broker", args.broker), ("--site", args.site), ("--db", args.db)) if not v]
    if missing:
        raise CommandError(f"{', '.join(missing)} required (or: gated ledger copy --from DB --to DB)")
    settings = _settings(args, None)
    if args.partition and args.group:
        raise CommandError("give --partition or --group, not both")
    try:
        day_start = DayStart(args.day_starts, args.timezone) if args.day_starts is not None else None
    except DayStartError as exc:
        raise CommandError(f"--day-starts/--timezone: {exc}") from None
    signing_key = None
    if args.signing_key:
        from gated.keys import KeyringError, load_private_key

        try:
            signing_key = load_private_key(args.signing_key)
        except (OSError, KeyringError, ValueError, TypeError) as exc:
            raise CommandError(f"--signing-key {args.signing_key}: {exc}") from None
    admissions_key = _admissions_key(args.admissions_key)
    ledger = _open_ledger(
        args, _keyring(args.keyring, may_be_empty=True), args.site, max(1, args.workers), args.partition
    )
    _set_capacities(ledger, args.capacity)
    lock = _hold_worker(args, ledger)
    service = LedgerService(
        ledger,
        settings,
        site=args.site,
        group=args.group,
        publish_committed=args.committed,
        day_start=day_start,
        signing_key=signing_key,
        keyring_dir=args.keyring or None,
        admissions_key=admissions_key,
    )
    if args.verbose:
        service.on_stored = _print_stored
    with stop_on_signals() as stop:  # SIGTERM and Ctrl-C: a clean stop between two batches
        return _serve(args, settings, ledger, service, lock, stop)


def _serve(args, settings, ledger, service, lock, stop: threading.Event) -> int:
    """Run the ledger service until `stop`, then close everything and say what it took in."""
    from gated.central.ledger import LedgerError
    from gated.lockfile import release

    if args.exit_after is not None:
        timer = threading.Timer(args.exit_after, stop.set)
        timer.daemon = True
        timer.start()
    server = None
    if args.metrics:
        from gated.central.ledger_metrics import LedgerCollector
        from gated.metrics_http import MetricsError, serve

        try:
            figures = LedgerCollector(args.db, args.site, received=lambda: service.received).start()
            server = serve(args.metrics, figures)
        except MetricsError as exc:
            figures.stop()
            ledger.close()
            raise CommandError(f"--metrics: {exc}") from None
        print(f"ledger: metrics on http://{server.address}/metrics", file=sys.stderr)
    part = f" partition {args.partition[0]}/{args.partition[1]}" if args.partition else ""
    print(f"ledger: {settings.url} site {args.site}{part} -> {ledger.where}", file=sys.stderr)
    service.start()
    deadline = time.monotonic() + 10
    while not (subscribed := service.link.wait_subscribed(0.2)) and not stop.is_set():
        if time.monotonic() >= deadline:
            break
    if subscribed:
        print("ledger: subscribed", file=sys.stderr, flush=True)
    elif not stop.is_set():  # it goes on trying; say why it could not yet
        from gated.brokerdiag import probe

        cause = probe(settings, 5.0) or "the broker accepts TCP and TLS but no subscription was granted yet"
        print(f"ledger: not connected after 10 s ({cause}); still trying", file=sys.stderr, flush=True)
    try:
        service.run(stop)
    except LedgerError as exc:
        raise CommandError(f"{exc}") from None
    finally:
        service.stop()
        if server is not None:
            server.shutdown()
            figures.stop()
        ledger.close()
        release(lock)
    print(
        f"ledger: {service.received} messages, {service.stored} new events, {service.duplicates} duplicates",
        file=sys.stderr,
    )
    return 0


def _admissions_key(path):
    """The revocation key `--admissions-key` names (None without the option)."""
    if path is None:
        return None
    from gated.keys import load_private_key

    try:
        return load_private_key(path)
    except (OSError, ValueError) as exc:
        raise CommandError(f"--admissions-key {path}: {exc}") from None


def _print_stored(event: dict) -> None:
    what = " ".join(str(event[k]) for k in ("decision", "reason", "state") if event.get(k))
    ticket = f" ticket {str(event['ticket'])[:12]}" if event.get("ticket") else ""
    print(
        f"ledger: stored {event['id']} {event.get('ts', '')} {event.get('kind', '')} {what}{ticket}".rstrip(),
        file=sys.stderr,
        flush=True,
    )


def _set_capacities(ledger, options) -> None:
    from gated.central.occupancy import parse_capacity

    for option in options:
        try:
            zone, capacity = parse_capacity(option)
        except ValueError as exc:
            raise CommandError(f"--capacity {exc}") from None
        ledger.set_capacity(zone, capacity)


def run_reconcile(args) -> int:
    from gated.central.ledger_report import format_report
    from gated.central.ledgerdb import ledger_exists

    if not ledger_exists(args.db):
        raise CommandError(f"{args.db}: no ledger database here")
    keyring = _keyring(args.verify_signatures) if args.verify_signatures else None
    with _open_ledger(args) as ledger:
        report = ledger.report()
        if keyring is not None:
            audit = report["signature_audit"] = ledger.audit_signatures(keyring)
            report["clean"] = report["clean"] and not audit["bad"]
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0 if report["clean"] else 1


def run_publish(args) -> int:
    from gated.central.publisher import PublishError, publish_revocations
    from gated.core.revocation import UpdateRejected

    blobs = [Path(f).read_bytes() for f in args.files]
    settings = _settings(args, None, tool="gated publish-revocations")
    try:
        result = publish_revocations(settings, args.site, blobs, keyring=_keyring(args.keyring))
    except (PublishError, UpdateRejected) as exc:
        raise CommandError(str(exc)) from None
    for topic in result.published:
        print(f"published {topic}")
    for topic in result.cleared:
        print(f"cleared   {topic} (superseded)")
    return 0
