"""Phones in motion: rendered clips of a visitor holding a phone's QR code up to the gate camera.

Why: a visitor does not hold a still picture up to the camera. The phone comes into view moving,
tilted, its screen's pixel grid and the camera's exposure in the way, often small in a 720p frame,
through an MJPEG stream; then the hand settles with a tremor. bench/clips.py and the scanner's
tests read these clips frame by frame, as the gate does (issue 27).

A clip is built like the camera films it:

    scene      the static background of gated.gate.rehearsal.synthetic (walls, clutter)
    phone      a dark body and bezel around a lit screen; on the screen a header bar, text lines
               and the QR code (light screen, dark modules at the LCD's black level); an LCD
               pixel grid over the screen (`lcd`: its depth), which the camera samples into moire;
               a thumb over one long edge reaching into the code's margin or a little over it
               (`thumb`: how far, as a share of the code's side; never over a finder pattern)
    pose       a 3-D turn of the screen away from the camera (`tilt`, up to 40 degrees, about
               an axis in any direction) and a turn in the image plane, projected through a
               pinhole lens; `module_px`: frame pixels per module when the screen faces the camera
    motion     the phone enters from one side and reaches its rest position in APPROACH_S
               seconds (a minimum-jerk reach: fast in the middle, smooth to a stop), with a hand
               tremor on top (2-5 Hz, decaying over about a second; at its fastest it would smear
               `blur` pixels in a 1/60 s exposure)
    exposure   the camera's exposure time: the smear is the phone's speed times it. By default
               the one that smears the reach's fastest frame by `blur` pixels (the issue's 3-7 px
               of motion blur along the hand's path: 0.9-2.7 ms at 720p, a camera set for motion
               in bright light); `exposure_s=` pins it (0.005-0.01: libcamera's short mode
               indoors; 1/60 s: normal auto-exposure indoors, whose reach smears 30-100 px)
    shutter    rolling shutter: rows are read one after the other over `shutter` of the frame
               period, so a moving phone is skewed (sheared along its motion)
    light      exposure gain (`exposure` > 1 over-exposes: the screen clips and its light blooms
               into the dark modules), sensor noise, 8 bits
    stream     JPEG at quality `jpeg` (an MJPEG camera)

`phone_clip(text, size, rng, **doses)` renders one clip (frames at `FPS`) and says in which frame
the phone entered the view and from which frame on the whole code is in view; `text=None` is a
phone showing no code (an idle clip with motion), `phone_clip(None, ..., phone=False)` an empty
scene. `draw_doses(rng)` draws the doses from DOSES; `still_frame()` is one frame of a settled
phone at a random tremor phase (bench/clips.py's harder still set). All randomness comes from
the `rng` passed in.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import cv2
import numpy as np

from gated.gate.rehearsal.synthetic import _scene, qr_modules

FPS = 30.0
TREMOR_EXPOSURE_S = 1 / 60  # the tremor's top speed smears `blur` pixels in this exposure
TEXTURE_PX = 8  # texture pixels per module: the LCD grid lives in the texture, 3 texture pixels a screen pixel
FOCAL = 1.0  # focal length as a share of the frame width (a ~53 degree horizontal field of view)
APPROACH_S = (0.3, 0.5)  # the reach into view: from just outside the frame to rest (minimum-jerk)

# Doses, drawn uniformly per clip (draw_doses); the effects of issue 27. `blur` is the tremor's
# smear at its fastest, in frame pixels; `module_px` frame pixels per module facing the camera.
DOSES = {
    "module_px": (1.6, 3.2),
    "tilt": (0.0, 40.0),  # degrees
    "blur": (3.0, 7.0),
    "lcd": (0.0, 0.35),
    "exposure": (1.0, 1.8),
    "jpeg": (35, 60),
    "shutter": (0.0, 0.9),
    "thumb": (0.0, 0.06),
    "noise": (2.0, 6.0),
}
EFFECTS = ("module_px", "tilt", "blur", "lcd", "exposure", "jpeg", "shutter", "thumb")
# The harder still set (draw_still_doses): each effect is on (its strong range, the doses of
# issue 27) with STILL_CHANCE, else mild; a still can have several on.
STILL_DOSES = {  # effect: (mild range, strong range)
    "module_px": ((2.4, 3.2), (1.6, 2.4)),
    "tilt": ((0.0, 15.0), (15.0, 40.0)),
    "blur": ((0.0, 2.0), (3.0, 7.0)),
    "lcd": ((0.0, 0.05), (0.15, 0.35)),
    "exposure": ((1.0, 1.1), (1.3, 1.8)),
    "jpeg": ((75, 90), (35, 60)),
    "shutter": ((0.0, 0.1), (0.3, 0.9)),
    "thumb": ((0.0, 0.0), (0.02, 0.06)),
}
STILL_CHANCE = 0.4


@dataclass(frozen=True)
class Doses:
    """One clip's effects (see the module docstring); the defaults are a clean, steady, facing phone."""

    module_px: float = 3.0
    tilt: float = 0.0
    blur: float = 0.0
    lcd: float = 0.0
    exposure: float = 1.0
    jpeg: int = 0  # 0: no JPEG
    shutter: float = 0.0
    thumb: float = 0.0
    noise: float = 0.0


