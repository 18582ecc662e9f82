"""The scan loop the daemon runs and bench/latency.py times: real frames from a files camera, the
real decoder and debouncer, a real Gate on a real store and MockFactory pins."""

from __future__ import annotations

import queue
import sqlite3
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from structlog.testing import capture_logs

from gated.core.decide import GateMode
from gated.gate import scanloop
from gated.gate.camera import FileSource
from gated.gate.frames import Frame
from gated.gate.gate import Gate
from gated.gate.scanner import Debouncer, Scanner
from gated.gate.tracker import Tracker
from gated.gate.turnstile import Turnstile
from tests.support.frames import render_card
from tests.support.pins import pins, profile  # noqa: F401  (pins is a fixture)


def run_until_finished(camera, codes: queue.Queue, scanner=None, **hooks) -> None:
    stop = threading.Event()
    thread = threading.Thread(
        target=scanloop.read_codes,
        args=(camera, scanner or Scanner("zxing"), Debouncer(2.0), codes, stop),
        kwargs=hooks,
        daemon=True,
    )
    thread.start()
    deadline = time.monotonic() + 10
    while not camera.finished and time.monotonic() < deadline:
        time.sleep(0.01)
    stop.set()
    thread.join(5)
    assert not thread.is_alive()


def test_each_code_goes_on_once_with_its_frames_capture_time(tmp_path, authority):
    text = authority.ticket()
    for name, shown in (("1", None), ("2", text), ("3", text), ("4", None)):
        render_card(tmp_path / "cards", name, shown)
    camera = FileSource(tmp_path / "cards")
    camera.open()
    codes: queue.Queue = queue.Queue()
    seen = []
    run_until_finished(camera, codes, on_frame=lambda frame, texts: seen.append((frame.captured_at, texts)))
    assert [texts for _, texts in seen] == [[], [text], [text], []]
    assert codes.qsize() == 1  # the same code in the next frame is held off by the debouncer
    assert codes.get() == (text, seen[1][0])


class FirstThen:
    """A camera whose first reads hand over `first` in turn (an exception is raised, as a device
    that vanished would; an array comes as a frame, as a driver set to a format the sources do not
    convert might hand it over); then the files camera's frames."""

    def __init__(self, inner, first):
        self.inner, self.first = inner, list(first)

    def read(self, timeout=1.0):
        if self.first:
            item = self.first.pop(0)
            if isinstance(item, Exception):
                raise item
            return Frame(item, time.monotonic(), 0, "bad")
        return self.inner.read(timeout)

    @property
    def finished(self):
        return self.inner.finished


def test_a_failing_camera_is_reported_and_read_again(tmp_path, authority):
    text = authority.ticket()
    render_card(tmp_path / "cards", "1", text)
    inner = FileSource(tmp_path / "cards")
    inner.open()
    codes: queue.Queue = queue.Queue()
    faults = []
    run_until_finished(FirstThen(inner, [OSError("device gone")]), codes, on_fault=faults.append)
    assert [str(f) for f in faults] == ["device gone"]
    assert codes.get_nowait()[0] == text


def test_judge_reports_a_store_fault_as_none_and_the_gate_stays_shut(store, authority, gate_context, pins):
    gate = Gate(
        store=store,
        keyring=authority.keyring,
        context=gate_context,
        turnstile=Turnstile(profile(), pin_factory=pins),
        passage_timeout_s=5.0,
        held_open_s=20.0,
    )
    try:
        with sqlite3.connect(store.path) as db:
            db.execute("CREATE TRIGGER fail_all BEFORE INSERT ON outbox BEGIN SELECT RAISE(ABORT, 'disk'); END")
        with capture_logs() as logs:
            assert scanloop.judge(gate, authority.ticket(), time.monotonic()) is None
        assert "store fault: gate stays shut" in [e["event"] for e in logs]
        with sqlite3.connect(store.path) as db:
            db.execute("DROP TRIGGER fail_all")
        with capture_logs() as logs:
            decision = scanloop.judge(gate, authority.ticket(), time.monotonic())
        assert decision.admit and gate.mode is GateMode.NORMAL
        assert [(e["event"], e["decision"]) for e in logs if e["event"] == "scan"] == [("scan", "admit")]
    finally:
        gate.close()


