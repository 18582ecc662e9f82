"""The rehearsal's camera: a frame source that renders whatever ticket the simulated world holds up.

`camera = "synthetic:"` in a gate's configuration (gated/gate/camera.py open_source) gives this source;
the simulator (sim/) and the control socket (gated/gate/rehearsal/control.py) tell it what to show and
when to stall. A gate in service never loads it.
"""

from __future__ import annotations

import threading
import time

import numpy as np

from gated.gate.frames import Frame, MadeFrames
from gated.gate.rehearsal.synthetic import Distortions, render_idle_frame, render_ticket_frame


class SyntheticSource(MadeFrames):
    """Rendered camera frames of whatever ticket text the world shows (`show(text)`; None: nobody).

    For the simulator and tests: frames are paced at `fps` like a camera, every frame gets freshly
    drawn distortions (pin any with keywords: `SyntheticSource(blur=0.0, tilt=0.0)`), and
    `stall()` imitates a hung camera until the next open()."""

    def __init__(
        self, *, width: int = 1280, height: int = 720, fps: float | None = 15.0, seed: int | None = None, **distortions
    ):
        Distortions.sample(np.random.default_rng(0), **distortions)  # unknown names fail here, not mid-run
        self.name = "synthetic:"
        self.size = (int(width), int(height))
        self.fps = float(fps) if fps else None
        self.distortions = distortions
        self._rng = np.random.default_rng(seed)
        self._lock = threading.Lock()
        self._text: str | None = None
        self._stalled = False
        self._seq = 0
        self._last_at = time.monotonic()

    def show(self, text: str | None) -> None:
        """Put a ticket's QR code in front of the camera (None: take it away). Thread-safe."""
        with self._lock:
            self._text = text

    def stall(self) -> None:
        """From now until open(), deliver nothing (a hung camera)."""
        with self._lock:
            self._stalled = True

    def open(self) -> None:
        with self._lock:
            self._stalled = False
            self._last_at = time.monotonic()

    def read(self, timeout: float | None = 1.0) -> Frame | None:
        with self._lock:
            text, stalled = self._text, self._stalled
        if stalled:
            time.sleep(timeout or 0.0)
            return None
        if self.fps:
            wait = self._last_at + 1.0 / self.fps - time.monotonic()
            if wait > 0:
                time.sleep(wait if timeout is None else min(wait, timeout))
        if text is None:
            gray = render_idle_frame(
                self.size, self._rng, **{k: v for k, v in self.distortions.items() if k in ("noise", "gradient")}
            )
        else:
            gray = render_ticket_frame(text, self.size, self._rng, **self.distortions)
        return self._made(gray, "synthetic")

    def close(self) -> None:
        return None
