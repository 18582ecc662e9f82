"""Regenerate tests/vectors/pretix_sig1.json with pretix's OWN secret generator (run in pretix's venv):

    make pretix-venv
    PRETIX_CONFIG_FILE=/tmp/x/pretix.cfg .venv-pretix/bin/python tests/vectors/make_pretix_vectors.py

The signing key comes from a fixed seed and is handed to pretix as its event setting, in the form pretix
keeps it (base64 of a PKCS#8 PEM); pretix's Sig1TicketSecretGenerator.generate_secret() then makes every
secret. Its random seed field makes the texts differ per run; the tests only need them to verify.
Products and dates are stand-ins with the attributes the generator reads (pk); no database is touched.
"""

import base64
import hashlib
import json
import os
import sys
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pretix.settings")

import django  # noqa: E402

django.setup()

import pretix  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402
from cryptography.hazmat.primitives.serialization import (  # noqa: E402
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)
from pretix.base.secrets import Sig1TicketSecretGenerator  # noqa: E402


def key_settings(seed: bytes):
    key = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(seed).digest())
    return SimpleNamespace(
        ticket_secrets_pretix_sig1_privkey=base64.b64encode(
            key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
        ).decode(),
        ticket_secrets_pretix_sig1_pubkey=base64.b64encode(
            key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
        ).decode(),
    )


def main(out: Path) -> None:
    event = SimpleNamespace(settings=key_settings(b"gated pretix vector event key"))
    other = SimpleNamespace(settings=key_settings(b"gated pretix vector other event key"))
    gen, other_gen = Sig1TicketSecretGenerator(event), Sig1TicketSecretGenerator(other)
    item, item2 = SimpleNamespace(pk=12), SimpleNamespace(pk=14)
    variation, subevent = SimpleNamespace(pk=3), SimpleNamespace(pk=7)
    t = lambda *a: datetime(*a, tzinfo=timezone.utc)  # noqa: E731
    secrets = {
        "plain": gen.generate_secret(item=item),
        "variation": gen.generate_secret(item=item2, variation=variation),
        "subevent": gen.generate_secret(item=item, subevent=subevent),
        "window": gen.generate_secret(item=item, valid_from=t(2026, 6, 1, 18), valid_until=t(2026, 6, 1, 23)),
        "other_event": other_gen.generate_secret(item=item),
    }
    out.write_text(
        json.dumps(
            {
                "generator": f"pretix {pretix.__version__} Sig1TicketSecretGenerator",
                "valid_keys": {
                    "event": event.settings.ticket_secrets_pretix_sig1_pubkey,
                    "other_event": other.settings.ticket_secrets_pretix_sig1_pubkey,
                },
                "secrets": secrets,
                "window": {"from": int(t(2026, 6, 1, 18).timestamp()), "until": int(t(2026, 6, 1, 23).timestamp())},
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("pretix_sig1.json"))
