"""The keyring: public keys a gate trusts, each for its roles only (PROTOCOL §1).

On disk a keyring is a directory of PEM public keys plus `keyring.toml`:

    [[key]]
    name = "box-office-2026"          # unique, used in logs and `gated keys list`
    file = "box-office-2026.pub"      # PEM SubjectPublicKeyInfo, Ed25519, relative to the dir
    roles = ["issuer"]                # issuer | revocation | command | device | ledger
    events = ["FINAL-2026"]           # optional (issuer): events it may sign tickets for
    not_before = "2026-01-01T00:00:00Z"   # optional: window in which it may sign, ISO 8601 in quotes
    not_after = "2026-12-31T23:59:59Z"

Every field of every entry is checked on reading (read_keyring_file): a wrong type is a KeyringError
naming the file, the entry and the field, whoever reads it (`gated run`, `verify`, `keys`).
`gated keys trust` names keys as gates are named (KEY_NAME) and never writes a key file another
entry names.

What the entries mean, and the one signature check, are in gated/core/signed.py; this module reads
and writes the files. Private keys never live here.
"""

from __future__ import annotations

import hashlib
import os
import re
import tomllib
from datetime import datetime, timezone
from pathlib import Path

import tomli_w
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
    load_pem_public_key,
)

from gated.atomicfile import write_atomic
from gated.core.cose import kid_of
from gated.core.errors import GatedError, undecodable
from gated.core.signed import ROLES, Keyring, TrustedKey, trusted

KEYRING_FILE = "keyring.toml"
# the names `gated keys trust` gives keys (and `keys enrol` a gate's device key, named after the gate):
# as gated.gate.config.NAME, so NAME.pub is a plain file name in the keyring's directory
# a gate id is one (gate.config NAME, at most 64), and so is `pretix-<event slug>-<8 hex>` (a pretix slug has at most 50)
KEY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
KEY_NAME_TEXT = "a name of letters, digits, '.', '_' or '-' (at most 128)"


class KeyringError(GatedError, ValueError):
    """The keyring on disk is unusable; the message names the file and entry to fix."""


