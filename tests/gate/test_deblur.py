"""The deblur pass (issue 27b): a phone's code smeared along the hand's path by 4-7 px, its
modules only ~2 px, read after undoing the smear; and never a text the frame does not show.
Real frames from the repository's phone renderer, the real decoder."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from gated.gate.deblur import DEBLUR_SATURATED_SHARE, saturated_share, smear_direction, smear_near, unsmear
from gated.gate.rehearsal.phone import Doses, phone_clip, still_frame
from gated.gate.rehearsal.synthetic import qr_modules
from gated.gate.scanner import Scanner, _cut, spare_correction, texture_boxes
from tests.gate.test_scanner import fixed_codes

WITHOUT_DEBLUR = ("fine", "coarse", "region", "smooth", "texture")


def smeared_still(seed: int, module=(1.8, 2.4), blur=(4.0, 6.5), exposure=None, jpeg=(40, 60), code=None):
    """A settled phone at 1280x720, drawn from `seed`: modules of `module` px, smeared by `blur` px
    in a random direction, tilted up to 15 degrees, a light LCD grid, over-exposed 1.2x (or drawn
    from `exposure`), JPEG quality in `jpeg`; the code fixed_codes()[code] (default: seed mod 6)."""
    rng = np.random.default_rng(seed)
    doses = Doses(
        module_px=float(rng.uniform(*module)),
        tilt=float(rng.uniform(0, 15)),
        blur=float(rng.uniform(*blur)),
        lcd=0.05,
        exposure=float(rng.uniform(*exposure)) if exposure else 1.2,
        jpeg=int(rng.integers(*jpeg)),
        noise=3.0,
    )
    text = fixed_codes()[(seed if code is None else code) % 6]
    frame, _ = still_frame(text, (1280, 720), rng, doses=doses)
    return text, frame, doses


@pytest.mark.parametrize("seed", [7, 9, 17])
def test_a_smeared_small_module_code_the_wiener_deblur_missed_is_read(seed):
    """Seeds where the previous deblur (structure-tensor direction, cepstrum length along it,
    Wiener deconvolution) read nothing: the direction refined in the cepstrum and a regularized
    deconvolution read them."""
    text, frame, doses = smeared_still(seed)
    assert 1.8 <= doses.module_px <= 2.4 and 5.0 <= doses.blur <= 6.0
    assert Scanner(passes=WITHOUT_DEBLUR).decode(frame) == []
    reading = Scanner().read(frame)
    assert (reading.texts, reading.via) == ([text], "deblur")


def decodes(image: np.ndarray) -> list[str]:
    """What zxing-cpp reads with error correction to spare in `image` upscaled 2x and 3x, with
    either binarizer (the deblur pass's reads of a deconvolved region)."""
    import zxingcpp

    texts = []
    for scale in (2, 3):
        up = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
        for binarizer in (zxingcpp.Binarizer.LocalAverage, zxingcpp.Binarizer.GlobalHistogram):
            found = zxingcpp.read_barcodes(
                up, formats=zxingcpp.BarcodeFormat.QRCodeModel2, binarizer=binarizer, try_downscale=False
            )
            texts += [b.text for b in found if b.valid and spare_correction(b) > 0]
    return texts


@pytest.mark.parametrize("seed", [109, 126])
def test_an_over_exposed_smeared_code_is_read_with_its_clipped_pixels_raised(seed):
    """A screen 1.6-1.8x too bright for the sensor: the clipping ate the smear's ramps into the
    dark modules, and the plain deconvolution reads nothing; taking the clipped pixels for more
    light than the sensor could say, it reads."""
    text, frame, _ = smeared_still(
        seed, module=(2.0, 2.8), blur=(3.5, 6), exposure=(1.5, 1.8), jpeg=(50, 80), code=seed - 100
    )
    assert Scanner(passes=WITHOUT_DEBLUR).decode(frame) == []
    for box in texture_boxes(frame):
        crop = _cut(frame, box)
        smear = smear_near(crop, smear_direction(crop))
        assert smear is None or decodes(unsmear(crop, *smear)) == []
    reading = Scanner().read(frame)
    assert (reading.texts, reading.via) == ([text], "deblur")
    (box, *_) = texture_boxes(frame)
    assert saturated_share(_cut(frame, box)) >= DEBLUR_SATURATED_SHARE


def smear(image: np.ndarray, length: float, angle: float) -> np.ndarray:
    """`image` averaged over 64 sub-pixel shifts along a line (a steady motion during the exposure)."""
    acc = np.zeros(image.shape, np.float32)
    for t in np.linspace(-length / 2, length / 2, 64):
        shift = np.float32([[1, 0, t * np.cos(angle)], [0, 1, t * np.sin(angle)]])
        acc += cv2.warpAffine(image.astype(np.float32), shift, image.shape[::-1], borderMode=cv2.BORDER_REFLECT)
    return np.clip(acc / 64, 0, 255).astype(np.uint8)


@pytest.mark.parametrize(("length", "degrees"), [(3.5, 20.0), (5.0, 100.0), (6.5, 155.0)])
def test_the_smear_is_measured_from_the_region_alone(length, degrees):
    symbol = np.where(qr_modules(fixed_codes()[1]) == 1, 40, 220).astype(np.uint8)
    image = cv2.resize(symbol, None, fx=2.2, fy=2.2, interpolation=cv2.INTER_AREA)
    rng = np.random.default_rng(1)
    smeared = np.clip(smear(image, length, np.radians(degrees)) + rng.normal(0, 2, image.shape), 0, 255)
    found = smear_near(smeared.astype(np.uint8), smear_direction(smeared.astype(np.uint8)))
    assert found is not None
    found_length, found_angle = found
    assert abs(found_length - length) < 0.8
    off = np.radians(abs((np.degrees(found_angle) - degrees + 90) % 180 - 90))
    assert length / 2 * np.sin(off) < 0.4  # the kernel's ends lie within 0.4 px of the true ones


def test_deblurring_never_yields_a_text_not_shown():
    """Phones showing no code, an empty scene, a smeared random module pattern with finder-like
    blocks, and a frame showing another code: every region deconvolved along every guess yields
    nothing but the code shown."""
    scanner = Scanner()
    rng = np.random.default_rng(5)
    frames = [still_frame(None, (1280, 720), np.random.default_rng(seed), blur=5.0)[0] for seed in range(3)]
    frames += [phone_clip(None, (1280, 720), np.random.default_rng(9), frames=1, phone=False).frames[0]]
    pattern = np.kron(rng.integers(0, 2, (60, 60)) * 200 + 30, np.ones((2, 2))).astype(np.uint8)
    pattern[:14, :14] = pattern[:14, -14:] = pattern[-14:, :14] = 30  # dark blocks where finders would be
    frames += [smear(pattern, 5.0, 0.6)]
    for frame in frames:
        h, w = frame.shape
        boxes = texture_boxes(frame) + [(w // 4, h // 4, 3 * w // 4, 3 * h // 4), (0, 0, w, h)]
        for box in boxes:
            assert scanner.read_smeared(frame, box) == []
        assert scanner.read(frame).texts == []
    text, frame, _ = smeared_still(7)
    for box in texture_boxes(frame):
        assert scanner.read_smeared(frame, box) in ([], [text])


def test_hostile_regions_yield_nothing_and_raise_nothing():
    scanner = Scanner()
    rng = np.random.default_rng(2)
    checker = (np.indices((200, 200)).sum(0) % 2 * 255).astype(np.uint8)
    frames = [
        np.zeros((200, 200), np.uint8),
        np.full((200, 200), 255, np.uint8),
        checker,
        rng.integers(0, 256, (200, 200)).astype(np.uint8),
        np.where(rng.random((200, 200)) < 0.01, 255, 0).astype(np.uint8),
    ]
    boxes = [(0, 0, 200, 200), (10, 10, 12, 12), (50, 50, 50, 50), (190, 190, 400, 400), (0, 0, 30, 200)]
    for frame in frames:
        for box in boxes:
            assert scanner.read_smeared(frame, box) == []
    for crop in (np.zeros((1, 1), np.uint8), np.full((3, 50), 255, np.uint8), checker[:40, :40]):
        assert unsmear(crop, 6.0, 1.0).shape == crop.shape
        assert smear_near(crop, 0.0) is None or all(np.isfinite(smear_near(crop, 0.0)))
    assert unsmear(checker, 0.0, 0.0).dtype == np.uint8 and unsmear(checker, 40.0, 3.0).shape == checker.shape
