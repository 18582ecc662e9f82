"""The desk tools as a user runs them: keys, issue, revoke, verify (exit codes and output)."""

from __future__ import annotations

import csv
import json
import os
import stat
import subprocess
import sys

import pytest

from gated.cli import main


@pytest.fixture
def desk(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["keys", "generate", "--out", "k", "--name", "box"]) == 0
    assert main(["keys", "generate", "--out", "k", "--name", "rev"]) == 0
    assert main(["keys", "trust", "--keyring", "ring", "--role", "issuer", "--event", "FINAL", "k/box.pub"]) == 0
    assert main(["keys", "trust", "--keyring", "ring", "--role", "revocation", "k/rev.pub"]) == 0
    return tmp_path


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def issue_one(capsys, *extra):
    code, out, _ = run(capsys, "issue", "--signing-key", "k/box.key", "--event", "FINAL", *extra)
    assert code == 0
    return out.strip()


def verify(capsys, text, *extra):
    code, out, err = run(capsys, "verify", "--keyring", "ring", "--event", "FINAL", "--json", *extra, text)
    return code, (json.loads(out) if out else None), err


def test_private_key_is_private_and_not_overwritten(desk, capsys):
    assert stat.S_IMODE(os.stat("k/box.key").st_mode) == 0o600
    code, _, err = run(capsys, "keys", "generate", "--out", "k", "--name", "box")
    assert code == 2 and "exists" in err


def test_keys_list_shows_roles_and_scope(desk, capsys):
    code, out, _ = run(capsys, "keys", "list", "--keyring", "ring")
    assert code == 0
    assert "box" in out and "issuer" in out and "events FINAL" in out and "revocation" in out


def test_issue_and_verify_admit(desk, capsys):
    text = issue_one(capsys, "--type", "adult", "--seat", "A12")
    code, result, _ = verify(capsys, text)
    assert code == 0
    assert result["decision"] == "admit" and result["reason"] == "ok"
    assert result["type"] == "adult" and result["seat"] == "A12" and result["event"] == "FINAL"
    assert len(result["ticket"]) == 32


def test_used_twice_with_state(desk, capsys):
    text = issue_one(capsys)
    assert verify(capsys, text, "--state", "gate.db", "--record")[0] == 0
    code, result, _ = verify(capsys, text, "--state", "gate.db", "--record")
    assert (code, result["reason"]) == (1, "already_used")


def test_revoke_then_verify_denies(desk, capsys):
    text = issue_one(capsys)
    ticket_id = verify(capsys, text)[1]["ticket"]
    assert (
        run(
            capsys,
            "revoke",
            "--signing-key",
            "k/rev.key",
            "--site",
            "arena",
            "--version",
            "1",
            "--out",
            "r1.cose",
            ticket_id,
        )[0]
        == 0
    )
    code, result, _ = verify(capsys, text, "--revocations", "r1.cose")
    assert (code, result["reason"]) == (1, "revoked")
    # un-revoked by a delta: works again
    assert (
        run(
            capsys,
            "revoke",
            "--signing-key",
            "k/rev.key",
            "--site",
            "arena",
            "--version",
            "2",
            "--base",
            "1",
            "--remove",
            ticket_id,
            "--out",
            "r2.cose",
        )[0]
        == 0
    )
    code, result, _ = verify(capsys, text, "--revocations", "r1.cose", "--revocations", "r2.cose")
    assert (code, result["reason"]) == (0, "ok")


def test_rejected_revocation_file_is_reported_and_the_rest_goes_on(desk, capsys):
    text = issue_one(capsys)
    ticket_id = verify(capsys, text)[1]["ticket"]
    run(
        capsys,
        "revoke",
        "--signing-key",
        "k/box.key",
        "--site",
        "arena",
        "--version",
        "1",
        "--out",
        "by-issuer.cose",
        ticket_id,
    )
    run(
        capsys,
        "revoke",
        "--signing-key",
        "k/rev.key",
        "--site",
        "arena",
        "--version",
        "1",
        "--out",
        "good.cose",
        ticket_id,
    )
    code, result, err = verify(
        capsys, text, "--revocations", "by-issuer.cose", "--revocations", "missing.cose", "--revocations", "good.cose"
    )
    assert "by-issuer.cose: rejected (unknown_key)" in err and "missing.cose: rejected" in err
    assert (code, result["reason"]) == (1, "revoked")


