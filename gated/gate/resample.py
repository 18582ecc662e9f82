"""Reading a QR symbol whose module grid is bent (printed on fabric, a crumpled page): the
"resample" pass of gated.gate.scanner.

zxing-cpp finds such a symbol (its finder patterns, version and format) but samples its modules on
a straight grid, a homography from the symbol's four corners; where the cloth bends, that grid
drifts off the modules by up to a module or two and the Reed-Solomon check fails. Here the grid
follows the bend:

  1. The symbol is rectified: the homography from its outer corners maps it onto an upright
     image with PX pixels per module and a quiet zone (`rectify`), normalised by its local mean
     (uneven light) so that a module is dark or light against 128.
  2. Each module is sampled at its centre (a small average), moved by the current displacement
     field (zero at first): a bit matrix; the function patterns (finders, separators, timing,
     alignment, dark module) and the format information (from zxing-cpp's reading of it) are
     written in, as the version and format say they are.
  3. That matrix is drawn onto the rectified grid (data modules grey where their sample was
     close to the threshold) and smoothed like the photo; the dense optical flow from the
     drawing to the photo (DIS) gives each module a displacement, and the displacement field of
     the next round is their weighted average over the neighbourhood (normalised convolution):
     the function patterns, whose bits are known, weigh most; the data modules count by how
     sure their bit is, hardly at all in the first round (a grid half a module off samples the
     edges, and the flow of wrong bits points nowhere) and fully from the third; the
     neighbourhood is wide at first (~6 modules: a bend is smooth) and narrows round by round.
     Each round gets more bits right, and the field follows the bend.

Each round's matrix is rendered clean (`render`) for the decoder. The bits are only a guess: the
caller decodes the rendering with zxing-cpp and takes its text only when the symbol's own error
correction confirms it with capacity to spare (scanner._sift), as for every other pass. Nothing
here decides that a text was read.

Cost: ~3-4 ms a round on a version 3 symbol (DIS on a ~300x300 image), ROUNDS rounds at most
(fewer when the bits stop changing), so ~30 ms at most a symbol; symbols up to version
MAX_VERSION only; and it runs only where zxing-cpp saw a symbol it could not decode. On the real
photos (bench/scan.py), the 8 T-shirt codes read at all four rotations in 1-7 rounds.
"""

from __future__ import annotations

import numpy as np

PX = 8  # pixels per module in the rectified image
QUIET = 4  # modules of quiet zone around the rectified symbol and the rendering
ROUNDS = 8  # renderings of one symbol, at most (each after a refinement of the displacement field)
MAX_VERSION = 10  # larger symbols are not resampled (the cost grows with the area; a GT1 ticket is version 8)
MIN_MODULE_PX = 1.5  # nor are symbols whose modules are smaller than this in the frame
# Round by round: the displacement field's smoothing (Gaussian sigma, modules; wide first, where
# the field rests on the function patterns alone, narrower as more bits are right) ...
FLOW_SMOOTH = (6.0, 5.0, 4.0, 4.0, 3.0, 3.0, 2.5, 2.5)
# ... and how much the data modules count in it beside the function patterns (FIXED_WEIGHT each)
# and the quiet zone's first ring (1 each): a data module counts by how sure its bit is, with
# SURE levels of its distance from the threshold 128 counting fully.
DATA_WEIGHT = (0.1, 0.3, 1.0)
FIXED_WEIGHT = 6.0
SURE = 60.0
GUESS_GAIN = 2.0  # data modules are drawn for the flow as 128 + GUESS_GAIN * (sample - 128): unsure ones grey
EC_BITS = {"L": 1, "M": 0, "Q": 3, "H": 2}  # the format information's error correction level bits


