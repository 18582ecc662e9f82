"""`gated run --config FILE`: the gate daemon (what gated.service starts)."""

from __future__ import annotations

from gated.cli.main import CommandError


def register(sub) -> None:
    p = sub.add_parser("run", help="run the gate: camera, decisions, turnstile, uplink (systemd: gated.service)")
    p.add_argument(
        "--config", default="/etc/gated/gated.toml", help="configuration file (default /etc/gated/gated.toml)"
    )
    p.set_defaults(func=run)
    r = sub.add_parser(
        "relay-off",
        help="drive the relay to its inactive level (gated.service's stop step: "
        "after a crash the pin is where the process left it)",
    )
    r.add_argument(
        "--config", default="/etc/gated/gated.toml", help="configuration file (default /etc/gated/gated.toml)"
    )
    r.set_defaults(func=relay_off)


def run(args) -> int:
    from gated import logging as gated_logging
    from gated.gate import config, daemon

    try:
        cfg = config.load(args.config)
    except config.ConfigError as exc:
        raise CommandError(f"configuration problems:\n{exc}") from None
    gated_logging.setup(cfg.logging.level, cfg.logging.format)
    import structlog

    from gated.gate import preflight

    for key, text in preflight.warnings(cfg):  # as check-config says them: keys that do nothing
        structlog.get_logger("gated.config").warning("configuration key does nothing", key=key, why=text)
    return daemon.run(cfg)


def relay_off(args) -> int:
    from gpiozero.exc import GPIOZeroError

    from gated.gate import build, config, turnstile
    from gated.gate.boards import BoardError

    try:
        cfg = config.load(args.config)
    except config.ConfigError as exc:  # the board profile is part of the configuration
        raise CommandError(f"relay not switched off: configuration problems:\n{exc}") from None
    try:
        board = build.load_board(cfg)
        turnstile.relay_off(board, pin_factory=build.make_pin_factory(cfg))
    except (BoardError, GPIOZeroError, build.StartupError) as exc:
        raise CommandError(f"relay not switched off: {exc}") from None
    level = "low" if board.relay.active_high else "high"
    print(f"relay {board.relay.pin} off (driven {level}, board {board.name})")
    return 0