@pytest.mark.parametrize(
    "extra,reason",
    [
        (["--valid-from", "2001-01-01", "--valid-until", "2001-01-02"], "expired"),
        (["--valid-from", "2999-01-01", "--valid-until", "2999-01-02"], "not_yet_valid"),
        (["--zone", "vip"], "wrong_zone"),
    ],
)
def test_denials_from_claims(desk, capsys, extra, reason):
    text = issue_one(capsys, *extra)
    code, result, _ = verify(capsys, text, "--zone", "north")
    assert (code, result["reason"]) == (1, reason)


def test_wrong_event_forged_and_garbage(desk, capsys):
    code, result, _ = run(capsys, "issue", "--signing-key", "k/box.key", "--event", "OTHER")
    assert verify(capsys, result.strip())[1]["reason"] == "unknown_key"  # box may sign for FINAL only
    run(capsys, "keys", "generate", "--out", "k", "--name", "any")
    run(capsys, "keys", "trust", "--keyring", "ring", "--role", "issuer", "k/any.pub")  # unscoped issuer
    other = run(capsys, "issue", "--signing-key", "k/any.key", "--event", "OTHER")[1].strip()
    assert verify(capsys, other)[1]["reason"] == "wrong_event"
    run(capsys, "keys", "generate", "--out", "k", "--name", "mallory")
    forged = run(capsys, "issue", "--signing-key", "k/mallory.key", "--event", "FINAL")[1].strip()
    assert verify(capsys, forged)[1]["reason"] == "unknown_key"
    code, result, _ = verify(capsys, "hello world")
    assert (code, result["reason"], result["ticket"]) == (1, "malformed", None)


def test_issue_out_writes_images_and_csv(desk, capsys):
    assert (
        run(capsys, "issue", "--signing-key", "k/box.key", "--event", "FINAL", "--count", "3", "--out", "batch")[0] == 0
    )
    rows = list(csv.DictReader(open("batch/tickets.csv")))
    assert len(rows) == 3
    for row in rows:
        assert (desk / "batch" / row["file"]).read_bytes().startswith(b"\x89PNG")
    # the CSV feeds `gated revoke --add-file` directly
    assert (
        run(
            capsys,
            "revoke",
            "--signing-key",
            "k/rev.key",
            "--site",
            "arena",
            "--version",
            "1",
            "--add-file",
            "batch/tickets.csv",
            "--out",
            "r.cose",
        )[0]
        == 0
    )


def test_usage_errors_exit_2_with_a_message(desk, capsys):
    code, _, err = run(capsys, "issue", "--signing-key", "k/missing.key", "--event", "FINAL")
    assert code == 2 and "missing.key" in err
    code, _, err = run(
        capsys, "revoke", "--signing-key", "k/rev.key", "--site", "a", "--version", "1", "--out", "x", "zz"
    )
    assert code == 2 and "not a ticket id" in err
    code, _, err = run(capsys, "verify", "--keyring", "nowhere", "--event", "FINAL", "GT1:X")
    assert code == 2 and "no keyring" in err
    code, _, err = run(capsys, "issue", "--signing-key", "k/box.key", "--event", "F", "--valid-from", "soon")
    assert code == 2 and "ISO 8601" in err


def test_console_script_runs(desk):
    text = subprocess.run(
        [sys.executable, "-m", "gated.cli", "issue", "--signing-key", "k/box.key", "--event", "FINAL"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    done = subprocess.run(
        [sys.executable, "-m", "gated.cli", "verify", "--keyring", "ring", "--event", "FINAL", text],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0 and done.stdout.startswith("ADMIT")


def test_revoke_refuses_what_no_gate_would_take_and_writes_nothing(desk, capsys):
    """--parts below 1 wrote no file yet said `-> ` and exit 0; a version past 2**63 - 1 wrote a
    file every gate rejects as malformed; --out naming a directory named a temporary file."""
    ticket = "00112233445566778899aabbccddeeff"
    base = ("revoke", "--signing-key", "k/rev.key", "--site", "a")
    code, out, err = run(capsys, *base, "--version", "1", "--parts", "-3", "--out", "rv/r.bin", ticket)
    assert (code, out) == (2, "") and "--parts -3" in err
    code, out, err = run(capsys, *base, "--version", str(2**64), "--out", "rv/big.bin", ticket)
    assert (code, out) == (2, "") and "--version" in err and str(2**63 - 1) in err
    assert not os.path.exists("rv")
    os.mkdir("outdir")
    code, out, err = run(capsys, *base, "--version", "1", "--out", "outdir", ticket)
    assert (code, out) == (2, "") and "outdir is a directory" in err
    # the largest version a gate takes is written, and read back by verify
    code, out, _ = run(capsys, *base, "--version", str(2**63 - 1), "--out", "rv/max.bin", ticket)
    assert code == 0 and out.endswith("rv/max.bin\n")
