"""Reading across frames: what the last frames showed steers the effort on the next (issue 27).

A visitor's phone is in front of the camera for many frames: coming in blurred, tilted and
over-exposed, then settling with a tremor. One frame alone may not be sharp enough, but the
frames are not independent: the code is where it was a moment ago, at the same scale. `Tracker`
wraps a `Scanner` (one per camera, like the Scanner's own scenery memory) and, on a frame where
the scanner's passes read nothing:

  * remembers the places where a code was seen or a region looked like one (`Reading.places`:
    symbols zxing-cpp located but could not decode, textured regions) for MEMORY_FRAMES frames
    (WINDOW_S seconds at most), and reads a remembered place this frame's passes did not cover,
    with the texture pass's tries (a phone that blurred out of the texture search this frame is
    still where it was);
  * stacks the frames (shift-and-add super-resolution, `stack_place`): the place cut out of the
    sharpest STACK_USE of the last STACK_FRAMES frames (of the last WINDOW_S seconds), upscaled
    2x, each moved by the sub-pixel shift that aligns it with the sharpest (phase correlation: the
    tremor moves it a few pixels from frame to frame), averaged, and read like a textured region. The frames sample the code
    at different sub-pixel phases, so the stack holds detail no single frame has (modules under
    2 pixels, foreshortened by a tilt), and the sensor noise and JPEG blocks, which differ from
    frame to frame, average out;
  * bounds the time per frame: a read across frames starts only while the frame's CPU time (this
    thread's, the scanner's passes included) is under FRAME_BUDGET_S, so a hard scene cannot
    stall the camera thread for long; at a place this frame shows that has stopped moving (its
    centre moved less than STILL_SHARE of its size since the last frame; not one the scanner
    takes for scenery, such as a damaged code on the wall) under STILL_BUDGET_MULTIPLE times that:
    a settled phone with modules under 2 px is what stacking reads, and the scanner's own passes
    on such a frame take 25-35 ms, which left no time for the stack (a 1.6 px-module clip of
    bench/clips.py at 640x480 was read in no run at FRAME_BUDGET_S alone).

Every read still goes through the scanner's checks (QR Model 2 only, error correction to spare):
a stacked image of the wrong place cannot produce a text the symbol's error correction does not
confirm. A code read is judged once: the Debouncer (gated.gate.scanner) holds the same text off
in the next frames, as before.
"""

from __future__ import annotations

import math
import time
from collections import deque

import numpy as np

from gated.gate.frames import as_gray
from gated.gate.scanner import Box, Reading, Scanner, Try

MEMORY_FRAMES = 8  # a place is remembered this many frames after it was last seen (~0.27 s at 30 fps)
STACK_FRAMES = 8  # frames kept for stacking (~0.27 s at 30 fps) ...
# ... and never longer than this: on a loaded gate frames come slowly, and eight of them could span
# seconds, so the stack of a phone taken away would still read its code long after (a scan-out exit
# counting one visitor out again and again, an `already_used` red after the green)
WINDOW_S = 0.6
STACK_USE = 4  # ... of which the sharpest are stacked
STACK_UP = 2  # stacked at twice the frame's resolution (shift-and-add super-resolution)
FRAME_BUDGET_S = 0.020  # a read across frames starts only while the frame's CPU time is under this ...
STILL_BUDGET_MULTIPLE = 2  # ... or this many times it at a place that has stopped moving (STILL_SHARE)
STILL_SHARE = 0.1  # a place whose centre moved less than this share of its size since the last frame
MAX_PLACES = 2
STACK_MARGIN = 0.25  # the crop reaches this share of the place's size beyond it (the tremor's reach)
# Reads of a stacked place (already at STACK_UP times the scale)
STACK_TRIES = (
    Try(1, ("LocalAverage",), (3.0, 1.0, 0.0)),
    Try(1, ("LocalAverage", "GlobalHistogram"), (3.0, 2.0, 0.0)),
    Try(2, ("LocalAverage", "GlobalHistogram"), (4.5, 2.0, 0.0)),
)


