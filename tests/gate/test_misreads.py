"""No misread, ever (issue 27): a text is read only when the symbol's own format and error
correction confirm it. Real decoders on rendered symbols; the damaged symbols are made
deterministically."""

from __future__ import annotations

import cv2
import numpy as np
import segno
import zxingcpp

from gated.gate.rehearsal.synthetic import qr_modules, render_ticket_frame
from gated.gate.scanner import Scanner, spare_correction
from tests.gate.test_scanner import fixed_codes


def symbol_image(modules: np.ndarray, px: int = 4) -> np.ndarray:
    return np.kron(np.where(modules == 1, 0, 255).astype(np.uint8), np.ones((px, px), np.uint8))


def used_up(text: str, seed: int = 0) -> np.ndarray:
    """The symbol of `text` with data modules flipped one by one (seeded) until zxing-cpp still
    decodes it, but with the error correction of a block used up: a decode nothing confirms."""
    modules = qr_modules(text).copy()
    n = modules.shape[0]
    rng = np.random.default_rng(seed)
    for _ in range(400):
        y, x = rng.integers(4 + 9, n - 4 - 9, 2)  # clear of the finder patterns and the quiet zone
        modules[y, x] ^= 1
        image = symbol_image(modules)
        found = [
            b
            for b in zxingcpp.read_barcodes(
                image, formats=zxingcpp.BarcodeFormat.QRCodeModel2, text_mode=zxingcpp.TextMode.Plain
            )
            if b.valid
        ]
        if found and spare_correction(found[0]) == 0:
            assert found[0].text == text  # zxing-cpp did correct it; nothing could have told
            return image
        assert found, "the symbol stopped decoding before its correction was used up: choose another seed"
    raise AssertionError("never used up")


def test_a_decode_with_the_error_correction_used_up_is_not_a_read():
    text = fixed_codes()[0]
    image = used_up(text)
    reading = Scanner().read(image)
    assert reading.texts == [] and reading.unconfirmed == [text]
    assert Scanner().decode(cv2.copyMakeBorder(image, 100, 100, 200, 200, cv2.BORDER_CONSTANT, value=200)) == []


def test_the_same_symbol_with_correction_to_spare_is_read():
    text = fixed_codes()[0]
    modules = qr_modules(text).copy()
    modules[20, 20] ^= 1  # one module wrong: corrected, with capacity to spare
    reading = Scanner().read(symbol_image(modules))
    assert reading.texts == [text] and reading.unconfirmed == []


def test_a_doubtful_decode_a_second_binarization_confirms_is_a_read():
    """qrcode-4/34.png: the region pass decodes it with a block's capacity used up; the
    GlobalHistogram re-read of the same place decodes it with capacity to spare. (The texture
    pass's plain reads, before the full frame, read it with capacity to spare outright: without
    them the doubt and its confirmation are what reads it.)"""
    from tests.support.frames import photos

    (photo,) = [p for p in photos("qrcode-4") if p.path.name == "34.png"]
    assert Scanner().read(photo.gray()).texts == [photo.expected]
    without_texture = Scanner(passes=("fine", "coarse", "region", "smooth"))
    reading = without_texture.read(photo.gray())
    assert reading.texts == [photo.expected] and reading.via == "region"
    assert reading.unconfirmed == []


def test_micro_qr_and_rmqr_symbols_are_not_read_beside_a_ticket():
    """zxing-cpp's BarcodeFormat.QRCode also means Micro QR (as few as two check codewords: one
    turns up by chance in a large code's texture) and rMQR; a ticket is always a Model 2 symbol."""
    text = fixed_codes()[1]
    frame = render_ticket_frame(
        text,
        (1280, 720),
        np.random.default_rng(7),
        scale=0.5,
        rotation=0.0,
        tilt=0.0,
        blur=0.0,
        motion=0.0,
        noise=2.0,
        glare=0.0,
        gradient=0.0,
        contrast=1.0,
        inverted=False,
        offset=(-0.9, 0.0),
    )
    micro = segno.make_micro("GATE7", error="l")
    assert micro.designator.startswith("M")
    image = symbol_image(np.array(list(micro.matrix_iter(scale=1, border=2)), np.uint8), px=8)
    h, w = image.shape
    frame[300 : 300 + h, 1000 : 1000 + w] = image
    plain = [
        b.text
        for b in zxingcpp.read_barcodes(frame, formats=zxingcpp.BarcodeFormat.QRCode, text_mode=zxingcpp.TextMode.Plain)
    ]
    assert "GATE7" in plain and text in plain  # what the scanner used to ask zxing-cpp for
    assert Scanner().decode(frame) == [text]


def test_a_micro_qr_symbol_hiding_in_a_tickets_code_is_not_read_when_the_code_is_not():
    """How bench/scan.py's easy set misread (issue 27), on a frame found by searching seeds: the
    bottom-left finder pattern of a large code and the modules beside it form a valid Micro QR M1
    symbol ("396343"; M1 has error detection only). zxing-cpp reports it when it does not read the
    large code itself: here its top-right finder is covered (a thumb, glare)."""
    import string

    alphabet = list(string.digits + string.ascii_uppercase + " $%*+-./:")
    rng = np.random.default_rng(1477)
    text = "GT1:" + "".join(rng.choice(alphabet, int(rng.integers(190, 230))))
    frame = render_ticket_frame(text, (1280, 720), rng)
    micro = [
        b
        for b in zxingcpp.read_barcodes(
            frame, formats=zxingcpp.BarcodeFormat.MicroQRCode, text_mode=zxingcpp.TextMode.Plain, try_downscale=False
        )
    ]
    assert [(b.text, b.valid) for b in micro] == [("396343", True)]
    assert Scanner().decode(frame) == [text]
    cv2.circle(frame, (681, 183), 28, int(np.percentile(frame[150:250, 600:700], 90)), -1)  # the top-right finder
    plain = [
        b.text
        for b in zxingcpp.read_barcodes(
            frame, formats=zxingcpp.BarcodeFormat.QRCode, text_mode=zxingcpp.TextMode.Plain, try_downscale=False
        )
    ]
    assert plain == ["396343"]  # what the scanner used to ask for, and so read
    reading = Scanner().read(frame)
    assert reading.texts == [] and reading.unconfirmed == []
