"""Reading across frames (issue 27): real frames from the repository's phone renderer, the real
decoders; a code no single frame of a clip reads is read from the frames together, and nothing
but the codes shown ever comes out."""

from __future__ import annotations

import queue
import threading

import cv2
import numpy as np
import pytest

from gated.gate import scanloop
from gated.gate.rehearsal.phone import Doses, phone_clip, still_frame
from gated.gate.scanner import SIGN_AFTER, Debouncer, Scanner
from gated.gate.tracker import STACK_FRAMES, Tracker
from tests.gate.test_scanner import fixed_codes

# A phone held still, small (1.5 px a module), over-exposed, its LCD grid deep: readable when
# still and clean, but through a noisy sensor (sigma 28) and MJPEG at quality 35 no single frame is.
FAINT = Doses(module_px=1.5, tilt=10.0, blur=0.0, lcd=0.3, exposure=1.7, jpeg=0, noise=0.0)


def held_still(text: str, count: int, seed: int, noise: float = 28.0, quality: int = 35) -> list[np.ndarray]:
    """`count` camera frames of one phone pose: the hand's tremor moves it by up to 2 px from frame
    to frame; each frame has its own sensor noise and JPEG blocks."""
    clean, _ = still_frame(text, (1280, 720), np.random.default_rng(5), doses=FAINT)
    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(count):
        dx, dy = (int(v) for v in rng.integers(-2, 3, 2))
        noisy = np.roll(clean, (dy, dx), (0, 1)).astype(np.float32) + rng.normal(0, noise, clean.shape)
        ok, data = cv2.imencode(".jpg", np.clip(noisy, 0, 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, quality])
        frames.append(cv2.imdecode(data, cv2.IMREAD_GRAYSCALE))
    return frames


@pytest.fixture(scope="module")
def faint_clip():
    text = fixed_codes()[4]  # a GT2 code
    return text, held_still(text, 6, seed=6)


def test_a_code_no_single_frame_reads_is_read_from_the_frames_together(faint_clip):
    text, frames = faint_clip
    assert [Scanner().decode(f) for f in frames] == [[]] * len(frames)
    assert [Tracker(stack=False).decode(f) for f in frames] == [[]] * len(frames)
    tracker = Tracker(budget_s=1.0)
    readings = [tracker.read(f) for f in frames]
    read = [r for r in readings if r.texts]
    assert read and all(r.texts == [text] and r.via == "stacked" for r in read)
    assert readings[0].texts == []  # one frame is not enough


def test_the_scan_loop_passes_a_code_read_across_frames_on_once(faint_clip):
    """The camera thread with a Tracker: the code read from the frames together goes on to be
    judged once; the same code read again in the next frames is held off (Debouncer)."""
    text, frames = faint_clip

    class Clip:
        def __init__(self, frames):
            self.frames, self.finished = list(frames), False

        def read(self, timeout=1.0):
            from gated.gate.camera import Frame

            if not self.frames:
                self.finished = True
                return None
            Clip.seq = getattr(Clip, "seq", 0) + 1
            return Frame(gray=self.frames.pop(0), captured_at=Clip.seq / 30, seq=Clip.seq, origin="clip")

    camera, codes, stop = Clip(frames * 2), queue.Queue(), threading.Event()
    seen = []
    thread = threading.Thread(
        target=scanloop.read_codes,
        args=(camera, Tracker(budget_s=1.0), Debouncer(2.0), codes, stop),
        kwargs={"on_frame": lambda frame, texts: seen.append(texts)},
        daemon=True,
    )
    thread.start()
    while not camera.finished and thread.is_alive():
        thread.join(0.05)
    stop.set()
    thread.join(5)
    assert sum(texts == [text] for texts in seen) >= 2  # read in several frames ...
    assert [code for code, _ in iter_queue(codes)] == [text]  # ... judged once


def iter_queue(q: queue.Queue):
    while not q.empty():
        yield q.get_nowait()


