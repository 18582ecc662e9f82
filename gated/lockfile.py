"""One running process per role: a lock held for the process's life, taken before it connects.

    hold(path, what)   an exclusive flock on `path` (made if absent; the holder's pid written in it),
                       or RoleTaken naming the holder. The kernel drops the lock when the process
                       ends, however it ends (SIGKILL, power cut): nothing stale to clean up.

A second `gated run` on one state directory (two processes writing one gate's events and taking one
MQTT session) and a second ledger worker for the same site and partition (issue #22) refuse to start.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from gated.core.errors import GatedError


class RoleTaken(GatedError, RuntimeError):
    """Another running process already holds this role; the message names it."""


def hold(path: str | os.PathLike, what: str) -> int:
    """The open, locked file descriptor (keep it open for as long as the role is held)."""
    path = Path(path)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise RoleTaken(f"{what} is already running (pid {holder}, lock {path}); stop it first") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def release(fd: int | None) -> None:
    if fd is not None:
        try:
            os.close(fd)
        except OSError:
            pass
