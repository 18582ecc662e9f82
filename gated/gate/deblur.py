"""Undoing a motion smear: a phone moved by the hand is smeared along its path (issue 27).

The scanner's "deblur" pass (gated/gate/scanner.py) reads a textured region the other passes left
unread after estimating the smear and undoing it here:

    smear_direction()  the direction along which the region changes least (the structure
                       tensor's eigenvector of the smaller eigenvalue): a smear's, since a code
                       has edges every way; a first guess, often 5-15 degrees off
    smear_near()       length and direction together: the deepest minimum of the power cepstrum
                       within DEBLUR_SECTOR_DEG of that guess, DEBLUR_MIN_PX to DEBLUR_MAX_PX
                       from the centre, found to a quarter pixel (a linear smear of length L has
                       spectral zeros every 1/L along its direction; the logarithm makes them a
                       periodic ripple, the cepstrum a negative peak at distance L)
    unsmear()          regularized deconvolution by the line kernel (anti-aliased: a sub-pixel
                       length and any angle): the least-squares image whose smear matches the
                       region, with a penalty on its Laplacian (Tikhonov), in one FFT step;
                       for an over-exposed region, also with its clipped pixels raised (`gain`)

Measured (issue 27b, harder stills of bench/clips.py, 400 frames at 1280x720 and 640x480, the
frames the other passes miss): the direction refined in the cepstrum and the Laplacian penalty
each lift the pass's wins; together from 34 to 60 of 133 (67 with the true smear); raising an
over-exposed region's clipped pixels (`gain`) to 66. Tried
and not kept: Wiener's constant noise ratio (28 of 72 even with the true smear, against 35),
Richardson-Lucy (22, and ten times the cost), deconvolving at the upscaled size, total-variation
and two-tone (binary) priors by half-quadratic splitting (within 2 frames either way, at two to
three times the cost), adaptive thresholds of the result, more lengths and angles around the
estimate (+1-3 frames for twice the cost on the frames it does not read).
"""

from __future__ import annotations

import numpy as np

DEBLUR_MIN_PX = 2.5  # a smear shorter than this is left to the other passes
DEBLUR_MAX_PX = 12.0  # the longest smear the cepstrum is searched for
DEBLUR_SECTOR_DEG = 20.0  # the cepstrum is searched this far either side of the structure tensor's direction
DEBLUR_LENGTH_BIAS = 0.3  # px: the lens and JPEG push the cepstrum's minimum this much beyond the smear (measured)
DEBLUR_REG = 0.003  # weight of the Laplacian penalty (the image's 0-255 scale)
# An over-exposed region (DEBLUR_SATURATED_SHARE of its pixels clipped) is deconvolved once more
# for each gain if the first try reads nothing: its clipped pixels taken for that much more light.
SATURATED = 250
DEBLUR_SATURATED_SHARE = 0.2
DEBLUR_GAINS = (1.3, 1.7)
_CEPSTRUM_UP = 4  # the cepstrum near its centre is upscaled this much: the length to a quarter pixel


def _cepstrum(crop: np.ndarray) -> np.ndarray:
    """The power cepstrum of the windowed crop, its origin moved to the centre (float32)."""
    import cv2

    f = crop.astype(np.float32)
    f -= float(f.mean())
    h, w = f.shape
    f *= cv2.createHanningWindow((w, h), cv2.CV_32F)
    return np.fft.fftshift(np.fft.irfft2(np.log(np.abs(np.fft.rfft2(f)) + 1e-3), s=(h, w))).astype(np.float32)


def smear_direction(crop: np.ndarray) -> float:
    """The direction (radians) along which `crop` changes least: a motion smear's, for a region of
    code that has edges every way (the structure tensor's eigenvector of the smaller eigenvalue)."""
    import cv2

    f = cv2.GaussianBlur(crop.astype(np.float32), (3, 3), 0)
    gx, gy = cv2.Sobel(f, cv2.CV_32F, 1, 0), cv2.Sobel(f, cv2.CV_32F, 0, 1)
    tensor = np.array(
        [[float((gx * gx).mean()), float((gx * gy).mean())], [float((gx * gy).mean()), float((gy * gy).mean())]]
    )
    _, vectors = np.linalg.eigh(tensor)
    return float(np.arctan2(vectors[1, 0], vectors[0, 0]))