def test_a_frame_the_decoder_raises_on_is_lost_alone_and_logged_once(tmp_path, authority):
    text = authority.ticket()
    render_card(tmp_path / "cards", "1", text)
    inner = FileSource(tmp_path / "cards")
    inner.open()
    bad = [np.zeros((48, 64), np.float32), np.zeros((48, 64), np.float32), np.zeros((48, 64, 2), np.uint8)]
    codes: queue.Queue = queue.Queue()
    seen, lost = [], []
    with capture_logs() as logs:
        run_until_finished(
            FirstThen(inner, bad),
            codes,
            on_frame=lambda frame, texts: seen.append(texts),
            on_lost=lambda frame, exc: lost.append((frame.origin, type(exc).__name__)),
        )
    assert codes.get_nowait()[0] == text  # the camera thread lived on to read the next frame
    assert seen == [[text]]  # the lost frames were not counted as decoded
    assert lost == [("bad", "ValueError")] * 3  # each told to the daemon (its start-up and status say why)
    errors = [(e["event"], e["origin"], e["error"]) for e in logs if e["event"] == "frame not decoded"]
    assert [origin for _, origin, _ in errors] == ["bad", "bad"]  # once per run of one error
    assert "expected a grayscale uint8 frame" in errors[0][2] and "(48, 64, 2)" in errors[1][2]
    again = [e for e in logs if e["event"] == "frames decoded again"]
    assert [e["frames_lost"] for e in again] == [3]  # all three, whatever their errors
    assert all(e["exc_info"] for e in logs if e["event"] == "frame not decoded")  # the traceback too


def test_the_daemon_names_a_decoder_failing_on_its_frames_not_a_stalled_camera():
    """What the scan loop tells the daemon (on_frame, on_fault, on_lost) decides what its start-up
    error and its systemd status say: frames that arrive but are not decoded are named so (before:
    "no frame" and "stalled", as if the camera sent nothing); a camera fault after them is the news,
    and a frame decoded clears both."""
    from gated.gate import config
    from gated.gate.daemon import Daemon

    daemon = Daemon(config.load(Path(__file__).resolve().parents[2] / "firmware_config" / "gated.example.toml"))
    frame = Frame(np.zeros((48, 64), np.uint8), time.monotonic(), 0, "test")
    assert daemon._undecoded() is None and daemon._camera_trouble == "stalled"
    daemon._frame_lost(frame, ValueError("expected a grayscale uint8 frame"))
    assert daemon._undecoded() == "ValueError: expected a grayscale uint8 frame"
    assert daemon._camera_trouble == "frames not decoded"
    daemon._camera_failed(OSError("device gone"))
    assert daemon._undecoded() is None and daemon._camera_trouble == "stalled"
    daemon._frame_lost(frame, ValueError("again"))  # frames come again, not decoded: a camera fault no more
    assert daemon.camera_fault is None and daemon._camera_trouble == "frames not decoded"
    daemon._frame_read(frame, [])
    assert daemon._undecoded() is None and daemon.camera_fault is None


@pytest.mark.parametrize("across", [False, True], ids=["scanner", "tracker"])
def test_a_code_judged_and_still_in_view_does_not_keep_the_next_one_from_being_read(tmp_path, across):
    """Two phones in view: the next visitor holds theirs up while the last one is still in view.
    The first, easy code is read and goes on; from then on the debouncer holds it off, and the
    scanner reads its place alone and the rest of the frame with every pass (judged_in_view): the
    second phone, which only the dearer passes read, goes on too, two frames later. Before, the
    first code's read ended every frame's reading: the second waited until the first had gone."""
    from gated.gate.rehearsal.phone import still_frame
    from tests.gate.test_scanner import fixed_codes, plain_code, with_sign

    first, second = fixed_codes()[1], fixed_codes()[0]
    phone, _ = still_frame(second, (640, 480), np.random.default_rng(301))
    both = with_sign(phone, plain_code(first, 3))
    assert Scanner().decode(phone) == [second] and Scanner().decode(both) == [first]
    (tmp_path / "cards").mkdir()
    for n in range(4):
        cv2.imwrite(str(tmp_path / "cards" / f"{n}.png"), both)
    camera = FileSource(tmp_path / "cards")
    camera.open()
    codes: queue.Queue = queue.Queue()
    seen = []
    scanner = Tracker() if across else Scanner()  # the gate reads across frames (the Tracker)
    run_until_finished(camera, codes, scanner, on_frame=lambda frame, texts: seen.append(texts))
    queued = [codes.get_nowait()[0] for _ in range(codes.qsize())]
    assert queued == [first, second]
    assert seen[:3] == [[first], [first], [first, second]]
