"""`gated clock reset --config FILE`: forget the clock trust a gate has persisted.

For a gate that took a bad time beacon (docs/protocol.md, "Clock policy"): its persisted trusted
time, last beacon sequence, same-boot anchor and recorded disagreement are cleared, so the next
NTP reading, RTC or beacon sets the time afresh. Run it with the gate stopped (`systemctl stop
gated`): a running gate keeps what it knows in memory and would write it back.
"""

from __future__ import annotations

import time

from gated.cli.main import CommandError


def register(sub) -> None:
    p = sub.add_parser("clock", help="the gate's persisted clock trust (reset after a bad time beacon)")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    r = actions.add_parser("reset", help="forget the persisted trusted time, beacon sequence and anchor (gate stopped)")
    r.add_argument(
        "--config", default="/etc/gated/gated.toml", help="configuration file (default /etc/gated/gated.toml)"
    )
    r.add_argument(
        "--not-before",
        metavar="TIME",
        help="beacons made before this time (minus a minute) stay refused, so an old signed beacon "
        "replayed cannot set the clock back (RFC 3339 UTC, e.g. 2026-06-01T18:00:00Z; default: "
        "this machine's clock now: check it first, `date -u`)",
    )
    r.set_defaults(func=run_reset)


def _when(ms) -> str:
    if not isinstance(ms, int) or ms <= 0:
        return "none"
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))


def run_reset(args) -> int:
    from gated.gate import config
    from gated.gate.clock import SEQ_KEY, TRUSTED_KEY, reset_trust
    from gated.gate.store import GateStore

    try:
        cfg = config.load(args.config)
    except config.ConfigError as exc:
        raise CommandError(f"configuration problems:\n{exc}") from None
    if not cfg.gate.database.exists():
        raise CommandError(f"{cfg.gate.database}: no state database, nothing to reset")
    if args.not_before is not None:
        from gated.keys import parse_time

        try:
            not_before_ms = parse_time(args.not_before) * 1000
        except ValueError as exc:
            raise CommandError(f"--not-before {args.not_before!r}: {exc}") from None
    else:
        not_before_ms = int(time.time() * 1000)
    with GateStore(cfg.gate.database, site=cfg.gate.site, gate=cfg.gate.id) as store:
        before = reset_trust(store, not_before_ms)
    print(
        f"{cfg.gate.database}: clock trust reset (trusted time was {_when(before[TRUSTED_KEY])}, "
        f"beacon sequence {before[SEQ_KEY] if before[SEQ_KEY] is not None else 'none'}); "
        f"the next NTP reading, RTC or beacon made after {_when(not_before_ms)} (less a minute) sets the time"
    )
    return 0
