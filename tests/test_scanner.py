"""Scanner and debouncer: real photos against the ZXing bar, rendered tickets end to end, both backends."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from gated.scanner import Debouncer, Scanner
from gated.rehearsal.synthetic import render_ticket_frame
from gated.validate import validate
from tests.support.frames import MILD, ZXING_BAR, idle_frames, photos, ticket_frames


@pytest.fixture(scope="module")
def zxing():
    return Scanner("zxing")


@pytest.fixture(scope="module")
def pyzbar():
    return Scanner("pyzbar")


@pytest.mark.parametrize("folder", sorted(ZXING_BAR))
def test_real_photos_decode_at_least_to_the_zxing_bar_at_every_rotation(folder, zxing):
    pics = photos(folder)
    for rotation, bar in ZXING_BAR[folder].items():
        readings = [zxing.decode(p.gray(rotation)) for p in pics]
        decoded = sum(p.expected in texts for p, texts in zip(pics, readings))
        misread = sum(p.misread(texts) for p, texts in zip(pics, readings))
        assert decoded >= bar, f"{folder} at {rotation} deg: {decoded}/{len(pics)} decoded, ZXing bar {bar}"
        assert misread == 0, f"{folder} at {rotation} deg: {misread} misread"


def test_control_characters_come_through_as_they_are_not_as_hri_names(zxing):
    (photo,) = [p for p in photos("qrcode-2") if p.path.name == "33.png"]
    assert photo.expected.startswith("\x01\x10")
    assert zxing.decode(photo.gray()) == [photo.expected]


def test_disputed_label_reads_alike_with_both_decoders(zxing):
    import cv2

    (photo,) = [p for p in photos("qrcode-2") if p.path.name == "13.png"]
    assert photo.disputed and photo.disputed != photo.expected
    assert zxing.decode(photo.gray()) == [photo.disputed]
    assert Scanner("pyzbar").decode(cv2.GaussianBlur(photo.gray(), (7, 7), 0)) == [photo.disputed]


def test_region_pass_wins_a_code_the_first_pass_saw_but_could_not_read(zxing):
    (photo,) = [p for p in photos("qrcode-4") if p.path.name == "09.png"]
    assert Scanner(passes=("fine",)).decode(photo.gray()) == []
    reading = zxing.read(photo.gray())
    assert reading.texts == [photo.expected] and reading.via == "region"


def test_smooth_pass_wins_an_unevenly_lit_photo_where_nothing_was_seen(zxing):
    (photo,) = [p for p in photos("qrcode-2") if p.path.name == "12.png"]
    assert Scanner(passes=("fine", "coarse", "region")).decode(photo.gray()) == []
    reading = zxing.read(photo.gray())
    assert reading.texts == [photo.expected] and reading.via == "smooth"


def test_issued_ticket_rendered_into_a_camera_frame_scans_and_is_admitted(authority, store, gate_context):
    text = authority.ticket(seat="B-7")
    frame = render_ticket_frame(text, (1280, 720), np.random.default_rng(5), **MILD)
    (scanned,) = Scanner().decode(frame)
    assert scanned == text
    decision = validate(scanned, authority.keyring, gate_context, store, now=__import__("time").time())
    assert decision.admit, decision


def test_backends_agree_on_the_synthetic_set(authority, zxing, pyzbar):
    texts = [authority.ticket() for _ in range(4)]
    frames = ticket_frames(texts, seed=3, **MILD)
    frames += ticket_frames(texts[:2], seed=4, inverted=True, **MILD)  # dark-mode phone screens
    frames += ticket_frames(texts[:2], size=(640, 480), seed=6, **MILD)
    frames += idle_frames(2)
    expected = [[t] for t in texts] + [[t] for t in texts[:2]] * 2 + [[], []]
    assert [zxing.decode(f) for f in frames] == expected
    assert [pyzbar.decode(f) for f in frames] == expected


def test_pyzbar_needs_its_inverted_passes_for_dark_mode_codes(authority, pyzbar):
    text = authority.ticket()
    for size, via in (((640, 480), "inverted"), ((1280, 720), "coarse")):
        (frame,) = ticket_frames([text], size=size, seed=8, inverted=True, **MILD)
        assert Scanner("pyzbar", passes=("fine",)).decode(frame) == []
        reading = pyzbar.read(frame)
        assert (reading.texts, reading.via) == ([text], via)


def test_colour_frames_are_read_as_gray(authority, zxing):
    (frame,) = ticket_frames([text := authority.ticket()], seed=9, **MILD)
    assert zxing.decode(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)) == [text]


def test_bad_backend_and_passes_are_refused():
    with pytest.raises(ValueError, match="unknown scanner backend"):
        Scanner("zbar")
    with pytest.raises(ValueError, match="must include 'fine'"):
        Scanner("zxing", passes=("region",))
    with pytest.raises(ValueError, match="among"):
        Scanner("pyzbar", passes=("fine", "region"))


def test_debouncer_passes_a_held_code_once_per_hold_off():
    d = Debouncer(hold_off_s=2.0)
    fed = [d.feed(["A"], t) for t in (0.0, 0.1, 0.2, 1.9)]
    assert fed == [["A"], [], [], []]
    assert d.feed(["A"], 2.0) == ["A"]     # still held up after the hold-off: judged again
    assert d.feed(["A"], 2.5) == []


def test_debouncer_lets_a_different_code_through_at_once():
    d = Debouncer(hold_off_s=2.0)
    assert d.feed(["A"], 0.0) == ["A"]
    assert d.feed(["B"], 0.1) == ["B"]
    assert d.feed(["A", "B", "C"], 0.2) == ["C"]
    assert d.feed([], 5.0) == []
    assert d.feed(["A"], 5.1) == ["A"]


def test_debouncer_with_zero_hold_off_passes_every_sighting():
    d = Debouncer(hold_off_s=0.0)
    assert [d.feed(["A", "A"], t) for t in (0.0, 0.0, 0.1)] == [["A"], ["A"], ["A"]]
