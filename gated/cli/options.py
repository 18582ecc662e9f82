"""One vocabulary for the options every command shares, and a parser that helps with pasted codes.

- TLS to a broker: `--ca`, `--cert`, `--key` on every command that talks to one
  (gated.mqtturl.add_broker_arguments); `--key` is always the client certificate's key.
- Signing: `--signing-key` wherever something is signed (tickets, revocation updates, commands,
  time beacons). `--key` never names a signing key: given where a signing key is meant, the
  error says what to write instead (an option that meant two things would sign with a TLS key or
  log in with a signing key).
- `gated --help` lists the commands by what they are for (GROUPS).
- An argument error where a word looks like a ticket's QR text says to quote it.
- Durations (`--timeout`, `--watch`, `--interval`, ...) and factors (`--speed`) are read by
  `number()`: finite, in the option's range, else argparse's one-line error (exit 2). NaN passed
  every `<= 0` check and made waits spin; 0 or a negative made loops print or publish back to back.
"""

from __future__ import annotations

import argparse
import math
import re
import sys

from gated.core.errors import GatedError

GROUPS = (
    ("the gate", ("run", "doctor", "check-config", "show", "relay-off", "clock", "scan", "wiring")),
    ("tickets and keys", ("keys", "issue", "verify", "revoke", "wallet", "certs")),
    ("the central side", ("ledger", "reconcile", "report", "publish-revocations", "beacon", "pretix")),
    ("the fleet", ("status", "command")),
    ("rehearsal", ("sim",)),
)

# a QR text pasted as an argument: GT1:/GT2: codes, or a long run of code characters (pretix secrets)
QR_LIKE = re.compile(r"^(GT[12]:\S+|[A-Za-z0-9+/=_*.~-]{24,})$")


ARGV: list[str] = []  # the words being parsed (gated.cli.main.main sets it), for the hint


class GatedParser(argparse.ArgumentParser):
    """argparse with one more sentence on an error when a word looks like a pasted QR code."""

    def error(self, message: str):
        hint = quoting_hint(message, ARGV or sys.argv[1:])
        super().error(message + hint)


def quoting_hint(message: str, argv: list[str]) -> str:
    """The hint, when the error is about words that look like a QR text (or about extra words, when
    such a word was given): a code split by the shell, or with characters the shell took."""
    quoted = re.findall(r"'([^']*)'", message)
    extra = message.split(":", 1)[-1].split() if "unrecognized arguments" in message else []
    words = [w for w in quoted + extra if QR_LIKE.match(w)]
    if not words and extra:
        words = [w for w in argv if QR_LIKE.match(w)]
    if not words:
        return ""
    return (
        "\nIf that is a ticket's QR text, put it in single quotes, whole, as one argument: "
        f"'{words[0][:40]}{'...' if len(words[0]) > 40 else ''}' (a shell splits or changes unquoted codes)"
    )


YEAR_S = 365 * 86400  # the longest wait an option takes: far beyond any use, far below what sleep() takes


def number(*, minimum: float = 0.0, zero: bool = False, maximum: float = YEAR_S, unit: str = "seconds"):
    """An argparse `type=`: a finite number above 0 (at least `minimum`, when given; or exactly 0,
    where `zero`) and at most `maximum`."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if (zero and value == 0) or (value > 0 and minimum <= value <= maximum):
            return value
        most = f"{maximum:g}" if maximum < 1e6 else f"{maximum:.0f}"
        if zero or minimum > 0:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number of {unit} from {minimum:g} to {most}")
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of {unit} above 0, at most {most}")

    parse.__name__ = unit  # what argparse calls the type in its own messages
    return parse


def grouped_help(sub: argparse._SubParsersAction) -> str:  # noqa: SLF001 -- argparse's own subparser type
    """The commands by group, each with its one-line help, for `gated --help`."""
    helps = {action.dest: action.help for action in sub._choices_actions}  # noqa: SLF001
    lines, seen = [], set()
    for title, names in GROUPS:
        present = [n for n in names if n in helps]
        if not present:
            continue
        lines.append(f"{title}:")
        lines += [f"  {name:<20} {helps[name]}" for name in present]
        seen.update(present)
    rest = [n for n in helps if n not in seen]
    if rest:
        lines.append("more:")
        lines += [f"  {name:<20} {helps[name]}" for name in rest]
    return "\n".join(lines)


def add_signing_key(parser: argparse.ArgumentParser, what: str, *, trap_key: bool = True) -> None:
    """`--signing-key PEM` (`what`: whose key, e.g. "issuer private key"). `trap_key`: also catch a
    `--key` meant as the signing key (commands without TLS options), to say the new spelling."""
    parser.add_argument("--signing-key", metavar="PEM", help=f"{what} (PEM)")
    if trap_key:
        parser.add_argument("--key", dest="signing_key_as_key", help=argparse.SUPPRESS)


class SigningKeyMissing(GatedError):
    """No --signing-key (or --key where one was meant): the message says what to write."""


def signing_key(args) -> str:
    """The --signing-key path; SigningKeyMissing saying what to write when it is missing."""
    if args.signing_key:
        return args.signing_key
    misplaced = getattr(args, "signing_key_as_key", None)
    if misplaced:
        raise SigningKeyMissing(
            f"--key names a TLS client key everywhere in gated; give the signing key as --signing-key {misplaced}"
        )
    raise SigningKeyMissing("--signing-key PEM is required (the private key that signs)")


def deprecated(old: str, new: str) -> None:
    print(f"gated: {old} is deprecated and will go; write {new}", file=sys.stderr)
