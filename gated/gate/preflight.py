"""What `gated check-config` finds beyond the schema: the files a configuration names, and keys
that do nothing.

- `file_problems(cfg, user)`: every file or directory the configuration names that is missing,
  of the wrong kind (a state_dir that is a file), or not readable by the service user (`gated`, else whoever runs the check),
  each with its key path; TLS files that do not load together (a key that is not the
  certificate's), and a client certificate whose CN is not the gate's id (the broker takes the CN
  as the gate's name, so every event the gate publishes would be refused: not authorised), and a
  password file that is not UTF-8 text.
- `warnings(cfg)`: keys that do nothing with the authentication chosen (username and
  password_file beside a client certificate).

Readability for another user is judged from owner, group and mode bits along the path (as the
kernel does, without ACLs), so root can check for `gated` before the service first starts.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
from dataclasses import dataclass
from pathlib import Path

SERVICE_USER = "gated"


@dataclass(frozen=True)
class User:
    name: str
    uid: int
    gids: frozenset[int]

    @classmethod
    def current(cls) -> "User":
        """Whoever runs this (doctor runs as the service user: `sudo -u gated gated doctor`)."""
        return cls.named(pwd.getpwuid(os.geteuid()).pw_name)

    @classmethod
    def named(cls, name: str | None) -> "User":
        """`name`, else the service user when it exists on this machine, else the current user."""
        if name is None:
            try:
                pwd.getpwnam(SERVICE_USER)
                name = SERVICE_USER
            except KeyError:
                name = pwd.getpwuid(os.geteuid()).pw_name
        entry = pwd.getpwnam(name)  # KeyError: the caller says "no such user"
        gids = {entry.pw_gid} | {g.gr_gid for g in grp.getgrall() if name in g.gr_mem}
        return cls(name, entry.pw_uid, frozenset(gids))

    def may(self, path: Path, want: int) -> bool:
        """May this user `want` (os.R_OK, os.X_OK, ...) `path`, counting the search right on every parent."""
        if self.uid == os.geteuid():
            return os.access(path, want)
        if self.uid == 0:
            return True
        for parent in reversed(path.parents):
            if not self._bits(parent, os.X_OK):
                return False
        return self._bits(path, want)

    def _bits(self, path: Path, want: int) -> bool:
        try:
            st = path.stat()
        except OSError:
            return False
        if st.st_uid == self.uid:
            shift = 6
        elif st.st_gid in self.gids:
            shift = 3
        else:
            shift = 0
        mode = (st.st_mode >> shift) & 0o7
        return mode & want == want  # os.R_OK 4, os.W_OK 2, os.X_OK 1: the mode bits' own values


def _file(path: Path, key: str, user: User, *, directory: bool = False) -> list[tuple[str, str]]:
    what = "directory" if directory else "file"
    if not path.exists():
        return [(key, f"{path}: no such {what}")]
    if directory and not path.is_dir():
        return [(key, f"{path}: not a directory")]
    if not directory and path.is_dir():
        return [(key, f"{path}: a directory, not a file")]
    if not user.may(path, os.R_OK | (os.X_OK if directory else 0)):
        mode = stat.filemode(path.stat().st_mode)
        return [(key, f"{path}: not readable by user {user.name} ({mode}; e.g. chgrp {user.name} and chmod g+r)")]
    return []


def file_problems(cfg, user: User) -> list[tuple[str, str]]:
    problems = _file(cfg.gate.keyring, "gate.keyring", user, directory=True)
    if cfg.gate.state_dir.exists() and not cfg.gate.state_dir.is_dir():  # run makes it when it is not there
        problems.append(("gate.state_dir", f"{cfg.gate.state_dir}: not a directory"))
    if not problems:
        problems += _file(cfg.gate.keyring / "keyring.toml", "gate.keyring", user)
    tls = cfg.mqtt.tls
    tls_files = [
        (tls.ca_file, "mqtt.tls.ca_file"),
        (tls.cert_file, "mqtt.tls.cert_file"),
        (tls.key_file, "mqtt.tls.key_file"),
    ]
    tls_problems = [p for path, key in tls_files if path is not None for p in _file(path, key, user)]
    problems += tls_problems
    if not tls_problems:
        problems += _tls_content(cfg)
    if cfg.mqtt.password_file is not None and tls.cert_file is None:
        found = _file(cfg.mqtt.password_file, "mqtt.password_file", user)
        problems += found or _secret_problems(cfg)
    kind, _, rest = cfg.camera.source.partition(":")
    if kind == "files":
        target = Path(rest.partition("?")[0])
        problems += _file(target, "camera.source", user, directory=target.is_dir() or "watch=" in rest)
    if cfg.turnstile.boards_dir is not None:
        problems += _file(cfg.turnstile.boards_dir, "turnstile.boards_dir", user, directory=True)
    if cfg.health.textfile is not None and not cfg.health.textfile.parent.is_dir():
        problems.append(("health.textfile", f"{cfg.health.textfile.parent}: no such directory"))
    return problems


def _secret_problems(cfg) -> list[tuple[str, str]]:
    """The password file read as `gated run` reads it (UTF-8 text, the password on its first line)."""
    from gated.gate.config import ConfigError

    try:
        cfg.mqtt.secret()
    except ConfigError as exc:
        return [("mqtt.password_file", f"{exc.source}: {what}") for _, what in exc.problems]
    except PermissionError:
        return []  # the service user can read it (_file checked): check-config, run as another user, cannot look
    except OSError as exc:
        return [("mqtt.password_file", f"{cfg.mqtt.password_file}: cannot read ({exc.strerror})")]
    return []


def _tls_content(cfg) -> list[tuple[str, str]]:
    from gated.brokerdiag import certificate_cn, tls_file_problems

    tls = cfg.mqtt.tls
    found = tls_file_problems(*(str(p) if p else None for p in (tls.ca_file, tls.cert_file, tls.key_file)))
    if found:
        return [("mqtt.tls", text) for text in found]
    if tls.cert_file is None:
        return []
    cn = certificate_cn(str(tls.cert_file))
    if cn != cfg.gate.id:
        return [
            (
                "mqtt.tls.cert_file",
                f"certificate CN {cn} ≠ [gate] id {cfg.gate.id}: the broker takes the CN as "
                f"this gate's name and would refuse its events (not authorised); use the "
                f"certificate made for {cfg.gate.id} (gated certs ... {cfg.gate.id}) or set "
                f'[gate] id = "{cn}"',
            )
        ]
    return []


def warnings(cfg) -> list[tuple[str, str]]:
    m = cfg.mqtt
    out = []
    if m.tls.cert_file is not None:
        unused = [
            k
            for k, v in (("username", m.username), ("password", m.password), ("password_file", m.password_file))
            if v is not None
        ]
        if unused:
            out.append(
                (
                    f"mqtt.{unused[0]}",
                    f"{', '.join(unused)} do nothing with a client certificate (the broker "
                    f"takes its CN as the user name): remove them",
                )
            )
    return out
