"""`gated beacon`: publish signed time beacons for a site's gates (PROTOCOL §7)."""

from __future__ import annotations

import signal
import threading

from gated.cli.main import CommandError


def register(sub) -> None:
    p = sub.add_parser("beacon", help="publish signed time beacons (retained) on gated/v1/<site>/time")
    p.add_argument("--broker", required=True, metavar="URL",
                   help="mqtt://host[:port] or mqtts://host[:port] (user:password@ and ?ca=&cert=&key= allowed)")
    p.add_argument("--site", required=True)
    p.add_argument("--key", required=True, help="command private key (PEM); gates trust its public half as `command`")
    p.add_argument("--interval", type=float, default=10.0, help="seconds between beacons (default 10)")
    p.add_argument("--count", type=int, help="stop after N beacons (default: run until interrupted)")
    p.add_argument("--client-id", help="MQTT client id (default gated-beacon-<site>)")
    p.set_defaults(func=run)


def run(args) -> int:
    from gated import keys
    from gated.central.beacon import BeaconPublishError, BeaconSource, connect, publish_beacons
    from gated.mqtturl import BrokerUrlError, parse_broker_url

    if args.interval <= 0:
        raise CommandError("--interval must be above 0 seconds")
    if args.count is not None and args.count < 1:
        raise CommandError("--count must be at least 1")
    try:
        key = keys.load_private_key(args.key)
    except ValueError as exc:
        raise CommandError(f"--key {args.key}: {exc}") from None
    try:
        settings = parse_broker_url(args.broker)
    except BrokerUrlError as exc:
        raise CommandError(str(exc)) from None
    try:
        link = connect(settings, args.client_id or settings.client_id or f"gated-beacon-{args.site}")
    except BeaconPublishError as exc:
        raise CommandError(str(exc)) from None
    stop = threading.Event()  # SIGTERM (systemd stop) and SIGINT end the loop between two beacons: exit 0
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        acknowledged = publish_beacons(link, BeaconSource(key, args.site), interval_s=args.interval,
                                       count=args.count, sleep=stop.wait, stopped=stop.is_set)
    finally:
        link.stop()
    if args.count is not None:
        print(f"{acknowledged} of {args.count} beacon(s) acknowledged on gated/v1/{args.site}/time")
    return 0 if args.count is None or acknowledged == args.count else 1