def parse_time(text: str) -> int:
    """ISO 8601 (a date, or date and time; UTC when no offset is given) to unix seconds."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp())


def format_time(unix_seconds: int) -> str:
    return datetime.fromtimestamp(unix_seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def load_keyring(directory: str | os.PathLike) -> Keyring:
    directory = Path(directory)
    path = directory / KEYRING_FILE
    if not path.exists():
        raise KeyringError(f"{path}: no keyring here (create one with `gated keys trust --keyring {directory} ...`)")
    doc, problems = _read_document(path)
    entries = doc["key"]
    if not entries:
        raise KeyringError(
            f"{path}: the keyring holds no keys (an empty or truncated file: a power cut while it "
            f"was written?); trust the keys again with `gated keys trust --keyring {directory} ...`"
        )
    keys = []
    for i, entry in enumerate(entries):
        if any(at == i for at, _ in problems):  # its key file is read once its fields are right
            continue
        try:
            keys.append(_load_entry(directory, entry))
        except (ValueError, OSError) as exc:
            problems.append((i, f"{path}: key[{i}] ({entry['name']}): {exc}"))
    if problems:
        raise KeyringError("\n".join(line for _, line in sorted(problems, key=lambda p: p[0])))
    return Keyring(tuple(keys))


def read_keyring_file(path: Path) -> dict:
    """keyring.toml, read and its fields checked (KeyringError listing every problem, by entry and
    key; the key files themselves are load_keyring's): {"key": [entry, ...], ...}. Everything
    reading or rewriting a keyring goes through here, so a hand-edited file is refused, never a crash."""
    doc, problems = _read_document(path)
    if problems:
        raise KeyringError("\n".join(line for _, line in problems))
    return doc


def _read_document(path: Path) -> tuple[dict, list[tuple[int, str]]]:
    """keyring.toml and the problems of its entries' fields, as (entry index, line) (KeyringError
    if it is no keyring at all)."""
    try:
        doc = tomllib.loads(path.read_text())
    except UnicodeDecodeError as exc:
        raise KeyringError(f"{path}: {undecodable(exc)}") from None
    except tomllib.TOMLDecodeError as exc:
        raise KeyringError(
            f"{path}: {exc} (not a keyring TOML file: cut short by a power cut? move it aside and trust the keys again)"
        ) from None
    except OSError as exc:
        raise KeyringError(f"{path}: cannot read the keyring ({exc})") from None
    entries = doc.setdefault("key", [])
    if not isinstance(entries, list):
        raise KeyringError(f"{path}: key must be an array of tables, each entry a [[key]] section")
    if "keys" in doc and doc["keys"] != len(entries):
        raise KeyringError(
            f"{path}: the keyring says it holds {doc['keys']!r} keys but {len(entries)} are there "
            "(a file cut short?); trust the missing keys again"
        )
    problems = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            problems.append(
                (i, f"{path}: key[{i}]: must be a [[key]] section with name, file and roles, not {entry!r}")
            )
            continue
        label = entry.get("name") if isinstance(entry.get("name"), str) else "?"
        problems += [(i, f"{path}: key[{i}] ({label}): {field}: {what}") for field, what in _entry_problems(entry)]
    return doc, problems


def _entry_problems(entry: dict) -> list[tuple[str, str]]:
    """(field, what is wrong) for each field of one [[key]] entry of the wrong type or value."""
    problems = []
    for field in ("name", "file"):
        if field not in entry:
            problems.append((field, "missing"))
        elif type(entry[field]) is not str or not entry[field]:
            problems.append((field, f"must be a non-empty text, not {entry[field]!r}"))
    roles = entry.get("roles")
    if roles is None:
        problems.append(("roles", f"missing (one or more of {', '.join(ROLES)})"))
    elif type(roles) is not list or not roles or any(r not in ROLES for r in roles):
        problems.append(("roles", f"{roles!r} is not a list of one or more of {', '.join(ROLES)}"))
    events = entry.get("events", [])
    if type(events) is not list or any(type(e) is not str for e in events):
        problems.append(("events", f"must be a list of event ids (texts), not {events!r}"))
    for field in ("not_before", "not_after"):
        if field not in entry:
            continue
        value = entry[field]
        try:
            if type(value) is not str:
                raise ValueError
            parse_time(value)
        except (ValueError, OverflowError):
            shown = repr(value) if isinstance(value, (str, int, float, list, dict)) else f"the unquoted {value}"
            problems.append((field, f'must be an ISO 8601 time in quotes, e.g. "2026-12-31T23:59:59Z", not {shown}'))
    return problems


def _load_entry(directory: Path, entry: dict) -> TrustedKey:
    """One entry read_keyring_file checked: its key file loaded (ValueError, OSError)."""
    public_key = load_public_key((directory / entry["file"]).read_bytes())
    return trusted(
        entry["name"],
        public_key,
        entry["roles"],
        entry.get("events", ()),
        parse_time(entry["not_before"]) if "not_before" in entry else None,
        parse_time(entry["not_after"]) if "not_after" in entry else None,
    )


def load_public_key(pem: bytes) -> Ed25519PublicKey:
    try:
        key = load_pem_public_key(pem)
    except UnsupportedAlgorithm as exc:
        raise ValueError(f"not an Ed25519 public key (a key type this system cannot read: {exc})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("not an Ed25519 public key")
    return key


def load_private_key(path: str | os.PathLike) -> Ed25519PrivateKey:
    """The Ed25519 private key in the PEM file `path`; ValueError saying what is wrong (OSError when
    it cannot be read). load_pem_private_key also raises TypeError (an encrypted key: gated has no
    passphrase to give) and UnsupportedAlgorithm: each caller catches ValueError only."""
    try:
        key = load_pem_private_key(Path(path).read_bytes(), password=None)
    except TypeError:
        raise ValueError(
            "the private key is protected by a passphrase, which gated cannot give: keep the key unencrypted, "
            "readable only by the user who signs (`gated keys generate` writes it so)"
        ) from None
    except UnsupportedAlgorithm as exc:
        raise ValueError(f"not an Ed25519 private key (a key type this system cannot read: {exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("not an Ed25519 private key")  # the callers name the file
    return key


def public_pem(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)


def private_pem(private_key: Ed25519PrivateKey) -> bytes:
    return private_key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())


def generate_key_files(out_dir: str | os.PathLike, name: str) -> tuple[Path, Path]:
    """Write NAME.key (mode 0600, never to be copied to a gate) and NAME.pub; refuse to overwrite."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    private_path, public_path = out_dir / f"{name}.key", out_dir / f"{name}.pub"
    key = Ed25519PrivateKey.generate()
    write_atomic(private_path, private_pem(key), mode=0o600, exclusive=True)
    write_atomic(public_path, public_pem(key.public_key()))
    return private_path, public_path


