"""Measurement: what a decoder that knew the module grid exactly could read (issue 27). For the
harder stills the scanner misses, and for the frames of each clip between the code fully in view
and the scanner's first read, the renderer's own geometry (the symbol's four corners in the frame,
the smear's length and direction: gated.gate.rehearsal.phone, Shot and Clip) stands in for a grid
locator better than any real one, and the modules' grey values are solved for by least squares
against the smeared, lens-blurred rendering of the grid. Then, per Reed-Solomon block of the
symbol, the codewords those module decisions leave wrong are counted against what three decoders
could correct:

    hard    a decoder that decides each module first (zxing-cpp, every pass of the scanner):
            2 x wrong <= check codewords in every block
    GMD     Forney's generalized minimum distance decoding: the f least reliable codewords of a
            block erased (reliability: the module value's distance from the threshold), for any f:
            2 x (wrong, not erased) + f <= check codewords
    genie   erasures told exactly which codewords are wrong (the Singleton bound: no decoder that
            takes each codeword as right, wrong or erased corrects more): wrong <= check
            codewords. A decoder that weighs each module keeps the right modules of a wrong
            codeword and is not held to it; Chase's is measured:
    Chase-t Chase-II decoding, the module-level soft-decision decoder of the textbook: in each block
            the t least reliable modules, every one of the 2^t patterns of them flipped, each
            candidate decoded hard; counted as read when the pattern that flips exactly the wrong
            ones among those t leaves the block within a hard decoder's share (an upper bound: a
            real one must also pick that candidate among the others). t = 8 and 16 are decoders one
            could run (256 and 65,536 hard decodings a block, the latter already far beyond a
            frame's time); 32 and 64 are bounds only.

For the clips the last three frames' module values are also summed (a soft vote across frames, the
phone's motion undone exactly) and the earlier of the two counts, for the genie and Chase-16 and
Chase-64 (CLIP_DECODERS). No decoder is built here: this bounds what one could read at the clip
model's doses.

    .venv/bin/python bench/exact_grid.py [--stills 100] [--clips 30] [--sizes 640x480,1280x720] [--seed 1]

The stills and clips are bench/clips.py's for the same seed (the same draws); ~45 s a size.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import segno.consts
import segno.encoder
import zxingcpp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from clips import ticket_codes  # noqa: E402  (the same seeded codes as bench/clips.py)

from gated.core.ticket import qr_symbol  # noqa: E402
from gated.gate.rehearsal import phone  # noqa: E402
from gated.gate.rehearsal.synthetic import qr_modules  # noqa: E402
from gated.gate.scanner import Scanner  # noqa: E402

CHASE_BITS = (8, 16, 32, 64)  # Chase-II decoding: test patterns over a block's this many least reliable modules
CLIP_DECODERS = ("genie", "Chase-16", "Chase-64")  # the clips' bounds: first frame each would read
RECTIFIED_PX = 4  # pixels a module in the rectified image
LENS_SIGMA = 0.5  # the renderer's lens blur, frame pixels (phone._expose)
RIDGE = 0.02  # the least-squares solve's pull towards the mean grey (Tikhonov)
ERROR_LEVELS = {"L": segno.consts.ERROR_LEVEL_L, "M": segno.consts.ERROR_LEVEL_M}
ERROR_LEVELS |= {"Q": segno.consts.ERROR_LEVEL_Q, "H": segno.consts.ERROR_LEVEL_H}
FRAME_MS = 1000 / phone.FPS


@dataclass(frozen=True)
class Layout:
    """Where a QR version's codewords are: `index[row, col]`, the module's codeword in the
    interleaved sequence (-1: a function pattern, format or version information, or a remainder
    bit); `block[i]`, the Reed-Solomon block of the sequence's codeword i; `checks[b]`, block b's
    check codewords."""

    index: np.ndarray
    block: np.ndarray
    checks: list[int]


_layouts: dict[tuple[int, str], Layout] = {}


def layout(version: int, error: str) -> Layout:
    """ISO/IEC 18004 7.6-7.7: the blocks' data codewords interleaved, then their check codewords;
    the bit stream placed in two-module columns from the right, up and down, column 6 skipped."""
    key = (version, error)
    if key in _layouts:
        return _layouts[key]
    size = 17 + 4 * version
    matrix = segno.encoder.make_matrix(size, size)  # 0x2: free for data
    segno.encoder.add_finder_patterns(matrix, size, size)
    segno.encoder.add_alignment_patterns(matrix, size, size)
    blocks = [
        (ec.num_total, ec.num_data)
        for ec in segno.consts.ECC[version][ERROR_LEVELS[error]]
        for _ in range(ec.num_blocks)
    ]
    owner = [b for i in range(max(k for _, k in blocks)) for b, (_, k) in enumerate(blocks) if i < k]
    owner += [b for i in range(max(n - k for n, k in blocks)) for b, (n, k) in enumerate(blocks) if i < n - k]
    index = np.full((size, size), -1, int)
    bit = 0
    for right in range(size - 1, 0, -2):
        right -= right <= 6
        upwards = (right & 2) == 0
        for step in range(size):
            for col in (right, right - 1):
                row = size - 1 - step if upwards ^ (col < 6) else step
                if matrix[row][col] == 0x2:
                    index[row, col] = bit // 8 if bit // 8 < len(owner) else -1
                    bit += 1
    result = Layout(index, np.array(owner), [n - k for n, k in blocks])
    _layouts[key] = result
    return result


def correctable(wrong: np.ndarray, reliability: np.ndarray, text: str) -> dict[str, bool]:
    """Whether the hard, GMD and genie decoders (module docstring) correct a symbol whose decided
    modules differ from the true ones where `wrong` (symbol modules, quiet zone excluded), each
    module decided with `reliability` (higher: surer)."""
    symbol = qr_symbol(text)
    lay = layout(symbol.version, symbol.error)
    data = lay.index >= 0
    count = len(lay.block)
    bad = np.zeros(count, bool)
    np.logical_or.at(bad, lay.index[data], wrong[data])
    sure = np.full(count, np.inf)
    np.minimum.at(sure, lay.index[data], reliability[data])
    out = {"hard": True, "GMD": True, "genie": True} | {f"Chase-{t}": True for t in CHASE_BITS}
    owner = np.where(data, lay.block[np.maximum(lay.index, 0)], -1)  # each module's block
    for b, checks in enumerate(lay.checks):
        modules = np.flatnonzero(owner.ravel() == b)
        doubt = modules[np.argsort(reliability.ravel()[modules], kind="stable")]  # least reliable first
        for t in CHASE_BITS:  # the test pattern that flips exactly the wrong ones of the t least reliable
            still = wrong.ravel().copy()
            still[doubt[:t]] = False
            left = np.zeros(count, bool)
            np.logical_or.at(left, lay.index.ravel()[modules], still[modules])
            out[f"Chase-{t}"] &= 2 * int(left.sum()) <= checks
        mine = np.flatnonzero(lay.block == b)
        errors = int(bad[mine].sum())
        out["hard"] &= 2 * errors <= checks
        out["genie"] &= errors <= checks
        doubtful = bad[mine[np.argsort(sure[mine], kind="stable")]]  # least reliable first
        left = errors - np.concatenate(([0], np.cumsum(doubtful)))  # wrong and not erased, f = 0..n
        out["GMD"] &= bool(np.any(2 * left[: checks + 1] + np.arange(min(checks, len(mine)) + 1) <= checks))
    return out


def smear_kernel(length: float, angle: float, sigma: float) -> np.ndarray:
    """A line of `length` pixels at `angle`, blurred by a Gaussian of `sigma` (the lens)."""
    n = max(int(np.ceil(length + 6 * sigma)) | 1, 3)
    fine = np.zeros((4 * n, 4 * n), np.float32)
    c = (4 * n - 1) / 2
    for t in np.linspace(-length / 2, length / 2, 64):
        fine[int(round(c + 4 * t * np.sin(angle))), int(round(c + 4 * t * np.cos(angle)))] += 1
    kernel = cv2.resize(fine, (n, n), interpolation=cv2.INTER_AREA)
    if sigma > 0:
        kernel = cv2.GaussianBlur(kernel, (0, 0), sigma)
    return kernel / kernel.sum()


def module_values(frame: np.ndarray, corners: np.ndarray, smear: float, heading: float, modules: int) -> np.ndarray:
    """The grey value of each module (quiet zone included, `modules` a side): the frame rectified
    to RECTIFIED_PX a module through the exact corners, the smear carried into the rectified
    image, then min |W (k * m - Y)|^2 + RIDGE |m - mean|^2 by conjugate gradients (W: the pixels
    not clipped at white)."""
    s, inner = RECTIFIED_PX, modules - 8
    grid = np.array([[4, 4], [inner + 4, 4], [inner + 4, inner + 4], [4, inner + 4]], np.float32) * s - 0.5
    to_frame = cv2.getPerspectiveTransform(grid, corners.astype(np.float32))
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    y = cv2.warpPerspective(frame.astype(np.float32), to_frame, (modules * s, modules * s), flags=flags)
    w = (y < 250).astype(np.float32)
    back = np.linalg.inv(to_frame)

    def rectified(p):
        q = back @ np.array([p[0], p[1], 1.0])
        return q[:2] / q[2]

    centre = corners.mean(0)
    along = smear * np.array([np.cos(heading), np.sin(heading)])
    d = rectified(centre + along / 2) - rectified(centre - along / 2)
    scale = float(np.linalg.norm(rectified(centre + [1, 0]) - rectified(centre)))
    k = smear_kernel(float(np.hypot(*d)), float(np.arctan2(d[1], d[0])), LENS_SIGMA * scale + 0.5)
    flipped = cv2.flip(k, -1)
    block = np.ones((s, s), np.float32)

    def forward(m):
        return cv2.filter2D(np.kron(m, block), -1, k, borderType=cv2.BORDER_REFLECT)

    def adjoint(r):
        return cv2.filter2D(r, -1, flipped, borderType=cv2.BORDER_REFLECT).reshape(modules, s, modules, s).sum((1, 3))

    def normal(m):
        return adjoint(w * forward(m)) + RIDGE * s * s * m

    mean = float((y * w).sum() / max(w.sum(), 1.0))
    rhs = adjoint(w * y) + RIDGE * s * s * mean
    m = np.full((modules, modules), mean, np.float32)
    r = rhs - normal(m)
    p, rr = r.copy(), float((r * r).sum())
    for _ in range(60):
        np_ = normal(p)
        a = rr / float((p * np_).sum())
        m += a * p
        r -= a * np_
        new = float((r * r).sum())
        if new < 1e-8 * rr:
            break
        p, rr = r + (new / rr) * p, new
    return m


def soft(values: np.ndarray) -> np.ndarray:
    """Module values as soft decisions: negative dark, positive light, the contrast scaled to 1."""
    low, high = np.percentile(values, 10), np.percentile(values, 90)
    return (values - (low + high) / 2) / max(high - low, 1e-6)


def decide(decisions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dark modules (True) and each decision's reliability, from soft decisions or their sum."""
    return decisions < 0, np.abs(decisions)