def draw_doses(rng: np.random.Generator, **fixed) -> Doses:
    drawn = {name: float(rng.uniform(lo, hi)) for name, (lo, hi) in DOSES.items()}
    drawn["jpeg"] = int(round(drawn["jpeg"]))
    unknown = set(fixed) - {f.name for f in dataclasses.fields(Doses)}
    if unknown:
        raise TypeError(f"unknown dose(s): {', '.join(sorted(unknown))}")
    drawn.update(fixed)
    return Doses(**drawn)


def draw_still_doses(rng: np.random.Generator) -> tuple[Doses, tuple[str, ...]]:
    """Doses for one still of the harder set, and the effects that are on (strong) in it."""
    drawn, on = {}, []
    for effect, (mild, strong) in STILL_DOSES.items():
        strong_now = bool(rng.random() < STILL_CHANCE)
        lo, hi = strong if strong_now else mild
        drawn[effect] = float(rng.uniform(lo, hi))
        if strong_now:
            on.append(effect)
    drawn["jpeg"] = int(round(drawn["jpeg"]))
    drawn["noise"] = float(rng.uniform(*DOSES["noise"]))
    return Doses(**drawn), tuple(on)


@dataclass
class Clip:
    """A rendered clip: `frames` at FPS; the phone is first in view in frame `entered`, the whole
    code (its four corners, inside the frame, the thumb aside) from frame `in_view` (None: never),
    and the reach is over (the phone at rest but for the tremor) from frame `settled`."""

    text: str | None
    size: tuple[int, int]
    doses: Doses
    frames: list[np.ndarray]
    entered: int | None
    in_view: int | None
    smears: list[float] = dataclasses.field(default_factory=list)  # each frame's smear of the phone, pixels
    settled: int | None = None  # the first frame after the reach (the tremor goes on)
    # What drew each frame (bench/exact_grid.py): the symbol's four corners in the frame (4x2,
    # clockwise from its top left, quiet zone excluded), and the smear drawn (pixels, capped) and its direction (radians)
    code_corners: list[np.ndarray] = dataclasses.field(default_factory=list)
    drawn_smears: list[tuple[float, float]] = dataclasses.field(default_factory=list)


@dataclass(frozen=True)
class Shot:
    """A still (still_shot) and what drew it: the symbol's four corners in the frame (4x2, clockwise
    from its top left, quiet zone excluded), the smear in pixels and its direction in radians."""

    frame: np.ndarray
    doses: Doses
    code_corners: np.ndarray
    smear: float
    heading: float


@dataclass(frozen=True)
class _Look:
    """What stays the same over a clip: the phone's texture and where the code is on it."""

    texture: np.ndarray  # float32 0..1 (the phone, body to screen)
    code_box: tuple[float, float, float, float]  # the symbol (quiet zone excluded) in texture pixels