def trust_key_file(
    keyring_dir, public_file, role: str, *, name=None, events=(), not_before=None, not_after=None, replace: bool = False
) -> TrustedKey:
    """Copy a public key into the keyring and add (or extend) its entry in keyring.toml.

    The same key under a name already there gains `role` (and the scope given). A *different* key
    under a name already there is refused (KeyringError naming both kids) unless `replace`: then the
    entry starts afresh with this key and only `role` and the scope given; nothing of the old key's
    roles, events or window carries over to the new key."""
    if role not in ROLES:
        raise KeyringError(f"role {role!r} is not one of {', '.join(ROLES)}")
    keyring_dir = Path(keyring_dir)
    keyring_dir.mkdir(parents=True, exist_ok=True)
    pem = Path(public_file).read_bytes()
    public_key = load_public_key(pem)
    kid = kid_of(public_key)
    if name is None:
        name = Path(public_file).name.removesuffix(".pub").removesuffix(".pem")
    if not isinstance(name, str) or not KEY_NAME.match(name):
        raise KeyringError(f"the key name {name!r} is not {KEY_NAME_TEXT}: it names the key's file in the keyring")
    path = keyring_dir / KEYRING_FILE
    doc = read_keyring_file(path) if path.exists() else {}
    entries = doc.setdefault("key", [])
    entry = next((e for e in entries if e.get("name") == name), None)
    if entry is not None:
        old_kid = _entry_kid(keyring_dir, entry)
        if old_kid != kid:
            if not replace:
                raise KeyringError(
                    f"{path}: the name {name!r} already holds another key (kid {old_kid.hex() if old_kid else '?'}, "
                    f"{', '.join(entry.get('roles', [])) or 'no roles'}) than {public_file} (kid {kid.hex()}); "
                    f"trust it under another --name, or pass --replace to drop the old key and its roles"
                )
            entries.remove(entry)
            entry = None
    if entry is None:
        entry = {"name": name, "file": f"{name}.pub", "roles": []}
        owner = next((e for e in entries if _same_file(keyring_dir, e.get("file"), entry["file"])), None)
        if owner is not None:  # writing it would give the other entry's roles to this key
            raise KeyringError(
                f"{path}: {entry['file']} is the key file of {owner.get('name')!r} already; "
                f"trust {public_file} under another --name"
            )
        entries.append(entry)
    write_atomic(keyring_dir / entry["file"], pem)
    if role not in entry["roles"]:
        entry["roles"].append(role)
    if events:
        entry["events"] = sorted(set(entry.get("events", [])) | set(events))
    if not_before is not None:
        entry["not_before"] = format_time(not_before)
    if not_after is not None:
        entry["not_after"] = format_time(not_after)
    doc["keys"] = len(entries)  # what load_keyring checks: a keyring cut short is an error, not fewer keys
    write_atomic(path, tomli_w.dumps(doc))
    return load_keyring(keyring_dir).find(kid, role)


def forget_keys(keyring_dir, names) -> None:
    """Drop the entries named `names` from keyring.toml, and their key files (a replaced key must not
    stay trusted under a name nobody looks at)."""
    keyring_dir = Path(keyring_dir)
    path = keyring_dir / KEYRING_FILE
    doc = read_keyring_file(path)
    dropped = [e for e in doc.get("key", []) if e.get("name") in set(names)]
    doc["key"] = [e for e in doc.get("key", []) if e not in dropped]
    doc["keys"] = len(doc["key"])  # the count load_keyring checks
    write_atomic(path, tomli_w.dumps(doc))
    for entry in dropped:
        (keyring_dir / entry["file"]).unlink(missing_ok=True)


def fingerprint(public_key: Ed25519PublicKey) -> str:
    """SHA-256 of the raw public key, in hex: the kid (PROTOCOL §1) is its first 16 digits."""
    return hashlib.sha256(public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)).hexdigest()


def _same_file(directory: Path, named, file: str) -> bool:
    """Does `named` (an entry's `file`) name the same file in `directory` as `file`?"""
    if not isinstance(named, str):
        return False
    return os.path.normpath(directory / named) == os.path.normpath(directory / file)


def _entry_kid(directory: Path, entry: dict) -> bytes | None:
    """The kid of the key file an existing entry names; None if it cannot be read as a public key."""
    try:
        return kid_of(load_public_key((directory / entry["file"]).read_bytes()))
    except (KeyError, TypeError, ValueError, OSError):
        return None
