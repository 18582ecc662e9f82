"""Frame sources: where the gate's grayscale frames come from, behind one small interface.

    source = open_source("v4l2:/dev/v4l/by-id/usb-...-video-index0", width=1280, height=720)
    source.open()
    frame = source.read(timeout=1.0)   # Frame(gray=uint8 HxW, captured_at=monotonic s, seq) or None
    source.frame_age()                 # seconds since the newest frame was captured (or since open())
    source.close()

Specs (the daemon config passes one string; options may also ride in it: `files:/x?loop=1&fps=10`):
    v4l2:DEVICE       a USB (UVC) camera through OpenCV's V4L2 backend. DEVICE is a path, best a
                      stable /dev/v4l/by-id/... link, or an index. Options: width, height, fps, fourcc.
    picamera2:N       the Raspberry Pi camera module N through Picamera2 (libcamera). OpenCV cannot
                      open libcamera cameras on current Raspberry Pi OS. Picamera2 comes from apt
                      (python3-picamera2), so the venv must see system packages:
                      `python3 -m venv --system-site-packages .venv`. Options: width, height,
                      exposure (short: libcamera's short auto-exposure mode, the default, so
                      a phone moved into view smears less; normal: libcamera's default; a camera
                      that does not offer the control keeps its own auto-exposure).
    files:PATH        an image file, a directory of images/videos (sorted by name), or a video file.
                      Options: loop (start again at the end), fps (pace frames; default: as fast as read).
                      watch=1: a bench; the folder is watched, each new image shown for a moment
                      (gated/gate/watchcam.py; `gated show` puts one there).
    synthetic:        rendered ticket frames (gated.gate.rehearsal.synthetic); `show(text)` picks the code in view.
                      Options: width, height, fps, seed, and any distortion to pin (blur=0, ...).

Live cameras run a reader thread that keeps only the newest frame: a decision never runs on a
frame that waited in a driver queue while the previous one was decoded, and `read()` never hands
out the same frame twice. A camera that stops delivering (unplugged, driver hang) shows as a
growing `frame_age()`; `SupervisedSource` wraps any source, notices that, reopens it and says so.
Faults are `CameraError`s whose message says what to check.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Callable
from urllib.parse import parse_qsl

import numpy as np
import structlog

from gated.gate.frames import (
    CAMERA_KINDS,
    EXPOSURE_MODES,
    IMAGE_SUFFIXES,
    KIND_NAMES,
    CameraError,
    Frame,
    FrameSource,
    as_gray,
)

log = structlog.get_logger("gated.gate.camera")

VIDEO_SUFFIXES = {".mp4", ".avi", ".mkv", ".mov", ".mjpeg", ".mjpg", ".webm", ".h264"}


class _LiveSource:
    """A camera read by a background thread into a one-frame slot (the newest frame wins)."""

    name = "camera"

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._latest: Frame | None = None
        self._returned_seq = -1
        self._seq = 0
        self._opened_at = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: str | None = None  # why the reader thread stopped, if it did

    # subclass hooks: _start() opens the device, _grab() returns a gray frame or None (failed),
    # _stop_device() releases it.
    def _start(self) -> None:
        raise NotImplementedError

    def _grab(self) -> np.ndarray | None:
        raise NotImplementedError

    def _stop_device(self) -> None:
        raise NotImplementedError

    def open(self) -> None:
        self.close()
        self._start()
        self._stop.clear()
        self.error = None
        self._opened_at = time.monotonic()
        with self._cond:
            self._latest, self._returned_seq = None, -1
        self._thread = threading.Thread(target=self._run, name=f"camera {self.name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                gray = self._grab()
            except Exception as exc:  # noqa: BLE001  it ends this thread, not unsaid; every next frame would too
                self.error = (
                    f"its frames are not images the scanner reads: {exc}"  # as_gray refused it
                    if isinstance(exc, ValueError)
                    else f"the camera failed: {type(exc).__name__}: {exc}"
                )
                log.error("camera stopped", camera=self.name, error=self.error)
                return
            if gray is None:
                failures += 1
                if failures >= 20:  # the device keeps failing: stop, the age grows, supervision reopens
                    self.error = "the camera stopped delivering frames"
                    return
                time.sleep(0.05)
                continue
            failures = 0
            with self._cond:
                self._seq += 1
                self._latest = Frame(gray, time.monotonic(), self._seq, self.name)
                self._cond.notify_all()

    def read(self, timeout: float | None = 1.0) -> Frame | None:
        with self._cond:
            fresh = self._cond.wait_for(
                lambda: self._latest is not None and self._latest.seq > self._returned_seq, timeout
            )
            if not fresh:
                return None
            self._returned_seq = self._latest.seq
            return self._latest

    def frame_age(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        latest = self._latest
        return now - (latest.captured_at if latest is not None else self._opened_at)

    @property
    def finished(self) -> bool:
        return False

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None
        self._stop_device()


class V4L2Source(_LiveSource):
    """A USB camera through OpenCV's V4L2 backend (MJPG at 1280x720 by default)."""

    def __init__(self, device: str | int, *, width: int = 1280, height: int = 720, fps: int = 30, fourcc: str = "MJPG"):
        super().__init__()
        self.device = int(device) if isinstance(device, str) and device.isdigit() else device
        self.name = f"v4l2:{device}"
        self.width, self.height, self.fps, self.fourcc = int(width), int(height), int(fps), fourcc
        self._cap = None

    def _start(self) -> None:
        import cv2

        cap = cv2.VideoCapture(self.device, cv2.CAP_V4L2)
        if not cap.isOpened():
            cap.release()
            raise CameraError(
                f"{self.name}: cannot open the camera: is it plugged in, is the path right "
                "(ls -l /dev/v4l/by-id/), and may this user read it (group video)?"
            )
        cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*self.fourcc))
        cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
        cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
        cap.set(cv2.CAP_PROP_FPS, self.fps)
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # the driver's queue: as short as it will go
        self._cap = cap

    def _grab(self) -> np.ndarray | None:
        ok, image = self._cap.read()
        return as_gray(image) if ok and image is not None else None

    def _stop_device(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class Picamera2Source(_LiveSource):
    """The Raspberry Pi camera module via Picamera2; the Y plane of YUV420 is the gray frame."""

    def __init__(self, camera: int | str = 0, *, width: int = 1280, height: int = 720, exposure: str = "short"):
        super().__init__()
        self.camera = int(camera or 0)
        self.name = f"picamera2:{self.camera}"
        self.width, self.height = int(width), int(height)
        if exposure not in EXPOSURE_MODES:
            raise CameraError(f"{self.name}: exposure {exposure!r}: choose one of {', '.join(EXPOSURE_MODES)}")
        self.controls = {"AeExposureMode": EXPOSURE_MODES[exposure]}  # given to libcamera at start
        self._cam = None

    def _start(self) -> None:
        try:
            from picamera2 import Picamera2  # only on a Raspberry Pi, from apt (python3-picamera2)
        except ImportError as exc:
            raise CameraError(
                f"{self.name}: picamera2 is not importable ({exc}): on Raspberry Pi OS "
                "apt install python3-picamera2 and create the venv with --system-site-packages"
            ) from exc
        try:
            cam = Picamera2(self.camera)
            config = cam.create_video_configuration(
                main={"size": (self.width, self.height), "format": "YUV420"},
                controls=self.controls_for(cam.camera_controls),
            )
            cam.configure(config)
            cam.start()
        except (RuntimeError, IndexError, OSError) as exc:
            raise CameraError(
                f"{self.name}: cannot start the camera ({exc}): check the ribbon cable "
                "and `rpicam-hello --list-cameras`"
            ) from exc
        self._cam = cam

    def controls_for(self, advertised) -> dict:
        """The controls to give a camera that advertises `advertised` (Picamera2's
        camera_controls): only those it has. Picamera2 refuses to configure a camera with a control
        it does not advertise (a USB camera through libcamera has no AeExposureMode): such a
        camera starts with its own auto-exposure rather than not at all."""
        given = {name: value for name, value in self.controls.items() if name in advertised}
        if len(given) < len(self.controls):
            log.warning(
                "camera control not offered; the camera's own setting stays",
                camera=self.name,
                controls=sorted(set(self.controls) - set(given)),
            )
        return given

    def _grab(self) -> np.ndarray | None:
        try:
            yuv = self._cam.capture_array("main")
        except RuntimeError:
            return None
        return as_gray(yuv[: self.height, : self.width])  # the Y plane

    def _stop_device(self) -> None:
        if self._cam is not None:
            try:
                self._cam.stop()
                self._cam.close()
            except RuntimeError:
                pass  # already gone with the device; nothing left to release
            self._cam = None


class FileSource:
    """Frames from an image file, a directory (images and videos, sorted by name) or a video file."""

    def __init__(self, path: str | Path, *, loop: bool = False, fps: float | None = None):
        self.path = Path(path)
        self.name = f"files:{path}"
        self.loop = bool(loop)
        self.fps = float(fps) if fps else None
        self._items: list[Path] = []
        self._index = 0
        self._video = None
        self._video_frame = 0
        self._seq = 0
        self._last_at = time.monotonic()
        self._finished = False

    def open(self) -> None:
        if self.path.is_dir():
            items = sorted(p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES)
        elif self.path.is_file():
            items = [self.path]
        else:
            raise CameraError(f"{self.name}: no such file or directory")
        if not items:
            raise CameraError(f"{self.name}: no images or videos in the directory")
        self._items, self._index, self._finished = items, 0, False
        self._last_at = time.monotonic()
        self._close_video()

    def read(self, timeout: float | None = 1.0) -> Frame | None:
        if self.fps:
            wait = self._last_at + 1.0 / self.fps - time.monotonic()
            if wait > 0:
                time.sleep(wait if timeout is None else min(wait, timeout))
        while not self._finished:
            got = self._next_image()
            if got is not None:
                gray, origin = got
                self._seq += 1
                self._last_at = time.monotonic()
                return Frame(gray, self._last_at, self._seq, origin)
        return None

    def _next_image(self) -> tuple[np.ndarray, str] | None:
        """The next frame, or None after moving on (an unreadable file, the end of a video, of the list)."""
        import cv2

        if self._index >= len(self._items):
            if self.loop and self._seq > 0:
                self._index = 0
            else:
                self._finished = True
                return None
        item = self._items[self._index]
        if item.suffix.lower() in VIDEO_SUFFIXES:
            if self._video is None:
                self._video = cv2.VideoCapture(str(item))
                self._video_frame = 0
                if not self._video.isOpened():
                    self._close_video()
                    raise CameraError(f"{self.name}: cannot decode video {item} (codec missing in OpenCV?)")
            ok, image = self._video.read()
            if ok:
                self._video_frame += 1
                return as_gray(image), f"{item}#{self._video_frame}"
            self._close_video()
            self._index += 1
            return None
        self._index += 1
        image = cv2.imread(str(item), cv2.IMREAD_GRAYSCALE)
        if image is None:
            raise CameraError(f"{self.name}: cannot read image {item}")
        return image, str(item)

    def _close_video(self) -> None:
        if self._video is not None:
            self._video.release()
            self._video = None

    def frame_age(self, now: float | None = None) -> float:
        return (time.monotonic() if now is None else now) - self._last_at

    @property
    def finished(self) -> bool:
        return self._finished

    def close(self) -> None:
        self._close_video()


class SupervisedSource:
    """Any source, watched: when no frame came for `stall_after_s`, it is reopened, and `report`
    (a callable taking one message, e.g. a logger method) is told. Reopen attempts back off up
    to `max_backoff_s`; a finished file source is left alone."""

    def __init__(
        self,
        source: FrameSource,
        *,
        stall_after_s: float = 3.0,
        max_backoff_s: float = 30.0,
        report: Callable[[str], None] = print,
    ):
        self.source = source
        self.name = source.name
        self.stall_after_s = stall_after_s
        self.max_backoff_s = max_backoff_s
        self.report = report
        self.reopens = 0
        self._backoff = stall_after_s
        self._next_try = 0.0
        self._down = False  # the last reopen failed: nothing to read until the next try
        self._recovering = False  # reopened, and no frame seen since

    def open(self) -> None:
        self.source.open()

    def read(self, timeout: float | None = 1.0) -> Frame | None:
        frame = self.source.read(timeout) if not self._down else None
        now = time.monotonic()
        if frame is not None:
            if self._recovering:
                self.report(f"camera {self.name}: frames again")
                self._recovering = False
            self._backoff = self.stall_after_s
            return frame
        if self.source.finished:
            return None
        age = self.source.frame_age(now)
        if age >= self.stall_after_s and now >= self._next_try:
            self._reopen(age, now)
        elif self._down and timeout:
            time.sleep(min(timeout, max(self._next_try - now, 0.0)))
        return None

    def _reopen(self, age: float, now: float) -> None:
        self.reopens += 1
        self._recovering = True
        why = getattr(self.source, "error", None)  # a live camera's reader thread says why it stopped
        self.report(
            f"camera {self.name}: no frame for {age:.1f} s{f' ({why})' if why else ''}; "
            f"reopening (attempt {self.reopens})"
        )
        try:
            self.source.close()
            self.source.open()
            self._down = False
        except CameraError as exc:
            self._down = True
            self.report(f"camera {self.name}: reopen failed: {exc}; next try in {self._backoff:.0f} s")
        self._next_try = now + self._backoff
        self._backoff = min(self._backoff * 2, self.max_backoff_s)

    def frame_age(self, now: float | None = None) -> float:
        return self.source.frame_age(now)

    @property
    def finished(self) -> bool:
        return self.source.finished

    def close(self) -> None:
        self.source.close()


def open_source(spec: str, **opts) -> FrameSource:
    """A frame source for a spec string (`v4l2:/dev/video0`, `picamera2:0`, `files:/path`, `synthetic:`).
    Options from `?k=v&...` in the spec, overridden by keywords. The source is not yet opened."""
    kind, sep, rest = spec.partition(":")
    if not sep:
        raise CameraError(f"camera spec {spec!r}: expected KIND:WHAT, KIND one of {KIND_NAMES}")
    if kind not in CAMERA_KINDS:
        raise CameraError(f"camera spec {spec!r}: unknown kind {kind!r} ({KIND_NAMES})")
    target, _, query = rest.partition("?")
    options = {k: _option_value(v) for k, v in parse_qsl(query, keep_blank_values=True)}
    options.update(opts)
    try:
        return _OPENERS[kind](target, options)
    except TypeError as exc:
        raise CameraError(f"camera spec {spec!r}: {exc}") from exc


def _open_v4l2(target: str, options: dict) -> FrameSource:
    if not target:
        raise CameraError("camera spec v4l2: needs a device, e.g. v4l2:/dev/video0")
    return V4L2Source(target, **options)


def _open_picamera2(target: str, options: dict) -> FrameSource:
    return Picamera2Source(target or 0, **options)


def _open_files(target: str, options: dict) -> FrameSource:
    if not target:
        raise CameraError("camera spec files: needs a path, e.g. files:/srv/frames")
    if options.pop("watch", False):  # a bench: each new image in the folder is a ticket held up
        from gated.gate.watchcam import WatchedFolder

        return WatchedFolder(target, **options)
    options.pop("hold", None)
    return FileSource(target, **options)


def _open_synthetic(target: str, options: dict) -> FrameSource:
    from gated.gate.rehearsal.camera import SyntheticSource  # a rehearsal's: a gate in service never loads it

    return SyntheticSource(**options)


# one opener per kind of gated.gate.frames.CAMERA_KINDS (tests/gate/test_camera.py checks they match)
_OPENERS = {"v4l2": _open_v4l2, "picamera2": _open_picamera2, "files": _open_files, "synthetic": _open_synthetic}


def _option_value(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            continue
    return {"true": True, "yes": True, "on": True, "false": False, "no": False, "off": False}.get(text.lower(), text)