def _phone_texture(text: str | None, doses: Doses, rng: np.random.Generator) -> _Look:
    modules = qr_modules(text) if text else np.zeros((57, 57), np.uint8)
    n = modules.shape[0]  # quiet zone included
    tm = TEXTURE_PX
    code_w = n * tm
    screen_w, screen_h = int(code_w * 1.2), int(code_w * 2.1)
    bezel = int(code_w * 0.06)
    body_w, body_h = screen_w + 2 * bezel, screen_h + 4 * bezel
    white = float(rng.uniform(0.78, 0.95))
    black = white * float(rng.uniform(0.03, 0.10))  # an LCD's black is not black
    tex = np.full((body_h, body_w), float(rng.uniform(0.03, 0.12)), np.float32)  # the body
    sx, sy = bezel, 2 * bezel
    screen = np.full((screen_h, screen_w), white, np.float32)
    cv2.rectangle(screen, (0, 0), (screen_w, int(screen_h * 0.07)), float(rng.uniform(0.2, 0.6)) * white, -1)  # header
    cx0, cy0 = (screen_w - code_w) // 2, int(screen_h * 0.14)
    if text:
        code = np.where(modules == 1, black, white).astype(np.float32)
        screen[cy0 : cy0 + code_w, cx0 : cx0 + code_w] = cv2.resize(
            code, (code_w, code_w), interpolation=cv2.INTER_NEAREST
        )
    for i in range(int(rng.integers(3, 7))):  # lines of text under the code
        y = cy0 + code_w + int(code_w * (0.08 + 0.12 * i))
        if y + tm * 2 >= screen_h:
            break
        x1 = int(screen_w * rng.uniform(0.4, 0.9))
        cv2.rectangle(screen, (int(screen_w * 0.08), y), (x1, y + int(tm * 1.6)), black + 0.2 * white, -1)
    if doses.lcd > 0:  # the pixel grid: a dark line every third texture pixel, both ways
        grid = np.ones((screen_h, screen_w), np.float32)
        grid[::3, :] *= 1 - doses.lcd
        grid[:, ::3] *= 1 - doses.lcd
        screen *= grid
    tex[sy : sy + screen_h, sx : sx + screen_w] = screen
    q = 4 * tm  # the quiet zone
    code_box = (sx + cx0 + q, sy + cy0 + q, sx + cx0 + code_w - q, sy + cy0 + code_w - q)
    if doses.thumb > 0:  # over the right edge, low on the code (the bottom-right corner has no finder)
        side = code_box[2] - code_box[0]
        reach = code_box[2] - doses.thumb * side
        cy = code_box[3] - 0.22 * side
        axes = (int(body_w - reach), int(0.16 * side))
        cv2.ellipse(tex, (int(body_w + axes[0] * 0.05), int(cy)), axes, 0, 0, 360, float(rng.uniform(0.45, 0.7)), -1)
    return _Look(tex, code_box)


