"""Frames and the kinds of frame source: what every camera, the scan loop and the config share.

A leaf (it imports nothing of the gate), so the cameras (gated/gate/camera.py), the rehearsal's
synthetic camera (gated/gate/rehearsal/camera.py) and the config's check of a `[camera] source`
spec (gated/gate/config.py) all read the one table of kinds instead of listing them again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from gated.core.errors import GatedError


@dataclass(frozen=True)
class CameraKind:
    """One kind of `[camera] source` spec, KIND:WHAT."""

    name: str
    example: str  # how the config's message shows it
    needs_target: bool = False  # WHAT may not be empty
    number_target: bool = False  # WHAT, when given, is a camera number


IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".pgm", ".ppm", ".tif", ".tiff", ".webp"}  # files:, watched or not

CAMERA_KINDS = {
    kind.name: kind
    for kind in (
        CameraKind("v4l2", "v4l2:/dev/videoN", needs_target=True),
        CameraKind("picamera2", "picamera2:N", number_target=True),
        CameraKind("files", "files:/dir", needs_target=True),
        CameraKind("synthetic", "synthetic:"),
    )
}
KIND_NAMES = ", ".join(CAMERA_KINDS)  # "v4l2, picamera2, files, synthetic"
KIND_EXAMPLES = ", ".join(kind.example for kind in CAMERA_KINDS.values())
# Auto-exposure modes of a Raspberry Pi camera: libcamera's AeExposureMode values (controls.AeExposureModeEnum)
EXPOSURE_MODES = {"short": 1, "normal": 0}


def spec_problem(spec: str) -> str | None:
    """What is wrong with a source spec's KIND:WHAT (None: nothing); options after `?` are the
    source's own business."""
    name, _, rest = spec.partition(":")
    kind = CAMERA_KINDS.get(name)
    if kind is None or (kind.needs_target and not rest):
        return f"one of {KIND_EXAMPLES}"
    if kind.number_target and rest and not rest.isdigit():
        return f"{name}:<camera number>"
    return None


class CameraError(GatedError, RuntimeError):
    """A frame source cannot be opened or has failed; the message says what to check."""


def as_gray(image: np.ndarray) -> np.ndarray:
    """A frame as a contiguous HxW uint8 array: grey as it is (or on a third axis of one), BGR and
    BGRA converted; anything else refused with ValueError saying what it was. The one rule for
    every camera and the scanner (a frame a camera hands on is one the scanner reads)."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    elif image.ndim == 3 and image.shape[2] in (3, 4) and image.dtype == np.uint8:
        import cv2

        image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY if image.shape[2] == 3 else cv2.COLOR_BGRA2GRAY)
    if image.dtype != np.uint8 or image.ndim != 2:
        raise ValueError(f"expected a grayscale uint8 frame, got {image.dtype} {image.shape}")
    return np.ascontiguousarray(image)


@dataclass(frozen=True)
class Frame:
    """One grayscale frame: `gray` is a HxW uint8 array, `captured_at` time.monotonic() seconds."""

    gray: np.ndarray
    captured_at: float
    seq: int
    origin: str = ""  # where it came from: an image path, "clip.mp4#12" (frame 12), the device


class FrameSource(Protocol):
    name: str

    def open(self) -> None: ...

    def read(self, timeout: float | None = 1.0) -> Frame | None:
        """The newest frame not yet returned, waiting up to `timeout` s; None if none came (or the
        source is finished: see `finished`)."""

    def close(self) -> None: ...

    def frame_age(self, now: float | None = None) -> float:
        """Seconds since the newest frame was captured, or since open() if none was: the health signal."""

    @property
    def finished(self) -> bool:
        """True once a non-looping file source has delivered its last frame (live sources: never)."""


class MadeFrames:
    """What a source that makes its own frames, one after another and never finishing, shares (the
    synthetic camera, the watched folder): the sequence number, the capture time and the age."""

    _seq: int = 0
    _last_at: float = 0.0

    def _made(self, gray, origin: str) -> Frame:
        self._seq += 1
        self._last_at = time.monotonic()
        return Frame(gray, self._last_at, self._seq, origin)

    def frame_age(self, now: float | None = None) -> float:
        return (time.monotonic() if now is None else now) - self._last_at

    @property
    def finished(self) -> bool:
        return False