def test_reading_across_frames_never_produces_a_code_not_shown():
    """Two faint phones one after the other, then the empty scene: every text read is the code
    of the phone in view or, while the frames of the last one are still stacked, of that one;
    nothing once the stack has passed."""
    a, b = fixed_codes()[4], fixed_codes()[5]
    frames = held_still(a, 6, seed=7) + held_still(b, 6, seed=8)
    empty = cv2.GaussianBlur(held_still(a, 1, seed=9)[0], (0, 0), 8)  # no code: a smooth scene
    frames += [empty] * 6
    shown = [a] * 6 + [b] * 6 + [None] * 6
    tracker = Tracker(budget_s=1.0)
    for i, frame in enumerate(frames):
        recent = {s for s in shown[max(i - STACK_FRAMES + 1, 0) : i + 1] if s}
        texts = tracker.decode(frame)
        assert set(texts) <= recent, f"frame {i}: {texts} not among {recent}"


def test_a_tracker_needs_the_zxing_backend():
    with pytest.raises(ValueError, match="zxing"):
        Tracker(Scanner("pyzbar"))


def test_phone_clips_say_when_the_code_is_in_view_and_the_tracker_reads_them():
    text = fixed_codes()[1]
    clip = phone_clip(
        text,
        (640, 480),
        np.random.default_rng(3),
        frames=30,
        doses=Doses(module_px=3.0, tilt=15.0, blur=3.0, lcd=0.1, exposure=1.2, jpeg=50, noise=3.0),
    )
    assert len(clip.frames) == 30 and clip.frames[0].shape == (480, 640)
    assert clip.entered is not None and clip.in_view is not None and clip.entered <= clip.in_view
    tracker = Tracker()
    readings = [tracker.decode(f) for f in clip.frames]
    assert all(r in ([], [text]) for r in readings)
    assert not any(readings[: clip.in_view])  # not read before it is in view
    assert readings[-1] == [text]  # read once the phone settles
    idle = phone_clip(None, (640, 480), np.random.default_rng(4), frames=10)
    assert idle.in_view is None and [Tracker().decode(f) for f in idle.frames] == [[]] * 10


def test_the_deblur_pass_reads_a_smeared_phone_the_other_passes_miss():
    """A phone smeared 4.7 px along the hand's path (a still of the harder set, seed 1): its
    cepstrum gives the smear, a regularized deconvolution undoes it."""
    from gated.gate.deblur import smear_direction, smear_near
    from gated.gate.rehearsal.phone import draw_still_doses
    from gated.gate.scanner import texture_boxes

    text = fixed_codes()[5]
    rng = np.random.default_rng(1)
    doses, on = draw_still_doses(rng)
    assert "blur" in on and 4.5 < doses.blur < 5.0
    frame, _ = still_frame(text, (1280, 720), rng, doses=doses)
    assert Scanner(passes=("fine", "coarse", "region", "smooth", "texture")).decode(frame) == []
    reading = Scanner().read(frame)
    assert (reading.texts, reading.via) == ([text], "deblur")
    (x0, y0, x1, y1), *_ = texture_boxes(frame)
    crop = frame[y0:y1, x0:x1]
    length, _ = smear_near(crop, smear_direction(crop))
    assert abs(length - doses.blur) < 1.0


def test_the_daemon_reads_across_frames_by_default():
    from types import SimpleNamespace

    from gated.gate.build import make_scanner
    from gated.gate.config import ScannerSection

    assert isinstance(make_scanner(SimpleNamespace(scanner=ScannerSection())), Tracker)
    assert isinstance(make_scanner(SimpleNamespace(scanner=ScannerSection(backend="pyzbar"))), Scanner)


def test_a_camera_that_changes_resolution_or_sends_colour_frames_mid_stream_is_read_on():
    """A camera reopened at another size (the supervised source after a stall) or a colour frame:
    the frames and places remembered at the old size do not break the next reads."""
    text = fixed_codes()[0]
    clear = Doses(module_px=3.0, tilt=10.0, noise=2.0)
    small = [still_frame(text, (640, 480), np.random.default_rng(seed), doses=clear)[0] for seed in (11, 12, 13)]
    big, _ = still_frame(text, (1280, 720), np.random.default_rng(14), doses=clear)
    empty = cv2.GaussianBlur(big, (0, 0), 12)  # the new size, nothing readable: the old places are read
    tracker = Tracker(budget_s=1.0)
    frames = small + [empty, empty, big, cv2.cvtColor(big, cv2.COLOR_GRAY2BGR)] + small
    expected = [[text]] * 3 + [[], []] + [[text]] * 5
    assert [tracker.decode(f) for f in frames] == expected


