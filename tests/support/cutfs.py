"""A FUSE file system for power-cut tests: what was not synced is lost at the cut.

    python -m tests.support.cutfs BACKING MOUNTPOINT      (foreground; `fusermount3 -u MOUNTPOINT` ends it)

A pass-through to the directory BACKING, except that file data written is kept in this process's
memory (each file's pages over its content on disk) and reaches BACKING only at `fsync`/
`fdatasync` of that file, as data in a page cache reaches the card only when it is synced.
SIGUSR1 is the power cut: from then on every operation fails (EIO) and what was not synced is
never written: after `fusermount3 -u`, BACKING holds exactly what survived. Names (create,
unlink, rename, mkdir) and sizes set by truncate reach BACKING at once, as a journaling file
system's metadata does (ext4's data=ordered commits it within seconds, before the data): so a
file rewritten in place and cut before its fsync is left empty or short, which is what a power
cut does to a keyring written without fsync on a Raspberry Pi.

One thread (no questions of ordering), no writeback cache: each write() reaches here as it is
made. Locks are the kernel's (local to this mount), enough for one SQLite process.
"""

from __future__ import annotations

import errno
import os
import signal
import sys

from mfusepy import FUSE, FuseOSError, Operations

PAGE = 4096


class _File:
    """A file's content as the programs see it: the synced bytes on disk, and pages written since."""

    def __init__(self, real: str):
        self.real = real
        self.size = os.path.getsize(real)
        self.pages: dict[int, bytearray] = {}  # page index -> the page's bytes as written (PAGE long)

    def _page(self, index: int) -> bytearray:
        page = self.pages.get(index)
        if page is None:
            with open(self.real, "rb") as fh:
                fh.seek(index * PAGE)
                page = bytearray(fh.read(PAGE).ljust(PAGE, b"\0"))
            self.pages[index] = page
        return page

    def read(self, size: int, offset: int) -> bytes:
        end = min(offset + size, self.size)
        out = bytearray()
        while offset < end:
            index, at = divmod(offset, PAGE)
            take = min(PAGE - at, end - offset)
            if index in self.pages:
                out += self.pages[index][at : at + take]
            else:
                with open(self.real, "rb") as fh:
                    fh.seek(offset)
                    out += fh.read(take).ljust(take, b"\0")
            offset += take
        return bytes(out)

    def write(self, data: bytes, offset: int) -> int:
        done = 0
        while done < len(data):
            index, at = divmod(offset + done, PAGE)
            take = min(PAGE - at, len(data) - done)
            self._page(index)[at : at + take] = data[done : done + take]
            done += take
        self.size = max(self.size, offset + len(data))
        return len(data)

    def truncate(self, length: int) -> None:
        """A size change is metadata: on disk at once (the bytes past it are gone; bytes below it
        that were written but not synced stay unsynced)."""
        os.truncate(self.real, length)
        self.size = length
        for index in [i for i in self.pages if i * PAGE >= length]:
            del self.pages[index]
        last = length // PAGE
        if last in self.pages:
            self.pages[last][length % PAGE :] = bytes(PAGE - length % PAGE)

    def sync(self) -> None:
        fd = os.open(self.real, os.O_WRONLY)
        try:
            for index, page in sorted(self.pages.items()):
                end = min(PAGE, self.size - index * PAGE)
                if end > 0:
                    os.pwrite(fd, bytes(page[:end]), index * PAGE)
            os.ftruncate(fd, self.size)
            os.fsync(fd)
        finally:
            os.close(fd)
        self.pages.clear()


class CutFS(Operations):
    use_ns = True  # utimens gets nanoseconds

    def __init__(self, backing: str):
        self.backing = os.path.realpath(backing)
        self.files: dict[str, _File] = {}
        self.cut = False
        self.handles = 0

    def _real(self, path: str) -> str:
        return os.path.join(self.backing, path.lstrip("/"))

    def _alive(self) -> None:
        if self.cut:
            raise FuseOSError(errno.EIO)

    def _file(self, path: str) -> _File:
        found = self.files.get(path)
        if found is None:
            found = self.files[path] = _File(self._real(path))
        return found

    def cut_power(self, *_):
        self.cut = True
        self.files.clear()  # never written: the page cache died with the power

    # --- metadata: straight to the backing directory -----------------------------------------
    def getattr(self, path, fh=None):
        self._alive()
        try:
            st = os.lstat(self._real(path))
        except OSError as exc:
            raise FuseOSError(exc.errno) from None
        attrs = {
            k: getattr(st, k)
            for k in ("st_mode", "st_nlink", "st_uid", "st_gid", "st_atime", "st_mtime", "st_ctime", "st_size")
        }
        if path in self.files:
            attrs["st_size"] = self.files[path].size
        return attrs

    def readdir(self, path, fh):
        self._alive()
        return [".", ".."] + os.listdir(self._real(path))

    def access(self, path, amode):
        self._alive()
        if not os.access(self._real(path), amode):
            raise FuseOSError(errno.EACCES)
        return 0

    def chmod(self, path, mode):
        self._alive()
        os.chmod(self._real(path), mode)
        return 0

    def chown(self, path, uid, gid):
        self._alive()
        os.chown(self._real(path), uid, gid)
        return 0

    def utimens(self, path, times=None):
        self._alive()
        os.utime(self._real(path), ns=times) if times is not None else os.utime(self._real(path))
        return 0

    def mkdir(self, path, mode):
        self._alive()
        os.mkdir(self._real(path), mode)
        return 0

    def rmdir(self, path):
        self._alive()
        os.rmdir(self._real(path))
        return 0

    def unlink(self, path):
        self._alive()
        os.unlink(self._real(path))
        self.files.pop(path, None)
        return 0

    def rename(self, old, new):
        self._alive()
        os.rename(self._real(old), self._real(new))
        self.files.pop(new, None)
        if old in self.files:
            self.files[new] = self.files.pop(old)
            self.files[new].real = self._real(new)
        return 0

    def statfs(self, path):
        st = os.statvfs(self._real(path))
        return {
            k: getattr(st, k)
            for k in (
                "f_bavail",
                "f_bfree",
                "f_blocks",
                "f_bsize",
                "f_favail",
                "f_ffree",
                "f_files",
                "f_flag",
                "f_frsize",
                "f_namemax",
            )
        }

    # --- data: in memory until synced ------------------------------------------------------
    def create(self, path, mode, fi=None):
        self._alive()
        os.close(os.open(self._real(path), os.O_WRONLY | os.O_CREAT, mode))
        self.handles += 1
        return self.handles

    def open(self, path, flags):
        self._alive()
        if flags & os.O_TRUNC:
            self._file(path).truncate(0)
        self.handles += 1
        return self.handles

    def read(self, path, size, offset, fh):
        self._alive()
        return self._file(path).read(size, offset)

    def write(self, path, data, offset, fh):
        self._alive()
        return self._file(path).write(bytes(data), offset)

    def truncate(self, path, length, fh=None):
        self._alive()
        self._file(path).truncate(length)
        return 0

    def fsync(self, path, datasync, fh):
        self._alive()
        if path in self.files:
            self.files[path].sync()
        return 0

    def fsyncdir(self, path, datasync, fh):
        self._alive()
        return 0

    def flush(self, path, fh):
        self._alive()
        return 0

    def release(self, path, fh):
        return 0


def main() -> None:
    backing, mountpoint = sys.argv[1], sys.argv[2]
    fs = CutFS(backing)
    signal.signal(signal.SIGUSR1, fs.cut_power)
    FUSE(fs, mountpoint, foreground=True, nothreads=True, default_permissions=True)


if __name__ == "__main__":
    main()