def smear_near(crop: np.ndarray, angle: float) -> tuple[float, float] | None:
    """The length (pixels, less DEBLUR_LENGTH_BIAS) and direction (radians, 0..pi) of a motion
    smear over `crop` whose direction is roughly `angle`: the deepest minimum of the power
    cepstrum within DEBLUR_SECTOR_DEG of that direction, DEBLUR_MIN_PX to DEBLUR_MAX_PX from the
    centre, on the cepstrum upscaled _CEPSTRUM_UP times. None when the crop is too small to tell
    or the sector has no minimum below the cepstrum's typical level there (no smear)."""
    import cv2

    r = int(DEBLUR_MAX_PX) + 2
    if min(crop.shape) < 2 * r + 3:
        return None
    cepstrum = _cepstrum(crop)
    h, w = cepstrum.shape
    window = cepstrum[h // 2 - r : h // 2 + r + 1, w // 2 - r : w // 2 + r + 1]
    big = cv2.resize(window, None, fx=_CEPSTRUM_UP, fy=_CEPSTRUM_UP, interpolation=cv2.INTER_CUBIC)
    n = big.shape[0]
    yy, xx = (np.mgrid[0:n, 0:n].astype(np.float32) - (n - 1) / 2) / _CEPSTRUM_UP
    dist, theta = np.hypot(xx, yy), np.arctan2(yy, xx)
    off = np.abs((theta - angle + np.pi / 2) % np.pi - np.pi / 2)  # a line has no sign
    sector = (dist >= DEBLUR_MIN_PX) & (dist <= DEBLUR_MAX_PX) & (off <= np.radians(DEBLUR_SECTOR_DEG))
    values = big[sector]
    if values.size == 0 or not np.isfinite(values).all() or float(values.min()) >= float(np.median(values)):
        return None
    i = int(np.argmin(values))
    return float(dist[sector][i]) - DEBLUR_LENGTH_BIAS, float(theta[sector][i]) % np.pi


def line_kernel(length: float, angle: float) -> np.ndarray:
    """A line of `length` pixels at `angle` (radians), anti-aliased (each sample spread over its
    four nearest pixels), summing to 1: the smear of a straight, steady motion."""
    n = (int(np.ceil(length)) | 1) + 2
    c = (n - 1) / 2
    t = np.linspace(-length / 2, length / 2, 16 * n)
    y, x = c + t * np.sin(angle), c + t * np.cos(angle)
    y0, x0 = np.floor(y).astype(int), np.floor(x).astype(int)
    fy, fx = y - y0, x - x0
    kernel = np.zeros((n + 1, n + 1), np.float64)
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            np.add.at(kernel, (y0 + dy, x0 + dx), wy * wx)
    kernel = kernel[:n, :n]
    return (kernel / kernel.sum()).astype(np.float32)


def unsmear(crop: np.ndarray, length: float, angle: float, reg: float = DEBLUR_REG, gain: float = 1.0) -> np.ndarray:
    """`crop` deconvolved by a line of `length` pixels at `angle` (the motion smear): the image x
    minimizing |k * x - crop|^2 + reg |Laplacian x|^2 (Tikhonov), solved in one FFT step on the
    crop padded by reflection; uint8, the crop's shape. `gain` > 1: an over-exposed crop, whose
    clipped pixels (SATURATED and above) are taken for `gain` times full scale before the
    deconvolution (the screen was brighter than the sensor could say: the clipping ate the
    smear's ramps into the dark modules), the result divided by `gain`."""
    import cv2

    kernel = line_kernel(max(float(length), 1.0), angle)
    n = kernel.shape[0]
    pad = n + 8
    values = crop.astype(np.float32)
    if gain != 1.0:
        values = np.where(crop >= SATURATED, np.float32(255.0 * gain), values)
    image = cv2.copyMakeBorder(values, pad, pad, pad, pad, cv2.BORDER_REFLECT)
    h, w = image.shape
    psf = np.zeros((h, w), np.float32)
    psf[:n, :n] = kernel
    k = np.fft.rfft2(np.roll(psf, (-(n // 2), -(n // 2)), (0, 1)))
    laplacian = np.zeros((h, w), np.float32)
    laplacian[0, 0] = 4
    laplacian[0, 1] = laplacian[1, 0] = laplacian[0, -1] = laplacian[-1, 0] = -1
    penalty = np.abs(np.fft.rfft2(laplacian)) ** 2
    restored = np.fft.irfft2(np.fft.rfft2(image) * np.conj(k) / (np.abs(k) ** 2 + reg * penalty), s=(h, w))
    restored = restored[pad : pad + crop.shape[0], pad : pad + crop.shape[1]] / gain
    return np.clip(restored, 0, 255).astype(np.uint8)


def saturated_share(crop: np.ndarray) -> float:
    """The share of `crop`'s pixels at SATURATED or above (clipped by over-exposure)."""
    return float((crop >= SATURATED).mean()) if crop.size else 0.0
