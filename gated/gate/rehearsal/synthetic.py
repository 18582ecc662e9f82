"""Synthetic camera frames: ticket QR codes rendered the way a gate camera sees them.

Why: the simulator, the benchmark and the tests need camera-like frames for tickets that
exist only as text, without a camera or a printer. A frame is built like a photo is taken:

    scene      a background (wall, counter, clutter: rectangles and stripes at random greys)
    ticket     the QR symbol of the text (the issuer's own symbol: segno, error level M) on a
               card (paper, or a phone screen; in dark mode light modules on a dark screen),
               held at a distance (scale), turned (rotation) and tilted (perspective)
    optics     defocus (Gaussian blur) and hand motion (a short linear smear)
    light      a lighting gradient across the frame, an exposure/contrast factor, a glare
               spot (a bright blob that washes out part of the scene, maybe of the code)
    sensor     Gaussian read noise, rounding to 8 bits

`render_ticket_frame()` and `render_idle_frame()` are pure (all randomness comes from the
`rng` passed in); `Distortions.sample()` draws one set of distortions from the ranges below,
which aim at a phone or paper ticket held 15-40 cm in front of a 720p gate camera, a little
worse than typical. Any distortion can be pinned by keyword (`blur=0`, `inverted=True`...).
`SyntheticSource` (gated/gate/rehearsal/camera.py) serves these frames as a FrameSource.

The hard set (`HARD_RANGES`, `render_hard_frame()`, `render_hard_idle_frame()`; issue 15) is
drawn in the frame's own pixels instead: codes 150-320 px wide (down to 2.5 px a module), blur
sigma 0.6-1.4 px, noise 4-9, a low-contrast fifth, dark mode, glare; bench/scan.py and
tests/gate/test_scanner.py read it.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass

import cv2
import numpy as np

from gated.core.ticket import qr_symbol as ticket_symbol

# Ranges for Distortions.sample(): (low, high) drawn uniformly; chances for the booleans.
RANGES = {
    "scale": (0.30, 0.80),  # code side (quiet zone included) as a share of the frame height
    "rotation": (-35.0, 35.0),  # degrees in the image plane
    "tilt": (0.0, 0.22),  # perspective: how much the far edge shrinks (0 = facing the camera)
    "blur": (0.0, 1.5),  # defocus, Gaussian sigma in pixels at 1280x720 (scaled with the frame)
    "motion": (0.0, 4.0),  # hand motion smear length in pixels at 1280x720
    "noise": (2.0, 9.0),  # sensor read noise, grey levels (sigma)
    "glare": (0.0, 0.7),  # glare spot strength (share of full white added at its centre)
    "gradient": (0.0, 0.55),  # lighting falloff across the frame (share of brightness lost)
    "contrast": (0.55, 1.0),  # exposure/contrast of the ticket against black
}
CHANCE_INVERTED = 0.15  # dark-mode phone screens: light modules on a dark background
CHANCE_GLARE = 0.4  # share of frames with a glare spot at all


@dataclass(frozen=True)
class Distortions:
    """One frame's distortions; the defaults are a clean, centred, frontal code."""

    scale: float = 0.6
    rotation: float = 0.0
    tilt: float = 0.0
    blur: float = 0.0
    motion: float = 0.0
    noise: float = 0.0
    glare: float = 0.0
    gradient: float = 0.0
    contrast: float = 1.0
    inverted: bool = False
    offset: tuple[float, float] = (0.0, 0.0)  # code centre shift, share of the free room (-1..1)
    jitter: float = 0.0  # perspective: each corner moved by up to this share of the code's side, in x and y

    @classmethod
    def sample(cls, rng: np.random.Generator, **fixed) -> Distortions:
        """A random but plausible set of distortions; keywords pin any of them."""
        drawn = {name: float(rng.uniform(lo, hi)) for name, (lo, hi) in RANGES.items()}
        if rng.random() >= CHANCE_GLARE:
            drawn["glare"] = 0.0
        drawn["inverted"] = bool(rng.random() < CHANCE_INVERTED)
        drawn["offset"] = (float(rng.uniform(-0.8, 0.8)), float(rng.uniform(-0.8, 0.8)))
        unknown = set(fixed) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise TypeError(f"unknown distortion(s): {', '.join(sorted(unknown))}")
        drawn.update(fixed)
        return cls(**drawn)


