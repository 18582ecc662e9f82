"""`gated run --config FILE`: the gate daemon (what gated.service starts)."""

from __future__ import annotations

from gated.cli import CommandError


def register(sub) -> None:
    p = sub.add_parser("run", help="run the gate: camera, decisions, turnstile, uplink (systemd: gated.service)")
    p.add_argument("--config", default="/etc/gated/gated.toml", help="configuration file (default /etc/gated/gated.toml)")
    p.set_defaults(func=run)


def run(args) -> int:
    from gated import config, daemon
    from gated import logging as gated_logging

    try:
        cfg = config.load(args.config)
    except config.ConfigError as exc:
        raise CommandError(f"configuration problems:\n{exc}") from None
    gated_logging.setup(cfg.logging.level, cfg.logging.format)
    return daemon.run(cfg)
