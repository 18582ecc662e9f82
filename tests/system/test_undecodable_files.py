"""Files an operator names that are not UTF-8 text (a password saved as UTF-16 with its byte-order
mark, a binary file given by mistake): each is a one-line error naming the file, never a
UnicodeDecodeError traceback; `gated check-config` finds the password file before `gated run` does."""

from __future__ import annotations

import os
import pwd

from gated.cli import main
from tests.conftest import EVENT, SITE
from tests.support.gatedaemon import GateProcess, gate_config, write_config

UTF16 = b"\xff\xfep\x00a\x00s\x00s\x00\n\x00"  # "pass" as Windows Notepad saved it


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    assert "Traceback" not in out.err and "codec can't decode" not in out.err, out.err
    return code, out.out, out.err


def test_a_password_file_that_is_not_text_is_named_by_check_config_and_run(tmp_path, authority, capsys):
    password = tmp_path / "broker.password"
    password.write_bytes(UTF16)
    cfg = gate_config(
        tmp_path,
        keyring=authority.keyring_dir,
        broker_url="mqtt://127.0.0.1:1",
        camera_source="synthetic:",
        site=SITE,
        gate="g1",
        event=EVENT,
    )
    cfg["mqtt"].update(username="g1", password_file=str(password))
    config = write_config(tmp_path / "gated.toml", cfg)
    code, out, err = run(capsys, "check-config", str(config), "--user", pwd.getpwuid(os.geteuid()).pw_name)
    assert (code, out) == (1, "")
    assert f"mqtt.password_file: {password}: not UTF-8 text (invalid start byte at byte 0)" in err

    gate = GateProcess(config).start()
    try:
        failed = gate.wait_for(lambda: gate.logged("gate cannot run"), 60, "gate cannot run")
    finally:
        gate.stop_quietly()
    assert f"{password}: not UTF-8 text" in failed[0]["error"], failed


def test_a_broker_password_file_that_is_not_text_is_named(tmp_path, capsys):
    password = tmp_path / "pw"
    password.write_bytes(UTF16)
    code, _, err = run(
        capsys,
        "status",
        "--broker",
        "mqtt://127.0.0.1:1",
        "--username",
        "u",
        "--password-file",
        str(password),
        "--site",
        SITE,
    )
    assert code == 2 and f"password file {password}: not UTF-8 text" in err


def test_a_config_and_a_board_profile_that_are_not_text_are_named(tmp_path, capsys):
    """Said as every other file that is not UTF-8 text is, not as `not valid TOML: 'utf-8' codec...`."""
    from gated.gate.boards import BoardError, load_board

    config = tmp_path / "gated.toml"
    config.write_bytes(b"\xff\xfe[gate]\n")
    code, _, err = run(capsys, "check-config", str(config))
    assert code == 2 and f"{config}: not UTF-8 text (invalid start byte at byte 0)" in err, err
    board = tmp_path / "board.toml"
    board.write_bytes(b"\xff\xfe[board]\n")
    try:
        load_board(str(board))
    except BoardError as exc:
        assert "not UTF-8 text (invalid start byte at byte 0)" in str(exc), exc
    else:
        raise AssertionError("a board profile that is not text was read")


def test_a_scenario_that_is_not_text_is_a_scenario_problem(tmp_path, capsys):
    scenario = tmp_path / "s.toml"
    scenario.write_bytes(b"\xff\xfe[scenario]\n")
    code, _, err = run(capsys, "sim", "--check", str(scenario))
    assert code == 2 and f"{scenario}: not UTF-8 text (invalid start byte at byte 0)" in err


def test_a_revocation_id_file_that_is_not_text_is_named(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["keys", "generate", "--out", "k", "--name", "rev"]) == 0
    capsys.readouterr()
    (tmp_path / "ids.txt").write_bytes(b"\xff\xfe0123\n")
    code, out, err = run(
        capsys,
        "revoke",
        "--signing-key",
        "k/rev.key",
        "--site",
        SITE,
        "--version",
        "1",
        "--add-file",
        "ids.txt",
        "--out",
        "r.bin",
    )
    assert (code, out) == (2, "") and "ids.txt: not UTF-8 text (invalid start byte at byte 0)" in err
    assert not (tmp_path / "r.bin").exists()


def test_a_pretix_token_file_that_is_not_text_is_named(tmp_path, capsys):
    token = tmp_path / "token"
    token.write_bytes(UTF16)
    code, _, err = run(
        capsys,
        "pretix",
        "sync",
        "--url",
        "http://127.0.0.1:1",
        "--organizer",
        "o",
        "--event",
        "e",
        "--token-file",
        str(token),
        "--state",
        str(tmp_path / "sync.db"),
        "--site",
        SITE,
        "--insecure-http",
        "--out",
        str(tmp_path / "out"),
    )
    assert code == 2 and f"{token}: not UTF-8 text" in err


def test_a_keyring_file_that_is_not_text_is_named_not_the_key_being_trusted(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["keys", "generate", "--out", "k", "--name", "box"]) == 0
    (tmp_path / "ring").mkdir()
    (tmp_path / "ring" / "keyring.toml").write_bytes(b"\xff\xfe[[key]]\n")
    code, _, err = run(capsys, "keys", "trust", "--keyring", "ring", "--role", "issuer", "--event", EVENT, "k/box.pub")
    assert code == 2 and "ring/keyring.toml: not UTF-8 text" in err and "k/box.pub" not in err
