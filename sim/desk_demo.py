"""A five-ticket walk through the gate's decisions, at a desk: no camera, no broker.

Makes keys, trusts them, issues tickets, revokes one, and shows what a gate decides for a
valid, forged, tampered, revoked, expired, wrong-event and used-twice ticket.
Run: python -m sim.desk_demo
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from rich.console import Console
from rich.table import Table

from gated import keys
from gated.central.issuer import issue, new_claims
from gated.core import base45
from gated.core.decide import GateContext
from gated.core.revocation import encode_updates
from gated.gate.revocations import apply_update
from gated.gate.store import GateStore
from gated.gate.validate import record, scan_fields, validate

SITE, EVENT = "arena", "FINAL-2026"


def tamper(text: str) -> str:
    blob = bytearray(base45.decode(text[4:]))
    blob[40] ^= 0x01  # one bit inside the signed claims
    return "GT1:" + base45.encode(bytes(blob))


def main() -> int:
    console = Console()
    now = int(time.time())
    with tempfile.TemporaryDirectory(prefix="gated-demo-") as tmp:
        tmp = Path(tmp)
        box, _ = keys.generate_key_files(tmp / "central", "box-office")
        rev, _ = keys.generate_key_files(tmp / "central", "revocations")
        keys.trust_key_file(tmp / "keyring", tmp / "central/box-office.pub", "issuer")
        keys.trust_key_file(tmp / "keyring", tmp / "central/revocations.pub", "revocation")
        ring = keys.load_keyring(tmp / "keyring")
        box_key, rev_key = keys.load_private_key(box), keys.load_private_key(rev)

        def ticket(**kw):
            fields = dict(event=EVENT, nbf=now - 3600, exp=now + 4 * 3600, typ="adult", iat=now)
            fields.update(kw)
            return issue(new_claims(**fields), box_key)

        valid, refunded, twice = ticket(seat="A12"), ticket(seat="B3"), ticket(seat="C7")
        cases = [
            ("valid ticket", valid.text),
            (
                "forged (signed by an unknown key)",
                issue(new_claims(event=EVENT, nbf=now, exp=now + 3600), Ed25519PrivateKey.generate()).text,
            ),
            ("tampered (one bit changed)", tamper(ticket(seat="D1").text)),
            ("refunded (revoked)", refunded.text),
            ("expired yesterday", ticket(nbf=now - 2 * 86400, exp=now - 86400).text),
            ("valid tomorrow", ticket(nbf=now + 86400, exp=now + 2 * 86400).text),
            ("wrong event (another match)", ticket(event="CUP-2026").text),
            ("used twice: first scan", twice.text),
            ("used twice: second scan", twice.text),
            ("not a ticket at all", "https://example.org/promo"),
        ]
        with GateStore(tmp / "gate.db", site=SITE, gate="demo-1") as store:
            (update,) = encode_updates(rev_key, site=SITE, version=1, add=[refunded.claims.cti], iat=now)
            outcome = apply_update(store, update, ring, site=SITE, now_ms=now * 1000)
            console.print(
                f"[bold]gated desk demo[/]: site {SITE}, event {EVENT}; revocation list v{outcome.version} "
                f"({outcome.status}: 1 refunded ticket)\n"
            )
            gate = GateContext(site=SITE, events=frozenset({EVENT}), zone="north")
            table = Table("scan", "decision", "reason", "detail")
            for label, text in cases:
                decision = validate(text, ring, gate, store, time.time())
                rev_version = store.revocation_state().version
                record(store, decision, scan_fields(decision, gate, rev_version), int(time.time() * 1000))
                colour = "green" if decision.admit else "red"
                table.add_row(label, f"[{colour}]{decision.word}[/]", decision.reason.value, decision.detail)
            console.print(table)
            console.print(
                f"\n{store.outbox_depth()} signed, hash-chained scan events waiting in the gate's outbox "
                f"for the central ledger."
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
