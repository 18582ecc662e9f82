"""`gated` command line: one module per command group under gated/cli/, each with register().

Exit codes everywhere: 0 success (or admit), 1 a negative answer (deny, a failed check),
2 a usage error or a fault, with a message on stderr saying what to do.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from gated import __version__
from gated.core.errors import GatedError

COMMAND_MODULES = (
    "gated.cli.keys",
    "gated.cli.replace",
    "gated.cli.admissions",
    "gated.cli.issue",
    "gated.cli.revoke",
    "gated.cli.verify",
    "gated.cli.scan",
    "gated.cli.wallet",
    "gated.cli.beacon",
    "gated.cli.clock",
    "gated.cli.ledger",
    "gated.cli.fleet",
    "gated.cli.certs",
    "gated.cli.wiring",
    "gated.cli.report",
    "gated.cli.run",
    "gated.cli.doctor",
    "gated.cli.show",
    "gated.cli.sim",
    "gated.cli.pretix",
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
    from gated.cli.options import GatedParser, grouped_help

    parser = GatedParser(
        prog="gated",
        usage="gated [-h] [--version] COMMAND ...",
        description="Offline ticket validation for gates and turnstiles.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="`gated COMMAND --help` says more about each.",
    )
    parser.add_argument("--version", action="version", version=f"gated {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", help=argparse.SUPPRESS)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    # one flat list of 25 commands reads badly: the same list, by what each is for
    parser.description += "\n\n" + grouped_help(sub)
    sub._choices_actions.clear()  # noqa: SLF001 -- shown grouped above instead
    return parser


def main(argv: list[str] | None = None) -> int:
    from gated.cli.options import ARGV

    ARGV[:] = sys.argv[1:] if argv is None else argv
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