def _corners(
    look: _Look, doses: Doses, size, centre, roll: float, tilt: float, axis: float, velocity=(0.0, 0.0)
) -> np.ndarray:
    """Frame positions of the texture's corners (4x2) and the code's (4x2) for a pose: the phone's
    plane turned by `tilt` degrees about an in-plane axis at `axis` degrees, turned by `roll` in
    the image plane, through a pinhole at FOCAL; then the rolling shutter's skew for `velocity`."""
    width, height = size
    h, w = look.texture.shape
    x0, y0, x1, y1 = look.code_box
    pts = np.array([[0, 0], [w, 0], [w, h], [0, h], [x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float64)
    s = doses.module_px / TEXTURE_PX
    mid = np.array([(x0 + x1) / 2, (y0 + y1) / 2])
    p = np.c_[(pts - mid) * s, np.zeros(len(pts))]
    a = np.deg2rad(axis)
    k = np.array([np.cos(a), np.sin(a), 0.0])  # Rodrigues: turn about the in-plane axis k
    t = np.deg2rad(tilt)
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    rot = np.eye(3) + np.sin(t) * kx + (1 - np.cos(t)) * kx @ kx
    r = np.deg2rad(roll)
    rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    p = p @ rot.T @ rz.T
    f = FOCAL * width
    xy = p[:, :2] * (f / (f + p[:, 2:3])) + np.asarray(centre)
    if doses.shutter > 0:  # row y is read (y / height) * shutter of a frame period after row 0
        lag = (xy[:, 1:2] / height) * doses.shutter / FPS
        xy = xy + lag * np.asarray(velocity)
    return xy.astype(np.float32)


def _draw(
    scene: np.ndarray,
    look: _Look | None,
    corners: np.ndarray | None,
    doses: Doses,
    smear: float,
    direction: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """The phone (None: none) warped into the scene, smeared along its motion, lit, noised, to 8
    bits and JPEG."""
    img = scene.copy()
    if look is not None:
        _place_phone(img, look, corners, smear, direction)
    return _expose(img, doses, rng)


def _place_phone(img: np.ndarray, look: _Look, corners: np.ndarray, smear: float, direction: float) -> None:
    """The phone's texture warped to `corners` (in place), smeared by `smear` pixels along `direction`."""
    height, width = img.shape
    h, w = look.texture.shape
    src = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32)
    pad = int(smear) + 4
    bx0, by0 = np.floor(corners[:4].min(0)).astype(int) - pad
    bx1, by1 = np.ceil(corners[:4].max(0)).astype(int) + pad
    bx0, by0, bx1, by1 = max(bx0, 0), max(by0, 0), min(bx1, width), min(by1, height)
    if bx1 - bx0 > 2 and by1 - by0 > 2:
        shift = np.array([bx0, by0], np.float32)
        matrix = cv2.getPerspectiveTransform(src, corners[:4] - shift)
        roi = (bx1 - bx0, by1 - by0)
        phone = cv2.warpPerspective(look.texture, matrix, roi, flags=cv2.INTER_LINEAR, borderValue=0.0)
        mask = cv2.warpPerspective(np.ones((h, w), np.float32), matrix, roi, flags=cv2.INTER_LINEAR, borderValue=0.0)
        if smear >= 1.0:  # a line kernel along the motion
            n = int(np.ceil(smear)) | 1
            kernel = np.zeros((n, n), np.float32)
            c = (n - 1) / 2
            for t in np.linspace(-smear / 2, smear / 2, 4 * n):
                kernel[int(round(c + t * np.sin(direction))), int(round(c + t * np.cos(direction)))] += 1
            kernel /= kernel.sum()
            phone = cv2.filter2D(phone, -1, kernel)
            mask = cv2.filter2D(mask, -1, kernel)
        part = img[by0:by1, bx0:bx1]
        img[by0:by1, bx0:bx1] = part * (1 - mask) + phone


def _expose(img: np.ndarray, doses: Doses, rng: np.random.Generator) -> np.ndarray:
    """The lens, the exposure (over-exposure blooms into the dark modules), sensor noise, 8 bits, JPEG."""
    img = cv2.GaussianBlur(img, (0, 0), 0.5)  # the lens
    if doses.exposure > 1.0:
        img = img * np.float32(doses.exposure)
        over = np.maximum(img - 1.0, 0)
        img = img + cv2.GaussianBlur(over, (0, 0), 2.0) * np.float32(0.8)  # bloom into the dark modules
    img = img * np.float32(255.0)
    if doses.noise > 0:
        img += rng.standard_normal(img.shape, dtype=np.float32) * np.float32(doses.noise)
    out = np.clip(img, 0, 255).astype(np.uint8)
    if doses.jpeg:
        ok, data = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, int(doses.jpeg)])
        out = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE)
    return out


def _inside(points: np.ndarray, size, margin: float = 2.0) -> bool:
    width, height = size
    return bool(
        np.all(points[:, 0] >= margin)
        and np.all(points[:, 0] <= width - margin)
        and np.all(points[:, 1] >= margin)
        and np.all(points[:, 1] <= height - margin)
    )


def _visible(points: np.ndarray, size) -> bool:
    width, height = size
    return bool(
        points[:, 0].max() > 0 and points[:, 0].min() < width and points[:, 1].max() > 0 and points[:, 1].min() < height
    )


