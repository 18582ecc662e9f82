"""`gated verify`: judge one ticket text as a gate would, at a desk or in a script."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from gated.cli.main import CommandError, iso_option


def add_gate_options(p, *, event_required: bool = True) -> None:
    """The options that describe the gate judging a ticket (shared with `gated scan`)."""
    p.add_argument("--keyring", required=event_required, help="keyring directory (trusted public keys)")
    p.add_argument(
        "--event",
        action="append",
        required=event_required,
        default=None,
        help="event id this gate admits for (repeat for several)",
    )
    p.add_argument("--site", help="site name (default: the state's, or the revocation files')")
    p.add_argument("--zone", help="the gate's zone")
    p.add_argument("--skew", type=int, default=60, help="allowed clock skew in seconds (default 60)")
    p.add_argument("--state", help="gate state database (default: a temporary one)")
    p.add_argument(
        "--revocations", action="append", default=[], metavar="FILE", help="revocation update file(s) to apply first"
    )
    p.add_argument(
        "--checkin-list",
        metavar="FILE",
        help="a signed pretix check-in list (`gated pretix sync --out`): "
        "judge pretix tickets by it, as a gate holding it would",
    )
    p.add_argument(
        "--pretix-questions",
        choices=("deny", "admit"),
        default="deny",
        help="products whose check-in list asks questions: deny (default) or admit",
    )
    p.add_argument(
        "--product",
        action="append",
        default=None,
        metavar="NAME",
        help="admit only this product (repeat): a GT ticket type, a pretix item id or ITEM/VARIATION",
    )
    p.add_argument(
        "--pretix-entries",
        type=int,
        default=1,
        metavar="N",
        help="entries a pretix ticket allows (default 1, 0 = unlimited)",
    )
    p.add_argument(
        "--pretix-subevent",
        type=int,
        action="append",
        default=None,
        metavar="ID",
        help="pretix event series: admit only this date (subevent id; repeat)",
    )
    p.add_argument(
        "--at",
        metavar="ISO-TIME",
        help="judge as if the gate's clock read this time (UTC unless an "
        "offset is given), e.g. 2026-06-01T20:03:00+02:00",
    )
    p.add_argument("--now", help=argparse.SUPPRESS, default=None)  # unix seconds: for tests and replays


def register(sub) -> None:
    p = sub.add_parser("verify", help="decide one ticket text offline, as a gate would")
    add_gate_options(p)
    p.add_argument(
        "--record", action="store_true", help="record the admission in --state (a second scan is already_used)"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("text", help="the QR text (GT1:..., GT2:... or a pretix_sig1 secret)")
    p.set_defaults(func=run)


class GateSetup:
    """Keyring, store and gate context built from the gate options; revocation files applied."""

    def __init__(self, args):
        from gated import keys
        from gated.core import decide
        from gated.gate import store

        self.keyring = keys.load_keyring(args.keyring)
        self._tmp = None
        path = args.state
        if path is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="gated-verify-")
            path = Path(self._tmp.name) / "state.db"
        files = args.revocations + ([args.checkin_list] if getattr(args, "checkin_list", None) else [])
        site = args.site or _stored_site(path) or _site_of_files(files) or "local"
        self.store = store.GateStore(path, site=site, gate=_stored_gate(path) or "desk")
        self.now = float(args.now) if args.now else iso_option(args.at, "--at", default=None) or time.time()
        for file in args.revocations:
            self.apply_revocation_file(file)
        if getattr(args, "checkin_list", None):
            self.apply_checkin_list(args.checkin_list)
        self.context = decide.GateContext(
            site=site,
            events=frozenset(args.event),
            zone=args.zone,
            skew_s=args.skew,
            products=frozenset(args.product) if args.product else None,
            pretix_entries=args.pretix_entries,
            pretix_subevents=frozenset(args.pretix_subevent) if args.pretix_subevent else None,
            pretix_questions=getattr(args, "pretix_questions", "deny"),
        )

    def apply_checkin_list(self, file: str) -> None:
        from gated.gate import checkinlists

        blob = _read_message(file, "check-in list")
        if blob is None:
            return
        outcome = checkinlists.accept(self.store, blob, self.keyring, site=self.store.site)
        if outcome.status == "rejected" and outcome.code != "replay":
            held = f"v{outcome.version} stays" if outcome.version else "no list held"
            print(f"check-in list {file}: rejected ({outcome.code}): {outcome.detail}; {held}", file=sys.stderr)

    def apply_revocation_file(self, file: str) -> None:
        from gated.gate.revocations import apply_update

        blob = _read_message(file, "revocations")
        if blob is None:
            return
        outcome = apply_update(self.store, blob, self.keyring, site=self.store.site, now_ms=int(self.now * 1000))
        if outcome.status == "rejected":
            print(
                f"revocations {file}: rejected ({outcome.code}): {outcome.detail}; list stays at v{outcome.version}",
                file=sys.stderr,
            )
        elif outcome.code == "gap":
            print(f"revocations {file}: kept for later: {outcome.detail}", file=sys.stderr)
        for why in outcome.dropped:
            print(f"revocations {file}: {why}", file=sys.stderr)

    def close(self) -> None:
        self.store.close()
        if self._tmp is not None:
            self._tmp.cleanup()


def _read_message(file: str, what: str) -> bytes | None:
    """A signed message from a file, or None (said on stderr) if it cannot be read."""
    try:
        return Path(file).read_bytes()
    except OSError as exc:
        print(f"{what} {file}: rejected: cannot read ({exc.strerror})", file=sys.stderr)
        return None


def _peek_meta(path, key):
    import sqlite3

    if not Path(path).exists():
        return None
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    except sqlite3.Error:
        return None
    return row[0] if row else None


def _stored_site(path):
    return _peek_meta(path, "site")


def _stored_gate(path):
    return _peek_meta(path, "gate")


def _site_of_files(files) -> str | None:
    """The site named inside the first readable update (not yet trusted: the gate checks it later)."""
    from gated.core import cose

    for file in files:
        try:
            body = cose.loads_exact(cose.parse(Path(file).read_bytes()).payload)
        except (OSError, cose.CoseError):
            continue
        if isinstance(body, dict) and isinstance(body.get(1), str):
            return body[1]
    return None


def run(args) -> int:
    from gated.gate.validate import describe, record, scan_fields, validate

    if not args.event:
        raise CommandError("--event is required")
    if args.record and not args.state:
        raise CommandError("--record needs --state: without a state database there is nowhere to record the admission")
    setup = GateSetup(args)
    try:
        decision = validate(args.text, setup.keyring, setup.context, setup.store, setup.now)
        if args.record and decision.admit:
            rev = setup.store.revocation_state().version
            record(setup.store, decision, scan_fields(decision, setup.context, rev), int(setup.now * 1000))
    finally:
        setup.close()
    if args.json:
        claims = decision.ticket.claims if decision.ticket else None
        print(
            json.dumps(
                {
                    "decision": decision.word,
                    "reason": decision.reason.value,
                    "detail": decision.detail,
                    "ticket": decision.cti.hex() if decision.cti else None,
                    "event": claims.aud if claims else None,
                    "type": claims.typ if claims else None,
                    "seat": claims.seat if claims else None,
                }
            )
        )
    else:
        print(describe(decision))
    return 0 if decision.admit else 1