def bent_grid_renderings(gray: np.ndarray, corners, version: int, ec_level: str, mask: int):
    """Clean renderings (uint8, dark modules 0 on 255, PX pixels a module, QUIET modules of quiet
    zone) of the symbol with outer corners `corners` (top left, top right, bottom right, bottom
    left; x, y in `gray`'s pixels), resampled along an ever better fitted bent grid: one per round,
    for the caller to decode until one is confirmed. Yields nothing for a symbol that cannot be
    resampled (corners degenerate or off the frame, modules too small, version or format unknown)."""
    import cv2

    try:
        version, mask = int(version), int(mask)
    except (TypeError, ValueError):
        return
    if ec_level not in EC_BITS or not 0 <= mask <= 7:
        return
    rectified = rectify(gray, corners, version)
    if rectified is None:
        return
    size = 17 + 4 * version
    side = size + 2 * QUIET  # modules
    fixed, fixed_values = function_patterns(version, ec_level, mask)
    flat = rectified.astype(np.float32)
    photo = np.clip((flat - cv2.GaussianBlur(flat, (0, 0), 3 * PX)) * 3 + 128, 0, 255).astype(np.uint8)
    averaged = cv2.blur(photo, (3, 3))
    centres = (QUIET + np.arange(size, dtype=np.float32) + 0.5) * PX
    xs, ys = np.meshgrid(centres, centres)
    dx, dy = np.zeros_like(xs), np.zeros_like(ys)
    ring = np.zeros((side, side), np.float32)  # the quiet zone's first ring (light) counts 1; the symbol, per round
    ring[QUIET - 1 : side - QUIET + 1, QUIET - 1 : side - QUIET + 1] = 1
    fixed_levels = np.where(fixed_values, 0.0, 255.0).astype(np.float32)
    flow = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST)
    flow.setFinestScale(1)  # down to half resolution (the preset stops at a quarter): a module is 4 px there
    seen: set[bytes] = set()
    for round_ in range(ROUNDS):
        samples = cv2.remap(averaged, xs + dx, ys + dy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        bits = np.where(fixed, fixed_values, samples < 128)
        key = np.packbits(bits).tobytes()
        if key in seen:  # the field has settled: no new guess
            return
        seen.add(key)
        yield render(bits)
        if round_ == ROUNDS - 1:
            return
        offset = samples.astype(np.float32) - 128
        levels = np.where(fixed, fixed_levels, np.clip(128 + GUESS_GAIN * offset, 0, 255)).astype(np.uint8)
        guess = cv2.GaussianBlur(render_levels(levels), (0, 0), 0.35 * PX)
        moved = cv2.resize(flow.calc(guess, photo, None), (side, side), interpolation=cv2.INTER_AREA)
        data_weight = DATA_WEIGHT[min(round_, len(DATA_WEIGHT) - 1)]
        weight = ring.copy()
        weight[QUIET:-QUIET, QUIET:-QUIET] = np.where(
            fixed, FIXED_WEIGHT, data_weight * np.minimum(np.abs(offset) / SURE, 1.0)
        )
        sigma = FLOW_SMOOTH[min(round_, len(FLOW_SMOOTH) - 1)]
        total = np.maximum(cv2.GaussianBlur(weight, (0, 0), sigma), 1e-6)
        field = cv2.GaussianBlur(moved * weight[..., None], (0, 0), sigma) / total[..., None]
        dx = np.ascontiguousarray(field[QUIET:-QUIET, QUIET:-QUIET, 0])
        dy = np.ascontiguousarray(field[QUIET:-QUIET, QUIET:-QUIET, 1])


def rectify(gray: np.ndarray, corners, version: int) -> np.ndarray | None:
    """The symbol warped upright, PX pixels a module with QUIET modules around it; None when it
    cannot be (bad version, corners not a convex quadrilateral inside the frame, modules too small)."""
    import cv2

    if not 1 <= version <= MAX_VERSION or gray.ndim != 2 or min(gray.shape) < 8:
        return None
    quad = np.asarray(corners, dtype=np.float64).reshape(-1, 2)
    if quad.shape != (4, 2) or not np.isfinite(quad).all():
        return None
    height, width = gray.shape
    if (quad < -0.5).any() or (quad[:, 0] > width - 0.5).any() or (quad[:, 1] > height - 0.5).any():
        return None
    size = 17 + 4 * version
    edges = np.roll(quad, -1, axis=0) - quad
    turns = edges[:, 0] * np.roll(edges, -1, axis=0)[:, 1] - edges[:, 1] * np.roll(edges, -1, axis=0)[:, 0]
    if not ((turns > 0).all() or (turns < 0).all()):  # not convex (or degenerate)
        return None
    if min(np.hypot(edges[:, 0], edges[:, 1])) < MIN_MODULE_PX * size:
        return None
    side = (size + 2 * QUIET) * PX
    upright = np.float32([(QUIET, QUIET), (QUIET + size, QUIET), (QUIET + size, QUIET + size), (QUIET, QUIET + size)])
    to_frame = cv2.getPerspectiveTransform(upright * PX, quad.astype(np.float32))
    return cv2.warpPerspective(
        gray, to_frame, (side, side), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE
    )


def render(bits: np.ndarray) -> np.ndarray:
    """A bit matrix (True: dark) drawn clean: PX pixels a module, QUIET modules of quiet zone."""
    return render_levels(np.where(bits, 0, 255).astype(np.uint8))


def render_levels(levels: np.ndarray) -> np.ndarray:
    """A matrix of module grey levels drawn: PX pixels a module, QUIET modules of light quiet zone."""
    import cv2

    image = levels.repeat(PX, axis=0).repeat(PX, axis=1)
    return cv2.copyMakeBorder(image, *(4 * [QUIET * PX]), cv2.BORDER_CONSTANT, value=255)


def alignment_centres(version: int) -> list[int]:
    """The rows (and columns) of the alignment patterns' centres (ISO/IEC 18004 table E.1)."""
    if version < 2:
        return []
    count = version // 7 + 2
    step = 26 if version == 32 else (version * 4 + count * 2 + 1) // (count * 2 - 2) * 2
    size = 17 + 4 * version
    return [6] + sorted(size - 7 - i * step for i in range(count - 1))


def format_bits(ec_level: str, mask: int) -> list[int]:
    """The 15 format information bits, most significant first (BCH(15,5), masked with 0x5412)."""
    data = (EC_BITS[ec_level] << 3) | mask
    rem = data
    for _ in range(10):
        rem = (rem << 1) ^ ((rem >> 9) * 0x537)
    word = ((data << 10) | rem) ^ 0x5412
    return [(word >> i) & 1 for i in range(14, -1, -1)]


def function_patterns(version: int, ec_level: str, mask: int) -> tuple[np.ndarray, np.ndarray]:
    """Which modules of the symbol are not data (finder patterns with their separators, timing
    patterns, alignment patterns, the dark module, both copies of the format information), and
    their values (True: dark). Version information (versions 7+) is left to the sampling."""
    size = 17 + 4 * version
    fixed = np.zeros((size, size), bool)
    value = np.zeros((size, size), bool)
    for r0, c0 in ((0, 0), (0, size - 7), (size - 7, 0)):
        fixed[max(r0 - 1, 0) : r0 + 8, max(c0 - 1, 0) : c0 + 8] = True  # with the separator
        for r in range(7):
            for c in range(7):
                value[r0 + r, c0 + c] = max(abs(r - 3), abs(c - 3)) != 2
    ticks = np.arange(8, size - 8)
    fixed[6, ticks] = fixed[ticks, 6] = True
    value[6, ticks] = value[ticks, 6] = ticks % 2 == 0
    centres = alignment_centres(version)
    for r in centres:
        for c in centres:
            if (r == 6 and c == 6) or (r == 6 and c == size - 7) or (r == size - 7 and c == 6):  # finders
                continue
            fixed[r - 2 : r + 3, c - 2 : c + 3] = True
            for i in range(-2, 3):
                for j in range(-2, 3):
                    value[r + i, c + j] = max(abs(i), abs(j)) != 1
    bits = format_bits(ec_level, mask)
    # ISO/IEC 18004 figure 25: bit 14 (most significant) ... bit 0; copy 1 around the top left finder
    first = [(8, c) for c in (0, 1, 2, 3, 4, 5, 7, 8)] + [(r, 8) for r in (7, 5, 4, 3, 2, 1, 0)]
    second = [(size - 1 - i, 8) for i in range(7)] + [(8, size - 8 + i) for i in range(8)]
    for places in (first, second):
        for (r, c), bit in zip(places, bits):
            fixed[r, c] = True
            value[r, c] = bool(bit)
    fixed[size - 8, 8] = value[size - 8, 8] = True  # the dark module
    return fixed, value