@functools.lru_cache(maxsize=256)
def qr_modules(text: str) -> np.ndarray:
    """The ticket's QR symbol as a 0/1 array (1 = dark module), quiet zone of 4 modules included.
    Cached: a camera sees the same ticket for many frames, and encoding is the slow part."""
    symbol = ticket_symbol(text)
    modules = np.array(list(symbol.matrix_iter(scale=1, border=4)), dtype=np.uint8)
    modules.setflags(write=False)
    return modules


def render_idle_frame(
    size=(1280, 720),
    rng: np.random.Generator | None = None,
    *,
    noise: float | None = None,
    gradient: float | None = None,
) -> np.ndarray:
    """A camera frame with no code in it: the scene, lit and noised like render_ticket_frame()."""
    rng = rng if rng is not None else np.random.default_rng()
    width, height = size
    scene = _scene(width, height, rng)
    d = Distortions(
        noise=float(rng.uniform(*RANGES["noise"])) if noise is None else noise,
        gradient=float(rng.uniform(*RANGES["gradient"])) if gradient is None else gradient,
    )
    return _light_and_sensor(scene, d, rng)


def render_ticket_frame(
    text: str, size=(1280, 720), rng: np.random.Generator | None = None, **distortions
) -> np.ndarray:
    """A grayscale uint8 frame (height x width) showing the QR code of `text`.

    With no keywords the distortions are drawn at random (Distortions.sample); keywords pin
    them (`blur=1.2`, `inverted=True`); `distortions=Distortions(...)` passes a whole set."""
    rng = rng if rng is not None else np.random.default_rng()
    whole = distortions.pop("distortions", None)
    d = whole if whole is not None else Distortions.sample(rng, **distortions)
    width, height = size
    scene = _scene(width, height, rng)
    _place_ticket(scene, qr_modules(text), d, rng)
    return _light_and_sensor(scene, d, rng)


