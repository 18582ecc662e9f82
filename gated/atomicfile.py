"""Files written so that a power cut leaves either the old content or the new one, never a mix.

    write_atomic(path, data, mode=0o644)

A temporary file in the same directory (so the rename stays within one file system), the data
written and fsync'd, then `os.replace` over the target, then an fsync of the directory so the
rename itself is on the card. A reader (or the next boot) sees the whole old file or the whole new
one: a keyring of 0 bytes after a power cut, which a plain `write_text` can leave behind (the
data were still in the page cache when the power went, the truncation was not), cannot happen.

Every file the project writes (keyrings and public keys, private keys, certificates, generated
configuration, reports, state snapshots) goes through here; SQLite files are SQLite's business
(WAL, synchronous=FULL). `fsyncs` counts the fsync calls made, for tests and measurements.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

fsyncs = 0  # fsync calls made by this module since the process started (files and directories)


def write_atomic(path: str | os.PathLike, data: bytes | str, *, mode: int = 0o644, exclusive: bool = False) -> Path:
    """Replace `path` with `data` (str is written as UTF-8) atomically and durably; the file gets
    `mode` whatever the umask (0600 for private keys). `exclusive`: refuse (FileExistsError) if the
    file is there already, checked again at the rename (no file is overwritten)."""
    global fsyncs
    path = Path(path)
    if isinstance(data, str):
        data = data.encode()
    directory = path.parent
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), mode)
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
            fsyncs += 1
        try:
            if exclusive:
                os.link(tmp, path)  # fails if the target exists; then the temporary name goes
                os.unlink(tmp)
            else:
                os.replace(tmp, path)
        except OSError as exc:  # named by the temporary file, which is gone: name the target
            exc.filename, exc.filename2 = str(path), None
            raise
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    sync_directory(directory)
    return path


def sync_directory(directory: str | os.PathLike) -> None:
    """fsync a directory, so that the names created or renamed in it survive a power cut."""
    global fsyncs
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
        fsyncs += 1
    finally:
        os.close(fd)