def phone_clip(
    text: str | None,
    size,
    rng: np.random.Generator,
    *,
    frames: int = 45,
    idle_before: int = 2,
    phone: bool = True,
    doses: Doses | None = None,
    exposure_s: float | None = None,
    **fixed,
) -> Clip:
    """One clip (see the module docstring). `frames` at FPS in all; the phone starts entering after
    `idle_before` frames. Doses are drawn (draw_doses) unless given; keywords pin some.
    `exposure_s`: the camera's exposure time (None: the one that smears the reach's fastest frame
    by `blur` pixels)."""
    width, height = size
    doses = doses if doses is not None else draw_doses(rng, **fixed)
    scene = _scene(width, height, rng)
    if not phone:  # the empty scene, lit, noised and compressed like the others
        return Clip(
            None, size, doses, [_draw(scene, None, None, doses, 0.0, 0.0, rng) for _ in range(frames)], None, None
        )
    look = _phone_texture(text, doses, rng)
    roll = float(rng.uniform(-25, 25))
    axis = float(rng.uniform(0, 180))
    rest = np.array([width * rng.uniform(0.35, 0.65), height * rng.uniform(0.35, 0.6)])
    side = int(rng.integers(0, 3))  # enters from the left, the right or below
    reach = doses.module_px / TEXTURE_PX * max(look.texture.shape) * 0.75 + 10
    start = {
        0: np.array([-reach, rest[1] + rng.uniform(-0.2, 0.2) * height]),
        1: np.array([width + reach, rest[1] + rng.uniform(-0.2, 0.2) * height]),
        2: np.array([rest[0] + rng.uniform(-0.2, 0.2) * width, height + reach]),
    }[side]
    approach = float(rng.uniform(*APPROACH_S))  # seconds from outside the view to rest
    tremor_hz = float(rng.uniform(2.0, 5.0))
    settle = float(rng.uniform(0.6, 1.5))  # seconds: the tremor's decay time constant
    speed = doses.blur / TREMOR_EXPOSURE_S  # the tremor's top speed, px/s
    if exposure_s is None:  # a minimum-jerk reach is fastest half-way, at 15/8 of its mean speed
        exposure_s = doses.blur / max(1.875 * float(np.hypot(*(start - rest))) / approach, 1e-6)
    direction = float(rng.uniform(0, np.pi))
    wobble = np.array([np.cos(direction), np.sin(direction)])
    phase = float(rng.uniform(0, 2 * np.pi))
    tilt_extra = float(rng.uniform(0, 15))  # the phone turns towards the camera as it comes

    def pose(t: float):
        """Centre, its velocity (px/s) and the tilt at `t` seconds after the entry began."""
        if t < 0:
            return start, np.zeros(2), doses.tilt + tilt_extra
        u = min(t / approach, 1.0)  # a minimum-jerk reach: at rest, smoothly, after `approach` seconds
        e = 1 - (10 * u**3 - 15 * u**4 + 6 * u**5)
        de = -(30 * u**2 - 60 * u**3 + 30 * u**4) / approach if u < 1 else 0.0
        amp = speed / (2 * np.pi * tremor_hz) * np.exp(-t / settle)
        w = 2 * np.pi * tremor_hz
        centre = rest + (start - rest) * e + wobble * amp * np.sin(w * t + phase)
        velocity = (start - rest) * de + wobble * amp * (w * np.cos(w * t + phase) - np.sin(w * t + phase) / settle)
        return centre, velocity, doses.tilt + tilt_extra * e

    out, entered, in_view, smears, settled, drawn = [], None, None, [], None, []
    code_corners = []
    for i in range(frames):
        t = (i - idle_before) / FPS
        centre, velocity, tilt = pose(t)
        corners = _corners(look, doses, size, centre, roll, tilt, axis, velocity)
        smear = float(np.hypot(*velocity)) * exposure_s if t >= 0 else 0.0
        heading = float(np.arctan2(velocity[1], velocity[0])) if smear > 0 else 0.0
        out.append(_draw(scene, look, corners, doses, min(smear, 60.0), heading, rng))
        smears.append(smear)
        code_corners.append(corners[4:])
        drawn.append((min(smear, 60.0), heading))
        if settled is None and t >= approach:
            settled = i
        if entered is None and t >= 0 and _visible(corners[:4], size):
            entered = i
        if in_view is None and text and _inside(corners[4:], size):
            in_view = i
    return Clip(text, size, doses, out, entered, in_view, smears, settled, code_corners, drawn)


def still_frame(
    text: str | None, size, rng: np.random.Generator, *, doses: Doses | None = None, **fixed
) -> tuple[np.ndarray, Doses]:
    """One frame of a phone at rest, its tremor at a random phase: smeared by `blur` pixels in a
    random direction, skewed by the rolling shutter alike."""
    shot = still_shot(text, size, rng, doses=doses, **fixed)
    return shot.frame, shot.doses


def still_shot(text: str | None, size, rng: np.random.Generator, *, doses: Doses | None = None, **fixed) -> Shot:
    """still_frame's frame, with where its code is and how it was smeared (the same draws)."""
    width, height = size
    doses = doses if doses is not None else draw_doses(rng, **fixed)
    scene = _scene(width, height, rng)
    look = _phone_texture(text, doses, rng)
    centre = np.array([width * rng.uniform(0.35, 0.65), height * rng.uniform(0.35, 0.65)])
    heading = float(rng.uniform(0, 2 * np.pi))
    smear = doses.blur
    velocity = smear / TREMOR_EXPOSURE_S * np.array([np.cos(heading), np.sin(heading)])
    corners = _corners(
        look, doses, size, centre, float(rng.uniform(-25, 25)), doses.tilt, float(rng.uniform(0, 180)), velocity
    )
    return Shot(_draw(scene, look, corners, doses, smear, heading, rng), doses, corners[4:], smear, heading)
