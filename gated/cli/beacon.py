"""`gated beacon`: publish signed time beacons for a site's gates (PROTOCOL §7)."""

from __future__ import annotations

from gated.cli.main import CommandError
from gated.cli.options import add_signing_key, number, signing_key
from gated.cli.stopping import stop_on_signals


def register(sub) -> None:
    p = sub.add_parser("beacon", help="publish signed time beacons (retained) on gated/v1/<site>/time")
    from gated.mqtturl import add_broker_arguments

    add_broker_arguments(p)
    p.add_argument("--site", required=True)
    add_signing_key(p, "command private key; gates trust its public half as `command`", trap_key=False)
    p.add_argument(
        "--interval", type=number(minimum=0.1), default=10.0, help="seconds between beacons (default 10, at least 0.1)"
    )
    p.add_argument("--count", type=int, help="stop after N beacons (default: run until interrupted)")
    p.set_defaults(func=run)


def run(args) -> int:
    from gated import keys
    from gated.central.beacon import BeaconPublishError, BeaconSource, connect, publish_beacons
    from gated.mqtturl import BrokerUrlError, settings_from_args

    if args.count is not None and args.count < 1:
        raise CommandError("--count must be at least 1")
    if args.cert_key and not args.cert and not args.signing_key:  # `--key command.key`, the old spelling
        raise CommandError(
            f"--key is the TLS client key (with --cert); give the command key as --signing-key {args.cert_key}"
        )
    path = signing_key(args)
    try:
        key = keys.load_private_key(path)
    except ValueError as exc:
        raise CommandError(f"--signing-key {path}: {exc}") from None
    try:
        settings = settings_from_args(args)
    except BrokerUrlError as exc:
        raise CommandError(str(exc)) from None
    try:
        link = connect(settings, args.client_id or settings.client_id or f"gated-beacon-{args.site}")
    except BeaconPublishError as exc:
        raise CommandError(str(exc)) from None
    try:
        with stop_on_signals() as stop:  # SIGTERM (systemd stop) and Ctrl-C: between two beacons, exit 0
            acknowledged = publish_beacons(
                link,
                BeaconSource(key, args.site),
                interval_s=args.interval,
                count=args.count,
                sleep=stop.wait,
                stopped=stop.is_set,
            )
    finally:
        link.stop()
    if args.count is not None:
        print(f"{acknowledged} of {args.count} beacon(s) acknowledged on gated/v1/{args.site}/time")
    return 0 if args.count is None or acknowledged == args.count else 1
