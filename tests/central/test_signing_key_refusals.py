"""What `gated issue` and the other signing commands refuse, in one line: a signing key they cannot
use, and claims no gate would read."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import BestAvailableEncryption, Encoding, PrivateFormat

from gated import keys
from gated.cli import main

BROKER = ["--broker", "mqtt://127.0.0.1:1", "--site", "S"]  # never reached: the key is refused first


def encrypted_key(tmp_path):
    path = tmp_path / "enc.key"
    pem = Ed25519PrivateKey.generate().private_bytes(
        Encoding.PEM, PrivateFormat.PKCS8, BestAvailableEncryption(b"secret")
    )
    path.write_bytes(pem)
    return path


COMMANDS = [
    ["issue", "--event", "E"],
    ["revoke", "--site", "S", "--version", "1", "--remove", "00" * 16, "--out", "OUT"],
    ["beacon", *BROKER],
    ["command", *BROKER, "g1", "lock"],
]


@pytest.mark.parametrize("argv", COMMANDS, ids=[a[0] for a in COMMANDS])
def test_a_passphrase_protected_signing_key_is_one_line_not_a_traceback(argv, tmp_path, capsys):
    """load_pem_private_key raises TypeError for an encrypted key: it went past every caller."""
    key = encrypted_key(tmp_path)
    argv = [str(tmp_path / "out") if word == "OUT" else word for word in argv]
    assert main([*argv, "--signing-key", str(key)]) == 2
    err = capsys.readouterr().err
    assert str(key) in err and "protected by a passphrase" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("option", "value", "claim"),
    [
        ("--entries", "18446744073709551615", "ent"),
        ("--entries", str(2**63), "ent"),
        ("--valid-from", "1900-01-01", "nbf"),
    ],
)
def test_issue_refuses_claims_no_gate_would_read(option, value, claim, tmp_path, capsys):
    """Before, these tickets were signed and printed (exit 0), and every gate denied them malformed."""
    private, _ = keys.generate_key_files(tmp_path, "issuer")
    argv = ["issue", "--signing-key", str(private), "--event", "E", option, value]
    if option == "--valid-from":
        argv += ["--valid-until", "2030-01-01"]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"{option}: claim {claim} would be" in captured.err and "unsigned integer below 2^63" in captured.err


def test_issue_signs_the_largest_entries_a_gate_reads(tmp_path, capsys):
    from gated.core import ticket

    private, public = keys.generate_key_files(tmp_path, "issuer")
    keys.trust_key_file(tmp_path / "ring", public, "issuer")
    assert main(["issue", "--signing-key", str(private), "--event", "E", "--entries", str(2**63 - 1)]) == 0
    read = ticket.read_ticket(capsys.readouterr().out.strip(), keys.load_keyring(tmp_path / "ring"))
    assert isinstance(read, ticket.Ticket) and read.claims.ent == 2**63 - 1