class Tracker:
    """Decode QR codes in a stream of frames (one Tracker per camera): `decode(gray)` like a Scanner's."""

    def __init__(
        self,
        scanner: Scanner | None = None,
        *,
        stack: bool = True,
        budget_s: float = FRAME_BUDGET_S,
        clock=time.monotonic,
    ):
        """`clock`: when a frame is read (the frames and places older than WINDOW_S are let go)."""
        self.scanner = scanner if scanner is not None else Scanner()
        self.clock = clock
        if self.scanner.backend != "zxing":
            raise ValueError("reading across frames needs the zxing backend")
        self.stack = stack
        self.budget_s = budget_s
        self._places: list[tuple[Box, int, float]] = []  # (box, frames since last seen, when last seen)
        self._frames: deque[tuple[int, np.ndarray, float]] = deque(maxlen=STACK_FRAMES)  # (number, gray, when)
        self._count = 0
        self._stacked: set[tuple] = set()  # (frame numbers, place) stacked in vain: not stacked again

    def decode(self, gray: np.ndarray) -> list[str]:
        return self.read(gray).texts

    def judged_in_view(self, texts) -> None:
        """Scanner.judged_in_view: texts judged and held off, signs from their next read on."""
        self.scanner.judged_in_view(texts)

    def read(self, gray: np.ndarray) -> Reading:
        started = time.thread_time()
        gray = as_gray(gray)  # once: the scanner's own as_gray is then a no-op
        reading = self.scanner.read(gray)
        gray = gray.copy()  # a camera may reuse its buffer for the next frame
        self._count += 1
        now = self.clock()
        self._frames.append((self._count, gray, now))
        while self._frames[0][2] < now - WINDOW_S:
            self._frames.popleft()
        oldest = self._frames[0][0]
        self._stacked = {key for key in self._stacked if key[0][0] >= oldest}
        before = [box for box, age, _ in self._places if age == 0]  # the last frame's places
        self._remember(reading.places, gray.shape, now)
        # A sign's place, and what it painted over (Scanner.sign_areas: read at its place alone, the
        # rest of the frame read without it), is no place to read across frames: stacked from the
        # unpainted frames it would read the sign again, at tens of ms a frame while remembered.
        areas = self.scanner.sign_areas
        if areas:
            self._places = [p for p in self._places if not any(_overlap(p[0], area) > 0.3 for area in areas)]
        if reading.news:  # a sign's text alone (Scanner.signs) leaves the rest of the frame to read
            return reading
        if not self._places:
            return reading
        texts, via = [], None
        fresh = set(reading.places)
        scenery = self.scanner.scenery
        for box, age, _ in self._places[:MAX_PLACES]:
            # A phone still moving fast smears and shifts too far between frames to stack (the
            # reach): there the scanner's passes have the frame's time. One that has stopped
            # moving is where stacking reads what no single frame does (modules under 2 px), so
            # it may take longer there: the hard frames' own passes take 25-35 ms.
            still = age == 0 and _still(box, before) and not any(_overlap(box, b) > 0.6 for b in scenery)
            budget = self.budget_s * (STILL_BUDGET_MULTIPLE if still else 1)
            if self.stack and len(self._frames) >= 2 and time.thread_time() - started <= budget:
                stacked = stack_place([(n, f) for n, f, _ in self._frames], box, self._stacked)
                if stacked is not None:
                    image, _, key = stacked
                    h, w = image.shape
                    texts = self.scanner.read_place(image, (0, 0, w, h), tries=STACK_TRIES)
                    if texts:
                        via = "stacked"
                        break
                    self._stacked.add(key)
            if (age > 0 or box not in fresh) and time.thread_time() - started <= self.budget_s:
                texts = self.scanner.read_place(gray, box)  # not read by this frame's passes: read it here
                if texts:
                    via = "remembered"
                    break
        if texts:
            return Reading(texts, via, places=reading.places).with_signs(reading.signs)
        return reading

    def _remember(self, places: list[Box], shape, now: float) -> None:
        """This frame's places first (largest first), then the remembered ones not among them, one
        frame older; forgotten after MEMORY_FRAMES frames or WINDOW_S seconds."""
        height, width = shape
        fresh = [_clip(box, width, height) for box in sorted(set(places), key=_area, reverse=True)]
        fresh = [(box, 0, now) for box in fresh if _area(box) > 0]
        kept = [
            (box, age + 1, seen)
            for box, age, seen in self._places
            if age + 1 <= MEMORY_FRAMES
            and now - seen <= WINDOW_S
            and not any(_overlap(box, b) > 0.3 for b, *_ in fresh)
        ]
        merged: list[tuple[Box, int, float]] = []
        for place in fresh + kept:
            if not any(_overlap(place[0], b) > 0.6 for b, *_ in merged):
                merged.append(place)
        self._places = merged[:4]


