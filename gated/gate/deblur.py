"""Undoing a motion smear: a phone moved by the hand is smeared along its path (issue 27).

The scanner's "deblur" pass (gated/gate/scanner.py) reads a textured region the other passes left
unread after estimating the smear and undoing it here:

    smear_direction()  the direction along which the region changes least (the structure
                       tensor's eigenvector of the smaller eigenvalue): a smear's, since a code
                       has edges every way
    smear_along()      the smear's length along a known direction: the deepest minimum of the
                       power cepstrum on that line (a linear smear of length L has spectral zeros
                       every 1/L along its direction; the logarithm makes them a periodic ripple,
                       the cepstrum a negative peak at distance L)
    smear_of()         length and direction both from the cepstrum's deepest minimum (the
                       fallback when smear_along() finds none)
    unsmear()          Wiener deconvolution by the line kernel
"""

from __future__ import annotations

import numpy as np

DEBLUR_MIN_PX = 2.5  # a smear shorter than this is left to the other passes
DEBLUR_MAX_PX = 12.0  # the longest smear the cepstrum is searched for
DEBLUR_NSR = 0.01  # Wiener deconvolution's noise-to-signal ratio


def _cepstrum(crop: np.ndarray) -> np.ndarray:
    """The power cepstrum of the windowed crop, its origin moved to the centre (float32)."""
    import cv2

    f = crop.astype(np.float32)
    f -= float(f.mean())
    h, w = f.shape
    f *= cv2.createHanningWindow((w, h), cv2.CV_32F)
    return np.fft.fftshift(np.fft.irfft2(np.log(np.abs(np.fft.rfft2(f)) + 1e-3), s=(h, w))).astype(np.float32)


def smear_of(crop: np.ndarray) -> tuple[float, float]:
    """The length (pixels) and direction (radians) of a linear motion smear over `crop`: the
    deepest minimum of its power cepstrum between DEBLUR_MIN_PX and DEBLUR_MAX_PX from the centre
    (the smear's spectrum has zeros every 1/L along its direction; the logarithm turns them into
    a periodic ripple, the cepstrum into a negative peak at distance L)."""
    cepstrum = _cepstrum(crop)
    h, w = cepstrum.shape
    cy, cx = h // 2, w // 2
    r = int(DEBLUR_MAX_PX) + 1
    window = cepstrum[cy - r : cy + r + 1, cx - r : cx + r + 1]
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    dist = np.hypot(xx, yy)
    window = np.where((dist >= DEBLUR_MIN_PX) & (dist <= DEBLUR_MAX_PX), window, np.inf)
    y, x = np.unravel_index(int(np.argmin(window)), window.shape)
    return float(dist[y, x]), float(np.arctan2(y - r, x - r))


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


def smear_along(crop: np.ndarray, angle: float) -> float | None:
    """The length of a motion smear over `crop` known to run at `angle` (radians): the deepest
    minimum of the power cepstrum along that line, DEBLUR_MIN_PX to DEBLUR_MAX_PX from the centre;
    None when the line has no minimum below the cepstrum's typical level there."""
    import cv2

    cepstrum = _cepstrum(crop)
    h, w = cepstrum.shape
    radii = np.arange(DEBLUR_MIN_PX, DEBLUR_MAX_PX + 0.01, 0.25, dtype=np.float32)
    xs = (w // 2 + radii * np.float32(np.cos(angle))).reshape(1, -1)
    ys = (h // 2 + radii * np.float32(np.sin(angle))).reshape(1, -1)
    line = cv2.remap(cepstrum, xs, ys, cv2.INTER_LINEAR).ravel()
    if float(line.min()) >= float(np.median(line)):
        return None
    return float(radii[int(np.argmin(line))])


def unsmear(crop: np.ndarray, length: float, angle: float, nsr: float) -> np.ndarray:
    """Wiener deconvolution of `crop` by a line of `length` pixels at `angle` (the motion smear)."""
    import cv2

    n = (int(np.ceil(length)) | 1) + 2
    kernel = np.zeros((n, n), np.float32)
    c = (n - 1) / 2
    for t in np.linspace(-length / 2, length / 2, 8 * n):
        kernel[int(round(c + t * np.sin(angle))), int(round(c + t * np.cos(angle)))] += 1
    kernel /= kernel.sum()
    pad = n + 8
    image = cv2.copyMakeBorder(crop.astype(np.float32), pad, pad, pad, pad, cv2.BORDER_REFLECT)
    h, w = image.shape
    psf = np.zeros((h, w), np.float32)
    psf[:n, :n] = kernel
    psf = np.roll(psf, (-(n // 2), -(n // 2)), (0, 1))
    k = np.fft.rfft2(psf)
    restored = np.fft.irfft2(np.fft.rfft2(image) * np.conj(k) / (np.abs(k) ** 2 + nsr), s=(h, w))
    return np.clip(restored[pad : pad + crop.shape[0], pad : pad + crop.shape[1]], 0, 255).astype(np.uint8)
