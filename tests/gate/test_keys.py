"""The keyring on disk: the example layout loads, problems are listed with their entry."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from gated import keys

EXAMPLE = Path(__file__).resolve().parents[2] / "keys" / "keyring.example.toml"


def test_example_keyring_loads(tmp_path):
    for name in ("box-office-2026", "revocations", "central-commands"):
        keys.generate_key_files(tmp_path / "private", name)
        shutil.copy(tmp_path / "private" / f"{name}.pub", tmp_path / f"{name}.pub")
    shutil.copy(EXAMPLE, tmp_path / "keyring.toml")
    ring = keys.load_keyring(tmp_path)
    box = next(k for k in ring.keys if k.name == "box-office-2026")
    assert box.roles == {"issuer"} and box.allows_event("SEMI-2026") and not box.allows_event("OTHER")
    assert box.valid_at(keys.parse_time("2026-06-01")) and not box.valid_at(keys.parse_time("2027-01-02"))
    assert ring.find(box.kid, "issuer") is box and ring.find(box.kid, "revocation") is None


def test_every_bad_entry_is_reported(tmp_path):
    keys.generate_key_files(tmp_path, "good")
    (tmp_path / "keyring.toml").write_text(
        '[[key]]\nname = "good"\nfile = "good.pub"\nroles = ["issuer"]\n'
        '[[key]]\nname = "missing"\nfile = "missing.pub"\nroles = ["issuer"]\n'
        '[[key]]\nname = "badrole"\nfile = "good.pub"\nroles = ["king"]\n'
        '[[key]]\nname = "private"\nfile = "good.key"\nroles = ["issuer"]\n'
    )
    with pytest.raises(keys.KeyringError) as caught:
        keys.load_keyring(tmp_path)
    message = str(caught.value)
    assert "key[1] (missing)" in message and "key[2] (badrole)" in message and "key[3] (private)" in message
    assert "key[0]" not in message


def test_trusting_a_different_key_under_a_taken_name_is_refused_unless_replace(tmp_path, capsys):
    """Two folders, each with an `issuer.pub`: the second must not silently take the first one's
    place (and its roles). Before, the revocation-only key became an issuer and the real issuer's
    tickets were denied unknown_key."""
    from gated.cli import main

    issuer_pub = keys.generate_key_files(tmp_path / "box-office", "issuer")[1]
    other_pub = keys.generate_key_files(tmp_path / "revocation-desk", "issuer")[1]
    issuer_kid = keys.kid_of(keys.load_public_key(issuer_pub.read_bytes()))
    other_kid = keys.kid_of(keys.load_public_key(other_pub.read_bytes()))
    ring = tmp_path / "ring"
    assert main(["keys", "trust", "--keyring", str(ring), "--role", "issuer", "--event", "FINAL", str(issuer_pub)]) == 0
    assert main(["keys", "trust", "--keyring", str(ring), "--role", "issuer", str(issuer_pub)]) == 0  # same key: fine
    capsys.readouterr()

    assert main(["keys", "trust", "--keyring", str(ring), "--role", "revocation", str(other_pub)]) == 2
    err = capsys.readouterr().err
    assert issuer_kid.hex() in err and other_kid.hex() in err and "--replace" in err
    loaded = keys.load_keyring(ring)
    assert [(k.name, k.kid, k.roles) for k in loaded.keys] == [("issuer", issuer_kid, {"issuer"})]
    assert loaded.find(issuer_kid, "issuer") is not None and loaded.find(other_kid, "issuer") is None

    assert main(["keys", "trust", "--keyring", str(ring), "--role", "revocation", "--replace", str(other_pub)]) == 0
    loaded = keys.load_keyring(ring)
    assert [(k.name, k.kid, k.roles, k.events) for k in loaded.keys] == [
        ("issuer", other_kid, {"revocation"}, frozenset())
    ]
    assert loaded.find(other_kid, "issuer") is None and loaded.find(issuer_kid, "issuer") is None


def test_trust_refuses_a_name_whose_key_file_another_entry_holds(tmp_path, capsys):
    """`--name box` would write box.pub, the file of the issuer entry `issuer-a`: the device key
    became an issuer key too. And `--name ../escaped` wrote a key file outside the keyring."""
    from gated.cli import main

    issuer_pub = keys.generate_key_files(tmp_path / "office", "issuer")[1]
    device_pub = keys.generate_key_files(tmp_path / "gate", "device")[1]
    ring = tmp_path / "ring"
    ring.mkdir()
    (ring / "box.pub").write_bytes(issuer_pub.read_bytes())
    (ring / "keyring.toml").write_text('[[key]]\nname = "issuer-a"\nfile = "box.pub"\nroles = ["issuer"]\n')
    before = (ring / "keyring.toml").read_bytes()

    assert main(["keys", "trust", "--keyring", str(ring), "--role", "device", "--name", "box", str(device_pub)]) == 2
    err = capsys.readouterr().err
    assert "box.pub is the key file of 'issuer-a'" in err and "another --name" in err
    assert (ring / "keyring.toml").read_bytes() == before and (ring / "box.pub").read_bytes() == issuer_pub.read_bytes()

    for bad in ("../escaped", "a/b", ".hidden", ""):
        assert main(["keys", "trust", "--keyring", str(ring), "--role", "device", "--name", bad, str(device_pub)]) == 2
        assert "is not a name of letters, digits" in capsys.readouterr().err
    assert not (tmp_path / "escaped.pub").exists() and (ring / "keyring.toml").read_bytes() == before

    assert main(["keys", "trust", "--keyring", str(ring), "--role", "device", "--name", "g-1", str(device_pub)]) == 0
    loaded = keys.load_keyring(ring)
    assert [(k.name, k.roles) for k in loaded.keys] == [("issuer-a", {"issuer"}), ("g-1", {"device"})]


HOSTILE_KEYRINGS = [
    ("not_after = 1700000000\n", "key[0] (box): not_after: must be an ISO 8601 time in quotes"),
    ("not_after = 2026-12-31T23:59:59Z\n", "key[0] (box): not_after: must be an ISO 8601 time in quotes"),
    ('events = "FINAL"\n', "key[0] (box): events: must be a list of event ids"),
]


@pytest.mark.parametrize(("extra", "expected"), HOSTILE_KEYRINGS, ids=["int", "toml-datetime", "events"])
def test_a_field_of_the_wrong_type_is_named_by_list_and_trust(extra, expected, tmp_path, capsys):
    """Before: `AttributeError: 'int' object has no attribute 'replace'` from `keys list` (and
    `gated run`, `verify`), or "'str' object cannot be interpreted as an integer"."""
    from gated.cli import main

    keys.generate_key_files(tmp_path, "box")
    other = keys.generate_key_files(tmp_path / "other", "other")[1]
    text = f'[[key]]\nname = "box"\nfile = "box.pub"\nroles = ["issuer"]\n{extra}'
    (tmp_path / "keyring.toml").write_text(text)
    assert main(["keys", "list", "--keyring", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'keyring.toml'}: {expected}" in err and "Traceback" not in err
    assert main(["keys", "trust", "--keyring", str(tmp_path), "--role", "command", str(other)]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'keyring.toml'}: {expected}" in err and str(other) not in err
    assert (tmp_path / "keyring.toml").read_text() == text and not (tmp_path / "other.pub").exists()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('key = ["x"]\n', "key[0]: must be a [[key]] section"),
        ('[key]\nname = "box"\nfile = "box.pub"\nroles = ["issuer"]\n', "key must be an array of tables"),
        ("keys = [[[x\n", "Invalid value (at line 1, column 11) (not a keyring TOML file"),
    ],
    ids=["strings", "table", "corrupt"],
)
def test_trust_into_a_malformed_keyring_names_the_keyring_file(text, expected, tmp_path, capsys):
    """Before: `'str' object has no attribute 'get'`, or the TOML error blamed on the .pub file."""
    from gated.cli import main

    pub = keys.generate_key_files(tmp_path / "k", "b")[1]
    (tmp_path / "keyring.toml").write_text(text)
    assert main(["keys", "trust", "--keyring", str(tmp_path), "--role", "issuer", str(pub)]) == 2
    err = capsys.readouterr().err
    assert f"gated keys: {tmp_path / 'keyring.toml'}: {expected}" in err and "Traceback" not in err
    assert (tmp_path / "keyring.toml").read_text() == text