def stack_place(
    frames: list[tuple[int, np.ndarray]], box: Box, tried=frozenset()
) -> tuple[np.ndarray, tuple[int, int], tuple] | None:
    """Shift-and-add super-resolution of the place `box` (grown by STACK_MARGIN): its cut from
    each frame, the STACK_USE sharpest of them (variance of the Laplacian: the tremor leaves some
    frames sharp, others smeared), each upscaled STACK_UP times and moved by the sub-pixel shift
    that aligns it with the sharpest (phase correlation), averaged. Frames sample the code at
    different sub-pixel phases as the hand trembles, so the average holds detail (modules under
    2 pixels) that no single frame has, with the noise and JPEG blocks averaged out.
    `frames`: (frame number, gray) pairs. Returns the uint8 image at STACK_UP times the frame's
    scale, the cut's top-left corner in the frame and a key (the numbers of the frames stacked,
    the place to 32 pixels); None when the cut is too small, the key is among `tried` (stacked
    before in vain: the same frames at the same place give the same stack, so a long unread
    stretch does not pay for it on every frame) or fewer than two cuts align."""
    import cv2

    height, width = frames[-1][1].shape
    x0, y0, x1, y1 = box
    grow = int(max(x1 - x0, y1 - y0) * STACK_MARGIN)
    x0, y0, x1, y1 = max(x0 - grow, 0), max(y0 - grow, 0), min(x1 + grow, width), min(y1 + grow, height)
    if x1 - x0 < 32 or y1 - y0 < 32:
        return None
    frames = [(n, f) for n, f in frames if f.shape == (height, width)]
    cuts = [f[y0:y1, x0:x1] for _, f in frames]
    sharpness = [float(cv2.Laplacian(c, cv2.CV_32F).var()) for c in cuts]
    picked = sorted(int(i) for i in np.argsort(sharpness)[-STACK_USE:])
    key = (tuple(frames[i][0] for i in picked), (x0 // 32, y0 // 32, x1 // 32, y1 // 32))
    if key in tried:
        return None
    chosen = [cuts[i] for i in picked]
    best = int(np.argmax([sharpness[i] for i in picked]))
    reference = chosen[best].astype(np.float32)
    window = cv2.createHanningWindow((x1 - x0, y1 - y0), cv2.CV_32F)
    size = ((x1 - x0) * STACK_UP, (y1 - y0) * STACK_UP)
    total = cv2.resize(reference, size, interpolation=cv2.INTER_CUBIC)
    count = 1
    for i, cut in enumerate(chosen):
        if i == best:
            continue
        cut = cut.astype(np.float32)
        (dx, dy), response = cv2.phaseCorrelate(cut, reference, window)
        if response < 0.03 or abs(dx) > grow or abs(dy) > grow:
            continue
        shift = np.float32([[1, 0, dx * STACK_UP], [0, 1, dy * STACK_UP]])
        total += cv2.warpAffine(
            cv2.resize(cut, size, interpolation=cv2.INTER_CUBIC),
            shift,
            size,
            flags=cv2.INTER_CUBIC,
            borderMode=cv2.BORDER_REPLICATE,
        )
        count += 1
    if count < 2:
        return None
    return np.clip(total / count + 0.5, 0, 255).astype(np.uint8), (x0, y0), key


def _still(box: Box, before: list[Box]) -> bool:
    """Whether a place seen in the last frame (`before`) is where `box` is, its centre moved by less
    than STILL_SHARE of the box's size."""
    size = max(box[2] - box[0], box[3] - box[1])
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return any(math.hypot((b[0] + b[2]) / 2 - cx, (b[1] + b[3]) / 2 - cy) < STILL_SHARE * size for b in before)


def _clip(box: Box, width: int, height: int) -> Box:
    x0, y0, x1, y1 = box
    return max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)


def _area(box: Box) -> int:
    return max(box[2] - box[0], 0) * max(box[3] - box[1], 0)


def _overlap(a: Box, b: Box) -> float:
    """Intersection over the smaller box's area."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    return w * h / max(min(_area(a), _area(b)), 1)
