"""Files the project writes survive a power cut whole (old or new), and a keyring cut short is an
error at load, never "0 keys" (issue #25: a power cut soon after `gated keys trust` left
keyring.toml at 0 bytes and the gate denied every ticket `unknown_key`)."""

from __future__ import annotations

import os
import stat

import pytest

from gated import atomicfile, keys
from gated.atomicfile import write_atomic


def test_write_atomic_replaces_whole_syncs_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "keyring.toml"
    target.write_text("old")
    before = atomicfile.fsyncs
    write_atomic(target, "new content")
    assert target.read_text() == "new content"
    assert atomicfile.fsyncs - before == 2  # the file's data, then the directory's entry
    assert os.listdir(tmp_path) == ["keyring.toml"]


def test_write_atomic_sets_the_mode_whatever_the_umask(tmp_path):
    old = os.umask(0o000)
    try:
        write_atomic(tmp_path / "a.key", b"secret", mode=0o600)
        write_atomic(tmp_path / "a.pub", b"public")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.key").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "a.pub").stat().st_mode) == 0o644


def test_write_atomic_exclusive_never_overwrites(tmp_path):
    write_atomic(tmp_path / "a.key", b"first", exclusive=True)
    with pytest.raises(FileExistsError):
        write_atomic(tmp_path / "a.key", b"second", exclusive=True)
    assert (tmp_path / "a.key").read_bytes() == b"first"
    assert sorted(os.listdir(tmp_path)) == ["a.key"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "x.toml"
    target.write_text("old")
    with pytest.raises(TypeError):
        write_atomic(target, 12345)  # not bytes: fails while writing
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["x.toml"]


def _ring(tmp_path, *names):
    ring = tmp_path / "ring"
    for name in names:
        pub = keys.generate_key_files(tmp_path / "private", name)[1]
        keys.trust_key_file(ring, pub, "issuer")
    return ring


def test_an_empty_keyring_is_an_error_not_zero_keys(tmp_path):
    ring = _ring(tmp_path, "box-office")
    (ring / "keyring.toml").write_bytes(b"")
    with pytest.raises(keys.KeyringError, match="holds no keys"):
        keys.load_keyring(ring)


def test_a_keyring_cut_short_at_an_entry_boundary_is_an_error(tmp_path):
    ring = _ring(tmp_path, "box-office", "revocations", "commands")
    text = (ring / "keyring.toml").read_text()
    assert text.startswith("keys = 3")  # the count comes first, so a cut never loses it
    cut = text[: text.rindex("[[key]]")]  # the last entry gone: still valid TOML
    (ring / "keyring.toml").write_text(cut)
    with pytest.raises(keys.KeyringError, match="says it holds 3 keys but 2"):
        keys.load_keyring(ring)


def test_a_truncated_public_key_is_an_error(tmp_path):
    ring = _ring(tmp_path, "box-office")
    (ring / "box-office.pub").write_bytes(b"")
    with pytest.raises(keys.KeyringError, match="box-office"):
        keys.load_keyring(ring)


def test_keyrings_written_by_hand_without_a_count_still_load(tmp_path):
    keys.generate_key_files(tmp_path, "good")
    (tmp_path / "keyring.toml").write_text('[[key]]\nname = "good"\nfile = "good.pub"\nroles = ["issuer"]\n')
    assert [k.name for k in keys.load_keyring(tmp_path).keys] == ["good"]


def test_trust_writes_through_the_durable_helper(tmp_path):
    before = atomicfile.fsyncs
    _ring(tmp_path, "box-office")
    # generate: private and public key; trust: the .pub copy and keyring.toml; each file and its directory
    assert atomicfile.fsyncs - before == 8


def test_a_target_that_cannot_be_replaced_is_named_not_the_temporary_file(tmp_path):
    (tmp_path / "out").mkdir()
    with pytest.raises(IsADirectoryError) as caught:
        write_atomic(tmp_path / "out", b"x")
    assert caught.value.filename == str(tmp_path / "out")
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temporary file left
