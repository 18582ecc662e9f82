"""A bench camera: a folder the gate watches, where each new image is a ticket held up to it.

    [camera] source = "files:/var/lib/gated/show?watch=1"        (options: hold=1.5, fps, width, height)

Each image that appears in the folder (PNG, JPEG, ... as camera.IMAGE_SUFFIXES; `gated show` writes
one atomically: a temporary name without an image suffix, then a rename) is shown for `hold`
seconds, then taken away (deleted, so a restart does not show it again), and the next one follows;
in between the camera sees a blank card. Frames keep coming at `fps` all the time, so the gate's
camera supervision and the systemd watchdog see a working camera.

Nothing here listens on a socket or runs rehearsal code: the folder's permissions are the only
door, so make it the service user's own (`install -d -m 0700 -o gated /var/lib/gated/show`: root
and gated may show tickets, nobody else). A file that cannot be read is skipped and logged.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np

from gated.gate.frames import IMAGE_SUFFIXES, CameraError, Frame, MadeFrames

BLANK = 235  # a light grey card: no code


class WatchedFolder(MadeFrames):
    def __init__(
        self,
        path: str | Path,
        *,
        hold: float = 1.5,
        fps: float = 10.0,
        width: int = 640,
        height: int = 480,
        report: Callable[[str], None] | None = None,
        **_ignored,
    ):
        self.path = Path(path)
        self.name = f"files:{path}?watch=1"
        self.hold_s = float(hold)
        self.fps = float(fps) if fps else 10.0
        self.size = (int(height), int(width))
        self.report = report or (lambda message: None)
        self._seq = 0
        self._last_at = time.monotonic()
        self._showing: np.ndarray | None = None
        self._origin = ""
        self._until = 0.0
        self._skipped: set[str] = set()  # files that could not be read or removed: not shown again

    def open(self) -> None:
        if not self.path.is_dir():
            raise CameraError(
                f"{self.name}: no such directory (make it the service user's own: "
                f"install -d -m 0700 -o gated {self.path})"
            )
        self._last_at = time.monotonic()

    def _next_file(self) -> Path | None:
        """The oldest image in the folder not yet shown; hidden names (still being written) are not."""
        try:
            entries = list(self.path.iterdir())
        except OSError as exc:
            raise CameraError(f"{self.name}: cannot list the folder ({exc.strerror})") from None
        found = []
        for p in entries:
            if p.suffix.lower() not in IMAGE_SUFFIXES or p.name.startswith(".") or p.name in self._skipped:
                continue
            try:
                found.append((p.stat().st_mtime_ns, p.name, p))
            except OSError:  # gone between listing and looking: someone else took it
                continue
        return min(found)[2] if found else None

    def _take(self, item: Path) -> np.ndarray | None:
        import cv2

        image = cv2.imread(str(item), cv2.IMREAD_GRAYSCALE)
        try:
            item.unlink()  # shown once; a restart does not show it again
        except OSError as exc:
            self._skipped.add(item.name)
            self.report(f"camera {self.name}: cannot remove {item.name} after showing it ({exc.strerror})")
        if image is None:
            self._skipped.add(item.name)
            self.report(f"camera {self.name}: {item.name} is not a readable image; skipped")
        return image

    def read(self, timeout: float | None = 1.0) -> Frame | None:
        wait = self._last_at + 1.0 / self.fps - time.monotonic()
        if wait > 0:
            time.sleep(wait if timeout is None else min(wait, timeout))
        now = time.monotonic()
        if self._showing is not None and now >= self._until:
            self._showing = None
        if self._showing is None:
            item = self._next_file()
            if item is not None:
                image = self._take(item)
                if image is not None:
                    self._showing, self._origin, self._until = image, str(item), now + self.hold_s
                    self.report(f"camera {self.name}: showing {item.name} for {self.hold_s:g} s")
        if self._showing is not None:
            return self._made(self._showing, self._origin)
        return self._made(np.full(self.size, BLANK, np.uint8), "blank")

    def close(self) -> None:
        self._showing = None