def judge(bits: np.ndarray, reliability: np.ndarray, text: str) -> tuple[float, dict[str, bool], bool]:
    """The share of symbol modules decided wrong, what the three decoders correct, and whether
    zxing-cpp reads the decided modules drawn clean (a check on `correctable`'s hard count)."""
    truth = qr_modules(text).astype(bool)
    wrong = (bits != truth)[4:-4, 4:-4]
    return float(wrong.mean()), correctable(wrong, reliability[4:-4, 4:-4], text), text in read_clean(bits)


def read_clean(bits: np.ndarray) -> list[str]:
    """What zxing-cpp reads in a bit matrix (True: dark; quiet zone included) drawn clean."""
    clean = np.kron(np.where(bits, 0, 255).astype(np.uint8), np.ones((6, 6), np.uint8))
    plain = zxingcpp.TextMode.Plain
    return [b.text for b in zxingcpp.read_barcodes(clean, formats=zxingcpp.BarcodeFormat.QRCodeModel2, text_mode=plain)]


def stills(size, count: int, seed: int) -> None:
    """bench/clips.py's harder stills (same draws); those the scanner misses, judged."""
    codes = ticket_codes(12, seed)
    rng = np.random.default_rng(seed + 1000)
    scanner = Scanner("zxing")
    missed, checks = 0, 0
    totals = {"hard": 0, "GMD": 0, "genie": 0} | {f"Chase-{t}": 0 for t in CHASE_BITS}
    for i in range(count):
        text = codes[i % len(codes)]
        doses, _ = phone.draw_still_doses(rng)
        shot = phone.still_shot(text, size, rng, doses=doses)
        if text in scanner.decode(shot.frame):
            continue
        missed += 1
        modules = qr_modules(text).shape[0]
        values = module_values(shot.frame, shot.code_corners, shot.smear, shot.heading, modules)
        share, can, read = judge(*decide(soft(values)), text)
        checks += read == can["hard"]
        totals = {name: totals[name] + can[name] for name in totals}
        print(
            f"  still {i:3d}: modules {doses.module_px:.2f} px, smear {shot.smear:.1f} px, JPEG {doses.jpeg}: "
            f"{share:6.1%} modules wrong; " + ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in can.items()),
            flush=True,
        )
    read = count - missed
    print(
        f"stills {size[0]}x{size[1]}: the scanner reads {read} of {count}; of the {missed} it misses, "
        + ", ".join(f"{k} would read {v}" for k, v in totals.items())
        + f" (the scanner with the genie: {(read + totals['genie']) / count:.0%}); "
        f"zxing-cpp on the decided modules agreed with the hard count on {checks} of {missed}"
    )