def test_a_slow_camera_never_reads_a_phone_taken_away():
    """On a loaded gate frames come slowly (here one a second): the code of a phone taken away
    must not be read from the stacked frames of it a few seconds later (eight frames are eight
    seconds here), or a scan-out exit counts one visitor out again and again, and a visitor hears
    `already_used` after the green."""
    a = fixed_codes()[4]
    frames = held_still(a, 6, seed=7)
    empty = cv2.GaussianBlur(held_still(a, 1, seed=9)[0], (0, 0), 8)  # no code: a smooth scene
    now = [0.0]
    tracker = Tracker(budget_s=1.0, clock=lambda: now[0])
    read = []
    for f in frames:  # held up: the camera keeps up, a frame every 0.1 s
        now[0] += 0.1
        read.append(tracker.decode(f))
    assert read[-1] == [a]
    after = []
    for _ in range(6):  # taken away; the loaded gate gets a frame a second
        now[0] += 1.0
        after.append(tracker.decode(empty))
    assert after == [[]] * 6


def test_a_place_counts_as_still_when_its_centre_moved_under_a_tenth_of_its_size():
    """Stacking may take longer at a place that has stopped moving (tracker.STILL_BUDGET_MULTIPLE):
    the phone settled, where stacking reads what no single frame does; not during the reach."""
    from gated.gate.tracker import _still

    box = (100, 100, 300, 300)  # 200 px
    assert _still(box, [(110, 95, 310, 295)])  # moved ~11 px: the tremor
    assert not _still(box, [(130, 100, 330, 300)])  # moved 30 px: still reaching
    assert not _still(box, [])  # nothing there in the last frame
    assert _still(box, [(600, 600, 700, 700), (101, 99, 301, 299)])  # any of the last frame's places


def test_a_sign_in_view_does_not_keep_the_frames_from_being_read_together(faint_clip):
    """A QR sign on the wall, read on every frame, is a sign after SIGN_AFTER frames (Scanner.signs):
    the Tracker still reads the rest of each frame across frames. Before, the sign's read ended
    every frame's reading, and a phone only the stack reads was never read beside it."""
    from tests.gate.test_scanner import SIGN, with_sign

    text, frames = faint_clip
    wall = np.full_like(frames[0], 150)
    tracker = Tracker(budget_s=1.0)
    for _ in range(SIGN_AFTER):
        assert tracker.decode(with_sign(wall)) == [SIGN]
    assert [t for t, _ in tracker.scanner.signs] == [SIGN]
    readings = [tracker.read(with_sign(f)) for f in frames]
    read = [r for r in readings if r.news]
    assert read and all(r.texts == [SIGN, text] and r.via == "stacked" and r.signs == [SIGN] for r in read)
    assert all(r.texts == [SIGN] for r in readings if not r.news)


def test_a_judged_code_still_in_view_is_not_read_again_from_the_stacked_frames():
    """A code the gate has judged (judged_in_view), read again in the next frame, is a sign from
    then on: read at its place alone, the rest of the frame without it. Its place, and what the sign
    paints over, are no places for the Tracker to stack: they were, for the next eight frames, which
    read the sign again from the unpainted frames ("stacked", 20-50 ms a frame at 720p, not 2-3)."""
    from gated.gate.rehearsal.phone import still_frame
    from tests.gate.test_scanner import fixed_codes as codes

    text = codes()[1]
    frame, _ = still_frame(text, (1280, 720), np.random.default_rng(343))
    tracker = Tracker()
    tracker.judged_in_view({text})
    readings = [tracker.read(frame) for _ in range(6)]
    assert all(r.texts == [text] for r in readings)
    assert [r.via for r in readings][1:] == ["sign"] * 5
    assert [t for t, _ in tracker.scanner.signs] == [text]