def _scene(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """Background clutter as float32 grey levels 0..1: a base tone, blocks and stripes, softened."""
    scene = np.full((height, width), rng.uniform(0.25, 0.65), dtype=np.float32)
    for _ in range(int(rng.integers(3, 9))):
        x0, y0 = int(rng.integers(-width // 4, width)), int(rng.integers(-height // 4, height))
        w, h = int(rng.integers(width // 10, width // 2)), int(rng.integers(height // 10, height // 2))
        cv2.rectangle(scene, (x0, y0), (x0 + w, y0 + h), float(rng.uniform(0.1, 0.85)), thickness=-1)
    for _ in range(int(rng.integers(0, 4))):
        p, q = (int(rng.integers(0, width)), 0), (int(rng.integers(0, width)), height)
        cv2.line(scene, p, q, float(rng.uniform(0.05, 0.9)), thickness=int(rng.integers(2, 12)))
    return cv2.GaussianBlur(scene, (0, 0), 2.0 * width / 1280)


def _place_ticket(scene: np.ndarray, modules: np.ndarray, d: Distortions, rng: np.random.Generator) -> None:
    """Warp the card with its code into the scene (in place): scale, rotation, tilt, offset, contrast."""
    height, width = scene.shape
    n = modules.shape[0]
    side = d.scale * height  # code with quiet zone, in frame pixels
    module_px = side / n
    px = int(np.clip(np.ceil(module_px * 2), 2, 16))  # texture pixels per module (2x oversampled)
    paper, ink = (0.12, 0.92) if d.inverted else (0.95, 0.05)
    mid = (paper + ink) / 2
    paper, ink = mid + (paper - mid) * d.contrast, mid + (ink - mid) * d.contrast
    texture = np.where(modules == 1, ink, paper).astype(np.float32)
    texture = cv2.resize(texture, (n * px, n * px), interpolation=cv2.INTER_NEAREST)
    margin = px  # the card reaches one module beyond the quiet zone
    texture = cv2.copyMakeBorder(texture, margin, margin, margin, margin, cv2.BORDER_CONSTANT, value=paper)
    if px > 2 * module_px:  # prefilter before shrinking, as a lens would
        texture = cv2.GaussianBlur(texture, (0, 0), 0.5 * px / module_px)
    side_card = side * texture.shape[0] / (n * px)
    half = side_card / 2
    corners = np.array([[-half, -half], [half, -half], [half, half], [-half, half]], dtype=np.float32)
    a = int(rng.integers(0, 4))  # the edge a..b is the far one: it shrinks towards its middle
    b = (a + 1) % 4
    pa, pb = corners[a].copy(), corners[b].copy()
    corners[a] = pa + (pb - pa) * (d.tilt / 2)
    corners[b] = pb + (pa - pb) * (d.tilt / 2)
    if d.jitter > 0:
        corners += rng.uniform(-d.jitter, d.jitter, (4, 2)).astype(np.float32) * np.float32(side)
    theta = np.deg2rad(d.rotation)
    turn = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]], dtype=np.float32)
    corners = corners @ turn.T
    # The whole card stays in the frame: a turned card too big for it is held a little farther away.
    reach_x, reach_y = float(np.abs(corners[:, 0]).max()), float(np.abs(corners[:, 1]).max())
    fit = min(1.0, (width / 2 - 2) / reach_x, (height / 2 - 2) / reach_y)
    corners *= fit
    room_x, room_y = width / 2 - reach_x * fit, height / 2 - reach_y * fit
    corners += np.array([width / 2 + d.offset[0] * room_x, height / 2 + d.offset[1] * room_y], dtype=np.float32)
    t = float(texture.shape[0])
    src = np.array([[0, 0], [t, 0], [t, t], [0, t]], dtype=np.float32)
    matrix = cv2.getPerspectiveTransform(src, corners.astype(np.float32))
    warped = cv2.warpPerspective(
        texture, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0.0
    )
    mask = np.zeros((height, width), np.uint8)
    cv2.fillConvexPoly(mask, np.round(corners).astype(np.int32), 1)
    np.copyto(scene, warped, where=mask.astype(bool))


def _light_and_sensor(scene: np.ndarray, d: Distortions, rng: np.random.Generator) -> np.ndarray:
    """Optics, light and sensor, in that order, on a float scene; returns uint8."""
    height, width = scene.shape
    k = width / 1280
    img = scene
    if d.blur > 0:
        img = cv2.GaussianBlur(img, (0, 0), d.blur * k)
    if d.motion * k >= 1:
        length = int(round(d.motion * k)) | 1  # odd, so the smear stays centred
        kernel = np.zeros((length, length), np.float32)
        kernel[length // 2, :] = 1.0
        turn = cv2.getRotationMatrix2D(((length - 1) / 2, (length - 1) / 2), float(rng.uniform(0, 180)), 1.0)
        kernel = cv2.warpAffine(kernel, turn, (length, length))
        img = cv2.filter2D(img, -1, kernel / max(float(kernel.sum()), 1e-6))
    if d.gradient > 0:
        angle = rng.uniform(0, 2 * np.pi)
        xs = np.linspace(-1, 1, width, dtype=np.float32)[None, :] * np.float32(np.cos(angle))
        ys = np.linspace(-1, 1, height, dtype=np.float32)[:, None] * np.float32(np.sin(angle))
        img = img * (1 - np.float32(d.gradient) * (xs + ys + np.float32(1.414)) / np.float32(2.828))
    if d.glare > 0:  # a Gaussian spot is separable: the outer product of two 1-D profiles
        gx, gy = rng.uniform(0.2, 0.8) * width, rng.uniform(0.2, 0.8) * height
        radius = rng.uniform(0.05, 0.15) * width
        fx = np.exp(-((np.arange(width, dtype=np.float32) - gx) ** 2) / (2 * radius**2)).astype(np.float32)
        fy = np.exp(-((np.arange(height, dtype=np.float32) - gy) ** 2) / (2 * radius**2)).astype(np.float32)
        img = img + np.float32(d.glare) * np.outer(fy, fx)
    img = img * np.float32(255.0)
    if d.noise > 0:
        img += rng.standard_normal(img.shape, dtype=np.float32) * np.float32(d.noise)
    return np.clip(img, 0, 255).astype(np.uint8)


def clean_ticket_frame(text: str, width: int, height: int) -> np.ndarray:
    """A clean, square-on grayscale frame showing `text` (`gated doctor`'s decoder check)."""
    return render_ticket_frame(
        text,
        (width, height),
        np.random.default_rng(0),
        scale=0.6,
        rotation=0.0,
        tilt=0.0,
        blur=0.0,
        motion=0.0,
        noise=0.0,
        glare=0.0,
        gradient=0.0,
        contrast=1.0,
        inverted=False,
        offset=(0.0, 0.0),
    )


# The hard set (issue 15): frames at the edge of what a gate camera still has to read. Unlike
# RANGES (shares of the frame, scaled with it), these are in the frame's own pixels: a code 150 px
# wide is as hard at 640x480 as at 1280x720.
HARD_RANGES = {
    "code_px": (150.0, 320.0),  # the symbol's width, quiet zone excluded: 2.5-5 px a module for a GT2 code
    "rotation": (-15.0, 15.0),
    "blur": (0.6, 1.4),  # defocus, Gaussian sigma in frame pixels
    "noise": (4.0, 9.0),  # sensor read noise, grey levels (sigma)
    "gradient": (0.2, 0.55),
    "glare": (0.3, 0.6),
    "contrast": (0.7, 1.0),  # codes that are not low-contrast ones
}
HARD_JITTER = 0.10  # perspective: each corner moved up to 10 % of the code's side, in x and y
HARD_CHANCE_LOW_CONTRAST = 0.2  # a dim or washed-out code: dark 90 on light 160
HARD_LOW_CONTRAST = 70 / 230  # the contrast factor that turns ink 0.05 / paper 0.95 into 90 / 160
HARD_CHANCE_INVERTED = 0.15  # dark-mode screens
HARD_CHANCE_GLARE = 0.25


def hard_distortions(text: str, size, rng: np.random.Generator) -> Distortions:
    """One draw from HARD_RANGES for `text` in a frame of `size` (width, height)."""
    width, height = size
    n = qr_modules(text).shape[0]  # quiet zone included: 8 modules more than the symbol
    u = {name: float(rng.uniform(lo, hi)) for name, (lo, hi) in HARD_RANGES.items()}
    low = bool(rng.random() < HARD_CHANCE_LOW_CONTRAST)
    inverted = bool(rng.random() < HARD_CHANCE_INVERTED)
    glare = u["glare"] if rng.random() < HARD_CHANCE_GLARE else 0.0
    offset = (float(rng.uniform(-0.8, 0.8)), float(rng.uniform(-0.8, 0.8)))
    k = width / 1280  # render_ticket_frame scales blur with the frame width; undo that
    return Distortions(
        scale=u["code_px"] * n / (n - 8) / height,
        rotation=u["rotation"],
        tilt=0.0,
        blur=u["blur"] / k,
        motion=0.0,
        noise=u["noise"],
        glare=glare,
        gradient=u["gradient"],
        contrast=HARD_LOW_CONTRAST if low else u["contrast"],
        inverted=inverted,
        offset=offset,
        jitter=HARD_JITTER,
    )


def render_hard_frame(text: str, size, rng: np.random.Generator) -> tuple[np.ndarray, Distortions]:
    """A frame of the hard set and the distortions it was drawn with (the benchmark sorts by them)."""
    d = hard_distortions(text, size, rng)
    return render_ticket_frame(text, size, rng, distortions=d), d


def render_hard_idle_frame(size, rng: np.random.Generator) -> np.ndarray:
    """An empty scene lit and noised like the hard set."""
    return render_idle_frame(
        size,
        rng,
        noise=float(rng.uniform(*HARD_RANGES["noise"])),
        gradient=float(rng.uniform(*HARD_RANGES["gradient"])),
    )


def module_px(text: str, d: Distortions, size) -> float:
    """Frame pixels per module of `text`'s code drawn with `d` in a frame of `size` (before the fit to the frame)."""
    return d.scale * size[1] / qr_modules(text).shape[0]
