"""`gated status` and `gated command`: a site's gates from the operator's desk (gated/central/fleet.py)."""

from __future__ import annotations

import argparse
import json
import sys
import time

from gated.cli.main import CommandError
from gated.cli.options import add_signing_key, deprecated, number, signing_key
from gated.cli.stopping import stop_on_signals

COMMAND_WORDS = ("open", "lock", "unlock", "emergency_on", "emergency_off")
WATCH_MIN_S = 0.5  # `status --watch`: a table more often than this is one nobody can read


def register(sub) -> None:
    from gated.mqtturl import add_broker_arguments

    s = sub.add_parser(
        "status", help="every gate of a site: online, mode, revocation list, clock, outbox, scans, alarms"
    )
    add_broker_arguments(s)
    s.add_argument("--site", required=True)
    s.add_argument("--json", action="store_true", help="print the gates once as a JSON list and exit")
    s.add_argument(
        "--watch",
        type=number(minimum=WATCH_MIN_S),
        nargs="?",
        const=2.0,
        metavar="SECONDS",
        help=f"refresh the table every SECONDS (default 2, at least {WATCH_MIN_S:g}) until interrupted",
    )
    s.add_argument("--timeout", type=number(), default=10.0, help="seconds to wait for the broker (default 10)")
    s.set_defaults(func=run_status)

    c = sub.add_parser("command", help="send a signed command to one gate or all, and wait for each to confirm it")
    add_broker_arguments(c)
    c.add_argument("--cert-key", dest="legacy_cert_key", help=argparse.SUPPRESS)  # the old spelling of --key
    c.add_argument("--site", required=True)
    add_signing_key(c, "the command private key; gates trust its public half with role `command`", trap_key=False)
    c.add_argument(
        "--timeout", type=number(), default=10.0, help="seconds to wait for the gates' acknowledgements (default 10)"
    )
    c.add_argument("--json", action="store_true", help="print the results as JSON")
    c.add_argument("gate", nargs="?", help="the gate id (or --all)")
    c.add_argument("--all", action="store_true", help="every gate the broker has a status for")
    c.add_argument("command_word", metavar="COMMAND", choices=COMMAND_WORDS, help=" | ".join(COMMAND_WORDS))
    c.set_defaults(func=run_command)


def _watch(args, stopped):
    """The site's gates, read from the broker: connected, subscribed and its retained messages taken
    (or as far as it got before `stopped` was set)."""
    from gated.central.fleet import FleetError, SiteWatch
    from gated.identity import ComponentIdentity, refuse_component_identity
    from gated.mqtturl import BrokerUrlError, settings_from_args

    try:
        settings = settings_from_args(args)
        refuse_component_identity(settings, f"gated {args.command}")
    except (BrokerUrlError, ComponentIdentity) as exc:
        raise CommandError(str(exc)) from None
    watch = SiteWatch(settings, args.site)
    try:
        watch.start(args.timeout, until=stopped.is_set)
        watch.settle(until=stopped.is_set)
    except FleetError as exc:
        watch.stop()
        raise CommandError(str(exc)) from None
    return watch


# Both commands run under stop_on_signals from their first connect: Ctrl-C (or SIGTERM) ends a wait
# between two steps. As a KeyboardInterrupt it could land inside paho's code (holding one of its
# locks) and the disconnect in `finally` wait for it for ever. Exit 130, as the shell reports a
# program Ctrl-C ended.
STOPPED = 130


def run_status(args) -> int:
    from gated.central.fleet import format_table

    with stop_on_signals() as stopped:
        watch = _watch(args, stopped)
        try:
            if stopped.is_set():
                return STOPPED
            if args.json:
                print(json.dumps(watch.rows(), indent=2))
                return 0
            if args.watch is None:
                print(format_table(watch.rows(), args.site, watch.zones))
                return 0
            clear = "\x1b[H\x1b[2J" if sys.stdout.isatty() else ""
            while not stopped.is_set():
                print(f"{clear}{time.strftime('%H:%M:%S')}  (every {args.watch:g} s; Ctrl-C to stop)")
                print(format_table(watch.rows(), args.site, watch.zones), flush=True)
                watch.pump(args.watch, until=stopped.is_set)
            return STOPPED
        finally:
            watch.stop()


def _load_command_key(path: str):
    from gated import keys

    fix = (
        "--signing-key must be the command private key (`gated keys generate --name command` makes one; the gates "
        "trust its .pub with `gated keys trust --role command`)"
    )
    try:
        return keys.load_private_key(path)
    except OSError as exc:
        raise CommandError(f"cannot read the command key {path} ({exc.strerror}); {fix}") from None
    except (ValueError, TypeError) as exc:
        raise CommandError(f"{path} is not a usable command key ({exc}); {fix}") from None


def run_command(args) -> int:
    if bool(args.gate) == bool(args.all):
        raise CommandError("name one gate, or give --all")
    if args.legacy_cert_key:
        if args.cert_key and not args.signing_key:  # the old spelling: --key was the command key
            raise CommandError(
                f"--key is the TLS client key now and --cert-key is gone: write --signing-key "
                f"{args.cert_key} --key {args.legacy_cert_key}"
            )
        deprecated("--cert-key", "--key (the certificate's key, as on every other command)")
        args.cert_key = args.cert_key or args.legacy_cert_key
    if args.cert_key and not args.cert and not args.signing_key:  # `--key command.key`, the old spelling
        raise CommandError(
            f"--key is the TLS client key (with --cert); give the command key as --signing-key {args.cert_key}"
        )
    key = _load_command_key(signing_key(args))  # before any network: no key, no command
    from gated.central.fleet import FleetError

    with stop_on_signals() as stopped:
        watch = _watch(args, stopped)
        try:
            if stopped.is_set():
                print(f"gated command: stopped before sending {args.command_word}: nothing sent", file=sys.stderr)
                return STOPPED
            gates = sorted(watch.views) if args.all else [args.gate]
            if not gates:
                raise CommandError(f"the broker holds no gate status for site {args.site}: no gate to command")
            try:
                results = watch.command(key, gates, args.command_word, args.timeout, until=stopped.is_set)
            except FleetError as exc:
                raise CommandError(str(exc)) from None
        finally:
            watch.stop()
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        width = max(len(r["gate"]) for r in results)
        for r in results:
            print(
                f"{r['gate']:<{width}}  {args.command_word}: {'ok' if r['confirmed'] else 'NOT CONFIRMED'}"
                f"  {r['detail']}"
            )
    if stopped.is_set() and not all(r["confirmed"] for r in results):
        return STOPPED
    return 0 if all(r["confirmed"] for r in results) else 1