def clips(size, count: int, seed: int) -> None:
    """bench/clips.py's clips (same draws): frames from the code fully in view to the scanner's
    first read on its own (every frame decoded), judged; the p95 of the scanner's first and of
    each of CLIP_DECODERS' (a clip none of them reads earlier counts the scanner's), in frames."""
    codes = ticket_codes(12, seed)
    rng = np.random.default_rng(seed)
    firsts, bounds = [], {name: [] for name in CLIP_DECODERS}
    for i in range(count):
        clip = phone.phone_clip(codes[i % len(codes)], size, rng)
        if clip.in_view is None:
            continue
        scanner = Scanner("zxing")
        first = next(
            (j for j in range(clip.in_view, len(clip.frames)) if clip.text in scanner.decode(clip.frames[j])), None
        )
        firsts.append(np.inf if first is None else first - clip.in_view)
        end = len(clip.frames) if first is None else first
        modules = qr_modules(clip.text).shape[0]
        sums, found = [], {}
        for j in range(clip.in_view, end):
            values = module_values(clip.frames[j], clip.code_corners[j], *clip.drawn_smears[j], modules)
            sums = (sums + [soft(values)])[-3:]
            one, three = judge(*decide(sums[-1]), clip.text)[1], judge(*decide(sum(sums)), clip.text)[1]
            for name in CLIP_DECODERS:
                if name not in found and (one[name] or three[name]):
                    found[name] = j - clip.in_view
            if len(found) == len(CLIP_DECODERS):
                break
        for name in CLIP_DECODERS:
            bounds[name].append(found.get(name, firsts[-1]))
        if any(bounds[name][-1] != firsts[-1] for name in CLIP_DECODERS) or firsts[-1] >= 4:
            print(
                f"  clip {i:2d}: modules {clip.doses.module_px:.2f} px: first read {firsts[-1]} frames after fully in view, "
                + ", ".join(f"{name} {bounds[name][-1]}" for name in CLIP_DECODERS),
                flush=True,
            )
    p95 = np.percentile(firsts, 95)
    print(
        f"clips {size[0]}x{size[1]}: frames from fully in view to the first read, p95 {p95:.1f} ({p95 * FRAME_MS:.0f} ms); "
        "with an exact grid and a three-frame sum: "
        + ", ".join(
            f"{name} p95 {np.percentile(bounds[name], 95):.1f} ({np.percentile(bounds[name], 95) * FRAME_MS:.0f} ms)"
            for name in CLIP_DECODERS
        )
        + f" (the frames alone, no decode time; target 150 ms = {150 / FRAME_MS:.1f} frames)"
    )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stills", type=int, default=100, help="harder stills per size (default 100; 0: none)")
    ap.add_argument("--clips", type=int, default=30, help="clips per size (default 30; 0: none)")
    ap.add_argument("--sizes", default="640x480,1280x720")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    cv2.setNumThreads(1)
    started = time.monotonic()
    print(f"bench/exact_grid.py  seed {args.seed}  cpus={os.cpu_count()}")
    for size in [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]:
        if args.stills:
            stills(size, args.stills, args.seed)
        if args.clips:
            clips(size, args.clips, args.seed)
    print(f"ran {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
