"""`gated` command line: one module per command group under gated/commands/, each with register().

Exit codes everywhere: 0 success (or admit), 1 a negative answer (deny, a failed check),
2 a usage error or a fault, with a message on stderr saying what to do.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from gated.core.errors import GatedError
from gated import __version__

COMMAND_MODULES = (
    "gated.commands.keys",
    "gated.commands.issue",
    "gated.commands.revoke",
    "gated.commands.verify",
    "gated.commands.scan",
    "gated.commands.wallet",
    "gated.commands.beacon",
    "gated.commands.clock",
    "gated.commands.ledger",
    "gated.commands.fleet",
    "gated.commands.certs",
    "gated.commands.wiring",
    "gated.commands.report",
    "gated.commands.run",
    "gated.commands.doctor",
    "gated.commands.sim",
    "gated.commands.pretix",
)


class CommandError(GatedError):
    """A problem the user can fix; printed without a traceback, exit code 2."""


def iso_option(text: str | None, option: str, default=None):
    """An ISO 8601 date or time option as unix seconds (`default` when not given)."""
    from gated.keys import parse_time

    if text is None:
        return default
    try:
        return parse_time(text)
    except ValueError:
        raise CommandError(f"{option} {text!r} is not an ISO 8601 date or time") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gated", description="Offline ticket validation for gates and turnstiles.")
    parser.add_argument("--version", action="version", version=f"gated {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except GatedError as exc:  # every refusal or fault gated raises knowingly: one line, exit 2
        print(f"gated {args.command}: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"gated {args.command}: {exc.strerror or exc}: {exc.filename or ''}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    # `python -m gated.cli`: run the imported module's main, whose except clauses catch the
    # gated.cli.CommandError the commands raise (this __main__ module has its own copy of the class)
    from gated.cli import main as _main

    sys.exit(_main())
